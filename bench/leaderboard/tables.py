"""Turn the flattened records into what the page shows: summary, cell table, provenance.

Everything here is plain data (no HTML): the template does the escaping, so no string
from a record ever reaches the page unescaped. Every iteration is sorted so that the
same records always give the same page.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = "text"  # "text", "num" (shown as is) or "dec3" (3 decimals)
    mos: bool = False  # a correlation with the dataset's MOS: the header names it


# The big per-cell table; the page builds it from compact JSON (see `cell_payload`).
CELL_COLUMNS = [
    Column("model", "model"), Column("dataset", "dataset"), Column("defense", "defense"),
    Column("defense_kind", "defense kind"), Column("attack", "attack"),
    Column("eps", "eps (/255)", "num"), Column("status", "status"), Column("n_images", "images", "num"),
    Column("srocc_clean", "SROCC clean", "dec3", mos=True),
    Column("srocc_attacked", "SROCC attacked", "dec3", mos=True),
    Column("plcc_clean", "PLCC clean", "dec3", mos=True),
    Column("abs_gain", "abs gain", "dec3"), Column("rel_gain", "rel gain", "dec3"),
    Column("psnr", "PSNR", "dec3"), Column("ssim", "SSIM", "dec3"),
    Column("flags", "flags"), Column("attack_view", "attack view"), Column("message", "message"),
]

SUMMARY_COLUMNS = [
    Column("rank", "#", "num"), Column("model", "model"), Column("dataset", "dataset"),
    Column("defense", "defense"), Column("defense_kind", "defense kind"),
    Column("cells", "ok / cells"), Column("flagged", "flagged cells", "num"),
    Column("srocc_clean", "SROCC clean", "dec3", mos=True),
    Column("plcc_clean", "PLCC clean", "dec3", mos=True),
    Column("worst_gain", "worst abs gain", "dec3"), Column("worst_rel_gain", "rel gain (worst)", "dec3"),
    Column("worst_srocc", "SROCC attacked (worst)", "dec3", mos=True), Column("worst_at", "worst at"),
]

FILTERS = [("model", "model"), ("dataset", "dataset"), ("defense", "defense"),
           ("attack", "attack"), ("eps", "eps (/255)")]

PROVENANCE_KEYS = [
    ("bench", "bench"), ("torch", "torch"), ("pyiqa", "pyiqa"), ("torchattacks", "torchattacks"),
    ("python", "python"), ("git_commit", "git commit"), ("seed", "seed"), ("matrix", "matrix"),
    ("matrix_sha256", "matrix sha256"), ("suite", "suite"), ("hardware", "hardware"),
]

_TEXT_KEYS = ("model", "dataset", "defense", "defense_kind", "attack", "status", "flags",
              "attack_view", "message", "mos_name")


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """Give even an empty or partial frame every column the page reads, with sane types."""
    df = df.copy()
    for k in _TEXT_KEYS:
        df[k] = df[k].map(text) if k in df.columns else ""
    for c in CELL_COLUMNS:
        if c.kind != "text":
            df[c.key] = pd.to_numeric(df[c.key], errors="coerce") if c.key in df.columns else math.nan
    return df


def text(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def number(v: Any, kind: str = "num") -> int | float | None:
    """The value the page shows and sorts by: None where missing or not finite."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v):
        return None
    if kind == "dec3":
        return round(v, 3)
    return int(v) if v.is_integer() else v


def cell_payload(df: pd.DataFrame) -> dict[str, Any]:
    """Rows as arrays, strings interned once: keeps index.html small at 10,000 cells."""
    strings: dict[str, int] = {}
    columns = []
    for c in CELL_COLUMNS:
        if c.kind == "text":
            values = df[c.key].str.replace(";", "; ") if c.key == "flags" else df[c.key]  # lets flags wrap
            columns.append([strings.setdefault(s, len(strings)) for s in values])
        else:
            columns.append([number(v, c.kind) for v in df[c.key]])
    return {
        "cols": [{"key": c.key, "kind": c.kind} for c in CELL_COLUMNS],
        "strings": list(strings),
        "rows": [list(r) for r in zip(*columns)],
    }


def summary(df: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per (model, dataset, defense); worst case = max abs_gain over attacks and eps."""
    rows = []
    for (model, dataset, defense), g in df.groupby(["model", "dataset", "defense"], sort=True):
        ok = g[g["status"] == "ok"]
        row = {
            "model": model, "dataset": dataset, "defense": defense,
            "defense_kind": g["defense_kind"].iloc[0], "cells": f"{len(ok)} / {len(g)}",
            "mark": _mark(g, len(ok)), "flagged": int((g["flags"] != "").sum()),
            "srocc_clean": number(ok["srocc_clean"].mean(), "dec3"),
            "plcc_clean": number(ok["plcc_clean"].mean(), "dec3"),
            "worst_gain": None, "worst_rel_gain": None, "worst_srocc": None, "worst_at": "",
        }
        gains = ok["abs_gain"]
        if gains.notna().any():
            w = ok.loc[gains.idxmax()]  # first of ties in the frame's sorted order
            row.update(worst_gain=number(w["abs_gain"], "dec3"), worst_rel_gain=number(w["rel_gain"], "dec3"),
                       worst_srocc=number(w["srocc_attacked"], "dec3"),
                       worst_at=f"{w['attack']} @ {number(w['eps'])}")
        rows.append(row)
    rows.sort(key=lambda r: (r["worst_gain"] is None, r["worst_gain"] or 0.0))  # stable: name order breaks ties
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


def _mark(group: pd.DataFrame, n_ok: int) -> str:
    """Row class: a group with no ok cell is marked like its cells; one with flags is flagged."""
    if n_ok == 0:
        return "st-skipped" if (group["status"] == "skipped").all() else "st-error"
    return "flagged" if (group["flags"] != "").any() else ""


def filters(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for key, label in FILTERS:
        if key == "eps":
            values = [str(number(v)) for v in sorted(df["eps"].dropna().unique())]
        else:
            values = sorted(df[key].unique())
        out.append({"key": key, "label": label, "options": values})
    return out


def mos_names(df: pd.DataFrame) -> tuple[str, list[tuple[str, str]]]:
    """The MOS label for correlation headers, and which dataset is scored against what."""
    pairs = sorted(set(zip(df["dataset"], df["mos_name"].replace("", "MOS"))))
    label = " / ".join(sorted({m for _, m in pairs})) or "MOS"
    return label, pairs


def provenance(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Every distinct value (with its cell count), so mixed runs are visible at a glance."""
    counts: dict[str, Counter[str]] = {k: Counter() for k, _ in PROVENANCE_KEYS}
    dates = []
    for r in records:
        prov = r.get("provenance", {})
        for k, _ in PROVENANCE_KEYS:
            v = prov.get(k)
            if isinstance(v, dict):
                v = ", ".join(f"{hk}={text(hv)}" for hk, hv in sorted(v.items()))
            counts[k][text(v) or "unknown"] += 1
        if prov.get("date"):
            dates.append(str(prov["date"]))
    items = [(label, sorted(counts[k].items())) for k, label in PROVENANCE_KEYS if counts[k]]
    return {"items": items, "first": min(dates, default=""), "last": max(dates, default="")}
