"""Per-image material for a defense's page: the example images and the score shifts.

Example files are named in records (`record["example"]["files"]`, relative to the
results root). A path is used only if it stays inside the results root and is a file;
the copy is named by the cell's key (hex) and the role, never by anything from a name.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.leaderboard.aggregate import linf_only
from bench.measures import per_image

ROLES = ("clean", "attacked", "perturbation")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def _inside(root: Path, rel: Any) -> Path | None:
    if not isinstance(rel, str) or not rel:
        return None
    p = (root / rel).resolve()
    return p if p.is_relative_to(root.resolve()) and p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES else None


def copy_example(rows: pd.DataFrame, by_key: dict[str, dict[str, Any]], results: Path, out: Path) -> dict[str, Any] | None:
    """Copy the example of the defense's most successful attack (largest abs gain among
    ok cells that saved one) into out/assets/<key>/; None when no cell has one."""
    ok = rows[(rows["status"] == "ok")].sort_values(["abs_gain", "key"], ascending=[False, True], na_position="last")
    for r in ok.itertuples(index=False):
        ex = by_key[r.key].get("example")
        if not isinstance(ex, dict) or not str(r.key).isalnum():
            continue
        files = ex.get("files") or {}
        src = {role: _inside(results, files.get(role)) for role in ROLES}
        if not all(src.values()):
            continue
        shown = {}
        for role, p in src.items():
            rel = f"assets/{r.key}/{role}{p.suffix.lower()}"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, out / rel)
            shown[role] = rel
        return {"name": str(ex.get("name", "")), "clean_score": ex.get("clean_score"),
                "attacked_score": ex.get("attacked_score"), "files": shown, "model": r.model, "dataset": r.dataset,
                "attack": r.attack, "eps": r.eps, "abs_gain": r.abs_gain, "key": r.key,
                "unit": " px" if getattr(r, "budget_unit", "") == "px" else "/255"}
    return None


def shifts(rows: pd.DataFrame, by_key: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Each image's oriented, scaled score shift at the largest eps of each (model, dataset),
    L-inf cells only (a flow attack's eps is in pixels: no largest eps across both)."""
    rows = linf_only(rows)
    ok = rows[(rows["status"] == "ok") & rows["eps"].notna()]
    cols: dict[str, list[Any]] = {"model": [], "dataset": [], "attack": [], "shift": []}
    if len(ok):
        top = ok.groupby(["model", "dataset"])["eps"].transform("max")
        for r in ok[ok["eps"] == top].itertuples(index=False):
            p = by_key[r.key].get("per_image") or {}
            clean, attacked = np.asarray(p.get("clean", []), float), np.asarray(p.get("attacked", []), float)
            if len(clean) == 0 or len(clean) != len(attacked):
                continue
            lower = r.model_lower_better is True
            s = per_image(clean, attacked, lower)["abs_gain"].tolist()
            for k, v in (("model", r.model), ("dataset", r.dataset), ("attack", r.attack)):
                cols[k].extend([v] * len(s))
            cols["shift"].extend(s)
    return pd.DataFrame(cols)
