"""The `edgekit` executable and `python -m edgekit`: Ctrl-C handling first, then the command line.

edgekit.interrupt must block SIGINT/SIGTERM before any thread exists, and importing the CLI already starts one
(numpy's OpenBLAS pool). So this module imports nothing but the interrupt module (stdlib only) until it has
installed it."""

from __future__ import annotations

from . import interrupt


def entry() -> None:
    """Install edgekit.interrupt (exit 130, workspace as it was), then run the command. (Calling
    `edgekit.cli.main` in-process, as tests and embedding programs do, keeps Python's own SIGINT handling.)"""
    interrupt.install()
    from .cli import main  # only now: its imports start threads

    main()
