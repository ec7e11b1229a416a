"""Denoised smoothing (Salman, Sun, Yang, Kapoor and Kolter, "Denoised Smoothing: A Provable
Defense for Pretrained Classifiers", NeurIPS 2020, https://arxiv.org/abs/2003.01908), on an
IQA score: the base model is preceded by a Gaussian denoiser, and the composite is smoothed
with the median and certified exactly as `randomized-smoothing` is (Chiang et al., NeurIPS
2020, https://arxiv.org/abs/2007.03730; the code is baselines/_smoothing.py's, shared).

Why: a model trained on clean images scores Gaussian-noised copies badly, so plain
smoothing at a useful sigma changes its clean scores; a denoiser trained for that sigma
gives the model images like those it knows, without retraining it (the paper's point: the
base model stays as published).

The denoiser is the DnCNN of `dncnn` (baselines/_denoiser.py; the paper also uses DnCNN),
fitted here on the cell's train split at the smoothing's own sigma (noisy images clipped to
[0, 1], as the smoothing clips them) with the mean squared error: the paper's "MSE"
objective, which needs nothing of the base model (so it applies to metrics without a
gradient as well); its "Stab+MSE" objective, through the base model, is not implemented.
A published DnCNN state_dict of the same depth and width loads through `weights` instead.
The fitted denoiser is part of the defended model's state_dict and cached with it.

Threat model: white-box, adaptive; the smoothed score is randomized (EOT), differentiable
through the denoiser. The certificate holds for any base function, denoiser included: for
||delta||_2 <= r = eps sqrt(d) the median at x + delta lies between the Phi(-r / sigma) and
Phi(r / sigma) percentiles of the noisy scores at x, bounded by order statistics at miss
probability alpha. Defaults: the smoothing's as `randomized-smoothing` (sigma 0.12, the
smallest of the paper's levels {0.12, 0.25, 0.5, 1.0}; n 8 and n_certify 100, far fewer
than the tens of thousands of draws the paper certifies with, for CPU), the denoiser's as `dncnn` (smaller than the paper's 17
layers, see _denoiser.py). Vacuous at the matrices' budgets, as the record says.
"""

from __future__ import annotations

import torch
from torch import Tensor

from baselines._denoiser import DenoisedModel, DenoiserParams, denoiser_of, fit_denoiser, new_denoiser
from baselines._smoothing import SmoothedModel, SmoothingDefense, SmoothingParams, l2_radius, median_interval
from bench.api import DefenseInfo, Field, FitContext, IQAModel, register_defense


@register_defense
class DenoisedSmoothing(SmoothingDefense):
    info = DefenseInfo(
        name="denoised-smoothing",
        kind="certified",
        randomized=True,
        reference="https://arxiv.org/abs/2003.01908",
        description="A DnCNN trained here at the smoothing's sigma in front of the model, then median smoothing "
        "with its certified interval (often vacuous at real budgets).",
    )

    class Params(DenoiserParams, SmoothingParams):
        sigma: float = Field(0.12, gt=0, le=1, description="standard deviation of the Gaussian noise, image units "
                             "([0, 1]); the denoiser is trained at it")

    def transform(self, model: IQAModel) -> IQAModel:
        p = self.params
        return SmoothedModel(DenoisedModel(model, new_denoiser(p["depth"], p["width"])), float(p["sigma"]), int(p["n"]))

    def fit(self, model: IQAModel, ctx: FitContext) -> None:
        fit_denoiser(denoiser_of(model), ctx, name=self.info.name, sigma=float(self.params["sigma"]), blind=False,
                     p=self.params)

    def smoothed(self, model: IQAModel) -> SmoothedModel:
        """Only the model `transform` returned (and `fit` fitted) holds the denoiser."""
        if not (isinstance(model, SmoothedModel) and isinstance(model.base, DenoisedModel)):
            raise TypeError("defense 'denoised-smoothing' certifies the model its transform returned, "
                            f"not a {type(model).__name__}")
        return model

    @torch.no_grad()
    def certify(self, model: IQAModel, x: Tensor, eps: float) -> Tensor:
        """(B, 2) certified (low, high) score interval of the denoised, smoothed model at
        L-inf size `eps` (image units). Ends may be -inf / inf."""
        smoothed = self.smoothed(model)
        samples = self.noisy_samples(smoothed, x)
        return median_interval(samples, l2_radius(x, eps) / smoothed.sigma, self.params["alpha"])
