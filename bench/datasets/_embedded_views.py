"""The `embedded` dataset's training views: more training images made from each reference
photograph, for models trained here from scratch; apart from `bench.datasets.embedded`,
which caches them and hands a split its references' share (`training_views`).

Why: the train side holds about 13 reference scenes at 96 px. A network trained from
scratch on them learns the scenes before the damage (issue 15: the ResNet-18 regressor
ranked the test split at clean SROCC 0.54 after 30 epochs of turned and cropped views of
those images). Each view here is a new scene as the network sees it: a random square crop
of the full-resolution photograph (30-100 % of its shorter side, anywhere in it), resized
to the set's size and mirrored at random, then one of the set's distortions at a random
type and level (or none, one view in `CLEAN_EVERY`), scored by the set's own pseudo-MOS
formula against that crop. The test side is never touched: a view belongs to its
photograph, and a split hands a model only the views of its train references.

Each photograph's views are drawn from a generator seeded by (crc32(name), `DRAW`), so
they do not change when another source goes missing, and the build is byte-identical
when rerun with the same package versions. Change anything here and bump `VERSION`
(the cache file's name and every trained model's key carry it).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from bench.api import progress, warn
from bench.datasets._embedded_distortions import DISTORTIONS, distort
from bench.datasets._embedded_mos import pseudo_mos

VERSION = "1"
PER_REFERENCE = 150  # views per photograph: ~2000 for a 13-photograph train side, ~2 min to build on 1 core
CLEAN_EVERY = 15  # about one view in this many is left undistorted (pseudo-MOS 100)
SMALLEST = 0.3  # the smallest crop, as a share of the photograph's shorter side
DRAW = 7  # the second half of each photograph's generator seed


def _view(photo: np.ndarray, name: str, k: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(distorted view, its undistorted crop, type, level) for view `k` of `photo`."""
    from PIL import Image

    h, w = photo.shape[:2]
    side = max(size, int(min(h, w) * rng.uniform(SMALLEST, 1.0)))
    side = min(side, h, w)
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = np.ascontiguousarray(photo[top:top + side, left:left + side, :3]).astype(np.uint8)
    crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.LANCZOS))
    if rng.random() < 0.5:
        crop = np.ascontiguousarray(crop[:, ::-1])
    kind = list(DISTORTIONS)[int(rng.integers(len(DISTORTIONS)))]
    level = int(rng.integers(1, 6))
    if rng.random() < 1 / CLEAN_EVERY:
        return crop, crop, "reference", 0
    return distort(crop, f"{name}#view{k}", kind, level), crop, kind, level


def build_views(size: int, sources: Iterable[tuple[str, str, Callable[[], np.ndarray]]], workers: int,
                threads: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every photograph's views and their pseudo-MOS, from scratch (no cache); `sources`:
    (name, package, loader) of each photograph, as the set itself finds them."""
    images, crops, names, refs, types, levels = [], [], [], [], [], []
    for name, package, load in progress(list(sources), desc="embedded: drawing training views", unit="photo"):
        try:
            photo = np.asarray(load())
            if photo.ndim != 3 or photo.shape[2] < 3:
                raise ValueError(f"not a colour image: shape {photo.shape}")
        except Exception as e:  # noqa: BLE001 - the set itself skips it too, with its own warning
            warn(f"embedded training views: skipping source '{name}' ({package}): {type(e).__name__}: {e}")
            continue
        rng = np.random.default_rng([zlib.crc32(name.encode()), DRAW])
        for k in range(PER_REFERENCE):
            view, crop, kind, level = _view(photo, name, k, size, rng)
            images.append(view), crops.append(crop), types.append(kind), levels.append(level), refs.append(name)
            names.append(f"{name}__view{k}_{kind}_{level}")
    imgs = np.stack(images)
    mos = pseudo_mos(imgs, np.stack(crops), workers=workers, threads=threads)
    arrays = {"images": imgs, "mos": mos, "names": np.asarray(names), "refs": np.asarray(refs),
              "types": np.asarray(types), "levels": np.asarray(levels, dtype=np.int8)}
    meta = {"dataset": "embedded", "part": "training views", "views_version": VERSION, "size": size,
            "n_images": len(names), "per_reference": PER_REFERENCE, "clean_every": CLEAN_EVERY,
            "smallest_crop": SMALLEST, "draw": DRAW}
    return arrays, meta
