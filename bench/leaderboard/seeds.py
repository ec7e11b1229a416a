"""Cells repeated over training seeds, read as one: the mean over seeds, an interval that
covers seeds and images both, and the spread between seeds, kept visible.

Why: an interval over one seed's images says nothing of training noise, and training noise
is what moved the verdicts between runs (the spread between three seeds was 0.06 to 0.14 in
gain, each seed's interval over images about +-0.02). So every interval shown for a cell
repeated over seeds is a two-level (hierarchical) bootstrap: draw seeds with replacement,
then, within each drawn seed, its images with replacement; the statistic is the mean over
the drawn seeds of each one's measure (Field & Welsh's two-stage bootstrap, percentile
interval, a fixed seed so the same records always give the same interval). A cell run with
one seed keeps the interval over its images, and `n_seeds` = 1 says so.

Rows that differ only in their seed are merged; everything else about them (model, defense,
attack, eps, dataset and the rest of their configuration) must match. Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from bench.defense_measures import robust_gain_per_image
from bench.measures import (
    CI_LEVEL,
    CI_RESAMPLES,
    CI_SEED,
    DISTANCES,
    _srocc,
    agreement_sign,
    mos_shift,
    per_image,
)
from bench.record import digest

# the measures read per image, and how each image's value is computed from a record
GAINS = ("abs_gain", "rel_gain", "rel_gain_classic", "robustness_score", "mos_gain", "robust_gain",
         "purified_similarity")
# measured on a seed's whole (clean, attacked) sample, not as a mean over images
PAIRED = (*DISTANCES, "srocc_clean", "srocc_attacked")
SEED_COLUMNS = ["n_seeds", "seeds", *(f"{m}_seed_sd" for m in (*GAINS, *PAIRED)), "abs_gain_per_seed"]


def _vectors(rec: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """Each image's gains and its (clean, MOS) pair, from a record's per-image scores."""
    p = rec.get("per_image") or {}
    if not p.get("clean"):
        return None
    clean, attacked, mos = (np.asarray(p[k], dtype=float) for k in ("clean", "attacked", "mos"))
    lower = bool(rec.get("meta", {}).get("model", {}).get("lower_better"))
    mos_lower = bool(rec.get("meta", {}).get("dataset", {}).get("mos_lower_better"))
    out = dict(per_image(clean, attacked, lower))
    out["mos_gain"] = mos_shift(clean, attacked, mos, mos_lower)
    nan = np.full(len(clean), math.nan)  # records of measures 5 and before lack the defenses benchmark's two
    out["robust_gain"] = robust_gain_per_image(np.asarray(p["undefended"]), attacked) if p.get("undefended") else nan
    out["purified_similarity"] = np.asarray(p["similarity"], dtype=float) if p.get("similarity") else nan
    out["_clean"], out["_attacked"], out["_mos"] = clean, attacked, mos
    out["_sign"] = np.array(agreement_sign(lower, mos_lower))
    return out


def two_level_ci(samples: list[np.ndarray] | list[tuple[np.ndarray, np.ndarray]],
                 statistic: Callable[..., np.ndarray]) -> tuple[float, float]:
    """Percentile interval of mean-over-seeds(statistic(images of a seed)), resampling
    seeds, then images within each; `samples` holds one seed's data each (an array, or a
    pair of paired arrays for a correlation). NaN where a seed's statistic is undefined.
    A seed drawn twice in one resample reuses its image draw: the interval is slightly
    wider than with independent draws, never narrower."""
    rng = np.random.default_rng(CI_SEED)
    n_seeds, stats = len(samples), np.zeros(CI_RESAMPLES)
    picks = rng.integers(0, n_seeds, size=(CI_RESAMPLES, n_seeds))
    for j in range(n_seeds):  # each seed's resampled statistic, CI_RESAMPLES of them
        data = samples[j] if isinstance(samples[j], tuple) else (samples[j],)
        idx = rng.integers(0, len(data[0]), size=(CI_RESAMPLES, len(data[0])))
        with np.errstate(all="ignore"):
            per_seed = statistic(*(d[idx] for d in data))
        stats += (picks == j).sum(axis=1) * per_seed  # weighted by how often the seed was drawn
    stats /= n_seeds
    if not np.all(np.isfinite(stats)):
        return math.nan, math.nan
    tail = (1 - CI_LEVEL) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """Student-t interval of the mean of the seeds' values: their spread holds each seed's
    image noise as well as the training noise. NaN where a value is missing."""
    if len(values) < 2 or not np.all(np.isfinite(values)):
        return math.nan, math.nan
    sem = float(np.std(values, ddof=1)) / math.sqrt(len(values))
    if sem == 0:
        return float(values.mean()), float(values.mean())
    lo, hi = scipy_stats.t.interval(CI_LEVEL, len(values) - 1, loc=float(values.mean()), scale=sem)
    return float(lo), float(hi)


def _setting(rec: Mapping[str, Any]) -> str:
    """The cell's configuration without its seed: what the merged rows share."""
    conf = {k: v for k, v in (rec.get("config") or {}).items() if k != "seed"}
    return digest([rec.get("cell"), conf])


