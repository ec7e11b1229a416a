"""The layer profiles in the results store, and their tables (torch-free, like bench/store.py:
the exporter and the site read them through this module).

Beside `cells/`, one folder per (model, defense, dataset, seed) group,
`<results>/profiles/<group>/`, holds

- `group.json`: the layers in the order the network runs them (name in the module tree,
  kind, the input shape each saw, its operator norm and how it was found), and each clean
  test image's input-gradient norms (L1, L2) with the clean scores' range;
- `<cell key>.json`, one per cell: for each layer, each image's amplification under the
  cell's adversarial perturbation and under a random one of the same L2 norm.

One file per cell rather than one per group: parts of a group may run on different
workers at once, and a file each needs no lock. Each file is written like a record
(temporary file, fsync, rename, a checksum inside): a killed run leaves each whole or
absent; a cell's file is written before its record, the group's before any of its cells.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.store import atomic_write, digest

DIR = "profiles"
GROUP_FILE = "group"
LEVEL = 0.95  # the share of images inside each interval
PERTURBATIONS = ("adversarial", "random")
INPUT_KIND, SCORE_KIND = "input", "score"  # the model's input (after the defense) and its score, around its layers
GROUP_KEYS = ["model", "defense", "dataset", "seed"]


def write(root: str | Path, group: str, name: str, payload: dict[str, Any]) -> Path:
    """Write one profile file atomically, with its checksum; returns its path."""
    if not (group.isalnum() and name.replace("-", "").isalnum()):
        raise ValueError(f"invalid profile file {group!r}/{name!r}")
    body = dict(payload)
    body["checksum"] = digest(payload)
    path = Path(root) / DIR / group / f"{name}.json"
    atomic_write(path, json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True).encode())
    return path


def read(root: str | Path) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each group's file with its cells' files, in a fixed order; a corrupt file (its
    checksum does not match) is reported and left out."""
    base = Path(root) / DIR
    if not base.is_dir():
        return
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        group = _read(folder / f"{GROUP_FILE}.json")
        if group is None:
            continue
        cells = [c for p in sorted(folder.glob("*.json")) if p.stem != GROUP_FILE and (c := _read(p)) is not None]
        yield group, cells


def _read(path: Path) -> dict[str, Any] | None:
    try:
        body = json.loads(path.read_text())
        stored = body.pop("checksum", None)
        if stored != digest(body):
            raise ValueError("checksum mismatch")
        return body
    except (OSError, ValueError, AttributeError) as e:
        warnings.warn(f"ignoring corrupt profile file {path} ({e})", stacklevel=2)
        return None


def summary(values: Iterable[float]) -> tuple[float, float, float, int]:
    """(median, lower, upper, n): the median and the central LEVEL interval of the finite values."""
    a = np.asarray([v for v in values if v is not None], dtype=float)
    a = a[np.isfinite(a)]
    if not len(a):
        return math.nan, math.nan, math.nan, 0
    tail = (1 - LEVEL) / 2 * 100
    med, lo, hi = np.percentile(a, [50, tail, 100 - tail])
    return float(med), float(lo), float(hi), len(a)


def _layer_values(root: str | Path, records: Iterable[dict[str, Any]] | None) -> Iterator[tuple]:
    """(group, cell, perturbation, layer, per-image values) for every profiled layer of every
    cell; given the store's records, only cells whose record is ok (a profile written by a
    try that then failed outlives that try's record)."""
    ok = None if records is None else {r["key"] for r in records if r.get("status") == "ok"}
    for group, cells in read(root):
        layers = {lay["name"]: lay for lay in group["layers"]}
        for cell in cells:
            if ok is None or cell["key"] in ok:
                for kind in PERTURBATIONS:
                    for name, values in zip(cell["layers"], cell[kind], strict=True):
                        yield group, cell, kind, layers.get(name, {"name": name}), values


