"""The orthogonal-flow defense (arXiv 2506.04951) on tiny models: the Cayley block is
exactly orthogonal, insertion leaves a trained model unchanged, the activation swap and
pruning really happen, and fine-tuning is reproducible and fails loudly."""

from __future__ import annotations

import copy
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.api import DEFENSES, FitContext, IQAModel, IQASplit, ModelInfo, NotApplicable
from defenses.orthoflow import CayleyConv2d, OrthoFlow, activation_swaps

VARIANTS = ["ortho", "ortho+act", "ortho+act+prune", "ortho+act+prune-l2", "act", "prune", "finetune-only"]


def _info(name: str) -> ModelInfo:
    return ModelInfo(name=name, lower_better=False, score_range=(0.0, 1.0), kind="learned", differentiable=True)


class FunctionalNet(nn.Module):
    """Like pyiqa's CNNIQA: functional ReLUs, max-min pooling, dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3)
        self.fc1 = nn.Linear(12, 16)
        self.fc2 = nn.Linear(16, 1)
        self.dropout = nn.Dropout()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x)
        h = torch.cat((h.amax((2, 3)), h.amin((2, 3))), 1)
        h = self.dropout(F.relu(self.fc1(h)))
        return self.fc2(torch.relu(h))


class TinyFunctional(IQAModel):
    info = _info("tiny-functional")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.net = FunctionalNet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


class TinyModules(IQAModel):
    info = _info("tiny-modules")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


class NoConv(IQAModel):
    info = _info("no-conv")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.fc = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3))).flatten()


def _model(cls: type[IQAModel], seed: int = 0) -> IQAModel:
    torch.manual_seed(seed)
    return cls().eval()


def _ctx(n: int = 20, seed: int = 0) -> FitContext:
    g = torch.Generator().manual_seed(123)
    images = torch.rand(n, 3, 12, 12, generator=g)
    split = IQASplit(images, torch.rand(n, generator=g), [f"i{i}" for i in range(n)], [f"r{i}" for i in range(n)])
    return FitContext(
        train=split, targets=torch.rand(n, generator=g), seed=seed, device=torch.device("cpu"), log=lambda _: None
    )


def _defense(name: str, **params) -> OrthoFlow:
    return DEFENSES.get(name)(**params)


# ----------------------------------------------------------------------------- Cayley block
def test_cayley_preserves_norm_for_random_kernels():
    torch.manual_seed(0)
    layer = CayleyConv2d(5)
    with torch.no_grad():
        layer.weight.normal_()
    for shape in [(4, 5, 8, 8), (3, 5, 7, 10)]:  # odd sizes too: the rfft half spectrum must be right
        x = torch.randn(shape)
        ratio = layer(x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
        assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-4)


def test_cayley_jacobian_is_orthogonal():
    torch.manual_seed(1)
    layer = CayleyConv2d(3).double()
    with torch.no_grad():
        layer.weight.normal_()
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(layer, x).reshape(108, 108)
    sv = torch.linalg.svdvals(jac)
    assert abs(sv.max().item() - 1) < 1e-6 and abs(sv.min().item() - 1) < 1e-6
    assert not torch.allclose(layer(x), x)  # a real rotation, not the identity


def test_cayley_starts_as_identity():
    x = torch.randn(2, 4, 9, 6)
    assert torch.allclose(CayleyConv2d(4)(x), x, atol=1e-6)


def test_cayley_eval_path_matches_and_follows_weight_changes():
    """Eval mode reuses one LU factorization (for attacks); it must give the same map,
    pass input gradients, and notice when V changes (e.g. load_state_dict)."""
    torch.manual_seed(2)
    layer = CayleyConv2d(4)
    with torch.no_grad():
        layer.weight.normal_()
    x = torch.randn(2, 4, 7, 8, requires_grad=True)
    y_train = layer(x)
    layer.eval()
    y_eval = layer(x)
    assert torch.allclose(y_eval, y_train, atol=1e-5)
    (g,) = torch.autograd.grad(y_eval.square().sum(), x)
    assert torch.allclose(g, 2 * x, atol=1e-4)  # orthogonal: grad of |Qx|^2 is 2x
    with torch.no_grad():
        layer.weight.normal_()  # still in eval mode: the cached factorization is now stale
    y_eval_new = layer(x)
    layer.train()
    assert torch.allclose(y_eval_new, layer(x), atol=1e-5) and not torch.allclose(y_eval_new, y_train, atol=1e-3)


# ----------------------------------------------------------------------------- transform
def test_variants_registered_with_metadata():
    for name in VARIANTS:
        cls = DEFENSES.get(name)
        assert cls.info.kind == "architectural" and cls.info.differentiable and not cls.info.randomized
        assert "2506.04951" in cls.info.reference and cls.trains()
    assert _defense("ortho+act+prune").params["prune"] == "l1-unstructured"
    assert _defense("finetune-only").params["insert"] == "none"
    assert _defense("ortho+act+prune-l2").params["prune"] == "l2-structured"


@pytest.mark.parametrize("insert", ["first", "all"])
@pytest.mark.parametrize("cls", [TinyFunctional, TinyModules])
def test_insertion_keeps_scores_and_base_model(cls, insert):
    base = _model(cls)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    out = _defense("ortho", insert=insert).transform(base)
    n_conv = sum(isinstance(m, nn.Conv2d) for m in base.modules())
    n_cayley = sum(isinstance(m, CayleyConv2d) for m in out.modules())
    assert n_cayley == (1 if insert == "first" else n_conv)
    x = torch.rand(3, 3, 12, 12)
    assert torch.allclose(out(x), base(x), atol=1e-6)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # base untouched


def test_activation_swap_functional_and_modules():
    base = _model(TinyFunctional)
    out = _defense("act").transform(base)
    assert activation_swaps(out) == {"modules": 0, "functional": 2}
    x = torch.rand(4, 3, 12, 12)
    h = base.net.conv1(x)
    h = torch.cat((h.amax((2, 3)), h.amin((2, 3))), 1)
    expected = base.net.fc2(F.silu(F.silu(base.net.fc1(h)))).flatten()  # eval: dropout off
    assert torch.allclose(out(x), expected, atol=1e-6) and not torch.allclose(out(x), base(x))
    assert torch.equal(base(x), base.net(x).flatten())  # the base model is untouched

    mods = _model(TinyModules)
    out = _defense("act", activation="gelu").transform(mods)
    assert activation_swaps(out) == {"modules": 2, "functional": 0}
    assert sum(isinstance(m, nn.GELU) for m in out.modules()) == 2
    assert not any(isinstance(m, nn.ReLU) for m in out.modules())


class HeadInForward(IQAModel):
    """ReLUs written in the model's own forward, in every form (issue: the traced swap
    reached none of them), and a functional dropout that must keep its train mode."""

    info = _info("head-in-forward")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x).mean((2, 3)) - 0.5
        h = F.relu(h) + torch.relu(h) + h.relu() + F.relu(h.clone(), inplace=True) + self.act(h)
        h = F.dropout(h, p=0.5, training=self.training)
        return self.fc(h).flatten()


def test_activation_swap_reaches_the_models_own_forward_and_keeps_dropout():
    base = _model(HeadInForward)
    out = _defense("act").transform(base)
    assert activation_swaps(out) == {"modules": 1, "functional": 4}
    x = torch.rand(3, 3, 10, 10)
    h = base.conv(x).mean((2, 3)) - 0.5
    assert (h < 0).any()  # negative pre-activations: SiLU and ReLU differ there
    assert torch.allclose(out(x), base.fc(5 * F.silu(h)).flatten(), atol=1e-6)
    out.train()  # what the fine-tune runs in: dropout is on, draws differ
    torch.manual_seed(1)
    a = out(x)
    assert not torch.equal(a, out(x))
    out.eval()
    assert torch.equal(out(x), out(x))
    moved = copy.deepcopy(out)  # a copy computes with its own weights, swap included
    with torch.no_grad():
        moved.fc.bias.add_(1.0)
    assert torch.allclose(moved(x), out(x) + 1.0, atol=1e-6)


def test_a_swap_that_would_change_nothing_is_not_run():
    """A model with no ReLU anywhere: the variants that swap are not applicable (their cells
    are `skipped` with the reason); the ones that do not swap still run."""

    class GeluNet(IQAModel):
        info = _info("gelu-net")

        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.Conv2d(3, 2, 3), nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1)
            )

        def forward(self, x):
            return F.gelu(self.net(x)).flatten()

    for name in ("act", "ortho+act", "ortho+act+prune"):
        with pytest.raises(NotApplicable, match=re.escape(f"defense '{name}': model 'gelu-net' computes with no ReLU")):
            _defense(name).transform(_model(GeluNet))
    _defense("ortho").transform(_model(GeluNet))


def test_not_applicable_without_conv():
    with pytest.raises(NotApplicable, match="defense 'ortho' needs a model with Conv2d layers; model 'no-conv' has none"):
        _defense("ortho").transform(_model(NoConv))
    _defense("finetune-only").transform(_model(NoConv))  # the control needs no conv

    class Parameterless(IQAModel):  # a classic metric: nothing to fine-tune
        info = _info("parameterless")

        def forward(self, x):
            return x.mean((1, 2, 3))

    with pytest.raises(NotApplicable, match="defense 'finetune-only' fine-tunes the model; model 'parameterless'"):
        _defense("finetune-only").transform(Parameterless())


# ----------------------------------------------------------------------------- fit
def test_fit_prunes_and_keeps_state_dict_keys():
    d = _defense("ortho+act+prune")
    model = d.transform(_model(TinyFunctional))
    keys = list(model.state_dict())
    ctx = _ctx()
    d.fit(model, ctx)
    assert list(model.state_dict()) == keys
    assert not model.training
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert 0.09 <= zeros <= 0.11 and ctx.record["pruned_fraction"] == pytest.approx(zeros)
    assert [st["stage"] for st in ctx.record["stages"]] == ["activation", "orthogonal", "prune"]
    assert ctx.record["epochs"] == 6 and len(ctx.record["loss_per_epoch"]) == 6  # 2 per stage
    assert ctx.record["activation_swaps"]["functional"] == 2
    # What the runner does: reload the cached state_dict into a fresh transform.
    fresh = d.transform(_model(TinyFunctional))
    fresh.load_state_dict(model.state_dict(), strict=True)


def test_fit_reads_what_transform_did_off_the_model():
    """Nothing passes from transform to fit but the model: a fresh transform() of another
    base model, loaded with the first one's state_dict, fits to the same weights and record."""
    d = _defense("ortho+act+prune", insert="all", epochs=1)
    model = d.transform(_model(HeadInForward))
    reloaded = d.transform(_model(HeadInForward, seed=1))
    reloaded.load_state_dict(model.state_dict(), strict=True)
    records = []
    for m in (model, reloaded):
        ctx = _ctx(n=8)
        d.fit(m, ctx)
        records.append({k: v for k, v in ctx.record.items() if k not in ("stages", "seconds")})
    assert records[0] == records[1]
    assert records[0]["orthogonal_after"] == ["conv"]
    assert records[0]["activation_swaps"] == {"modules": 1, "functional": 4}
    assert all(torch.equal(v, reloaded.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name, stages", [
    ("ortho", ["orthogonal"]), ("ortho+act", ["activation", "orthogonal"]),
    ("ortho+act+prune", ["activation", "orthogonal", "prune"]), ("ortho+act+prune-l2", ["activation", "orthogonal", "prune"]),
    ("act", ["activation"]), ("prune", ["prune"]), ("finetune-only", ["finetune"]),
])
def test_each_change_gets_its_own_finetune(name, stages):
    assert _defense(name).stages() == stages


