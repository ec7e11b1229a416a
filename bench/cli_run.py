"""`bench run`: compute every cell of a matrix under a lock, log the run, render the site;
apart from `bench.cli`, which parses and dispatches.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

from bench.errors import BenchError


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cmd_run(args: argparse.Namespace) -> int:
    from bench import provenance
    from bench.datacheck import check_before_run
    from bench.guard import check_interrupt, remember_interrupt
    from bench.lock import RunLock
    from bench.matrix import load_matrix
    from bench.plugins import load_plugins
    from bench.progress import switch_off
    from bench.runner import Limits, Runner
    from bench.store import ResultsStore

    if args.no_progress:  # also the data build, training and fine-tunes, here and in workers
        switch_off()
    if args.jobs < 1:
        raise BenchError(f"--jobs must be at least 1, got {args.jobs}")
    load_plugins(args.plugin)
    _warn_broken_plugins()
    matrix = load_matrix(args.matrix)  # a bad matrix, data root or weights file: nothing created or written
    missing = check_before_run(matrix, args.backend, args.skip_missing)
    store = ResultsStore(args.results)
    store.check_writable()
    device = _device(args.device)
    limits = Limits(seconds=args.cell_timeout or None, max_rss_gb=_memory_limit(args.max_memory_gb, args.jobs))
    with RunLock(store.root, wait=args.wait) as lock:
        if lock.took_over:
            print(f"note: took over the lock of a run that is gone ({lock.took_over})", file=sys.stderr)
        runner = Runner(matrix, store, device=device, progress=not args.no_progress, limits=limits,
                        reuse=not args.no_reuse, log=lambda m: print(m, file=sys.stderr), missing=missing)
        print(f"matrix '{matrix.name}': {len(matrix.cells())} cells, {len(runner.pending())} to compute, "
              f"results in {store.root}/, device {device}", file=sys.stderr)
        started = provenance.now()
        with remember_interrupt():
            summary = runner.run(jobs=args.jobs, backend=args.backend, scheduler=args.scheduler)
            check_interrupt()  # an interrupt some library swallowed: stop as Ctrl-C does, not as finished
        store.log_run({"matrix": matrix.name, "matrix_sha256": matrix.sha256, "started": started,
                       "wall_s": round(summary.seconds, 3), "total": summary.total, "cached": summary.cached,
                       "status": dict(summary.status), "jobs": args.jobs, "backend": args.backend,
                       "reuse": not args.no_reuse, "device": device,
                       "hardware": provenance.environment(device)["hardware"],
                       # this process's high-water mark; workers (--jobs, Dask) are not in it
                       "main_peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)})
    print(summary.line())
    for err in summary.errors[:20]:
        print(f"  error: {err}")
    if len(summary.errors) > 20:
        print(f"  ... and {len(summary.errors) - 20} more errors (see `bench export`)")
    if not args.no_site:
        from bench.leaderboard import render_site

        t = time.perf_counter()
        index = render_site(store.root, args.site_out)
        print(f"site: {index} ({time.perf_counter() - t:.1f} s)")
    return 1 if summary.errors else 0


def _warn_broken_plugins() -> None:
    """A plugin that failed to load fails the cells that name it; say so up front too."""
    from bench.api import ATTACKS, DATASETS, DEFENSES, MODELS

    seen = {msg for reg in (MODELS, ATTACKS, DEFENSES, DATASETS) for msg in reg.broken.values()}
    for msg in sorted(seen):
        print(f"warning: a plugin failed to load, its components are unavailable: {msg}", file=sys.stderr)


def _memory_limit(gb: float | None, jobs: int) -> float | None:
    if gb is not None:
        return gb or None
    from bench.provenance import total_memory_gb

    total = total_memory_gb()
    return round(0.8 * total / jobs, 1) if total else None
