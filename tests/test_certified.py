"""Each certified defense's certificate holds on a model with a known Lipschitz constant.

The model is linear, f(x) = w . (x - 1/2), with |w_i| equal and ||w||_2 = 1: L2-Lipschitz
with constant 1, and the L-inf perturbation eps sign(w) moves it by eps ||w||_1 = eps sqrt(d)
= r, as far as anything in the L2 ball of radius r can (the worst case, which one FGSM step
through the defense finds). On mid-grey images with small sigma the input clip never acts,
so the noisy scores are exactly Gaussian and each smoothed score has a closed form: the
median smoothing's is f itself, the mean smoothing's E[clip(N(f, sigma^2), a, b)]. The
smoothed score at every perturbed image (worst case both ways, FGSM's, random signs, random
uniform) must lie in the interval certified at the clean image; the interval is finite, and
the interval certified for a half or a third of the budget excludes the worst case at the full budget, so
the check can fail. At the matrices' budgets the certificates are vacuous (infinite ends)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from baselines._denoiser import denoiser_of
from baselines._smoothing import SmoothedModel
from bench.api import DEFENSES, FitContext, IQAModel, IQASplit, ModelInfo, NotApplicable, create_attack
from bench.gradients import AttackView, DefendedModel
from bench.plugins import load_plugins

load_plugins()


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread

SIGMA, EPS, SHAPE = 0.05, 0.004, (3, 4, 4)
D = math.prod(SHAPE)
HALF = 1.5 * SIGMA  # mean smoothing's score range [-HALF, HALF]: 1.5 noise spreads, so the clip matters


class Linear(IQAModel):
    info = ModelInfo(name="linear", lower_better=False, score_range=(-HALF, HALF), kind="learned",
                     differentiable=True)

    def __init__(self, **params) -> None:
        super().__init__(**params)
        signs = torch.randint(0, 2, (1, *SHAPE), generator=torch.Generator().manual_seed(0)) * 2.0 - 1
        self.register_buffer("w", signs / math.sqrt(D))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - 0.5) * self.w).sum((1, 2, 3))


class Brightness(IQAModel):
    """Mean brightness, for images of any size."""

    info = ModelInfo(name="brightness", lower_better=False, score_range=(0.0, 1.0), kind="classic",
                     differentiable=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((1, 2, 3))


class Unbounded(Brightness):
    info = ModelInfo(name="unbounded", lower_better=False, score_range=(0.0, math.inf), kind="classic",
                     differentiable=True)


def _images() -> torch.Tensor:
    """Two mid-grey textured images, the second one scoring higher."""
    g = torch.Generator().manual_seed(1)
    x = 0.5 + 0.02 * (torch.rand(2, *SHAPE, generator=g) - 0.5)
    x[1] += 0.005 * Linear().w[0].sign()
    return x


def _perturbations(x: torch.Tensor, model: IQAModel, d, eps: float) -> dict[str, torch.Tensor]:
    """Perturbed copies of x within L-inf eps: the worst case each way, one FGSM step each
    way through the defense (attacked as the runner attacks it, EOT included), random signs
    and random uniform noise, and none."""
    w = Linear().w
    g = torch.Generator().manual_seed(2)
    view = AttackView(DefendedModel(model, d), eot_samples=4)
    fgsm = create_attack("fgsm")
    torch.manual_seed(3)
    out = {"none": x, "worst up": x + eps * w.sign(), "worst down": x - eps * w.sign(),
           "fgsm up": fgsm(view, x, eps, lower_better=False), "fgsm down": fgsm(view, x, eps, lower_better=True)}
    for i in range(3):
        out[f"signs {i}"] = x + eps * (torch.randint(0, 2, x.shape, generator=g) * 2.0 - 1)
        out[f"uniform {i}"] = x + eps * (2 * torch.rand(x.shape, generator=g) - 1)
    return out


def _exact_mean(mu: torch.Tensor, s: float, a: float, b: float) -> torch.Tensor:
    """E[clip(Y, a, b)], Y ~ N(mu, s^2): the mean-smoothed score of a linear model."""
    mu = mu.double().numpy()
    lo, hi = (a - mu) / s, (b - mu) / s
    n = stats.norm
    value = a * n.cdf(lo) + b * n.sf(hi) + mu * (n.cdf(hi) - n.cdf(lo)) + s * (n.pdf(lo) - n.pdf(hi))
    return torch.from_numpy(value)


def _inside(value: torch.Tensor, interval: torch.Tensor) -> bool:
    return bool(((interval[:, 0] <= value) & (value <= interval[:, 1])).all())


# ----------------------------------------------------------------------------- mean smoothing
def test_mean_smoothing_certificate_holds_on_a_linear_model():
    d = DEFENSES.create("mean-smoothing", sigma=SIGMA, n=32, n_certify=10000)
    assert d.info.kind == "certified" and d.info.randomized and d.info.differentiable
    model, x, f = d.transform(Linear()), _images(), Linear()
    torch.manual_seed(0)
    interval = d.certify(model, x, EPS).double()
    assert interval.shape == (2, 2) and torch.isfinite(interval).all()
    exact = lambda z: _exact_mean(f(z), SIGMA, -HALF, HALF)
    # the closed form is what the model computes (clip included), up to sampling error
    assert torch.allclose(model.noisy_scores(x, 4000).mean(0).double(), exact(x), atol=0.003)
    moved = _perturbations(x, model, d, EPS)
    assert torch.allclose(moved["fgsm up"], moved["worst up"]) and torch.allclose(moved["fgsm down"], moved["worst down"])
    for name, z in moved.items():
        assert (z - x).abs().max() <= EPS + 1e-7
        assert _inside(exact(z), interval), (name, exact(z), interval)
    assert (interval[:, 1] - interval[:, 0] < 1.5 * HALF).all()  # informative: well inside [-HALF, HALF]
    half = d.certify(model, x, EPS / 2).double()
    assert not _inside(exact(moved["worst up"]), half)  # the check can fail
    wider = d.certify(model, x, 2 * EPS)
    assert (wider[:, 0] <= interval[:, 0].float()).all() and (wider[:, 1] >= interval[:, 1].float()).all()


def test_mean_smoothing_is_vacuous_at_real_budgets_and_needs_a_bounded_score():
    d = DEFENSES.create("mean-smoothing")
    model = d.transform(Brightness())
    interval = d.certify(model, torch.full((2, 3, 48, 48), 0.5), 4 / 255)
    assert torch.isinf(interval).all() and (interval[:, 0] < 0).all() and (interval[:, 1] > 0).all()
    with pytest.raises(NotApplicable, match="mean-smoothing' certifies a bounded score; model 'unbounded'"):
        d.transform(Unbounded())


# ----------------------------------------------------------------------------- denoised smoothing
def test_denoised_smoothing_certificate_holds_with_the_identity_denoiser():
    """Before its fit the denoiser is the identity (its last layer starts at zero), so the
    base function is the linear model: its median smoothing is f, and the worst case moves
    it by exactly the certified half-width r ||w||_2 = r (a tight check)."""
    d = DEFENSES.create("denoised-smoothing", sigma=SIGMA, n_certify=500, depth=3, width=8)
    model, x, f = d.transform(Linear()), _images(), Linear()
    assert torch.equal(denoiser_of(model)(x), x)
    torch.manual_seed(0)
    interval = d.certify(model, x, EPS)
    assert torch.isfinite(interval).all()
    r = EPS * math.sqrt(D)
    assert (interval[:, 0] <= f(x) - r).all() and (interval[:, 1] >= f(x) + r).all()
    for name, z in _perturbations(x, model, d, EPS).items():
        assert (z - x).abs().max() <= EPS + 1e-7 and _inside(f(z), interval), name
    assert (interval[:, 1] - interval[:, 0] < 4 * r).all()
    assert not _inside(f(x + EPS * f.w.sign()), d.certify(model, x, EPS / 3))


def test_denoised_smoothing_certificate_holds_with_a_fitted_denoiser():
    """After a fit the denoiser is nonlinear and its Lipschitz constant unknown, which the
    median certificate does not need: the median at each perturbed image (estimated from
    1,001 draws, within about 0.003 of the true one) stays in the interval; the denoiser is in the certified function."""
    d = DEFENSES.create("denoised-smoothing", sigma=SIGMA, n_certify=500, depth=3, width=8, epochs=2, patch=8,
                        batch_size=4)
    model, x = d.transform(Linear()), _images()
    train = 0.5 + 0.1 * (torch.rand(16, *SHAPE, generator=torch.Generator().manual_seed(4)) - 0.5)
    names = [f"i{i}" for i in range(16)]
    ctx = FitContext(IQASplit(train, train.mean((1, 2, 3)), names, names), train.mean((1, 2, 3)), 0,
                     torch.device("cpu"), log=lambda _: None)
    d.fit(model, ctx)
    model.eval()
    assert not torch.equal(denoiser_of(model)(x), x) and ctx.record["sigma"] == SIGMA and not ctx.record["blind"]
    torch.manual_seed(0)
    interval = d.certify(model, x, EPS)
    torch.manual_seed(0)
    plain = DEFENSES.create("randomized-smoothing", sigma=SIGMA, n_certify=500).certify(Linear(), x, EPS)
    assert torch.isfinite(interval).all() and not torch.equal(interval, plain)
    moved = _perturbations(x, model, d, EPS)
    batch = torch.cat(list(moved.values()))
    with torch.no_grad():
        medians = model.noisy_scores(batch, 1001).median(0).values.reshape(len(moved), len(x))
    for name, m in zip(moved, medians, strict=True):
        assert _inside(m, interval), (name, m, interval)
    with pytest.raises(TypeError, match="certifies the model its transform returned"):
        d.certify(SmoothedModel(Linear(), SIGMA, 1), x, EPS)


def test_denoised_smoothing_is_vacuous_at_real_budgets():
    d = DEFENSES.create("denoised-smoothing", depth=3, width=8)
    interval = d.certify(d.transform(Brightness()), torch.full((2, 3, 48, 48), 0.5), 4 / 255)
    assert torch.isinf(interval).all() and (interval[:, 0] < 0).all()
