"""The `embedded` dataset's distortions: 12 KADID-style types x 5 levels, each a call into
Pillow / scikit-image / scipy, seeded per (reference, type); apart from
`bench.datasets.embedded`, which applies them to every reference.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np


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
