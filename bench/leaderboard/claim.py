"""The claim under test, compared per model: each method against its rivals, beside its
controls and the best input purification.

Which defense plays which part comes from the results (`bench/leaderboard/roles.py`: the
matrix's `[claim]` table, recorded in every cell, else the defenses' declared kinds); this
code names none. Each method gets its own section per model and dataset.

The sentence is generated from the numbers (never written by hand): at the largest
budget both have, is the method's worst-case gain below the reference's and each rival's,
and do the 95% intervals overlap? Overlap is a conservative reading: no overlap means a
clear difference; overlap means these data do not separate them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from bench.flags import MIN_CLEAN_SROCC, NOT_PREDICTIVE
from bench.leaderboard import aggregate as agg
from bench.leaderboard import roles as R
from bench.leaderboard.aggregate import ci
from bench.leaderboard.tables import estimate, estimates, number

MEASURES = (("abs_gain", "abs gain"), ("rel_gain", "rel gain"), ("robustness_score", "MSU R"),
            ("mos_gain", "MOS gain"))


def tables(df: pd.DataFrame, model: str | None = None, claim_only: bool = True,
           scoped: pd.DataFrame | None = None, quality: pd.DataFrame | None = None,
           roles: R.Roles | None = None) -> list[dict[str, Any]]:
    """Per method, per (model, dataset): rows (defense, clean quality, each measure at each
    eps with its interval, worst over attacks), the eps shown, and the generated sentence.
    With `claim_only` False (a model's page): one group per (model, dataset) with every
    defense and every method's sentence. `scoped`, `quality` (from aggregate) and `roles`
    (from roles.from_frame) may be passed in when already computed."""
    roles = R.from_frame(df) if roles is None else roles
    scoped = agg.scopes(df) if scoped is None else scoped
    scoped = scoped[scoped["scope"] == agg.ALL_ATTACKS]
    quality = agg.clean_quality(df, roles.reference) if quality is None else quality
    if model is not None:
        scoped, quality = scoped[scoped["model"] == model], quality[quality["model"] == model]
    out = []
    for claim in roles.claims if claim_only else (None,):
        for (m, d), q in quality.groupby(["model", "dataset"], sort=True):
            s = scoped[(scoped["model"] == m) & (scoped["dataset"] == d)]
            order = roles.shown(claim) if claim is not None else roles.order()
            shown = _roles(s, q, order) if claim is not None else {name: "" for name in q["defense"]}
            rows = [_row(name, role, q[q["defense"] == name].iloc[0], s[s["defense"] == name])
                    for name, role in sorted(shown.items(), key=lambda kv: _order(kv[0], order))]
            eps = sorted(s["eps"].unique())
            said = [sentence(m, d, s, q, c, roles) for c in ([claim] if claim is not None else roles.claims)]
            out.append({"model": m, "dataset": d, "method": claim.method if claim is not None else "",
                        "seeded": any(r["n_seeds"] > 1 for r in rows),  # a between-seed column then
                        "eps": [number(e) for e in eps], "rows": rows, "sentence": " ".join(t for t, _ in said),
                        "claim_eps": said[0][1] if said else (number(s["eps"].max()) if len(s) else None)})
    return out


def _order(name: str, order: tuple[str, ...]) -> tuple[int, str]:
    return (order.index(name) if name in order else len(order), name)


def _roles(s: pd.DataFrame, q: pd.DataFrame, order: tuple[str, ...]) -> dict[str, str]:
    roles = {name: "" for name in order if name in set(q["defense"])}
    best = best_purification(s, q)
    if best:
        roles[best] = "best purification"
    return roles


def best_purification(s: pd.DataFrame, q: pd.DataFrame) -> str | None:
    """The purification with the smallest worst-case gain; unflagged ones first."""
    names = set(q.loc[q["defense_kind"] == R.PURIFICATION, "defense"])
    cand = s[s["defense"].isin(names) & s["abs_gain"].notna()]
    if cand.empty:
        return None
    w = cand.groupby("defense").agg(gain=("abs_gain", "max"), flagged=("flagged", "any")).reset_index()
    return str(w.sort_values(["flagged", "gain", "defense"]).iloc[0]["defense"])


def _row(name: str, role: str, q: pd.Series, s: pd.DataFrame) -> dict[str, Any]:
    row: dict[str, Any] = {
        "defense": name, "role": role, "defense_kind": q["defense_kind"], "clean_loss": bool(q["clean_loss"]),
        "srocc_clean": estimate(*q[ci("srocc_clean")]), "srocc_delta": number(q["srocc_delta"], "dec3"),
        "plcc_clean": number(q["plcc_clean"], "dec3"), "flagged": bool(s["flagged"].any()),
        "flags": agg.join_flags(s["flags"]),
    }
    eps = [number(e) for e in s["eps"]]
    for key, _ in MEASURES:
        row.update({f"{key}@{e}": v for e, v in zip(eps, estimates(s, key, "flagged"))})
    sd = s["abs_gain_seed_sd"] if "abs_gain_seed_sd" in s.columns else [math.nan] * len(s)
    row.update({f"abs_gain_seed_sd@{e}": number(v, "dec3") for e, v in zip(eps, sd)})  # NaN: one seed
    row["n_seeds"] = int(s["n_seeds"].min()) if "n_seeds" in s.columns and len(s) else 1
    return row


def _fmt(e: list[Any] | None) -> str:
    if e is None:
        return "no result"
    lo, hi = e[1], e[2]
    ci_text = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else " (no interval)"
    return f"{e[0]:.3f}{ci_text}" + (" (flagged)" if len(e) > 3 else "")


def _compare(full: list[Any], other: list[Any], who: str) -> str:
    below = full[0] < other[0]
    if None in (full[1], full[2], other[1], other[2]):
        return f"{'below' if below else 'not below'} {who}'s (no intervals: overlap unknown)"
    overlap = full[1] <= other[2] and other[1] <= full[2]
    verdict = "the 95% intervals overlap, so these data do not separate them" if overlap \
        else "the 95% intervals do not overlap"
    return f"{'below' if below else 'not below'} {who}'s, and {verdict}"


def sentence(model: str, dataset: str, s: pd.DataFrame, q: pd.DataFrame, claim: R.Claim,
             roles: R.Roles) -> tuple[str, float | None]:
    """What the data show for one method on one model and dataset, in one or two sentences,
    and the budget it speaks of: the largest where both the method and the reference have
    a result."""
    def at(name: str, eps: float, key: str = "abs_gain") -> list[Any] | None:
        r = s[(s["defense"] == name) & (s["eps"] == eps)]
        return None if r.empty else estimate(*r.iloc[0][ci(key)], bool(r.iloc[0]["flagged"]))

    method, ref = claim.method, roles.reference
    silent = [name for name in (ref, method)
              if name is not None and s.loc[s["defense"] == name, "flags"].str.contains(NOT_PREDICTIVE).any()]
    if silent:
        who = " and ".join(f"{'the undefended model' if n == ref else 'the full method'} ({n})" for n in silent)
        last = number(s["eps"].max()) if s["eps"].notna().any() else None
        return (f"{model} on {dataset}: {who} {'does' if len(silent) == 1 else 'do'} not predict quality here (clean SROCC below "
                f"{MIN_CLEAN_SROCC:g} or not clearly above zero), so its gains say nothing about robustness "
                "and the claim is not tested here."), last
    full_eps = set(s.loc[(s["defense"] == method) & s["abs_gain"].notna(), "eps"])
    none_eps = set(s.loc[(s["defense"] == ref) & s["abs_gain"].notna(), "eps"])
    if not full_eps:
        last = number(s["eps"].max()) if s["eps"].notna().any() else None
        return (f"{model} on {dataset}: the full method ({method}) has no successful cells, so the claim is not "
                "tested here."), last
    eps = max(full_eps & none_eps) if full_eps & none_eps else max(full_eps)
    full = at(method, eps)
    assert full is not None
    parts = [(f"{model} on {dataset}, at eps {number(eps)}/255 against the worst attack: the full method ({method}) "
              f"has abs gain {_fmt(full)}")]
    for name in claim.rivals:
        label, other = roles.label(name), at(name, eps)
        if other is None:
            parts.append(f"{label} ({name}) has no result at this budget")
        else:
            parts.append(f"{label} ({name}) {_fmt(other)}: the full method's gain is {_compare(full, other, name)}")
    text = "; ".join(parts) + "." + _in_mos_units(method, ref, eps, at) + _seeds(s, method)
    qf = q[q["defense"] == method]
    delta = number(qf["srocc_delta"].iloc[0], "dec3") if len(qf) else None
    if delta is not None:
        text += (f" It loses {-delta:.3f} clean SROCC against {ref} (more than {agg.CLEAN_LOSS}): marked."
                 if delta < -agg.CLEAN_LOSS else f" Its clean SROCC is within {agg.CLEAN_LOSS} of {ref}'s ({delta:+.3f}).")
    if len(full) > 3:
        text += " Some of its cells are flagged: read its gain with care."
    return text, number(eps)


def _seeds(s: pd.DataFrame, method: str) -> str:
    """What the intervals cover: training noise, or only the images of one training."""
    n = s.loc[s["defense"] == method, "n_seeds"].min() if "n_seeds" in s.columns else 1
    n = 1 if pd.isna(n) else int(n)
    if n == 1:
        return (" One training seed: the intervals cover its images only, so training noise cannot be told apart "
                "from a difference between defenses (run the matrix with seeds = [0, 1, 2]).")
    return (f" Over {n} training seeds: each interval covers the seeds and their images (two-level bootstrap), "
            "and defenses count as separated only where those intervals do not overlap.")


def _in_mos_units(method: str, ref: str | None, eps: float, at: Any) -> str:
    """Whether the gain in MOS units tells the same as the normalised gain against the
    reference: the normalised gain divides by each cell's own clean-score range, so a
    fine-tune that narrows the scores can move it without any change in quality."""
    if ref is None or ref == method:
        return ""
    full, other, full_mos, other_mos = at(method, eps), at(ref, eps), at(method, eps, "mos_gain"), \
        at(ref, eps, "mos_gain")
    if None in (full, other, full_mos, other_mos):
        return " The gain in MOS units is not available for both, so it cannot confirm the normalised gain."
    agree = (full[0] < other[0]) == (full_mos[0] < other_mos[0])
    return (f" In MOS units the full method's shift is {_fmt(full_mos)} against {ref}'s {_fmt(other_mos)}: "
            f"{_compare(full_mos, other_mos, ref)}; the two measures "
            + ("agree." if agree else "disagree, so the normalised gain's ordering is not a change in quality."))


def markdown(df: pd.DataFrame, profile_note: Callable[[str, str, list[str]], str] | None = None,
             scoped: pd.DataFrame | None = None, quality: pd.DataFrame | None = None,
             roles: R.Roles | None = None) -> str:
    """The README section: per method, model and dataset, the sentence and a small table at
    the budget the sentence uses, then `profile_note(model, dataset, defenses)` where it
    says something (where along the network the perturbation grows); then which rule gave
    the roles. `df` and the frames passed on to `tables` are the site's
    (`render.ranked_frames`: seeds merged), so the README says what the claim page says."""
    lines = ["Generated by `python -m bench site --readme README.md` from the results store; do not edit.", ""]
    roles = R.from_frame(df) if roles is None else roles
    groups = tables(df, scoped=scoped, quality=quality, roles=roles)
    if not groups:
        lines.append("No results yet: run `python -m bench run --matrix quick`, then the command above."
                     if df.empty or not (df["status"] == "ok").any() else "No method to test in these results.")
        lines.append("")
    several = len(roles.claims) > 1
    for g in groups:
        eps = g["claim_eps"]
        head = f"{_md(g['method'])}: " if several else ""
        lines += [f"### {head}{_md(g['model'])} on {_md(g['dataset'])}", "", _md(g["sentence"]), ""]
        sd = f" abs gain SD between seeds @{eps} |" if g["seeded"] else ""
        lines += [f"| defense | kind | SROCC clean [95% CI] | abs gain @{eps} [95% CI] |{sd} MOS gain @{eps} [95% CI] "
                  f"| MSU R @{eps} [95% CI] |", "|---|---|---|---|" + "---|" * bool(sd) + "---|---|"]
        for r in g["rows"]:
            name = _md(r["defense"]) + (f" ({r['role']})" if r["role"] else "") + (" \u26a0 clean loss" if r["clean_loss"] else "")
            spread = r.get(f"abs_gain_seed_sd@{eps}")
            between = (f" {spread:.3f} ({r['n_seeds']} seeds) |" if spread is not None else " one seed |") if sd else ""
            lines.append(f"| {name} | {_md(r['defense_kind'])} | {_fmt(r['srocc_clean'])} | "
                         f"{_fmt(r.get(f'abs_gain@{eps}'))} |{between} {_fmt(r.get(f'mos_gain@{eps}'))} | "
                         f"{_fmt(r.get(f'robustness_score@{eps}'))} |")
        lines.append("")
        if note := profile_note and profile_note(g["model"], g["dataset"], [r["defense"] for r in g["rows"]]):
            lines += [_md(note), ""]
    if not df.empty:
        lines += [_md(roles.rule), ""]
    return "\n".join(lines).rstrip() + "\n"


def _md(s: str) -> str:
    """Plugin names are data: no markdown table breaks, no raw HTML."""
    return re.sub(r"([|\\`*_\[\]])", r"\\\1", str(s)).replace("<", "&lt;").replace(">", "&gt;")


def rewrite_readme(path: str | Path, section: str, name: str = "claim") -> None:
    """Replace the text between the markers `<!-- name:start -->` and `<!-- name:end -->`;
    fail (never append) if they are missing. Several names let one README quote the claims
    of several stores (the quick matrix's, the full matrix's claim block), each regenerated
    from its own run."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    START, END = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"{p} needs exactly one {START} ... {END} pair")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    p.write_text(f"{head}{START}\n{section}{END}{tail}", encoding="utf-8", newline="\n")
