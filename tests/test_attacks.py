"""Attacks push scores in each model's better direction, within their budget."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.api import Defense, DefenseInfo, IQAModel, ModelInfo, create_attack
from bench.gradients import AttackView, DefendedModel


def toy_model(lower_better: bool) -> IQAModel:
    class Toy(IQAModel):
        info = ModelInfo(name="toy", lower_better=lower_better, score_range=(-1, 1), kind="learned",
                         differentiable=True)

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return torch.tanh(self.conv(x)).mean(dim=(1, 2, 3))

    return Toy().eval()


class Quantize(Defense):
    """Rounds to 4 grey levels: the gradient through it is zero everywhere."""

    info = DefenseInfo(name="quantize", kind="purification", differentiable=False, surrogate="identity")

    def purify(self, x):
        return torch.round(x * 3) / 3


class Identity(Defense):
    info = DefenseInfo(name="id", kind="none")


@pytest.mark.parametrize("name,params", [("fgsm", {}), ("pgd", {"steps": 5})])
@pytest.mark.parametrize("lower_better", [False, True])
def test_attack_moves_score_the_better_way_within_budget(name, params, lower_better):
    model = toy_model(lower_better)
    view = AttackView(DefendedModel(model, Identity()))
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    eps = 4 / 255
    x_adv = create_attack(name, **params)(view, x, eps, lower_better)
    assert (x_adv - x).abs().max() <= eps + 1e-7 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        change = model(x_adv) - model(x)
    assert ((-change if lower_better else change) > 0).all()


def test_bpda_defeats_a_non_differentiable_defense_that_fools_the_plain_attack():
    model, defense = toy_model(False), Quantize()
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    defended = DefendedModel(model, defense)
    pgd = create_attack("pgd", steps=10, alpha=2.0)
    eps = 16 / 255
    plain = pgd(lambda z: model(defense.purify(z)), x, eps, False)  # gradient is zero: nothing moves
    adaptive_view = AttackView(defended)
    assert adaptive_view.summary == "bpda(identity)"
    adaptive = pgd(adaptive_view, x, eps, False)
    with torch.no_grad():
        clean, gain_plain, gain_bpda = defended(x), defended(plain) - defended(x), defended(adaptive) - defended(x)
    assert gain_plain.abs().max() <= 1e-6 or gain_plain.mean() < gain_bpda.mean()
    assert (gain_bpda.mean() > 0.01) and gain_bpda.mean() > gain_plain.mean() + 0.01, (clean, gain_bpda)


def test_eps_outside_unit_interval_is_refused():
    view = AttackView(DefendedModel(toy_model(False), Identity()))
    with pytest.raises(ValueError, match=r"eps 8 must be in \(0, 1\]"):
        create_attack("fgsm")(view, torch.rand(1, 3, 8, 8), 8, False)