def _layer_row(layer: dict[str, Any], values: list[float]) -> dict[str, Any]:
    med, lo, hi, n = summary(values)
    return {"depth": layer.get("depth"), "layer": layer["name"], "kind": layer.get("kind", ""), "amplification": med,
            "amplification_lo": lo, "amplification_hi": hi, "n": n, "opnorm": layer.get("opnorm", math.nan),
            "opnorm_method": layer.get("opnorm_method", "")}


def _group_cols(group: dict[str, Any]) -> dict[str, Any]:
    return {k: group["cell"][k] for k in ("model", "defense", "dataset")} | {"seed": group["seed"]}


def profile_frame(root: str | Path, records: Iterable[dict[str, Any]] | None = None):  # -> pandas.DataFrame
    """One row per (cell, layer, perturbation): median and LEVEL interval over the cell's
    images of the amplification (n: images with a finite value), with the layer's operator norm."""
    import pandas as pd

    rows = [{**_group_cols(group), "attack": cell["attack"], "eps": cell["eps"], "key": cell["key"],
             "perturbation": kind, **_layer_row(layer, values)}
            for group, cell, kind, layer, values in _layer_values(root, records)]
    cols = [*GROUP_KEYS, "attack", "eps", "key", "perturbation", *_layer_row({"name": ""}, [])]
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values([*GROUP_KEYS, "attack", "eps", "perturbation", "depth"], kind="stable").reset_index(drop=True)


def pooled_frame(root: str | Path, records: Iterable[dict[str, Any]] | None = None):  # -> pandas.DataFrame
    """One row per (model, defense, dataset, perturbation, layer): the median and LEVEL
    interval over every image of every cell of the group, attacks, budgets and seeds
    pooled (amplification is relative to the input's change, so budgets are comparable)."""
    import pandas as pd

    pools: dict[tuple, tuple[dict[str, Any], list[float]]] = {}
    for group, _, kind, layer, values in _layer_values(root, records):
        g = _group_cols(group)
        pools.setdefault((g["model"], g["defense"], g["dataset"], kind, layer["name"]), (layer, []))[1].extend(values)
    rows = [{"model": m, "defense": d, "dataset": ds, "perturbation": kind, **_layer_row(layer, values)}
            for (m, d, ds, kind, _), (layer, values) in pools.items()]
    cols = ["model", "defense", "dataset", "perturbation", *_layer_row({"name": ""}, [])]
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values(["model", "dataset", "defense", "perturbation", "depth"], kind="stable").reset_index(drop=True)


def gradient_frame(root: str | Path):  # -> pandas.DataFrame
    """One row per group: median and LEVEL interval over the clean test images of the L1
    and L2 norms of d(score)/d(input), and the clean scores' range, by which the L1 norm
    times eps becomes a first-order bound on the gain the cells measure."""
    import pandas as pd

    rows = []
    for group, _ in read(root):
        grads = group["gradients"]
        row = {**_group_cols(group), "n_images": len(grads["l1"])}
        for norm in ("l1", "l2"):
            row[f"grad_{norm}"], row[f"grad_{norm}_lo"], row[f"grad_{norm}_hi"], _ = summary(grads[norm])
        row["score_min"], row["score_max"] = group["clean_range"]
        span = row["score_max"] - row["score_min"]
        l1 = np.asarray([v if v is not None else math.nan for v in grads["l1"]], dtype=float)
        # per image |s(x + d) - s(x)| <= eps ||grad||_1 to first order; on the cells' scale, / span
        row["grad_l1_scaled_mean"] = float(np.nanmean(l1) / span) if span > 0 and len(l1) else math.nan
        row["profile_error"] = group.get("error", "")  # why the group has no layers, where it has none
        rows.append(row)
    cols = [*GROUP_KEYS, "n_images", "grad_l1", "grad_l1_lo", "grad_l1_hi", "grad_l2", "grad_l2_lo", "grad_l2_hi",
            "score_min", "score_max", "grad_l1_scaled_mean", "profile_error"]
    return pd.DataFrame(rows, columns=cols).sort_values(GROUP_KEYS, kind="stable").reset_index(drop=True)
