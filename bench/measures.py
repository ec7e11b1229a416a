"""What every cell measures.

Correlation with the dataset's opinion scores (SROCC, PLCC, via scipy; signed by the
model's and the dataset's score directions both, so that agreeing with the raters is
positive on MOS and DMOS datasets alike), the attack's
gain, the MSU robustness score, and how visible the perturbation is (PSNR, SSIM, via
pyiqa). Gains are read on scores min-max scaled by the cell's own clean scores and
oriented so that a positive gain means the attack moved the score in the model's
"better" direction:

    f(s)     = (s - min clean) / (max clean - min clean)      (1 - that for lower-better)
    abs_gain = mean(f(s*) - f(s))
    rel_gain = mean((f(s*) - f(s)) / (f(s) + 1))
    R        = mean(log10(max(1 - f(s), f(s) - 0) / (|f(s*) - f(s)| + 1e-6)))

    rel_gain_classic = mean(o (s* - s) / (s + 1e-6))        (o = -1 for lower-better, else 1)
    wasserstein_score = W1(f(s), f(s*)) * sign(mean f(s*) - mean f(s))
    energy_score      = D_E(f(s), f(s*)) * sign(mean f(s*) - mean f(s))

R is the robustness score of Antsiferova et al., "Comparing the robustness of modern
no-reference image- and video-quality metrics to adversarial attacks" (AAAI 2024,
arXiv 2310.06958), with the constants of their code (beta1 = 1, beta2 = 0, e = 1e-6 in
msu-video-group/MSU_Metrics_Robustness_Benchmark, robustness_benchmark/score_methods.py):
how many orders of magnitude smaller the score shift is than the room the score had to
move; higher is more robust, and it does not depend on the direction of the shift. The
other three complete that benchmark's six measures, after the same code: the classic
relative gain on raw scores (defined for positive scores only: NaN where a clean score is
not, rather than a sign that flips), and two distances between the clean and the attacked
score distributions (scipy's `wasserstein_distance` and `energy_distance` on the scaled
scores, written here in closed form for equal-size samples so that the bootstrap can
vectorize them), signed by the direction of the mean shift.

The normalised gains divide by each cell's own clean-score range, so a defense whose
fine-tune narrows the spread of scores shows a larger gain for the same change in quality.
`mos_gain` reads the shift on the dataset's own scale instead: each cell's scores are
mapped to MOS by the field's usual monotonic fit on the clean test scores (VQEG's
four-parameter logistic, Q(s) = b2 + (b1 - b2) / (1 + exp(-(s - b3) / b4)), least squares
by scipy), and the gain is mean(Q(s*) - Q(s)) in MOS units, signed so that positive means
the predicted quality went up (on a DMOS scale, down). Where the fit does not converge it is
NaN, never a substitute.

Each of abs_gain, rel_gain, rel_gain_classic, R, mos_gain, clean and attacked SROCC comes with a 95%
bootstrap interval over the cell's images (`<key>_ci_lo`, `<key>_ci_hi`): BCa, 1000 resamples, a fixed seed, so
that the same scores always give the same interval. The two distance scores take the
delete-one jackknife's normal interval instead: a bootstrap resample repeats images, and
repeated values shrink the within-sample spread that a distance between distributions
subtracts, so resampled distances sit above the estimate (measured: an energy distance of
0.138 on 30 images gave a percentile interval of [0.147, 0.174], and no BCa interval at
all). This module imports no torch (the images' fidelity is `bench.defense_measures`), so the
site can use the formulas here without it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    from torch import Tensor

# 2: MSU robustness score and bootstrap intervals; 3: correlations signed by the dataset's direction too;
# 4: the gain in MOS units; 5: the MSU benchmark's other three (classic relative gain, Wasserstein and
# energy-distance scores); 6: the defenses benchmark's robust gain and purified similarity, attacked SROCC's interval
MEASURES_VERSION = "6"
CI_LEVEL = 0.95
CI_RESAMPLES = 1000  # ~1 ms per mean and ~10 ms per SROCC interval at 64 images
CI_SEED = 0
R_EPS = 1e-6  # the MSU code's e: keeps R finite where the score did not move
CLASSIC_EPS = 1e-6  # the MSU code's eps of the classic relative gain


def agreement_sign(model_lower_better: bool, mos_lower_better: bool) -> float:
    """+1 where a model that agrees with the raters correlates positively with the scores
    as stored, -1 where exactly one of the two scales runs the other way (a higher-better
    model against LIVE's or CSIQ's DMOS, a lower-better one like PIQE against a MOS)."""
    return -1.0 if model_lower_better != mos_lower_better else 1.0


def correlations(pred: np.ndarray, mos: np.ndarray, model_lower_better: bool,
                 mos_lower_better: bool) -> tuple[float, float]:
    """SROCC and PLCC, signed by both score directions so that a model agreeing with the
    raters scores positive whatever way the model and the dataset count quality."""
    if len(pred) < 3 or np.ptp(pred) == 0 or np.ptp(mos) == 0:
        return math.nan, math.nan
    sign = agreement_sign(model_lower_better, mos_lower_better)
    return sign * float(stats.spearmanr(pred, mos).statistic), sign * float(stats.pearsonr(pred, mos).statistic)


def scaled(scores: np.ndarray, clean: np.ndarray, lower_better: bool) -> np.ndarray:
    lo, hi = float(clean.min()), float(clean.max())
    f = (scores - lo) / (hi - lo if hi > lo else 1.0)
    return 1.0 - f if lower_better else f


def per_image(clean: np.ndarray, attacked: np.ndarray, lower_better: bool) -> dict[str, np.ndarray]:
    """Each image's oriented shift, relative shift and robustness term; the cell's
    measures are their means (kept apart so that the bootstrap resamples images)."""
    clean, attacked = np.asarray(clean, dtype=float), np.asarray(attacked, dtype=float)
    fc, fa = scaled(clean, clean, lower_better), scaled(attacked, clean, lower_better)
    shift = fa - fc
    room = np.maximum(1.0 - fc, fc - 0.0)  # symmetric in f -> 1 - f: direction-free
    with np.errstate(divide="ignore", invalid="ignore"):
        classic = np.where(clean > 0, (attacked - clean) / (clean + CLASSIC_EPS), math.nan)
    return {"abs_gain": shift, "rel_gain": shift / (fc + 1.0), "rel_gain_classic": -classic if lower_better else classic,
            "robustness_score": np.log10(room / (np.abs(shift) + R_EPS))}


def _signed(distance: np.ndarray, fc: np.ndarray, fa: np.ndarray, axis: int) -> np.ndarray:
    return distance * np.sign(np.mean(fa, axis=axis) - np.mean(fc, axis=axis))


def wasserstein_score(fc: np.ndarray, fa: np.ndarray, axis: int = -1) -> np.ndarray:
    """W1 between the clean and attacked scaled scores, signed by the mean shift: for two
    samples of one size, the mean distance between their sorted values (= scipy's
    wasserstein_distance), along `axis` so that bootstrap resamples run at once."""
    d = np.mean(np.abs(np.sort(fa, axis=axis) - np.sort(fc, axis=axis)), axis=axis)
    return _signed(d, fc, fa, axis)


def _pair_sum(z: np.ndarray) -> np.ndarray:
    """Sum of |z_i - z_j| over the unordered pairs of the last axis, from the sorted
    values (sum_k (2k - m - 1) z_(k)): O(m log m) memory-light, where the pairwise
    matrix of 1000 resamples of 1000 images would take gigabytes."""
    m = z.shape[-1]
    return np.sum(np.sort(z, axis=-1) * (2 * np.arange(1, m + 1) - m - 1), axis=-1)


def energy_score(fc: np.ndarray, fa: np.ndarray, axis: int = -1) -> np.ndarray:
    """The energy distance (scipy's energy_distance: sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|))
    between the clean and attacked scaled scores, signed by the mean shift; along `axis`."""
    x, y = np.moveaxis(fc, axis, -1), np.moveaxis(fa, axis, -1)
    n, m = x.shape[-1], y.shape[-1]
    sx, sy = _pair_sum(x), _pair_sum(y)
    cross = (_pair_sum(np.concatenate([x, y], axis=-1)) - sx - sy) / (n * m)
    d = np.sqrt(np.maximum(2 * cross - 2 * sx / n**2 - 2 * sy / m**2, 0.0))
    return _signed(d, x, y, -1)


DISTANCES = {"wasserstein_score": wasserstein_score, "energy_score": energy_score}


def gains(clean: np.ndarray, attacked: np.ndarray, lower_better: bool) -> tuple[float, float]:
    p = per_image(clean, attacked, lower_better)
    return float(np.mean(p["abs_gain"])), float(np.mean(p["rel_gain"]))


def robustness_score(clean: np.ndarray, attacked: np.ndarray, lower_better: bool) -> float:
    """MSU robustness score R (see the module docstring); higher is more robust."""
    return float(np.mean(per_image(clean, attacked, lower_better)["robustness_score"]))


def logistic4(s: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG's monotonic map from a model's scores to MOS (b4 < 0: a lower-better model)."""
    with np.errstate(over="ignore"):
        return b2 + (b1 - b2) / (1.0 + np.exp(-(s - b3) / b4))


def mos_map(clean: np.ndarray, mos: np.ndarray) -> Callable[[np.ndarray], np.ndarray] | None:
    """The logistic fitted from clean scores to MOS (None: too few images, a constant
    side, or no convergence). Started where VQEG starts it: the MOS extremes, the scores'
    mean, their spread signed by the rank correlation."""
    from scipy.optimize import curve_fit

    if len(clean) < 5 or np.ptp(clean) == 0 or np.ptp(mos) == 0:
        return None
    sign = 1.0 if stats.spearmanr(clean, mos).statistic >= 0 else -1.0
    start = [float(mos.max()), float(mos.min()), float(np.mean(clean)), sign * float(np.std(clean)) / 4]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            b, _ = curve_fit(logistic4, clean, mos, p0=start, maxfev=20000)
    except (RuntimeError, ValueError):
        return None
    if not np.all(np.isfinite(b)):
        return None
    return lambda s: logistic4(np.asarray(s, dtype=float), *b)


def mos_shift(clean: np.ndarray, attacked: np.ndarray, mos: np.ndarray, mos_lower_better: bool) -> np.ndarray:
    """Each image's change in predicted MOS, signed so that up in quality is positive;
    NaN throughout where no map could be fitted."""
    q = mos_map(clean, mos)
    if q is None:
        return np.full(len(clean), math.nan)
    shift = q(attacked) - q(clean)
    return -shift if mos_lower_better else shift


def _srocc(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's rho along an axis (Pearson of average ranks, as scipy's spearmanr),
    vectorized over resamples: 1000 spearmanr calls would take 0.2 s per cell."""
    return stats.pearsonr(stats.rankdata(a, axis=axis), stats.rankdata(b, axis=axis), axis=axis).statistic


def bootstrap_ci(data: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray]) -> tuple[float, float]:
    """95% BCa interval over images; a constant sample gives its value as both ends,
    a statistic undefined on the sample (too few images, constant scores) NaN."""
    n = len(data[0])
    if n < 3 or any(not np.all(np.isfinite(d)) for d in data):
        return math.nan, math.nan
    if len(data) == 1 and np.ptp(data[0]) == 0:
        v = float(data[0][0])
        return v, v
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # degenerate resamples: NaN, handled below
        res = stats.bootstrap(data, statistic, n_resamples=CI_RESAMPLES, confidence_level=CI_LEVEL,
                              method="BCa", paired=len(data) > 1, vectorized=True, rng=CI_SEED)
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else (math.nan, math.nan)


def jackknife_ci(data: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray]) -> tuple[float, float]:
    """95% normal interval from the delete-one jackknife's standard error, for statistics
    that resampling with repeats biases (the distance scores); NaN below 3 images."""
    n = len(data[0])
    if n < 3 or any(not np.all(np.isfinite(d)) for d in data):
        return math.nan, math.nan
    keep = np.array([np.delete(np.arange(n), i) for i in range(n)])  # (n, n - 1): image i left out
    loo = statistic(*(d[keep] for d in data), axis=-1)
    se = math.sqrt((n - 1) / n * float(np.sum((loo - loo.mean()) ** 2)))
    est, z = float(statistic(*data)), float(stats.norm.ppf(0.5 + CI_LEVEL / 2))
    return est - z * se, est + z * se


def cell_metrics(
    mos: np.ndarray, clean: np.ndarray, attacked: np.ndarray, lower_better: bool, psnr: float, ssim: float,
    *, mos_lower_better: bool,
) -> dict[str, float]:
    """Every measure of one cell. `lower_better` is the model's direction (it orients the
    gains), `mos_lower_better` the dataset's (with the model's, it signs the correlations)."""
    mos, clean, attacked = (np.asarray(v, dtype=float) for v in (mos, clean, attacked))
    s_c, p_c = correlations(clean, mos, lower_better, mos_lower_better)
    s_a, p_a = correlations(attacked, mos, lower_better, mos_lower_better)
    p = {**per_image(clean, attacked, lower_better), "mos_gain": mos_shift(clean, attacked, mos, mos_lower_better)}
    out: dict[str, float] = {
        "n_images": len(mos),
        "srocc_clean": s_c, "srocc_attacked": s_a, "plcc_clean": p_c, "plcc_attacked": p_a,
        **{k: float(np.mean(v)) for k, v in p.items()}, "psnr": psnr, "ssim": ssim,
    }
    for k, v in p.items():
        out[f"{k}_ci_lo"], out[f"{k}_ci_hi"] = bootstrap_ci((v,), np.mean)
    fc, fa = scaled(clean, clean, lower_better), scaled(attacked, clean, lower_better)
    for k, distance in DISTANCES.items():
        out[k] = float(distance(fc, fa))
        out[f"{k}_ci_lo"], out[f"{k}_ci_hi"] = jackknife_ci((fc, fa), distance)
    sign = agreement_sign(lower_better, mos_lower_better)
    for key, scores, s in (("srocc_clean", clean, s_c), ("srocc_attacked", attacked, s_a)):
        lo, hi = (math.nan, math.nan) if math.isnan(s) else bootstrap_ci((scores, mos), _srocc)
        out[f"{key}_ci_lo"], out[f"{key}_ci_hi"] = sorted((sign * lo, sign * hi))
    return out


def certified(bounds: Tensor, attacked: Tensor) -> dict[str, float]:
    """What a certified defense guarantees at this eps (`bounds`: a [lo, hi] score interval per
    image), beside what the attack reached. An interval with an infinite end guarantees
    nothing: it is counted as vacuous, and the means are over the finite (informative)
    intervals only (NaN where none is). Tensor methods only: this module imports no torch."""
    lo, hi = bounds[:, 0], bounds[:, 1]
    finite = lo.isfinite() & hi.isfinite()
    inside = ((attacked >= lo - 1e-6) & (attacked <= hi + 1e-6)).float()

    def mean(t: Tensor) -> float:
        return float(t[finite].mean()) if finite.any() else math.nan

    return {"cert_vacuous": float((~finite).float().mean()), "cert_lo_mean": mean(lo), "cert_hi_mean": mean(hi),
            "cert_width_mean": mean(hi - lo), "cert_attacked_inside": float(inside.mean())}
