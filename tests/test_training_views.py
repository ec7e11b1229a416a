"""The embedded set's training views (`bench.datasets._embedded_views`) and how a model's
fit takes them (`FitContext.with_views`): only train photographs, scored by the set's
formula, cached and byte-identical, recorded in the trained model's source. Built at 48 px
with 4 views per photograph into a temporary cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.api import MODELS, FitContext, IQASplit
from bench.datasets import _embedded_views as V
from bench.datasets import embedded as E
from bench.matrix import Spec
from bench.workbench import Workbench

SIZE, PER = 48, 4


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("views-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_CACHE", str(root))
        mp.setattr(V, "PER_REFERENCE", PER)
        E.load_views(SIZE)
    return root


@pytest.fixture
def env(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BENCH_CACHE", str(cache))
    monkeypatch.setattr(V, "PER_REFERENCE", PER)
    return cache


def test_views_come_from_train_photographs_only_and_are_scored(env: Path) -> None:
    ds = E.EmbeddedDataset(size=SIZE)
    train, test = ds.split(0)
    views = ds.training_views(train)
    assert set(views.refs) == set(train.refs) and not set(views.refs) & set(test.refs)
    assert len(views) == PER * len(set(train.refs)) and views.images.shape[1:] == (3, SIZE, SIZE)
    assert views.notes["views"].startswith(f"embedded training views v{V.VERSION}")
    clean = np.array(["_reference_" in n for n in views.names])
    mos = views.mos.numpy()
    assert (~clean).any() and (mos[~clean] < 100).all() and (mos[clean] == 100).all() and (mos >= 0).all()
    # a view is a new crop, not one of the set's own images
    own = {tuple(img.flatten()[:64].tolist()) for img in train.images}
    assert not any(tuple(img.flatten()[:64].tolist()) in own for img in views.images)
    # another split's train side gets its own photographs' views, the same ones for a shared photograph
    other, _ = ds.split(1)
    again = ds.training_views(other)
    assert set(again.refs) == set(other.refs)
    shared = min(set(train.refs) & set(other.refs))
    pick = lambda s: s.images[[i for i, r in enumerate(s.refs) if r == shared]]
    assert torch.equal(pick(views), pick(again))


def test_views_are_cached_and_rebuild_byte_identical(env: Path, tmp_path: Path, monkeypatch) -> None:
    path = env / f"embedded-views-v{V.VERSION}-{SIZE}.npz"
    first = path.read_bytes()
    monkeypatch.setattr(V, "build_views", lambda *a: pytest.fail("cached views were rebuilt"))
    E.load_views(SIZE)
    monkeypatch.undo()
    monkeypatch.setattr(V, "PER_REFERENCE", PER)
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    E.load_views(SIZE)
    assert (tmp_path / path.name).read_bytes() == first


def _ctx(n: int, views=None) -> FitContext:
    split = IQASplit(torch.zeros(n, 3, 8, 8), torch.arange(n, dtype=torch.float32), [f"i{i}" for i in range(n)],
                     ["r"] * n)
    return FitContext(train=split, targets=split.mos / 10, seed=0, device=torch.device("cpu"), views=views)


def test_with_views_adds_them_and_says_so() -> None:
    plain = _ctx(3)
    assert plain.with_views() is plain and plain.record["n_views"] == 0

    more = _ctx(2)
    more.train.notes = {"views": "two views"}
    ctx = _ctx(3, views=lambda: (more.train, more.targets + 5))
    wide = ctx.with_views()
    assert len(wide.train) == 5 and wide.train.names == ["i0", "i1", "i2", "i0", "i1"]
    assert wide.targets.tolist() == pytest.approx([0, 0.1, 0.2, 5, 5.1])
    assert wide.record is ctx.record and ctx.record["n_views"] == 2 and ctx.record["views"] == "two views"
    assert wide.views is None  # added once


def test_a_model_trained_on_the_embedded_set_records_its_views(env: Path) -> None:
    cls = MODELS.get("wadiqam_nr")
    spec = Spec("model", "wadiqam_nr", {**cls.defaults, "epochs": 1}, cls.info.version)
    ds_cls = E.EmbeddedDataset
    ds = Spec("dataset", "embedded", {**ds_cls.defaults, "size": SIZE}, ds_cls.info.version)
    bench = Workbench(seed=0, log=lambda m: None)
    _, source = bench.base_model(spec, ds)
    train = bench.train_split(ds)
    assert source["n_train"] == len(train) and source["epochs"] == 1
    assert source["n_views"] == PER * len(set(train.refs)) and source["views"].startswith("embedded training views")
