"""--jobs N (a process pool), a Dask cluster and a run without reuse all give the same
numbers as a serial run."""

import pytest

from bench.cli import main
from bench.store import ResultsStore, records_frame

MATRIX = """
name = "par"
seed = 0
batch_size = 8
[models]
piqe = {}
[defenses]
none = {}
jpeg = {}
[attacks]
pgd = { eps = [4], steps = 3 }
[datasets]
embedded = { size = 48, n_images = 8 }
"""
TIMING = ["seconds", "setup_seconds", "prov_date", "prov_hardware"]


def _run(tmp_path, name: str, *extra: str):
    (tmp_path / "m.toml").write_text(MATRIX)
    res = tmp_path / name
    assert main(["run", "--matrix", str(tmp_path / "m.toml"), "--results", str(res), "--no-site",
                 "--no-progress", *extra]) == 0
    df = records_frame(list(ResultsStore(res).records()))
    return df.drop(columns=[c for c in TIMING if c in df.columns]).sort_values(["defense"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("serial"), "r1")


def test_each_run_is_logged_and_perf_reads_only_a_complete_cold_full_run(tmp_path):
    """runs.jsonl is how a run's wall time outlives it (`bench perf` takes full_cold_s from
    it): one line a run, and only a cold, complete run of the matrix named `full` counts."""
    import json

    from bench.perf import full_cold

    _run(tmp_path, "r")
    _run(tmp_path, "r")  # warm: everything cached
    cold, warm = ResultsStore(tmp_path / "r").runs()
    assert (cold["total"], cold["cached"], cold["status"]) == (2, 0, {"ok": 2})
    assert (warm["cached"], warm["status"]) == (2, {}) and cold["wall_s"] > warm["wall_s"] >= 0
    assert cold["main_peak_rss_gb"] > 0.1 and cold["matrix"] == "par"
    assert full_cold(tmp_path / "r") == (None, "")  # not `full`
    log = tmp_path / "r" / "runs.jsonl"
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    lines[0]["matrix"] = "full"
    incomplete = {**lines[0], "status": {"ok": 1, "error": 1}, "wall_s": 1.0}
    log.write_text("\n".join(json.dumps(x) for x in [lines[0], incomplete, lines[1]]) + "\n{cut by a cra")
    seconds, source = full_cold(tmp_path / "r")
    assert seconds == cold["wall_s"] and "measured" in source and cold["started"] in source


def test_two_workers_equal_one(tmp_path, serial):
    assert len(serial) == 2
    assert serial.equals(_run(tmp_path, "r2", "--jobs", "2"))


def test_a_dask_cluster_of_two_workers_equals_a_serial_run(tmp_path, serial):
    import os

    distributed = pytest.importorskip("distributed")
    saved = dict(os.environ)
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
            df = _run(tmp_path, "rd", "--backend", "dask", "--scheduler", cl.scheduler_address)
    finally:
        # its nannies leave OMP_NUM_THREADS=1 (and MKL_, OPENBLAS_NUM_THREADS, PYTHONHASHSEED)
        # in this process's environment, which every later test's subprocesses inherited
        os.environ.clear()
        os.environ.update(saved)
    assert serial.equals(df)


def test_dask_without_a_scheduler_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "m.toml").write_text(MATRIX)
    code = main(["run", "--matrix", str(tmp_path / "m.toml"), "--results", str(tmp_path / "r"), "--no-site",
                 "--backend", "dask"])
    assert code == 1 and "--scheduler ADDRESS" in capsys.readouterr().err


def test_without_reuse_the_numbers_are_the_same(tmp_path, serial):
    from bench.matrix import load_matrix
    from bench.runner import Runner

    (tmp_path / "m.toml").write_text(MATRIX)
    Runner(load_matrix(str(tmp_path / "m.toml")), ResultsStore(tmp_path / "nr"), progress=False,
           log=lambda m: None, reuse=False).run()
    df = records_frame(list(ResultsStore(tmp_path / "nr").records()))
    df = df.drop(columns=[c for c in TIMING if c in df.columns]).sort_values(["defense"]).reset_index(drop=True)
    assert serial.equals(df)


_HELD: list[bytearray] = []


def _grow_and_report(keep: bool, mb: int) -> int:
    import os

    from joblib.externals.loky import process_executor

    from bench.parallel import keep_worker_caches

    # loky checks a worker's growth after a task at most once a second: check after every
    # task, so that what is tested is its rule (restart past 300 MB of growth), not a clock
    process_executor._MEMORY_LEAK_CHECK_DELAY = -1.0
    if keep:
        keep_worker_caches()
    _HELD.append(bytearray(mb << 20))  # what a worker's cached models look like to loky
    for i in range(0, len(_HELD[-1]), 4096):
        _HELD[-1][i] = 1  # touch the pages: resident, as loaded weights are
    return os.getpid()


