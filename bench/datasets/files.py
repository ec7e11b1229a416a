"""What every real dataset loader shares: finding its root, recognising the layout it
was extracted in, reading score files into one table, and building lazy splits.

A loader declares one `Layout` per way the dataset is distributed (the official release,
pyiqa's meta-info CSV), each with the files that must be there and a function that reads
them into a table with one row per distorted image:

    name       the image as the score file names it ("10004473376.jpg", "jp2k/img1.bmp")
    image      its path on disk
    mos        its score, on the dataset's own scale
    ref        its reference image's name; the image's own name for authentic sets
    ref_image  the reference's path on disk, or None

Reading the table opens no image: it is one score file and one directory listing per
image folder (a 10,073-row KonIQ-10k list reads in well under a second).

When decoding is checked: `split` checks exactly the images it returns, once, before any
model sees them. With `verify = "decode"` (the default) each is opened and decoded at a
reduced JPEG scale, which catches truncated files (results are cached, see
`bench.datasets.checks`); `"header"` only opens
headers (catches non-images and tiny images, not truncation; a truncated file then fails
with an error naming it when it is first read). Files that fail are skipped with a
warning (one line per split, on stderr) and counted in the split's notes (`skipped`,
`skipped_files`), which every record keeps for both splits; files that are not 8-bit RGB are counted by conversion (`converted`, e.g. {"L->RGB": 3}), read from the
header, and converted on load as `bench.images.load_image` documents. A stratified
`n_images` sample that loses a file this way is one image short, not refilled.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from bench.api import (
    MIN_SIDE,
    BenchError,
    Field,
    ImageError,
    IQADataset,
    IQASplit,
    LazyImages,
    Params,
    quoted,
    warn,
)
from bench.datasets.checks import check_files
from bench.datasets.roots import CONFIG_NAME, DataRootError, env_var, find_root
from bench.datasets.sampling import split_groups, stratified

VERIFY_MODES = ("decode", "header")


class ScoreFileError(BenchError):
    """A score file (or the images it lists) that does not match the official format."""

    exit_code = 2


@dataclass(frozen=True)
class Layout:
    """One way a dataset is laid out under its root.

    `needs`: paths relative to the root that must exist (folders end in "/"; "a/|b/"
    means either). `read(root)` returns the table described in the module docstring.
    """

    name: str
    needs: tuple[str, ...]
    read: Callable[[Path], pd.DataFrame]

    def missing(self, root: Path) -> list[str]:
        return [need for need in self.needs if not any((root / alt).exists() for alt in need.split("|"))]


def present(root: Path, need: str) -> Path:
    """The first alternative of a layout's `need` ("a/|b/") present under root."""
    return next((root / alt for alt in need.split("|") if (root / alt).exists()), root / need.split("|")[0])


# ----------------------------------------------------------------------------- reading score files
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


# ----------------------------------------------------------------------------- finding the images
class FileIndex:
    """The files under a folder, found by their relative path or, failing that, their
    base name, both case-insensitively (TID2013 lists `i01_01_1.bmp` for `I01_01_1.BMP`;
    PIPAL's distorted images sit in several `Distortion_*` folders). By base name only
    where the folders the name lists do not contradict the file's: LIVE's `jpeg/img5.bmp`
    is never `jp2k/img5.bmp`, even when it is the only img5.bmp left. One listing, no stat
    per file."""

    def __init__(self, folders: Iterable[Path], recursive: bool = False) -> None:
        self.folders = list(folders)
        self._by_rel: dict[str, str] = {}
        self._by_base: dict[str, str] = {}  # base name -> its relative path
        for folder in self.folders:
            for path in _walk(folder, recursive):
                rel = os.path.relpath(path, folder).replace(os.sep, "/").lower()
                self._by_rel.setdefault(rel, path)
                base = rel.rsplit("/", 1)[-1]
                # A base name found twice is ambiguous: only its full relative path finds it.
                self._by_base[base] = "" if base in self._by_base else rel

    def get(self, name: str) -> str | None:
        key = name.replace("\\", "/").lower()
        if key in self._by_rel:
            return self._by_rel[key]
        rel = self._by_base.get(key.rsplit("/", 1)[-1])
        if not rel or not (f"/{key}".endswith(f"/{rel}") or f"/{rel}".endswith(f"/{key}")):
            return None
        return self._by_rel[rel]

    def locate(self, names: Iterable[str], listed_in: Path, dataset: str) -> list[str]:
        """Paths of `names`; all absent ones are reported together, by name."""
        names = list(names)
        paths = [self.get(n) for n in names]
        missing = [n for n, p in zip(names, paths, strict=True) if p is None]
        if missing:
            where = ", ".join(f"'{f}'" for f in self.folders)
            raise ScoreFileError(
                f"dataset '{dataset}': {len(missing)} of {len(names)} image(s) listed in '{listed_in}' are not in "
                f"{where} (first: {', '.join(missing[:3])}); the download is incomplete: extract the archive again")
        return paths  # type: ignore[return-value]


