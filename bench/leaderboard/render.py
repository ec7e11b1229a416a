"""Render the results store into a self-contained static folder that opens from file://.

Pages: `index.html` (the leaderboard and every cell), `claim.html` (each method under
test against its rivals; who plays which part comes from the records, see roles.py), one `defense-<slug>.html` and one `model-<slug>.html` each. Each page links
CSV and JSON of exactly the rows it shows (under `data/`) and lists the provenance of
those rows. The output depends only on the records (no timestamps, sorted everywhere),
so re-rendering the same results gives byte-identical files.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup

from bench import __version__
from bench.leaderboard import aggregate as agg
from bench.leaderboard import cards, claim, plots, profiles, roles, seeds, tables
from bench.leaderboard.examples import copy_example, shifts
from bench.leaderboard.safe import external_url, slug
from bench.store import ResultsStore, records_frame

HERE = Path(__file__).parent
STATIC_FILES = ("site.css", "site.js")
DEFENSE_PANELS = 2  # per defense page: the first models; every cell is in its table and CSV


def render_site(results_dir: str | Path, out_dir: str | Path) -> Path:
    """Write every page, its data files, plots and example images into out_dir; return index.html."""
    results = Path(results_dir)
    records, by_key, frame = _load(results)
    df = tables.prepare(frame)
    out = Path(out_dir)
    for sub in ("static", "data", "plots"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for name in STATIC_FILES:
        shutil.copyfile(HERE / "static" / name, out / "static" / name)
    _write(out / "cells.csv", frame.to_csv(index=False, lineterminator="\n"))
    _write(out / "cells.json", _records_json(records))

    site = _Site(out, df, by_key, results)
    site.index()
    site.claim()
    for name in sorted(df["defense"].unique()):
        site.defense(name)
    for name in sorted(df["model"].unique()):
        site.model(name)
    for name in site.profiles.hrefs:
        profiles.page(site, name)
    return out / "index.html"


def _load(results: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], pd.DataFrame]:
    """The store's records in key order, the same by key, and their frame (`records_frame`)."""
    records = sorted(ResultsStore(results).records(), key=lambda r: r["key"])
    return records, {r["key"]: r for r in records}, records_frame(records)


def ranked_frames(df: pd.DataFrame, by_key: dict[str, dict[str, Any]]) -> tuple[Any, ...]:
    """What every comparison reads, the site's and the README's alike: the roles, the ranked
    suite's cells with each cell's seeds merged into one row (interval over seeds, then
    images), the note saying which cells rank, and the worst-over-attacks and clean-quality
    frames computed from the merged rows (a worst case taken over seeds apart would be the
    luckiest seed's)."""
    who = roles.from_frame(df)
    ranked, note = agg.ranked_cells(df, who.suite)
    ranked = seeds.combine_seeds(ranked, by_key)
    return who, ranked, note, agg.scopes(ranked), agg.clean_quality(ranked, who.reference)


def readme_claim(results_dir: str | Path) -> str:
    """The README's claim section for a results store, from the frames the site's claim page reads."""
    results = Path(results_dir)
    records, by_key, frame = _load(results)
    who, ranked, _, scoped, quality = ranked_frames(tables.prepare(frame), by_key)
    return claim.markdown(ranked, profiles.Profiles(results, records).note, scoped=scoped, quality=quality, roles=who)