@pytest.mark.filterwarnings("ignore:A worker stopped")  # loky's own words for the restart (keep=False)
@pytest.mark.parametrize("keep", [False, True])
def test_workers_that_keep_caches_are_not_restarted(keep):
    """loky replaces a worker that grew by 300 MB as leaking; a bench worker grows on purpose
    and must stay, or every task pays start-up and reloads its models.

    One worker, four tasks one after another, each growing it by 200 MB: loky measures the
    worker after its first task, sees +200 MB after the second (kept) and +400 MB after the
    third, and replaces it; the fourth runs on a new worker."""
    from joblib.externals.loky import get_reusable_executor, process_executor

    if not process_executor._USE_PSUTIL:
        pytest.skip("loky without psutil never measures its workers")
    get_reusable_executor().shutdown(wait=True)  # a fresh worker, not one an earlier test patched
    ex = get_reusable_executor(max_workers=1)
    try:
        pids = [ex.submit(_grow_and_report, keep, 200).result(timeout=120) for _ in range(4)]
    finally:
        ex.shutdown(wait=True)
    if keep:
        assert len(set(pids)) == 1, pids
    else:
        assert pids[:3] == [pids[0]] * 3 and pids[3] != pids[0], pids


def test_two_workers_equal_one_where_a_model_is_trained_on_a_worker(tmp_path):
    """CNNIQA trained here: with --jobs 2 it is trained on a worker (all cores) and its
    cells run on workers of one thread each; from empty caches both runs must give exactly
    the same numbers, trained weights included."""
    import os
    import subprocess
    import sys

    import torch
    from test_interrupts import TRAINS, fresh_cache

    matrix = tmp_path / "m.toml"
    matrix.write_text(TRAINS.format(epochs=2, defenses="jpeg = {}"))
    # torch's own thread count in the serial run: all the cores, 1 thread each on the workers
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_CBWR")}
    frames, weights = [], []
    for jobs in ("1", "2"):
        cache, res = fresh_cache(tmp_path / f"cache-{jobs}"), tmp_path / f"r{jobs}"
        done = subprocess.run([sys.executable, "-m", "bench", "run", "--matrix", str(matrix), "--results", str(res),
                               "--no-site", "--no-progress", "--jobs", jobs],
                              env={**env, "BENCH_CACHE": str(cache)}, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("4 cells: 0 already in the store, 4 ok ("), done.stdout
        df = records_frame(list(ResultsStore(res).records()))
        assert (df["weights_source"] == "trained here").all()
        drop = [c for c in [*TIMING, "weights_path"] if c in df.columns]  # the path names each run's own cache
        frames.append(df.drop(columns=drop).sort_values(["defense", "attack"]).reset_index(drop=True))
        (pt,) = (cache / "models").glob("cnniqa-*.pt")
        weights.append(torch.load(pt, weights_only=True))
    serial, parallel = frames
    assert len(serial) == 4
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0]), "trained weights differ"
    assert serial.equals(parallel)


def test_fits_run_on_every_core_whatever_the_process_default(tmp_path, monkeypatch):
    """A model trained here and a defense fitted get all the cores' threads in every
    process: a serial run (torch's default, or OMP_NUM_THREADS) must train what a --jobs
    worker (all cores) trains, and a convolution's weight gradient depends on the count."""
    import os

    import torch
    from test_interrupts import fresh_cache

    from bench.api import DATASETS, MODELS, Defense, DefenseInfo
    from bench.matrix import Spec
    from bench.plugins import load_plugins
    from bench.workbench import Workbench

    monkeypatch.setenv("BENCH_CACHE", str(fresh_cache(tmp_path / "cache")))
    load_plugins()
    seen = {}
    cnniqa = MODELS.get("cnniqa")
    real_fit = cnniqa.fit

    def fit(self, ctx):
        seen["model"] = torch.get_num_threads()
        real_fit(self, ctx)

    monkeypatch.setattr(cnniqa, "fit", fit)

    class ThreadProbe(Defense):
        info = DefenseInfo(name="thread-probe", kind="training")

        def fit(self, model, ctx):
            seen["defense"] = torch.get_num_threads()

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ds = Spec("dataset", "embedded", {"size": 48, "n_images": 8, "test_fraction": 0.9},
                  DATASETS.get("embedded").info.version)
        model = Spec("model", "cnniqa", {**cnniqa.defaults, "epochs": 1}, cnniqa.info.version)
        Workbench(seed=0, log=lambda m: None).defended(Spec("defense", "thread-probe", {}, "1"), ThreadProbe(),
                                                       model, ds)
        assert torch.get_num_threads() == 1  # handed back
    finally:
        torch.set_num_threads(before)
    assert seen == {"model": os.cpu_count(), "defense": os.cpu_count()}
