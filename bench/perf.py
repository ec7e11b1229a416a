"""`python -m bench perf`: how fast the benchmark is, measured in one run on this machine.

Every figure is a ratio or a time measured here, now; none is typed in. Runs are real
`python -m bench run` subprocesses (so start-up counts as it does for a user) in a
scratch folder with its own empty cache, and the process tree's memory is sampled while
they run. The last line printed is one JSON object:

- quick_cold_s: `run --matrix quick` from an empty store and an empty cache (the
  embedded data is built, CNNIQA trained, defenses fitted);
- warm_cold_ratio: the same command again (everything in the store) over the cold run;
- full_cold_s: the last complete cold `full` run in --results (its runs.jsonl) where
  there is one; else projected from timed samples of every cell type (full_cold_source);
- reuse_speedup, parallel_speedup, vs_naive: a fixed slice of the full matrix (SLICE)
  without reuse / with --jobs 1 / as a naive image-by-image loop (batch 1, no reuse),
  each over the slice with reuse, --jobs 2 for parallel;
- flops_fraction: FLOP/s of a PGD attack loop on CNNIQA (forward + backward, counted
  with torch's FlopCounterMode, timed without it) over a float32 matmul's FLOP/s
  measured here at the same thread count;
- overhead_fraction: share of an in-process slice run, after start-up (imports, which
  quick_cold_s counts), not spent in model forward/backward passes (Runner.model_seconds);
- peak_rss_gb: the largest resident memory of the whole process tree (run and workers).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.errors import BenchError, quoted

SLICE = """
name = "perf-slice"
description = "A fixed slice of the full matrix, for bench perf"
seed = 0
suite = "perf-slice-v1"
eps_unit = "1/255"
batch_size = {batch_size}
eot_samples = 8

[models]
cnniqa = {{}}

[defenses]
none = {{}}
"ortho+act+prune" = {{}}

[attacks]
fgsm = {{ eps = [2, 4, 8] }}
pgd = {{ eps = [2, 4, 8], steps = 10, alpha = 1.0 }}

[datasets]
embedded = {{ n_images = 32 }}
"""


class TreeMemory:
    """Peak resident memory of a process and all its descendants, sampled."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()

    def watch(self, pid: int) -> threading.Thread:
        import psutil

        self._stop = threading.Event()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    root = psutil.Process(pid)
                    procs = [root, *root.children(recursive=True)]
                    total = 0
                    for p in procs:
                        try:
                            total += p.memory_info().rss
                        except psutil.Error:
                            pass
                    self.peak = max(self.peak, total)
                except psutil.Error:
                    return
                self._stop.wait(0.1)

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        self._stop.set()


