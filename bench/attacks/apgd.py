"""APGD (Croce & Hein, ICML 2020, https://arxiv.org/abs/2003.01690), on a regression score.

Threat model: L-inf, eps in /255 units on [0, 1] images. Auto-PGD: signed steps with
momentum (0.75), starting at step size 2 eps and halving it at checkpoints (after
22%, then shrinking intervals of the iterations) where the objective oscillated or
stopped improving, restarting from the best point at each halving. No step size to tune.

Adapted from torchattacks.APGD, which runs the algorithm (step-size schedule,
checkpoints, momentum) unchanged: only the loss is ours (softplus of the score gain, see
`_torchattacks`, increasing in the objective), and we take its `best_loss` path, which
keeps per image the point with the highest loss - i.e. the highest objective - instead of
its default path that keeps only "misclassified" images by argmax, meaningless for a score.

Arguments: steps=20, n_restarts=1, rho=0.75 (the oscillation threshold at checkpoints).
"""

from __future__ import annotations

from torch import Tensor

from bench.api import Attack, AttackInfo, Field, Params, register_attack
from bench.attacks import _torchattacks


@register_attack
class APGD(Attack):
    info = AttackInfo(
        name="apgd",
        norm="Linf",
        reference="https://arxiv.org/abs/2003.01690",
        description="Auto-PGD: momentum steps, step size halved at checkpoints; best point by score kept.",
    )

    class Params(Params):
        steps: int = Field(20, ge=1, description="iterations of each run")
        n_restarts: int = Field(1, ge=1, description="runs from fresh random starts; the best point is kept")
        rho: float = Field(0.75, gt=0, lt=1,
                           description="share of improving steps below which a checkpoint halves the step")

    def perturb(self, objective, x: Tensor, eps: float) -> Tensor:
        import torchattacks

        p = self.params
        model = _torchattacks.ScoreAsLogits(objective, x)
        atk = torchattacks.APGD(model, norm="Linf", eps=eps, steps=p["steps"], n_restarts=p["n_restarts"],
                                loss="ce", rho=p["rho"])
        # perturb(best_loss=True) does not reseed torch's global generator (its default
        # path does): the runner's per-cell seed governs the random start.
        _, x_adv = atk.perturb(x, _torchattacks.labels_for(x), best_loss=True)
        return _torchattacks.finite_or_clean(x_adv, x)
