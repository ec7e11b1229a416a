"""Randomized input transformations as purification, as in the MSU defenses benchmark
(Gushchin et al., ICML 2025, https://arxiv.org/abs/2408.01541): random crop (resized
back), random rotation, random horizontal flip and additive Gaussian noise; after the
random-resizing defense of Xie et al. (ICLR 2018, https://arxiv.org/abs/1711.01991).

All four are differentiable but draw new parameters per image at every call, so they
declare `randomized=True`: attacks average their gradient over draws (EOT, Athalye et
al., ICML 2018), and the runner flags that two clean scorings differ. Draws come from
torch's global generator, which the runner seeds per cell.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from baselines._purification import Purification, Ranges, per_image, purification_info, tvf
from bench.api import register_defense


@register_defense
class RandomCrop(Purification):
    info = purification_info("random-crop", "Crop a random window of `size` x each side, resize it back.",
                             randomized=True)
    defaults: ClassVar[dict[str, Any]] = {"size": 0.9}
    ranges: ClassVar[Ranges] = {"size": (0.5, 0.99)}

    def purify(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        ch, cw = max(1, round(h * self.params["size"])), max(1, round(w * self.params["size"]))
        tops = torch.randint(0, h - ch + 1, (len(x),)).tolist()
        lefts = torch.randint(0, w - cw + 1, (len(x),)).tolist()
        tf = tvf()
        return per_image(x, lambda img, i: tf.resized_crop(img, tops[i], lefts[i], ch, cw, [h, w], antialias=True))


@register_defense
class RandomRotate(Purification):
    info = purification_info("random-rotate", "Rotate by a uniform random angle in [-degrees, degrees] "
                             "(bilinear, black corners).", randomized=True)
    defaults: ClassVar[dict[str, Any]] = {"degrees": 10.0}
    ranges: ClassVar[Ranges] = {"degrees": (0.0, 180.0)}

    def purify(self, x: Tensor) -> Tensor:
        tf = tvf()
        angles = ((torch.rand(len(x)) * 2 - 1) * self.params["degrees"]).tolist()
        return per_image(x, lambda img, i: tf.rotate(img, angles[i], interpolation=tf.InterpolationMode.BILINEAR))


@register_defense
class RandomFlip(Purification):
    info = purification_info("random-flip", "Mirror each image left-right with probability p.", randomized=True)
    defaults: ClassVar[dict[str, Any]] = {"p": 0.5}
    ranges: ClassVar[Ranges] = {"p": (0.0, 1.0)}

    def purify(self, x: Tensor) -> Tensor:
        flip = (torch.rand(len(x)) < self.params["p"]).tolist()
        tf = tvf()
        return per_image(x, lambda img, i: tf.hflip(img) if flip[i] else img)


@register_defense
class RandomNoise(Purification):
    info = purification_info("random-noise", "Add Gaussian noise of standard deviation sigma, clip to [0, 1].",
                             randomized=True)
    defaults: ClassVar[dict[str, Any]] = {"sigma": 0.03}
    ranges: ClassVar[Ranges] = {"sigma": (0.0, 0.5)}

    def purify(self, x: Tensor) -> Tensor:
        return (x + self.params["sigma"] * torch.randn_like(x)).clamp(0, 1)
