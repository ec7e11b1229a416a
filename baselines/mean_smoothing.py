"""Randomized smoothing with the mean, certified by the Gaussian smoothing's Lipschitz
bound (Salman et al., "Provably Robust Deep Learning via Adversarially Trained Smoothed
Classifiers", NeurIPS 2019, https://arxiv.org/abs/1906.04584, Lemma 2), as applied to a
bounded regression output (Kumar et al., "Certifying Confidence via Randomized Smoothing",
NeurIPS 2020, https://arxiv.org/abs/2009.08061; Chiang et al., NeurIPS 2020, who smooth
with the median instead: `randomized-smoothing`).

The base function is the model's score on the image with Gaussian noise of standard
deviation `sigma` added (clipped to [0, 1]), clipped to the model's declared score range
[a, b] (a model scoring beyond its declared range is cut there: that is part of the base
function the certificate is about). The smoothed score g(x) is its expectation, estimated
at evaluation by the mean of `n` noisy scores. Lemma 2: for any h into [0, 1],
x -> sigma Phi^-1(E h(x + noise)) is 1-Lipschitz in L2, so with p(x) = (g(x) - a) / (b - a),
for ||delta||_2 <= r

    Phi(Phi^-1(p(x)) - r / sigma) <= p(x + delta) <= Phi(Phi^-1(p(x)) + r / sigma).

`certify` bounds p(x) by Hoeffding's inequality on `n_certify` fresh noisy scores, scaled
to [0, 1]: p in [p_hat - t, p_hat + t], t = sqrt(ln(2 / alpha) / (2 n_certify)), wrong with
probability at most alpha (alpha / 2 each end), and puts those ends through the bound above.
The L-inf ball of size eps lies in the L2 ball of radius eps sqrt(d), d = 3 H W values, as
in smoothing.py. An end within 1e-6 (b - a) of the range's own bound says nothing the clip
does not: it is reported infinite (the record counts the interval as vacuous), which only
widens the certificate.

Threat model: white-box, adaptive; the smoothed score is randomized, so attacks average
their gradient over draws (EOT). Defaults as `randomized-smoothing` (sigma 0.12, one of the
paper's levels; alpha 0.001, the paper's), and why they deviate: n = 8 noisy copies per
score and n_certify = 100 (the paper: 100,000) keep a cell affordable on CPU, which makes
Hoeffding's t = 0.19 of the range at alpha 0.001; at the matrices' budgets (2..8 /255) and
96 px images r / sigma is above 4 and the certificate is vacuous, as the record says. The
evaluated score is an n-sample estimate of g, so an attacked score can fall outside g's
certified interval by sampling error alone.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from baselines._smoothing import SmoothedModel, SmoothingDefense, SmoothingParams, l2_radius
from bench.api import DefenseInfo, Field, IQAModel, NotApplicable, register_defense

VACUOUS = 1e-6  # an end this close (in units of b - a) to the score range's bound guarantees nothing


class MeanSmoothedModel(SmoothedModel):
    """The mean of the base model's noisy scores, each clipped to [lo, hi]."""

    def __init__(self, base: IQAModel, sigma: float, n: int, lo: float, hi: float) -> None:
        super().__init__(base, sigma, n)
        self.lo, self.hi = lo, hi

    def noisy_scores(self, x: Tensor, n: int, fn: Any = None) -> Tensor:
        return super().noisy_scores(x, n, fn).clamp(self.lo, self.hi)

    def forward(self, x: Tensor) -> Tensor:
        return self.noisy_scores(x, self.n).mean(0)

    def gradient_forward(self, x: Tensor) -> Tensor:
        return self.noisy_scores(x, self.n, self.base.gradient_forward).mean(0)


def mean_interval(samples: Tensor, lo: float, hi: float, r_over_sigma: float, alpha: float) -> Tensor:
    """(B, 2) the certified interval of E[clip(f)] at any x + delta, ||delta||_2 <= r, from
    noisy scores at x (n, B) already clipped to [lo, hi] (see the module's docstring)."""
    n = len(samples)
    p = (samples.double().mean(0) - lo) / (hi - lo)
    t = math.sqrt(math.log(2 / alpha) / (2 * n))
    p_lo, p_hi = (p - t).clamp(0, 1), (p + t).clamp(0, 1)
    q_lo = torch.special.ndtr(torch.special.ndtri(p_lo) - r_over_sigma)
    q_hi = torch.special.ndtr(torch.special.ndtri(p_hi) + r_over_sigma)
    low = torch.where(q_lo <= VACUOUS, -math.inf, lo + (hi - lo) * q_lo)
    high = torch.where(q_hi >= 1 - VACUOUS, math.inf, lo + (hi - lo) * q_hi)
    return torch.stack([low, high], 1).to(samples.dtype)


@register_defense
class MeanSmoothing(SmoothingDefense):
    info = DefenseInfo(
        name="mean-smoothing",
        kind="certified",
        randomized=True,
        reference="https://arxiv.org/abs/1906.04584",
        description="Mean of the range-clipped scores of n Gaussian-noised copies; certified score interval from "
        "the Lipschitz bound of Gaussian smoothing (Hoeffding-bounded; vacuous at real budgets).",
    )

    class Params(SmoothingParams):
        n: int = Field(8, ge=1, description="noisy copies whose mean (clipped) score is the defended score")
        n_certify: int = Field(100, ge=1, description="fresh noisy copies drawn to bound the expected score")

    def transform(self, model: IQAModel) -> IQAModel:
        lo, hi = score_range(model)
        return MeanSmoothedModel(model, float(self.params["sigma"]), int(self.params["n"]), lo, hi)

    def smoothed(self, model: IQAModel) -> SmoothedModel:
        if isinstance(model, MeanSmoothedModel):
            return model
        return MeanSmoothedModel(model, float(self.params["sigma"]), 1, *score_range(model))

    @torch.no_grad()
    def certify(self, model: IQAModel, x: Tensor, eps: float) -> Tensor:
        """(B, 2) certified (low, high) interval of the smoothed score (the expectation) at
        L-inf size `eps` (image units); ends may be -inf / inf (vacuous)."""
        smoothed = self.smoothed(model)
        assert isinstance(smoothed, MeanSmoothedModel)
        samples = self.noisy_samples(smoothed, x)
        return mean_interval(samples, smoothed.lo, smoothed.hi, l2_radius(x, eps) / smoothed.sigma,
                             self.params["alpha"])


def score_range(model: IQAModel) -> tuple[float, float]:
    """The model's declared score range, which the certificate needs bounded."""
    lo, hi = (float(v) for v in model.info.score_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise NotApplicable(f"defense 'mean-smoothing' certifies a bounded score; model '{model.info.name}' "
                            f"declares the range [{lo}, {hi}]")
    return lo, hi
