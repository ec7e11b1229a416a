"""Every number is oriented by both score directions: the model's (PIQE counts distortion
upwards, CNNIQA quality) and the dataset's (LIVE and CSIQ store a DMOS, lower is better).
Known answers per direction pair, through the targets that training and fine-tuning see
and through a real run on a small CSIQ-layout root."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from scipy import stats

from bench.api import create_dataset
from bench.cli import main
from bench.meta import DatasetInfo, ModelInfo
from bench.store import ResultsStore
from bench.workbench import mos_matched_to_scores, mos_on_model_scale

MOS_UP = DatasetInfo(name="up", mos_range=(0.0, 10.0), mos_lower_better=False)
MOS_DOWN = DatasetInfo(name="down", mos_range=(0.0, 10.0), mos_lower_better=True)


def _model(lower_better: bool) -> ModelInfo:
    return ModelInfo(name="m", lower_better=lower_better, score_range=(0.0, 100.0), kind="learned",
                     differentiable=True)


@pytest.mark.parametrize("ds, model_lower, best_target", [
    (MOS_UP, False, 100.0),    # MOS 10 is the best image: a higher-better model's top score
    (MOS_UP, True, 0.0),       # ... a lower-better model's bottom score
    (MOS_DOWN, False, 0.0),    # DMOS 10 is the worst image: a higher-better model's bottom score
    (MOS_DOWN, True, 100.0),   # ... a lower-better model's top score
])
def test_training_targets_follow_both_directions(ds: DatasetInfo, model_lower: bool, best_target: float) -> None:
    targets = mos_on_model_scale(torch.tensor([0.0, 5.0, 10.0]), ds, _model(model_lower))
    assert targets.tolist() == pytest.approx([100.0 - best_target, 50.0, best_target])


@pytest.mark.parametrize("mos_lower", [False, True])
@pytest.mark.parametrize("model_lower", [False, True])
def test_finetune_targets_are_oriented_and_keep_the_models_scale(mos_lower: bool, model_lower: bool) -> None:
    """Even where the base model ranks the train split backwards, the targets rank it as the
    raters do (in the model's direction), with the base scores' mean and spread."""
    quality = torch.arange(8, dtype=torch.float32)
    mos = -quality if mos_lower else quality
    backwards = 50.0 + 3.0 * (quality if model_lower else -quality)  # the model gets it wrong
    targets = mos_matched_to_scores(mos, backwards, mos_lower, model_lower)
    in_model_direction = -quality if model_lower else quality
    assert stats.spearmanr(targets, in_model_direction).statistic == pytest.approx(1.0)
    assert float(targets.mean()) == pytest.approx(float(backwards.mean()), abs=1e-4)
    assert float(targets.std()) == pytest.approx(float(backwards.std()), rel=1e-4)


def test_constant_mos_cannot_be_mapped() -> None:
    with pytest.raises(ValueError, match="constant"):
        mos_matched_to_scores(torch.ones(4), torch.arange(4.0), False, False)


def _csiq_root(root: Path) -> None:
    """CSIQ's label-file layout: 5 photos blurred at 3 levels, the DMOS rising with the blur."""
    import skimage.data

    photos = ("astronaut", "chelsea", "coffee", "rocket", "camera")
    lines = []
    for r, name in enumerate(photos):
        img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((64, 64), Image.Resampling.LANCZOS)
        (root / "src_imgs").mkdir(parents=True, exist_ok=True)
        img.save(root / "src_imgs" / f"{1600 + r}.png")
        for level in (1, 2, 3):
            file = f"{1600 + r}.BLUR.{level}.png"
            (root / "dst_imgs").mkdir(exist_ok=True)
            img.filter(ImageFilter.GaussianBlur(1.5 * level)).save(root / "dst_imgs" / file)
            lines.append(f"{file} {0.2 * level + 0.01 * r:.3f}\n")
    (root / "csiq_label.txt").write_text("".join(lines))


def test_run_on_a_dmos_dataset_signs_correlations_by_both_directions(tmp_path: Path) -> None:
    """PIQE (lower is better) against CSIQ's DMOS (lower is better): agreeing with the
    raters is a positive raw correlation, so the record's SROCC is the raw one, sign kept."""
    assert create_dataset("csiq", root=str(tmp_path)).info.mos_lower_better
    _csiq_root(tmp_path / "csiq")
    matrix = tmp_path / "m.toml"
    matrix.write_text(f"""
name = "dmos"
seed = 0
suite = "dmos-v1"
batch_size = 8
[models]
piqe = {{}}
[defenses]
none = {{}}
[attacks]
fgsm = {{ eps = [2] }}
[datasets]
csiq = {{ root = {json.dumps(str(tmp_path / "csiq"))}, size = 48, test_fraction = 0.6 }}
""")
    code = main(["run", "--matrix", str(matrix), "--results", str(tmp_path / "r"), "--no-site", "--no-progress",
                 "--device", "cpu"])
    assert code == 0
    (rec,) = ResultsStore(tmp_path / "r").records()
    assert rec["status"] == "ok", rec["message"]
    img = rec["per_image"]
    raw = stats.spearmanr(img["clean"], img["mos"]).statistic
    assert abs(raw) > 0.3 and np.isfinite(raw)
    assert rec["metrics"]["srocc_clean"] == pytest.approx(raw)
