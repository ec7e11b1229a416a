"""Reading image files as 8-bit RGB, the documented way.

- grey (L), palette (P), CMYK, YCbCr: converted by Pillow to RGB;
- with alpha (RGBA, LA, PA): composited onto white, then RGB;
- 16-bit or 32-bit integer (I;16, I): scaled to 0..255 by the file's bit depth, then RGB;
An unreadable file raises `ImageError` naming it; callers skip it with a warning and
count it.

Real datasets are read lazily through `LazyImages`: a sequence of files that decodes only
the images asked for, each resized (shorter side to `size`, Lanczos) and centre-cropped to
`size` x `size` so that batches stack. JPEGs are decoded at the smallest DCT scale (1, 1/2,
1/4 or 1/8) whose shorter side is still at least `size` (Pillow's `draft`) before the
Lanczos resize: a 4000x3000 SPAQ photo decodes ~10x faster, at a quality the final resize
would throw away anyway.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from bench.errors import BenchError


class ImageError(BenchError):
    pass


def load_image(path: str | Path, draft: int | None = None) -> tuple[torch.Tensor, str | None]:
    """(3, H, W) float tensor in [0, 1], and the conversion applied (None if already RGB).

    `draft`: for JPEGs, decode at the smallest DCT scale whose shorter side is still at
    least this many pixels (see the module docstring); None decodes at full size."""
    try:
        with Image.open(path) as im:
            if draft is not None and im.format == "JPEG":
                w, h = im.size
                s = draft / min(w, h)
                im.draft(im.mode, (max(1, round(w * s)), max(1, round(h * s))))
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


# Smallest side an image may have to be used at all: a 1x1 or 16x16 "photo" upscaled to
# `size` is not an image a rater saw. Smaller files are skipped and counted.
MIN_SIDE = 32


def resize_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Shorter side to `size` (Lanczos, via Pillow on 8-bit data), then a centre crop to
    `size` x `size`. Takes and returns (3, H, W) in [0, 1]."""
    h, w = x.shape[-2:]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    if (nh, nw) != (h, w):
        u8 = x.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        im = Image.fromarray(u8).resize((nw, nh), Image.Resampling.LANCZOS)
        x = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[:, top:top + size, left:left + size].contiguous()


def check_image(path: str | Path, decode: bool = True) -> str | None:
    """Check that a file is an image we can use, without keeping it: open its header,
    refuse sides below MIN_SIDE, then (decode=True) decode it at a reduced JPEG scale so
    that a truncated file is caught. Returns the conversion `load_image` will apply
    ("L->RGB", "CMYK->RGB", ...; None for RGB); raises ImageError naming the file."""
    try:
        with Image.open(path) as im:
            mode, (w, h) = im.mode, im.size
            if min(w, h) < MIN_SIDE:
                raise ImageError(f"image '{path}' is {w}x{h}: smaller than {MIN_SIDE} px on a side")
            if decode:
                if im.format == "JPEG":
                    im.draft(im.mode, (max(1, w // 8), max(1, h // 8)))
                im.load()
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"image '{path}' cannot be read ({type(e).__name__}: {e})") from None
    return None if mode == "RGB" else f"{mode}->RGB"


Index = int | slice | Sequence[int] | np.ndarray | torch.Tensor


class LazyImages:
    """A dataset's images as a read-only sequence that decodes on demand.

    `images[i]` is one (3, size, size) tensor; `images[a:b]`, `images[[i, j]]`,
    `images[long_tensor]` are stacked (B, 3, size, size) float tensors in [0, 1], as a
    tensor's indexing would give. Nothing is read until asked for, so a 10,000-image split
    costs a list of paths; the last `cache` decoded images are kept (8-bit) so that
    training epochs over a small subset do not decode again. Pickles without its cache,
    so worker processes receive only the paths.
    """

    def __init__(self, paths: Sequence[str | Path], size: int, cache: int = 128) -> None:
        if size < MIN_SIDE:
            raise ValueError(f"LazyImages: size {size} is below {MIN_SIDE} px")
        self.paths = [str(p) for p in paths]
        self.size = size
        self.cache_size = cache
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.decoded = 0  # files decoded so far (tests and logs read it)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), 3, self.size, self.size))

    dtype = torch.float32

    def __repr__(self) -> str:
        return f"LazyImages({len(self)} files, {self.size}x{self.size})"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": OrderedDict()}

    def _one(self, i: int) -> torch.Tensor:
        n = len(self.paths)
        if not -n <= i < n:
            raise IndexError(f"image index {i} out of range for {n} images")
        i %= n
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i].float() / 255
        x, _ = load_image(self.paths[i], draft=self.size)
        x = resize_crop(x, self.size)
        self.decoded += 1
        if self.cache_size > 0:
            self._cache[i] = x.mul(255).round().to(torch.uint8)
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return x

    def indices(self, idx: Index) -> list[int]:
        """The positions `idx` names, as a tensor's indexing would read them."""
        if isinstance(idx, slice):
            return list(range(len(self)))[idx]
        if isinstance(idx, torch.Tensor):
            idx = idx.detach().cpu().numpy()
        arr = np.asarray(idx)
        if arr.dtype == bool:
            if arr.shape != (len(self),):
                raise IndexError(f"boolean mask of shape {arr.shape} for {len(self)} images")
            return np.flatnonzero(arr).tolist()
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) and arr.size:
            raise IndexError(f"LazyImages takes an int, a slice or a 1-D list of ints, got {idx!r:.80}")
        return [int(i) for i in arr]

    def __getitem__(self, idx: Index) -> torch.Tensor:
        if isinstance(idx, (int, np.integer)) or (isinstance(idx, torch.Tensor) and idx.ndim == 0
                                                  and idx.dtype != torch.bool):
            return self._one(int(idx))
        picks = self.indices(idx)
        if not picks:
            return torch.empty(0, 3, self.size, self.size)
        return torch.stack([self._one(i) for i in picks])

    def take(self, idx: Index) -> LazyImages:
        """A lazy view on some of the images (what `IQASplit.subset` should use)."""
        out = LazyImages([self.paths[i] for i in self.indices(idx)], self.size, self.cache_size)
        return out
