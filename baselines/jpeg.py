"""JPEG purification: re-encode the input before scoring it.

Used as a purification defense in the MSU defenses benchmark (Gushchin et al., ICML 2025,
https://arxiv.org/abs/2408.01541), quality 10..90. JPEG is not differentiable, so it is
attacked with BPDA and the identity on the backward pass (Athalye et al., ICML 2018).
"""

import io

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from bench.api import Defense, DefenseInfo, register_defense


@register_defense
class JPEG(Defense):
    info = DefenseInfo(
        name="jpeg",
        kind="purification",
        randomized=False,
        differentiable=False,
        surrogate="identity",
        reference="https://arxiv.org/abs/2408.01541",
        description="Re-encode as JPEG (Pillow/libjpeg) at the given quality before scoring.",
    )
    defaults = {"quality": 50}

    def purify(self, x: Tensor) -> Tensor:
        u8 = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out = []
        for img in u8:
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=self.params["quality"])
            out.append(np.asarray(Image.open(buf).convert("RGB")))
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.device, x.dtype) / 255
