"""`bench export`: what it writes, read back with pandas, is the store's records_frame:
the same columns in the same order, the same rows, the same values."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_site import HOSTILE, build_store, small_records

from bench.cli import main
from bench.store import ResultsStore, records_frame


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = build_store(tmp_path_factory.mktemp("export") / "results", small_records())
    df = records_frame(list(ResultsStore(root).records()))
    # what the comparison below relies on: rows of every status, missing numbers, a hostile name
    assert set(df["status"]) == {"ok", "error", "skipped"} and df["abs_gain"].isna().any()
    assert HOSTILE in set(df["defense"]) and len(df) == len(small_records())
    return root, df


def _export(root: Path, fmt: str, out: Path) -> Path:
    assert main(["export", "--results", str(root), "--format", fmt, "--out", str(out)]) == 0
    return out


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _same_values(got: pd.DataFrame, want: pd.DataFrame, *, text_missing_as_empty: bool, atol: float = 0.0) -> None:
    """Column by column: numbers equal (NaN where NaN), text equal; CSV cannot tell an
    empty text from a missing one, so there both read as ''."""
    assert got.columns.tolist() == want.columns.tolist()
    assert len(got) == len(want)
    assert got["key"].tolist() == want["key"].tolist()  # the same rows, in the same order
    for col in want.columns:
        w, g = want[col].tolist(), got[col].tolist()
        if pd.api.types.is_numeric_dtype(want[col]) and not pd.api.types.is_bool_dtype(want[col]):
            np.testing.assert_allclose(np.asarray(g, dtype=float), np.asarray(w, dtype=float), rtol=0, atol=atol,
                                       equal_nan=True, err_msg=col)
            continue
        if text_missing_as_empty:
            w = ["" if _missing(v) else v for v in w]
            g = ["" if _missing(v) else v for v in g]
        else:
            w = [None if _missing(v) else v for v in w]
            g = [None if _missing(v) else v for v in g]
        assert g == w, col


def test_parquet_round_trips_exactly(store: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    root, df = store
    got = pd.read_parquet(_export(root, "parquet", tmp_path / "cells.parquet"))
    pd.testing.assert_frame_equal(got, df)  # dtypes included


def test_csv_round_trips(store: tuple[Path, pd.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture[str]) \
        -> None:
    root, df = store
    path = _export(root, "csv", tmp_path / "cells.csv")
    got = pd.read_csv(path)
    _same_values(got, df, text_missing_as_empty=True)
    assert got["model_lower_better"].tolist() == df["model_lower_better"].tolist()  # booleans stay booleans
    # without --out: the same text on stdout
    capsys.readouterr()
    assert main(["export", "--results", str(root), "--format", "csv"]) == 0
    assert capsys.readouterr().out == path.read_text()


def test_json_round_trips(store: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    root, df = store
    path = _export(root, "json", tmp_path / "cells.json")
    got = pd.read_json(path, orient="records", dtype=False)  # dtype=False: no guessing, no dates
    # pandas writes floats with 10 decimals (to_json's double_precision default)
    _same_values(got, df, text_missing_as_empty=False, atol=1e-10)
    assert got["model_lower_better"].tolist() == df["model_lower_better"].tolist()


def test_parquet_needs_out(store: tuple[Path, pd.DataFrame], capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = store
    assert main(["export", "--results", str(root), "--format", "parquet"]) == 1
    assert capsys.readouterr().err == "error: --format parquet writes binary: give --out FILE\n"
