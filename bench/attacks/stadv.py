"""stAdv: Xiao, Zhu, Li, He, Liu & Song, "Spatially Transformed Adversarial Examples"
(ICLR 2018, https://arxiv.org/abs/1801.02612).

Threat model: spatial, not additive. Each output pixel is read, by bilinear interpolation
(`torch.nn.functional.grid_sample`), from its own position moved by a per-pixel flow
vector (dx, dy); no pixel value is added. The budget is the largest displacement, the
L-inf norm of the flow in pixels (`AttackInfo.norm = "flow"`, `budget_unit = "px"`): the
matrix gives eps in pixels, e.g. eps = [0.5, 1], and the base class checks the
displacement this attack reports. The L-inf distance of the images is still measured
(the record's `linf`), but it is not this attack's budget.

The paper minimises L_adv + tau * L_flow with L-BFGS, where L_flow is the flow's total
variation, sum over pixels p and their 4 neighbours q of sqrt(|du_p - du_q|^2 +
|dv_p - dv_q|^2), and tau = 0.05 (the value used in all its experiments). Deviations, each
because of what this benchmark measures:
- a hard budget: the paper bounds the flow only through tau; here each flow component is
  clipped to [-eps, eps] after every step, so that cells at different eps are comparable;
- Adam steps instead of L-BFGS (L-BFGS does not take a projection), a fixed step count,
  and the best point per image (highest objective) kept, as the other attacks here do;
- L_adv is the score objective (raise the score the "better" way), not a classifier's
  margin; L_flow is averaged over pixels instead of summed, so that tau does not grow with
  the image size (a mean-pooled score's gradient does not), and 1e-8 is added under the
  square root so that its gradient is finite at zero flow;
- out-of-image reads take the border pixel (`padding_mode="border"`).

Arguments: steps=20 (Adam steps), lr=0.1 (px per step, Adam's learning rate), tau=0.05.
The attack calls only `objective`, so BPDA and EOT apply to it as to any other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.api import Attack, AttackInfo, Field, Params, register_attack
from bench.attacks._common import BestPoint


def warp(x: Tensor, flow: Tensor) -> Tensor:
    """x (B, C, H, W) read at each pixel's position moved by flow (B, H, W, 2), in pixels
    (dx, dy), with bilinear interpolation; zero flow gives x back."""
    b, _, h, w = x.shape
    identity = torch.eye(2, 3, dtype=x.dtype, device=x.device).expand(b, 2, 3)
    grid = F.affine_grid(identity, list(x.shape), align_corners=True)
    scale = torch.tensor([2 / max(w - 1, 1), 2 / max(h - 1, 1)], dtype=x.dtype, device=x.device)
    return F.grid_sample(x, grid + flow * scale, mode="bilinear", padding_mode="border", align_corners=True)


def flow_loss(flow: Tensor) -> Tensor:
    """The paper's L_flow per image, averaged over pixels: the distance of each pixel's flow
    vector to its right and lower neighbours' (each neighbour pair counted once per
    direction, as the paper's sum over 4 neighbours counts it twice)."""
    dx = flow[:, :, 1:] - flow[:, :, :-1]
    dy = flow[:, 1:] - flow[:, :-1]
    tv = (dx.pow(2).sum(-1) + 1e-8).sqrt().sum((1, 2)) + (dy.pow(2).sum(-1) + 1e-8).sqrt().sum((1, 2))
    return 2 * tv / (flow.shape[1] * flow.shape[2])


@register_attack
class StAdv(Attack):
    info = AttackInfo(
        name="stadv",
        norm="flow",
        budget_unit="px",
        needs_gradients=True,
        reference="https://arxiv.org/abs/1801.02612",
        description="Spatially transformed: a smooth per-pixel flow field moves pixels by at most eps px.",
    )

    class Params(Params):
        steps: int = Field(20, ge=1, description="Adam steps on the flow field")
        lr: float = Field(0.1, gt=0, description="Adam learning rate, pixels")
        tau: float = Field(0.05, ge=0, description="weight of the flow's smoothness loss (paper: 0.05)")

    def perturb(self, objective, x: Tensor, eps: float) -> Tensor:
        b, _, h, w = x.shape
        flow = torch.zeros(b, h, w, 2, dtype=x.dtype, device=x.device, requires_grad=True)
        opt = torch.optim.Adam([flow], lr=self.params["lr"])
        with torch.no_grad():
            best = BestPoint(flow, objective(x))
        for _ in range(self.params["steps"]):
            value = objective(warp(x, flow))
            best.update(flow, value)
            opt.zero_grad()
            (self.params["tau"] * flow_loss(flow) - value).sum().backward()
            flow.grad.nan_to_num_(0.0, 0.0, 0.0)
            opt.step()
            with torch.no_grad():
                flow.clamp_(-eps, eps)
        with torch.no_grad():
            best.update(flow, objective(warp(x, flow)))
            self.displacement = float(best.x.abs().max()) if best.x.numel() else 0.0
            return warp(x, best.x)
