"""std-FGSM, the FGSM with a random step first: R+FGSM of Tramer et al., "Ensemble
Adversarial Training: Attacks and Defenses", ICLR 2018 (https://arxiv.org/abs/1705.07204),
one of the MSU metrics robustness benchmark's attacks.

Threat model: L-inf, eps in /255 units on [0, 1] images. A step of eps/2 along the sign of
Gaussian noise, then one signed-gradient step of eps/2 from there in the model's "better"
direction (the paper's alpha = eps/2, so the two steps use the whole budget), projected
back onto the eps-ball and [0, 1]. The random step escapes the sharp curvature right at the
clean image that a plain FGSM step can be fooled by. torchattacks.RFGSM runs the algorithm
(its random and gradient steps share one size, alpha = eps/2 here, one step); only its
loss was adapted (see `_torchattacks`). No arguments: the budget sets both steps.
"""

from __future__ import annotations

from torch import Tensor

from bench.api import Attack, AttackInfo, register_attack
from bench.attacks import _torchattacks


@register_attack
class StdFGSM(Attack):
    info = AttackInfo(
        name="std-fgsm",
        norm="Linf",
        reference="https://arxiv.org/abs/1705.07204",
        description="FGSM after a random step (R+FGSM): eps/2 along the sign of Gaussian noise, then an eps/2 "
                    "signed-gradient step.",
    )

    def perturb(self, objective, x: Tensor, eps: float) -> Tensor:
        import torchattacks

        return _torchattacks.run(torchattacks.RFGSM, objective, x, eps=eps, alpha=eps / 2, steps=1)
