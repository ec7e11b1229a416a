"""Groups of cells on a local process pool (joblib, loky workers).

Each worker loads the same plugins and matrix, sets torch's threads so that workers do
not oversubscribe the cores, and writes its records to the shared store (atomic per
record, so workers never interleave partial writes).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.matrix import Cell, Matrix


def _worker(matrix_path: str, plugin_files: list[str], results: str, keys: list[str], threads: int,
            device: str) -> list[dict[str, Any]]:
    import torch

    torch.set_num_threads(threads)
    from bench.matrix import load_matrix
    from bench.plugins import load_plugins
    from bench.runner import Runner
    from bench.store import ResultsStore

    load_plugins(plugin_files)
    matrix = load_matrix(matrix_path)
    by_key = {c.key: c for c in matrix.cells()}
    runner = Runner(matrix, ResultsStore(results), device=device, progress=False, log=lambda m: None)
    return runner.run_group([by_key[k] for k in keys])


def run_groups(matrix: Matrix, results: Path, groups: list[list[Cell]], jobs: int, device: str,
               done: Callable[[list[dict[str, Any]]], None]) -> None:
    from joblib import Parallel, delayed

    from bench.plugins import loaded_files

    threads = max(1, (os.cpu_count() or 1) // jobs)
    tasks = (delayed(_worker)(matrix.path, loaded_files(), str(results), [c.key for c in g], threads, device)
             for g in groups)
    for records in Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")(tasks):
        done(records)
