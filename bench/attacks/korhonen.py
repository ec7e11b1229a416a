"""Korhonen & You (QoEVMA 2022, "Adversarial attacks against blind image quality
assessment models"; the authors' code: https://github.com/jarikorhonen/adversarial-iqa).

Threat model: L-inf, eps in /255 units on [0, 1] images. Adam steps on the image,
with the gradient weighted by a spatial-activity map so that the perturbation goes
where texture hides it: the squared Sobel magnitude of the luma (Sobel kernels / 8,
border zeroed), divided by its maximum per image (all ones where the image is flat),
then dilated with a 5x5 disc - as in the authors' public code. The best point per image (highest
objective) is kept, as in the authors' loop.

One deliberate change: Adam divides each coordinate's step by that coordinate's own
running gradient RMS, which cancels any fixed per-pixel weight on the gradient. So the
map is applied to the perturbation, x' = x + map * delta, with Adam on delta: the
gradient delta sees is exactly the masked gradient of the paper, and the step in image
space is masked too, which is what the masking is for. delta is clipped to [-eps, eps]
so that the perturbation stays in the L-inf ball (and below it where the map is < 1).
The authors' convergence test (20 to 100 iterations) is replaced by a fixed count.

Arguments: steps=20, lr=1.0 (/255 units, Adam's learning rate; the authors used 0.1 to 5
on 0..255 images, i.e. the same units).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.api import Attack, AttackInfo, Field, Params, register_attack
from bench.attacks._common import BestPoint

_SOBEL = torch.tensor([[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]) / 8
_DISC = [(i, j) for i in range(-2, 3) for j in range(-2, 3) if abs(i) + abs(j) < 4]  # 5x5 less corners


def spatial_activity(x: Tensor) -> Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 1, H, W) in [0, 1]: where the image has texture."""
    luma = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)  # BT.601, as rgb2ycbcr
    k = _SOBEL.to(x)
    gy = F.conv2d(luma, k.view(1, 1, 3, 3), padding=1)
    gx = F.conv2d(luma, k.t().reshape(1, 1, 3, 3), padding=1)
    act = gx**2 + gy**2
    act[..., :1, :] = act[..., -1:, :] = 0
    act[..., :, :1] = act[..., :, -1:] = 0
    peak = act.flatten(1).amax(1).view(-1, 1, 1, 1)
    act = torch.where(peak > 0, act / peak.clamp_min(1e-30), torch.ones_like(act))
    padded = F.pad(act, (2, 2, 2, 2))
    h, w = act.shape[-2:]
    return torch.stack([padded[..., 2 + i : 2 + i + h, 2 + j : 2 + j + w] for i, j in _DISC]).amax(0)


@register_attack
class Korhonen(Attack):
    info = AttackInfo(
        name="korhonen",
        norm="Linf",
        reference="https://github.com/jarikorhonen/adversarial-iqa",
        description="Adam steps masked by a Sobel spatial-activity map (perturbs textured regions).",
    )

    class Params(Params):
        steps: int = Field(20, ge=1, description="Adam steps")
        lr: float = Field(1.0, gt=0, description="Adam learning rate, /255 units")

    def perturb(self, objective, x: Tensor, eps: float) -> Tensor:
        mask = spatial_activity(x)
        delta = torch.zeros_like(x, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=self.params["lr"] / 255)
        with torch.no_grad():
            best = BestPoint(x, objective(x))
        for _ in range(self.params["steps"]):
            x_adv = (x + mask * delta).clamp(0, 1)
            value = objective(x_adv)
            best.update(x_adv, value)
            opt.zero_grad()
            (-value.sum()).backward()
            if delta.grad is not None:
                delta.grad.nan_to_num_(0.0, 0.0, 0.0)
            opt.step()
            with torch.no_grad():
                delta.clamp_(-eps, eps)
        with torch.no_grad():
            x_adv = (x + mask * delta).clamp(0, 1)
            best.update(x_adv, objective(x_adv))
        return best.x
