"""Compression-like purifications from the MSU defenses benchmark (Gushchin et al., "Guardians of
Image Quality: Benchmarking Defenses Against Adversarial Attacks on Image Quality Metrics", ICML 2025,
https://arxiv.org/abs/2408.01541; its code: github.com/msu-video-group/adversarial-defenses-for-iqa,
metrics/defences/{diffjpeg,color-quantization}): differentiable JPEG and colour quantization.

Threat model: white-box, adaptive, L-inf; the attacker knows the defense and differentiates the
attack view `bench/gradients.py` builds from the metadata declared here.

- `diff-jpeg`: JPEG encode-decode written with differentiable parts (Reich et al., "Differentiable
  JPEG: The Devil is in the Details", WACV 2024, https://arxiv.org/abs/2309.06978), so JPEG is
  attacked through its own gradient, not through BPDA's identity as `jpeg` is. Wraps kornia's
  `jpeg_codec_differentiable` (standard libjpeg tables scaled by quality, 4:2:0 chroma). The
  benchmark's default quality 50 and its presets 10..90; the range 1..95 is `jpeg`'s, so both can
  be compared at one setting. Deviation: the benchmark runs Reich et al.'s code with the
  straight-through estimator (exact rounding forward, identity backward); kornia rounds with the
  cubic approximation round(x) + (x - round(x))^3 on both passes (Shin & Song, 2017), so its
  output is not bit-exact JPEG. Measured against Pillow's JPEG at the same quality
  (tests/test_purifications.py), the mean pixel difference is about a fifth of JPEG's own change.
- `color-quantization`: the benchmark's version exactly: each channel rounded to `levels` uniform
  levels (its `npp`; default 16, presets 2, 5, 16, 20, 25). At levels = 2^bits it computes what
  `bit-depth` computes (tested); other level counts are what it adds. Rounding has a zero
  gradient almost everywhere, so it is attacked with BPDA through the identity (Athalye et al.,
  ICML 2018): it moves each value by at most half a level.
"""

from __future__ import annotations

import torch
from torch import Tensor

from baselines._purification import Purification, purification_info
from bench.api import Field, Params, register_defense


@register_defense
class DiffJPEG(Purification):
    info = purification_info(
        "diff-jpeg", "Differentiable JPEG encode-decode (kornia, Reich et al. WACV 2024) at the given quality: "
        "attacked through its own gradient.", reference="https://arxiv.org/abs/2309.06978")

    class Params(Params):
        quality: int = Field(50, ge=1, le=95, description="JPEG quality of the differentiable codec (libjpeg scale)")

    def purify(self, x: Tensor) -> Tensor:
        from kornia.enhance import jpeg_codec_differentiable  # on first use: kornia takes seconds to import

        quality = torch.tensor([float(self.params["quality"])], device=x.device, dtype=x.dtype)
        return jpeg_codec_differentiable(x.clamp(0, 1), quality)


@register_defense
class ColorQuantization(Purification):
    info = purification_info("color-quantization", "Round each channel to `levels` uniform levels (the MSU "
                             "benchmark's colour quantization); BPDA through the identity.", surrogate="identity")

    class Params(Params):
        levels: int = Field(16, ge=2, le=256, description="levels kept per channel (npp in the MSU benchmark)")

    def purify(self, x: Tensor) -> Tensor:
        steps = self.params["levels"] - 1
        return torch.round(x.detach().clamp(0, 1) * steps) / steps
