"""Cumulative universal perturbation, as in the MSU metrics robustness benchmark
(Antsiferova, Abud, Gushchin, Shumitskaya, Lavrushkin, Vatolin, AAAI 2024, "Comparing the
robustness of modern no-reference image- and video-quality metrics to adversarial attacks",
https://arxiv.org/abs/2310.06958; its code: msu-video-group/MSU_Metrics_Robustness_Benchmark,
robustness_benchmark/methods/cumulative-uap/train.py).

Threat model: L-inf, eps in /255 units on [0, 1] images. One perturbation for all images,
learnt once per cell on the train split against the cell's model view (`fit`, which the
runner's `prepare` calls) and added unchanged to every test image (`perturb`): the attacker
never sees the test images.

Training (the paper's scheme): the universal pattern is the running sum of per-image
adversarial perturbations. Over shuffled batches of train images, each image's perturbation
is a gradient-ascent step on the objective at (image + current pattern); the batch's mean
step is added to the pattern, which is projected back onto the L-inf ball after each batch.
No optimizer state: a plain accumulation, unlike `uap` (Adam on the mean objective).
The pattern is kept in units of eps (values in [-1, 1]) and applied as x + eps P, tiled
(not resized) to other image sizes, as `uap` does.

Defaults: epochs=5 and batch_size=8 are the paper code's; step=0.1, max_images=256.
Deviations, and why: (1) the paper code adds the raw gradient of 1 - score / (metric's
range), a range it knows per metric; an attack here sees only the objective, not its scale,
so each image's step is the sign of its gradient (its FGSM perturbation) times `step` (in
units of eps), which makes the step independent of the model's score scale. (2) The paper
trains at a fixed amplitude 0.1 and tests the pattern at amplitudes 0.2, 0.4, 0.8; here it is
trained and applied at the cell's eps, so that every cell stays within its L-inf budget.
(3) `max_images` (a random subset) bounds the fit's cost, as in `uap`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.api import Attack, AttackInfo, Field, Params, register_attack
from bench.attacks._universal import apply, tile_to, train_batches


@register_attack
class CumulativeUAP(Attack):
    info = AttackInfo(
        name="cumulative-uap",
        norm="Linf",
        reference="https://arxiv.org/abs/2310.06958",
        description="Universal perturbation summed from per-image signed-gradient steps on the train split, "
                    "projected onto the eps-ball.",
    )

    class Params(Params):
        epochs: int = Field(5, ge=1, description="passes over the train images")
        batch_size: int = Field(8, ge=1, description="train images whose per-image steps are averaged into one update")
        step: float = Field(0.1, gt=0, le=1, description="each update's size, in units of eps (the pattern's L-inf norm "
                                                           "is at most 1)")
        max_images: int = Field(256, ge=1, description="train images used at most (a random subset)")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.pattern: Tensor | None = None

    def fit(self, objective, train, eps: float) -> None:
        p = self.params
        pattern: Tensor | None = None
        for xb in train_batches(self.info.name, train, p["epochs"], p["batch_size"], p["max_images"]):
            if pattern is None:
                pattern = torch.zeros_like(xb[:1])
            z = (xb + eps * tile_to(pattern, *xb.shape[-2:])).clamp(0, 1).requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(z).sum(), z)  # per image: the sum separates them
            per_image = torch.nan_to_num(grad).sign()  # each image's FGSM perturbation, unit L-inf
            pattern = (pattern + p["step"] * per_image.mean(0, keepdim=True)).clamp(-1, 1)
        self.pattern = pattern

    def perturb(self, objective, x: Tensor, eps: float) -> Tensor:
        return apply(self.info.name, self.pattern, x, eps)
