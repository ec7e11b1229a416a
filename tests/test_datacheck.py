"""A matrix's data is checked once, before any cell: a missing root or a broken score
file stops `bench run` with one line and exit status 2, and the store is left alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_datasets import WRITERS, _clean_env, make, tiny  # noqa: F401 - _clean_env: autouse fixture

from bench.cli import main
from bench.datasets.files import ScoreFileError
from bench.matrix import load_matrix

MATRIX = """
name = "needs-csiq"
[models]
piqe = {}
[defenses]
none = {}
[attacks]
fgsm = { eps = [4, 8] }
[datasets]
csiq = { size = 32 }
"""
OLD_RECORD = b'{"an": "earlier record"}'


def _store_with_an_old_record(tmp_path: Path) -> Path:
    cells = tmp_path / "R" / "cells"
    cells.mkdir(parents=True)
    (cells / "abc123.json").write_bytes(OLD_RECORD)
    return tmp_path / "R"


def _run(tmp_path: Path, *extra: str) -> int:
    m = tmp_path / "m.toml"
    m.write_text(MATRIX)
    return main(["run", "--matrix", str(m), "--results", str(tmp_path / "R"), "--no-site", "--no-progress", *extra])


def _untouched(results: Path) -> None:
    assert sorted(p.name for p in results.rglob("*")) == ["abc123.json", "cells"]  # no record, no runs.jsonl
    assert (results / "cells" / "abc123.json").read_bytes() == OLD_RECORD


def test_missing_root_stops_the_run_before_any_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = _store_with_an_old_record(tmp_path)
    assert _run(tmp_path) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    for part in ("error: dataset 'csiq': no root configured", "--data-root csiq=PATH", "$BENCH_DATA_CSIQ",
                 "csiq.DMOS.xlsx", "https://s2.smu.edu/~eclarson/csiq.html", "nothing was computed"):
        assert part in err, (part, err)
    _untouched(results)


def test_score_that_is_not_a_number_stops_the_run_quoting_text_and_row(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    _, t = tiny(tmp_path, "csiq", bad=True)  # the first score of the sheet is "n/a", on its row 3
    results = _store_with_an_old_record(tmp_path)
    assert _run(tmp_path, "--data-root", f"csiq={t.root}") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"dataset 'csiq': score at row 3 of '{t.root / 'csiq.DMOS.xlsx'}' is not a number: found 'n/a'" in err
    assert "np.float64" not in err and "fix the file or re-download it" in err
    _untouched(results)


def test_readable_data_passes_the_check(tmp_path: Path) -> None:
    from bench.datacheck import check_data

    _, t = tiny(tmp_path, "csiq-label")
    m = tmp_path / "m.toml"
    m.write_text(MATRIX.replace("csiq = { size = 32 }", f"csiq = {{ size = 32, root = '{t.root}' }}"))
    check_data(load_matrix(str(m)))  # raises nothing


@pytest.mark.parametrize("case", sorted(WRITERS))
def test_a_bad_score_is_shown_as_written(tmp_path: Path, case: str) -> None:
    name, t = tiny(tmp_path, case, bad=True)
    with pytest.raises(ScoreFileError) as e:
        make(name, t.root).table()
    # text files and spreadsheets hold "n/a" (pandas would have made it NaN); MATLAB files a NaN
    shown = "found NaN" if t.score_file.suffix == ".mat" else "found 'n/a'"
    assert shown in str(e.value) and "np.float64" not in str(e.value), str(e.value)


def test_on_a_dask_cluster_the_check_only_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.datacheck import DataCheckError, check_before_run

    m = tmp_path / "m.toml"
    m.write_text(MATRIX)
    matrix = load_matrix(str(m))
    with pytest.raises(DataCheckError, match=r"^dataset 'csiq': no root configured .*nothing was computed"):
        check_before_run(matrix, "local")
    check_before_run(matrix, "dask")  # the workers may see data this machine does not
    err = capsys.readouterr().err
    assert err.startswith("warning: dataset 'csiq': no root configured") and err.count("\n") == 1
    assert err.endswith("(on this machine; running anyway: the Dask workers may see other folders)\n")