def _walk(folder: Path, recursive: bool) -> Iterable[str]:
    if not recursive:
        with os.scandir(folder) as it:
            yield from (e.path for e in it if e.is_file())
        return
    for dirpath, _, files in os.walk(folder):
        yield from (os.path.join(dirpath, f) for f in files)


def table(names: Iterable[str], images: list[str], mos: np.ndarray, refs: Iterable[str] | None = None,
          ref_images: list[str] | None = None) -> pd.DataFrame:
    """The loaders' common table (see the module docstring)."""
    names = [str(n) for n in names]
    return pd.DataFrame({
        "name": names, "image": images, "mos": np.asarray(mos, dtype=np.float64),
        "ref": names if refs is None else [str(r) for r in refs],
        "ref_image": [None] * len(names) if ref_images is None else ref_images,
    })


# ----------------------------------------------------------------------------- the base class
class FileDataset(IQADataset):
    """A dataset read from files under a root folder; subclasses declare `layouts`.

    Parameters: `root` (None: from --data-root, $BENCH_DATA_<NAME> or a config file; see
    `bench.datasets.roots`), `size` (each image's shorter side is resized to it, Lanczos,
    then centre-cropped to size x size so batches stack), `test_fraction` (share of
    reference images, or of images for authentic sets, on the test side), `n_images` and
    `n_train` (thin the test / train side to this many images, one per equal-count MOS
    stratum, so the score spread is kept), `verify` ("decode" or "header", see above).
    """

    layouts: ClassVar[tuple[Layout, ...]] = ()
    by_image: ClassVar[bool] = False  # authentic distortions: every image is its own group

    class Params(Params):
        root: str | None = Field(None, description="folder holding the dataset (None: from --data-root, "
                                 "$BENCH_DATA_<NAME> or bench-data.toml; a root given here is part of the keys)")
        size: int = Field(384, ge=MIN_SIDE, description="side of the square each image is resized (shorter side, "
                          "Lanczos) and centre-cropped to, px")
        test_fraction: float = Field(0.2, gt=0, lt=1, description="share of references (of images, for authentic "
                                     "sets) on the test side, drawn with the seed")
        n_images: int | None = Field(None, ge=1, description="thin the test side to this many images, one per "
                                     "equal-count MOS stratum (None: all)")
        n_train: int | None = Field(None, ge=1, description="thin the train side likewise (None: all)")
        verify: Literal["decode", "header"] = Field("decode", description="check before use: decode every image "
                                                    "once (cached), or read only headers")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._table: pd.DataFrame | None = None
        self._root = Path()
        self.layout: Layout | None = None
        self._ref_of: dict[str, str | None] = {}

    # -- where and how
    @classmethod
    def expected(cls) -> str:
        return " or ".join(f"{lay.name} ({', '.join(lay.needs)})" for lay in cls.layouts)

    def root(self) -> Path:
        name, url = self.info.name, self.info.reference
        if self.params["root"] is not None:
            root, where = Path(str(self.params["root"])).expanduser(), "the matrix's root parameter"
        else:
            found, where = find_root(name)
            if found is None:
                raise DataRootError(f"dataset '{name}': no root configured (looked at {where}); extract the "
                                    f"dataset (published at {url}) into a folder holding {self.expected()} and give "
                                    f"it with --data-root {name}=PATH, ${env_var(name)} or a line "
                                    f"{name} = \"PATH\" in {CONFIG_NAME}")
            root = found
        if not root.is_dir():
            raise DataRootError(f"dataset '{name}': root '{root}' (from {where}) is not a directory; extract the "
                                f"dataset (published at {url}) there so that it holds {self.expected()}, or give "
                                f"the folder that does with --data-root {name}=PATH")
        return root

    def find_layout(self, root: Path) -> Layout:
        for lay in self.layouts:
            if not lay.missing(root):
                return lay
        why = "; ".join(f"{lay.name} layout lacks {', '.join(lay.missing(root))}" for lay in self.layouts)
        raise DataRootError(f"dataset '{self.info.name}': root '{root}' does not hold it ({why}); extract the "
                            f"release there (published at {self.info.reference}) or fix --data-root "
                            f"{self.info.name}=PATH / ${env_var(self.info.name)}")

    @classmethod
    def root_status(cls) -> str:
        """One cheap line for `bench list datasets`: where the root is and whether it
        holds a known layout (stat calls only, no file is read)."""
        found, where = find_root(cls.info.name)
        if found is None:
            return f"root: not configured (--data-root {cls.info.name}=PATH, ${env_var(cls.info.name)} or bench-data.toml)"
        for lay in cls.layouts:
            if not lay.missing(found):
                return f"root: {found} (from {where}; {lay.name} layout found)"
        return f"root: {found} (from {where}) but no layout found there; expected {cls.expected()}"

    def table(self) -> pd.DataFrame:
        """The dataset's table of all images (read once; no image is opened)."""
        if self._table is None:
            root = self._root = self.root()
            self.layout = self.find_layout(root)
            df = self.layout.read(root)
            if df["name"].duplicated().any():
                dup = df.loc[df["name"].duplicated(), "name"].iloc[0]
                raise ScoreFileError(f"dataset '{self.info.name}': image '{dup}' is listed twice in its score file "
                                     f"under '{root}'; re-download the file")
            if len(df) == 0:
                raise ScoreFileError(f"dataset '{self.info.name}': the score file under '{root}' lists no image")
            self._table = df.reset_index(drop=True)
            self._ref_of = dict(zip(self._table["name"], self._table["ref_image"], strict=True))
        return self._table

    # -- splits
    def split(self, seed: int) -> tuple[IQASplit, IQASplit]:
        df = self.table()
        mos = df["mos"].to_numpy()
        groups = df["name"].to_numpy() if self.by_image else df["ref"].to_numpy()
        try:
            in_test = split_groups(groups, self.params["test_fraction"], seed)
        except ValueError as e:
            raise ScoreFileError(f"dataset '{self.info.name}': {e}") from None
        out = []
        for side, mask, n in (("train", ~in_test, self.params["n_train"]), ("test", in_test, self.params["n_images"])):
            idx = np.flatnonzero(mask)
            if n is not None and n < len(idx):
                idx = stratified(idx, mos[idx], n, seed + (0 if side == "test" else 1))
            out.append(self._make_split(df, idx, side))
        return out[0], out[1]

    def _make_split(self, df: pd.DataFrame, idx: np.ndarray, side: str = "test") -> IQASplit:
        keep, skipped, converted, why = [], [], {}, []
        paths = df["image"].iloc[idx].tolist()
        results = check_files(paths, self.params["verify"] == "decode", self.info.name, self._root)
        for i, res in zip(idx, results, strict=True):
            if isinstance(res, ImageError):
                skipped.append(str(df["name"].iat[i]))
                why.append(str(res))
                continue
            if res:
                converted[res] = converted.get(res, 0) + 1
            keep.append(int(i))
        if skipped:
            warn(skipped_line(self.info.name, side, why))
        rows = df.iloc[keep]
        notes: dict[str, Any] = {"dataset_layout": self.layout.name if self.layout else "?",
                                 "verify": self.params["verify"], "size": self.params["size"],
                                 "skipped": len(skipped), "skipped_files": skipped, "converted": converted}
        return IQASplit(
            images=LazyImages(rows["image"].tolist(), self.params["size"]),  # type: ignore[arg-type]
            mos=torch.tensor(rows["mos"].to_numpy(), dtype=torch.float32),
            names=rows["name"].tolist(),
            refs=rows["ref"].tolist(),
            notes=notes,
        )

    def references(self, split: IQASplit) -> LazyImages:
        """The reference image of each of `split`'s images, lazily, at the same size
        (FR sets only; authentic sets have none)."""
        if self.info.mode != "FR":
            raise DataRootError(f"dataset '{self.info.name}' has no reference images (mode {self.info.mode})")
        self.table()
        return LazyImages([self._ref_of[n] for n in split.names], self.params["size"])  # type: ignore[misc]


