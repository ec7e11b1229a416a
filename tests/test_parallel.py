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
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
        df = _run(tmp_path, "rd", "--backend", "dask", "--scheduler", cl.scheduler_address)
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

    from bench.parallel import keep_worker_caches

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
    and must stay, or every task pays start-up and reloads its models."""
    import time

    from joblib import Parallel, delayed
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)  # fresh workers, not ones an earlier test patched
    pids = []
    for _ in range(3):  # loky checks at most once a second
        pids += Parallel(n_jobs=2, backend="loky")(delayed(_grow_and_report)(keep, 200) for _ in range(4))
        time.sleep(1.1)
    get_reusable_executor().shutdown(wait=True)
    assert (len(set(pids)) <= 2) == keep, pids
