"""KonCept512 and LinearityIQA, the two of the paper's five models that pyiqa lacks: each
loads a checkpoint this test wrote in its release's layout (key names, wrapper, extras),
scores with those weights, differentiates, and refuses a checkpoint of another layout."""

from __future__ import annotations

import pytest
import torch

from bench.api import MODELS, CheckpointError


def _scrambled(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Other weights than the model's own (variances kept positive)."""
    torch.manual_seed(3)
    out = {k: torch.randn_like(v) * 0.05 if v.is_floating_point() else v for k, v in state.items()}
    return {k: v.abs() + 0.5 if k.endswith("running_var") else v for k, v in out.items()}


def test_koncept512_loads_its_release_layout_and_scores(tmp_path):
    model = MODELS.create("koncept512")
    state = _scrambled(model.state_dict())
    assert any(k.startswith("base.14.") for k in state) and "fc.12.weight" in state  # base.0..14, FC head
    assert tuple(state["fc.0.weight"].shape) == (2048, 1536) and tuple(state["fc.12.weight"].shape) == (1, 256)
    path = tmp_path / "KonCept512.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # saved from DataParallel, as releases often are
    loaded = MODELS.create("koncept512", weights=str(path))
    loaded.load_weights(str(path))
    assert torch.equal(loaded.state_dict()["fc.12.weight"], state["fc.12.weight"])
    x = torch.rand(2, 3, 96, 128, requires_grad=True)
    s = loaded.eval()(x)
    (g,) = torch.autograd.grad(s.sum(), x)
    assert s.shape == (2,) and torch.isfinite(s).all() and g.abs().sum() > 0
    torch.save({"something": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="does not fit model 'koncept512'"):
        loaded.load_weights(str(tmp_path / "other.pth"))


def test_linearityiqa_loads_model_and_mos_map_and_scores(tmp_path):
    model = MODELS.create("linearityiqa", arch="resnet18")  # the release's layout, on the smallest body it allows
    state = _scrambled(model.state_dict())
    assert {"features.7.1.conv2.weight", "dr6.0.weight", "dr7.4.weight", "regr6.weight", "regression.weight"} <= set(state)
    path = tmp_path / "p1q2.pth"
    torch.save({"model": state, "k": [1.0, 1.0, 25.0], "b": [0.0, 0.0, 50.0]}, path)
    model.load_weights(str(path))
    model.eval()
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    s = model(x)
    raw = model.regression(torch.cat([model.dr6(_stage(model, x, 6)), model.dr7(_stage(model, x, 7))], 1)).reshape(-1)
    assert torch.allclose(s, raw * 25.0 + 50.0)  # the last (k, b): the map of the overall score
    (g,) = torch.autograd.grad(s.sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    torch.save(state, tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match="not LinearityIQA's release layout"):
        model.load_weights(str(tmp_path / "bare.pth"))


def _stage(model, x: torch.Tensor, last: int) -> torch.Tensor:
    y = (x - model.mean) / model.std
    for block in list(model.features)[: last + 1]:
        y = block(y)
    return y.mean(dim=(2, 3))


def test_the_paper_models_say_which_files_they_need(capsys):
    from bench.cli import main

    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert "koncept512" in out and "KonCept512.pth" in out and "p1q2.pth" in out
