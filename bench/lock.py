"""One run per results folder at a time.

Two runs writing the same store would each compute the same cells. The lock is an
`fcntl.flock` on `<results>/.lock`: the operating system releases it when its process
dies, however it dies, so a stale lock of a killed run never blocks the next one; the
file only keeps the holder's pid and command for the message the second run prints.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path
from types import TracebackType

from bench.errors import BenchError


class LockedError(BenchError):
    exit_code = 3  # busy: nothing wrong with the command, try again later


class RunLock:
    def __init__(self, root: str | os.PathLike[str], wait: float = 0.0) -> None:
        self.path = Path(root) / ".lock"
        self.wait = wait
        self._fd: int | None = None
        self.took_over: str | None = None  # what a dead holder had written, if anything

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
                    os.close(fd)
                    raise LockedError(
                        f"results folder '{self.path.parent}' is in use by a running `bench run` ({holder}); "
                        "wait for it to finish (or pass --wait SECONDS), or use another --results folder"
                    ) from None
                time.sleep(0.5)
        previous = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        if previous:
            self.took_over = previous  # its process is gone: the OS released its lock
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {' '.join(sys.argv)}".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # a clean exit leaves nothing to take over
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
