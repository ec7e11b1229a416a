"""Adversarial training for IQA with corrected labels (Chistyakova et al., "Increasing
the robustness of image quality assessment models through adversarial training",
Technologies 2024, https://doi.org/10.3390/technologies12110220).

Each batch is attacked with one FGSM step of size `eps` (/255) in the direction that
raises the model's "better" score, and the attacked copy is trained towards a lowered
label, since the perturbation made the image worse, not better:

    y* = clip(y - p (1 - SSIM(x*, x)) (max - min), min, max)

with min/max the range of the training targets (on the model's own score scale; the
sign flips for lower-better models). Clean and attacked copies are trained together.
`p` = 0.5 is this benchmark's default, not a value taken from the paper.
"""

from __future__ import annotations

import torch
from torch import Tensor

from baselines._training import BatchLoss, TrainingDefense, TrainingParams, input_gradient
from bench.api import DefenseInfo, Field, FitContext, IQAModel, register_defense


@register_defense
class AdversarialTraining(TrainingDefense):
    info = DefenseInfo(
        name="adv-train",
        kind="training",
        reference="https://doi.org/10.3390/technologies12110220",
        description="Fine-tune on clean and FGSM-attacked images, attacked labels lowered by p (1 - SSIM) "
        "of the target range.",
    )

    class Params(TrainingParams):
        eps: float = Field(4.0, gt=0, le=255, description="FGSM step that attacks each training batch, /255")
        p: float = Field(0.5, ge=0, description="label correction: share of the target range lost per unit of "
                         "1 - SSIM (this benchmark's default, not the paper's)")

    def batch_loss(self, model: IQAModel, ctx: FitContext, better: float) -> BatchLoss:
        import pyiqa  # heavy: only when training

        ssim = pyiqa.create_metric("ssim", device=ctx.device)
        lo, hi = float(ctx.targets.min()), float(ctx.targets.max())
        eps, p = self.params["eps"] / 255, self.params["p"]

        def loss(x: Tensor, y: Tensor) -> Tensor:
            _, grad = input_gradient(model, x)
            x_adv = (x + eps * better * grad.sign()).clamp(0, 1).detach()
            with torch.no_grad():
                damage = 1 - ssim(x_adv, x).reshape(-1).to(y.dtype)
            y_adv = corrected_labels(y, damage, p, (lo, hi), better)
            return self.regression(model(torch.cat([x, x_adv])), torch.cat([y, y_adv]))

        return loss


def corrected_labels(y: Tensor, damage: Tensor, p: float, target_range: tuple[float, float], better: float) -> Tensor:
    """y* = clip(y - p damage (max - min)), damage = 1 - SSIM(x*, x): an attacked image is
    worse than its clean one by as much as the perturbation is visible. `better` is +1
    for higher-better models and -1 for lower-better ones (whose labels then go up)."""
    lo, hi = target_range
    return (y - better * p * damage * (hi - lo)).clamp(lo, hi)
