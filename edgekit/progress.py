"""Progress that suits both a terminal and a log file.

On a terminal, a tqdm bar (cleared when done). Anywhere else (CI, `edgekit run > log 2>&1`), a redrawn bar
would be hundreds of carriage-return lines, so instead exactly one line is written when the work ends:
"<desc>: <n> <unit> in <s> s (<rate> <unit>/s)".

    with progress(len(images), "calibrating", "img") as bar:
        for x in batches:
            ...
            bar.update(len(x))

    for i in track(range(n), "loading data", "img"):   # the same, for a plain loop
        ...
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator


class Progress:
    """A tqdm bar on a TTY stderr, else one summary line on close. Use as a context manager or call close();
    built with `items` (see track), iterating it counts one per item and closes at the end."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", *, enabled: bool = True,
                 items: Iterable | None = None) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self._items = items
        self._stream = sys.stderr  # looked up now, so contextlib.redirect_stderr around the work applies
        self._enabled = enabled
        self._start = time.perf_counter()
        self._closed = False
        self._bar = None
        if enabled and _isatty(self._stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, file=self._stream)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix(self, **values) -> None:
        """Live figures on the bar (e.g. loss); not in the log line, where the caller logs its own summary."""
        if self._bar is not None:
            self._bar.set_postfix(**values)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._enabled:
            print(summary_line(self.desc, self.n, self.unit, time.perf_counter() - self._start),
                  file=self._stream, flush=True)

    def __iter__(self) -> Iterator:
        try:
            for item in self._items if self._items is not None else ():
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: int | None, desc: str, unit: str = "it", *, enabled: bool = True) -> Progress:
    """enabled=False shows nothing at all (e.g. on the non-main ranks of a distributed run)."""
    return Progress(total, desc, unit, enabled=enabled)


def track(items: Iterable, desc: str, unit: str = "it", *, total: int | None = None,
          enabled: bool = True) -> Progress:
    """A Progress over `items`: `for x in track(...)` counts one per item; total defaults to len(items)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    return Progress(total, desc, unit, enabled=enabled, items=items)


def summary_line(desc: str, n: int, unit: str, seconds: float) -> str:
    rate = n / seconds if seconds > 0 else 0.0
    return f"{desc}: {n} {unit} in {seconds:.2f} s ({_figure(rate)} {unit}/s)"


def _figure(x: float) -> str:
    """Three significant figures or so, without exponents: 12345, 123, 12.3, 1.23, 0.123."""
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 1 else f"{x:.3f}"


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
