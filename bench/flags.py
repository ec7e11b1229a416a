"""Reliability flags read off the records frame: those that need more than one cell, and
whether the model behind a cell predicts quality at all.

The executor flags what a single cell shows (zero or non-finite gradients, a randomized
forward pass, no score change). Some warnings only appear across cells: as in
AutoAttack (Croce & Hein, ICML 2020), a score-based black-box attack beating every
white-box attack at the same budget means the white-box attacks did not get usable
gradients (masked, obfuscated or mis-specified), so their gains understate what an
attacker achieves. Torch-free: `bench.store.records_frame` calls this, so the export
and the site show the same flags.

A robustness number means something only for a model that predicts quality: a model
whose scores barely follow the opinion scores (a trained-here model that learnt nothing,
or a defense that wrecked it) is hard to move only because it says little. Such cells get
the flag "not-predictive(...)": like any flagged row they are listed after the others,
unranked, and the claim leaves them out. The floor is MIN_CLEAN_SROCC on the cell's clean
SROCC (already oriented by the model's and the dataset's directions), and the lower end of
its 95% interval must be above zero. Computed when records are read, so a changed floor
applies to every store without recomputing a cell.
"""

from __future__ import annotations

import math
from typing import Any

from bench import record

BLACKBOX_BEATS_WHITEBOX = "blackbox-beats-whitebox"
NOT_PREDICTIVE = "not-predictive"
MIN_CLEAN_SROCC = 0.3  # below this clean SROCC a model is not taken to predict quality
# abs_gain is on scores min-max scaled by the clean scores: a black-box gain must beat the
# best white-box gain by more than this to count (ties, such as 0 = 0, do not).
MARGIN = 1e-3
# Cells that differ only in their attack (bench.record.COMPARABLE): "setting" tells apart
# cells whose components share names but not parameters (the same dataset thinned
# differently in two matrices of one store). Column names are the schema's, checked.
GROUP = list(record.COMPARABLE)
NEEDED = set(record.columns(*GROUP, "attack", "status", "abs_gain", "flags", "attack_needs_gradients"))
PREDICTIVE_NEEDED = set(record.columns("status", "srocc_clean", "srocc_clean_ci_lo", "flags"))


def add_read_time_flags(df: Any) -> Any:
    """Every flag computed from the frame rather than by the runner; returns the same frame."""
    return add_cross_cell_flags(add_predictive_flags(df))


def not_predictive(srocc: float, ci_lo: float) -> bool:
    """True where a clean SROCC is missing, below the floor, or not clearly above zero."""
    if not math.isfinite(srocc) or srocc < MIN_CLEAN_SROCC:
        return True
    return math.isfinite(ci_lo) and ci_lo <= 0.0


def add_predictive_flags(df: Any) -> Any:
    """Append "not-predictive(<why>)" to every ok cell whose clean SROCC says
    that the (defended) model does not predict the opinion scores."""
    if len(df) == 0 or not PREDICTIVE_NEEDED <= set(df.columns):
        return df
    srocc, lo = df["srocc_clean"].astype(float), df["srocc_clean_ci_lo"].astype(float)
    fine = (srocc >= MIN_CLEAN_SROCC) & ~(lo <= 0.0)  # not_predictive, vectorized (NaN: not fine)
    for i in df.index[(df["status"] == "ok") & ~fine]:  # a loop over all of 10k cells took 1.5 s
        s, low = float(srocc[i]), float(lo[i])
        why = ("clean SROCC undefined" if not math.isfinite(s) else
               f"clean SROCC {s:.2f} < {MIN_CLEAN_SROCC:g}" if s < MIN_CLEAN_SROCC else
               f"clean SROCC interval reaches {low:.2f} <= 0")
        flag = f"{NOT_PREDICTIVE}({why})"
        old = df.at[i, "flags"]
        df.at[i, "flags"] = f"{old};{flag}" if old else flag
    return df


def add_cross_cell_flags(df: Any) -> Any:
    """Append "blackbox-beats-whitebox(<black-box attack>><best white-box attack>)" to the
    flags of every ok cell of a (model, defense, dataset, eps, budget unit, setting) group where the best
    black-box gain exceeds the best white-box gain by more than MARGIN. Cells whose attack
    metadata is unknown (plugin not loaded) take no part. Returns the same frame."""
    if len(df) == 0 or not set(df.columns) >= NEEDED:
        return df
    usable = df[(df["status"] == "ok") & df["attack_needs_gradients"].isin([True, False])]
    for _, g in usable.groupby(GROUP, sort=False, dropna=False):
        gain = g["abs_gain"].astype(float)
        gain = gain[gain.map(math.isfinite)]
        needs = g.loc[gain.index, "attack_needs_gradients"].astype(bool)
        black, white = gain[~needs], gain[needs]
        if black.empty or white.empty or not black.max() > white.max() + MARGIN:
            continue
        flag = f"{BLACKBOX_BEATS_WHITEBOX}({g.loc[black.idxmax(), 'attack']}>{g.loc[white.idxmax(), 'attack']})"
        for i in g.index:
            old = df.at[i, "flags"]
            df.at[i, "flags"] = f"{old};{flag}" if old else flag
    return df
