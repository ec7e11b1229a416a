"""The DnCNN purifier (`dncnn`, baselines/_denoiser.py) on tiny images: its fit removes
Gaussian noise from images it never saw better than doing nothing, is the same under the
same seed (and not under another), lives in the defended model's state so that the
workbench's cache gives back exactly what was fitted without fitting again, loads a given
state_dict instead of training, and lets attacks differentiate through it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from baselines._denoiser import DenoisedModel, denoiser_of, noisy
from bench.api import DEFENSES, CheckpointError, FitContext, IQAModel, IQASplit, ModelInfo
from bench.gradients import AttackView, DefendedModel
from bench.matrix import Spec
from bench.plugins import load_plugins
from bench.workbench import Workbench

load_plugins()


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread

TINY = {"depth": 3, "width": 8, "patch": 16, "batch_size": 4, "lr": 0.003, "blind": False}


class Mean(IQAModel):
    """A trainable model scoring mean brightness."""

    info = ModelInfo(name="mean", lower_better=False, score_range=(0.0, 1.0), kind="learned", differentiable=True)

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x.mean((1, 2, 3))


def _smooth(n: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random colour fields in [0, 1]: structure a denoiser can tell from noise."""
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(size, size), mode="bilinear", align_corners=False)


def _ctx(seed: int = 0, n: int = 24) -> FitContext:
    x = _smooth(n, 24, 0)
    names = [f"i{i}" for i in range(n)]
    return FitContext(train=IQASplit(x, x.mean((1, 2, 3)), names, names), targets=x.mean((1, 2, 3)), seed=seed,
                      device=torch.device("cpu"), log=lambda _: None)


def _fit(seed: int = 0, **params) -> tuple[DenoisedModel, dict]:
    d = DEFENSES.create("dncnn", **{**TINY, **params})
    model = d.transform(Mean().eval())
    ctx = _ctx(seed)
    d.fit(model, ctx)
    return model, ctx.record


def test_fit_denoises_held_out_images_better_than_identity():
    model, record = _fit(epochs=5)
    held_out = _smooth(8, 32, 1)  # other fields, another size
    torch.manual_seed(5)
    y = noisy(held_out, 0.1, blind=False)
    with torch.no_grad():
        before, after = F.mse_loss(y, held_out), F.mse_loss(denoiser_of(model)(y).clamp(0, 1), held_out)
    assert after < 0.8 * before, (float(after), float(before))
    assert record["source"] == "trained here" and record["mse_denoised"] < record["mse_noisy"]
    assert len(record["loss_per_epoch"]) == 5 and record["sigma"] == 0.1 and not record["blind"]


def test_fit_is_deterministic_under_a_seed():
    (a, _), (b, _), (c, _) = _fit(0, epochs=1), _fit(0, epochs=1), _fit(1, epochs=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())


def test_fit_round_trips_through_the_cache(tmp_path, monkeypatch):
    """The workbench caches the fitted denoiser with the model's state (weights_only) and a
    second workbench gets it back bit for bit, without calling fit."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    ctx = _ctx()
    d = DEFENSES.create("dncnn", **TINY, epochs=1)
    specs = Spec("defense", "dncnn", dict(d.params)), d, Spec("model", "mean", {}), Spec("dataset", "embedded", {})

    def bench() -> Workbench:
        wb = Workbench(seed=0, log=lambda _: None)
        monkeypatch.setattr(wb, "base_model", lambda spec, ds: (Mean().eval(), {"source": "test"}))
        monkeypatch.setattr(wb, "train_split", lambda ds: ctx.train)
        return wb

    fitted, record = bench().defended(*specs)
    assert list(tmp_path.rglob("defended/*.pt")) and record["source"] == "trained here"
    def refit(*_args) -> None:
        raise AssertionError("fitted again instead of loading the cached fit")

    monkeypatch.setattr(type(d), "fit", refit)
    loaded, again = bench().defended(*specs)
    assert again["mse_denoised"] == record["mse_denoised"]
    x = _smooth(2, 24, 3)
    with torch.no_grad():
        assert torch.equal(loaded(x), fitted(x)) and not torch.equal(denoiser_of(loaded)(x), x)
    assert all(torch.equal(v, fitted.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_weights_load_instead_of_training(tmp_path):
    from safetensors.torch import save_file

    fitted, _ = _fit(epochs=1)
    path = tmp_path / "dncnn.safetensors"
    save_file(denoiser_of(fitted).state_dict(), str(path))
    loaded, record = _fit(seed=1, epochs=1, weights=str(path))  # another seed: only loading can match
    assert record["source"] == "local file" and len(record["sha256"]) == 64 and "loss_per_epoch" not in record
    assert all(torch.equal(v, denoiser_of(fitted).state_dict()[k]) for k, v in denoiser_of(loaded).state_dict().items())
    with pytest.raises(CheckpointError, match="do not fit DnCNN"):
        _fit(epochs=1, width=4, weights=str(path))


def test_attacks_differentiate_through_the_denoiser():
    d = DEFENSES.create("dncnn", **TINY)
    assert d.info.kind == "purification" and d.info.differentiable and not d.info.randomized and d.trains()
    model = d.transform(Mean().eval())
    assert model.info.name == "mean"
    with torch.no_grad():  # a denoiser that does something, so the gradient passes through it
        denoiser_of(model).body[-1].weight.normal_(0, 0.1)
    view = AttackView(DefendedModel(model, d))
    assert view.summary == "direct"
    x = _smooth(2, 24, 4).requires_grad_(True)
    (g,) = torch.autograd.grad(view(x).sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert not torch.allclose(g, torch.full_like(g, 1 / x[0].numel()))  # not the bare model's gradient
