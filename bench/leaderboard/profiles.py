"""The layer-profile page of each model, and the claim's pointer to it.

It shows where along the network a perturbation grows (bench/profile.py): per dataset,
amplification against depth for the adversarial perturbations the cells' attacks found
beside random ones of the same norm, one line per defense; the layers with their operator
norms; and the clean images' input-gradient norms beside the gains the cells measured.
Everything comes from the results store (bench/profile_store.py); no component is named.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench import profile_store
from bench.leaderboard import aggregate as agg
from bench.leaderboard import plots, tables
from bench.leaderboard.safe import slug

PERTURBATIONS = list(profile_store.PERTURBATIONS)
ENDS = (profile_store.INPUT_KIND, profile_store.SCORE_KIND)
EPS_PER_UNIT = 255  # records give eps in /255 units of [0, 1] images (bench.matrix.Cell)


class Profiles:
    """The store's profiles, read once per render: pooled layer rows and gradient rows."""

    def __init__(self, results: Path, records: list[dict[str, Any]]) -> None:
        self.pooled = profile_store.pooled_frame(results, records)
        self.gradients = profile_store.gradient_frame(results)
        models = sorted(set(self.pooled["model"]) | set(self.gradients["model"]))
        self.hrefs = {m: f"profile-{slug(m)}.html" for m in models}

    def note(self, model: str, dataset: str, defenses: list[str]) -> str:
        """One sentence for the claim: where, for each defense shown, the adversarial
        perturbation grows most and what reaches the score, with the random control's
        value at the same layer in brackets."""
        df = self.pooled[(self.pooled["model"] == model) & (self.pooled["dataset"] == dataset)]
        parts = []
        for d in defenses:
            rows = df[df["defense"] == d]
            adv = rows[(rows["perturbation"] == PERTURBATIONS[0]) & rows["amplification"].notna()]
            if adv.empty:
                continue
            rnd = rows[rows["perturbation"] == PERTURBATIONS[1]].set_index("layer")["amplification"]
            inner = adv[~adv["kind"].isin(ENDS)]
            end = adv.sort_values("depth").iloc[-1]
            text = f"{d} "
            if len(inner):
                peak = inner.loc[inner["amplification"].idxmax()]
                text += (f"peaks at {_x(peak['amplification'])} ({_x(rnd.get(peak['layer']))}) at {peak['layer']} "
                         f"(depth {int(peak['depth'])} of {int(end['depth'])}) and ")
            parts.append(f"{text}passes {_x(end['amplification'])} ({_x(rnd.get(end['layer']))}) on to the score")
        if not parts:
            return ""
        return ("Where the perturbation grows (amplification of the relative change, median over images, "
                "adversarial with random of the same norm in brackets): " + "; ".join(parts) + ".")

    def gradient_rows(self, model: str, scoped: pd.DataFrame) -> list[dict[str, Any]]:
        """Per (dataset, defense, seed): the gradient norms with their intervals, the
        first-order bound eps ||grad||_1 / (clean score range) at the largest budget the
        cells ran, and the worst measured abs gain there, for comparison."""
        rows = []
        worst = scoped[(scoped["scope"] == agg.ALL_ATTACKS) & (scoped["model"] == model)]
        for r in self.gradients[self.gradients["model"] == model].to_dict("records"):
            at = worst[(worst["dataset"] == r["dataset"]) & (worst["defense"] == r["defense"])]
            top = at.loc[at["eps"].idxmax()] if len(at) else None
            eps = float(top["eps"]) if top is not None else math.nan
            rows.append({**r, "eps": eps, "first_order_bound": eps / EPS_PER_UNIT * r["grad_l1_scaled_mean"],
                         "abs_gain": float(top["abs_gain"]) if top is not None else math.nan,
                         **{f"grad_{n}_est": tables.estimate(*(r[f"grad_{n}{s}"] for s in ("", "_lo", "_hi")))
                            for n in ("l1", "l2")}})
        return rows


def page(site: Any, name: str) -> None:
    """Write profile-<model>.html with its plots (one per dataset) and data files."""
    prof: Profiles = site.profiles
    df = prof.pooled[prof.pooled["model"] == name]
    page_name = prof.hrefs[name].removesuffix(".html")
    figures = []
    for dataset in sorted(df["dataset"].unique()):
        plot = f"plots/{page_name}-{slug(dataset)}.png"
        plots.amplification(df[df["dataset"] == dataset], site.out / plot, perturbations=PERTURBATIONS)
        figures.append({"dataset": dataset, "plot": plot,
                        "note": prof.note(name, dataset, sorted(df[df["dataset"] == dataset]["defense"].unique()))})
    layers = _layer_table(df)
    grads = prof.gradient_rows(name, site.scoped)
    pd.DataFrame(grads).to_csv(site.out / "data" / f"{page_name}-gradients.csv", index=False, lineterminator="\n")
    site._page(page_name, "profile.html.j2", site.df[site.df["model"] == name], df, f"Layer profile of {name}",
               name=name, figures=figures, layers=layers, gradients=grads, perturbations=PERTURBATIONS,
               level=int(profile_store.LEVEL * 100))


def _layer_table(df: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per (dataset, defense, layer): both perturbations' medians and intervals side by side."""
    keys = ["dataset", "defense", "depth", "layer", "kind", "opnorm", "opnorm_method"]
    wide = {}
    for r in df.to_dict("records"):
        row = wide.setdefault(tuple(r[k] for k in keys[:4]), {k: r[k] for k in keys})
        row[r["perturbation"]] = tables.estimate(r["amplification"], r["amplification_lo"], r["amplification_hi"])
    return [wide[k] for k in sorted(wide, key=lambda k: (k[0], k[1], k[2]))]


def _x(v: Any) -> str:
    return "\u2013" if v is None or not math.isfinite(float(v)) else f"{float(v):.2f}x"
