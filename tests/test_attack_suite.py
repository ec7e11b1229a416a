"""The attack suite: every attack raises a score the better way within its budget;
BPDA and EOT get through defenses that fool the plain attack; reliability flags fire on
models built to trigger them and stay quiet on a normal one; the matrix refuses
mistakes before any work; the standard suite covers every attack."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import write_matrix
from torch import nn

from bench.api import (
    ATTACKS,
    MODELS,
    Attack,
    AttackInfo,
    Defense,
    DefenseInfo,
    IQAModel,
    ModelInfo,
    create_attack,
    create_defense,
)
from bench.errors import MatrixError
from bench.gradients import AttackView, DefendedModel
from bench.matrix import MATRIX_DIR, load_matrix
from bench.plugins import load_plugins
from bench.store import records_frame

load_plugins()
ROOT = Path(__file__).resolve().parent.parent
EPS = 4 / 255
FAST = {  # fewer iterations than the standard suite: the toy model needs no more
    "fgsm": {}, "std-fgsm": {}, "i-fgsm": {"steps": 5}, "pgd": {"steps": 5}, "mi-fgsm": {"steps": 5}, "apgd": {"steps": 10},
    "korhonen": {"steps": 10}, "uap": {"epochs": 10, "batch_size": 8}, "perceptual": {"steps": 5},
    "square": {"n_queries": 100}, "cumulative-uap": {"epochs": 5}, "generative-uap": {"epochs": 5, "batch_size": 8},
    "ami-fgsm": {"steps": 3}, "ioi": {}, "madc": {"steps": 5, "alpha": 2.0}, "one-pixel": {"steps": 3, "popsize": 10},
    "parsimonious": {"max_queries": 100},
}
BLACKBOX = ["square", "one-pixel", "parsimonious"]  # score queries only (needs_gradients=False)
UNIVERSAL = ("uap", "cumulative-uap", "generative-uap")  # one pattern learnt from train images
GRADIENT_ATTACKS = [n for n in FAST if n not in BLACKBOX]


class TinyNet(IQAModel):
    """A tiny differentiable no-reference 'IQA model': conv, ReLU, conv, mean."""

    info = ModelInfo(name="tiny-net", lower_better=False, score_range=(-1, 1), kind="classic",
                     differentiable=True)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 1, 3))

    def forward(self, x):
        return self.net(x).mean(dim=(1, 2, 3))


def tiny(lower_better: bool) -> IQAModel:
    model = TinyNet().eval()
    model.info = ModelInfo(name="tiny-net", lower_better=lower_better, score_range=(-1, 1), kind="classic",
                           differentiable=True)
    return model


class Identity(Defense):
    info = DefenseInfo(name="id", kind="none")


class Quantize(Defense):
    """Rounds to 4 grey levels: the gradient through it is zero everywhere."""

    info = DefenseInfo(name="quantize", kind="purification", differentiable=False, surrogate="identity")

    def purify(self, x):
        return torch.round(x * 3) / 3


class Decoy(Defense):
    """Randomized: per image and draw, with probability 0.7 a contrast-inverted, damped
    copy 0.5 - 0.2 (x - 0.5), else the image itself. On a linear model most single draws
    point the gradient the wrong way, yet the expected score rises along the true direction
    (0.3 - 0.7 * 0.2 > 0): one draw per step misleads the attack, EOT does not."""

    info = DefenseInfo(name="decoy", kind="purification", randomized=True)

    def purify(self, x):
        flip = (torch.rand(len(x), 1, 1, 1, device=x.device) < 0.7).to(x)
        return flip * (0.5 - 0.2 * (x - 0.5)) + (1 - flip) * x


class LinearNet(TinyNet):
    """TinyNet without its ReLU: the same gradient everywhere, so that Decoy's draws
    disagree in sign only, not by where they land."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(self.net[0], self.net[2])


