"""What the randomized-smoothing defenses share (not a plugin: discovery skips `_` modules):
the smoothed model, the noisy scores a certificate is estimated from (drawn once per batch
and shared by every eps), and median smoothing's certificate (Chiang et al., "Detection as
regression: certified object detection by median smoothing", NeurIPS 2020,
https://arxiv.org/abs/2007.03730). `randomized-smoothing` (baselines/smoothing.py) and
`denoised-smoothing` certify with the median; `mean-smoothing` with the mean.

Every certificate here is stated in L2 and used for an L-inf budget: the L-inf ball of size
eps lies inside the L2 ball of radius r = eps sqrt(d), d = 3 H W values (`l2_radius`).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch
from torch import Tensor

from bench.api import Defense, Field, IQAModel, Params


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


def l2_radius(x: Tensor, eps: float) -> float:
    """The L2 radius whose ball holds every L-inf perturbation of size eps of one image of x."""
    return eps * math.sqrt(x[0].numel())


def median_interval(samples: Tensor, r_over_sigma: float, alpha: float) -> Tensor:
    """(B, 2) median smoothing's certified interval from sorted noisy scores (n, B): for
    ||delta||_2 <= r the median at x + delta lies between the Phi(-r / sigma) and
    Phi(r / sigma) percentiles at x, each bounded by an order statistic with probability
    1 - alpha / 2; an end with no conservative enough order statistic is infinite."""
    z = r_over_sigma / math.sqrt(2)
    p_lo, p_hi = 0.5 * math.erfc(z), 0.5 * math.erfc(-z)  # Phi(-r / sigma), Phi(r / sigma)
    i_lo, i_hi = order_statistic_bounds(len(samples), p_lo, p_hi, alpha)
    inf = torch.full_like(samples[0], math.inf)
    lo = samples[i_lo] if i_lo is not None else -inf
    hi = samples[i_hi] if i_hi is not None else inf
    return torch.stack([lo, hi], 1)


class SmoothingParams(Params):
    """The parameters every smoothing defense has (each may re-describe or re-bound one)."""

    sigma: float = Field(0.12, gt=0, description="standard deviation of the Gaussian noise, image units ([0, 1])")
    n: int = Field(8, ge=1, description="noisy copies whose median score is the defended score")
    n_certify: int = Field(100, ge=1, description="fresh noisy copies drawn to estimate the certificate")
    alpha: float = Field(0.001, gt=0, lt=1, description="probability that the certified interval is wrong")


class SmoothingDefense(Defense):
    """A certified smoothing defense: `transform` wraps the model in a `SmoothedModel`;
    `certify` draws `n_certify` noisy scores per batch once (by the batch's content, not its
    address: a freed batch's memory may hold other images later) and reuses them at every
    eps the cell group asks about. Its `Params` declare `sigma` and `n_certify`."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._samples: dict[tuple, Tensor] = {}  # sorted noisy scores per batch, shared by every eps

    def smoothed(self, model: IQAModel) -> SmoothedModel:
        """`model` where it is the smoothed model `transform` returned, else `model` smoothed
        here with this defense's sigma."""
        return model if isinstance(model, SmoothedModel) else SmoothedModel(model, float(self.params["sigma"]), 1)

    @torch.no_grad()
    def noisy_samples(self, smoothed: SmoothedModel, x: Tensor) -> Tensor:
        """(n_certify, B) the base model's scores on fresh noisy copies of x, sorted per image."""
        key = (id(smoothed.base), tuple(x.shape), hashlib.sha256(x.detach().cpu().numpy().tobytes()).hexdigest())
        if key not in self._samples:
            if len(self._samples) > 256:
                self._samples.clear()
            self._samples[key] = smoothed.noisy_scores(x, int(self.params["n_certify"])).sort(0).values
        return self._samples[key]
