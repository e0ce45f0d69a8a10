"""User-facing errors. The CLI turns these into one line on stderr and an exit code; the library raises them.

Exit codes (the contract in the README): 0 done, 1 a gate failed (decided once, in cli.py, from bench's results),
2 bad input or environment, 130 interrupted.
"""

from __future__ import annotations


class EdgekitError(Exception):
    """Bad input or environment: what is wrong and, in `hint`, what to do about it. Exit code 2."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = self.message.rstrip(".")
        return f"{text}. {self.hint}" if self.hint else f"{text}."
