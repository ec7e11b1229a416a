"""Reading a dataset's score files (CSV, spreadsheet, MATLAB) into columns and numbers,
with a file that is not the official one reported by dataset, path and line
(`ScoreFileError`); apart from `bench.datasets.files`, which re-exports them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.api import BenchError, quoted


class ScoreFileError(BenchError):
    """A score file (or the images it lists) that does not match the official format."""

    exit_code = 2


# Only an empty field is missing: "n/a", "NaN" or "-" stay the text they are, so that a
# score that is not a number is reported as it is written in the file (pandas' default
# list would turn them into NaN before anyone could say what was there).
ONLY_EMPTY_IS_MISSING = {"keep_default_na": False, "na_values": [""]}


def read_csv(path: Path, dataset: str, columns: Iterable[str] = (), **kw: Any) -> pd.DataFrame:
    """pandas.read_csv, with a bad or incomplete file reported by dataset and path."""
    try:
        df = pd.read_csv(path, **{**ONLY_EMPTY_IS_MISSING, **kw})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        raise ScoreFileError(f"dataset '{dataset}': score file '{path}' cannot be read ({type(e).__name__}: "
                             f"{str(e).strip()}); replace it with the file from the official release") from None
    return require_columns(df, columns, path, dataset)


def read_excel(path: Path, dataset: str, columns: Iterable[str] = (), **kw: Any) -> pd.DataFrame:
    """pandas.read_excel (openpyxl), with errors reported like read_csv's."""
    try:
        df = pd.read_excel(path, engine="openpyxl", **{**ONLY_EMPTY_IS_MISSING, **kw})
    except ImportError:
        raise ScoreFileError(f"dataset '{dataset}': reading '{path}' needs openpyxl: pip install openpyxl") from None
    except (OSError, ValueError, KeyError, Exception) as e:  # noqa: BLE001 - openpyxl raises many kinds
        raise ScoreFileError(f"dataset '{dataset}': spreadsheet '{path}' cannot be read ({type(e).__name__}: "
                             f"{str(e).strip()}); replace it with the file from the official release") from None
    return require_columns(df, columns, path, dataset)


def read_mat(path: Path, dataset: str, key: str) -> np.ndarray:
    """One variable of a MATLAB file (scipy.io.loadmat), reported by name when absent."""
    from scipy.io import loadmat

    try:
        data = loadmat(path)
    except (OSError, ValueError, TypeError, NotImplementedError) as e:
        raise ScoreFileError(f"dataset '{dataset}': MATLAB file '{path}' cannot be read ({type(e).__name__}: "
                             f"{e}); replace it with the file from the official release") from None
    if key not in data:
        found = ", ".join(k for k in data if not k.startswith("__")) or "none"
        raise ScoreFileError(f"dataset '{dataset}': '{path}' has no variable '{key}' (found: {found}); "
                             f"it is not the official file")
    return data[key]


def require_columns(df: pd.DataFrame, columns: Iterable[str], path: Path, dataset: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ScoreFileError(f"dataset '{dataset}': '{path}' lacks column(s) {', '.join(map(repr, missing))} "
                             f"(has: {', '.join(map(str, df.columns))}); it is not the official file")
    return df


def numbers(values: Any, path: Path, dataset: str, what: str = "score", first_line: int = 2,
            lines: Iterable[int] | None = None) -> np.ndarray:
    """Scores as float64. The first entry that is not a finite number is reported with
    the text found there and where: its line (text files), row (spreadsheets) or entry
    (MATLAB files), counted from `first_line` or given per entry in `lines`."""
    s = pd.Series(np.asarray(values).ravel())
    out = pd.to_numeric(s, errors="coerce")
    bad = np.flatnonzero(out.isna().to_numpy() | ~np.isfinite(out.to_numpy(dtype=float, na_value=np.nan)))
    if len(bad):
        i = int(bad[0])
        suffix = Path(path).suffix.lower()
        unit = "entry" if suffix == ".mat" else "row" if suffix in (".xlsx", ".xls") else "line"
        where = list(lines)[i] if lines is not None else i + first_line
        n = f"{len(bad)} such entr{'y' if len(bad) == 1 else 'ies'}"
        raise ScoreFileError(f"dataset '{dataset}': {what} at {unit} {where} of '{path}' is not a number: found "
                             f"{_found(s.iloc[i], suffix == '.mat')} ({n}); fix the file or re-download it")
    return out.to_numpy(dtype=np.float64)


def _found(value: Any, binary: bool) -> str:
    """What a score file holds where a number should be, as its user would recognise it:
    the text quoted; in a text file or spreadsheet a missing value is an empty field; a
    MATLAB file holds numbers, so there it is NaN or inf as stored."""
    if isinstance(value, str):
        return quoted(value) if value.strip() else f"{quoted(value)} (blank)"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return quoted(value)
    if np.isnan(number):
        return "NaN" if binary else "an empty field"
    return str(number)
