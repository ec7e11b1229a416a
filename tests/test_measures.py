"""The measures on known inputs: gains, the MSU robustness score, bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.measures import bootstrap_ci, cell_metrics, gains, per_image, robustness_score

MOS = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 0.2, 0.4, 0.6, 0.8, 1.0])
CLEAN = np.array([1.0, 3.0, 5.0, 7.0, 9.0, 2.0, 4.0, 6.0, 8.0, 10.0])  # f = (s - 1) / 9


def test_gains_known_values() -> None:
    attacked = CLEAN + 0.9  # every scaled score up by 0.1
    abs_gain, rel_gain = gains(CLEAN, attacked, lower_better=False)
    assert abs_gain == pytest.approx(0.1)
    f = (CLEAN - 1) / 9
    assert rel_gain == pytest.approx(np.mean(0.1 / (f + 1)))


def test_robustness_score_known_value() -> None:
    # f = 0 or 1 leaves room 1; a shift of 0.1 (scaled) is one order of magnitude below it.
    clean, attacked = np.array([0.0, 9.0]), np.array([0.9, 8.1])
    assert robustness_score(clean, attacked, lower_better=False) == pytest.approx(math.log10(1 / (0.1 + 1e-6)))
    # room is max(1 - f, f): f = 0.25 has room 0.75; shift 0.075 -> log10(10) = 1 up to e.
    clean, attacked = np.array([0.0, 1.0, 4.0]), np.array([0.0, 1.3, 4.0])
    terms = per_image(clean, attacked, lower_better=False)["robustness_score"]
    assert terms[1] == pytest.approx(math.log10(0.75 / (0.075 + 1e-6)))
    assert terms[0] == pytest.approx(math.log10(1 / 1e-6))  # unmoved: bounded by e


def test_lower_better_is_oriented() -> None:
    """A lower-better model scored by -s must give the same measures as s, correlations included."""
    attacked = CLEAN + np.linspace(0.1, 2.0, len(CLEAN))
    up = cell_metrics(MOS, CLEAN, attacked, False, 30.0, 0.9, mos_lower_better=False)
    down = cell_metrics(MOS, -CLEAN, -attacked, True, 30.0, 0.9, mos_lower_better=False)
    for k, v in up.items():  # the MOS map is a numerical fit: the same to a few parts in a million
        if k.startswith("rel_gain_classic"):  # raw scores by design: defined on positive ones only
            assert math.isnan(down[k]) and not math.isnan(v), k
            continue
        assert down[k] == pytest.approx(v, rel=1e-6 if not k.startswith("mos_gain") else 1e-4), k
    assert up["abs_gain"] > 0 and up["srocc_clean"] == pytest.approx(1.0)
    # Pushing a lower-better score *up* is a failed attack: negative gain.
    assert cell_metrics(MOS, -CLEAN, -CLEAN + 1.0, True, 30.0, 0.9, mos_lower_better=False)["abs_gain"] < 0


def test_intervals_contain_the_estimate_and_are_reproducible() -> None:
    rng = np.random.default_rng(3)
    mos = rng.random(40)
    clean = mos + rng.normal(0, 0.2, 40)
    attacked = clean + rng.random(40) * 0.5
    m = cell_metrics(mos, clean, attacked, False, 30.0, 0.9, mos_lower_better=False)
    for k in ("abs_gain", "rel_gain", "robustness_score", "srocc_clean", "wasserstein_score", "energy_score"):
        lo, hi = m[f"{k}_ci_lo"], m[f"{k}_ci_hi"]
        assert lo < m[k] < hi, (k, lo, m[k], hi)
        assert hi - lo < 0.5 * abs(m[k]) + 0.5, k  # an interval, not the whole line
    again = cell_metrics(mos, clean, attacked, False, 30.0, 0.9, mos_lower_better=False)  # fixed seed
    assert again.keys() == m.keys() and all(np.array_equal(again[k], m[k], equal_nan=True) for k in m)


def test_interval_narrows_with_more_images() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.normal(0, 1, 10), rng.normal(0, 1, 400)
    w_small = np.subtract(*bootstrap_ci((small,), np.mean)[::-1])
    w_large = np.subtract(*bootstrap_ci((large,), np.mean)[::-1])
    assert w_large < w_small / 3


def test_degenerate_samples() -> None:
    assert bootstrap_ci((np.full(8, 0.25),), np.mean) == (0.25, 0.25)
    assert all(math.isnan(v) for v in bootstrap_ci((np.array([1.0, 2.0]),), np.mean))
    m = cell_metrics(MOS, np.ones(10), np.ones(10), False, 100.0, 1.0, mos_lower_better=False)
    assert math.isnan(m["srocc_clean"]) and math.isnan(m["srocc_clean_ci_lo"])
    assert m["abs_gain"] == 0 and m["abs_gain_ci_lo"] == m["abs_gain_ci_hi"] == 0
    for k in ("wasserstein_score", "energy_score"):  # unmoved: 0, and so is every resample
        assert m[k] == 0 and m[f"{k}_ci_lo"] == m[f"{k}_ci_hi"] == 0


def test_msu_distance_scores_match_a_hand_computation() -> None:
    # scaled clean scores X = {0, 0.5, 1}, attacked Y = {0.1, 0.6, 1}
    clean, attacked = np.array([0.0, 5.0, 10.0]), np.array([1.0, 6.0, 10.0])
    m = cell_metrics(np.array([0.0, 0.5, 1.0]), clean, attacked, False, 30.0, 0.9, mos_lower_better=False)
    # W1 of equal-size samples: mean gap between sorted values, (0.1 + 0.1 + 0) / 3
    assert m["wasserstein_score"] == pytest.approx(0.2 / 3)
    # 2 E|X-Y| - E|X-X'| - E|Y-Y'| over all 9 pairs each: 2 * 4.0/9 - 4.0/9 - 3.6/9 = 0.4/9
    assert m["energy_score"] == pytest.approx(math.sqrt(0.4 / 9))
    # pushed down instead: the same distances, negative
    down = cell_metrics(np.array([0.0, 0.5, 1.0]), clean, np.array([0.0, 4.0, 9.0]), False, 30.0, 0.9,
                        mos_lower_better=False)
    assert down["wasserstein_score"] == pytest.approx(-0.2 / 3)
    assert down["energy_score"] < 0


def test_classic_relative_gain_on_raw_scores() -> None:
    clean, attacked = np.array([2.0, 4.0, 5.0]), np.array([3.0, 2.0, 5.0])  # +1/2, -2/4, 0
    assert per_image(clean, attacked, False)["rel_gain_classic"] == pytest.approx([0.5, -0.5, 0.0], abs=1e-6)
    assert per_image(clean, attacked, True)["rel_gain_classic"] == pytest.approx([-0.5, 0.5, 0.0], abs=1e-6)
    # a clean score at or below 0 has no relative change: NaN, never a flipped sign
    terms = per_image(np.array([-1.0, 0.0, 2.0]), np.array([1.0, 1.0, 3.0]), False)["rel_gain_classic"]
    assert np.isnan(terms[:2]).all() and terms[2] == pytest.approx(0.5, abs=1e-6)


def test_vectorized_srocc_matches_scipy() -> None:
    """The bootstrap's SROCC (ranks, then Pearson, along an axis) is scipy's spearmanr, ties included."""
    from scipy import stats

    from bench.measures import _srocc

    rng = np.random.default_rng(5)
    a = rng.integers(0, 6, size=(7, 30)).astype(float)  # many ties
    b = a + rng.normal(0, 2, size=a.shape)
    got = _srocc(a, b, axis=-1)
    want = [stats.spearmanr(x, y).statistic for x, y in zip(a, b)]
    assert np.allclose(got, want)


@pytest.mark.parametrize("model_lower, mos_lower", [(False, False), (False, True), (True, False), (True, True)])
def test_correlations_oriented_by_model_and_dataset(model_lower: bool, mos_lower: bool) -> None:
    """Known answers for each direction pair: a model that ranks 12 images as the raters do
    but for one adjacent swap has SROCC 1 - 6*2/(12*143) = 142/143 whatever the two scales
    are, and one that ranks them the other way round -142/143. (True quality q; the dataset
    stores q, or -q as a DMOS; the model outputs q, or -q if lower is better.)"""
    quality = np.arange(1.0, 13.0)
    judged = quality.copy()
    judged[[4, 5]] = judged[[5, 4]]
    mos = -quality if mos_lower else quality
    agreeing = -judged if model_lower else judged
    for pred, expected in ((agreeing, 142 / 143), (-agreeing, -142 / 143)):
        m = cell_metrics(mos, pred, pred, model_lower, 30.0, 0.9, mos_lower_better=mos_lower)
        assert m["srocc_clean"] == pytest.approx(expected) and m["srocc_attacked"] == pytest.approx(expected)
        assert np.sign(m["plcc_clean"]) == np.sign(expected) and abs(m["plcc_clean"]) > 0.98
        assert m["srocc_clean_ci_lo"] <= m["srocc_clean"] <= m["srocc_clean_ci_hi"]


# ----------------------------------------------------------------------------- gain in MOS units
def _logistic_world(n: int = 40, seed: int = 0):
    """Scores of a model whose true map to MOS is a known logistic (MOS 1..5)."""
    from bench.measures import logistic4

    rng = np.random.default_rng(seed)
    clean = np.sort(rng.uniform(-3, 3, n))
    return clean, logistic4(clean, 5.0, 1.0, 0.0, 1.0), (lambda s: logistic4(s, 5.0, 1.0, 0.0, 1.0))


def test_mos_gain_is_the_change_in_mapped_mos_whatever_the_score_scale():
    clean, mos, truth = _logistic_world()
    attacked = clean + 0.5
    want = float(np.mean(truth(attacked) - truth(clean)))
    m = cell_metrics(mos, clean, attacked, False, 30.0, 0.9, mos_lower_better=False)
    assert m["mos_gain"] == pytest.approx(want, abs=1e-3)
    assert m["mos_gain_ci_lo"] < m["mos_gain"] < m["mos_gain_ci_hi"]
    # the same shift in quality from a model with a ten-times narrower score spread: the
    # normalised gain is unchanged by the rescale, and so is the gain in MOS units
    narrow = cell_metrics(mos, clean / 10, attacked / 10, False, 30.0, 0.9, mos_lower_better=False)
    assert narrow["mos_gain"] == pytest.approx(want, abs=1e-3)
    # a lower-better model (scores negated) moved towards better quality gains the same
    lower = cell_metrics(mos, -clean, -attacked, True, 30.0, 0.9, mos_lower_better=False)
    assert lower["mos_gain"] == pytest.approx(want, abs=1e-3)


def test_mos_gain_is_positive_for_better_quality_on_a_dmos_scale_too():
    clean, mos, _ = _logistic_world()
    up = cell_metrics(mos, clean, clean + 0.5, False, 30.0, 0.9, mos_lower_better=False)["mos_gain"]
    # the same images on a DMOS scale (6 - MOS): a model agreeing with the raters scores lower-better there
    dmos = cell_metrics(6.0 - mos, clean, clean + 0.5, False, 30.0, 0.9, mos_lower_better=True)["mos_gain"]
    assert up > 0.1 and dmos == pytest.approx(up, abs=1e-3)


def test_mos_gain_is_nan_where_no_map_can_be_fitted():
    m = cell_metrics(np.linspace(1, 5, 10), np.ones(10), np.ones(10) + 0.1, False, 30.0, 0.9, mos_lower_better=False)
    assert math.isnan(m["mos_gain"]) and math.isnan(m["mos_gain_ci_lo"])


def test_distance_intervals_contain_their_estimate_where_a_bootstrap_is_biased_above_it() -> None:
    # a near-constant shift: every bootstrap resample repeats images, which lifts an energy
    # distance above the estimate (its percentile interval missed it, its BCa was undefined)
    rng = np.random.default_rng(0)
    clean = np.linspace(0.0, 1.0, 30)
    attacked = clean + 0.1 + rng.normal(0, 0.001, 30)
    m = cell_metrics(clean, clean, attacked, False, 30.0, 0.9, mos_lower_better=False)
    for k in ("wasserstein_score", "energy_score"):
        assert m[f"{k}_ci_lo"] < m[k] < m[f"{k}_ci_hi"], (k, m[f"{k}_ci_lo"], m[k], m[f"{k}_ci_hi"])


def test_defenses_benchmark_measures_match_a_hand_computation() -> None:
    from bench.defense_measures import defense_measures

    undefended, attacked = np.array([1.0, 3.0, 5.0]), np.array([2.0, 3.0, 3.0])  # range 4
    similarity = np.array([1.5, 2.0, 2.5])
    m = defense_measures(undefended, attacked, similarity)
    assert m["robust_gain"] == pytest.approx((1 / 4 + 0 + 2 / 4) / 3)
    assert m["purified_similarity"] == pytest.approx(2.0)
    for k in ("robust_gain", "purified_similarity"):
        assert m[f"{k}_ci_lo"] <= m[k] <= m[f"{k}_ci_hi"]
    flat = defense_measures(np.ones(3), attacked, similarity)  # a constant undefended model cannot be scaled
    assert math.isnan(flat["robust_gain"]) and math.isnan(flat["robust_gain_ci_lo"])


def test_attacked_srocc_has_its_interval_signed_like_the_estimate() -> None:
    attacked = np.array([5.0, 3.0, 1.0, 7.0, 9.0, 2.0, 10.0, 6.0, 8.0, 4.0])  # the attack scrambled the ranking
    for mos_lower in (False, True):
        m = cell_metrics(MOS, CLEAN, attacked, False, 30.0, 0.9, mos_lower_better=mos_lower)
        assert m["srocc_attacked_ci_lo"] < m["srocc_attacked"] < m["srocc_attacked_ci_hi"]
        assert np.sign(m["srocc_attacked"]) == (-1 if mos_lower else 1)
