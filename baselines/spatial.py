"""Deterministic spatial purifications from the MSU defenses benchmark (Gushchin et al., "Guardians of
Image Quality: Benchmarking Defenses Against Adversarial Attacks on Image Quality Metrics", ICML 2025,
https://arxiv.org/abs/2408.01541; its code: github.com/msu-video-group/adversarial-defenses-for-iqa,
metrics/defences/{unsharp,upscale,flip}): unsharp masking, down-and-up scaling with a chosen
interpolation, and a flip. All three are differentiable, so they are attacked directly (white-box,
adaptive, L-inf: the attack differentiates the defended model itself).

- `unsharp`: x + (x - GaussianBlur(x)), clipped to [0, 1] (kornia's `unsharp_mask`, reflected
  borders as the benchmark's torchvision blur). The benchmark's defaults: kernel 3 (presets 3..11),
  sigma 1, amount 1 (kornia's mask has the amount fixed at 1, and the benchmark never varies it).
- `upscale`: the benchmark's: downscale by `scale` (antialiased bilinear, torchvision's `Resize`),
  then upscale with `mode` interpolation. Scale 0.5 and presets 0.1..0.9 as there. Deviations: it
  upscales back to the input's size (the benchmark upscaled to its dataset's fixed 384x512), and
  the default mode is bicubic, not the benchmark's bilinear: with bilinear it computes exactly
  what `resize` computes (tested), so that default would duplicate a defense already here.
  Bicubic overshoots at edges, so the result is clipped to [0, 1].
- `flip`: mirrors the image; the benchmark flips both axes (torch.flip over H and W, a 180-degree
  turn), which is the default here; `axes` also offers a left-right or an up-down mirror. A flip
  is its own inverse and loses nothing, so an adaptive attack meets the model's own sensitivity,
  only mirrored: it resists only attacks that do not know of it (and `random-flip` is its
  randomized form).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from torch import Tensor

from baselines._purification import Purification, purification_info, tvf
from bench.api import Field, Odd, Params, register_defense

_FLIP_DIMS = {"both": (-2, -1), "horizontal": (-1,), "vertical": (-2,)}


@register_defense
class Unsharp(Purification):
    info = purification_info("unsharp", "Unsharp masking: add the difference between the image and its "
                             "Gaussian blur (kornia), clip to [0, 1].")

    class Params(Params):
        kernel_size: Annotated[int, Odd] = Field(3, ge=3, le=11, description="side of the Gaussian blur's kernel, px")
        sigma: float = Field(1.0, ge=0.1, le=10.0, description="standard deviation of the Gaussian, px")

    def purify(self, x: Tensor) -> Tensor:
        from kornia.filters import unsharp_mask  # on first use: kornia takes seconds to import

        k, s = self.params["kernel_size"], float(self.params["sigma"])
        return unsharp_mask(x, (k, k), (s, s), border_type="reflect").clamp(0, 1)


@register_defense
class Upscale(Purification):
    info = purification_info("upscale", "Downscale by `scale` (antialiased bilinear), upscale back to the input "
                             "size with `mode` interpolation, clip to [0, 1].")

    class Params(Params):
        scale: float = Field(0.5, ge=0.1, le=0.9, description="factor each side is scaled down by before upscaling")
        mode: Literal["bicubic", "bilinear", "nearest"] = Field(
            "bicubic", description="interpolation of the upscaling (the benchmark's default, bilinear, is `resize`)")

    def purify(self, x: Tensor) -> Tensor:
        tf, (h, w) = tvf(), x.shape[-2:]
        small = [max(1, round(h * self.params["scale"])), max(1, round(w * self.params["scale"]))]
        mode = getattr(tf.InterpolationMode, self.params["mode"].upper())
        return tf.resize(tf.resize(x, small, antialias=True), [h, w], interpolation=mode, antialias=True).clamp(0, 1)


@register_defense
class Flip(Purification):
    info = purification_info("flip", "Mirror every image (both axes by default, as the benchmark); deterministic.")

    class Params(Params):
        axes: Literal["both", "horizontal", "vertical"] = Field(
            "both", description="both: a 180-degree turn (the benchmark's); horizontal: left-right; vertical: up-down")

    def purify(self, x: Tensor) -> Tensor:
        return torch.flip(x, _FLIP_DIMS[self.params["axes"]])