class _Site:
    """What every page shares: the frame, the links between pages, the template env."""

    def __init__(self, out: Path, df: pd.DataFrame, by_key: dict[str, dict[str, Any]], results: Path) -> None:
        self.out, self.df, self.by_key, self.results = out, df, by_key, results
        self.roles, self.ranked, self.suite_note, self.scoped, self.quality = ranked_frames(df, by_key)
        self.profiles = profiles.Profiles(results, list(by_key.values()))  # the layer profiles, if any
        self.hrefs = {"defense": {d: f"defense-{slug(d)}.html" for d in sorted(df["defense"].unique())},
                      "model": {m: f"model-{slug(m)}.html" for m in sorted(df["model"].unique())},
                      "profile": self.profiles.hrefs}
        self.env = _env()
        self.mos_label, self.mos_pairs = tables.mos_names(df)

    def _page(self, page: str, template: str, rows: pd.DataFrame, data: pd.DataFrame, title: str, **ctx: Any) -> None:
        """Write `page`.html with its data/<page>.csv and .json (the rows shown) and the
        provenance of the cells behind them."""
        data.to_csv(self.out / "data" / f"{page}.csv", index=False, lineterminator="\n")
        _write(self.out / "data" / f"{page}.json", _json_frame(data))
        html = self.env.get_template(template).render(
            title=title, version=__version__, provenance=tables.provenance(rows), data_name=page,
            hrefs=self.hrefs, mos_label=self.mos_label, mos_pairs=self.mos_pairs,
            suite_note=self.suite_note, clean_reference=self.roles.reference, **ctx)
        _write(self.out / f"{page}.html", html)

    def index(self) -> None:
        columns, rows = tables.leaderboard(self.ranked, self.scoped, self.quality, self.roles.reference)
        cells = tables.payload(tables.CELL_COLUMNS, tables.cell_rows(self.df), self.hrefs, tables.cell_class)
        board = tables.payload(columns, rows, self.hrefs, tables.leaderboard_class)
        plot = "plots/gain_vs_eps.png"
        plots.gain_vs_eps(self.scoped[self.scoped["scope"] == agg.ALL_ATTACKS], self.out / plot,
                          line="defense", panel=["model", "dataset"], what="worst attack")
        self._page("index", "index.html.j2", self.df, tables.flat(columns, rows), "IQA adversarial robustness leaderboard",
                   n_cells=len(self.df), status_counts=sorted(self.df["status"].value_counts().items()),
                   filters=tables.filters(self.df), board_columns=columns, board_json=_script_json(board),
                   all_attacks=agg.ALL_ATTACKS, cell_columns=tables.CELL_COLUMNS, cells_json=_script_json(cells),
                   plot=plot, clean_loss=agg.CLEAN_LOSS,
                   data_rows=cards.data_rows(self.by_key.values()), attack_rows=cards.attack_rows(self.by_key.values()))

    def _comparison(self, page: str, groups: list[dict[str, Any]], rows: pd.DataFrame, title: str,
                    plot_df: pd.DataFrame, panel: list[str], **ctx: Any) -> None:
        plot = f"plots/{page}.png"
        plots.gain_vs_eps(plot_df, self.out / plot, line="defense", panel=panel, what="worst attack")
        flat = [{"method": g["method"], "model": g["model"], "dataset": g["dataset"], **r}
                for g in groups for r in g["rows"]]
        eps = sorted({e for g in groups for e in g["eps"]})
        # the claim page's sections are per method: its rows say which
        cols = [tables.Column("method", "")] if any(g["method"] for g in groups) else []
        cols += [tables.Column("model", ""), tables.Column("dataset", ""), tables.Column("defense", ""),
                tables.Column("role", ""), tables.Column("defense_kind", ""),
                tables.Column("srocc_clean", "", "est"), tables.Column("srocc_delta", "", "dec3"),
                tables.Column("plcc_clean", "", "dec3"), tables.Column("flags", "")]
        cols += [tables.Column(f"{m}@{e}", "", "est") for e in eps for m, _ in claim.MEASURES]
        cols += [tables.Column(f"abs_gain_seed_sd@{e}", "", "dec3") for e in eps]  # between seeds; empty for one
        notes = {(g["model"], g["dataset"]): self.profiles.note(g["model"], g["dataset"], [r["defense"] for r in g["rows"]])
                 for g in groups}
        self._page(page, "compare.html.j2", rows, tables.flat(cols, flat), title, groups=groups, plot=plot,
                   measures=claim.MEASURES, clean_loss=agg.CLEAN_LOSS, profile_notes=notes, **ctx)

    def claim(self) -> None:
        groups = claim.tables(self.ranked, scoped=self.scoped, quality=self.quality, roles=self.roles)
        keep = {(g["model"], g["dataset"], r["defense"]) for g in groups for r in g["rows"]}
        s = self.scoped[self.scoped["scope"] == agg.ALL_ATTACKS]
        s = s[pd.MultiIndex.from_frame(s[agg.GROUP]).isin(list(keep))]
        rows = self.df[pd.MultiIndex.from_frame(self.df[agg.GROUP]).isin(list(keep))]
        methods = []
        for c in self.roles.claims:
            meta = next((r["meta"]["defense"] for r in self.by_key.values()
                         if r["cell"]["defense"] == c.method and r.get("meta", {}).get("defense")), {})
            methods.append({"name": c.method, "rivals": c.rivals, "controls": c.controls,
                            "description": str(meta.get("description", "")),
                            "url": external_url(str(meta.get("reference", "")))})
        self._comparison("claim", groups, rows, "The claim: each method against its rivals", s, ["model", "dataset"],
                         claim_page=True, methods=methods, several=len(methods) > 1, rule=self.roles.rule)

    def model(self, name: str) -> None:
        groups = claim.tables(self.ranked, model=name, claim_only=False, scoped=self.scoped, quality=self.quality,
                              roles=self.roles)
        s = self.scoped[(self.scoped["scope"] == agg.ALL_ATTACKS) & (self.scoped["model"] == name)]
        rows = self.df[self.df["model"] == name]
        recs = [self.by_key[k] for k in rows["key"]]
        defense_origins = {d: "; ".join(cards.origins([r for r in recs if r["cell"]["defense"] == d], "defense"))
                           for d in sorted(rows["defense"].unique())}
        self._comparison(f"model-{slug(name)}", groups, rows, f"Model {name}", s, ["dataset"], claim_page=False,
                         card=cards.model_card(recs), defense_origins=defense_origins)

    def defense(self, name: str) -> None:
        rows = self.df[self.df["defense"] == name]
        page = f"defense-{slug(name)}"
        recs = [self.by_key[k] for k in rows["key"]]
        meta = next((r["meta"]["defense"] for r in recs if r.get("meta", {}).get("defense")), {})
        params = parameter_sets(recs, "defense")
        s = self.scoped[(self.scoped["defense"] == name) & (self.scoped["scope"] != agg.ALL_ATTACKS)]
        curve, hist = f"plots/{page}-gain.png", f"plots/{page}-shift.png"
        plots.gain_vs_eps(s, self.out / curve, line="scope", panel=["model", "dataset"], what="per attack",
                          max_panels=DEFENSE_PANELS, legend="attack")
        plots.score_shift(shifts(rows, self.by_key), self.out / hist)
        cells = tables.payload(tables.CELL_COLUMNS, tables.cell_rows(rows), self.hrefs, tables.cell_class)
        self._page(page, "defense.html.j2", rows, rows, f"Defense {name}", name=name, meta=meta,
                   reference=external_url(str(meta.get("reference", ""))), params=params, curve=curve, hist=hist,
                   origins=cards.origins(recs, "defense"),
                   example=copy_example(rows, self.by_key, self.results, self.out), n_cells=len(rows),
                   filters=tables.filters(rows), cell_columns=tables.CELL_COLUMNS, cells_json=_script_json(cells))


