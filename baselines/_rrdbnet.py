"""RRDBNet, the generator of ESRGAN and Real-ESRGAN, that `real-esrgan` (purification) runs
(not a plugin: discovery skips `_` modules).

Written from the papers, not from BasicSR's code: Wang et al., "ESRGAN: Enhanced Super-
Resolution Generative Adversarial Networks", ECCV Workshops 2018 (https://arxiv.org/abs/1809.00219),
section 3.1 and figure 4: a first 3x3 convolution, a trunk of residual-in-residual dense blocks
(RRDB; no batch normalization), a 3x3 convolution closing the trunk and a long skip around it,
then two nearest-neighbour x2 upsamplings each followed by a 3x3 convolution, and two last 3x3
convolutions back to RGB. A dense block has five 3x3 convolutions, the k-th reading the block's
input and every earlier output (num_feat + (k - 1) * num_grow_ch channels), the first four
growing by num_grow_ch with LeakyReLU(0.2), the fifth back to num_feat without one; its output
is scaled by beta = 0.2 and added to its input ("residual scaling"), and an RRDB chains three
dense blocks with the same scaled residual around them. Real-ESRGAN (Wang et al., ICCV
Workshops 2021, https://arxiv.org/abs/2107.10833, section 3.3) keeps this generator and, for
x2 and x1, puts a pixel-unshuffle in front (space to depth, 2x2 pixels to 4x channels) so that
the trunk always upsamples x4; `scale` 2 does that.

Defaults: RealESRGAN_x4plus.pth's configuration (num_feat 64, num_block 23, num_grow_ch 32,
scale 4; 16,697,987 parameters). The module and parameter names are the ones the published
checkpoints use (conv_first, body.{i}.rdb{1,2,3}.conv{1..5}, conv_body, conv_up1, conv_up2,
conv_hr, conv_last), so that those files load strictly, key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines._published import load_strict, read_state

BETA = 0.2  # the papers' residual scaling
SLOPE = 0.2  # LeakyReLU's negative slope


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class DenseBlock(nn.Module):
    """ESRGAN's residual dense block: five densely connected 3x3 convolutions, scaled residual."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        for k in range(1, 6):  # conv1..conv5, the checkpoints' names
            cout = num_feat if k == 5 else num_grow_ch
            self.add_module(f"conv{k}", _conv(num_feat + (k - 1) * num_grow_ch, cout))

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for k in range(1, 5):
            feats.append(F.leaky_relu(getattr(self, f"conv{k}")(torch.cat(feats, 1)), SLOPE))
        return x + BETA * self.conv5(torch.cat(feats, 1))


class RRDB(nn.Module):
    """Residual in residual: three dense blocks in a row, with a scaled residual around them."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = DenseBlock(num_feat, num_grow_ch)
        self.rdb2 = DenseBlock(num_feat, num_grow_ch)
        self.rdb3 = DenseBlock(num_feat, num_grow_ch)

    def forward(self, x: Tensor) -> Tensor:
        return x + BETA * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """Images (B, 3, H, W) in [0, 1] -> (B, 3, scale * H, scale * W), not clipped. At scale 2
    the input's sides must be even (pixel-unshuffle takes 2x2 blocks)."""

    def __init__(self, num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32, scale: int = 4,
                 channels: int = 3) -> None:
        super().__init__()
        if scale not in (2, 4):
            raise ValueError(f"RRDBNet: scale must be 2 or 4, got {scale!r}")
        self.scale = scale
        self.conv_first = _conv(channels * (4 if scale == 2 else 1), num_feat)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = _conv(num_feat, num_feat)
        self.conv_up1 = _conv(num_feat, num_feat)
        self.conv_up2 = _conv(num_feat, num_feat)
        self.conv_hr = _conv(num_feat, num_feat)
        self.conv_last = _conv(num_feat, channels)

    def forward(self, x: Tensor) -> Tensor:
        if self.scale == 2:
            x = F.pixel_unshuffle(x, 2)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for up in (self.conv_up1, self.conv_up2):
            feat = F.leaky_relu(up(F.interpolate(feat, scale_factor=2, mode="nearest")), SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), SLOPE))


def load_rrdbnet(path: str, owner: str, **config: int) -> RRDBNet:
    """An RRDBNet of `config` holding the weights in `path` ({'params_ema': sd}, {'params':
    sd} or a plain state_dict), read weights_only and loaded strictly (baselines/_published.py:
    pickled code refused unrun, missing and unexpected keys named). Built on the meta device,
    so the 16.7M parameters are not first initialized for nothing."""
    state = read_state(path, owner, "{'params_ema': state_dict}")
    with torch.device("meta"):
        net = RRDBNet(**config)
    return load_strict(net, state, path, owner, f"RRDBNet({_config(config)})")


def _config(config: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())
