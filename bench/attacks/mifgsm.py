"""MI-FGSM (Dong et al., CVPR 2018, https://arxiv.org/abs/1710.06081).

Threat model: L-inf, eps in /255 units on [0, 1] images. I-FGSM with momentum: each
step accumulates the L1-normalised gradient into a momentum term (factor `decay`) and
steps `alpha` (/255 units) along its sign, clipped to the eps-ball and [0, 1].
Momentum steadies the direction across steps, which helps where gradients are noisy
(EOT over a randomized defense). torchattacks.MIFGSM runs the algorithm; only its loss
was adapted (see `_torchattacks`); an image whose gradient is exactly zero (the
normalisation divides by zero there) is returned unchanged.

Arguments: steps=10, alpha=1.0 (/255), decay=1.0.
"""

from __future__ import annotations

from torch import Tensor

from bench.api import Attack, AttackInfo, Field, Params, register_attack
from bench.attacks import _torchattacks


@register_attack
class MIFGSM(Attack):
    info = AttackInfo(
        name="mi-fgsm",
        norm="Linf",
        reference="https://arxiv.org/abs/1710.06081",
        description="Momentum iterative FGSM: signed steps along an accumulated, normalised gradient.",
    )

    class Params(Params):
        steps: int = Field(10, ge=1, description="signed-gradient steps")
        alpha: float = Field(1.0, gt=0, description="step size, /255 units")
        decay: float = Field(1.0, ge=0, description="momentum factor on the accumulated gradient")

    def perturb(self, objective, x: Tensor, eps: float) -> Tensor:
        import torchattacks

        p = self.params
        return _torchattacks.run(torchattacks.MIFGSM, objective, x, eps=eps, alpha=p["alpha"] / 255,
                                 steps=p["steps"], decay=p["decay"])
