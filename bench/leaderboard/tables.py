"""Turn the flattened records into the tables the pages show, as plain data (no HTML).

The templates and site.js do the escaping, so no string from a record ever reaches a page
unescaped. Large tables travel as compact JSON (`payload`) built into rows by site.js;
every iteration is sorted, so the same records always give the same page."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

from bench import record
from bench.leaderboard import aggregate as agg
from bench.leaderboard.aggregate import ci
from bench.leaderboard.columns import CELL_COLUMNS, Column

FILTERS = [("model", "model"), ("dataset", "dataset"), ("defense", "defense"),
           ("attack", "attack"), ("eps", "eps"), ("budget_unit", "eps unit")]

# the records' provenance but the date (shown as a range) and the claim (the claim page's)
PROVENANCE_KEYS = [(k, k.replace("_", " ")) for k in record.PROVENANCE if k not in ("date", "claim")]


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """Give even an empty or partial frame (old records lack intervals) every text and number
    column of the records table (bench.record.COLUMNS; those only some cells have, where any has)."""
    df = df.copy()
    for k in record.of_kind("text"):
        df[k] = df[k].map(text) if k in df.columns else ""
    for k in record.of_kind("number"):
        if k in df.columns:
            df[k] = pd.to_numeric(df[k], errors="coerce")
        elif k not in record.OTHER_MEASURES:
            df[k] = math.nan
    return df


def text(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def number(v: Any, kind: str = "num") -> int | float | None:
    """The value a page shows and sorts by: None where missing or not finite."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v):
        return None
    if kind in ("dec3", "est"):
        return round(v, 3)
    return int(v) if v.is_integer() else v


def estimate(v: Any, lo: Any, hi: Any, flagged: bool = False) -> list[Any] | None:
    """[value, lo, hi] (a trailing 1 when flagged); None without a value."""
    v = number(v, "est")
    if v is None:
        return None
    out: list[Any] = [v, number(lo, "est"), number(hi, "est")]
    return out + [1] if flagged else out


def estimates(df: pd.DataFrame, key: str, flagged: str | None = None) -> list[list[Any] | None]:
    """`estimate` for every row of a frame at once (rounding vectorized: 10,000 rows)."""
    vals = df[ci(key)].to_numpy(dtype=float).round(3).tolist()
    flags = df[flagged].to_numpy(dtype=bool).tolist() if flagged else [False] * len(vals)
    out: list[list[Any] | None] = []
    for (v, lo, hi), f in zip(vals, flags):
        if not math.isfinite(v):
            out.append(None)
            continue
        e = [v, lo if math.isfinite(lo) else None, hi if math.isfinite(hi) else None]
        out.append(e + [1] if f else e)
    return out


def payload(columns: list[Column], rows: Iterable[dict[str, Any]], hrefs: dict[str, dict[str, str]],
            row_class: Callable[[dict[str, Any]], str] = lambda r: "") -> dict[str, Any]:
    """Rows as arrays, strings interned once: keeps a page small at 10,000 rows."""
    strings: dict[str, int] = {}
    out_rows, classes = [], []
    for r in rows:
        vals = []
        for c in columns:
            v = r.get(c.key)
            if c.kind == "text":
                v = text(v).replace(";", "; ") if c.key == "flags" else text(v)  # lets flags wrap
                vals.append(strings.setdefault(v, len(strings)))
            elif c.kind == "est":
                vals.append(v)
            else:
                vals.append(number(v, c.kind))
        out_rows.append(vals)
        classes.append(row_class(r))
    return {"cols": [{"key": c.key, "kind": c.kind, "link": c.link} for c in columns], "strings": list(strings),
            "rows": out_rows, "classes": classes if any(classes) else [], "hrefs": hrefs}


def cell_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    return df[[c.key for c in CELL_COLUMNS]].to_dict("records")


def cell_class(r: dict[str, Any]) -> str:
    st = "st-" + r["status"] if r["status"] in ("error", "skipped") else ""
    return " ".join(x for x in (st, "flagged" if r["flags"] else "") if x)


