"""The learned models that wrap trainable architectures: wadiqam_nr and resnet18_iqa."""

from __future__ import annotations

import socket

import pytest
import torch

from bench.api import FitContext, IQASplit, create_model
from bench.errors import WeightsMissingError
from bench.weights import load_into, resolve_weights

NAMES = ["wadiqam_nr", "resnet18_iqa"]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and an empty pyiqa / torch hub cache."""

    def refuse(*a, **k):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize("name", NAMES)
def test_builds_offline_and_scores(name, offline):
    m = create_model(name).eval()
    assert m.info.kind == "learned" and not m.info.lower_better
    assert type(m).pretrained_weights() is None
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0), requires_grad=True)
    s = m(x)
    assert s.shape == (2,) and torch.isfinite(s).all()
    s.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_fit_tiny_split_then_checkpoint_round_trip(name, offline):
    g = torch.Generator().manual_seed(1)
    n = 8
    split = IQASplit(torch.rand(n, 3, 48, 48, generator=g), torch.rand(n, generator=g) * 100,
                     [f"i{i}" for i in range(n)], [f"r{i % 4}" for i in range(n)])
    m = create_model(name, epochs=1, batch_size=4)
    lo, hi = m.info.score_range
    ctx = FitContext(train=split, targets=lo + split.mos / 100 * (hi - lo), seed=0,
                     device=torch.device("cpu"), log=lambda s: None)
    m.fit(ctx)
    assert not m.training and all(not mod.training for mod in m.modules())
    assert ctx.record["epochs"] == 1 and ctx.record["final_train_l1"] >= 0

    path = offline / "w.pt"
    torch.save(m.state_dict(), path)
    fresh = create_model(name).eval()
    load_into(fresh, path, f"model '{name}'")
    x = split.images[:2]
    with torch.no_grad():
        assert torch.allclose(fresh(x), m(x))


def test_wadiqam_keys_match_pyiqa_checkpoints(offline):
    """Keys are 'net.' + the pyiqa arch's own keys, as in cnniqa."""
    from pyiqa.archs.wadiqam_arch import WaDIQaM

    ours = set(create_model("wadiqam_nr").state_dict())
    assert ours == {f"net.{k}" for k in WaDIQaM(metric_type="NR", pretrained=False).state_dict()}


@pytest.mark.parametrize("name", NAMES)
def test_without_weights_says_what_is_missing(name, offline):
    with pytest.raises(WeightsMissingError, match=f"model '{name}' has no weights here"):
        resolve_weights(create_model(name), trained_path=offline / "x.pt", train=None, log=print)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_cnniqa_forward_is_pyiqas_bit_for_bit(mode, offline):
    """The wrapper's own forward pass (a faster max-min pooling) gives pyiqa's CNNIQA's
    scores, input gradients, second derivatives (NT's penalty) and weight gradients exactly,
    also where the map has ties (flat and clipped regions, where a different choice of
    maximum would move the gradient)."""
    m = create_model("cnniqa").train(mode == "train")
    g = torch.Generator().manual_seed(2)
    x = torch.rand(4, 3, 40, 48, generator=g)
    x[:, :, 5:30, 5:30] = 1.0  # clipped: many equal maxima
    x[2:] = 0.5  # flat images: every position ties

    def run(forward):
        torch.manual_seed(3)  # the same dropout draw in train mode
        xx = x.clone().requires_grad_(True)
        s = forward(xx)
        (gx,) = torch.autograd.grad(s.sum(), xx, create_graph=True)
        (gw,) = torch.autograd.grad(gx.square().sum() + s.sum(), m.net.conv1.weight)
        return s.detach(), gx.detach(), gw

    ours, theirs = run(m), run(lambda v: m.net(v).reshape(-1))
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
    assert ours[1].abs().sum() > 0 and ours[2].abs().sum() > 0


def test_fit_affine_puts_scores_on_the_targets_scale() -> None:
    """Scores s of a linear layer, targets exactly 3 - 2 s: after the fit the layer outputs
    the targets (the slope's sign kept), and (a, b) are the hand values."""
    from bench.api import fit_affine

    g = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(4, 1)
    x = torch.randn(50, 4, generator=g)
    with torch.no_grad():
        targets = 3.0 - 2.0 * layer(x).reshape(-1)
    a, b = fit_affine(layer, layer, x, targets, torch.device("cpu"), batch_size=16)
    assert (a, b) == pytest.approx((3.0, -2.0), abs=1e-5)
    with torch.no_grad():
        assert torch.allclose(layer(x).reshape(-1), targets, atol=1e-5)


def test_wadiqam_norm_in_norm_fit_scores_on_the_target_scale(offline) -> None:
    """Trained with the scale-blind norm-in-norm loss, WaDIQaM-NR still scores on its
    declared range: the affine fit and the standardisation are folded into its patch head
    (least squares: the train images' scores have the targets' mean)."""
    g = torch.Generator().manual_seed(1)
    images = torch.rand(12, 3, 48, 48, generator=g)
    targets = torch.linspace(0.1, 0.9, 12)
    m = create_model("wadiqam_nr", epochs=1, batch_size=4, views=False)
    assert m.params["loss"] == "norm-in-norm"
    split = IQASplit(images, targets * 100, [f"i{i}" for i in range(12)], [f"r{i % 3}" for i in range(12)])
    ctx = FitContext(train=split, targets=targets, seed=0, device=torch.device("cpu"), log=lambda _: None)
    m.fit(ctx)
    with torch.no_grad():
        scores = m.eval()(images)
    assert float(scores.mean()) == pytest.approx(float(targets.mean()), abs=1e-4)
    assert ctx.record["loss_units"] == "norm-in-norm (scale-free)"


def test_regression_loss_by_name() -> None:
    """"l1" is the L1 distance; "norm-in-norm" ignores the scores' scale and offset (and is
    0 for scores that are an increasing affine map of the targets); another name is refused."""
    from bench.api import regression_loss

    y = torch.tensor([0.1, 0.5, 0.2, 0.9])
    assert float(regression_loss("l1")(y + 1, y)) == pytest.approx(1.0)
    nin = regression_loss("norm-in-norm")
    assert float(nin(3 * y - 7, y)) == pytest.approx(0.0, abs=1e-6)
    assert float(nin(-y, y)) > 0.5
    with pytest.raises(ValueError, match="unknown training loss 'mse'"):
        regression_loss("mse")
