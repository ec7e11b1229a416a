"""JPEG purification: re-encode the input before scoring it.

Used as a purification defense in the MSU defenses benchmark (Gushchin et al., ICML 2025,
https://arxiv.org/abs/2408.01541), quality 10..90. JPEG is not differentiable, so it is
attacked with BPDA and the identity on the backward pass (Athalye et al., ICML 2018).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from torch import Tensor

from baselines._purification import Purification, from_uint8, purification_info, to_uint8
from bench.api import Field, Params, register_defense


@register_defense
class JPEG(Purification):
    info = purification_info("jpeg", "Re-encode as JPEG (Pillow/libjpeg) at the given quality before scoring.",
                             surrogate="identity")

    class Params(Params):
        quality: int = Field(50, ge=1, le=95, description="JPEG quality the input is re-encoded at (libjpeg scale)")

    def purify(self, x: Tensor) -> Tensor:
        out = []
        for img in to_uint8(x):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=self.params["quality"])
            out.append(np.asarray(Image.open(buf).convert("RGB")))
        return from_uint8(np.stack(out), x)
