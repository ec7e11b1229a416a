"""I-FGSM / BIM (Kurakin et al., ICLR 2017 workshop, https://arxiv.org/abs/1607.02533).

Threat model: L-inf, eps in /255 units on [0, 1] images. `steps` signed-gradient steps
of size `alpha` (/255 units) from the clean image, each clipped back onto the eps-ball
and onto [0, 1]; no random start (that is what sets it apart from PGD).
torchattacks.BIM runs the algorithm; only its loss was adapted (see `_torchattacks`).

Arguments: steps=10, alpha=1.0 (/255): the MSU benchmark's defaults.
"""

from __future__ import annotations

from torch import Tensor

from bench.api import Attack, AttackInfo, Field, Params, register_attack
from bench.attacks import _torchattacks


@register_attack
class IFGSM(Attack):
    info = AttackInfo(
        name="i-fgsm",
        norm="Linf",
        reference="https://arxiv.org/abs/1607.02533",
        description="Iterative FGSM (BIM): signed-gradient steps from the clean image, clipped to the ball.",
    )

    class Params(Params):
        steps: int = Field(10, ge=1, description="signed-gradient steps")
        alpha: float = Field(1.0, gt=0, description="step size, /255 units")

    def perturb(self, objective, x: Tensor, eps: float) -> Tensor:
        import torchattacks

        p = self.params
        return _torchattacks.run(torchattacks.BIM, objective, x, eps=eps, alpha=p["alpha"] / 255, steps=p["steps"])
