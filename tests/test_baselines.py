"""The baseline defenses on tiny models: purifications keep the image and the ranking,
declare their randomness and gradient stand-ins truthfully; training baselines train,
refuse what they cannot train and never cache a diverged fit; median smoothing's
certificate holds where it is informative and says so where it is vacuous; and a tiny
matrix stores adversarial training's and NT's PGD gain beside the undefended one."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import write_matrix
from scipy import stats
from torch import nn

from baselines.adv_train import corrected_labels
from baselines.smoothing import SmoothedModel, order_statistic_bounds
from bench.api import DEFENSES, FitContext, IQAModel, IQASplit, ModelInfo, NotApplicable
from bench.cli import main
from bench.gradients import AttackView, DefendedModel
from bench.matrix import Spec
from bench.plugins import load_plugins
from bench.store import ResultsStore
from bench.workbench import StageError, Workbench

load_plugins()  # every built-in defense registered, as the runner sees them

PURIFICATIONS = ["jpeg", "gaussian-blur", "median-blur", "bit-depth", "resize", "random-crop", "random-rotate",
                 "random-flip", "random-noise",
                 "diff-jpeg", "unsharp", "upscale", "color-quantization", "flip"]  # baselines/compression, spatial
TRAINING = ["adv-train", "nt"]


def _info(name: str, lower_better: bool = False) -> ModelInfo:
    return ModelInfo(name=name, lower_better=lower_better, score_range=(0.0, 1.0), kind="learned",
                     differentiable=True)


class Brightness(IQAModel):
    """A trainable CNN that starts as (about) mean brightness: a score whose ranking of
    images any content-preserving purification must keep."""

    info = _info("brightness")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Dropout(0.1),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))
        with torch.no_grad():
            self.net[0].weight.fill_(1 / 27).add_(0.01 * torch.randn_like(self.net[0].weight))
            self.net[0].bias.zero_()
            self.net[5].weight.fill_(0.25)
            self.net[5].bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


class LowerBetter(Brightness):
    info = _info("darkness", lower_better=True)


class NaNWhileTraining(Brightness):
    """Scores fine (the workbench maps the MOS onto them), diverges as soon as it trains."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out * float("nan") if self.training else out


class Parameterless(IQAModel):
    info = _info("parameterless")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((1, 2, 3))


def _model(cls: type[IQAModel] = Brightness) -> IQAModel:
    torch.manual_seed(0)
    return cls().eval()


def _images(n: int = 8, size: int = 32) -> torch.Tensor:
    """Textured images of increasing brightness."""
    g = torch.Generator().manual_seed(7)
    levels = torch.linspace(0.2, 0.8, n).reshape(n, 1, 1, 1)
    return (levels + 0.1 * (torch.rand(n, 3, size, size, generator=g) - 0.5)).clamp(0, 1)


def _ctx(n: int = 24, seed: int = 0) -> FitContext:
    x = _images(n)
    targets = x.mean((1, 2, 3))
    split = IQASplit(x, targets * 100, [f"i{i}" for i in range(n)], [f"r{i}" for i in range(n)])
    return FitContext(train=split, targets=targets, seed=seed, device=torch.device("cpu"), log=lambda _: None)


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(stats.spearmanr(a.detach().numpy(), b.detach().numpy()).statistic)


# ----------------------------------------------------------------------------- purification
@pytest.mark.parametrize("name", PURIFICATIONS)
def test_purification_keeps_shape_and_ranking(name):
    d = DEFENSES.create(name)
    assert d.info.kind == "purification" and d.info.reference
    x, model = _images(), _model()
    torch.manual_seed(0)
    out = d.purify(x)
    assert out.shape == x.shape and out.dtype == x.dtype and 0 <= out.min() and out.max() <= 1
    assert not torch.equal(out, x)  # it does something
    with torch.no_grad():
        assert _spearman(model(out), model(x)) > 0.9


@pytest.mark.parametrize("name", PURIFICATIONS)
def test_randomness_is_declared_truthfully(name):
    d, x = DEFENSES.create(name), _images(4)
    torch.manual_seed(0)
    first = d.purify(x)
    torch.manual_seed(1)
    second = d.purify(x)
    assert d.info.randomized == (not torch.equal(first, second))


