"""Render the results store into a self-contained static folder that opens from file://.

The output depends only on the records (no timestamps, sorted everywhere), so re-rendering
the same results gives byte-identical files and the site can be diffed or committed.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup

from bench import __version__
from bench.leaderboard import plots, tables
from bench.store import ResultsStore, records_frame

HERE = Path(__file__).parent
STATIC_FILES = ("site.css", "site.js")
PLOT = "plots/gain_vs_eps.png"


def render_site(results_dir: str | Path, out_dir: str | Path) -> Path:
    """Write index.html, cells.csv, cells.json, static/ and plots/ into out_dir; return index.html."""
    records = sorted(ResultsStore(results_dir).records(), key=lambda r: r["key"])
    frame = records_frame(records)
    df = tables.prepare(frame)
    out = Path(out_dir)
    (out / "static").mkdir(parents=True, exist_ok=True)

    _write(out / "cells.csv", frame.to_csv(index=False, lineterminator="\n"))
    _write(out / "cells.json", _records_json(records))
    for name in STATIC_FILES:
        shutil.copyfile(HERE / "static" / name, out / "static" / name)
    plots.gain_vs_eps(df, out / PLOT)

    mos_label, mos_pairs = tables.mos_names(df)
    html = _env().get_template("index.html.j2").render(
        version=__version__, n_cells=len(df), status_counts=sorted(df["status"].value_counts().items()),
        mos_label=mos_label, mos_pairs=mos_pairs, filters=tables.filters(df),
        summary_columns=tables.SUMMARY_COLUMNS, summary=tables.summary(df),
        cell_columns=tables.CELL_COLUMNS, cells_json=_script_json(tables.cell_payload(df)),
        provenance=tables.provenance(records), plot=PLOT,
    )
    index = out / "index.html"
    _write(index, html)
    return index


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["fmt"] = _fmt
    return env


def _fmt(v: Any, kind: str = "text") -> str:
    """Display form shared with site.js: 3 decimals, an en dash where there is no number."""
    if kind == "text":
        return tables.text(v)
    if v is None:
        return "\u2013"
    return f"{v:.3f}" if kind == "dec3" else str(v)


def _script_json(obj: Any) -> Markup:
    """JSON safe inside <script type="application/json">: no "<", ">" or "&" can close the tag."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _records_json(records: list[dict[str, Any]]) -> str:
    """Standard JSON (NaN and infinities as null) that any tool can read.

    Only records that hold such values are walked: walking all 10,000 costs a second.
    """
    parts = []
    for r in records:
        try:
            parts.append(json.dumps(r, sort_keys=True, separators=(",", ":"), allow_nan=False))
        except ValueError:
            parts.append(json.dumps(_finite(r), sort_keys=True, separators=(",", ":")))
    return "[" + ",".join(parts) + "]\n"


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _write(path: Path, content: str) -> None:
    path.write_text(content, encoding="utf-8", newline="\n")
