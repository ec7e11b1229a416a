"""`bench train` trains a learned model on a dataset's train split and keeps the checkpoint
with its training record under BENCH_CACHE/models; `bench score` then uses it, as a model
"trained here". The CLI takes no component parameters, so the test shrinks the defaults
(CNNIQA: 2 epochs; embedded: 48 px, 2 of its 18 reference photos in the train split)."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_interrupts import fresh_cache

from bench.cli import main
from bench.plugins import load_plugins


def _shrink(monkeypatch: pytest.MonkeyPatch, cls: type, **changes: object) -> None:
    """Other defaults for a component, for the duration of a test: its declaration
    (`Params`, what parameter checks merge over) and the plain `defaults` read from it."""
    declared = getattr(cls, "Params", None)
    if declared is not None and hasattr(declared, "with_defaults"):
        monkeypatch.setattr(cls, "Params", declared.with_defaults(**changes))
    monkeypatch.setattr(cls, "defaults", type(cls.defaults)({**cls.defaults, **changes}))


@pytest.fixture
def small_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache with the embedded data only, and defaults small enough to train in seconds."""
    load_plugins()
    from bench.api import DATASETS, MODELS

    _shrink(monkeypatch, MODELS.get("cnniqa"), epochs=2)
    _shrink(monkeypatch, DATASETS.get("embedded"), size=48, test_fraction=0.9)
    cache = fresh_cache(tmp_path / "cache")
    monkeypatch.setenv("BENCH_CACHE", str(cache))
    return cache


def _photo(path: Path) -> Path:
    import skimage.data

    Image.fromarray(skimage.data.chelsea()).resize((64, 48), Image.Resampling.LANCZOS).save(path)
    return path


def test_train_writes_a_checkpoint_with_its_record_and_score_uses_it(small_defaults: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from bench.api import DATASETS, MODELS, create_dataset
    from bench.images import load_image
    from bench.matrix import Spec
    from bench.measures import correlations
    from bench.weights import file_sha256, load_into
    from bench.workbench import Workbench

    photo = _photo(tmp_path / "cat.png")
    # before training there is nothing to score with, and the message says how to get it
    assert main(["score", "--model", "cnniqa", str(photo)]) == 1
    cap = capsys.readouterr()
    assert cap.out == "" and "has no weights here" in cap.err
    assert "python -m bench train --model cnniqa --dataset embedded" in cap.err

    assert main(["train", "--model", "cnniqa", "--dataset", "embedded"]) == 0
    cap = capsys.readouterr()
    assert "model 'cnniqa': no published weights here; training it on the dataset's train split" in cap.err
    printed = ast.literal_eval(cap.out.strip())  # the source, less its params
    (pt,) = (small_defaults / "models").glob("cnniqa-*.pt")
    assert pt.with_suffix(".json").is_file()
    record = json.loads(pt.with_suffix(".json").read_text())

    train, test = create_dataset("embedded", size=48, test_fraction=0.9).split(0)
    assert record["dataset"] == "embedded" and record["seed"] == 0 and record["split"] == "train"
    assert record["dataset_params"] == {"size": 48, "test_fraction": 0.9}
    assert record["n_train"] == len(train) and 100 < len(train) < 200
    assert record["epochs"] == 2 and record["params"]["epochs"] == 2
    assert record["mos_name"] == "pseudo-MOS" and record["final_train_l1"] > 0
    # the test SROCC is the checkpoint's, on the test split, computed again here
    model = MODELS.create("cnniqa", epochs=2)
    load_into(model, pt, "cnniqa")
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(test.images[i:i + 16]) for i in range(0, len(test), 16)]).numpy()
    srocc, plcc = correlations(pred, test.mos.numpy(), False, False)
    assert math.isfinite(record["test_srocc"]) and -1 <= record["test_srocc"] <= 1
    assert record["test_srocc"] == pytest.approx(srocc, abs=1e-6)
    assert record["test_plcc"] == pytest.approx(plcc, abs=1e-6)
    assert printed["source"] == "trained here" and printed["path"] == str(pt)
    assert printed["sha256"] == file_sha256(pt) and printed["test_srocc"] == record["test_srocc"]

    # `bench score` finds it (trained here, on embedded at these parameters) and scores with it
    assert main(["score", "--model", "cnniqa", str(photo)]) == 0
    cap = capsys.readouterr()
    path, score = cap.out.strip().rsplit(",", 1)
    assert path == str(photo) and cap.err == ""
    x, _ = load_image(photo)
    with torch.no_grad():
        expected = float(model(x.unsqueeze(0)).reshape(-1)[0])
    assert float(score) == pytest.approx(expected, rel=1e-5)
    assert np.isfinite(float(score))
    spec = Spec("model", "cnniqa", dict(MODELS.get("cnniqa").defaults), MODELS.get("cnniqa").info.version)
    ds = Spec("dataset", "embedded", {"size": 48, "n_images": None, "test_fraction": 0.9},
              DATASETS.get("embedded").info.version)
    _, source = Workbench(seed=0, allow_train=False).base_model(spec, ds)
    assert source["source"] == "trained here" and source["path"] == str(pt) and source["test_srocc"] == record["test_srocc"]

    # a second `bench train` finds the checkpoint and does not train again
    mtime = pt.stat().st_mtime_ns
    assert main(["train", "--model", "cnniqa", "--dataset", "embedded"]) == 0
    assert "training it" not in capsys.readouterr().err and pt.stat().st_mtime_ns == mtime


def test_a_matrix_run_records_the_whole_test_splits_srocc(small_defaults: Path) -> None:
    """A model trained inside a run whose dataset keeps only `n_images` test images records
    the same test SROCC as `bench train`, on every test image: its checkpoint's key has no
    `n_images`, so the figure must not depend on which run trained it (it did: 32 images)."""
    from bench.api import DATASETS, MODELS, create_dataset
    from bench.matrix import Spec
    from bench.measures import correlations
    from bench.workbench import Workbench, score_batched

    spec = Spec("model", "cnniqa", dict(MODELS.get("cnniqa").defaults), MODELS.get("cnniqa").info.version)
    ds = Spec("dataset", "embedded", {"size": 48, "n_images": 8, "test_fraction": 0.9},
              DATASETS.get("embedded").info.version)
    bench = Workbench(seed=0, log=lambda _: None)
    model, record = bench.base_model(spec, ds)
    assert len(bench.split(ds)[1]) == 8
    test = create_dataset("embedded", size=48, test_fraction=0.9).split(0)[1]
    assert record["n_test"] == len(test) > 100
    srocc, _ = correlations(score_batched(model, test.images, 16, torch.device("cpu")).numpy(), test.mos.numpy(),
                            False, False)
    assert record["test_srocc"] == pytest.approx(srocc, abs=1e-6)
