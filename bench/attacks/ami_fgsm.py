"""AMI-FGSM, one of the attacks of the MSU metrics robustness benchmark: Antsiferova et al.,
"Comparing the robustness of modern no-reference image- and video-quality metrics to
adversarial attacks", AAAI 2024 (https://arxiv.org/abs/2310.06958); algorithm as defined on
the benchmark's methodology page (https://videoprocessing.ai/benchmarks/metrics-robustness-methodology.html,
its reference [5]) and run by its code (github.com/msu-video-group/MSU_Metrics_Robustness_Benchmark,
robustness_benchmark/methods/amifgsm/run.py). We could not retrieve the paper behind [5]
here, so the algorithm below is the benchmark's, not checked against that paper.

Threat model: L-inf, eps in /255 units on [0, 1] images. MI-FGSM whose momentum is the
plain running sum of raw gradients, g_t = grad_t + decay * g_(t-1) (MI-FGSM of Dong et
al. divides each gradient by its mean absolute value first: a step with a large gradient
here outweighs the earlier ones), then `steps` signed steps of eps / steps each, clipped to
[0, 1]: the steps add up to the budget, so no projection is needed (the base class still
clips to the ball). The objective's own gradient is used: the benchmark descends the loss
1 - score / range, whose gradient is the score's times -1 / range, a constant factor that
neither the sign nor the momentum's weighting sees.

What differs from the methodology page, and why: it clips the perturbation at 1 / NIQE(I)
per image, without saying in which units. The benchmark's code computes no NIQE and uses a
fixed eps (10/255) instead; so does this module, with the cell's eps. In [0, 1] units
1 / NIQE is 0.1 to 0.3 for natural images (NIQE 3 to 10), far above every budget here, so
min(eps, 1 / NIQE) would be eps anyway. torchattacks has no AMI-FGSM (its MIFGSM
normalises the gradient), hence the dozen lines here.

Arguments: steps=10, decay=1.0 (the benchmark's iters = 10 and nu = 1.0).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.api import Attack, AttackInfo, Field, Params, register_attack
from bench.attacks._common import value_and_grad


@register_attack
class AMIFGSM(Attack):
    info = AttackInfo(
        name="ami-fgsm",
        norm="Linf",
        reference="https://arxiv.org/abs/2310.06958",
        description="MI-FGSM with un-normalised momentum, eps/steps signed steps (MSU metrics robustness benchmark).",
    )

    class Params(Params):
        steps: int = Field(10, ge=1, description="signed-gradient steps, each eps / steps")
        decay: float = Field(1.0, ge=0, description="momentum factor nu on the running sum of raw gradients")

    def perturb(self, objective, x: Tensor, eps: float) -> Tensor:
        """Signed steps along the momentum; the steps add up to eps."""
        steps, decay = int(self.params["steps"]), float(self.params["decay"])
        step = eps / steps
        momentum = torch.zeros_like(x)
        cur = x.clone()
        for _ in range(steps):
            _, grad = value_and_grad(objective, cur)
            momentum = grad + decay * momentum
            cur = (cur + step * momentum.sign()).clamp(0, 1)
        return cur
