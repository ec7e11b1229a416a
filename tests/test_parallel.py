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