def timed_run(args: list[str], env: dict[str, str], memory: TreeMemory, log: Any) -> float:
    cmd = [sys.executable, "-m", "bench", "run", "--no-progress", *args]
    log(f"perf: {' '.join(cmd[2:])}")
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watcher = memory.watch(proc.pid)
    out, err = proc.communicate()
    wall = time.perf_counter() - t
    memory.stop()
    watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd[2:])}` failed ({proc.returncode}):\n{out[-2000:]}\n{err[-2000:]}")
    log(f"perf:   {wall:.1f} s; {out.strip().splitlines()[0] if out.strip() else ''}")
    return wall


def matmul_flops(threads: int, n: int = 1024, repeats: int = 5) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_time(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _time(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def attack_flops(matrix_path: Path, cache: Path, threads: int) -> float:
    """FLOP/s of a PGD loop on the slice's model over one batch of its test split."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench.api import ATTACKS
    from bench.matrix import load_matrix
    from bench.plugins import load_plugins
    from bench.workbench import Workbench

    os.environ["BENCH_CACHE"] = str(cache)
    torch.set_num_threads(threads)
    load_plugins()
    matrix = load_matrix(str(matrix_path))
    wb = Workbench(matrix.seed, "cpu", matrix.batch_size, log=lambda m: None)
    model, _ = wb.base_model(matrix.models[0], matrix.datasets[0])  # trained by the runs before
    x = wb.split(matrix.datasets[0])[1].images[: matrix.batch_size]
    attack = ATTACKS.create("pgd", steps=10, alpha=1.0)

    def loop() -> None:
        attack(model, x, 4 / 255, model.info.lower_better)

    loop()  # warm-up
    seconds = min(_time(loop) for _ in range(3))
    # FlopCounterMode cannot watch torch.autograd.grad (what the attack calls), so count
    # one step the same way, forward and backward to the input only, times the steps
    for p in model.parameters():
        p.requires_grad_(False)
    xg = x.clone().requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        model(xg).sum().backward()
    return counter.get_total_flops() * attack.params["steps"] / seconds


def in_process_slice(matrix_path: Path, results: Path, cache: Path) -> tuple[float, float]:
    """(wall seconds, seconds in model passes) of the slice run in this process."""
    from bench.matrix import load_matrix
    from bench.plugins import load_plugins
    from bench.runner import Runner
    from bench.store import ResultsStore

    os.environ["BENCH_CACHE"] = str(cache)
    load_plugins()
    import pyiqa  # noqa: F401 - start-up (counted in quick_cold_s), not part of the run's overhead

    runner = Runner(load_matrix(str(matrix_path)), ResultsStore(results), progress=False, log=lambda m: None)
    t = time.perf_counter()
    runner.run()
    return time.perf_counter() - t, runner.model_seconds


def full_cold(results: Path) -> tuple[float | None, str]:
    """The last complete cold run of `full` recorded in the results store."""
    from bench.store import ResultsStore

    for run in reversed(ResultsStore(results).runs()):
        if run.get("matrix") == "full" and run.get("cached") == 0 and run.get("status", {}).get("ok") == run["total"]:
            return run["wall_s"], f"measured: {results}/runs.jsonl, run started {run['started']}"
    return None, ""


def project_full(env: dict[str, str], work: Path, memory: TreeMemory, log: Any) -> tuple[float, str]:
    """Time every (model, defense, attack) type of `full` on a few images, then scale:
    the shared set-up of each (model, defense) group (fits included) counts once, each
    cell's attack scales with the number of test images."""
    from bench.matrix import load_matrix, resolve_path
    from bench.store import ResultsStore

    full = load_matrix("full")
    text = resolve_path("full").read_text()
    sample = work / "full-sample.toml"
    import tomllib

    import tomli_w

    doc = tomllib.loads(text)
    n_full = _n_test(doc)
    doc["name"] = "full-sample"
    for ds in doc["datasets"].values():
        ds["n_images"] = 16
    for table in [doc, *doc.get("blocks", {}).values()]:
        for attack in table.get("attacks", {}).values():
            eps = attack["eps"] if isinstance(attack["eps"], list) else [attack["eps"]]
            attack["eps"] = [eps[len(eps) // 2]]
    sample.write_text(tomli_w.dumps(doc))
    # its own empty cache: every training, fit and data build of `full` is timed, none reused
    fresh = {**env, "BENCH_CACHE": str(work / "cache-full-sample")}
    timed_run(["--matrix", str(sample), "--results", str(work / "full-sample"), "--no-site"], fresh, memory, log)
    return projection(full, list(ResultsStore(work / "full-sample").records()), n_full)


def projection(full: Any, samples: list[dict[str, Any]], n_full: int) -> tuple[float, str]:
    """Seconds `full` would take from sampled cells: each group's set-up once, each
    cell's attack time (mean over the sampled budgets of its type) scaled to `n_full`
    test images. Refuses to guess: a cell type of `full` that was not sampled is an error."""
    ok = [r for r in samples if r["status"] in ("ok", "skipped")]
    n_sample = max(r["metrics"]["n_images"] for r in ok if r["status"] == "ok")
    times: dict[tuple, list[float]] = {}
    setups: dict[tuple, float] = {}
    for r in ok:
        c = r["cell"]
        times.setdefault((c["model"], c["defense"], c["attack"]), []).append(r["metrics"]["seconds"])
        setups[(c["model"], c["defense"])] = r["metrics"]["setup_seconds"]
    missing = {(c.model.name, c.defense.name, c.attack.name) for c in full.cells()} - times.keys()
    if missing:
        raise RuntimeError(f"cannot project the full matrix: {len(missing)} cell types not sampled, e.g. "
                           f"{sorted(missing)[:3]}")
    total = sum(setups[(c.model.name, c.defense.name)] for c in {(c.model.name, c.defense.name): c
                                                                 for c in full.cells()}.values())
    for c in full.cells():
        t = times[(c.model.name, c.defense.name, c.attack.name)]
        total += sum(t) / len(t) * n_full / n_sample
    return total, (f"projected: {len(times)} cell types timed on {n_sample} test images "
                   f"(full has {n_full}), set-ups counted once per group")


def _n_test(doc: dict[str, Any]) -> int:
    from bench.api import create_dataset

    (name, params), = doc["datasets"].items()
    return len(create_dataset(name, **params).split(doc.get("seed", 0))[1])


def perf(results: Path, workdir: Path | None = None, skip_full: bool = False, log: Any = print) -> dict[str, Any]:
    if workdir is not None and workdir.exists() and any(workdir.iterdir()):
        raise BenchError(f"bench perf: --workdir {quoted(str(workdir))} is not empty (an earlier run's store or "
                         "cache there would turn the cold run warm); give a new or empty folder")
    (work := Path(workdir or tempfile.mkdtemp(prefix="bench-perf-"))).mkdir(parents=True, exist_ok=True)
    cache, threads = work / "cache", os.cpu_count() or 1
    env = {**os.environ, "BENCH_CACHE": str(cache)}
    memory = TreeMemory()
    quick = ["--matrix", "quick", "--results", str(work / "quick"), "--site-out", str(work / "site")]
    cold, warm = timed_run(quick, env, memory, log), timed_run(quick, env, memory, log)
    slice_path, naive_path = work / "slice.toml", work / "slice-naive.toml"
    slice_path.write_text(SLICE.format(batch_size=16))
    naive_path.write_text(SLICE.format(batch_size=1))
    timed_run(["--matrix", str(slice_path), "--results", str(work / "warmup"), "--no-site"], env, memory, log)

    def slice_run(name: str, *extra: str, path: Path = slice_path) -> float:
        return timed_run(["--matrix", str(path), "--results", str(work / name), "--no-site", *extra], env, memory, log)

    with_reuse = slice_run("slice-reuse")
    without_reuse = slice_run("slice-no-reuse", "--no-reuse")
    two_jobs = slice_run("slice-jobs2", "--jobs", "2")
    naive = slice_run("slice-naive", "--no-reuse", path=naive_path)
    wall, model_s = in_process_slice(slice_path, work / "slice-in-process", cache)
    peak_matmul = matmul_flops(threads)
    achieved = attack_flops(slice_path, cache, threads)

    full_s, source = full_cold(results)
    if full_s is None and skip_full:
        source = "skipped (--skip-full) and no complete cold full run in the store"
    elif full_s is None:
        full_s, source = project_full(env, work, memory, log)
    return {
        "quick_cold_s": round(cold, 1),
        "warm_cold_ratio": round(warm / cold, 4),
        "full_cold_s": None if full_s is None else round(full_s, 1),
        "full_cold_source": source,
        "reuse_speedup": round(without_reuse / with_reuse, 2),
        "parallel_speedup": round(with_reuse / two_jobs, 2),
        "vs_naive": round(naive / with_reuse, 2),
        "flops_fraction": round(achieved / peak_matmul, 3),
        "overhead_fraction": round(1 - model_s / wall, 3),
        "peak_rss_gb": round(memory.peak / 2**30, 2),
        "detail": {"warm_s": round(warm, 1), "slice_reuse_s": round(with_reuse, 1),
                   "slice_no_reuse_s": round(without_reuse, 1), "slice_jobs2_s": round(two_jobs, 1),
                   "slice_naive_s": round(naive, 1), "slice_in_process_s": round(wall, 1),
                   "slice_model_s": round(model_s, 1), "attack_gflops": round(achieved / 1e9, 2),
                   "matmul_gflops": round(peak_matmul / 1e9, 2), "threads": threads, "workdir": str(work)},
    }
