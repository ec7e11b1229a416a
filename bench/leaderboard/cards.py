"""What the component pages say about where things came from, read from the records alone.

A model's card: its declared metadata (description, reference, direction, score range,
kind), the code it came from, and per dataset where its weights came from (published,
trained here with the training record's summary, or a local file; path and sha256).
A defense's origin. Per dataset, what loading did to each split (files skipped and
converted). Plain data: the templates escape every string; nothing here names a
component, and nothing imports torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from bench.leaderboard.safe import external_url
from bench.registry import origin_label
from bench.store import data_notes

# From a trained-here record: what it was trained on and how well it scored on the test split.
TRAINING_KEYS = (("dataset", "trained on"), ("seed", "seed"), ("n_train", "train images"),
                 ("n_views", "training views"), ("views", "views drawn"), ("test_srocc", "test SROCC"),
                 ("test_plcc", "test PLCC"), ("mos_name", "against"))


def origins(records: Iterable[dict[str, Any]], kind: str) -> list[str]:
    """The distinct origins of the `kind` component in these records (one, unless runs
    mixed code from different places), as `origin_label` words them."""
    out = {origin_label(o) for r in records if isinstance(o := r.get("meta", {}).get(kind, {}).get("origin"), dict)}
    return sorted(out)


def model_card(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The model's metadata card and, per dataset it ran on, each distinct weights source."""
    # the fullest (a cell whose model failed to load has its name and origin only)
    meta = max((m for r in records if isinstance(m := r.get("meta", {}).get("model"), dict)), key=len, default={})
    lower = meta.get("lower_better")
    rng = meta.get("score_range")
    return {
        "description": str(meta.get("description") or ""),
        "reference": str(meta.get("reference") or ""),
        "reference_url": external_url(str(meta.get("reference") or "")),
        "direction": "" if lower is None else ("lower is better" if lower else "higher is better"),
        "score_range": f"[{_num(rng[0])}, {_num(rng[1])}]" if isinstance(rng, (list, tuple)) and len(rng) == 2 else "",
        "kind": str(meta.get("kind") or ""),
        "version": str(meta.get("version") or ""),
        "origins": origins(records, "model"),
        "weights": weights_rows(records),
    }


def weights_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, distinct weights): source, path, sha256 and, for weights
    trained here, the training summary; with the number of cells that used them."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        w = r.get("weights") or {}
        if not isinstance(w, dict) or not w:
            continue
        trained = w.get("source") == "trained here"
        training = [(label, _num(w[k]) if k.startswith("test_") else str(w[k]))
                    for k, label in TRAINING_KEYS if trained and k in w]
        row = {"dataset": str(r.get("cell", {}).get("dataset", "")), "source": str(w.get("source") or ""),
               "path": str(w.get("path") or ""), "sha256": str(w.get("sha256") or ""), "training": training}
        key = (row["dataset"], json.dumps(row, sort_keys=True))
        rows.setdefault(key, {**row, "n_cells": 0})["n_cells"] += 1
    return [rows[k] for k in sorted(rows)]


def data_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset and split, each distinct account of loading: layout, check, files
    skipped (with their names) and converted, and how many cells it is behind."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in records:
        dataset = str(r.get("cell", {}).get("dataset", ""))
        for split, notes in data_notes(r).items():
            if not notes:
                continue
            converted = notes.get("converted") if isinstance(notes.get("converted"), dict) else {}
            row = {"dataset": dataset, "split": split, "layout": str(notes.get("dataset_layout", "")),
                   "verify": str(notes.get("verify", "")), "size": str(notes.get("size", "")),
                   "skipped": _count(notes.get("skipped")),
                   "skipped_files": [str(f) for f in notes.get("skipped_files") or []],
                   "converted": _count(sum(v for v in converted.values() if isinstance(v, (int, float)))
                                       if "converted" in notes else None),
                   "conversions": sorted((str(k), _num(v)) for k, v in converted.items())}
            key = (dataset, split, json.dumps(row, sort_keys=True))
            rows.setdefault(key, {**row, "n_cells": 0})["n_cells"] += 1
    return [rows[k] for k in sorted(rows)]


def attack_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per attack in the records: its declared reference, threat model and description, each
    parameter set it ran with, and how many cells it is behind (the site names no component:
    everything here is what the records hold)."""
    rows: dict[str, dict[str, Any]] = {}
    for r in records:
        name, meta = str(r.get("cell", {}).get("attack", "")), r.get("meta", {}).get("attack") or {}
        row = rows.setdefault(name, {"name": name, "reference": str(meta.get("reference") or ""),
                                     "reference_url": external_url(str(meta.get("reference") or "")),
                                     "norm": str(meta.get("norm") or "") + (f", eps in {meta['budget_unit']}" if
                                                                             meta.get("budget_unit") else ""),
                                     "description": str(meta.get("description") or ""),
                                     "access": {True: "white-box", False: "black-box"}.get(meta.get("needs_gradients"), ""),
                                     "params": set(), "n_cells": 0})
        params = ((r.get("config") or {}).get("attack") or {}).get("params")
        if isinstance(params, dict):
            row["params"].add(", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in sorted(params.items())))
        row["n_cells"] += 1
    return [{**row, "params": sorted(row["params"])} for _, row in sorted(rows.items())]


def _count(v: Any) -> str:
    """A count as shown: the number, or an en dash where the dataset did not say."""
    return str(int(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else "\u2013"


def _num(v: Any) -> str:
    """3 decimals for a fraction (a correlation), integers as integers."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return str(int(v)) if float(v).is_integer() else f"{v:.3f}"