class PixelLinear(TinyNet):
    """A linear score with a fixed random weight per pixel and channel: its gradient is a
    pattern spread over all frequencies, not one constant per channel like LinearNet's."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(3)),
                              requires_grad=False)

    def forward(self, x):
        return (self.w * x).mean(dim=(1, 2, 3))


def images(n: int = 4, size: int = 24, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def run_attack(name: str, score, x: torch.Tensor, eps: float, lower_better: bool, train=None, **extra):
    torch.manual_seed(0)
    attack = create_attack(name, **{**FAST[name], **extra})
    if attack.learns():
        attack.prepare(score, images(32, x.shape[-1], seed=7) if train is None else train, eps, lower_better)
    return attack(score, x, eps, lower_better)


# ----------------------------------------------------------------------------- registry
def test_every_attack_is_registered_with_its_metadata_and_documented():
    assert set(FAST) <= set(ATTACKS.names())
    for name in FAST:
        cls = ATTACKS.get(name)
        assert cls.info.norm == "Linf" and cls.info.budget_unit == "1/255"
        assert cls.info.reference.startswith("https://") and cls.info.description
        doc = importlib.import_module(cls.__module__).__doc__
        assert "Threat model: L-inf" in doc, name
        for param, default in cls.defaults.items():  # every argument with its default
            assert f"{param}={default}" in doc, (name, param)
    assert [n for n in FAST if not ATTACKS.get(n).info.needs_gradients] == BLACKBOX


# ----------------------------------------------------------------------------- direction and budget
@pytest.mark.parametrize("name", list(FAST))
@pytest.mark.parametrize("lower_better", [False, True])
def test_attack_moves_score_the_better_way_within_budget(name, lower_better):
    model = tiny(lower_better)
    view = AttackView(DefendedModel(model, Identity()))
    x = images()
    x_adv = run_attack(name, view, x, EPS, lower_better)
    assert x_adv.shape == x.shape and torch.isfinite(x_adv).all()
    assert (x_adv - x).abs().max() <= EPS + 1e-7 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        change = model(x_adv) - model(x)
    assert ((-change if lower_better else change) > 0).all(), change


def test_perceptual_attack_keeps_ssim_above_its_bound():
    from bench.attacks.perceptual import ssim

    model = tiny(False)
    x = torch.nn.functional.interpolate(images(4, 4), size=32, mode="bilinear")  # smooth: SSIM is sensitive
    plain = run_attack("pgd", model, x, 16 / 255, False)
    assert (ssim(plain, x) < 0.95).all()  # the bound binds: unconstrained PGD goes below it
    for bound in (0.95, 0.98):
        x_adv = run_attack("perceptual", model, x, 16 / 255, False, ssim_bound=bound)
        assert (ssim(x_adv, x) >= bound).all()
        with torch.no_grad():
            assert (model(x_adv) > model(x)).all()


@pytest.mark.parametrize("name", UNIVERSAL)
def test_uap_is_one_pattern_learnt_from_train_images_and_tiled_to_other_sizes(name):
    model = tiny(False)
    uap = create_attack(name, **FAST[name])
    with pytest.raises(RuntimeError, match=f"attack '{name}' has no trained perturbation: call prepare"):
        uap(model, images(), EPS, False)
    torch.manual_seed(0)
    uap.prepare(model, images(32, 24, seed=7), EPS, False)
    x = images(4, 40) * 0.5 + 0.25  # another size, away from the clamp at 0 and 1
    delta = uap(model, x, EPS, False) - x
    assert torch.allclose(delta, delta[:1].expand_as(delta), atol=1e-6)  # the same for every image
    assert torch.allclose(delta[..., 24:40, 24:40], delta[..., :16, :16], atol=1e-6)  # tiled, not resized
    # a generator's tanh output, 20 Adam steps at the paper's lr from its initialisation, stays inside the bound
    assert delta.abs().max() > (0.1 if name == "generative-uap" else 0.5) * EPS


def test_square_needs_no_gradient_and_gets_through_a_zero_gradient_defense():
    model, defense = tiny(False), Quantize()
    defended = DefendedModel(model, defense)
    x = images(4, 24)
    x_adv = run_attack("square", defended, x, 16 / 255, False, n_queries=150)
    with torch.no_grad():
        assert (defended(x_adv) > defended(x)).all()


def test_ioi_is_one_gradient_evaluation_kept_off_flat_regions_within_budget():
    model, calls = tiny(False), []

    def score(z):
        calls.append(z.requires_grad)
        return model(z)

    x = images(4, 32)
    x[..., :16] = 0.5  # the left half flat: no texture to hide a perturbation in
    attack, eps = create_attack("ioi"), 8 / 255
    delta = attack.perturb(score, x, eps) - x  # perturb itself, before the base class's clipping
    assert calls == [True]  # one evaluation, with its gradient
    assert delta.abs().max() <= eps + 1e-7 and (x + delta).min() >= 0 and (x + delta).max() <= 1
    assert delta[..., :14].abs().max() == 0 and delta[..., 18:].abs().max() > eps / 4
    with torch.no_grad():
        assert (model(x + delta) > model(x)).all()


def test_ioi_with_eot_gets_through_a_randomized_defense():
    """As test_eot_defeats_a_randomized_defense_..., on PixelLinear with 128 draws: LinearNet's gradient is one constant
    per channel, which IOI's frequency module removes by design (it is the image's mean, its
    dominant frequency); and IOI's single step rests on one EOT estimate, whose sign is wrong
    for an image with at most 5 plain draws among 32 (P = 0.05), at most 21 among 128 (0.0003)."""
    model = PixelLinear().eval()
    defended = DefendedModel(model, Decoy())
    x = images(8, 24) * 0.5 + 0.25
    plain = run_attack("ioi", defended, x, 8 / 255, False)
    adaptive = run_attack("ioi", AttackView(defended, eot_samples=128), x, 8 / 255, False)
    with torch.no_grad():
        def mean_score(z):
            return 0.3 * model(z) + 0.7 * model(0.5 - 0.2 * (z - 0.5))

        gain_plain, gain_eot = mean_score(plain) - mean_score(x), mean_score(adaptive) - mean_score(x)
    assert (gain_eot > 0).all() and gain_eot.mean() > gain_plain.mean() + 0.5 * gain_eot.mean(), (gain_plain, gain_eot)


def test_madc_holds_the_rmse_to_the_clean_image_within_its_bound():
    from bench.attacks.madc import rmse

    model, x, eps, bound = tiny(False), images(4, 24), 16 / 255, 2.0
    assert (rmse(run_attack("pgd", model, x, eps, False), x) > bound / 255).all()  # the bound binds
    x_adv = create_attack("madc", steps=10, alpha=2.0, rmse_bound=bound).perturb(model, x, eps)
    assert (rmse(x_adv, x) <= bound / 255 + 1e-7).all() and (x_adv - x).abs().max() <= eps + 1e-7
    with torch.no_grad():
        assert (model(x_adv) > model(x)).all()


def test_one_pixel_moves_at_most_its_pixels_each_by_at_most_eps():
    model, x, eps = tiny(False), images(3, 16), 8 / 255
    torch.manual_seed(0)
    x_adv = create_attack("one-pixel", pixels=2, steps=3, popsize=20).perturb(model, x, eps)
    moved = ((x_adv - x).abs().amax(1) > 0).flatten(1).sum(1)  # pixel locations changed, per image
    assert (moved >= 1).all() and (moved <= 2).all() and (x_adv - x).abs().max() <= eps + 1e-6
    with torch.no_grad():
        assert (model(x_adv) > model(x)).all()


def test_parsimonious_spends_exactly_its_queries_and_returns_vertices_of_the_ball():
    model, x, eps, seen = tiny(False), images(4, 24), 4 / 255, []

    def score(z):
        seen.append(len(z))
        return model(z)

    torch.manual_seed(0)
    x_adv = create_attack("parsimonious", max_queries=100).perturb(score, x, eps)
    assert sum(seen) == 4 * 100  # every evaluation counted, the clean one included
    d = (x_adv - x).abs()
    assert (((d - eps).abs() < 1e-6) | (x_adv == 0) | (x_adv == 1)).all()  # +-eps everywhere (or clipped)
    with torch.no_grad():
        assert (model(x_adv) > model(x)).all()


# ----------------------------------------------------------------------------- adaptive views
@pytest.mark.parametrize("name", GRADIENT_ATTACKS)
def test_bpda_defeats_a_non_differentiable_defense_that_fools_the_plain_attack(name):
    model, defense = tiny(False), Quantize()
    defended = DefendedModel(model, defense)
    x = images(4, 24)
    eps = 16 / 255
    plain = run_attack(name, defended, x, eps, False)  # zero gradient: a gradient attack is blind
    view = AttackView(defended)
    assert view.summary == "bpda(identity)"
    adaptive = run_attack(name, view, x, eps, False, train=images(32, 24, seed=7))
    with torch.no_grad():
        clean = defended(x)
        gain_plain, gain_bpda = defended(plain) - clean, defended(adaptive) - clean
    # blind: nothing moves, or only what a random start moved by chance
    assert (gain_bpda > 0).all() and gain_bpda.mean() > gain_plain.mean() + 0.5 * gain_bpda.mean(), (
        gain_plain, gain_bpda)
    # no random step (generative-uap starts from its untrained generator's pattern): exactly nothing moved
    if name not in ("pgd", "apgd", "std-fgsm", "generative-uap"):
        assert gain_plain.abs().max() < 1e-7, gain_plain


# The universal attacks are left out: training one pattern over many batches already averages
# the gradient over draws (stochastic gradient ascent on the expectation), so the plain
# attack is not fooled in the first place; EOT changes nothing measurable there. IOI has its
# own test (test_ioi_with_eot_gets_through_a_randomized_defense, which says why).
@pytest.mark.parametrize("name", [n for n in GRADIENT_ATTACKS if n not in UNIVERSAL and n != "ioi"])
def test_eot_defeats_a_randomized_defense_that_fools_the_plain_attack(name):
    model, defense = LinearNet().eval(), Decoy()
    defended = DefendedModel(model, defense)
    x = images(8, 24) * 0.5 + 0.25
    eps = 8 / 255
    plain = run_attack(name, defended, x, eps, False)
    view = AttackView(defended, eot_samples=32)
    assert view.summary == "eot(32)"
    adaptive = run_attack(name, view, x, eps, False)
    with torch.no_grad():  # the expected score, exactly: 0.3 f(x) + 0.7 f(0.5 - 0.2 (x - 0.5))
        def mean_score(z):
            return 0.3 * model(z) + 0.7 * model(0.5 - 0.2 * (z - 0.5))

        gain_plain = mean_score(plain) - mean_score(x)
        gain_eot = mean_score(adaptive) - mean_score(x)
    assert (gain_eot > 0).all() and gain_eot.mean() > gain_plain.mean() + 0.5 * gain_eot.mean(), (gain_plain, gain_eot)


def test_eot_gradient_is_the_mean_of_the_draws_gradients():
    """EOT recomputes each draw in the backward pass (to keep one graph alive, not N): the
    replayed draw must be the same draw, so the gradient equals the plain average of
    per-draw gradients taken with the graphs kept. The expectation is computed here without
    the view or the defense: random-noise is x + sigma * N(0, 1), clipped to [0, 1], and its
    four draws are the next four torch.randn_like of the global generator."""
    model = tiny(False)
    defended = DefendedModel(model, create_defense("random-noise", sigma=0.1))
    view = AttackView(defended, eot_samples=4)
    x = images(3, 24).requires_grad_(True)
    torch.manual_seed(5)
    value = view(x).sum()
    (grad,) = torch.autograd.grad(value, x)
    torch.manual_seed(5)
    noises = [torch.randn_like(x) for _ in range(4)]
    x2 = x.detach().clone().requires_grad_(True)
    kept = torch.stack([model((x2 + 0.1 * n).clamp(0, 1)) for n in noises]).mean(0)
    (expected,) = torch.autograd.grad(kept.sum(), x2)
    assert torch.allclose(value, kept.sum()) and torch.allclose(grad, expected, atol=1e-7)
    # the draws differ (so a replay with new noise would show) and the gradient is not zero
    assert not torch.allclose(noises[0], noises[1]) and grad.abs().sum() > 0


# ----------------------------------------------------------------------------- reliability flags
FLAG_MODELS = '''
import torch
from torch import nn
from bench.api import IQAModel, ModelInfo, register_model


class _Base(IQAModel):
    info = ModelInfo(name="flag-normal", lower_better=False, score_range=(-1, 1), kind="classic",
                     differentiable=True)

    def __init__(self, **params):
        super().__init__(**params)
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(3, generator=g), requires_grad=False)

    def forward(self, x):
        return torch.tanh(x - 0.5).mul(self.w.view(1, 3, 1, 1)).mean(dim=(1, 2, 3))


@register_model
class Normal(_Base):
    pass


@register_model
class Zero(_Base):
    """Rounds its input: the gradient is exactly zero everywhere (declared differentiable)."""
    info = ModelInfo(name="flag-zero", lower_better=False, score_range=(0, 1), kind="classic", differentiable=True)

    def forward(self, x):
        return super().forward(torch.round(x * 8) / 8)


@register_model
class NonFinite(_Base):
    """Finite scores, NaN gradients: sqrt at 0 (infinite slope) times the zero slope of x * 0."""
    info = ModelInfo(name="flag-nan", lower_better=False, score_range=(-1, 1), kind="classic", differentiable=True)

    def forward(self, x):
        return super().forward(x) + torch.sqrt(x * 0).mean(dim=(1, 2, 3))


@register_model
class Random(_Base):
    info = ModelInfo(name="flag-random", lower_better=False, score_range=(-1, 1), kind="classic",
                     differentiable=True)

    def forward(self, x):
        return super().forward(x) + 0.01 * torch.randn(len(x), device=x.device)
'''

FLAG_MATRIX = """
name = "flags"
seed = 0
batch_size = 8
[models]
flag-normal = {}
flag-zero = {}
flag-nan = {}
flag-random = {}
[defenses]
none = {}
[attacks]
fgsm = { eps = [4] }
uap = { eps = [4], epochs = 1, max_images = 16 }
square = { eps = [4], n_queries = 40 }
[datasets]
embedded = { size = 48, n_images = 6 }
"""


def test_runner_flags_fire_on_models_built_to_trigger_them_and_stay_quiet_on_a_normal_one(tmp_path):
    from bench.cli import main
    from bench.store import ResultsStore

    plugin = tmp_path / "flag_models.py"
    plugin.write_text(FLAG_MODELS)
    matrix = tmp_path / "flags.toml"
    matrix.write_text(FLAG_MATRIX)
    code = main(["run", "--matrix", str(matrix), "--results", str(tmp_path / "r"), "--no-site", "--no-progress",
                 "--plugin", str(plugin)])
    df = records_frame(list(ResultsStore(tmp_path / "r").records()))
    assert code == 0 and set(df.status) == {"ok"}, df[["model", "attack", "status", "message"]]
    # these toy models predict no MOS (flagged not-predictive, tested in test_predictive.py): set aside here
    flags = {(r.model, r.attack): ";".join(f for f in r.flags.split(";") if not f.startswith("not-predictive"))
             for r in df.itertuples()}
    assert flags[("flag-normal", "fgsm")] == "" and flags[("flag-normal", "square")] == ""
    assert {"zero-gradients(6/6)", "no-score-change"} <= set(flags[("flag-zero", "fgsm")].split(";"))
    assert "blackbox-beats-whitebox(square>" in flags[("flag-zero", "fgsm")]
    assert flags[("flag-normal", "uap")] == "" and "no-score-change" in flags[("flag-zero", "uap")]
    assert "blackbox-beats-whitebox" in flags[("flag-zero", "square")]
    assert "no-score-change" not in flags[("flag-zero", "square")]  # the black-box attack got through
    assert "nonfinite-gradients(6/6)" in flags[("flag-nan", "fgsm")]
    assert "no-score-change" in flags[("flag-nan", "fgsm")]  # NaN steps are dropped, not applied
    assert "randomized-forward" in flags[("flag-random", "fgsm")]
    assert not any("randomized-forward" in f or "gradients" in f for (m, _), f in flags.items() if m != "flag-random"
                   and m not in ("flag-zero", "flag-nan"))


def _record(model: str, attack: str, gain: float, needs_gradients: bool | None, eps: float = 4.0,
            status: str = "ok", n: int = 8) -> dict:
    meta_attack = {"name": attack} if needs_gradients is None else {"name": attack, "needs_gradients": needs_gradients}
    return {"key": f"{model}{attack}{eps:g}{n}".replace("-", ""), "status": status, "flags": [],
            "cell": {"model": model, "defense": "none", "attack": attack, "eps": eps, "dataset": "d"},
            "config": {"model": {"name": model}, "defense": {"name": "none"}, "eps_255": eps,
                       "attack": {"name": attack}, "dataset": {"name": "d", "params": {"n_images": n}}},
            "metrics": {"abs_gain": gain, "srocc_clean": 0.8, "srocc_clean_ci_lo": 0.6},
            "meta": {"attack": meta_attack}}


def test_blackbox_beats_whitebox_flags_exactly_the_groups_where_it_does():
    df = records_frame([
        _record("masked", "pgd", 0.01, True), _record("masked", "fgsm", 0.02, True),
        _record("masked", "square", 0.30, False),
        _record("honest", "pgd", 0.40, True), _record("honest", "square", 0.30, False),
        _record("tie", "pgd", 0.0, True), _record("tie", "square", 0.0, False),
        _record("masked", "pgd", 0.50, True, eps=8), _record("masked", "square", 0.30, False, eps=8),
        _record("failed", "pgd", 0.0, True), _record("failed", "square", 0.9, False, status="error"),
        _record("unknown", "pgd", 0.0, True), _record("unknown", "mystery", 0.9, None),
        # same names, other data (another matrix in the same store): not compared
        _record("other-data", "pgd", 0.0, True, n=8), _record("other-data", "square", 0.9, False, n=16),
    ])
    flagged = {(r.model, r.attack, r.eps) for r in df.itertuples() if "blackbox-beats-whitebox" in r.flags}
    assert flagged == {("masked", "pgd", 4.0), ("masked", "fgsm", 4.0), ("masked", "square", 4.0)}
    assert set(df[(df.model == "masked") & (df.eps == 4)]["flags"]) == {"blackbox-beats-whitebox(square>fgsm)"}


def test_cross_cell_flags_stay_torch_free():
    code = ("import sys, bench.store, bench.flags; bench.store.records_frame([]); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600,
                         check=False)
    assert out.returncode == 0, out.stderr


# ----------------------------------------------------------------------------- matrix checks
class NoGradients(IQAModel):
    info = ModelInfo(name="no-gradients", lower_better=False, score_range=(0, 1), kind="classic",
                     differentiable=False)


def test_gradient_attack_on_a_model_without_gradients_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(MODELS._items, "no-gradients", NoGradients)
    path = write_matrix(tmp_path / "m.toml", **{"piqe = {}": "piqe = {}\n\"no-gradients\" = {}"})
    with pytest.raises(MatrixError, match=r"model 'no-gradients' has no usable gradients.*attack\(s\) fgsm, pgd "
                                          r"need them; attack it with one-pixel, parsimonious, square "
                                          r"\(needs_gradients = False\)") as e:
        load_matrix(str(path))
    assert str(path) in str(e.value)
    ok = write_matrix(tmp_path / "ok.toml", **{"piqe = {}": "\"no-gradients\" = {}",
                                                "cnniqa = { epochs = 2 }": "",
                                                "fgsm = { eps = [4] }": "square = { eps = [4] }",
                                                "pgd = { eps = [4, 8], steps = 3 }": ""})
    assert [a.name for a, _ in load_matrix(str(ok)).attacks] == ["square"]


@pytest.mark.parametrize("unit,eps,match", [
    ("1/255", "0.03", r"attacks\.fgsm\.eps.*image units \(= 7\.65/255\), write eps = 8"),
    ("1", "8", r"attacks\.fgsm\.eps.*did you mean 8/255"),
    ("1/255", "0", r"attacks\.fgsm\.eps.*outside \(0, 1\]"),
    ("1/255", "300", r"attacks\.fgsm\.eps.*outside \(0, 1\]"),
])
def test_eps_in_the_wrong_unit_names_the_attack_and_the_fix(tmp_path, unit, eps, match):
    path = write_matrix(tmp_path / "m.toml", **{'suite = "tiny-v1"': f'suite = "tiny-v1"\neps_unit = "{unit}"',
                                                "fgsm = { eps = [4] }": f"fgsm = {{ eps = [{eps}] }}",
                                                "pgd = { eps = [4, 8], steps = 3 }": ""})
    with pytest.raises(MatrixError, match=match):
        load_matrix(str(path))


# ----------------------------------------------------------------------------- the standard suite
def test_standard_suite_has_every_attack_at_fixed_budgets_and_full_runs_it():
    standard = load_matrix("standard")
    assert standard.suite == "standard-v3"
    # the suite is L-inf at 2, 4, 8 /255: a flow attack's eps is a displacement in pixels (stadv is
    # in the full matrix's `spatial` block instead), so no budget of the suite would mean the same for it
    assert {a.name: eps for a, eps in standard.attacks} == {n: [2.0, 4.0, 8.0] for n in ATTACKS.names()
                                                            if ATTACKS.origin(n).startswith("bench.attacks")
                                                            and ATTACKS.get(n).info.norm == "Linf"}
    for a, _ in standard.attacks:  # every parameter written out: a changed default cannot change the suite
        raw = tomllib.loads((MATRIX_DIR / "standard.toml").read_text())["attacks"][a.name]
        assert set(ATTACKS.get(a.name).defaults) <= set(raw), a.name
    full = load_matrix("full")
    assert {(a.name, tuple(e), tuple(sorted(a.params.items()))) for a, e in full.attacks} == {
        (a.name, tuple(e), tuple(sorted(a.params.items()))) for a, e in standard.attacks}
    quick = load_matrix("quick")
    assert {a.name for a, _ in quick.attacks} <= {"fgsm", "pgd", "i-fgsm"}


# ----------------------------------------------------------------------------- a flow attack (budget in px)
def test_stadv_warp_reads_each_pixel_from_its_position_moved_by_the_flow_in_pixels():
    from bench.attacks.stadv import warp

    x = images(2, 12)
    flow = torch.zeros(2, 12, 12, 2)
    assert torch.allclose(warp(x, flow), x, atol=1e-6)
    flow[..., 0] = 1.0  # one pixel to the right: each output pixel is its right neighbour
    assert torch.allclose(warp(x, flow)[..., :-1], x[..., 1:], atol=1e-5)
    flow[..., 0], flow[..., 1] = 0.0, 0.5  # half a pixel down: the mean of each pixel and the one below
    assert torch.allclose(warp(x, flow)[..., :-1, :], (x[..., :-1, :] + x[..., 1:, :]) / 2, atol=1e-5)


@pytest.mark.parametrize("lower_better", [False, True])
def test_stadv_moves_pixels_at_most_eps_px_and_pushes_the_score_the_better_way(lower_better):
    model, x, eps = tiny(lower_better), images(), 0.5
    torch.manual_seed(0)
    attack = create_attack("stadv", steps=5)
    assert (attack.info.norm, attack.info.budget_unit) == ("flow", "px")
    adv = attack(model, x, eps, lower_better)
    assert 0 < attack.displacement <= eps
    # moved, never added to: a pixel read within 1 px lies between its 3x3 neighbourhood's extremes
    hi, lo = F.max_pool2d(x, 3, 1, 1), -F.max_pool2d(-x, 3, 1, 1)
    assert ((adv <= hi + 1e-6) & (adv >= lo - 1e-6)).all() and (adv - x).abs().max() > 1e-3
    with torch.no_grad():
        gain = (model(adv) - model(x)) * (-1 if lower_better else 1)
    assert (gain > 0).all(), gain


class LyingFlow(Attack):
    """A flow attack that reports more displacement than its budget allows, or none."""

    info = AttackInfo(name="lying-flow", norm="flow", budget_unit="px")

    def perturb(self, objective, x, eps):
        self.displacement = 2 * eps if eps < 2 else None
        return x


def test_a_flow_attack_is_checked_on_the_displacement_it_reports():
    x = images(1, 8)
    with pytest.raises(ValueError, match=r"left its budget: displacement 2\.0 px > eps 1\.0 px"):
        LyingFlow()(TinyNet(), x, 1.0, False)
    with pytest.raises(ValueError, match="sets `displacement` in perturb"):
        LyingFlow()(TinyNet(), x, 3.0, False)  # eps above 1: pixels, not image units
    with pytest.raises(ValueError, match="norm 'flow' and budget_unit 'px' go together"):
        AttackInfo(name="x", norm="flow")


@pytest.mark.parametrize("unit", ["1/255", "1"])
def test_matrix_takes_a_flow_attacks_eps_in_px_whatever_the_eps_unit(tmp_path, unit):
    path = write_matrix(tmp_path / "m.toml", **{'suite = "tiny-v1"': f'suite = "tiny-v1"\neps_unit = "{unit}"',
                                                "fgsm = { eps = [4] }": "stadv = { eps = [0.5, 1] }",
                                                "pgd = { eps = [4, 8], steps = 3 }": ""})
    assert [(a.name, e) for a, e in load_matrix(str(path)).attacks] == [("stadv", [0.5, 1.0])]


@pytest.mark.parametrize("attacks,match", [
    ("stadv = { eps = [0.002] }", r"attacks\.stadv\.eps.*largest displacement in pixels.*\(1/255, 64\]"),
    ("stadv = { eps = [100] }", r"attacks\.stadv\.eps.*largest displacement in pixels"),
    ("stadv = { eps = [1] }\nfgsm = { eps = [0.03] }", r"attacks\.fgsm\.eps.*write eps = 8"),  # L-inf still checked
])
def test_matrix_refuses_flow_budgets_out_of_range_and_still_wrong_linf_units(tmp_path, attacks, match):
    path = write_matrix(tmp_path / "m.toml", **{"fgsm = { eps = [4] }": attacks,
                                                "pgd = { eps = [4, 8], steps = 3 }": ""})
    with pytest.raises(MatrixError, match=match):
        load_matrix(str(path))
