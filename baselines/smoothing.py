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

import torch
from torch import Tensor

from baselines._smoothing import (  # noqa: F401 - SmoothedModel and order_statistic_bounds: still importable here
    SmoothedModel,
    SmoothingDefense,
    SmoothingParams,
    l2_radius,
    median_interval,
    order_statistic_bounds,
)
from bench.api import DefenseInfo, IQAModel, register_defense


@register_defense
class RandomizedSmoothing(SmoothingDefense):
    info = DefenseInfo(
        name="randomized-smoothing",
        kind="certified",
        randomized=True,
        reference="https://arxiv.org/abs/2007.03730",
        description="Median of the scores of n Gaussian-noised copies; certified score interval by median "
        "smoothing (often vacuous at real budgets).",
    )

    Params = SmoothingParams

    def transform(self, model: IQAModel) -> IQAModel:
        return SmoothedModel(model, float(self.params["sigma"]), int(self.params["n"]))

    @torch.no_grad()
    def certify(self, model: IQAModel, x: Tensor, eps: float) -> Tensor:
        """(B, 2) certified (low, high) score interval of the smoothed model at L-inf size
        `eps` (image units); `model` is the smoothed model `transform` returned (or the
        base model, smoothed here with this defense's sigma). Ends may be -inf / inf."""
        smoothed = self.smoothed(model)
        samples = self.noisy_samples(smoothed, x)
        return median_interval(samples, l2_radius(x, eps) / smoothed.sigma, self.params["alpha"])
