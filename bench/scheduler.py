"""Runs a matrix: what to compute (cells without a record, or whose last try failed) and
where (this process, a local process pool, a Dask cluster). Cells are grouped by (model,
defense, dataset); each group is run by a bench.executor.Executor, which shares its
data, models and clean scores and writes every finished cell at once to the store.

matrix -> cells -> (groups, on workers) -> bench.executor
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.executor import Executor, group_key
from bench.guard import Limits
from bench.matrix import Cell, Matrix
from bench.record import SKIPPED_MISSING, CellRecord
from bench.store import ResultsStore

Done = Callable[[list[CellRecord]], None]


@dataclass
class Summary:
    total: int = 0
    cached: int = 0
    status: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    retried: int = 0  # cells whose earlier record was an error

    def line(self) -> str:
        st = ", ".join(f"{v} {k}" for k, v in sorted(self.status.items()))
        again = f" ({self.retried} retried after an earlier error)" if self.retried else ""
        return (f"{self.total} cells: {self.cached} already in the store, {st or 'none computed'}{again} "
                f"({self.seconds:.1f} s)")

    def add(self, records: list[CellRecord]) -> None:
        for r in records:
            self.status[r.status] += 1
            if r.status == "error":
                c = r.cell
                self.errors.append(f"{c.model}/{c.defense}/{c.attack}@{c.eps:g}/{c.dataset}: {r.message}")


class Scheduler:
    def __init__(self, matrix: Matrix, store: ResultsStore, *, device: str = "cpu",
                 log: Callable[[str], None] = print, progress: bool = True, limits: Limits | None = None,
                 reuse: bool = True, missing: dict[str, str] | None = None) -> None:
        self.matrix, self.store, self.device, self.progress = matrix, store, device, progress
        self.missing = missing or {}  # model or dataset name -> why it cannot run here (--skip-missing)
        self.limits = limits or Limits()
        self.reuse = reuse
        # the groups that run in this process (all of them with jobs 1)
        self.executor = Executor(matrix, store, device=device, log=log, limits=self.limits, reuse=reuse)

    @property
    def model_seconds(self) -> float:
        """Time this process spent in model passes (bench perf)."""
        return self.executor.model_seconds

    def pending(self) -> list[Cell]:
        """Cells without a record, and cells whose last try failed (a fixed plugin, a
        raised limit or a freed disk gets them computed on the next run)."""
        return [c for c in self.matrix.cells() if (r := self.store.get(c.key)) is None or r.get("status") == "error"
                or (r.get("status") == "skipped" and str(r.get("message", "")).startswith(SKIPPED_MISSING))]

    def groups(self, cells: list[Cell]) -> list[list[Cell]]:
        """Cells that share data, models and clean scores; one cell each without reuse."""
        if not self.reuse:
            return [[c] for c in cells]
        groups: dict[tuple, list[Cell]] = defaultdict(list)
        for c in cells:
            groups[group_key(c)].append(c)
        return list(groups.values())

    def run(self, jobs: int = 1, backend: str = "local", scheduler: str | None = None) -> Summary:
        """Every pending cell: in this process (jobs 1), on a local process pool (jobs N)
        or on an existing Dask cluster (backend "dask"); all write to the same store."""
        t0 = time.perf_counter()
        cells = self.matrix.cells()
        todo = self.pending()
        summary = Summary(total=len(cells), cached=len(cells) - len(todo))
        summary.retried = sum(1 for c in todo if self.store.path(c.key).exists())
        groups = self.groups(todo)
        bar = _bar(len(todo), self.progress)

        def done(records: list[CellRecord]) -> None:
            summary.add(records)
            bar.update(len(records))

        groups = self.skip_missing(groups, done)
        if backend == "dask" or (jobs > 1 and len(todo) > 1):
            from bench.parallel import WorkerOptions, pretrain_on_worker, run_groups, run_groups_dask

            opts = WorkerOptions(self.matrix.path, self.store.root, self.device, self.limits, self.reuse)
            if backend == "dask":
                failed = self.pretrain(todo)  # here: the cluster's workers share the cache, not this process's memory
            else:
                failed = pretrain_on_worker(opts, todo, jobs)
            tasks = balanced(self.fail_groups(groups, failed, done), 4 * max(jobs, 2))
            if backend == "dask":
                run_groups_dask(opts, tasks, scheduler, done)
            else:
                run_groups(opts, tasks, jobs, done)
        else:
            for group in groups:
                if not self.reuse:
                    self.executor.fresh()
                done(self.executor.run_group(group))
        bar.close()
        summary.seconds = time.perf_counter() - t0
        return summary

    def pretrain(self, cells: list[Cell]) -> dict[tuple, str]:
        """Models trained and defenses fitted here, before the cells (bench.executor)."""
        return self.executor.pretrain(cells)

    def run_group(self, cells: list[Cell]) -> list[CellRecord]:
        return self.executor.run_group(cells)

    def skip_missing(self, groups: list[list[Cell]], done: Done) -> list[list[Cell]]:
        """Write the cells of groups whose model or dataset cannot run here (--skip-missing)
        as skipped, with why; return the others."""
        rest = []
        for g in groups:
            why = next((self.missing[n] for n in (g[0].model.name, g[0].dataset.name) if n in self.missing), None)
            if why is None:
                rest.append(g)
            else:
                done(self.executor.fail(g, SKIPPED_MISSING + why, status="skipped"))
        return rest

    def fail_groups(self, groups: list[list[Cell]], failed: dict[tuple, str], done: Done) -> list[list[Cell]]:
        """Write the cells of groups whose set-up failed in `pretrain` as errors (their set-up
        is not tried again: a hang would cost its time limit twice); return the others."""
        rest = []
        for g in groups:
            if group_key(g[0]) in failed:
                done(self.executor.fail(g, failed[group_key(g[0])]))
            else:
                rest.append(g)
        return rest


def balanced(groups: list[list[Cell]], n_tasks: int) -> list[list[Cell]]:
    """Groups cut into about `n_tasks` tasks of similar size, so that workers stay busy
    to the end; a worker that gets several parts of one group sets it up once."""
    total = sum(len(g) for g in groups)
    size = max(1, -(-total // n_tasks))
    return [g[i : i + size] for g in groups for i in range(0, len(g), size)]


def _bar(total: int, enabled: bool):  # -> a tqdm bar (tqdm imported late: start-up)
    from tqdm import tqdm

    return tqdm(total=total, unit="cell", disable=not enabled or total == 0, dynamic_ncols=True)