def test_stages_fine_tune_what_has_been_changed_so_far(monkeypatch):
    """Spy on the shared loop: while the activation stage trains, the inserted block is held
    at the identity (it is not inserted yet) and nothing is pruned; the orthogonal stage
    trains the block; only the prune stage runs with the masks on."""
    from defenses import orthoflow

    seen = []

    def spy(model, ctx, batch_loss, **kw):
        block = next(m for m in model.modules() if isinstance(m, CayleyConv2d))
        zeros = sum(int((m.weight == 0).sum()) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        out = real(model, ctx, batch_loss, **kw)
        seen.append((kw["name"], zeros, block.weight.abs().sum().item()))
        return out

    real = orthoflow.train_loop
    monkeypatch.setattr(orthoflow, "train_loop", spy)
    d = _defense("ortho+act+prune", epochs=1)
    model = d.transform(_model(TinyModules))
    d.fit(model, _ctx())
    assert [name for name, _, _ in seen] == [f"ortho+act+prune ({s} stage)" for s in ("activation", "orthogonal", "prune")]
    (_, z_act, v_act), (_, z_ortho, v_ortho), (_, z_prune, v_prune) = seen
    assert v_act == 0 and v_ortho > 0 and v_prune != v_ortho
    assert z_act == z_ortho == 0 and z_prune > 0


def test_inserted_blocks_stay_orthogonal_after_fit():
    """In the fitted, defended model (eval mode, the path attacks use) every inserted block
    scales the L2 norm of its input by exactly |scale|, and its Jacobian's singular values
    all equal |scale|: fine-tuning cannot make it amplify a perturbation."""
    d = _defense("ortho+act+prune", insert="all", epochs=2)
    model = d.transform(_model(TinyModules))
    d.fit(model, _ctx())
    blocks = [m for m in model.modules() if isinstance(m, CayleyConv2d)]
    assert len(blocks) == 2 and all(b.weight.abs().sum() > 0 for b in blocks)  # trained, not identity
    for block in blocks:
        scale = block.scale.detach().abs()
        x = torch.randn(3, block.channels, 7, 6)
        ratio = block(x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
        assert torch.allclose(ratio, scale.expand(3), rtol=1e-4)
        double = copy.deepcopy(block).double().eval()
        z = torch.randn(1, block.channels, 5, 5, dtype=torch.float64)
        sv = torch.linalg.svdvals(torch.autograd.functional.jacobian(double, z).reshape(z.numel(), z.numel()))
        assert torch.allclose(sv, scale.double().expand_as(sv), rtol=1e-6)


def test_structured_pruning_zeroes_filters():
    d = _defense("prune", prune="l2-structured", amount=0.25, epochs=1)  # 1 of 4 filters a layer
    model = d.transform(_model(TinyModules))
    keys = list(model.state_dict())
    d.fit(model, _ctx())
    assert list(model.state_dict()) == keys
    for conv in (model.net[0], model.net[3]):
        assert int((conv.weight.flatten(1).abs().sum(1) == 0).sum()) == 1


def test_fit_is_deterministic_and_changes_weights():
    def run(seed: int) -> dict[str, torch.Tensor]:
        d = _defense("ortho+act+prune")
        model = d.transform(_model(TinyModules))
        d.fit(model, _ctx(seed=seed))
        return model.state_dict()

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert a["net.0.orthogonal.weight"].abs().sum() > 0  # the orthogonal block (V, zero at start) was trained


def test_fit_raises_on_nan_loss():
    d = _defense("finetune-only")
    model = d.transform(_model(TinyFunctional))
    with torch.no_grad():
        model.net.fc2.bias.fill_(float("nan"))
    with pytest.raises(RuntimeError, match=r"defense 'finetune-only \(finetune stage\)': fine-tuning diverged"):
        d.fit(model, _ctx())
    assert not model.training


def test_bad_params_refused():
    with pytest.raises(ValueError, match="lr"):
        _defense("ortho", lr=1e-2)
    with pytest.raises(ValueError, match="activation"):
        _defense("ortho+act", activation="tanh")
    with pytest.raises(ValueError, match=r"amount 0.0 must be in \(0, 1\)"):
        _defense("prune", amount=0.0)
    _defense("ortho", amount=0.0)  # no pruning step: the amount is not used
    with pytest.raises(ValueError, match="parameter 'epochs' must be int >= 1, got 0"):
        _defense("finetune-only", epochs=0)


# ----------------------------------------------------------------------------- RKO alternative
def test_rko_block_starts_as_identity_and_stays_row_orthogonal():
    """The RKO alternative: identity at insertion, rows of the reshaped kernel orthonormal
    after fitting, Lipschitz constant at most k |scale| (and exactly norm-preserving for k = 1)."""
    from defenses.orthoflow import RKOConv2d

    x = torch.randn(2, 4, 7, 6)
    assert torch.allclose(RKOConv2d(4)(x), x, atol=1e-6)
    d = _defense("ortho+act+prune", block="rko", insert="all", epochs=1)
    model = d.transform(_model(TinyModules))
    d.fit(model, _ctx())
    blocks = [m for m in model.modules() if isinstance(m, RKOConv2d)]
    assert len(blocks) == 2
    for block in blocks:
        w = block.weight.detach()
        assert not torch.allclose(w, RKOConv2d(4).weight.detach())  # trained
        assert torch.allclose(w @ w.T, torch.eye(4), atol=1e-5)
        double = copy.deepcopy(block).double().eval()
        z = torch.randn(1, 4, 5, 5, dtype=torch.float64)
        sv = torch.linalg.svdvals(torch.autograd.functional.jacobian(double, z).reshape(z.numel(), z.numel()))
        assert sv.max() <= 3 * block.scale.detach().abs() + 1e-6
    one = RKOConv2d(3, kernel_size=1)
    with torch.no_grad():
        one.parametrizations.weight.original.normal_()
    ratio = one(x[:, :3]).flatten(1).norm(dim=1) / x[:, :3].flatten(1).norm(dim=1)
    assert torch.allclose(ratio, torch.ones(2), atol=1e-5)
    fresh = d.transform(_model(TinyModules))
    fresh.load_state_dict(model.state_dict(), strict=True)
    with pytest.raises(ValueError, match="odd"):
        _defense("ortho", block="rko", kernel_size=2)


def test_a_variant_that_would_change_nothing_is_refused_when_the_matrix_loads(tmp_path):
    from bench.errors import MatrixError
    from bench.matrix import load_matrix
    from bench.plugins import load_plugins

    load_plugins()
    for defense, why in (('prune = { amount = 0.0 }', "amount 0.0 must be in (0, 1)"),
                         ('"finetune-only" = { epochs = 0 }', "parameter 'epochs' must be int >= 1, got 0")):
        path = tmp_path / "m.toml"
        path.write_text(f'name = "m"\nseed = 0\n[models]\ncnniqa = {{}}\n[defenses]\n{defense}\n'
                        '[attacks]\nfgsm = { eps = [2] }\n[datasets]\nembedded = {}\n')
        with pytest.raises(MatrixError) as e:
            load_matrix(str(path))
        field = defense.split(" = ")[0].strip('"')
        assert f"field 'defenses.{field}': defense '{field}': {why}" in str(e.value)


# ----------------------------------------------------------------------------- where it applies
class ReadsItsConv(IQAModel):
    """Like CLIP: the forward reads an attribute of its first conv (the network's dtype)."""

    info = _info("reads-its-conv")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x.to(self.conv.weight.dtype))).mean((1, 2, 3))


