"""NT: gradient-norm regularization for no-reference IQA models (Liu et al., "Defense
against adversarial attacks on no-reference image quality models with gradient norm
regularization", CVPR 2024, https://arxiv.org/abs/2403.11397).

The training loss gains a penalty on the input gradient's norm, estimated by a finite
difference along the gradient's sign, so that no second-order backward pass is needed:

    penalty = 0.5 mean(((f(x + h sign grad f(x)) - f(x)) / h)^2),   h = 0.01, weight 1e-3

(f(x + h s) - f(x)) / h approximates grad f . sign(grad f) = ||grad f||_1. Both forward
passes use the same dropout draws, otherwise their difference would measure dropout
noise divided by h rather than the gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from baselines._training import BatchLoss, TrainingDefense, TrainingParams, input_gradient
from bench.api import DefenseInfo, Field, FitContext, IQAModel, register_defense


@register_defense
class NormRegularization(TrainingDefense):
    info = DefenseInfo(
        name="nt",
        kind="training",
        reference="https://arxiv.org/abs/2403.11397",
        description="Fine-tune with a finite-difference penalty on the input-gradient norm (NT).",
    )

    class Params(TrainingParams):
        h: float = Field(0.01, gt=0, description="finite-difference step along the gradient's sign, image units")
        weight: float = Field(1e-3, ge=0, description="weight of the gradient-norm penalty in the loss")

    def batch_loss(self, model: IQAModel, ctx: FitContext, better: float) -> BatchLoss:
        h, weight = self.params["h"], self.params["weight"]
        cuda = ctx.device if ctx.device.type == "cuda" else None

        def loss(x: Tensor, y: Tensor) -> Tensor:
            draws = torch.get_rng_state(), torch.cuda.get_rng_state(cuda) if cuda else None
            pred, grad = input_gradient(model, x, keep_graph=True)
            torch.set_rng_state(draws[0])  # the same dropout masks for the shifted copy
            if cuda:
                torch.cuda.set_rng_state(draws[1], cuda)
            shifted = model.gradient_forward((x + h * grad.sign()).detach()).reshape(-1)
            penalty = 0.5 * ((shifted - pred) / h).square().mean()
            return self.regression(pred, y) + weight * penalty

        return loss
