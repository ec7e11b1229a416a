"""Running torchattacks' algorithms on a regression score.

torchattacks computes cross-entropy on class logits. We expose, per image, the logits
[0, z] with z = objective(x) - objective(x_clean) and the label 0: the loss is then
softplus(z), whose gradient is sigmoid(z) times the objective's gradient. Sign-based
attacks (FGSM, I-FGSM, PGD, MI-FGSM, APGD) therefore take exactly the steps they would
take on the objective itself, and softplus being increasing, "best loss" is "best
objective". Subtracting the clean value keeps z near 0, where sigmoid does not
underflow, whatever the model's score scale.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


class ScoreAsLogits(nn.Module):
    def __init__(self, objective: Callable[[Tensor], Tensor], x_clean: Tensor) -> None:
        super().__init__()
        self.objective = objective
        with torch.no_grad():
            self.register_buffer("ref", objective(x_clean).detach())
        # torchattacks reads the device from the model's first parameter
        self.anchor = nn.Parameter(torch.zeros(0, device=x_clean.device), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        z = self.objective(x) - self.ref
        return torch.stack([torch.zeros_like(z), z], dim=1)

    def gain(self, x: Tensor) -> Tensor:
        """Per image, how much the objective rose over the clean image."""
        return self.objective(x) - self.ref


def labels_for(x: Tensor) -> Tensor:
    """The label torchattacks asks for: class 0 for every image (see the module docstring)."""
    return torch.zeros(len(x), dtype=torch.long, device=x.device)


def run(attack_cls: type, objective: Callable[[Tensor], Tensor], x: Tensor, **kwargs) -> Tensor:
    model = ScoreAsLogits(objective, x)
    atk = attack_cls(model, **kwargs)
    return finite_or_clean(atk(x, labels_for(x)), x)


def finite_or_clean(x_adv: Tensor, x: Tensor) -> Tensor:
    """Where an image has no usable gradient, normalising attacks (MI-FGSM divides by
    the mean |gradient|) return NaN: such an image did not move, so give it back clean
    rather than let NaN reach the model. The runner's zero-gradient flag reports it."""
    bad = ~torch.isfinite(x_adv).flatten(1).all(1)
    if bad.any():
        x_adv = x_adv.clone()
        x_adv[bad] = x[bad]
    return x_adv
