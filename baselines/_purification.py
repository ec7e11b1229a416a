"""What the input-transformation baselines share: their metadata, 8-bit round trips and
per-image application (not a plugin: discovery skips `_` modules). Their parameters'
ranges are declared in each one's `Params` and checked wherever it is created.

The metadata decides how each one is attacked (bench/gradients.py), so it is built in one
place from the two facts that matter: whether `purify` draws random numbers (EOT) and,
where gradients cannot flow through it, what stands in for it on the backward pass (BPDA).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bench.api import Defense, DefenseInfo

MSU_BENCHMARK = "https://arxiv.org/abs/2408.01541"  # Gushchin et al., ICML 2025


def purification_info(name: str, description: str, *, randomized: bool = False, surrogate: str | None = None,
                      reference: str = MSU_BENCHMARK) -> DefenseInfo:
    """A purification's metadata: differentiable exactly when no surrogate is named."""
    return DefenseInfo(name=name, kind="purification", randomized=randomized, differentiable=surrogate is None,
                       surrogate=surrogate, reference=reference, description=description)


class Purification(Defense):
    """An input transformation: `purify` (and `surrogate` where it is not differentiable).
    Each declares its parameters' ranges (the MSU benchmark's) in its `Params`."""


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
