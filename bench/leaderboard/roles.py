"""Who plays which part in the claim, read from the results alone.

A matrix's `[claim]` table (checked by `bench/matrix.py`) names the method or methods under
test, the rivals each sentence compares them with, the controls the tables show beside
them, the undefended reference that clean loss is measured against, labels for the
sentence, and the attack suite the leaderboard ranks by. The runner copies it into every
cell's provenance (`provenance.claim`, the `prov_claim` column), so the site, which reads
the store alone, takes the roles from there: its code names no defense and no suite.

Where no record carries a role, it comes from the defenses' declared kind (`bench/meta.py`)
instead: every architectural defense is a method, compared with the kind-`none` defense
(the reference) and the training defenses; no suite is ranked apart. `Roles.rule` says in
one sentence which of these rules gave the roles shown.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.meta import DEFENSE_KINDS

# The declared kinds, by position in bench.meta (a change there fails here, loudly).
NO_DEFENSE, ARCHITECTURAL, TRAINING, PURIFICATION, CERTIFIED = DEFENSE_KINDS
# What a rival is called in the sentence when the [claim] table gives it no label.
KIND_LABELS = {NO_DEFENSE: "no defense", ARCHITECTURAL: "architectural defense", TRAINING: "training defense",
               PURIFICATION: "input purification", CERTIFIED: "certified defense"}
COLUMN = "prov_claim"  # records_frame's column: the [claim] table as canonical JSON


@dataclass(frozen=True)
class Claim:
    """One method under test: its own section per model and dataset."""

    method: str
    rivals: tuple[str, ...] = ()  # compared in the sentence, in this order
    controls: tuple[str, ...] = ()  # shown in the table only


@dataclass(frozen=True)
class Roles:
    claims: tuple[Claim, ...]
    reference: str | None  # clean loss is measured against it; None: no clean loss
    suite: str | None  # the attack suite the leaderboard ranks by; None: all cells
    rule: str  # which rule gave these roles, in one sentence
    labels: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # defense -> declared kind, from the records

    def label(self, name: str) -> str:
        """What the sentence calls a rival: the [claim] table's label, else its kind's."""
        return self.labels.get(name) or KIND_LABELS.get(self.kinds.get(name, ""), "defense")

    def shown(self, claim: Claim) -> tuple[str, ...]:
        """The defenses a claim's table shows, in order: reference, method, rivals, controls."""
        names = ([self.reference] if self.reference else []) + [claim.method, *claim.rivals, *claim.controls]
        return tuple(dict.fromkeys(names))

    def order(self) -> tuple[str, ...]:
        """Every defense with a role, in the order of the claims' tables."""
        return tuple(dict.fromkeys(n for c in self.claims for n in self.shown(c))) or \
            ((self.reference,) if self.reference else ())


def specs(df: pd.DataFrame) -> list[tuple[dict[str, Any], int, list[str]]]:
    """The distinct [claim] tables the records carry: (table, number of records, matrices),
    most records first (ties by their text), so the same store gives the same roles."""
    if COLUMN not in df.columns or df.empty:
        return []
    text = df[COLUMN].map(lambda v: v if isinstance(v, str) and v not in ("", "{}", "null") else "")
    matrices = df["prov_matrix"] if "prov_matrix" in df.columns else pd.Series([""] * len(df), index=df.index)
    out = []
    for t, rows in text[text != ""].groupby(text[text != ""], sort=True):
        try:
            table = json.loads(t)
        except ValueError:
            continue
        if isinstance(table, dict) and table:
            names = sorted({str(m) for m in matrices.loc[rows.index] if isinstance(m, str) and m})
            out.append((table, len(rows), names))
    return sorted(out, key=lambda x: (-x[1], json.dumps(x[0], sort_keys=True)))


def _names(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v] if v else []
    return [str(x) for x in v if isinstance(x, str) and x] if isinstance(v, list) else []


def _most_common(values: list[tuple[str, int]]) -> str | None:
    counts: Counter[str] = Counter()
    for v, n in values:
        counts[v] += n
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counts else None


def _list(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(names) if names else "none named"


def from_frame(df: pd.DataFrame) -> Roles:
    """The roles for a store's records (the frame of `records_frame`, prepared or not)."""
    kinds: dict[str, str] = {}
    if len(df) and "defense_kind" in df.columns:
        for name, kind in zip(df["defense"], df["defense_kind"]):
            if isinstance(kind, str) and kind and str(name) not in kinds:
                kinds[str(name)] = kind
    present = sorted({str(d) for d in df["defense"]}) if len(df) else []
    tables = specs(df)
    labels: dict[str, str] = {}
    rivals: dict[str, list[str]] = {}
    controls: dict[str, list[str]] = {}
    for table, _, _ in tables:
        for m in _names(table.get("method")):
            rivals.setdefault(m, []).extend(_names(table.get("rivals")))
            controls.setdefault(m, []).extend(_names(table.get("controls")))
        for k, v in (table.get("labels") or {}).items() if isinstance(table.get("labels"), dict) else ():
            if isinstance(v, str) and v:
                labels.setdefault(str(k), v)
    parts = []
    reference = _most_common([(r, n) for t, n, _ in tables for r in _names(t.get("reference"))[:1]])
    if reference is None:
        reference = next((d for d in present if kinds.get(d) == NO_DEFENSE), None)
        parts.append(f"the clean-loss reference is the defense of kind {NO_DEFENSE} "
                     f"({reference or 'none in these results'})")
    else:
        parts.append(f"clean-loss reference {reference}")
    if rivals:
        claims = tuple(Claim(m, tuple(dict.fromkeys(r for r in rivals[m] if r != m)),
                             tuple(dict.fromkeys(c for c in controls[m] if c != m and c not in rivals[m])))
                       for m in rivals)
        parts.insert(0, "; ".join(f"method {c.method} against {_list(c.rivals)}"
                                  + (f", controls {_list(c.controls)}" if c.controls else "") for c in claims))
    else:
        methods = [d for d in present if kinds.get(d) == ARCHITECTURAL]
        trained = tuple(d for d in present if kinds.get(d) == TRAINING)
        base = ((reference,) if reference else ()) + trained
        claims = tuple(Claim(m, base) for m in methods)
        parts.insert(0, f"each defense of kind {ARCHITECTURAL} is a method ({_list(methods)}), compared with the "
                        f"reference and the defenses of kind {TRAINING} ({_list(base)})")
    suite = _most_common([(s, n) for t, n, _ in tables for s in _names(t.get("suite"))[:1]])
    parts.append(f"ranked suite {suite}" if suite else "no ranked suite named, so every suite's cells are ranked")
    if tables:
        matrices = sorted({m for _, _, ms in tables for m in ms})
        source = (f"Roles from the [claim] table{'s' if len(tables) > 1 else ''} the results record"
                  + (f" (matrix {', '.join(matrices)})" if matrices else ""))
        if not rivals:
            source += ", which names no method, and from the defenses' declared kinds"
    else:
        source = "No result records a [claim] table, so the roles come from the defenses' declared kinds"
    return Roles(claims, reference, suite, f"{source}: {'; '.join(parts)}.", labels, kinds)