@pytest.mark.parametrize("name", PURIFICATIONS)
def test_attack_view_gets_a_gradient(name):
    """Non-differentiable ones declare a surrogate (BPDA), the rest pass autograd: either
    way the attack sees a finite, non-zero input gradient."""
    d = DEFENSES.create(name)
    view = AttackView(DefendedModel(_model(), d), eot_samples=2)
    assert ("bpda" in view.summary) == (not d.info.differentiable)
    assert ("eot" in view.summary) == d.info.randomized
    x = _images(2).requires_grad_(True)
    (g,) = torch.autograd.grad(view(x).sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_bad_purification_params_refused():
    with pytest.raises(ValueError, match=r"defense 'gaussian-blur': parameter 'kernel_size' must be an odd int in "
                                         r"\[3, 11\], got 4$"):
        DEFENSES.create("gaussian-blur", kernel_size=4)
    with pytest.raises(ValueError, match="defense 'resize': parameter 'scale'"):
        DEFENSES.create("resize", scale=1.5)
    with pytest.raises(ValueError, match="defense 'jpeg': parameter 'quality'"):
        DEFENSES.create("jpeg", quality=0)


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", TRAINING)
def test_training_baseline_trains_deterministically(name):
    def run(seed: int) -> tuple[dict[str, torch.Tensor], dict]:
        d = DEFENSES.create(name, epochs=2)
        model = d.transform(_model())
        ctx = _ctx(seed=seed)
        d.fit(model, ctx)
        assert not model.training
        return model.state_dict(), ctx.record

    base = _model().state_dict()
    (a, rec), (b, _), (c, _) = run(0), run(0), run(1)
    assert DEFENSES.get(name).info.kind == "training" and DEFENSES.get(name).trains()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], base[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert rec["epochs"] == 2 and len(rec["loss_per_epoch"]) == 2 and math.isfinite(rec["final_loss"])
    x = _images()
    with torch.no_grad():
        model = _model()
        model.load_state_dict(a)
        assert model(x).shape == (len(x),) and _spearman(model(x), x.mean((1, 2, 3))) > 0.9


@pytest.mark.parametrize("name", TRAINING)
def test_training_baseline_not_applicable_to_parameterless_model(name):
    with pytest.raises(NotApplicable, match=f"defense '{name}' fine-tunes the model; model 'parameterless'"):
        DEFENSES.create(name).transform(Parameterless())


def test_nt_shrinks_the_input_gradient():
    """With a strong penalty weight NT must cut the input-gradient L1 norm that plain
    fine-tuning (weight 0) leaves alone."""

    def grad_norm(weight: float) -> float:
        d = DEFENSES.create("nt", weight=weight, epochs=5, lr=3e-3)
        model = d.transform(_model())
        d.fit(model, _ctx())
        x = _images().requires_grad_(True)
        (g,) = torch.autograd.grad(model(x).sum(), x)
        return float(g.abs().sum(dim=(1, 2, 3)).mean())

    assert grad_norm(1.0) < 0.7 * grad_norm(0.0)


def test_adv_train_label_correction():
    """y* = clip(y - p (1 - SSIM) (max - min)): lower for higher-better models, higher for
    lower-better ones, within the targets' range, unchanged where SSIM is 1."""
    y, damage = torch.tensor([0.5, 0.5, 0.1, 0.9]), torch.tensor([0.1, 0.0, 0.5, 0.5])
    up = corrected_labels(y, damage, 0.5, (0.0, 2.0), better=1.0)
    assert torch.allclose(up, torch.tensor([0.4, 0.5, 0.0, 0.4]))
    down = corrected_labels(y, damage, 0.5, (0.0, 2.0), better=-1.0)
    assert torch.allclose(down, torch.tensor([0.6, 0.5, 0.6, 1.4]))


@pytest.mark.parametrize("name", ["finetune-only", *TRAINING])
def test_diverged_fit_is_an_error_and_not_cached(name, tmp_path, monkeypatch):
    """A NaN loss stops the fit with an error naming the defense; the workbench writes
    no checkpoint, so the next run tries again instead of loading a broken model."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    broken = _model(NaNWhileTraining)
    ctx = _ctx()
    wb = Workbench(seed=0, log=lambda _: None)
    base = {"model": broken}
    monkeypatch.setattr(wb, "base_model", lambda spec, ds: (base["model"], {"source": "test"}))
    monkeypatch.setattr(wb, "train_split", lambda ds: ctx.train)
    d = DEFENSES.create(name, epochs=1)
    specs = Spec("defense", name, dict(d.params)), d, Spec("model", "brightness", {}), Spec("dataset", "embedded", {})
    with pytest.raises(StageError, match=f"defense '{name}'.*diverged"):
        wb.defended(*specs)
    assert not list(tmp_path.rglob("*.*"))
    base["model"] = _model()  # control: a healthy fit on the same path is cached
    wb.defended(*specs)
    assert list(tmp_path.rglob("defended/*.pt"))


# ----------------------------------------------------------------------------- smoothing
class Sum(IQAModel):
    """f(x) = sum of x: its noisy scores are Gaussian, so the certificate can be checked
    against the exact smoothed score."""

    info = _info("sum")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum((1, 2, 3))


def test_smoothing_metadata_and_randomness():
    d = DEFENSES.create("randomized-smoothing")
    assert d.info.kind == "certified" and d.info.randomized and d.info.differentiable
    model = d.transform(_model())
    assert isinstance(model, SmoothedModel) and model.info.name == "brightness"
    x = _images(4)
    torch.manual_seed(0)
    a = model(x)
    b = model(x)
    assert a.shape == (4,) and not torch.equal(a, b)
    assert _spearman(model(_images()), _images().mean((1, 2, 3))) > 0.9


def test_smoothing_certificate_holds_where_informative():
    """d = 12 values, eps 0.01: r = 0.0346, r / sigma = 0.14. For f = sum, the smoothed
    score is sum(x + delta) (no clipping at mid-grey), and the worst L-inf perturbation
    moves it by 12 eps = 0.12, exactly the certified half-width: a tight check."""
    d = DEFENSES.create("randomized-smoothing", sigma=0.25, n_certify=2000)
    model = d.transform(Sum())
    x = torch.full((2, 3, 2, 2), 0.5)
    x[1] += 0.01
    torch.manual_seed(0)
    interval = d.certify(model, x, 0.01)
    assert interval.shape == (2, 2) and torch.isfinite(interval).all()
    exact = x.sum((1, 2, 3))
    assert (interval[:, 0] <= exact - 0.12).all() and (interval[:, 1] >= exact + 0.12).all()
    assert (interval[:, 1] - interval[:, 0] < 0.6).all()  # informative, not vacuous
    wider = d.certify(model, x, 0.02)
    assert (wider[:, 0] <= interval[:, 0]).all() and (wider[:, 1] >= interval[:, 1]).all()


def test_smoothing_certificate_is_vacuous_at_real_budgets():
    d = DEFENSES.create("randomized-smoothing")
    interval = d.certify(d.transform(_model()), _images(2, size=48), 4 / 255)
    assert torch.isinf(interval[:, 0]).all() and (interval[:, 0] < 0).all() and torch.isinf(interval[:, 1]).all()


def test_order_statistic_bounds_cover():
    """The chosen order statistics bracket the true percentiles at least 1 - alpha of the time."""
    n, p, alpha = 50, 0.3, 0.1
    i_lo, i_hi = order_statistic_bounds(n, p, p, alpha)
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(4000, n, generator=g).sort(1).values
    q = stats.norm.ppf(p)
    miss = ((samples[:, i_lo] > q) | (samples[:, i_hi] < q)).float().mean()
    assert miss <= alpha + 0.02 and i_lo < i_hi


# ----------------------------------------------------------------------------- a tiny run
def test_training_baselines_in_a_run(tmp_path):
    """adv-train and NT trained on the tiny split through `bench run`: their PGD 4/255
    gain is stored beside the undefended model's, whichever way it falls."""
    extra = '"adv-train" = { epochs = 1 }\nnt = { epochs = 1 }'
    matrix = write_matrix(tmp_path / "m.toml", extra_defenses=extra,
                          **{"piqe = {}\n": "", "jpeg = { quality = 50 }\n": "", "fgsm = { eps = [4] }\n": "",
                             "eps = [4, 8]": "eps = [4]"})
    code = main(["run", "--matrix", str(matrix), "--results", str(tmp_path / "r"), "--no-site", "--no-progress"])
    records = {r["cell"]["defense"]: r for r in ResultsStore(tmp_path / "r").records()}
    assert code == 0 and set(records) == {"none", *TRAINING}
    for r in records.values():
        m = r["metrics"]
        assert r["status"] == "ok" and r["cell"]["attack"] == "pgd" and r["cell"]["eps"] == 4, r["message"]
        assert math.isfinite(m["abs_gain"])
        if "abs_gain_ci_lo" in m:
            assert m["abs_gain_ci_lo"] <= m["abs_gain"] <= m["abs_gain_ci_hi"]
    assert records["adv-train"]["fit"]["p"] == 0.5 and records["nt"]["fit"]["weight"] == 1e-3
    assert records["none"]["fit"] == {}