def leaderboard_columns(eps_values: list[float], reference: str | None = None) -> list[Column]:
    ref = reference or "the reference"  # the undefended reference, from the results (roles.py)
    cols = [
        Column("rank", "#", "num", title="within model and dataset; flagged rows are not ranked"),
        Column("model", "model", link="model"), Column("weights", "weights", title="where the model's parameters "
               "came from: published (pyiqa's or a release's file), trained here, or a local file"),
        Column("dataset", "dataset"), Column("defense", "defense", link="defense"), Column("defense_kind", "kind"),
        Column("defense_origin", "from", title="the defense's code: a built-in module, or the package and version "
                                               "(entry point) or file (--plugin) it came from"),
        Column("attack", "attack"),
        Column("worst_abs_gain", "worst abs gain", "est", title="largest abs gain over attacks and eps; 95% CI"),
        Column("worst_at", "at"),
        Column("worst_robustness_score", "worst MSU R", "est", title="smallest MSU robustness score; 95% CI"),
        Column("srocc_clean", "SROCC clean", "est", mos=True),
        Column("srocc_delta", f"\u0394 SROCC vs {ref}", "dec3",
               title=f"clean SROCC minus {ref}'s; < -{agg.CLEAN_LOSS} is marked"),
        Column("plcc_clean", "PLCC clean", "dec3", mos=True),
    ]
    for m, label in (("abs_gain", "gain"), ("mos_gain", "MOS gain"), ("robustness_score", "MSU R")):
        cols += [Column(f"{m}@{number(e)}", f"{label} @{number(e)}", "est", eps=e) for e in eps_values]
    return cols + [Column("flags", "reliability flags"), Column("n_cells", "ok cells", "num")]


def leaderboard(df: pd.DataFrame, scoped: pd.DataFrame | None = None, quality: pd.DataFrame | None = None,
                reference: str | None = None) -> tuple[list[Column], list[dict[str, Any]]]:
    """One row per (model, dataset, defense) and attack scope: the worst over all attacks
    (what the page shows by default) and each attack alone (the attack filter).

    Rows are ordered and ranked within (model, dataset, scope) by worst abs gain, most
    robust first; rows with any flagged cell come after the others, unranked."""
    scoped = agg.scopes(df) if scoped is None else scoped
    eps_values = sorted(scoped["eps"].dropna().unique()) if len(scoped) else []
    columns = leaderboard_columns(eps_values, reference)
    if scoped.empty:
        return columns, []
    # Plain dicts: a MultiIndex .loc per row costs a second at 10,000 cells.
    quality = agg.clean_quality(df, reference) if quality is None else quality
    quality_d = quality.set_index(agg.GROUP).to_dict("index")
    origin_d, weights_d = origins(df), origins(df, "weights_source")
    worst_d = agg.overall(scoped).set_index(agg.GROUP + ["scope"]).to_dict("index")
    rows: dict[tuple, dict[str, Any]] = {}
    per_eps = {m: estimates(scoped, m, "flagged") for m in ("abs_gain", "mos_gain", "robustness_score")}
    eps_label = [number(e) for e in scoped["eps"]]
    for i, r in enumerate(scoped[agg.GROUP + ["scope", "n_cells"]].itertuples(index=False)):
        key = (r.model, r.dataset, r.defense, r.scope)
        row = rows.get(key)
        if row is None:
            q, w = quality_d[(r.model, r.dataset, r.defense)], worst_d[key]
            row = rows[key] = {
                "model": r.model, "weights": weights_d.get((r.model, r.dataset, r.defense), ""), "dataset": r.dataset,
                "defense": r.defense, "defense_kind": q["defense_kind"],
                "defense_origin": origin_d.get((r.model, r.dataset, r.defense), ""), "attack": r.scope, "flagged": bool(w["any_flagged"]), "clean_loss": bool(q["clean_loss"]),
                "flags": w["flags"], "n_cells": 0,
                "srocc_clean": estimate(*(q[c] for c in ci("srocc_clean"))),
                "srocc_delta": number(q["srocc_delta"], "dec3"), "plcc_clean": number(q["plcc_clean"], "dec3"),
                "worst_abs_gain": estimate(*(w[c] for c in ci("worst_abs_gain")), flagged=bool(w["any_flagged"])),
                "worst_robustness_score": estimate(*(w[c] for c in ci("worst_robustness_score")),
                                                   flagged=bool(w["any_flagged"])),
                "worst_at": f"{text(w['worst_abs_gain_attack'])} @ {number(w['worst_abs_gain_eps'])}",
            }
        row["n_cells"] += int(r.n_cells)
        for m, values in per_eps.items():
            row[f"{m}@{eps_label[i]}"] = values[i]
    rows.update(_failed_groups(df, {k[:3] for k in rows}, origin_d))
    ordered = sorted(rows.values(), key=lambda x: (
        x["attack"] != agg.ALL_ATTACKS, x["attack"], x["model"], x["dataset"], x["flagged"],
        x["worst_abs_gain"] is None, x["worst_abs_gain"][0] if x["worst_abs_gain"] else 0.0, x["defense"]))
    rank: dict[tuple, int] = {}
    for x in ordered:
        k = (x["attack"], x["model"], x["dataset"])
        if x["flagged"] or x["worst_abs_gain"] is None:
            x["rank"] = None
        else:
            x["rank"] = rank[k] = rank.get(k, 0) + 1
    return columns, ordered


