"""From cells to what every page ranks: the worst case at each budget, per defense.

Worst case means the attack that hurt most: the largest gains and the smallest MSU
robustness score. Each measure's worst is taken on its own (it may come from different
attacks) and keeps the 95% interval of the cell it came from, so every number shown can
be traced to one cell. A (model, dataset, defense, eps) is flagged when any of its cells
is: a flagged cell may understate the gain (e.g. zero gradients), so its group is never
ranked as robust without the mark.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

# measure -> "max" or "min": which end is the worst case (the attack's best).
WORST = {"abs_gain": "max", "rel_gain": "max", "robustness_score": "min", "mos_gain": "max"}
ALL_ATTACKS = "all (worst)"
GROUP = ["model", "dataset", "defense"]
CLEAN_LOSS = 0.05  # clean SROCC a defense may lose against the reference before it is marked


def ranked_cells(df: pd.DataFrame, suite: str | None) -> tuple[pd.DataFrame, str]:
    """The cells the leaderboard and the comparisons rank: those run under the standard
    attack suite `suite` (the results' [claim] suite, see roles.py) where there are any
    (budgets and attacks fixed, so rows compare), else all, with a note saying which."""
    suites = df["prov_suite"].fillna("").map(str) if "prov_suite" in df.columns \
        else pd.Series([""] * len(df), index=df.index)
    names = ", ".join(sorted({s or "unnamed" for s in suites})) or "no cells"
    if not suite:
        return df, (f"No result names a standard attack suite (a matrix's [claim] suite); ranked: all cells "
                    f"(suites: {names}), so rows may differ in attacks and budgets.")
    if (suites == suite).any():
        n_other = int((suites != suite).sum())
        extra = f"; {n_other} cells of other suites are in the cell tables only" if n_other else ""
        return df[suites == suite], f"Ranked: cells of the standard attack suite ({suite}){extra}."
    return df, (f"No cell ran under the standard attack suite ({suite}); ranked: all cells "
                f"(suites: {names}), so rows may differ in attacks and budgets.")


def ci(key: str) -> list[str]:
    return [key, f"{key}_ci_lo", f"{key}_ci_hi"]


def join_flags(values: Iterable[str]) -> str:
    """The distinct flags of several cells ("a;b" or "a; b" each), sorted, as "a; b"."""
    return "; ".join(sorted({f.strip() for v in values for f in v.split(";") if f.strip()}))


def linf_only(df: pd.DataFrame) -> pd.DataFrame:
    """The cells whose eps is an L-inf budget in /255 (records without a unit are): a flow
    attack's eps is in pixels (bench.meta.AttackInfo), so a worst case over attacks or a
    largest eps taken across both would mix units. Flow cells are in the cell tables only."""
    return df[df["budget_unit"].fillna("1/255").isin(["1/255", ""])] if "budget_unit" in df.columns else df


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    df = linf_only(df)
    return df[(df["status"] == "ok") & df["eps"].notna()]


def worst_by_eps(df: pd.DataFrame, per_attack: bool) -> pd.DataFrame:
    """One row per (model, dataset, defense, [attack,] eps): each measure's worst with its
    interval and attack, the number of ok cells, and whether any of them is flagged."""
    ok = _ok(df)
    keys = GROUP + (["attack"] if per_attack else []) + ["eps"]
    if ok.empty:
        measures = [c for m in WORST for c in ci(m) + [f"{m}_attack"]]
        return pd.DataFrame(columns=list(dict.fromkeys(keys + GROUP + ["attack", "eps", "scope", "n_cells", "flagged",
                                                                        "flags", "n_seeds"] + measures)))
    g = ok.groupby(keys, sort=True)
    out = g.size().rename("n_cells").to_frame()
    flagged = ok["flags"] != ""
    out["flagged"] = flagged.groupby([ok[k] for k in keys]).any()
    bad = ok[flagged]
    out["flags"] = bad.groupby(keys)["flags"].agg(join_flags)
    out["flags"] = out["flags"].fillna("")
    # training seeds behind every cell of the row (bench.leaderboard.seeds merged them)
    out["n_seeds"] = g["n_seeds"].min() if "n_seeds" in ok.columns else 1
    for m, how in WORST.items():
        have = ok[ok[m].notna()]
        idx = getattr(have.groupby(keys)[m], f"idx{how}")()
        seeded = [c for c in (f"{m}_seed_sd", f"{m}_per_seed") if c in ok.columns]  # bench.leaderboard.seeds
        picked = have.loc[idx, keys + ci(m) + seeded].set_index(keys)
        picked[f"{m}_attack"] = have.loc[idx, "attack"].to_numpy()
        out = out.join(picked)
    out = out.reset_index()
    out["scope"] = out["attack"] if per_attack else ALL_ATTACKS
    return out


def scopes(df: pd.DataFrame) -> pd.DataFrame:
    """Worst over all attacks and, separately, each attack alone (what the attack filter shows)."""
    both = pd.concat([worst_by_eps(df, False), worst_by_eps(df, True).drop(columns="attack")], ignore_index=True)
    return both.sort_values(GROUP + ["scope", "eps"], kind="stable").reset_index(drop=True)


def clean_quality(df: pd.DataFrame, reference: str | None) -> pd.DataFrame:
    """Clean SROCC (with its interval) and PLCC per (model, dataset, defense), and the
    SROCC change against the undefended `reference` (roles.py) on the same model and
    dataset; NaN without one.

    The clean scores are shared by a group's cells, so its first ok cell speaks for it."""
    ok = df[df["status"] == "ok"]
    cols = ci("srocc_clean") + ["plcc_clean", "defense_kind"]
    q = ok.groupby(GROUP, sort=True)[cols].first()
    ref = q.xs(reference, level="defense")["srocc_clean"] \
        if reference is not None and reference in q.index.get_level_values("defense") else None
    if ref is None or q.empty:
        q["srocc_delta"] = math.nan
    else:
        base = ref.reindex(q.index.droplevel("defense"))
        q["srocc_delta"] = q["srocc_clean"].to_numpy() - base.to_numpy()
    q["clean_loss"] = q["srocc_delta"] < -CLEAN_LOSS
    return q.reset_index()


def overall(agg: pd.DataFrame) -> pd.DataFrame:
    """Per (model, dataset, defense, scope): the worst gain and robustness over every eps."""
    keys = GROUP + ["scope"]
    if agg.empty:
        return pd.DataFrame(columns=keys)
    out = agg.groupby(keys, sort=True)["flagged"].any().rename("any_flagged").to_frame()
    out["flags"] = agg[agg["flagged"]].groupby(keys)["flags"].agg(join_flags)
    out["flags"] = out["flags"].fillna("")
    for m in ("abs_gain", "robustness_score"):
        have = agg[agg[m].notna()]
        idx = getattr(have.groupby(keys)[m], f"idx{WORST[m]}")()
        picked = have.loc[idx, keys + ci(m) + [f"{m}_attack", "eps"]].set_index(keys)
        picked = picked.rename(columns={c: f"worst_{m}_eps" if c == "eps" else f"worst_{c}" for c in picked.columns})
        out = out.join(picked)
    return out.reset_index()
