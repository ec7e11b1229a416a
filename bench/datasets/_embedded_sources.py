"""The `embedded` dataset's reference photos: every source it knows of (scikit-image,
matplotlib, the pyiqa wheel) with a loader each, and the square crop they are brought to;
apart from `bench.datasets.embedded`, which picks those that load and builds the set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import numpy as np

_SKIMAGE_PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
    "immunohistochemistry", "retina", "stereo_motorcycle",
)
_TID_REFS = ("I03", "I04", "I06", "I08", "I19")
_PYIQA_JPEG_DIR = "tests/test_efficiency_img_dir/"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "missing"


def _skimage_loader(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        img = getattr(skimage.data, name)()
        return img[0] if isinstance(img, tuple) else img  # stereo pair: left view

    return load


def _file_loader(path: Path) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))

    return load


def _candidates() -> Iterator[tuple[str, str, Callable[[], np.ndarray]]]:
    """(name, package, loader) for every source we know of, present or not."""
    for name in _SKIMAGE_PHOTOS:
        yield name, "scikit-image", _skimage_loader(name)
    try:
        import matplotlib

        hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    except ImportError:
        hopper = Path("/nonexistent/grace_hopper.jpg")
    yield "grace_hopper", "matplotlib", _file_loader(hopper)
    try:  # the wheel's data files, found through its RECORD without importing pyiqa
        dist = metadata.distribution("pyiqa")
        files = sorted(str(f) for f in dist.files or [])
        locate = dist.locate_file
    except metadata.PackageNotFoundError:
        files, locate = [], (lambda p: Path("/nonexistent") / p)
    for ref in _TID_REFS:
        yield f"tid2013_{ref.lower()}", "pyiqa", _file_loader(Path(locate(f"ResultsCalibra/ref_dir/{ref}.bmp")))
    jpegs = [f for f in files if f.startswith(_PYIQA_JPEG_DIR) and f.lower().endswith(".jpg")]
    for f in jpegs:
        stem = Path(f).stem.lower().replace("__", "_")
        yield f"pyiqa_{stem}", "pyiqa", _file_loader(Path(locate(f)))


def _square(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"not a colour image: shape {img.shape}")
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = Image.fromarray(np.ascontiguousarray(img[top:top + s, left:left + s, :3]).astype(np.uint8))
    return np.asarray(crop.resize((size, size), Image.Resampling.LANCZOS))
