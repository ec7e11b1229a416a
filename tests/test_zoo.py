"""pyiqa's learned no-reference zoo, parametrized over every model as pyiqa's and timm's
suites are: each builds with random weights while the network is blocked (a hidden
download fails the test), scores a 2 x 3 x 224 x 224 batch to finite values and gives
finite, non-zero input gradients; the files its build asks for are the ones the manifest
lists (what `bench weights` and the check before a run rely on). Models that cannot be
attacked are listed with their reason, never missing."""

from __future__ import annotations

import pytest
import torch

from bench.api import MODELS
from bench.cli import main
from bench.models.pyiqa_zoo import BUILT_IN, CROPS_224, PyiqaModel, random_weights
from bench.models.pyiqa_zoo.catalog import BUILD_NEEDS_FILES, entries, parse_range
from bench.models.pyiqa_zoo.manifest import SIDES, manifest, record, scores_at

ZOO = [e for e in entries() if e.refused is None and e.name not in BUILT_IN]
REPRESENTATIVE: dict[str, str] = {}
for _e in ZOO:
    REPRESENTATIVE.setdefault(manifest()[_e.name]["structure"], _e.name)
REFUSED = [e for e in entries() if e.refused is not None]


@pytest.fixture
def no_network():
    """Any socket but a Unix one fails: a constructor that downloads fails its test."""
    from pytest_socket import disable_socket, enable_socket

    disable_socket(allow_unix_socket=True)
    yield
    enable_socket()


def test_every_no_reference_configuration_is_a_model_or_refused_with_its_reason(capsys):
    names = {e.name for e in entries()}
    assert len(names) == 66  # pyiqa 0.1.16: 74 NR configurations, 8 of them classic metrics
    assert names <= set(MODELS.names())
    for e in entries():
        cls = MODELS.get(e.name)
        if e.name in BUILT_IN:
            assert not issubclass(cls, PyiqaModel)  # the benchmark's own (can also train here)
            continue
        assert cls.info.lower_better == e.lower_better and cls.info.score_range == e.score_range
        assert cls.info.unavailable == e.refused
    assert {e.arch for e in REFUSED} >= {"QAlign", "QReAlign", "Compare2Score"}
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    for e in REFUSED:
        assert f"{e.name} " in out and "not run here: " in out.split(f"\n{e.name} ")[-1].split("\n")[0]


def test_pyiqa_metadata_becomes_numbers():
    assert parse_range("~0, ~1") == (0.0, 1.0)
    assert parse_range("1, 10") == (1.0, 10.0)
    assert parse_range("~-3, ~3") == (-3.0, 3.0)
    assert parse_range("0, ~") == (0.0, float("inf"))
    by_name = {e.name: e for e in entries()}
    assert by_name["topiq_nr-flive"].input_size == (384, 384)
    assert by_name["afine_nr"].lower_better and not by_name["maniqa"].lower_better


def test_a_refused_model_in_a_matrix_is_refused_before_any_work(tmp_path, capsys):
    m = tmp_path / "m.toml"
    m.write_text('name = "m"\n[models]\nqalign = {}\n[defenses]\nnone = {}\n[attacks]\nfgsm = { eps = [2] }\n'
                 '[datasets]\nembedded = {}\n')
    assert main(["run", "--matrix", str(m), "--results", str(tmp_path / "r"), "--no-site"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model 'qalign' cannot be run here: LLM-based" in err[0]
    assert not (tmp_path / "r" / "cells").exists()


@pytest.mark.parametrize("name", [e.name for e in ZOO])
def test_zoo_model_builds_scores_and_differentiates_offline(name, no_network):
    crops = {"crops": 1} if MODELS.get(name).entry.arch in CROPS_224 else {}
    torch.manual_seed(0)
    with random_weights():
        model = MODELS.create(name, **crops).eval()
    assert model.weights_source() is None  # random weights: never a result
    recorded = manifest()[name]
    assert record(model) == {k: v for k, v in recorded.items() if k != "min_size"}  # what `bench weights` uses
    assert model.info.min_size == (recorded["min_size"] if name not in BUILD_NEEDS_FILES else 224)
    if name != REPRESENTATIVE[recorded["structure"]]:
        return  # the same network as that model, with other weights: scored and differentiated there
    x = torch.rand(2, 3, 224, 224, requires_grad=True)
    if name in BUILD_NEEDS_FILES:  # declared: it cannot score without its files; stays true
        with pytest.raises(AttributeError, match="_Skip"):  # the stand-in for what it would have read
            model(x)
        return
    side = recorded["min_size"]  # the smallest side it scores, measured: it does, and one rung smaller does not
    assert scores_at(model, side) and (side == SIDES[0] or not scores_at(model, SIDES[SIDES.index(side) - 1]))
    s = model(x)
    assert s.shape == (2,) and torch.isfinite(s).all()
    with torch.no_grad():
        assert torch.equal(s.detach(), model(x))  # eval mode is deterministic (fixed crops)
    (g,) = torch.autograd.grad(s.sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_readme_zoo_table_states_the_catalogs_counts():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    zoo = re.search(r"\| zoo models, besides `cnniqa`, `wadiqam_nr` \| (\d+) \|.*?among them \((\d+):", readme)
    refused = re.search(r"\| listed, not run here \| (\d+) \|", readme)
    assert zoo and refused, "the README's zoo table changed shape"
    assert int(zoo.group(1)) == len(ZOO) and int(refused.group(1)) == len(REFUSED)
    assert int(zoo.group(2)) == len(REPRESENTATIVE)
