"""Per-cell limits: a plugin that hangs or allocates without bound fails its own cell.

The limits are enforced inside the process that runs the cell, by interrupting its
main thread: a timer (`signal.setitimer`) for time, and a watchdog thread that reads the
process's resident memory (from /proc) and signals the main thread when it passes the
limit. Python runs signal handlers between bytecodes, so a plugin stuck in Python code
or looping over torch calls is stopped; one stuck inside a single C call is stopped when
that call returns. Where signals cannot be used (not the main thread, e.g. a Dask
worker thread) the guard does nothing and says so in `active`.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.errors import BenchError


class CellLimitError(BenchError):
    pass


@dataclass(frozen=True)
class Limits:
    """Per-cell limits (`--cell-timeout`, `--max-memory-gb`): a group's shared set-up gets the same ones."""

    seconds: float | None = 3600.0
    max_rss_gb: float | None = None


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


_armed: dict[str, Any] = {}  # what the handlers report while a cell runs; empty: ignore


def _on_alarm(signum: int, frame: Any) -> None:
    if "seconds" in _armed:
        raise CellLimitError(f"{_armed['what']}: stopped after the per-cell time limit of "
                             f"{_armed['seconds']:g} s (raise it with --cell-timeout)")


def _on_memory(signum: int, frame: Any) -> None:
    if "max_rss_gb" in _armed:
        raise CellLimitError(f"{_armed['what']}: stopped at {rss_bytes() / 2**30:.1f} GB resident, over the "
                             f"per-cell memory limit of {_armed['max_rss_gb']:g} GB (raise it with --max-memory-gb)")


@contextmanager
def cell_limits(what: str, seconds: float | None, max_rss_gb: float | None) -> Iterator[dict[str, Any]]:
    """Handlers stay installed once set (a signal that arrives late is ignored, never
    the default action, which would kill the process)."""
    state: dict[str, Any] = {"active": threading.current_thread() is threading.main_thread()}
    if not state["active"] or (not seconds and not max_rss_gb):
        yield state
        return
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGUSR1, _on_memory)
    limit = int(max_rss_gb * 2**30) if max_rss_gb else 0
    stop = threading.Event()
    main = threading.main_thread().ident

    def watch() -> None:
        while not stop.wait(0.05):
            if rss_bytes() > limit:
                signal.pthread_kill(main, signal.SIGUSR1)
                stop.wait(1.0)  # one signal at a time

    watcher = threading.Thread(target=watch, daemon=True) if limit else None
    _armed.update(what=what)
    if seconds:
        _armed["seconds"] = seconds
    if limit:
        _armed["max_rss_gb"] = max_rss_gb
    try:
        if seconds:
            signal.setitimer(signal.ITIMER_REAL, seconds)
        if watcher:
            watcher.start()
        yield state
    finally:
        stop.set()
        if seconds:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if watcher:
            watcher.join()
        _armed.clear()


_interrupted = threading.Event()


def _on_interrupt(signum: int, frame: Any) -> None:
    _interrupted.set()
    raise KeyboardInterrupt


@contextmanager
def remember_interrupt() -> Iterator[None]:
    """While a run computes cells, Ctrl-C is remembered as well as raised. A library that
    turns the KeyboardInterrupt into an ordinary exception would otherwise make the cell
    record it as its error and the run go on to a finished-looking end (seen once in ~20
    runs of the Ctrl-C test): `check_interrupt()` in the executor's failure paths raises it
    again instead, so no such record is written. Where SIGINT is ignored (a background
    job) or handled by someone else, or off the main thread, nothing changes."""
    _interrupted.clear()  # an earlier run's interrupt (in this process) is not this run's
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, _on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _interrupted.clear()


def check_interrupt() -> None:
    """Raise KeyboardInterrupt where Ctrl-C came during `remember_interrupt`."""
    if _interrupted.is_set():
        raise KeyboardInterrupt
