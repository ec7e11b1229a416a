"""Real-dataset loaders, each on a tiny root written here in its official (or pyiqa's)
layout from photos that ship with scikit-image; lazy images; data roots; bad input."""

from __future__ import annotations

import os
import pickle
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageFilter
from scipy.io import savemat

from bench.api import DATASETS, create_dataset
from bench.datasets.files import FileDataset, ScoreFileError
from bench.datasets.roots import DataRootError, apply_cli_roots, env_var, find_root
from bench.images import ImageError, LazyImages

SIZE = 32  # loaders' `size` in these tests: the smallest allowed
N_REFS, N_LEVELS, N_NR = 5, 3, 15


# ----------------------------------------------------------------------------- tiny roots
@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No user config or BENCH_DATA_* variable leaks in or out (`--data-root` writes the
    environment); cwd is the test's own folder."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("BENCH_DATA_")}
    for k in saved:
        del os.environ[k]
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    yield
    for k in [k for k in os.environ if k.startswith("BENCH_DATA_")]:
        del os.environ[k]
    os.environ.update(saved)


_PHOTOS: list[np.ndarray] = []


def photos() -> list[np.ndarray]:
    """Five colour photos from skimage.data, cut to 56 x 44 (not square: the loaders crop)."""
    if not _PHOTOS:
        import skimage.data

        for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field"):
            im = Image.fromarray(getattr(skimage.data, name)()).resize((56, 44), Image.Resampling.LANCZOS)
            _PHOTOS.append(np.asarray(im))
    return _PHOTOS


