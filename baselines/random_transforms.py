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

import torch
from torch import Tensor

from baselines._purification import Purification, per_image, purification_info, tvf
from bench.api import Field, Params, register_defense


@register_defense
class RandomCrop(Purification):
    info = purification_info("random-crop", "Crop a random window of `size` x each side, resize it back.",
                             randomized=True)

    class Params(Params):
        size: float = Field(0.9, ge=0.5, le=0.99, description="side of the crop window, as a fraction of the image's")

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

    class Params(Params):
        degrees: float = Field(10.0, ge=0.0, le=180.0, description="largest rotation either way, degrees")

    def purify(self, x: Tensor) -> Tensor:
        tf = tvf()
        angles = ((torch.rand(len(x)) * 2 - 1) * self.params["degrees"]).tolist()
        return per_image(x, lambda img, i: tf.rotate(img, angles[i], interpolation=tf.InterpolationMode.BILINEAR))


@register_defense
class RandomFlip(Purification):
    info = purification_info("random-flip", "Mirror each image left-right with probability p.", randomized=True)

    class Params(Params):
        p: float = Field(0.5, ge=0.0, le=1.0, description="probability that an image is mirrored")

    def purify(self, x: Tensor) -> Tensor:
        flip = (torch.rand(len(x)) < self.params["p"]).tolist()
        tf = tvf()
        return per_image(x, lambda img, i: tf.hflip(img) if flip[i] else img)


@register_defense
class RandomNoise(Purification):
    info = purification_info("random-noise", "Add Gaussian noise of standard deviation sigma, clip to [0, 1].",
                             randomized=True)

    class Params(Params):
        sigma: float = Field(0.03, ge=0.0, le=0.5, description="standard deviation of the noise, image units ([0, 1])")

    def purify(self, x: Tensor) -> Tensor:
        return (x + self.params["sigma"] * torch.randn_like(x)).clamp(0, 1)
