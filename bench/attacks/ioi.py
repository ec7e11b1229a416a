"""IOI (Shumitskaya, Antsiferova, Vatolin, "IOI: Invisible One-Iteration Adversarial Attack
on No-Reference Image- and Video-Quality Metrics", ICML 2024, https://arxiv.org/abs/2403.05955;
the authors' code: github.com/katiashh/ioi-attack, IOI_demo.ipynb, whose `attack` this follows).

Threat model: L-inf, eps in /255 units on [0, 1] images. One gradient evaluation: a
signed-gradient step I^p = clip(I + step * eps * sign(grad)), then the paper's two
invisibility modules turn the perturbation I^p - I into
    I^a = I + f * H(I^p - I),
which is the authors' recombination R_low + f R^p_high + (1 - f) R_high written out:
- H (frequency module): per channel, the clean image's 2-D FFT coefficients are ranked by
  magnitude and the largest `keep` share (its dominant, mostly low, frequencies) is left
  as in the clean image; only the other coefficients of the perturbation pass;
- f (spatial module): where the image is textured, per channel the local coefficient of
  variation (standard deviation over mean in a 3x3 window, zero-padded at the border),
  divided by its maximum over the image, set to 0 below 0.01, then square-rooted: the
  perturbation vanishes on flat regions, where it would show, and stays where texture hides it.
The result is clipped to the eps-ball (the filtered perturbation can exceed its input's
L-inf norm here and there) and to [0, 1].

Defaults and deviations: keep=0.07 as in the authors' code. Their step is an Adam step of
learning rate `lr` on the sign of the gradient (Adam's first step is exactly lr times that
sign), with lr chosen per experiment to align attacks by score gain; here it is step times
eps, step=1.0 by default (the whole budget, as FGSM), so the L-inf threat model sets it.
The authors round I^p to 8 bits before filtering; here images stay floating point like
every other attack's. FFTs are torch.fft's.

Arguments: step=1.0 (times eps), keep=0.07.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.api import Attack, AttackInfo, Field, Params, register_attack
from bench.attacks._common import value_and_grad


def texture_mask(x: Tensor) -> Tensor:
    """(B, C, H, W) in [0, 1] -> the spatial module's weight f in [0, 1], same shape."""
    mean = F.avg_pool2d(x, 3, stride=1)  # the authors' 'valid' 3x3 box filter
    var = (F.avg_pool2d(x * x, 3, stride=1) - mean**2).clamp_min(0)
    cv = var.sqrt() / torch.where(mean == 0, torch.ones_like(mean), mean)
    cv = F.pad(cv, (1, 1, 1, 1))  # zero border, as the authors pad
    peak = cv.flatten(1).amax(1).view(-1, 1, 1, 1)
    f = cv / torch.where(peak > 0, peak, torch.ones_like(peak))
    return torch.where(f < 0.01, torch.zeros_like(f), f).sqrt()


def minor_frequencies(x: Tensor, keep: float) -> Tensor:
    """Per image and channel, the boolean mask of FFT coefficients outside the `keep` share
    of largest magnitudes of x: the frequencies the perturbation may use."""
    mag = torch.fft.fft2(x).abs().flatten(2)
    n = mag.shape[-1]
    k = min(n - 1, int(n * (1 - keep)))  # the authors' threshold: the sorted magnitudes' k-th
    thresh = mag.sort(-1).values[..., k : k + 1]
    return (mag < thresh).view(x.shape)


def highpass(d: Tensor, mask: Tensor) -> Tensor:
    """d with only the masked FFT coefficients kept (real part back)."""
    return torch.fft.ifft2(torch.fft.fft2(d) * mask).real


@register_attack
class IOI(Attack):
    info = AttackInfo(
        name="ioi",
        norm="Linf",
        reference="https://arxiv.org/abs/2403.05955",
        description="One signed-gradient step, then kept off the image's dominant frequencies and masked to texture.",
    )

    class Params(Params):
        step: float = Field(1.0, gt=0, le=4, description="size of the one signed-gradient step, in units of eps")
        keep: float = Field(0.07, gt=0, lt=1,
                            description="share of the clean image's largest FFT coefficients the perturbation "
                                        "leaves alone")

    def perturb(self, objective, x: Tensor, eps: float) -> Tensor:
        """One gradient evaluation, then the two invisibility modules (see the module docstring)."""
        _, grad = value_and_grad(objective, x)
        with torch.no_grad():
            attacked = (x + float(self.params["step"]) * eps * grad.sign()).clamp(0, 1)
            delta = highpass(attacked - x, minor_frequencies(x, float(self.params["keep"])))
            delta = texture_mask(x) * delta
            return (x + delta.clamp(-eps, eps)).clamp(0, 1)