def combine_seeds(df: pd.DataFrame, by_key: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """`df` (bench.store.records_frame) with the ok cells that differ only in their seed
    merged into one row each: measures averaged over seeds, intervals from the two-level
    bootstrap, `n_seeds`, `seeds` ("0,1,2") and each measure's standard deviation between
    seeds (`<measure>_seed_sd`, NaN for one seed). Other rows pass through with n_seeds 1."""
    df = df.copy()
    for c in SEED_COLUMNS:
        df[c] = math.nan
    seeds = df["prov_seed"] if "prov_seed" in df.columns else pd.Series([None] * len(df), index=df.index)
    df["seeds"] = [str(s) if pd.notna(s) else "" for s in seeds]
    df["n_seeds"] = 1
    ok = df[(df["status"] == "ok") & df["key"].isin(by_key)]
    if ok.empty:
        return df
    setting = ok["key"].map(lambda k: _setting(by_key[k]))
    drop, merged = [], []
    for _, g in ok.groupby(setting, sort=False):
        if len(g) < 2:
            continue
        merged.append(_merge(g, by_key))
        drop.extend(g.index)
    if not merged:
        return df
    out = pd.concat([df.drop(index=drop), pd.DataFrame(merged)], ignore_index=True)
    return out.sort_values(["model", "dataset", "defense", "attack", "eps"], kind="stable").reset_index(drop=True)


def _merge(g: pd.DataFrame, by_key: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    g = g.sort_values("prov_seed", kind="stable")
    row = g.iloc[0].to_dict()
    row.update(n_seeds=len(g), seeds=",".join(str(s) for s in g["prov_seed"]),
               flags=";".join(sorted({f for v in g["flags"] for f in str(v).split(";") if f})),
               n_images=int(g["n_images"].sum()))
    numeric = [c for c in g.columns if not c.endswith(("_ci_lo", "_ci_hi")) and pd.api.types.is_float_dtype(g[c])
               and c not in SEED_COLUMNS and not c.startswith("prov_")]
    for c in numeric:
        row[c] = float(g[c].mean())
    vectors = [_vectors(by_key[k]) for k in g["key"]]
    for m in (*GAINS, *PAIRED):
        if m in g.columns:
            row[f"{m}_seed_sd"] = float(g[m].std(ddof=1))
    row["abs_gain_per_seed"] = ",".join(f"{v:.6g}" for v in g["abs_gain"])  # a mark each on the plots
    for m in DISTANCES:  # resampling images biases a distance (bench.measures): over the seeds' values
        if m in g.columns:
            row[f"{m}_ci_lo"], row[f"{m}_ci_hi"] = t_interval(g[m].to_numpy(dtype=float))
    if any(v is None for v in vectors):  # no per-image scores: no interval can cover images
        for m in (*GAINS, "srocc_clean", "srocc_attacked"):
            row[f"{m}_ci_lo"] = row[f"{m}_ci_hi"] = math.nan
        return row
    for m in GAINS:
        row[f"{m}_ci_lo"], row[f"{m}_ci_hi"] = two_level_ci([v[m] for v in vectors], lambda x: x.mean(axis=-1))
    sign = float(vectors[0]["_sign"])
    for m, scores in (("srocc_clean", "_clean"), ("srocc_attacked", "_attacked")):
        lo, hi = two_level_ci([(v[scores], v["_mos"]) for v in vectors], _srocc)
        row[f"{m}_ci_lo"], row[f"{m}_ci_hi"] = sorted((sign * lo, sign * hi))
    return row
