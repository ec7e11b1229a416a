"""`embedded`: a KADID-style distorted-image set built only from photographs that ship
inside installed packages, so that the benchmark runs with no download at all.

Why it exists: the real IQA sets (KonIQ-10k, KADID-10k, TID2013) cannot be fetched
here. This set gives a small, honest stand-in with the same structure: pristine
references, synthetic distortions at graded levels, and one opinion-like score per image.

References (colour photographs, skipped with a warning where missing):
  scikit-image `skimage.data` (astronaut, chelsea, coffee, rocket, hubble_deep_field,
  immunohistochemistry, retina, stereo_motorcycle left view; those that load without
  pooch), matplotlib `sample_data/grace_hopper.jpg`, and the pyiqa wheel's TID2013
  references (`ResultsCalibra/ref_dir/*.bmp`) and `tests/test_efficiency_img_dir/*.jpg`.
Each is centre-cropped to a square and resized (Lanczos, antialiased) to `size` px.

Distortions: the `DISTORTIONS` table, 12 types x 5 levels, each a call into
Pillow / scikit-image / scipy. Random ones are seeded by (crc32(reference name), type),
so a reference's images do not change when another source goes missing. Spatial
parameters (blur sigma, motion length) scale with size / 96 and pixelation and
JPEG2000 levels are relative (block factor, target PSNR), so that a level means about
the same damage at any size. Sizes below 48 px are refused: pyiqa's VIF fails there.

Pseudo-MOS (no human ratings exist): four full-reference metrics from pyiqa that load
no weight file, each mapped onto [0, 1] (1 = identical to the reference) and averaged:

    q_fsim = clip((FSIMc - 0.5) / 0.5, 0, 1)
    q_ssim = clip(SSIM, 0, 1)                  (SSIM on the Y channel, in float32)
    q_vif  = clip(VIF, 0, 1)                   (VIF in the pyramid domain)
    q_gmsd = clip(1 - GMSD / 0.35, 0, 1)       (GMSD lower-better; 0.35 ~ its ceiling)
    pseudo-MOS = 100 * (q_fsim + q_ssim + q_vif + q_gmsd) / 4, rounded to 0.001

so the undistorted references, which are included as images, score exactly 100. The
average of several metrics is used because each one alone mis-ranks whole distortion
families (VIF rewards contrast gain, SSIM ignores colour, GMSD ignores brightness).
The build records in its metadata how well the pseudo-MOS orders the levels: the mean,
over every (reference, type), of Spearman(level, pseudo-MOS) — strongly negative means
higher levels score worse, as intended (measured -0.995 at 96 px, -0.99 at 48 px; every
type but saturation at -1.0). Colour-only changes (saturation) move only
FSIMc, so they score high; that is a known weakness of luminance metrics, not hidden.

The build runs once per (version, size) and is cached as `embedded-v{VERSION}-{size}.npz`
plus a `.json` sidecar under $BENCH_CACHE (default ~/.cache/iqa-bench); both files are
byte-identical when rebuilt with the same package versions.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.api import (
    DatasetInfo,
    Field,
    IQADataset,
    IQASplit,
    Params,
    atomic_write,
    cache_dir,
    progress,
    register_dataset,
    warn,
)
from bench.api import stratified as _stratified
from bench.datasets import _embedded_views
from bench.datasets._embedded_distortions import DISTORTIONS, distort
from bench.datasets._embedded_mos import level_ordering, pseudo_mos
from bench.datasets._embedded_sources import _candidates, _square, _version  # looked up here: tests swap _candidates

log = logging.getLogger(__name__)

VERSION = "1"
MIN_REFERENCES = 8
MIN_SIZE = 48  # pyiqa's VIF pyramid needs more than 32 px
# One thread: the metric kernels are small, and on a shared 2-core machine two OpenMP
# threads spin-waited their way to a 10x slower build (measured). Results were the same
# bytes at 1, 2 and 3 threads. Processes scale instead: one per core, at most 4 (each
# holds its own copy of the metrics); the bytes do not depend on their number.
BUILD_THREADS = 1
BUILD_WORKERS = min(os.cpu_count() or 1, 4)
BUILD_COUNT = 0  # builds done in this process; tests use it to see the cache was reused


# ----------------------------------------------------------------------------- references
def load_references(size: int) -> tuple[list[str], np.ndarray, list[dict[str, str]]]:
    """The reference photos that load here, as (names, uint8 (N, size, size, 3), sources)."""
    names, images, sources = [], [], []
    for name, package, load in _candidates():
        try:
            img = load()
            images.append(_square(np.asarray(img), size))
        except Exception as e:  # noqa: BLE001 - a missing file, a pooch-only dataset: skip it
            warn(f"embedded dataset: skipping source '{name}' ({package}): {type(e).__name__}: {e}")
            continue
        names.append(name)
        sources.append({"name": name, "package": package, "version": _version(package)})
    if len(names) < MIN_REFERENCES:
        raise RuntimeError(
            f"embedded dataset: only {len(names)} reference photos load here ({', '.join(names) or 'none'}); "
            f"need at least {MIN_REFERENCES}. They ship with scikit-image, matplotlib and pyiqa: install those."
        )
    return names, np.stack(images), sources


# ----------------------------------------------------------------------------- build and cache
def cache_path(size: int) -> Path:
    return cache_dir() / f"embedded-v{VERSION}-{size}.npz"


def build(size: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Make every image and its pseudo-MOS from scratch (no cache)."""
    global BUILD_COUNT
    BUILD_COUNT += 1
    start = time.perf_counter()
    ref_names, ref_imgs, sources = load_references(size)
    images, names, refs, types, levels, ref_idx = [], [], [], [], [], []
    pairs = progress(list(zip(ref_names, ref_imgs, strict=True)), desc="embedded: distorting references", unit="ref")
    for i, (rname, rimg) in enumerate(pairs):
        images.append(rimg)
        names.append(f"{rname}__reference")
        refs.append(rname), types.append("reference"), levels.append(0), ref_idx.append(i)
        for kind in DISTORTIONS:
            for level in range(1, 6):
                images.append(distort(rimg, rname, kind, level))
                names.append(f"{rname}__{kind}_{level}")
                refs.append(rname), types.append(kind), levels.append(level), ref_idx.append(i)
    imgs = np.stack(images)
    mos = pseudo_mos(imgs, ref_imgs[np.asarray(ref_idx)], workers=BUILD_WORKERS, threads=BUILD_THREADS)
    arrays = {
        "images": imgs,
        "mos": mos,
        "names": np.asarray(names),
        "refs": np.asarray(refs),
        "types": np.asarray(types),
        "levels": np.asarray(levels, dtype=np.int8),
    }
    meta = {
        "dataset": "embedded",
        "version": VERSION,
        "size": size,
        "n_images": len(names),
        "n_references": len(ref_names),
        "sources": sources,
        "distortions": {k: list(v[1]) for k, v in DISTORTIONS.items()},
        "pseudo_mos": "100 * mean(clip((FSIMc-0.5)/0.5), clip(SSIM), clip(VIF), clip(1-GMSD/0.35)), each clipped to [0,1]",
        "level_spearman": level_ordering(arrays["refs"], arrays["types"], arrays["levels"].astype(int), mos),
        "packages": {p: _version(p) for p in ("pyiqa", "torch", "numpy", "scipy", "scikit-image", "pillow",
                                               "matplotlib")},
    }
    log.info("embedded dataset: built %d images at %d px in %.1f s", len(names), size, time.perf_counter() - start)
    return arrays, meta


