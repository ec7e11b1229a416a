"""What the input-transformation baselines share: their metadata, parameter checks,
8-bit round trips and per-image application (not a plugin: discovery skips `_` modules).

The metadata decides how each one is attacked (bench/gradients.py), so it is built in one
place from the two facts that matter: whether `purify` draws random numbers (EOT) and,
where gradients cannot flow through it, what stands in for it on the backward pass (BPDA).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from bench.api import Defense, DefenseInfo

Ranges = dict[str, tuple[Any, ...]]  # parameter -> (low, high) or (low, high, "odd")
MSU_BENCHMARK = "https://arxiv.org/abs/2408.01541"  # Gushchin et al., ICML 2025


def purification_info(name: str, description: str, *, randomized: bool = False, surrogate: str | None = None,
                      reference: str = MSU_BENCHMARK) -> DefenseInfo:
    """A purification's metadata: differentiable exactly when no surrogate is named."""
    return DefenseInfo(name=name, kind="purification", randomized=randomized, differentiable=surrogate is None,
                       surrogate=surrogate, reference=reference, description=description)


class Purification(Defense):
    """A purification whose parameters must lie in declared ranges, checked at creation so
    that a bad matrix value fails its cells with a message naming the defense and the key:
    `ranges` maps a parameter to (low, high) or (low, high, "odd")."""

    ranges: ClassVar[Ranges] = {}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        for key, (lo, hi, *odd) in self.ranges.items():
            check_range(self.info.name, key, self.params[key], lo, hi, odd=bool(odd))


def check_range(defense: str, key: str, value: float, lo: float, hi: float, *, odd: bool = False) -> None:
    """Refuse a parameter outside the range the defense is meant for, naming both."""
    if not lo <= value <= hi or (odd and int(value) % 2 != 1):
        what = f"an odd number in {lo}..{hi}" if odd else f"in {lo}..{hi}"
        raise ValueError(f"defense '{defense}': {key} = {value!r} must be {what}")


def to_uint8(x: Tensor) -> np.ndarray:
    """Images in [0, 1], (B, 3, H, W) -> uint8 array (B, H, W, 3), as an image file holds them."""
    return (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def from_uint8(a: np.ndarray, like: Tensor) -> Tensor:
    """The inverse of `to_uint8`, on `like`'s device and dtype."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).to(like.device, like.dtype) / 255


def tvf() -> Any:
    """torchvision.transforms.functional, imported on first use: it takes seconds to import,
    and `bench list` imports every plugin module."""
    import torchvision.transforms.functional as TF

    return TF


def per_image(x: Tensor, fn: Callable[[Tensor, int], Tensor]) -> Tensor:
    """Apply `fn(image, index)` to each image of a batch: the random transforms draw their
    own parameters per image, and torchvision takes one set of parameters per call."""
    return torch.stack([fn(img, i) for i, img in enumerate(x)])
