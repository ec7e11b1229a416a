"""Clean SROCC of the models trained here, from a cache's checkpoints: every
`models/<name>-<key>.pt` beside its record, scored on the WHOLE test split of the split its
record names (`split_seed`, else `seed`), pooled and within each test scene (reference
photograph), next to the figure its record holds.

Why: until commit f58a221 a model trained inside a matrix run recorded its test SROCC on
the run's `n_images` test images (32 in the shipped matrices), `bench train` on all of
them; this puts every cached checkpoint on the whole split, and the per-scene figures show
where a model fails (a pooled SROCC mixes ranking within a scene with offsets between
scenes). Signs follow both score directions (`bench.measures.correlations`).

    BENCH_CACHE=DIR python benchmarks/trained_srocc.py [--model NAME]...

Prints one line per checkpoint, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from bench.api import DATASETS, MODELS, cache_dir
from bench.measures import agreement_sign, correlations
from bench.plugins import load_plugins
from bench.weights import load_into
from bench.workbench import score_batched


def figures(pt: Path) -> dict:
    """The checkpoint's whole-test-split SROCC, pooled and per scene, and its record's."""
    record = json.loads(pt.with_suffix(".json").read_text())
    name = pt.name.rsplit("-", 1)[0]
    model = MODELS.create(name, **record.get("params", {}))
    load_into(model, pt, name)
    model.eval()
    ds_cls = DATASETS.get(record["dataset"])
    split = record.get("split_seed", record["seed"])
    test = DATASETS.create(record["dataset"], **record["dataset_params"]).split(split)[1]
    with torch.no_grad():
        pred = score_batched(model, test.images, 32, torch.device("cpu")).numpy()
    mos, refs = test.mos.numpy(), np.asarray(test.refs)
    sign = agreement_sign(model.info.lower_better, ds_cls.info.mos_lower_better)
    scenes = {str(r): round(sign * float(spearmanr(pred[refs == r], mos[refs == r]).statistic), 3)
              for r in sorted(set(refs))}
    srocc, plcc = correlations(pred, mos, model.info.lower_better, ds_cls.info.mos_lower_better)
    return {"checkpoint": pt.name, "model": name, "seed": record["seed"], "split_seed": split,
            "n_test": len(test), "srocc": round(srocc, 3), "plcc": round(plcc, 3), "per_scene": scenes,
            "recorded_srocc": round(record["test_srocc"], 3), "recorded_n_test": record.get("n_test")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", help="only this model's checkpoints (repeatable)")
    args = ap.parse_args()
    load_plugins()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    found = sorted(p for p in (cache_dir() / "models").glob("*.pt") if p.with_suffix(".json").is_file())
    found = [p for p in found if not args.model or p.name.rsplit("-", 1)[0] in args.model]
    if not found:
        sys.exit(f"no trained checkpoints under {cache_dir() / 'models'}: set BENCH_CACHE to a run's cache")
    rows = []
    for pt in found:
        row = figures(pt)
        rows.append(row)
        scenes = " ".join(f"{k} {v:.2f}" for k, v in row["per_scene"].items())
        print(f"{row['model']} seed {row['seed']} split {row['split_seed']}: SROCC {row['srocc']:.3f} on "
              f"{row['n_test']} test images (recorded {row['recorded_srocc']:.3f}); per scene: {scenes}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
