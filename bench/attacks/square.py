"""Square attack (Andriushchenko et al., ECCV 2020, https://arxiv.org/abs/1912.00049),
on a regression score: the benchmark's score-based black-box attack.

Threat model: L-inf, eps in /255 units on [0, 1] images; the attack reads scores only,
never gradients (`needs_gradients=False`), so it applies to any model, and where it
beats the white-box attacks at the same budget their gradients are suspect (the
cross-cell flag "blackbox-beats-whitebox", see `bench/flags.py`).

Random search: start from vertical stripes of +-eps, then per query change one random
square (side from the schedule on `p_init`, shrinking with the query count) to +-eps
per channel, and keep the change per image if the objective rose.

Adapted from torchattacks.Square, which runs the algorithm (initialisation, square
schedule, proposals) unchanged: its loss is replaced by the negated score gain, and its
"margin" by a constant positive value so that no image ever counts as "misclassified"
and stops early - every image spends all `n_queries`. Its `perturb` (which keeps
only images misclassified by argmax and reseeds torch's global generator) is bypassed:
we call its single run directly, so the runner's per-cell seed governs the draws.

Arguments: n_queries=300 (model evaluations per image), p_init=0.8.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.api import Attack, AttackInfo, Field, Params, register_attack
from bench.attacks import _torchattacks


@register_attack
class Square(Attack):
    info = AttackInfo(
        name="square",
        norm="Linf",
        needs_gradients=False,
        reference="https://arxiv.org/abs/1912.00049",
        description="Square attack: score-based random search over square patches (black-box).",
    )

    class Params(Params):
        n_queries: int = Field(300, ge=1, description="model evaluations per image")
        p_init: float = Field(0.8, gt=0, le=1,
                              description="share of the image the first squares cover (it shrinks with queries)")

    @torch.no_grad()
    def perturb(self, objective, x: Tensor, eps: float) -> Tensor:
        import torchattacks

        p = self.params
        model = _torchattacks.ScoreAsLogits(objective, x)
        atk = torchattacks.Square(model, norm="Linf", eps=eps, n_queries=p["n_queries"], p_init=p["p_init"])

        def margin_and_loss(z: Tensor, _labels: Tensor) -> tuple[Tensor, Tensor]:
            gain = model.gain(z)
            return torch.ones_like(gain), -gain  # never "misclassified"; minimise -gain

        atk.margin_and_loss = margin_and_loss
        atk.init_hyperparam(x)
        _, x_adv = atk.attack_single_run(x, _torchattacks.labels_for(x))
        return x_adv
