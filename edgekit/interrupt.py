"""Ctrl-C for the command line: exit 130 with one line, at any point, leaving the workspace as it was.

A SIGINT delivered the usual way is not safe here: once OpenVINO, ONNX Runtime and LiteRT have started their
thread pools, Ctrl-C during `compile --target all` crashed the process with SIGSEGV (rc -11; gdb showed the heap
already corrupt in the main thread's next allocation), before any `finally` ran, leaving a staging folder behind,
even with a Python handler that exits at once. So the executable (edgekit.launch) blocks SIGINT and SIGTERM
first, before any import starts a thread (threads inherit the mask; numpy starts one as it loads), and a watcher
thread takes them with sigwait: no thread of any runtime is ever interrupted. The watcher runs the cleanups the
running stage registered (its staging folder, a workspace folder it made), in reverse order, and leaves with
os._exit, so nothing of the runtimes' teardown runs either. A stage's commit (files moved in, then the manifest)
is a `critical()` section: an interrupt during it waits until the commit is complete, so the workspace is always
before or after the stage, never between.
Subprocesses (ssh, scp, polygraphy) inherit the blocked mask, so Ctrl-C does not reach them: the watcher ends
them itself (SIGKILL to this process's children) before it exits.

Library callers (`import edgekit`) keep Python's default: KeyboardInterrupt, with the same `finally` cleanups.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

EXIT_CODE = 130
MESSAGE = "edgekit: interrupted; the workspace was left as it was"

SIGNALS = {signal.SIGINT, signal.SIGTERM}  # Ctrl-C, and what a CI runner or `timeout` sends

_cleanups: list[Callable[[], None]] = []
_critical_depth = 0
_pending = False
_exiting = False  # set once the watcher has decided to exit: no critical section may start after that
_lock = threading.Lock()  # orders the watcher's decision against critical sections starting and ending


def install() -> None:
    """Block the signals in this (the main) thread and so in every thread started after, and take them in a
    watcher thread for the rest of the process. Call it first, before any import that starts a thread (numpy
    starts OpenBLAS's pool as it loads): `edgekit.launch` does."""
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    # A forked child (OpenVINO's telemetry forks one) inherits the blocked mask but not the watcher thread: unblock
    # there, or the child can be neither interrupted nor stopped, and the parent waits on it forever.
    os.register_at_fork(after_in_child=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS))
    watcher = threading.Thread(target=_watch, name="edgekit-interrupt", daemon=True)
    watcher.start()
    # A thread started before install() keeps the signals unblocked, and the kernel may hand Ctrl-C to it rather
    # than to the watcher's sigwait. Python's own handler would then raise KeyboardInterrupt in the main thread at
    # an arbitrary line (between a staging folder's mkdtemp and the `try` that removes it: a fresh-clone CI run
    # kept one), and SIGTERM's default would end the process with no cleanup at all. So the handler of both only
    # passes the signal on to the watcher, which takes it as if the kernel had chosen it.
    for signum in SIGNALS:
        signal.signal(signum, lambda signum, _frame: _pass_on(watcher, signum))


def _pass_on(watcher: threading.Thread, signum: int) -> None:
    """The main thread's handler for a signal a pre-install thread received: hand it to the watcher, then wait for
    the watcher to act on it (exit, or mark a critical section pending and end). The wait matters: a signal taken
    in a thread Python does not know can lose the watcher's claim on the GIL, and a main thread busy in Python
    then starved it for seconds. The timeout covers the handler running while this thread holds `_lock`."""
    if watcher.is_alive():  # else it already took one: the exit is under way or pending
        signal.pthread_kill(watcher.ident, signum)
        watcher.join(timeout=0.5)


def _watch() -> None:
    global _pending, _exiting
    signal.sigwait(SIGNALS)
    with _lock:
        if _critical_depth:
            _pending = True  # the critical section exits when it ends
            return
        _exiting = True
    _exit()


@contextmanager
def guarded(create: Callable[[], T], cleanup: Callable[[T], None]) -> Iterator[T]:
    """`create()` something an interrupt must undo, with `cleanup(it)` registered in the same critical section, so
    no interrupt falls between the two; the cleanup stays registered for the block (whose own `finally` undoes
    it on the ordinary paths)."""
    with critical():
        made = create()
        undo = lambda: cleanup(made)  # noqa: E731
        _cleanups.append(undo)
    try:
        yield made
    finally:
        _cleanups.remove(undo)


@contextmanager
def critical() -> Iterator[None]:
    """An interrupt inside this block takes effect when it ends; once the process is exiting, none starts."""
    global _critical_depth, _exiting
    with _lock:
        exiting = _exiting
        if not exiting:
            _critical_depth += 1
    if exiting:
        threading.Event().wait()  # the watcher is cleaning up and about to end the process: go no further
    try:
        yield
    finally:
        with _lock:
            _critical_depth -= 1
            pending = _critical_depth == 0 and _pending
            _exiting = _exiting or pending
        if pending:
            _exit()


def remove_tree(path) -> None:
    """A cleanup for a folder the interrupted work may still be writing into: a file it adds while the folder is
    being removed would leave it behind, so try again until it is gone, pausing between tries so that a runtime's
    own threads (OpenVINO writing an IR) can finish the file they hold (up to about two seconds in all). Gone means
    gone at two looks 50 ms apart: a writer that had already passed `stop_if_exiting` may still recreate it once."""
    gone = 0
    for _ in range(40):
        shutil.rmtree(path, ignore_errors=True)
        gone = gone + 1 if not os.path.exists(path) else 0
        if gone == 2:
            return
        time.sleep(0.05)


def stop_if_exiting() -> None:
    """Called before making a path in a folder a cleanup removes (a stage's staging folder): once the process is
    exiting, block instead, so that the working thread cannot recreate the folder (mkdir parents=True) after the
    watcher removed it. The watcher's os._exit ends the blocked thread."""
    with _lock:
        exiting = _exiting
    if exiting:
        threading.Event().wait()


def _children() -> list[int]:
    """This process's child processes (Linux /proc; elsewhere none are known)."""
    pids = []
    for task in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        try:
            pids += [int(p) for p in task.read_text().split()]
        except OSError:
            continue
    return pids


def _exit() -> None:
    for pid in _children():  # they inherited our blocked SIGINT/SIGTERM: only SIGKILL ends them
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for cleanup in reversed(list(_cleanups)):
        try:
            cleanup()
        except Exception:  # noqa: BLE001 - the other cleanups and the exit must still happen
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os.write(2, ("\n" if os.isatty(2) else "").encode() + f"{MESSAGE}\n".encode())  # end a drawn bar first
    os._exit(EXIT_CODE)
