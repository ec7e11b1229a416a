"""Small pieces the hand-written attacks share: projection onto the threat model and
keeping, per image, the best point seen (by objective value: regression has no
"misclassified" to stop at, so the best point is the one with the highest objective)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def project(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """Onto the L-inf ball of radius eps around x, then onto valid images [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)


class BestPoint:
    """Per image, the highest-objective point seen so far (the clean image to start)."""

    def __init__(self, x: Tensor, value: Tensor) -> None:
        self.x = x.detach().clone()
        self.value = value.detach().clone()

    @staticmethod
    def final(best: BestPoint | None, objective: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        """The best point once the last iterate `x` is scored too (`x` itself where no step
        was scored: `best` None)."""
        if best is None:
            return x
        with torch.no_grad():
            best.update(x, objective(x))
        return best.x

    def update(self, x: Tensor, value: Tensor) -> Tensor:
        """Keep x where it beats the best; returns the mask of images that improved."""
        better = value.detach() > self.value
        self.x[better] = x.detach()[better]
        self.value[better] = value.detach()[better]
        return better


def value_and_grad(objective, x: Tensor) -> tuple[Tensor, Tensor]:
    """Per image, the objective at x (detached) and its input gradient, non-finite entries
    zeroed; a zero gradient where the objective has no graph at all (a constant view), so
    that such an image simply does not move (the runner's zero-gradient flag reports it)."""
    z = x.detach().clone().requires_grad_(True)
    value = objective(z)
    if not value.requires_grad:
        return value.detach(), torch.zeros_like(z)
    (grad,) = torch.autograd.grad(value.sum(), z)
    return value.detach(), torch.nan_to_num(grad, 0.0, 0.0, 0.0)
