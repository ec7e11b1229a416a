"""Plots for the site, drawn with matplotlib's object API on the Agg canvas.

No pyplot: it would switch the process-wide backend and keep figures alive. The PNG is
saved without the Software tag and at a fixed dpi, so the same records give the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

MAX_PANELS = 60  # keeps the figure (and render time) bounded for very wide matrices
MARKERS = "osD^vP*X"


def gain_vs_eps(df: pd.DataFrame, path: Path) -> None:
    """abs_gain against eps, one line per defense (worst over attacks), one panel per model."""
    import matplotlib as mpl
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    ok = df[(df["status"] == "ok") & df["eps"].notna() & df["abs_gain"].notna()]
    worst = ok.groupby(["model", "dataset", "defense", "eps"], sort=True)["abs_gain"].max().reset_index()
    panels = sorted(set(zip(worst["model"], worst["dataset"])))
    several_datasets = len({d for _, d in panels}) > 1
    shown = panels[:MAX_PANELS]
    defenses = sorted(worst["defense"].unique())
    colors = mpl.colormaps["tab10"].colors  # explicit RGB: "C0" strings are slow to resolve
    style = {d: {"color": colors[i % 10], "marker": MARKERS[i // 10 % len(MARKERS)]} for i, d in enumerate(defenses)}

    ncols = max(1, min(4, len(shown)))
    nrows = max(1, math.ceil(len(shown) / ncols))
    # parse_math off: a name containing "$" must be drawn as text, not parsed as TeX.
    with mpl.rc_context({"text.parse_math": False, "font.size": 9}):
        fig = Figure(figsize=(3.4 * ncols + 2.2, 2.7 * nrows + 0.6), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
        for ax, (model, dataset) in zip(axes.flat, shown):
            sub = worst[(worst["model"] == model) & (worst["dataset"] == dataset)]
            for d, line in sub.groupby("defense", sort=True):
                ax.plot(line["eps"], line["abs_gain"], lw=1.5, ms=4, **style[d])
            ax.set_title(f"{model} · {dataset}" if several_datasets else model)
            ax.set_xlabel("eps (/255)")
            ax.grid(alpha=0.3)
        for ax in axes[:, 0]:
            ax.set_ylabel("abs gain (worst attack)")
        for ax in list(axes.flat)[len(shown):]:
            ax.set_visible(False)
        if not shown:
            axes[0, 0].set_visible(True)
            axes[0, 0].text(0.5, 0.5, "no successful cells yet", ha="center", va="center")
            axes[0, 0].set_axis_off()
        if defenses:  # explicit handles: a label starting with "_" would otherwise be dropped
            handles = [Line2D([], [], **style[d]) for d in defenses]
            fig.legend(handles, defenses, title="defense", loc="outside right upper")
        if len(panels) > len(shown):
            fig.suptitle(f"first {len(shown)} of {len(panels)} panels; all cells are in cells.csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