def origins(df: pd.DataFrame, column: str = "defense_origin") -> dict[tuple, str]:
    """Per (model, dataset, defense): the distinct values of `column` among its cells:
    where the defense's code came from (a row from a plugin names its package and
    version), or where the model's weights came from (published, trained here, a file)."""
    return {} if df.empty or column not in df.columns else df.groupby(agg.GROUP, sort=True)[column].agg(
        lambda s: "; ".join(sorted(set(s.dropna().astype(str)) - {""}))).to_dict()


def _failed_groups(df: pd.DataFrame, shown: set[tuple], origin_d: dict[tuple, str]) -> dict[tuple, dict[str, Any]]:
    """Defenses with no ok cell on a model and dataset: listed (unranked, with their
    statuses) rather than silently missing from the leaderboard."""
    out = {}
    for (model, dataset, defense), g in df.groupby(agg.GROUP, sort=True):
        if (model, dataset, defense) in shown:
            continue
        counts = g["status"].value_counts()
        status = "skipped" if (g["status"] == "skipped").all() else "error"
        out[(model, dataset, defense, agg.ALL_ATTACKS)] = {
            "model": model, "dataset": dataset, "defense": defense, "defense_kind": g["defense_kind"].iloc[0],
            "defense_origin": origin_d.get((model, dataset, defense), ""), "attack": agg.ALL_ATTACKS, "flagged": True, "clean_loss": False, "status": status, "n_cells": 0,
            "flags": "no ok cell: " + ", ".join(f"{n} {st}" for st, n in sorted(counts.items())),
            "srocc_clean": None, "srocc_delta": None, "plcc_clean": None, "worst_abs_gain": None,
            "worst_robustness_score": None, "worst_at": "",
        }
    return out


def leaderboard_class(r: dict[str, Any]) -> str:
    if "status" in r:
        return f"st-{r['status']}"
    return " ".join(c for c, on in (("flagged", r["flagged"]), ("clean-loss", r["clean_loss"])) if on)


def flat(columns: list[Column], rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as shown, for CSV and JSON: an estimate becomes value, ci_lo, ci_hi."""
    out = []
    for r in rows:
        d: dict[str, Any] = {}
        for c in columns:
            v = r.get(c.key)
            if c.kind == "est":
                v = v or [None, None, None]
                d[c.key], d[f"{c.key}_ci_lo"], d[f"{c.key}_ci_hi"] = v[:3]
                d[f"{c.key}_flagged"] = len(v) > 3
            else:
                d[c.key] = v
        out.append(d)
    return pd.DataFrame(out, columns=None if out else [c.key for c in columns])


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


def provenance(df: pd.DataFrame) -> dict[str, Any]:
    """Every distinct value (with its cell count) among the cells a page shows, so mixed
    runs are visible at a glance."""
    items = []
    for k, label in PROVENANCE_KEYS:
        col = f"prov_{k}"
        values = df[col].map(text).replace("", "unknown") if col in df.columns else pd.Series(["unknown"] * len(df))
        counts = values.value_counts()
        if len(counts):
            items.append((label, sorted(counts.items())))
    dates = df["prov_date"].dropna().map(str) if "prov_date" in df.columns else pd.Series([], dtype=str)
    dates = dates[dates != ""]
    return {"items": items, "first": dates.min() if len(dates) else "", "last": dates.max() if len(dates) else ""}
