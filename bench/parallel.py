"""Groups of cells on other processes: a local pool (joblib, loky workers) or an
existing Dask cluster (dask.distributed).

Each worker loads the same plugins and matrix, sets torch's threads so that workers do
not oversubscribe the cores, runs its groups with a bench.executor.Executor and writes
their records to the shared store (atomic per record, so workers never interleave
partial writes). A Dask cluster's workers must see the same results folder and cache (a
shared file system) and have the project installed. This module depends on the
executor (imported in the worker, after its process is tuned), never the reverse.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.guard import Limits
from bench.matrix import Cell
from bench.record import CellRecord

if TYPE_CHECKING:
    from bench.executor import Executor

Done = Callable[[list[CellRecord]], None]


@dataclass(frozen=True)
class WorkerOptions:
    matrix_path: str
    results: Path
    device: str
    limits: Limits
    reuse: bool = True


_EXECUTORS: dict[tuple, Any] = {}  # per worker process: the run's Executor and cell index, kept between tasks


def keep_worker_caches() -> None:
    """Stop loky from restarting this worker when its memory grows.

    loky takes a worker's growth by 300 MB after its first task for a leak and replaces
    the worker. Ours grow by design: the run's models and fitted defenses are kept between
    tasks (bounded by the executor's LRU and by --max-memory-gb), so a restart threw away
    exactly what was kept and paid start-up again (seen: a third worker in a `--jobs 2`
    run of 12 cells). The limit is a module constant that the worker loop reads on each
    check, hence set here, in the worker."""
    try:
        from joblib.externals.loky import process_executor
    except ImportError:  # a joblib without loky: nothing restarts workers
        return
    process_executor._MAX_MEMORY_LEAK_SIZE = 1 << 62


def _executor(opts: WorkerOptions, plugin_files: list[str], threads: int) -> tuple[Executor, dict[str, Cell]]:
    """This worker's Executor for the run and its cells by key, built on first use."""
    from bench.tuning import tune_process

    tune_process()
    import torch

    if threads:
        torch.set_num_threads(threads)
    from bench.executor import Executor
    from bench.matrix import load_matrix
    from bench.plugins import load_plugins
    from bench.store import ResultsStore

    ident = (opts, tuple(plugin_files))
    if ident not in _EXECUTORS:
        keep_worker_caches()
        load_plugins(plugin_files)
        matrix = load_matrix(opts.matrix_path)
        _EXECUTORS.clear()
        executor = Executor(matrix, ResultsStore(opts.results), device=opts.device, log=lambda m: None,
                            limits=opts.limits, reuse=opts.reuse)
        _EXECUTORS[ident] = (executor, {c.key: c for c in matrix.cells()})
    return _EXECUTORS[ident]


def _worker(opts: WorkerOptions, plugin_files: list[str], keys: list[str], threads: int) -> list[CellRecord]:
    executor, by_key = _executor(opts, plugin_files, threads)
    return executor.run_group([by_key[k] for k in keys])


def _pretrain(opts: WorkerOptions, plugin_files: list[str], keys: list[str]) -> dict[tuple, str]:
    executor, by_key = _executor(opts, plugin_files, os.cpu_count() or 1)
    return executor.pretrain([by_key[k] for k in keys])


def pretrain_on_worker(opts: WorkerOptions, cells: list[Cell], jobs: int) -> dict[tuple, str]:
    """Models are trained and defenses fitted first, once each, with all the cores, on one
    worker (not in this process: it would hold pyiqa and the models, ~1 GB, for nothing;
    the worker keeps them for its share of the cells). n_jobs is the run's (above 1): joblib
    runs a 1-job Parallel in this process, and loky then keeps the same pool for the cells.
    Returns the groups that failed."""
    from joblib import Parallel, delayed

    from bench.plugins import loaded_files

    (failed,) = Parallel(n_jobs=jobs, backend="loky")([delayed(_pretrain)(opts, loaded_files(), [c.key for c in cells])])
    return failed


def run_groups(opts: WorkerOptions, groups: list[list[Cell]], jobs: int, done: Done) -> None:
    from joblib import Parallel, delayed

    from bench.plugins import loaded_files

    threads = max(1, (os.cpu_count() or 1) // jobs)
    tasks = (delayed(_worker)(opts, loaded_files(), [c.key for c in g], threads) for g in groups)
    for records in Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")(tasks):
        done(records)


def run_groups_dask(opts: WorkerOptions, groups: list[list[Cell]], scheduler: str | None, done: Done) -> None:
    """One task per group on the cluster at `scheduler` (e.g. tcp://host:8786). Each
    worker keeps torch at one thread per Dask thread it runs."""
    from bench.errors import BenchError
    from bench.plugins import loaded_files

    try:
        from distributed import Client, as_completed
    except ImportError:
        raise BenchError("--backend dask needs dask.distributed: pip install 'iqa-robustness-bench[dask]'") from None
    if not scheduler:
        raise BenchError("--backend dask needs --scheduler ADDRESS of a running Dask scheduler (e.g. tcp://host:8786)")
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as e:
        raise BenchError(f"cannot reach the Dask scheduler at '{scheduler}' ({e}); start one with "
                         "`dask scheduler` and workers with `dask worker ADDRESS`, or check the address") from None
    try:
        plugins = loaded_files()
        futures = [client.submit(_worker, opts, plugins, [c.key for c in g], 1, pure=False) for g in groups]
        for fut in as_completed(futures):
            done(fut.result())
    finally:
        client.close()