class BypassesItsConv(ReadsItsConv):
    """Applies the conv's weights without calling the module: a hook on it never runs."""

    info = _info("bypasses-its-conv")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(F.conv2d(x, self.conv.weight, self.conv.bias)).mean((1, 2, 3))


class ScoresOnlyInEval(TinyModules):
    """Like pyiqa's MUSIQ: in training mode the forward expects what a data loader prepared."""

    info = _info("scores-only-in-eval")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError("expects pre-extracted patches in training mode")
        return super().forward(x)


def test_a_block_follows_its_conv_which_keeps_its_place_and_attributes():
    model = _model(ReadsItsConv)
    defended = _defense("ortho").transform(model)
    assert isinstance(defended.conv, nn.Conv2d) and isinstance(defended.conv.orthogonal, CayleyConv2d)
    x = torch.rand(2, 3, 9, 9)
    with torch.no_grad():
        defended.conv.orthogonal.weight.normal_()  # no longer the identity: the block must show in the output
        block_out = torch.relu(defended.conv.orthogonal(model.conv(x))).mean((1, 2, 3))
        assert torch.allclose(defended(x), block_out, atol=1e-6)
        assert not torch.allclose(defended(x), model(x), atol=1e-3)
    copied = copy.deepcopy(defended)  # the hook travels with a copy and runs the copy's block
    with torch.no_grad():
        copied.conv.orthogonal.weight.zero_()
        assert torch.allclose(copied(x), model(x), atol=1e-5) and not torch.allclose(copied(x), defended(x), atol=1e-3)


def test_a_model_that_bypasses_the_conv_module_is_skipped_not_reported_as_the_variant():
    with pytest.raises(NotApplicable, match=r"defense 'ortho'.*1 of the 1 orthogonal blocks .* never ran"):
        _defense("ortho").transform(_model(BypassesItsConv))
    _defense("act").transform(_model(BypassesItsConv))  # no block inserted: nothing to bypass


@pytest.mark.parametrize("defense", ["ortho+act+prune", "adv-train"])
def test_a_model_that_cannot_train_on_images_is_skipped_with_the_reason(defense):
    with pytest.raises(NotApplicable, match=rf"defense '{re.escape(defense)}' fine-tunes the model on images; model "
                                            r"'scores-only-in-eval' .*RuntimeError: expects pre-extracted patches"):
        DEFENSES.create(defense).transform(_model(ScoresOnlyInEval))


def test_the_training_mode_check_leaves_the_model_as_it_was():
    model = _model(TinyModules)
    model.net[1].train()  # one module in training mode, the rest in eval: kept so
    before = copy.deepcopy(model.state_dict())
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    DEFENSES.create("adv-train").transform(model)  # returns the model itself, checked in training mode
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BatchNorm statistics too
    assert torch.equal(torch.get_rng_state(), rng)
