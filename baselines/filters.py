"""Deterministic input filters as purification, with the parameters of the MSU defenses
benchmark (Gushchin et al., ICML 2025, https://arxiv.org/abs/2408.01541): Gaussian blur
(kernel 3..11), median blur, bit-depth reduction (feature squeezing, Xu et al., NDSS 2018,
https://arxiv.org/abs/1704.01155) and resizing down and back up (scale 0.1..0.9).

Blur and resize are differentiable (attacked directly). The median filter and bit-depth
reduction are not usefully so: they are attacked with BPDA (Athalye et al., ICML 2018),
the median through a Gaussian blur of the same kernel (a smooth filter of the same
support), bit-depth reduction through the identity (rounding changes values by at most
half a level).
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor

from baselines._purification import Purification, purification_info, tvf
from bench.api import Field, Odd, Params, register_defense


@register_defense
class GaussianBlur(Purification):
    info = purification_info("gaussian-blur", "Gaussian blur of the input (torchvision) before scoring.")

    class Params(Params):
        kernel_size: Annotated[int, Odd] = Field(5, ge=3, le=11, description="side of the square kernel, px")
        sigma: float = Field(1.0, ge=0.1, le=10.0, description="standard deviation of the Gaussian, px")

    def purify(self, x: Tensor) -> Tensor:
        k, s = self.params["kernel_size"], float(self.params["sigma"])
        return tvf().gaussian_blur(x, kernel_size=[k, k], sigma=[s, s])


@register_defense
class MedianBlur(Purification):
    info = purification_info("median-blur", "Median filter of each channel (scipy.ndimage, reflected borders); "
                             "BPDA through a Gaussian blur of the same kernel.", surrogate="gaussian-blur")

    class Params(Params):
        kernel_size: Annotated[int, Odd] = Field(3, ge=3, le=11, description="side of the square median window, px")

    def purify(self, x: Tensor) -> Tensor:
        from scipy import ndimage  # on first use, as torchvision

        k = self.params["kernel_size"]
        out = ndimage.median_filter(x.detach().cpu().numpy(), size=(1, 1, k, k), mode="reflect")
        return torch.from_numpy(out).to(x.device, x.dtype)

    def surrogate(self, x: Tensor) -> Tensor:
        k = self.params["kernel_size"]
        return tvf().gaussian_blur(x, kernel_size=[k, k])  # torchvision's default sigma for this kernel (as OpenCV)


@register_defense
class BitDepth(Purification):
    info = purification_info("bit-depth", "Reduce each channel to 2^bits levels (feature squeezing); "
                             "BPDA through the identity.", surrogate="identity",
                             reference="https://arxiv.org/abs/1704.01155")

    class Params(Params):
        bits: int = Field(4, ge=1, le=7, description="bits kept per channel (2^bits levels)")

    def purify(self, x: Tensor) -> Tensor:
        levels = 2 ** self.params["bits"] - 1
        return torch.round(x.detach().clamp(0, 1) * levels) / levels


@register_defense
class Resize(Purification):
    info = purification_info("resize", "Downscale by `scale` (antialiased bilinear) and back to the input size.")

    class Params(Params):
        scale: float = Field(0.5, ge=0.1, le=0.9, description="factor each side is scaled down by before scaling back")

    def purify(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        small = [max(1, round(h * self.params["scale"])), max(1, round(w * self.params["scale"]))]
        return tvf().resize(tvf().resize(x, small, antialias=True), [h, w], antialias=True)
