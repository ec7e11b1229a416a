"""PGD (Madry et al., ICLR 2018, https://arxiv.org/abs/1706.06083).

Threat model: L-inf, eps in /255 units on [0, 1] images. A uniform random start in the
eps-ball, then `steps` signed-gradient steps of size `alpha` (/255 units), each projected
back onto the ball and onto [0, 1]. torchattacks.PGD runs the algorithm; only its loss
was adapted (see `_torchattacks`).

Arguments: steps=10, alpha=1.0 (/255), random_start=True.
"""

from __future__ import annotations

from torch import Tensor

from bench.api import Attack, AttackInfo, Field, Params, register_attack
from bench.attacks import _torchattacks


@register_attack
class PGD(Attack):
    info = AttackInfo(
        name="pgd",
        norm="Linf",
        reference="https://arxiv.org/abs/1706.06083",
        description="Projected gradient descent with a random start.",
    )

    class Params(Params):
        steps: int = Field(10, ge=1, description="signed-gradient steps")
        alpha: float = Field(1.0, gt=0, description="step size, /255 units")
        random_start: bool = Field(True, description="start from a uniform random point of the eps-ball")

    def perturb(self, objective, x: Tensor, eps: float) -> Tensor:
        import torchattacks

        p = self.params
        return _torchattacks.run(
            torchattacks.PGD, objective, x, eps=eps, alpha=p["alpha"] / 255, steps=p["steps"], random_start=p["random_start"]
        )
