"""MADC: maximum differentiation competition as an attack. Wang & Simoncelli, "Maximum
differentiation (MAD) competition: a methodology for comparing computational models of
perceptual quantities", Journal of Vision 8(12):8, 2008 (https://doi.org/10.1167/8.12.8);
used against no-reference metrics by the MSU metrics robustness benchmark (Antsiferova et
al., AAAI 2024, https://arxiv.org/abs/2310.06958; its code:
robustness_benchmark/methods/madc/run.py), whose version and defaults this follows.

Threat model: L-inf, eps in /255 units on [0, 1] images, AND per image RMSE(x', x) <=
`rmse_bound` (/255 units). MAD synthesises the image that changes one model's value most
while another model's value is held fixed; here the attacked metric is raised while the
full-reference one, the MSE to the clean image (as in the benchmark), is held. Each step
takes the attacked metric's gradient, removes its component along the MSE's gradient
(which points along x' - x): what is left is tangent to the MSE's level set, so to first
order the step changes the score and not the MSE. The step is `alpha` times the sign of that
projected gradient (as in the benchmark; the first step, at x' = x where the MSE has no
direction, takes the plain gradient), projected onto the eps-ball and [0, 1]; where the
sign has carried the image beyond the MSE tolerance, it is pulled back onto it. The
highest-objective point per image (all of them within both bounds) is returned.

Deviations from the benchmark's code, and why: it takes one projection coefficient and the
mean score over the whole batch; here each image has its own (images are independent). It
pulls an image back by signed steps of 0.0005 along the RMSE's gradient until the bound
holds (a loop with no cap); here the perturbation is scaled down radially to the bound,
which is exact, ends at once, and keeps the image inside the L-inf ball and [0, 1] (it is
a convex combination of x and a point of both). Its only budget is the RMSE bound (10/255,
with 8 steps of 0.001 it never binds); the cell's L-inf eps is added here as everywhere.

Arguments: steps=8, alpha=0.255 (/255, the benchmark's lr = 0.001), rmse_bound=10.0 (/255,
the benchmark's eps = 10/255).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.api import Attack, AttackInfo, Field, Params, register_attack
from bench.attacks._common import BestPoint, project, value_and_grad


def rmse(a: Tensor, b: Tensor) -> Tensor:
    """Per-image root mean squared difference (image units)."""
    return (a - b).pow(2).flatten(1).mean(1).sqrt()


def tangent(grad: Tensor, delta: Tensor) -> Tensor:
    """grad less its component along delta, per image: tangent to the MSE's level set at
    x + delta (the MSE's gradient there is 2 delta / n). Unchanged where delta is zero."""
    g, d = grad.flatten(1), delta.flatten(1)
    dd = (d * d).sum(1, keepdim=True)
    coef = torch.where(dd > 0, (g * d).sum(1, keepdim=True) / dd.clamp_min(1e-30), torch.zeros_like(dd))
    return (g - coef * d).view_as(grad)


def pull_back(x_adv: Tensor, x: Tensor, bound: float) -> Tensor:
    """Scale each perturbation down to RMSE `bound` where it is above it."""
    r = rmse(x_adv, x).view(-1, 1, 1, 1)
    scale = torch.where(r > bound, bound / r.clamp_min(1e-30), torch.ones_like(r))
    return x + (x_adv - x) * scale


@register_attack
class MADC(Attack):
    info = AttackInfo(
        name="madc",
        norm="Linf",
        reference="https://doi.org/10.1167/8.12.8",
        description="MAD competition: signed steps tangent to the MSE's level set, the MSE to the clean image held "
                    "within a bound.",
    )

    class Params(Params):
        steps: int = Field(8, ge=1, description="signed steps along the projected gradient")
        alpha: float = Field(0.255, gt=0, description="step size, /255 units")
        rmse_bound: float = Field(10.0, gt=0, description="largest RMSE to the clean image, /255 units (the "
                                                          "full-reference metric held)")

    def perturb(self, objective, x: Tensor, eps: float) -> Tensor:
        """Steps tangent to the MSE's level set, each pulled back within the RMSE bound."""
        p = self.params
        alpha, bound = p["alpha"] / 255, p["rmse_bound"] / 255
        best: BestPoint | None = None
        cur = x.clone()
        for _ in range(int(p["steps"])):
            value, grad = value_and_grad(objective, cur)
            best = BestPoint(cur, value) if best is None else best
            best.update(cur, value)
            with torch.no_grad():
                step = alpha * tangent(grad, cur - x).sign()
                cur = pull_back(project(cur + step, x, eps), x, bound)
        return BestPoint.final(best, objective, cur)
