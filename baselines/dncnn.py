"""A learned denoiser as input purification: DnCNN (Zhang et al., "Beyond a Gaussian
Denoiser: Residual Learning of Deep CNN for Image Denoising", IEEE TIP 2017,
https://arxiv.org/abs/1608.03981), trained here on the cell's train split, in front of the
model. Learned purifiers of this kind are among the MSU defenses benchmark's (Gushchin et
al., ICML 2025, https://arxiv.org/abs/2408.01541), where published restoration networks
take this place.

Threat model: white-box and adaptive. The denoiser is deterministic and differentiable, so
attacks differentiate straight through it and the model (no BPDA, no EOT); the attacker
knows its weights. What it buys is that a perturbation must survive denoising.

Defaults: the architecture, initialization, loss and optimizer are the paper's and its
authors' code's (baselines/_denoiser.py says which and what differs: depth 5, width 24,
4 epochs of one 40 px patch per train image, a start at the identity). The noise is the paper's blind Gaussian
kind (DnCNN-B: a level drawn uniformly in [0, 55/255] per patch): here in [0, sigma] with
sigma = 0.1 (about 25/255, the paper's headline level), narrower than DnCNN-B's because the
budgets attacked here are 2 to 8 /255 and a small network trained for heavy noise also
erases texture the quality models read. `blind = false` trains at sigma alone (DnCNN-S).

The denoiser lives in the defended model (`transform` wraps the model), so its fitted
state is part of the model's state_dict: the workbench caches and reloads it like every
fit (weights_only). A published DnCNN state_dict of the same depth and width loads through
`weights` instead of training (see baselines/_denoiser.py for what bench/ lacks there).
"""

from __future__ import annotations

from baselines._denoiser import DenoisedModel, DenoiserParams, denoiser_of, fit_denoiser, new_denoiser
from bench.api import Defense, DefenseInfo, Field, FitContext, IQAModel, register_defense


@register_defense
class DnCNNPurifier(Defense):
    info = DefenseInfo(
        name="dncnn",
        kind="purification",
        reference="https://arxiv.org/abs/1608.03981",
        description="A DnCNN denoiser trained here on the train split (blind Gaussian noise) in front of the "
        "model; attacked through it.",
    )

    class Params(DenoiserParams):
        sigma: float = Field(0.1, gt=0, le=1, description="Gaussian noise level trained at, image units ([0, 1]); "
                             "the largest where blind")
        blind: bool = Field(True, description="draw each patch's noise level uniformly in [0, sigma] (the paper's "
                            "blind DnCNN-B), else train at sigma alone (DnCNN-S)")

    def transform(self, model: IQAModel) -> IQAModel:
        return DenoisedModel(model, new_denoiser(self.params["depth"], self.params["width"]))

    def fit(self, model: IQAModel, ctx: FitContext) -> None:
        fit_denoiser(denoiser_of(model), ctx, name=self.info.name, sigma=self.params["sigma"],
                     blind=self.params["blind"], p=self.params)
