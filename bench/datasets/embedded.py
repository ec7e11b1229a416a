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
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
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

log = logging.getLogger(__name__)

VERSION = "1"
MIN_REFERENCES = 8
MIN_SIZE = 48  # pyiqa's VIF pyramid needs more than 32 px
# One thread: the metric kernels are small, and on a shared 2-core machine two OpenMP
# threads spin-waited their way to a 10x slower build (measured). Results were the same
# bytes at 1, 2 and 3 threads.
BUILD_THREADS = 1
BUILD_COUNT = 0  # builds done in this process; tests use it to see the cache was reused

_SKIMAGE_PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
    "immunohistochemistry", "retina", "stereo_motorcycle",
)
_TID_REFS = ("I03", "I04", "I06", "I08", "I19")
_PYIQA_JPEG_DIR = "tests/test_efficiency_img_dir/"


# ----------------------------------------------------------------------------- sources
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


# ----------------------------------------------------------------------------- distortions
def _pil(x: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(x)


def _u8(x: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (skimage's convention) back to uint8."""
    return np.clip(np.round(np.asarray(x, np.float64) * 255.0), 0, 255).astype(np.uint8)


def _gaussian_blur(x: np.ndarray, level: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    from skimage.filters import gaussian

    return _u8(gaussian(x, sigma=level * scale, channel_axis=-1, preserve_range=False))


def _motion_blur(x: np.ndarray, level: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    from scipy.ndimage import convolve1d

    # Horizontal or vertical streak, direction drawn per (reference, type).
    n = max(2, round(level * scale))
    axis = int(rng.integers(0, 2))
    return np.clip(np.round(convolve1d(x.astype(np.float64), np.full(n, 1.0 / n), axis=axis, mode="reflect")),
                   0, 255).astype(np.uint8)


def _gaussian_noise(x: np.ndarray, level: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    from skimage.util import random_noise

    return _u8(random_noise(x, mode="gaussian", var=level, rng=rng))


def _impulse_noise(x: np.ndarray, level: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    from skimage.util import random_noise

    return _u8(random_noise(x, mode="s&p", amount=level, rng=rng))


def _encode(x: np.ndarray, fmt: str, **kw: Any) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    _pil(x).save(buf, fmt, **kw)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def _jpeg(x: np.ndarray, level: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    return _encode(x, "JPEG", quality=int(level))


def _jpeg2000(x: np.ndarray, level: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    # Levels are target PSNRs (dB): a compression ratio would hit the codestream's
    # ~270-byte floor at small sizes and stop degrading.
    return _encode(x, "JPEG2000", quality_mode="dB", quality_layers=[level], irreversible=True)


def _contrast(x: np.ndarray, level: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    from PIL import ImageEnhance

    return np.asarray(ImageEnhance.Contrast(_pil(x)).enhance(level))


def _saturation(x: np.ndarray, level: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    from PIL import ImageEnhance

    return np.asarray(ImageEnhance.Color(_pil(x)).enhance(level))


def _quantization(x: np.ndarray, level: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    # Median-cut palette, no dithering (Pillow dithers only with a given palette).
    return np.asarray(_pil(x).quantize(colors=int(level)).convert("RGB"))


def _pixelate(x: np.ndarray, level: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    from PIL import Image

    im = _pil(x)
    small = max(2, round(x.shape[1] / level))
    return np.asarray(im.resize((small, small), Image.Resampling.BOX).resize(im.size, Image.Resampling.NEAREST))


def _gamma(x: np.ndarray, level: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    from skimage.exposure import adjust_gamma

    return adjust_gamma(x, gamma=level)


# name -> (function, 5 levels from mild to severe)
DISTORTIONS: dict[str, tuple[Callable[..., np.ndarray], tuple[float, ...]]] = {
    "blur": (_gaussian_blur, (1.0, 1.6, 2.4, 3.6, 5.4)),
    "motion": (_motion_blur, (4, 7, 11, 16, 24)),
    "noise": (_gaussian_noise, (0.001, 0.003, 0.008, 0.02, 0.05)),
    "impulse": (_impulse_noise, (0.005, 0.015, 0.04, 0.08, 0.15)),
    "jpeg": (_jpeg, (50, 25, 12, 6, 2)),
    "jpeg2000": (_jpeg2000, (32, 29, 26, 23, 20)),
    "contrast": (_contrast, (0.75, 0.55, 0.4, 0.25, 0.12)),
    "saturation": (_saturation, (0.6, 0.4, 0.2, 0.1, 0.0)),
    "quantization": (_quantization, (64, 32, 16, 8, 4)),
    "pixelate": (_pixelate, (2, 3, 4, 6, 8)),
    "brighten": (_gamma, (0.8, 0.65, 0.5, 0.38, 0.28)),
    "darken": (_gamma, (1.25, 1.6, 2.0, 2.6, 3.4)),
}


def distort(ref: np.ndarray, ref_name: str, kind: str, level: int) -> np.ndarray:
    """Apply distortion `kind` at `level` (1..5) to a uint8 (H, W, 3) reference."""
    fn, levels = DISTORTIONS[kind]
    type_index = list(DISTORTIONS).index(kind)
    # Same draw at every level (one noise pattern, one streak direction, growing), so
    # that levels differ only in strength.
    rng = np.random.default_rng([zlib.crc32(ref_name.encode()), type_index])
    scale = ref.shape[0] / 96.0
    out = fn(ref, levels[level - 1], rng, scale)
    assert out.shape == ref.shape and out.dtype == np.uint8, (kind, out.shape, out.dtype)
    return out


# ----------------------------------------------------------------------------- pseudo-MOS
@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def pseudo_mos(dist: np.ndarray, ref: np.ndarray, batch: int = 32) -> np.ndarray:
    """Pseudo-MOS (0..100, higher better) of uint8 (N, H, W, 3) images against their refs."""
    # shown before pyiqa is imported (~3 s), so that no silent gap follows the distortions
    bar = progress(total=len(dist), desc="embedded: building pseudo-MOS", unit="img")
    import pyiqa  # lazily: it is slow to import and only the build needs it

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).permute(0, 3, 1, 2).float().div(255.0)

    from pyiqa.archs.func_util import preprocess_rgb
    from pyiqa.archs.ssim_arch import ssim

    def ssim32(d: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        # pyiqa's SSIM metric, minus its cast to float64, whose conv is ~15x slower on CPU.
        y = [preprocess_rgb(v, test_y_channel=True, data_range=255, color_space="yiq") for v in (d, r)]
        return ssim(y[0], y[1], data_range=255)

    metrics: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
        n: pyiqa.create_metric(n, device="cpu") for n in ("fsim", "vif", "gmsd")
    }
    metrics["ssim"] = ssim32
    raw: dict[str, list[np.ndarray]] = {n: [] for n in metrics}
    with torch.no_grad(), bar:
        for i in range(0, len(dist), batch):
            d, r = t(dist[i:i + batch]), t(ref[i:i + batch])
            for n, m in metrics.items():
                raw[n].append(m(d, r).double().reshape(-1).numpy())
            bar.update(len(d))
    s = {n: np.concatenate(v) for n, v in raw.items()}
    q = (np.clip((s["fsim"] - 0.5) / 0.5, 0, 1) + np.clip(s["ssim"], 0, 1)
         + np.clip(s["vif"], 0, 1) + np.clip(1 - s["gmsd"] / 0.35, 0, 1)) / 4
    return np.round(100.0 * q, 3).astype(np.float32)


def level_ordering(refs: np.ndarray, types: np.ndarray, levels: np.ndarray, mos: np.ndarray) -> dict[str, float]:
    """Mean Spearman(level, pseudo-MOS) within each (reference, type), overall and by type."""
    from scipy.stats import spearmanr

    by_type: dict[str, list[float]] = {}
    for r in np.unique(refs):
        for k in np.unique(types[types != "reference"]):
            m = (refs == r) & (types == k)
            rho = spearmanr(levels[m], mos[m]).statistic
            by_type.setdefault(str(k), []).append(0.0 if np.isnan(rho) else float(rho))  # ties: no order
    out = {"mean": round(float(np.mean([v for vs in by_type.values() for v in vs])), 4)}
    out.update({k: round(float(np.mean(v)), 4) for k, v in sorted(by_type.items())})
    return out


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
    with _torch_threads(BUILD_THREADS):
        mos = pseudo_mos(imgs, ref_imgs[np.asarray(ref_idx)])
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


def load(size: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The built dataset at `size`, from the cache, building it first if absent."""
    if size < MIN_SIZE:
        raise ValueError(f"embedded dataset: size {size} is below {MIN_SIZE} px, the least VIF works at")
    path = cache_path(size)
    side = path.with_suffix(".json")
    if not (path.exists() and side.exists()):
        arrays, meta = build(size)
        buf = io.BytesIO()
        _write_npz(buf, arrays)
        atomic_write(path, buf.getvalue())
        atomic_write(side, (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(side.read_text())


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
        version=VERSION,
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


def _make_split(arrays: dict[str, np.ndarray], idx: np.ndarray) -> IQASplit:
    images = torch.from_numpy(arrays["images"][idx]).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    return IQASplit(
        images=images,
        mos=torch.from_numpy(arrays["mos"][idx].astype(np.float32)),
        names=[str(s) for s in arrays["names"][idx]],
        refs=[str(s) for s in arrays["refs"][idx]],
    )
