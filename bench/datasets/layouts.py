"""How a dataset lies under its root (`Layout`, pyiqa's layouts), finding the images its
score file lists (`FileIndex`), and the table every layout reads; apart from
`bench.datasets.files`, which re-exports them beside `FileDataset`.

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
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.datasets.scorefiles import ScoreFileError, numbers, read_csv


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


OFFICIAL_SIDES = ("train", "val", "test")


def table(names: Iterable[str], images: list[str], mos: np.ndarray, refs: Iterable[str] | None = None,
          ref_images: list[str] | None = None, official: Iterable[str] | None = None) -> pd.DataFrame:
    """The loaders' common table (see the module docstring); `official`, where the release
    has one, is each image's side of its own split (one of OFFICIAL_SIDES)."""
    names = [str(n) for n in names]
    df = pd.DataFrame({
        "name": names, "image": images, "mos": np.asarray(mos, dtype=np.float64),
        "ref": names if refs is None else [str(r) for r in refs],
        "ref_image": [None] * len(names) if ref_images is None else ref_images,
    })
    if official is not None:
        df["official"] = list(official)
    return df


def official_sides(values: pd.Series, path: Path, dataset: str, words: dict[str, str]) -> list[str]:
    """A release's split column turned into OFFICIAL_SIDES through `words` (its own
    names for them); a value it does not know is named with its line."""
    out = []
    for line, v in enumerate(values.astype(str).str.strip().str.lower(), start=2):
        if v not in words:
            raise ScoreFileError(f"dataset '{dataset}': '{path}' line {line}: split '{v}' is none of "
                                 f"{', '.join(sorted(words))}; re-download the file")
        out.append(words[v])
    return out


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
        # pyiqa's tables carry the release's own split, where it has one, as `official_split`
        split = (official_sides(df["official_split"], root / csv, dataset, {s: s for s in OFFICIAL_SIDES})
                 if "official_split" in df.columns else None)
        return table(names, FileIndex([folder], recursive=True).locate(names, root / csv, dataset), mos,
                     official=split)

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
