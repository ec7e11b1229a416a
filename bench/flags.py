"""Reliability flags that need more than one cell, computed over the records frame.

The runner flags what a single cell shows (zero or non-finite gradients, a randomized
forward pass, no score change). Some warnings only appear across cells: as in
AutoAttack (Croce & Hein, ICML 2020), a score-based black-box attack beating every
white-box attack at the same budget means the white-box attacks did not get usable
gradients (masked, obfuscated or mis-specified), so their gains understate what an
attacker achieves. Torch-free: `bench.store.records_frame` calls this, so the export
and the site show the same flags.
"""

from __future__ import annotations

import math
from typing import Any

BLACKBOX_BEATS_WHITEBOX = "blackbox-beats-whitebox"
# abs_gain is on scores min-max scaled by the clean scores: a black-box gain must beat the
# best white-box gain by more than this to count (ties, such as 0 = 0, do not).
MARGIN = 1e-3
# "setting" (from records_frame) tells apart cells whose components share names but not
# parameters (the same dataset thinned differently in two matrices of one store).
GROUP = ["model", "defense", "dataset", "eps", "setting"]
NEEDED = {*GROUP, "attack", "status", "abs_gain", "flags", "attack_needs_gradients"}


def add_cross_cell_flags(df: Any) -> Any:
    """Append "blackbox-beats-whitebox(<black-box attack>><best white-box attack>)" to the
    flags of every ok cell of a (model, defense, dataset, eps, setting) group where the best
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
