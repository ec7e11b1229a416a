"""A perceptual-bound attack in the spirit of Zhang et al. (NeurIPS 2022, "Perceptual
attacks of no-reference image quality models with human-in-the-loop",
https://arxiv.org/abs/2210.00933): push the score as far as possible while a
full-reference similarity to the clean image stays above a bound.

Threat model: L-inf, eps in /255 units on [0, 1] images, AND per image
SSIM(x', x) >= `ssim_bound`. SSIM is pyiqa's (luma, Gaussian window), the same
implementation the runner records for every cell, so the recorded SSIM of a cell
of this attack is at least the bound. (The paper also uses LPIPS and DISTS; their
weights cannot be had offline, so SSIM it is.)

Each step is a signed-gradient step of size `alpha` (/255) projected onto the L-inf
ball; if it takes an image below the SSIM bound, the step is shortened by halving
(backtracking up to `backtracks` times) and dropped if none is feasible. The feasible
point with the highest objective per image is kept. The paper solves the same problem
(the largest score change under a full-reference bound) in a Lagrangian form; here the
bound is enforced exactly instead, so that a cell's recorded SSIM is guaranteed. The
human-in-the-loop part of the paper (people checking the results) is no part of a benchmark.

Arguments: steps=20, alpha=1.0 (/255), ssim_bound=0.95, backtracks=4.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.api import Attack, AttackInfo, Field, Params, register_attack
from bench.attacks._common import BestPoint, project

_SSIM: dict[str, object] = {}


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """Per-image SSIM of a against b, by pyiqa (created once per process)."""
    import pyiqa

    key = str(a.device)
    if key not in _SSIM:
        _SSIM[key] = pyiqa.create_metric("ssim", device=a.device)
    with torch.no_grad():
        return _SSIM[key](a.float(), b.float()).reshape(-1).to(a.dtype)


@register_attack
class PerceptualBound(Attack):
    info = AttackInfo(
        name="perceptual",
        norm="Linf",
        reference="https://arxiv.org/abs/2210.00933",
        description="Signed-gradient ascent that keeps SSIM to the clean image above a bound.",
    )

    class Params(Params):
        steps: int = Field(20, ge=1, description="signed-gradient steps")
        alpha: float = Field(1.0, gt=0, description="step size, /255 units")
        ssim_bound: float = Field(0.95, gt=0, le=1,
                                  description="least SSIM to the clean image an attacked image may have")
        backtracks: int = Field(4, ge=0, description="halvings of a step tried before it is dropped")

    def perturb(self, objective, x: Tensor, eps: float) -> Tensor:
        p = self.params
        bound, alpha = float(p["ssim_bound"]), p["alpha"] / 255
        best: BestPoint | None = None
        cur = x.clone()
        for _ in range(p["steps"]):
            z = cur.clone().requires_grad_(True)
            value = objective(z)
            best = BestPoint(cur, value) if best is None else best
            best.update(cur, value)
            (grad,) = torch.autograd.grad(value.sum(), z)
            step = alpha * torch.nan_to_num(grad).sign()
            with torch.no_grad():
                pending = torch.arange(len(x), device=x.device)  # images still looking for a feasible step
                for _ in range(p["backtracks"] + 1):
                    cand = project(cur[pending] + step[pending], x[pending], eps)
                    fits = ssim(cand, x[pending]) >= bound  # SSIM dominates the cost: only where needed
                    cur[pending[fits]] = cand[fits]
                    pending = pending[~fits]
                    if len(pending) == 0:
                        break
                    step = step / 2
        return BestPoint.final(best, objective, cur)
