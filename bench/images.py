"""Reading image files as 8-bit RGB, the documented way.

- grey (L), palette (P), CMYK, YCbCr: converted by Pillow to RGB;
- with alpha (RGBA, LA, PA): composited onto white, then RGB;
- 16-bit or 32-bit integer (I;16, I): scaled to 0..255 by the file's bit depth, then RGB;
An unreadable file raises `ImageError` naming it; callers skip it with a warning and
count it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from bench.errors import BenchError


class ImageError(BenchError):
    pass


def load_image(path: str | Path) -> tuple[torch.Tensor, str | None]:
    """(3, H, W) float tensor in [0, 1], and the conversion applied (None if already RGB)."""
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                arr = arr / (65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0) * 255.0
                im = Image.fromarray(arr.clip(0, 255).astype(np.uint8), "L")
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, rgba)
            rgb = im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageError(f"image '{path}' cannot be read ({type(e).__name__}: {e})") from None
    x = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255
    return x, (None if mode == "RGB" else f"{mode}->RGB")
