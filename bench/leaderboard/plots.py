"""Plots for the site, drawn with matplotlib's object API on the Agg canvas.

No pyplot: it would switch the process-wide backend and keep figures alive. PNGs are
saved without the Software tag and at a fixed dpi, so the same records give the same
bytes. Names are drawn with mathtext off: a "$" in a plugin's name is text, not TeX.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.leaderboard.aggregate import ci

MAX_PANELS = 8  # keeps a figure (and render time: ~0.1 s a panel) bounded for wide matrices
MAX_LINES = 20
MARKERS = "osD^vP*X"


@contextmanager
def _figure(n_panels: int, path: Path, *, width: float = 3.0, height: float = 2.4) -> Iterator[tuple[Any, Any]]:
    import matplotlib as mpl
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = max(1, min(4, n_panels))
    nrows = max(1, math.ceil(n_panels / ncols))
    with mpl.rc_context({"text.parse_math": False, "font.size": 9}):
        # Fixed margins, no constrained layout: it measures every tick label (half the time).
        w, h = width * ncols + 2.4, height * nrows + 0.8
        fig = Figure(figsize=(w, h), dpi=90)
        fig.subplots_adjust(left=0.7 / w, right=1 - 2.3 / w, bottom=0.5 / h, top=1 - 0.55 / h, wspace=0.15, hspace=0.6)
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
        for ax in list(axes.flat)[n_panels:]:
            ax.set_visible(False)
        if n_panels == 0:
            axes[0, 0].set_visible(True)
            axes[0, 0].text(0.5, 0.5, "no successful cells", ha="center", va="center")
            axes[0, 0].set_axis_off()
        yield fig, axes
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=90, metadata={"Software": None})


def _styles(names: list[str]) -> dict[str, dict[str, Any]]:
    import matplotlib as mpl

    colors = mpl.colormaps["tab10"].colors  # explicit RGB: "C0" strings are slow to resolve
    return {d: {"color": colors[i % 10], "marker": MARKERS[i // 10 % len(MARKERS)]} for i, d in enumerate(names)}


def _panels(df: pd.DataFrame, keys: list[str], limit: int) -> tuple[list[tuple], bool]:
    panels = sorted(set(map(tuple, df[keys].itertuples(index=False)))) if len(df) else []
    return panels, len(panels) > limit


def gain_vs_eps(worst: pd.DataFrame, path: Path, *, line: str, panel: list[str], what: str,
                max_panels: int = MAX_PANELS, legend: str = "") -> None:
    """abs gain against eps with its 95% interval as a band: one line per `line` value,
    one panel per `panel` tuple (from `aggregate.scopes` rows)."""
    from matplotlib.lines import Line2D

    df = worst[worst["abs_gain"].notna()]
    panels, cut = _panels(df, panel, max_panels)
    shown = panels[:max_panels]
    names = sorted(df[line].unique())[:MAX_LINES] if len(df) else []
    style = _styles(names)
    with _figure(len(shown), path) as (fig, axes):
        groups = {k: g for k, g in df.groupby(panel + [line], sort=True)}  # once: not a scan per panel
        for ax, key in zip(axes.flat, shown):
            for name in names:
                g = groups.get((*key, name))
                if g is None:
                    continue
                g = g.sort_values("eps")
                eps, gain, lo, hi = (g[c].to_numpy(dtype=float) for c in ["eps", *ci("abs_gain")])
                ax.plot(eps, gain, lw=1.5, ms=4, **style[name])
                if np.isfinite(lo).any():
                    ax.fill_between(eps, lo, hi, color=style[name]["color"], alpha=0.15, lw=0)
                _seed_marks(ax, g, style[name])
            ax.set_title(" \u00b7 ".join(map(str, key)))
            ax.set_xlabel("eps (/255)")
            ax.grid(alpha=0.3)
        for ax in axes[:, 0]:
            ax.set_ylabel(f"abs gain ({what})")
        if names:  # explicit handles: a label starting with "_" would otherwise be dropped
            fig.legend([Line2D([], [], **style[n]) for n in names], names, title=legend or line, loc="upper right",
                       fontsize=8)
        if cut or len(style) < (df[line].nunique() if len(df) else 0):
            fig.suptitle(f"first {len(shown)} of {len(panels)} panels, {len(names)} lines; the CSV holds all")


def _seed_marks(ax: Any, g: pd.DataFrame, style: dict[str, Any]) -> None:
    """One small hollow mark per training seed at each eps, where the line is a mean over
    seeds (`abs_gain_per_seed`, bench.leaderboard.seeds): the spread between seeds in view."""
    if "abs_gain_per_seed" not in g.columns:
        return
    for e, values in zip(g["eps"], g["abs_gain_per_seed"]):
        if isinstance(values, str) and "," in values:
            ys = [float(v) for v in values.split(",")]
            ax.plot([float(e)] * len(ys), ys, linestyle="", ms=3.5, markerfacecolor=(1, 1, 1, 0), mew=0.8,
                    marker=style["marker"], color=style["color"], alpha=0.8)  # hollow: face transparent


def score_shift(shifts: pd.DataFrame, path: Path) -> None:
    """One histogram of each image's oriented, scaled score shift f(x*) - f(x), one outline
    per attack, pooled over models and datasets: the scaling (by each cell's clean scores)
    makes shifts comparable across models, and one panel keeps 10,000-cell renders fast.
    Columns: model, dataset, attack, shift."""
    names = sorted(shifts["attack"].unique())[:MAX_LINES] if len(shifts) else []
    style = _styles(names)
    with _figure(1 if len(shifts) else 0, path, width=4.5, height=2.8) as (fig, axes):
        if len(shifts):
            ax = axes[0, 0]
            lo, hi = float(shifts["shift"].min()), float(shifts["shift"].max())
            bins = np.linspace(lo, hi if hi > lo else lo + 1e-3, 31)
            for name, g in shifts.groupby("attack", sort=True):
                if name in style:
                    ax.hist(g["shift"], bins=bins, histtype="step", lw=1.4, color=style[name]["color"])
            ax.axvline(0, color="0.4", lw=0.8)
            pairs = shifts[["model", "dataset"]].drop_duplicates()
            ax.set_title(f"{len(pairs)} model \u00b7 dataset pair(s), each at its largest eps")
            ax.set_xlabel("score shift f(x*) - f(x)")
            ax.set_ylabel("images")
            ax.grid(alpha=0.3)
        if names:
            from matplotlib.patches import Patch

            fig.legend([Patch(fill=False, edgecolor=style[n]["color"]) for n in names], names, title="attack",
                       loc="upper right", fontsize=8)


def amplification(pooled: pd.DataFrame, path: Path, *, perturbations: list[str]) -> None:
    """Amplification against depth, one panel per perturbation (side by side), one line
    per defense, the band its interval over images; log scale, a grey line at 1 (a
    perturbation passed on in proportion). Columns: `profile_store.pooled_frame`'s."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, NullFormatter

    df = pooled[pooled["amplification"].notna()]
    names = sorted(df["defense"].unique())[:MAX_LINES] if len(df) else []
    style = _styles(names)
    with _figure(len(perturbations) if len(df) else 0, path, width=3.6, height=2.8) as (fig, axes):
        for ax, kind in zip(axes.flat, perturbations if len(df) else []):
            for name in names:
                g = df[(df["perturbation"] == kind) & (df["defense"] == name)].sort_values("depth")
                depth, amp, lo, hi = (g[c].to_numpy(dtype=float)
                                      for c in ("depth", "amplification", "amplification_lo", "amplification_hi"))
                ax.plot(depth, amp, lw=1.5, ms=4, **style[name])
                ax.fill_between(depth, lo, hi, color=style[name]["color"], alpha=0.12, lw=0)
            ax.axhline(1.0, color="0.4", lw=0.8)
            ax.set_yscale("log")  # tick labels as plain numbers: mathtext is off for names' sake
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{kind} perturbation")
            ax.set_xlabel("depth (layers in the order they run)")
            ax.grid(alpha=0.3)
        axes[0, 0].set_ylabel("amplification")
        if names:
            fig.legend([Line2D([], [], **style[n]) for n in names], names, title="defense", loc="upper right",
                       fontsize=8)