def _write_npz(path: Path | io.BytesIO, arrays: dict[str, np.ndarray]) -> None:
    """np.savez stamps the current time into the zip; this writes a fixed one, so that a
    rebuild gives the same bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arrays[key]), allow_pickle=False)


def _cached(path: Path, build: Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]]
            ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and metadata at `path` (+ its .json sidecar), built first where absent."""
    side = path.with_suffix(".json")
    if not (path.exists() and side.exists()):
        arrays, meta = build()
        buf = io.BytesIO()
        _write_npz(buf, arrays)
        atomic_write(path, buf.getvalue())
        atomic_write(side, (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(side.read_text())


def _check_size(size: int) -> None:
    if size < MIN_SIZE:
        raise ValueError(f"embedded dataset: size {size} is below {MIN_SIZE} px, the least VIF works at")


def load(size: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The built dataset at `size`, from the cache, building it first if absent."""
    _check_size(size)
    return _cached(cache_path(size), lambda: build(size))


def load_views(size: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The training views at `size` (`bench.datasets._embedded_views`), from the cache,
    drawn and scored first if absent (about 2 minutes at 96 px on one core)."""
    _check_size(size)
    path = cache_dir() / f"embedded-views-v{_embedded_views.VERSION}-{size}.npz"
    return _cached(path, lambda: _embedded_views.build_views(size, _candidates(), BUILD_WORKERS, BUILD_THREADS))


# ----------------------------------------------------------------------------- the plugin
@register_dataset
class EmbeddedDataset(IQADataset):
    """Split by reference photo; the test side may be thinned to `n_images` by MOS strata.

    The undistorted references are kept (pseudo-MOS 100) so that a model sees the top
    of the scale; they follow their reference into train or test like any other image.
    """

    info = DatasetInfo(
        name="embedded",
        mode="NR",
        mos_name="pseudo-MOS",
        mos_range=(0.0, 100.0),
        reference="https://doi.org/10.1109/QoMEX.2019.8743252 (KADID-10k protocol); "
                  "pseudo-MOS from FSIM, SSIM, VIF, GMSD via pyiqa",
        description="~18 colour photographs shipped in scikit-image, matplotlib and pyiqa, "
                    "12 KADID-style distortions x 5 levels, plus the references; "
                    "pseudo-MOS = mean of 4 normalized full-reference metrics, 0..100",
        # the views change what a model trained here learns, so they are part of the identity
        version=f"{VERSION}+views{_embedded_views.VERSION}",
    )

    class Params(Params):
        size: int = Field(96, ge=MIN_SIZE, description="side of the square images, px (built once per size and "
                          "cached)")
        n_images: int | None = Field(None, ge=1, description="thin the test side to this many images, one per "
                                     "equal-count pseudo-MOS stratum (None: all)")
        test_fraction: float = Field(0.3, gt=0, lt=1, description="share of reference photos on the test side, "
                                     "drawn with the seed")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._data: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None

    def _loaded(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self._data is None:
            self._data = load(int(self.params["size"]))
        return self._data

    @property
    def metadata(self) -> dict[str, Any]:
        """The build's record: sources and versions, formula, level-ordering Spearman."""
        return self._loaded()[1]

    def split(self, seed: int) -> tuple[IQASplit, IQASplit]:
        arrays, _ = self._loaded()
        refs = arrays["refs"]
        unique = np.unique(refs)  # sorted: the draw does not depend on file order
        rng = np.random.default_rng(seed)
        n_test = min(len(unique) - 1, max(1, round(self.params["test_fraction"] * len(unique))))
        test_refs = set(rng.permutation(unique)[:n_test].tolist())
        in_test = np.isin(refs, list(test_refs))
        train_idx = np.flatnonzero(~in_test)
        test_idx = np.flatnonzero(in_test)
        n = self.params["n_images"]
        if n is not None and n < len(test_idx):
            test_idx = _stratified(test_idx, arrays["mos"][test_idx], n, seed)
        return _make_split(arrays, train_idx), _make_split(arrays, test_idx)

    def training_views(self, train: IQASplit) -> IQASplit:
        """The training views of `train`'s reference photographs (never a test one's):
        random crops of each full-resolution photograph, distorted at random and scored by
        the same pseudo-MOS formula (`bench.datasets._embedded_views`)."""
        arrays, meta = load_views(int(self.params["size"]))
        views = _make_split(arrays, np.flatnonzero(np.isin(arrays["refs"], sorted(set(train.refs)))))
        views.notes = {"views": f"embedded training views v{meta['views_version']}, {meta['per_reference']} per "
                                "photograph"}
        return views


def _make_split(arrays: dict[str, np.ndarray], idx: np.ndarray) -> IQASplit:
    images = torch.from_numpy(arrays["images"][idx]).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    return IQASplit(
        images=images,
        mos=torch.from_numpy(arrays["mos"][idx].astype(np.float32)),
        names=[str(s) for s in arrays["names"][idx]],
        refs=[str(s) for s in arrays["refs"][idx]],
    )