def save(path: Path, img: Image.Image | np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (img if isinstance(img, Image.Image) else Image.fromarray(img)).save(path)
    return path


@dataclass
class Item:
    """One distorted image of a tiny root: its reference index, level and score."""

    ref: int
    level: int
    mos: float

    def image(self) -> Image.Image:
        im = Image.fromarray(photos()[self.ref])
        return im.filter(ImageFilter.GaussianBlur(self.level)) if self.level else im


def fr_items() -> list[Item]:
    return [Item(r, lev, round(90 - 20 * lev - 3 * r, 3)) for r in range(N_REFS) for lev in range(1, N_LEVELS + 1)]


def nr_items() -> list[Item]:
    return [Item(i % N_REFS, i % 4, round(5 + 6.3 * i, 3)) for i in range(N_NR)]


def scores(items: list[Item], bad: bool) -> list[object]:
    """The items' scores, the first replaced by something that is not a number if `bad`."""
    return ["n/a" if bad and i == 0 else it.mos for i, it in enumerate(items)]


@dataclass
class Tiny:
    root: Path
    score_file: Path  # deleted by the missing-score-file test
    image: Path  # deleted by the image-absent test
    items: list[Item]
    # where given, exactly what the loader must read: name -> (score, image file, reference file or None)
    expected: dict[str, tuple[float, Path, Path | None]] | None = None


def _koniq(root: Path, bad: bool) -> Tiny:
    items = nr_items()
    names = [f"{1000 + i}.jpg" for i in range(len(items))]
    for n, it in zip(names, items, strict=True):
        save(root / "1024x768" / n, it.image())
    df = pd.DataFrame({"image_name": names, "c1": 0.1, "c2": 0.2, "c3": 0.4, "c4": 0.2, "c5": 0.1, "c_total": 100,
                       "MOS": [1 + m / 25 for m in (it.mos for it in items)], "SD": 0.5,
                       "MOS_zscore": scores(items, bad)})
    df.to_csv(root / "koniq10k_scores_and_distributions.csv", index=False)
    return Tiny(root, root / "koniq10k_scores_and_distributions.csv", root / "1024x768" / names[3], items)


def _koniq_pyiqa(root: Path, bad: bool) -> Tiny:
    items = nr_items()
    names = [f"{1000 + i}.jpg" for i in range(len(items))]
    for n, it in zip(names, items, strict=True):
        save(root / "koniq10k" / "512x384" / n, it.image())
    meta = root / "meta_info" / "meta_info_KonIQ10kDataset.csv"
    meta.parent.mkdir(parents=True)
    pd.DataFrame({"img_name": names, "mos": scores(items, bad), "std": 0.5, "split": "train"}).to_csv(meta, index=False)
    return Tiny(root, meta, root / "koniq10k" / "512x384" / names[3], items)


def _kadid(root: Path, bad: bool) -> Tiny:
    items = fr_items()
    for r in range(N_REFS):
        save(root / "images" / f"I{r + 1:02d}.png", photos()[r])
    names = [f"I{it.ref + 1:02d}_01_{it.level:02d}.png" for it in items]
    for n, it in zip(names, items, strict=True):
        save(root / "images" / n, it.image())
    pd.DataFrame({"dist_img": names, "ref_img": [f"I{it.ref + 1:02d}.png" for it in items],
                  "dmos": scores(items, bad), "var": 0.1}).to_csv(root / "dmos.csv", index=False)
    return Tiny(root, root / "dmos.csv", root / "images" / names[2], items)


def _tid2013(root: Path, bad: bool) -> Tiny:
    items = fr_items()
    for r in range(N_REFS):  # the release's reference names are upper case, the list's lower case
        save(root / "reference_images" / f"I{r + 1:02d}.BMP", photos()[r])
    names = [f"i{it.ref + 1:02d}_08_{it.level}.bmp" for it in items]
    for n, it in zip(names, items, strict=True):
        save(root / "distorted_images" / n.upper().replace(".BMP", ".bmp"), it.image())
    lines = [f"{s} {n}" for s, n in zip(scores(items, bad), names, strict=True)]
    (root / "mos_with_names.txt").write_text("\n".join(lines) + "\n")
    return Tiny(root, root / "mos_with_names.txt", root / "distorted_images" / "I01_08_2.bmp", items)


def _tid2013_pyiqa(root: Path, bad: bool) -> Tiny:
    items = fr_items()
    for r in range(N_REFS):
        save(root / "tid2013" / "reference_images" / f"I{r + 1:02d}.BMP", photos()[r])
    names = [f"I{it.ref + 1:02d}_08_{it.level}.bmp" for it in items]
    for n, it in zip(names, items, strict=True):
        save(root / "tid2013" / "distorted_images" / n, it.image())
    meta = root / "meta_info" / "meta_info_TID2013Dataset.csv"
    meta.parent.mkdir(parents=True)
    pd.DataFrame({"ref_name": [f"I{it.ref + 1:02d}.BMP" for it in items], "dist_name": names,
                  "mos": scores(items, bad), "std": 0.1}).to_csv(meta, index=False)
    return Tiny(root, meta, root / "tid2013" / "distorted_images" / names[1], items)


def _live(root: Path, bad: bool) -> Tiny:
    """All 982 entries of release 2's .mat files; the few with orgs = 0 have images."""
    from bench.datasets.live import FOLDERS

    items = fr_items()
    slots = [(f, i) for f, n in FOLDERS for i in range(1, n + 1)]
    dmos, orgs, refnames = np.zeros(len(slots)), np.ones(len(slots)), np.array([["x.bmp"] * len(slots)], dtype=object)
    for f, _ in FOLDERS:
        (root / f).mkdir(parents=True)
    for r in range(N_REFS):
        save(root / "refimgs" / f"ref{r}.bmp", photos()[r])
    picks = [FOLDERS[k % len(FOLDERS)][0] for k in range(len(items))]
    taken = []
    for k, (folder, it) in enumerate(zip(picks, items, strict=True)):
        j = slots.index((folder, k + 1))
        dmos[j], orgs[j], refnames[0, j] = 100 - it.mos, 0, f"ref{it.ref}.bmp"
        taken.append(save(root / folder / f"img{k + 1}.bmp", it.image()))
    if bad:
        dmos[slots.index((picks[0], 1))] = np.nan
    savemat(root / "dmos.mat", {"dmos": dmos[None], "orgs": orgs[None]})
    savemat(root / "refnames_all.mat", {"refnames_all": refnames})
    return Tiny(root, root / "dmos.mat", taken[2], items)


def _csiq(root: Path, bad: bool) -> Tiny:
    """The official spreadsheet (header on the second row, as a title row may precede it)."""
    items = fr_items()
    kinds = ["noise", "jpeg 2000", "blur"]
    folder = {"noise": ("awgn", "AWGN"), "jpeg 2000": ("jpeg2000", "jpeg2000"), "blur": ("blur", "BLUR")}
    rows = []
    for k, it in enumerate(items):
        kind = kinds[k % 3]
        sub, token = folder[kind]
        save(root / "dst_imgs" / sub / f"{1600 + it.ref}.{token}.{it.level}.png", it.image())
        rows.append([1600 + it.ref, k, kind, it.level, 0.01, scores(items, bad)[k]])
    for r in range(N_REFS):
        save(root / "src_imgs" / f"{1600 + r}.png", photos()[r])
    sheet = pd.DataFrame([["CSIQ DMOS", None, None, None, None, None],
                          ["image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"]] + rows)
    sheet.to_excel(root / "csiq.DMOS.xlsx", sheet_name="all_by_image", header=False, index=False)
    return Tiny(root, root / "csiq.DMOS.xlsx", root / "dst_imgs" / "awgn" / "1600.AWGN.1.png", items)


def _csiq_label(root: Path, bad: bool) -> Tiny:
    items = fr_items()
    names = [f"{1600 + it.ref}.BLUR.{it.level}.png" for it in items]
    for n, it in zip(names, items, strict=True):
        save(root / "dst_imgs" / n, it.image())
    for r in range(N_REFS):
        save(root / "src_imgs" / f"{1600 + r}.png", photos()[r])
    (root / "csiq_label.txt").write_text("".join(f"{n} {s}\n" for n, s in zip(names, scores(items, bad),
                                                                              strict=True)))
    return Tiny(root, root / "csiq_label.txt", root / "dst_imgs" / names[4], items)


def _livec(root: Path, bad: bool) -> Tiny:
    """Seven rater-training entries first (left out by the loader), then the photos."""
    items = nr_items()
    names = [f"t{i}.bmp" for i in range(1, 8)] + [f"{100 + i}.bmp" for i in range(len(items))]
    for n, it in zip(names[7:], items, strict=True):
        save(root / "Images" / n, it.image())
    mos = np.array([50.0] * 7 + [it.mos for it in items])
    if bad:
        mos[7] = np.nan
    (root / "Data").mkdir()
    savemat(root / "Data" / "AllImages_release.mat", {"AllImages_release": np.array(names, dtype=object)[:, None]})
    savemat(root / "Data" / "AllMOS_release.mat", {"AllMOS_release": mos[None]})
    return Tiny(root, root / "Data" / "AllMOS_release.mat", root / "Images" / names[9], items)


def _spaq(root: Path, bad: bool) -> Tiny:
    items = nr_items()
    names = [f"{i + 1:05d}.jpg" for i in range(len(items))]
    for n, it in zip(names, items, strict=True):
        save(root / "TestImage" / n, it.image())
    (root / "Annotations").mkdir()
    path = root / "Annotations" / "MOS and Image attribute scores.xlsx"
    pd.DataFrame({"Image name": names, "MOS": scores(items, bad), "Brightness": 50.0}).to_excel(path, index=False)
    return Tiny(root, path, root / "TestImage" / names[5], items)


def _pipal(root: Path, bad: bool) -> Tiny:
    items = fr_items()
    for r in range(N_REFS):
        save(root / "Train_Ref" / f"A{r + 1:04d}.bmp", photos()[r])
    names = [f"A{it.ref + 1:04d}_00_{it.level:02d}.bmp" for it in items]
    for k, (n, it) in enumerate(zip(names, items, strict=True)):  # spread over two Distortion_* folders
        save(root / f"Distortion_{1 + k % 2}" / n, it.image())
    (root / "Train_Label").mkdir()
    for r in range(N_REFS):
        lines = [f"{n},{1000 + 10 * s if not isinstance(s, str) else s}"
                 for n, s, it in zip(names, scores(items, bad), items, strict=True) if it.ref == r]
        (root / "Train_Label" / f"A{r + 1:04d}.txt").write_text("\n".join(lines) + "\n")
    return Tiny(root, root / "Train_Label" / "A0001.txt", root / "Distortion_2" / names[1], items)


def _pyiqa_meta(root: Path, meta: str, columns: dict[str, list[object]]) -> Path:
    """pyiqa's meta_info/<meta> table beside the image folders (root = pyiqa's datasets/)."""
    path = root / "meta_info" / meta
    path.parent.mkdir(parents=True)
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def _kadid_pyiqa(root: Path, bad: bool) -> Tiny:
    items = fr_items()
    folder = root / "kadid10k" / "images"
    refs = [save(folder / f"I{r + 1:02d}.png", photos()[r]) for r in range(N_REFS)]
    names = [f"I{it.ref + 1:02d}_01_{it.level:02d}.png" for it in items]
    paths = [save(folder / n, it.image()) for n, it in zip(names, items, strict=True)]
    meta = _pyiqa_meta(root, "meta_info_KADID10kDataset.csv",
                       {"ref_name": [f"I{it.ref + 1:02d}.png" for it in items], "dist_name": names,
                        "mos": scores(items, bad), "std": 0.1})
    expected = {n: (it.mos, p, refs[it.ref]) for n, it, p in zip(names, items, paths, strict=True)}
    return Tiny(root, meta, paths[2], items, expected)


def _live_pyiqa(root: Path, bad: bool) -> Tiny:
    """Names relative to LIVEIQA_release2/, numbered from 1 in each distortion folder as in
    the release, so that one base name (img1.bmp) sits in several folders."""
    from bench.datasets.live import FOLDERS

    items = fr_items()
    base = root / "LIVEIQA_release2"
    refs = [save(base / "refimgs" / f"ref{r}.bmp", photos()[r]) for r in range(N_REFS)]
    folders = [FOLDERS[k % 3][0] for k in range(len(items))]  # jp2k, jpeg, wn
    names = [f"{f}/img{k // 3 + 1}.bmp" for k, f in enumerate(folders)]
    paths = [save(base / n, it.image()) for n, it in zip(names, items, strict=True)]
    dmos = [s if isinstance(s, str) else round(100 - s, 3) for s in scores(items, bad)]
    meta = _pyiqa_meta(root, "meta_info_LIVEIQADataset.csv",
                       {"ref_name": [f"refimgs/ref{it.ref}.bmp" for it in items], "dist_name": names, "mos": dmos})
    expected = {n: (round(100 - it.mos, 3), p, refs[it.ref]) for n, it, p in zip(names, items, paths, strict=True)}
    return Tiny(root, meta, paths[-1], items, expected)


def _csiq_pyiqa(root: Path, bad: bool) -> Tiny:
    items = fr_items()
    base = root / "CSIQ"
    refs = [save(base / "src_imgs" / f"{1600 + r}.png", photos()[r]) for r in range(N_REFS)]
    subs = [("awgn", "AWGN"), ("blur", "BLUR"), ("jpeg2000", "jpeg2000")]
    names, paths = [], []
    for k, it in enumerate(items):
        sub, token = subs[k % 3]
        names.append(f"{1600 + it.ref}.{token}.{it.level}.png")
        paths.append(save(base / "dst_imgs" / sub / names[-1], it.image()))
    meta = _pyiqa_meta(root, "meta_info_CSIQDataset.csv", {"ref_name": [f"{1600 + it.ref}.png" for it in items],
                                                           "dist_name": names, "dmos": scores(items, bad)})
    expected = {n: (it.mos, p, refs[it.ref]) for n, it, p in zip(names, items, paths, strict=True)}
    return Tiny(root, meta, paths[4], items, expected)


def _livec_pyiqa(root: Path, bad: bool) -> Tiny:
    """The 7 rater-training images head the table (and are on disk): the loader skips them."""
    items = nr_items()
    base = root / "LIVEC"
    training = [f"Images/trainingImages/t{i}.bmp" for i in range(1, 8)]
    for k, n in enumerate(training):
        save(base / n, photos()[k % N_REFS])
    names = [f"Images/{100 + i}.bmp" for i in range(len(items))]
    paths = [save(base / n, it.image()) for n, it in zip(names, items, strict=True)]
    meta = _pyiqa_meta(root, "meta_info_LIVEChallengeDataset.csv",
                       {"img_name": training + names, "mos": [50.0] * 7 + scores(items, bad), "std": 1.0})
    expected = {n: (it.mos, p, None) for n, it, p in zip(names, items, paths, strict=True)}
    return Tiny(root, meta, paths[6], items, expected)


def _spaq_pyiqa(root: Path, bad: bool) -> Tiny:
    items = nr_items()
    names = [f"{i + 1:05d}.jpg" for i in range(len(items))]
    paths = [save(root / "SPAQ" / "TestImage" / n, it.image()) for n, it in zip(names, items, strict=True)]
    meta = _pyiqa_meta(root, "meta_info_SPAQDataset.csv",
                       {"Image name": names, "MOS": scores(items, bad), "Brightness": 50.0})
    expected = {n: (it.mos, p, None) for n, it, p in zip(names, items, paths, strict=True)}
    return Tiny(root, meta, paths[5], items, expected)


def _pipal_pyiqa(root: Path, bad: bool) -> Tiny:
    items = fr_items()
    base = root / "PIPAL"
    refs = [save(base / "Train_Ref" / f"A{r + 1:04d}.bmp", photos()[r]) for r in range(N_REFS)]
    names = [f"A{it.ref + 1:04d}_00_{it.level:02d}.bmp" for it in items]
    paths = [save(base / "Dist_Imgs" / n, it.image()) for n, it in zip(names, items, strict=True)]
    elo = [s if isinstance(s, str) else 1000 + 10 * s for s in scores(items, bad)]
    meta = _pyiqa_meta(root, "meta_info_PIPALDataset.csv",
                       {"hq_name": [f"A{it.ref + 1:04d}.bmp" for it in items], "dist_name": names, "elo_score": elo})
    expected = {n: (1000 + 10 * it.mos, p, refs[it.ref]) for n, it, p in zip(names, items, paths, strict=True)}
    return Tiny(root, meta, paths[3], items, expected)


def _pipal_train_dist(root: Path, bad: bool) -> Tiny:
    """The official layout with every distorted image in one Train_Dist/ folder."""
    items = fr_items()
    refs = [save(root / "Train_Ref" / f"A{r + 1:04d}.bmp", photos()[r]) for r in range(N_REFS)]
    names = [f"A{it.ref + 1:04d}_00_{it.level:02d}.bmp" for it in items]
    paths = [save(root / "Train_Dist" / n, it.image()) for n, it in zip(names, items, strict=True)]
    (root / "Train_Label").mkdir()
    for r in range(N_REFS):
        lines = [f"{n},{1000 + 10 * s if not isinstance(s, str) else s}"
                 for n, s, it in zip(names, scores(items, bad), items, strict=True) if it.ref == r]
        (root / "Train_Label" / f"A{r + 1:04d}.txt").write_text("\n".join(lines) + "\n")
    expected = {n: (1000 + 10 * it.mos, p, refs[it.ref]) for n, it, p in zip(names, items, paths, strict=True)}
    return Tiny(root, root / "Train_Label" / "A0001.txt", paths[1], items, expected)


WRITERS: dict[str, tuple[str, Callable[[Path, bool], Tiny]]] = {
    "koniq10k": ("koniq10k", _koniq), "koniq10k-pyiqa": ("koniq10k", _koniq_pyiqa),
    "kadid10k": ("kadid10k", _kadid), "tid2013": ("tid2013", _tid2013), "tid2013-pyiqa": ("tid2013", _tid2013_pyiqa),
    "live": ("live", _live), "csiq": ("csiq", _csiq), "csiq-label": ("csiq", _csiq_label),
    "livec": ("livec", _livec), "spaq": ("spaq", _spaq), "pipal": ("pipal", _pipal),
    "kadid10k-pyiqa": ("kadid10k", _kadid_pyiqa), "live-pyiqa": ("live", _live_pyiqa),
    "csiq-pyiqa": ("csiq", _csiq_pyiqa), "livec-pyiqa": ("livec", _livec_pyiqa), "spaq-pyiqa": ("spaq", _spaq_pyiqa),
    "pipal-pyiqa": ("pipal", _pipal_pyiqa), "pipal-train-dist": ("pipal", _pipal_train_dist),
}


def tiny(tmp_path: Path, case: str, bad: bool = False) -> tuple[str, Tiny]:
    name, write = WRITERS[case]
    root = tmp_path / case
    root.mkdir()
    return name, write(root, bad)


def make(name: str, root: Path, **params: object) -> FileDataset:
    return create_dataset(name, root=str(root), size=SIZE, **params)


# ----------------------------------------------------------------------------- every loader
@pytest.mark.parametrize("case", sorted(WRITERS))
def test_loader_reads_its_layout(tmp_path: Path, case: str) -> None:
    name, t = tiny(tmp_path, case)
    ds = make(name, t.root, test_fraction=0.4)
    df = ds.table()
    assert len(df) == len(t.items)
    expected = sorted(it.mos for it in t.items)
    got = np.sort(df["mos"].to_numpy())
    if name == "live":  # stored as DMOS = 100 - the item's score
        expected = sorted(100 - m for m in expected)
    if name == "pipal":
        expected = sorted(1000 + 10 * m for m in expected)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    train, test = ds.split(seed=3)
    assert len(train) + len(test) == len(t.items) and len(test) > 0 and len(train) > 0
    assert not set(train.refs) & set(test.refs)  # by reference, or by image for authentic sets
    if ds.info.mode == "NR":
        assert train.refs == train.names
    x = test.images[0:2]
    assert isinstance(test.images, LazyImages) and x.shape == (2, 3, SIZE, SIZE) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and float(x.std()) > 0.01
    assert test.notes["skipped"] == 0 and test.notes["converted"] == {}
    if ds.info.mode == "FR":  # the reference of each image, from its own folder
        refs = ds.references(test)
        assert len(refs) == len(test) and refs[0].shape == (3, SIZE, SIZE)
        assert not torch.equal(refs[0:2], x)  # every tiny FR image is blurred


EXACT = ["csiq-pyiqa", "kadid10k-pyiqa", "live-pyiqa", "livec-pyiqa", "pipal-pyiqa", "pipal-train-dist", "spaq-pyiqa"]


@pytest.mark.parametrize("case", EXACT)
def test_loader_reads_exactly_the_listed_names_scores_and_files(tmp_path: Path, case: str) -> None:
    """pyiqa's layouts (and PIPAL's Train_Dist/): every name the table lists, with its
    score, its own image file and its reference's, and nothing else (LIVE Challenge's 7
    rater-training images are on disk and in the table, and left out)."""
    name, t = tiny(tmp_path, case)
    assert t.expected is not None
    ds = make(name, t.root)
    df = ds.table()
    assert ds.layout.name == ("official" if case == "pipal-train-dist" else "pyiqa")
    got = {row.name: (row.mos, Path(row.image), None if row.ref_image is None else Path(row.ref_image))
           for row in df.itertuples()}
    assert got.keys() == t.expected.keys()
    for n, (score, image, ref) in t.expected.items():
        assert got[n][0] == pytest.approx(score, abs=1e-9), n
        assert got[n][1:] == (image, ref), n
    if name == "livec":
        assert len(df) == len(t.items) and not any("trainingImages" in n for n in df["name"])
    train, test = ds.split(seed=0)
    assert sorted(train.names + test.names) == sorted(t.expected)


def test_an_image_absent_from_its_folder_is_not_taken_from_another(tmp_path: Path) -> None:
    """LIVE numbers each distortion folder from img1.bmp: with jpeg/img5.bmp and
    wn/img5.bmp gone, jp2k/img5.bmp is the only img5.bmp left, and must not stand in for
    them (it did: three rows, three scores, one image)."""
    name, t = tiny(tmp_path, "live-pyiqa")
    for folder in ("jpeg", "wn"):
        (t.root / "LIVEIQA_release2" / folder / "img5.bmp").unlink()
    with pytest.raises(ScoreFileError, match=r"2 of 15 image\(s\) listed in .* \(first: jpeg/img5.bmp, wn/img5.bmp\)"):
        make(name, t.root).table()


@pytest.mark.parametrize("case", sorted(WRITERS))
def test_missing_score_file_says_what_and_where(tmp_path: Path, case: str) -> None:
    name, t = tiny(tmp_path, case)
    if t.score_file.name.endswith(".txt") and name == "pipal":
        shutil.rmtree(t.score_file.parent)
    else:
        t.score_file.unlink()
    with pytest.raises(DataRootError) as e:
        make(name, t.root).table()
    msg = str(e.value)
    gone = "Train_Label" if name == "pipal" else t.score_file.name
    assert f"dataset '{name}'" in msg and str(t.root) in msg and gone in msg
    assert DATASETS.get(name).info.reference in msg and "\n" not in msg


@pytest.mark.parametrize("case", sorted(WRITERS))
def test_absent_image_is_named(tmp_path: Path, case: str) -> None:
    name, t = tiny(tmp_path, case)
    t.image.unlink()
    with pytest.raises(ScoreFileError, match=r"1 of \d+ image\(s\) listed in .* are not in") as e:
        make(name, t.root).table()
    assert t.image.name.lower() in str(e.value).lower() and "extract the archive again" in str(e.value)


@pytest.mark.parametrize("case", sorted(WRITERS))
def test_score_that_is_not_a_number_is_named(tmp_path: Path, case: str) -> None:
    name, t = tiny(tmp_path, case, bad=True)
    with pytest.raises(ScoreFileError, match="is not a number") as e:
        make(name, t.root).table()
    assert str(t.root) in str(e.value) and f"dataset '{name}'" in str(e.value)


# ----------------------------------------------------------------------------- splits
def test_split_is_deterministic_by_seed_and_by_reference(tmp_path: Path) -> None:
    _, t = tiny(tmp_path, "kadid10k")
    ds = make("kadid10k", t.root, test_fraction=0.4)
    a, b = ds.split(seed=5), make("kadid10k", t.root, test_fraction=0.4).split(seed=5)
    assert a[1].names == b[1].names and a[0].names == b[0].names
    tests = {tuple(ds.split(seed=s)[1].names) for s in range(6)}
    assert len(tests) > 1  # the seed changes the draw
    for s in range(6):
        train, test = ds.split(seed=s)
        assert not set(train.refs) & set(test.refs)
        assert len(set(test.refs)) == 2  # round(0.4 * 5) whole references


def test_koniq_official_split_is_the_releases_own_in_both_layouts(tmp_path: Path) -> None:
    """`split = "official"`: exactly the release's training images on the train side and its
    test images on the test side, whatever the seed; validation images on neither."""
    _, t = tiny(tmp_path, "koniq10k")
    df = pd.read_csv(t.score_file)
    sets = ["training", "validation", "test"] * (len(df) // 3) + ["training"] * (len(df) % 3)
    df.assign(set=sets).to_csv(t.root / "koniq10k_distributions_sets.csv", index=False)
    want = {side: sorted(df["image_name"][[s == side for s in sets]]) for side in ("training", "test")}
    for seed in (0, 7):
        train, test = make("koniq10k", t.root, split="official").split(seed=seed)
        assert (sorted(train.names), sorted(test.names)) == (want["training"], want["test"])
    assert sorted(make("koniq10k", t.root).split(seed=0)[1].names) != want["test"]  # seeded: its own draw

    _, p = tiny(tmp_path, "koniq10k-pyiqa")
    meta = pd.read_csv(p.score_file)
    meta["official_split"] = ["train", "val", "test"] * (len(meta) // 3) + ["train"] * (len(meta) % 3)
    meta.to_csv(p.score_file, index=False)
    train, test = make("koniq10k", p.root, split="official").split(seed=0)
    assert sorted(test.names) == sorted(meta["img_name"][meta["official_split"] == "test"])
    assert sorted(train.names) == sorted(meta["img_name"][meta["official_split"] == "train"])


def test_an_official_split_that_is_absent_or_unreadable_is_one_clear_line(tmp_path: Path) -> None:
    _, t = tiny(tmp_path, "koniq10k")  # the scores file alone: no `set` column
    with pytest.raises(ScoreFileError, match=r"dataset 'koniq10k': split = \"official\" but its official layout "
                                             r"under '.*' names no official split; use split = \"seeded\""):
        make("koniq10k", t.root, split="official").split(seed=0)
    df = pd.read_csv(t.score_file)
    df.assign(set=["training"] * (len(df) - 1) + ["holdout"]).to_csv(t.root / "koniq10k_distributions_sets.csv",
                                                                       index=False)
    with pytest.raises(ScoreFileError, match=rf"koniq10k_distributions_sets.csv' line {len(df) + 1}: split "
                                             r"'holdout' is none of test, training, validation"):
        make("koniq10k", t.root, split="official").split(seed=0)


def test_n_images_is_a_stratified_sample_keeping_the_spread(tmp_path: Path) -> None:
    _, t = tiny(tmp_path, "koniq10k")
    full = make("koniq10k", t.root, test_fraction=0.6)
    small = make("koniq10k", t.root, test_fraction=0.6, n_images=3)
    test_all, test = full.split(seed=1)[1], small.split(seed=1)[1]
    assert len(test) == 3 and set(test.names) <= set(test_all.names)
    ordered = np.sort(test_all.mos.numpy())
    strata = np.array_split(ordered, 3)  # one pick from each equal-count MOS stratum
    for m, stratum in zip(np.sort(test.mos.numpy()), strata, strict=True):
        assert stratum[0] <= m <= stratum[-1]
    assert small.split(seed=1)[1].names == test.names
    assert len(make("koniq10k", t.root, n_train=4).split(seed=1)[0]) == 4


# ----------------------------------------------------------------------------- bad and odd images
def _odd_images(folder: Path) -> dict[str, str]:
    """Files that are not 8-bit RGB images: name -> what should happen."""
    rgb = photos()[0]
    save(folder / "grey.jpg", Image.fromarray(rgb).convert("L"))
    save(folder / "palette.png", Image.fromarray(rgb).convert("P"))
    save(folder / "alpha.png", Image.fromarray(rgb).convert("RGBA"))
    save(folder / "cmyk.jpg", Image.fromarray(rgb).convert("CMYK"))
    save(folder / "deep.png", Image.fromarray(rgb[..., 0].astype(np.uint16) * 257))  # 16-bit grey
    save(folder / "tiny.png", Image.new("RGB", (1, 1)))
    (folder / "text.jpg").write_text("not an image\n")
    whole = folder / "whole.jpg"
    save(whole, rgb)
    data = whole.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    whole.unlink()
    return {"grey.jpg": "L->RGB", "palette.png": "P->RGB", "alpha.png": "RGBA->RGB", "cmyk.jpg": "CMYK->RGB",
            "deep.png": "I;16->RGB", "tiny.png": "skip", "text.jpg": "skip", "truncated.jpg": "skip"}


def test_bad_images_are_skipped_and_conversions_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, t = tiny(tmp_path, "koniq10k")
    odd = _odd_images(t.root / "1024x768")
    df = pd.read_csv(t.score_file)
    extra = pd.DataFrame({"image_name": list(odd), "MOS_zscore": np.linspace(10, 90, len(odd))})
    pd.concat([df, extra]).to_csv(t.score_file, index=False)
    ds = make("koniq10k", t.root, test_fraction=0.5)
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, test = ds.split(seed=0)
    notes = [train.notes, test.notes]
    skipped = sorted(f for n in notes for f in n["skipped_files"])
    assert skipped == ["text.jpg", "tiny.png", "truncated.jpg"]
    assert sum(n["skipped"] for n in notes) == 3
    # One clean line per split that lost files, not Python's warning format
    err = capsys.readouterr().err
    assert not caught and "UserWarning" not in err and "warnings.warn" not in err
    lines = [line for line in err.splitlines() if "skipped" in line]  # (progress bars share stderr)
    expected = [f"warning: dataset 'koniq10k': skipped {n['skipped']} file{'s' if n['skipped'] > 1 else ''} "
                f"of the {side} split (" for side, n in (("train", train.notes), ("test", test.notes)) if n["skipped"]]
    assert len(lines) == len(expected) >= 1
    assert all(line.startswith(start) and line.endswith(")") for line, start in zip(lines, expected, strict=True))
    assert all(f in err for f in skipped)
    converted: dict[str, int] = {}
    for n in notes:
        for k, v in n["converted"].items():
            converted[k] = converted.get(k, 0) + v
    assert converted == {v: 1 for v in odd.values() if v != "skip"}
    for split in (train, test):  # every kept image loads as 8-bit-derived RGB
        x = split.images[:]
        assert x.shape == (len(split), 3, SIZE, SIZE) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert len(train) + len(test) == len(t.items) + 5


def test_both_splits_loading_is_recorded_exported_and_shown(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A run on a root with bad and odd files: each record keeps both splits' notes, the
    CSV counts skipped and converted files per split, and the site's data section lists them."""
    from bench.cli import main
    from bench.leaderboard import render_site
    from bench.store import ResultsStore, records_frame

    _, t = tiny(tmp_path, "koniq10k")
    odd = _odd_images(t.root / "1024x768")
    extra = pd.DataFrame({"image_name": list(odd), "MOS_zscore": np.linspace(10, 90, len(odd))})
    pd.concat([pd.read_csv(t.score_file), extra]).to_csv(t.score_file, index=False)
    matrix = tmp_path / "m.toml"
    matrix.write_text(f"""name = "notes"\nseed = 3\nbatch_size = 8\n[models]\npiqe = {{}}\n[defenses]\nnone = {{}}
[attacks]\nfgsm = {{ eps = [4] }}\n[datasets]\nkoniq10k = {{ root = "{t.root}", size = {SIZE}, test_fraction = 0.5 }}
""")
    capsys.readouterr()
    assert main(["run", "--matrix", str(matrix), "--results", str(tmp_path / "r"), "--no-site", "--no-progress"]) == 0
    err = capsys.readouterr().err
    (rec,) = ResultsStore(tmp_path / "r").records()
    train, test = make("koniq10k", t.root, test_fraction=0.5).split(seed=3)  # what the run loaded
    # as loading left them, with the seed the split was drawn with (the workbench adds it)
    assert rec["data"] == {"test": {**test.notes, "split_seed": 3}, "train": {**train.notes, "split_seed": 3}}
    assert (train.notes["skipped"], test.notes["skipped"]) == (2, 1)  # seed 3 puts bad files on both sides
    warned = sorted(line.split(" (")[0] for line in err.splitlines() if line.startswith("warning: dataset"))
    assert warned == ["warning: dataset 'koniq10k': skipped 1 file of the test split",
                      "warning: dataset 'koniq10k': skipped 2 files of the train split"]
    assert "UserWarning" not in err
    row = records_frame([rec]).iloc[0]
    assert [row[k] for k in ("train_skipped", "train_converted", "test_skipped", "test_converted")] == [2, 2, 1, 3]
    html = render_site(tmp_path / "r", tmp_path / "site").read_text()
    section = html[html.index('<section id="datasets">'):html.index('<section id="cells-section">')]
    for side, notes in (("train", train.notes), ("test", test.notes)):
        assert f'<td>koniq10k</td><td>{side}</td><td>official</td><td>decode</td><td class="num">{SIZE}</td>' \
               f'<td class="num">{notes["skipped"]}</td>' in section
    for name in ("text.jpg", "tiny.png", "truncated.jpg"):
        assert f"<code>{name}</code>" in section


def test_header_check_does_not_catch_truncation(tmp_path: Path) -> None:
    """`verify = "header"` is cheaper and says so: a truncated file passes it and fails,
    named, when it is read."""
    _, t = tiny(tmp_path, "koniq10k")
    _odd_images(t.root / "1024x768")
    pd.concat([pd.read_csv(t.score_file), pd.DataFrame({"image_name": ["truncated.jpg"], "MOS_zscore": [50.0]})]) \
        .to_csv(t.score_file, index=False)
    train, test = make("koniq10k", t.root, test_fraction=0.5, verify="header").split(seed=0)
    split = train if "truncated.jpg" in train.names else test
    assert split.notes["skipped"] == 0
    with pytest.raises(ImageError, match="truncated.jpg"):
        split.images[split.names.index("truncated.jpg")]


# ----------------------------------------------------------------------------- lazy images
def test_lazy_images_decode_only_what_is_asked(tmp_path: Path) -> None:
    paths = [save(tmp_path / f"{i}.png", p) for i, p in enumerate(photos())]
    imgs = LazyImages(paths, SIZE, cache=2)
    assert len(imgs) == 5 and imgs.shape == (5, 3, SIZE, SIZE) and imgs.decoded == 0
    assert imgs[1].shape == (3, SIZE, SIZE) and imgs.decoded == 1
    assert imgs[1:3].shape == (2, 3, SIZE, SIZE) and imgs.decoded == 2  # 1 came from the cache
    torch.testing.assert_close(imgs[[4, 0]], torch.stack([imgs[4], imgs[0]]))
    torch.testing.assert_close(imgs[torch.tensor([3, 1])], imgs[[3, 1]])
    assert imgs[torch.tensor([True, False, False, False, True])].shape[0] == 2
    assert imgs[-1].shape == (3, SIZE, SIZE) and imgs[[]].shape == (0, 3, SIZE, SIZE)
    with pytest.raises(IndexError):
        imgs[5]
    clone = pickle.loads(pickle.dumps(imgs))
    assert clone.paths == imgs.paths and len(clone._cache) == 0
    view = imgs.take([2, 3])
    assert isinstance(view, LazyImages) and view.paths == imgs.paths[2:4]
    # The crop keeps the centre: resizing 56x44 to shorter side 32 gives 41x32, cropped to 32x32.
    assert imgs[0].shape[-2:] == (SIZE, SIZE)


def test_koniq_list_of_10073_reads_fast_without_opening_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) \
        -> None:
    root = tmp_path / "koniq"
    (root / "1024x768").mkdir(parents=True)
    names = [f"{10_000_000 + i}.jpg" for i in range(10_073)]
    for n in names:  # empty files: any attempt to decode them would fail
        (root / "1024x768" / n).touch()
    rng = np.random.default_rng(0)
    pd.DataFrame({"image_name": names, "c1": 0.0, "c2": 0.1, "c3": 0.5, "c4": 0.3, "c5": 0.1, "c_total": 100,
                  "MOS": rng.uniform(1, 5, len(names)), "SD": 0.5, "MOS_zscore": rng.uniform(0, 100, len(names))}) \
        .to_csv(root / "koniq10k_scores_and_distributions.csv", index=False)

    def no_open(*a: object, **k: object) -> None:
        raise AssertionError("the list read opened an image")

    monkeypatch.setattr(Image, "open", no_open)
    # "fast" is: one listing of the image folder, and no stat or open of any image file
    # (a count of file-system calls, which a busy machine cannot change as it changes time)
    images = str(root / "1024x768")
    touched: dict[str, list[str]] = {"stat": [], "open": [], "scandir": []}

    def spy(kind: str, real: Callable) -> Callable:
        def call(path: object = ".", *a: object, **k: object) -> object:
            if isinstance(path, (str, os.PathLike)) and os.fspath(path).startswith(images):
                touched[kind].append(os.fspath(path))
            return real(path, *a, **k)
        return call

    import builtins

    for mod, name, kind in ((os, "stat", "stat"), (os, "lstat", "stat"), (os, "scandir", "scandir"),
                            (builtins, "open", "open")):
        monkeypatch.setattr(mod, name, spy(kind, getattr(mod, name)))
    start = time.perf_counter()
    df = make("koniq10k", root).table()
    print(f"koniq10k: 10,073-entry list read in {time.perf_counter() - start:.3f} s")
    monkeypatch.undo()
    assert len(df) == 10_073 and df["image"].tolist() == [os.path.join(images, n) for n in names]
    assert [p for p in touched["stat"] if p != images] == [] and touched["open"] == []
    assert touched["scandir"] == [images]


# ----------------------------------------------------------------------------- roots and the CLI
def test_root_precedence_cli_env_cwd_config_user_config(tmp_path: Path) -> None:
    dirs = {k: tmp_path / k for k in ("cli", "env", "cwd", "user")}
    for d in dirs.values():
        d.mkdir()
    assert find_root("koniq10k")[0] is None
    user = tmp_path / "xdg" / "bench" / "data.toml"
    user.parent.mkdir(parents=True)
    user.write_text(f'koniq10k = "{dirs["user"]}"\n')
    assert find_root("koniq10k") == (dirs["user"], str(user))
    (tmp_path / "bench-data.toml").write_text('koniq10k = "cwd"\n')  # relative to the file
    assert find_root("koniq10k")[0] == dirs["cwd"]
    os.environ[env_var("koniq10k")] = str(dirs["env"])
    assert env_var("koniq10k") == "BENCH_DATA_KONIQ10K" and find_root("koniq10k")[0] == dirs["env"]
    apply_cli_roots([f"koniq10k={dirs['cli']}"])
    assert find_root("koniq10k")[0] == dirs["cli"] and os.environ["BENCH_DATA_KONIQ10K"] == str(dirs["cli"])


def test_bad_roots_and_configs_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(DataRootError, match="expected NAME=PATH"):
        apply_cli_roots(["koniq10k"])
    with pytest.raises(DataRootError, match=r"--data-root koniq10k: '.*nowhere' is not a directory"):
        apply_cli_roots([f"koniq10k={tmp_path / 'nowhere'}"])
    (tmp_path / "bench-data.toml").write_text("koniq10k = 3\n")
    with pytest.raises(DataRootError, match=r"bench-data.toml': 'koniq10k' must be a path string"):
        find_root("koniq10k")
    (tmp_path / "bench-data.toml").unlink()
    with pytest.raises(DataRootError) as e:
        create_dataset("koniq10k").split(seed=0)
    msg = str(e.value)
    for part in ("no root configured", "BENCH_DATA_KONIQ10K", "koniq10k_scores_and_distributions.csv",
                 "http://database.mmsp-kn.de/koniq-10k-database.html"):
        assert part in msg
    with pytest.raises(DataRootError, match=r"root '.*nowhere' \(from the matrix's root parameter\) is not a dir"):
        create_dataset("koniq10k", root=str(tmp_path / "nowhere")).table()


def test_list_datasets_and_data_root_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.cli import _parser, main

    _, t = tiny(tmp_path, "tid2013")
    os.environ[env_var("tid2013")] = str(t.root)
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    tid = next(line for line in out.splitlines() if line.startswith("tid2013 "))
    assert "FR, MOS in [0, 9] (higher is better), 3000 images, 25 references" in tid
    assert f"root: {t.root} (from $BENCH_DATA_TID2013; official layout found)" in tid
    assert "koniq10k     NR, MOS (z-score scale) in [0, 100] (higher is better), 10073 images, no references; " \
           "root: not configured" in out
    assert "layout: official: mos_with_names.txt + distorted_images/ + reference_images/" in out
    for cmd in (["run", "--matrix", "quick"], ["train", "--model", "cnniqa"], ["score", "--model", "piqe", "x.png"]):
        args = _parser().parse_args(cmd + ["--data-root", "a=b", "--data-root", "c=d"])
        assert args.data_root == ["a=b", "c=d"]
    assert main(["train", "--model", "cnniqa", "--data-root", f"tid2013={tmp_path / 'nowhere'}"]) == 2
    assert "--data-root tid2013:" in capsys.readouterr().err
    assert main(["list", "datasets", "--data-root", f"tid2031={t.root}"]) == 2  # misspelt: refused
    assert "unknown dataset 'tid2031'; did you mean tid2013" in capsys.readouterr().err
    del os.environ[env_var("tid2013")]
    assert main(["list", "datasets", "--data-root", f"tid2013={t.root}"]) == 0
    assert f"root: {t.root} (from $BENCH_DATA_TID2013; official layout found)" in capsys.readouterr().out


def test_decode_check_is_remembered_until_a_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from bench.datasets import checks

    _, t = tiny(tmp_path, "koniq10k")
    make("koniq10k", t.root).split(seed=0)
    calls: list[str] = []
    real = checks.check_image
    monkeypatch.setattr(checks, "check_image", lambda p, decode: calls.append(p) or real(p, decode))
    train, test = make("koniq10k", t.root).split(seed=0)
    assert calls == [] and len(train) + len(test) == len(t.items)
    data = t.image.read_bytes()
    t.image.write_bytes(data[: len(data) // 2])  # truncated: a new size, so checked again
    capsys.readouterr()
    train, test = make("koniq10k", t.root).split(seed=0)
    assert calls == [str(t.image)] and train.notes["skipped"] + test.notes["skipped"] == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert len(lines) == 1 and t.image.name in lines[0]
    assert lines[0].startswith("warning: dataset 'koniq10k': skipped 1 file of the ")
