"""Randomized smoothing with the median (Chiang et al., "Detection as regression:
certified object detection by median smoothing", NeurIPS 2020,
https://arxiv.org/abs/2007.03730), on an IQA score.

The defended model scores the median of the base model's scores on `n` copies of the
image with Gaussian noise of standard deviation `sigma` added (clipped to [0, 1]: the
clip is part of the base function, which the certificate allows). `certify` gives, per
image, an interval that the smoothed score provably stays in under any L-inf
perturbation of size eps: the L-inf ball lies inside the L2 ball of radius
r = eps sqrt(d) (d = 3 H W values), and for ||delta||_2 <= r the median of the noisy
scores at x + delta lies between the Phi(-r / sigma) and Phi(r / sigma) percentiles of
the noisy scores at x. Those percentiles are estimated from `n_certify` fresh samples
with one-sided binomial confidence bounds on order statistics (total miss probability
`alpha`); where no order statistic is conservative enough the end is infinite.

Honest reading: at the budgets of the matrices (2..8 /255) and images of 48 px or more,
r / sigma is 5 or more and both ends are infinite — the certificate is vacuous, and the
record says so rather than hiding it. It becomes informative only at tiny eps or sizes.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch
from torch import Tensor

from bench.api import Defense, DefenseInfo, Field, IQAModel, Params, register_defense


class SmoothedModel(IQAModel):
    """The median-smoothed model: same metadata as the base model it wraps."""

    def __init__(self, base: IQAModel, sigma: float, n: int) -> None:
        super().__init__()
        self.base, self.sigma, self.n = base, sigma, n
        self.info = base.info  # direction, score range, sizes: the base model's
        self.params = base.params

    def noisy_scores(self, x: Tensor, n: int, fn: Any = None) -> Tensor:
        """(n, B): the base model's scores on n noisy copies of each image."""
        fn = fn or self.base
        return torch.stack([fn((x + self.sigma * torch.randn_like(x)).clamp(0, 1)).reshape(-1) for _ in range(n)])

    def forward(self, x: Tensor) -> Tensor:
        return self.noisy_scores(x, self.n).median(0).values

    def gradient_forward(self, x: Tensor) -> Tensor:
        return self.noisy_scores(x, self.n, self.base.gradient_forward).median(0).values


def order_statistic_bounds(n: int, p_lo: float, p_hi: float, alpha: float) -> tuple[int | None, int | None]:
    """0-based indices into n sorted samples: the one below the p_lo-percentile and the one
    above the p_hi-percentile, each with probability >= 1 - alpha / 2 (None: no such sample).

    With K ~ Binomial(n, p) the number of samples at or below the p-percentile, the k-th
    smallest is below it iff K >= k, and above it iff K <= k - 1."""
    from scipy import stats  # on first use: `bench list` imports every plugin module

    j = int(stats.binom.ppf(alpha / 2, n, p_lo))
    if stats.binom.cdf(j, n, p_lo) > alpha / 2:
        j -= 1
    k = int(stats.binom.ppf(1 - alpha / 2, n, p_hi))
    return (j if j >= 0 else None), (k if k < n else None)


@register_defense
class RandomizedSmoothing(Defense):
    info = DefenseInfo(
        name="randomized-smoothing",
        kind="certified",
        randomized=True,
        reference="https://arxiv.org/abs/2007.03730",
        description="Median of the scores of n Gaussian-noised copies; certified score interval by median "
        "smoothing (often vacuous at real budgets).",
    )

    class Params(Params):
        sigma: float = Field(0.12, gt=0, description="standard deviation of the Gaussian noise, image units ([0, 1])")
        n: int = Field(8, ge=1, description="noisy copies whose median score is the defended score")
        n_certify: int = Field(100, ge=1, description="fresh noisy copies drawn to estimate the certificate")
        alpha: float = Field(0.001, gt=0, lt=1, description="probability that the certified interval is wrong")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._samples: dict[tuple, Tensor] = {}  # sorted noisy scores per batch, shared by every eps

    def transform(self, model: IQAModel) -> IQAModel:
        return SmoothedModel(model, float(self.params["sigma"]), int(self.params["n"]))

    @torch.no_grad()
    def certify(self, model: IQAModel, x: Tensor, eps: float) -> Tensor:
        """(B, 2) certified (low, high) score interval of the smoothed model at L-inf size
        `eps` (image units); `model` is the smoothed model `transform` returned (or the
        base model, smoothed here with this defense's sigma). Ends may be -inf / inf."""
        smoothed = model if isinstance(model, SmoothedModel) else SmoothedModel(model, self.params["sigma"], 1)
        # by content, not address: a freed batch's memory may hold different images later
        key = (id(smoothed.base), tuple(x.shape), hashlib.sha256(x.detach().cpu().numpy().tobytes()).hexdigest())
        if key not in self._samples:
            if len(self._samples) > 256:
                self._samples.clear()
            self._samples[key] = smoothed.noisy_scores(x, int(self.params["n_certify"])).sort(0).values
        samples = self._samples[key]
        r = eps * math.sqrt(x[0].numel())
        z = r / smoothed.sigma / math.sqrt(2)
        p_lo, p_hi = 0.5 * math.erfc(z), 0.5 * math.erfc(-z)  # Phi(-r / sigma), Phi(r / sigma)
        i_lo, i_hi = order_statistic_bounds(len(samples), p_lo, p_hi, self.params["alpha"])
        inf = torch.full_like(samples[0], math.inf)
        lo = samples[i_lo] if i_lo is not None else -inf
        hi = samples[i_hi] if i_hi is not None else inf
        return torch.stack([lo, hi], 1)
