"""FGSM (Goodfellow et al., ICLR 2015, https://arxiv.org/abs/1412.6572).

Threat model: L-inf, eps in /255 units on [0, 1] images. One step of size eps along
the sign of the score's gradient, in the model's "better" direction. torchattacks.FGSM
runs the algorithm; only its loss was adapted (see `_torchattacks`).
"""

from __future__ import annotations

from torch import Tensor

from bench.api import Attack, AttackInfo, register_attack
from bench.attacks import _torchattacks


@register_attack
class FGSM(Attack):
    info = AttackInfo(
        name="fgsm",
        norm="Linf",
        reference="https://arxiv.org/abs/1412.6572",
        description="Fast gradient sign method: one signed-gradient step of size eps.",
    )

    def perturb(self, objective, x: Tensor, eps: float) -> Tensor:
        import torchattacks

        return _torchattacks.run(torchattacks.FGSM, objective, x, eps=eps)
