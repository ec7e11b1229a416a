"""--jobs N runs groups on a process pool and gives the same numbers as a serial run."""

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


def test_two_workers_equal_one(tmp_path):
    (tmp_path / "m.toml").write_text(MATRIX)
    frames = []
    for jobs in (1, 2):
        res = tmp_path / f"r{jobs}"
        assert main(["run", "--matrix", str(tmp_path / "m.toml"), "--results", str(res), "--no-site",
                     "--no-progress", "--jobs", str(jobs)]) == 0
        df = records_frame(list(ResultsStore(res).records()))
        frames.append(df.drop(columns=["seconds", "setup_seconds", "prov_date", "prov_hardware"]))
    assert len(frames[0]) == 2 and frames[0].equals(frames[1])