def parameter_sets(recs: list[dict[str, Any]], part: str) -> dict[str, Any]:
    """The parameters `part` (defense, model, ...) ran with, as the records' configs hold
    them (the site imports no plugin, so it shows only what the store has): each distinct
    set with its number of cells, and every parameter name, for a table with one column
    per set. `recorded` is False where no record holds its parameters."""
    counts: dict[str, int] = {}
    for r in recs:
        conf = (r.get("config") or {}).get(part) or {}
        if isinstance(conf, dict) and isinstance(conf.get("params"), dict):
            key = json.dumps(conf["params"], sort_keys=True, default=str)
            counts[key] = counts.get(key, 0) + 1
    sets = [{"cells": n, "values": {k: json.dumps(v, default=str) for k, v in json.loads(key).items()}}
            for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    names = sorted({k for s in sets for k in s["values"]})
    return {"recorded": bool(counts), "sets": sets, "names": names}


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["fmt"] = _fmt
    return env


def _fmt(v: Any, kind: str = "text") -> str:
    """Display form shared with site.js: 3 decimals, an en dash where there is no number."""
    if kind == "text":
        return tables.text(v)
    if kind == "est":
        v = None if v is None else v[0]
    n = tables.number(v)
    if n is None:
        return "\u2013"
    return f"{n:.3f}" if kind in ("dec3", "est") else str(n)  # 8.0 shows as 8, as in site.js


def _script_json(obj: Any) -> Markup:
    """JSON safe inside <script type="application/json">: no "<", ">" or "&" can close the tag."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _json_frame(df: pd.DataFrame) -> str:
    """Rows as standard JSON objects (NaN as null), keys in column order."""
    return df.to_json(orient="records", indent=1, force_ascii=False) + "\n"


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