def skipped_line(dataset: str, side: str, reasons: list[str], shown: int = 3) -> str:
    """One warning for all the files a split lost: how many, and why for the first few
    (a damaged download can lose thousands; one line each would bury everything else)."""
    n = len(reasons)
    more = f"; and {n - shown} more, listed in each record's data notes" if n > shown else ""
    return (f"dataset '{dataset}': skipped {n} file{'s' if n != 1 else ''} of the {side} split "
            f"({'; '.join(reasons[:shown])}{more})")


# ----------------------------------------------------------------------------- pyiqa's layout
# pyiqa (0.1.16, `pyiqa/default_dataset_configs.yml`) keeps every dataset under one
# `datasets/` folder: score tables in `meta_info/meta_info_<Name>Dataset.csv` (downloaded
# from the Hugging Face repo chaofengc/IQA-PyTorch-Datasets-metainfo), images in the
# dataset's own folder. Its GeneralNRDataset reads columns by position (0: image, 1: MOS)
# and its GeneralFRDataset likewise (0: reference, 1: distorted image, 2: MOS); so do these.
def pyiqa_nr(dataset: str, meta: str, images: str, skip: int = 0) -> Layout:
    """pyiqa's no-reference layout: root is pyiqa's `datasets/` folder."""
    csv = f"meta_info/{meta}"

    def read(root: Path) -> pd.DataFrame:
        df = read_csv(root / csv, dataset).iloc[skip:]
        if df.shape[1] < 2:
            raise ScoreFileError(f"dataset '{dataset}': '{root / csv}' needs an image and a MOS column")
        names = df.iloc[:, 0].astype(str)
        mos = numbers(df.iloc[:, 1], root / csv, dataset, first_line=2 + skip)
        folder = present(root, images)
        return table(names, FileIndex([folder], recursive=True).locate(names, root / csv, dataset), mos)

    return Layout("pyiqa", (csv, images), read)


def pyiqa_fr(dataset: str, meta: str, images: str, refs: str | None = None) -> Layout:
    """pyiqa's full-reference layout: root is pyiqa's `datasets/` folder; references are
    looked up in `refs` (or beside the images where pyiqa names them so, as for LIVE)."""
    csv = f"meta_info/{meta}"

    def read(root: Path) -> pd.DataFrame:
        df = read_csv(root / csv, dataset)
        if df.shape[1] < 3:
            raise ScoreFileError(f"dataset '{dataset}': '{root / csv}' needs reference, image and MOS columns")
        ref_names, names = df.iloc[:, 0].astype(str), df.iloc[:, 1].astype(str)
        mos = numbers(df.iloc[:, 2], root / csv, dataset)
        dist = FileIndex([root / images], recursive=True)
        ref_index = dist if refs is None else FileIndex([root / refs], recursive=True)
        return table(names, dist.locate(names, root / csv, dataset), mos, ref_names,
                     ref_index.locate(ref_names, root / csv, dataset))

    return Layout("pyiqa", (csv, images) + ((refs,) if refs else ()), read)
