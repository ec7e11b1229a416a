"""Memory-allocator settings that make CPU runs up to twice as fast, applied by the CLI
and its workers.

Measured here (2 cores): glibc's malloc hands large freed blocks back to the kernel and
maps them again on the next step, so a third of CNNIQA's training time went to page
faults (system time); keeping them (a higher mmap and trim threshold, some top padding)
halved it (7.3 s -> 3.7 s for two epochs) and sped the Cayley convolution up ~1.4x.
(OpenMP's passive wait policy was tried too: 3-4x slower on the Cayley convolution's
many small parallel regions, so it is not set.) BENCH_NO_TUNING=1 skips this. The cost:
up to ~1 GB of freed memory stays with each process instead of going back to the OS.

Always (BENCH_NO_TUNING or not, unless MKL_CBWR is set already): MKL's strict reproducible
mode, MKL_CBWR=AUTO,STRICT, so that matrix products do not depend on the thread count and
`--jobs N` gives exactly the numbers of a serial run (no cost measurable here on 1 thread).
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters
_done = False


def tune_process() -> None:
    global _done
    # Before MKL's first call (it reads this then; workers inherit it): matrix products give
    # the same bits whatever the thread count, so a --jobs N worker (1 thread) computes what a
    # serial run (all cores) does. Without it CNNIQA's 800x800 linear layer differed in the
    # last bit between 1 and 2 threads, and so did every score and bootstrap interval after it.
    os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
    if _done or os.environ.get("BENCH_NO_TUNING") == "1":
        return
    _done = True
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6")
        except OSError:
            return  # not glibc (e.g. musl): nothing to tune
        libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)
        libc.mallopt(_M_TRIM_THRESHOLD, 2**30)
        libc.mallopt(_M_TOP_PAD, 256 * 2**20)
