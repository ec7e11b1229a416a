"""Unit checks of the attacks' shared pieces; the behaviour of every attack (direction,
budget, BPDA, EOT, flags) is tested in test_attack_suite.py on the same toy models."""

from __future__ import annotations

import pytest
import torch
from test_attack_suite import Identity, images, tiny

from bench.api import create_attack
from bench.attacks._torchattacks import finite_or_clean
from bench.attacks.korhonen import spatial_activity
from bench.attacks.uap import tile_to
from bench.gradients import AttackView, DefendedModel


def test_eps_outside_unit_interval_is_refused():
    view = AttackView(DefendedModel(tiny(False), Identity()))
    with pytest.raises(ValueError, match=r"eps 8 must be in \(0, 1\]"):
        create_attack("fgsm")(view, torch.rand(1, 3, 8, 8), 8, False)


def test_an_image_without_gradient_comes_back_clean_not_nan():
    """MI-FGSM divides by the mean |gradient|: 0/0 on a flat score must not reach the model."""
    x = images(3, 16)

    def flat_on_first(z):  # image 0's score ignores its pixels
        s = z.flatten(1).mean(1)
        return torch.cat([s[:1] * 0, s[1:]])

    x_adv = create_attack("mi-fgsm", steps=3)(flat_on_first, x, 4 / 255, False)
    assert torch.isfinite(x_adv).all() and torch.equal(x_adv[0], x[0]) and not torch.equal(x_adv[1], x[1])
    nan = torch.full_like(x, float("nan"))
    assert torch.equal(finite_or_clean(torch.cat([nan[:1], x[1:]]), x), x)


def test_spatial_activity_is_high_at_texture_and_ones_on_flat_images():
    flat = torch.full((1, 3, 32, 32), 0.5)
    assert torch.equal(spatial_activity(flat), torch.ones(1, 1, 32, 32))
    edge = flat.clone()
    edge[..., :, 16:] = 0.9  # one vertical edge
    act = spatial_activity(edge)
    assert act.min() >= 0 and act.max() == 1
    assert act[..., 10:20, 15:17].min() == 1 and act[..., 10:20, :10].max() == 0  # dilated edge only


def test_uap_pattern_tiles_without_resizing():
    pattern = torch.arange(6.0).view(1, 1, 2, 3)
    out = tile_to(pattern, 5, 7)
    assert out.shape == (1, 1, 5, 7)
    assert torch.equal(out[..., :2, :3], pattern) and torch.equal(out[..., 2:4, 3:6], pattern)
    assert torch.equal(out[..., 4, :3], pattern[..., 0, :])
