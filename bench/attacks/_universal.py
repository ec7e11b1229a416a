"""What the universal attacks (uap, cumulative-uap, generative-uap) share: one pattern for
every image, learnt on the train split in `fit` and added at the cell's amplitude in `perturb`.

The pattern has unit L-inf norm (values in [-1, 1]) and the train images' size; an image of
another size gets it tiled (repeated, then cropped at the top-left), never resized, since
resizing changes its spatial frequencies, which are what a model responds to. Registers nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor


def tile_to(pattern: Tensor, h: int, w: int) -> Tensor:
    """Repeat a (1, C, h0, w0) pattern to cover (h, w) and crop it there."""
    ph, pw = pattern.shape[-2:]
    reps = (-(-h // ph), -(-w // pw))
    return pattern.repeat(1, 1, *reps)[..., :h, :w]


def train_batches(name: str, train: Any, epochs: int, batch_size: int, max_images: int) -> Iterator[Tensor]:
    """Shuffled batches of at most `max_images` train images (a random subset drawn once with
    torch's global generator, which the runner seeds), `epochs` times over; `train` supports
    len() and slicing. Raises where the split is empty: a universal pattern needs train images."""
    n = len(train)
    if n == 0:
        raise ValueError(f"attack '{name}': the train split is empty; a universal perturbation needs train images")
    order = torch.randperm(n)[: min(n, int(max_images))]
    for _ in range(int(epochs)):
        order = order[torch.randperm(len(order))]
        for i in range(0, len(order), int(batch_size)):
            yield torch.cat([train[j : j + 1] for j in order[i : i + int(batch_size)].tolist()])


def apply(name: str, pattern: Tensor | None, x: Tensor, eps: float) -> Tensor:
    """x plus the unit pattern at amplitude eps, tiled to x's size (the base class clamps to [0, 1])."""
    if pattern is None:
        raise RuntimeError(f"attack '{name}' has no trained perturbation: call prepare(score, train, eps, "
                           "lower_better) on the train split before attacking (the runner does)")
    return x + eps * tile_to(pattern.to(x), *x.shape[-2:])
