"""MPRNet, the multi-stage restoration network that `mprnet` (purification) runs (not a plugin:
discovery skips `_` modules).

Written from the paper, not from the official code: Zamir et al., "Multi-Stage Progressive
Image Restoration", CVPR 2021 (https://arxiv.org/abs/2102.02808), section 3 and figure 2.
Three stages. Stages 1 and 2 are U-Net encoder-decoders whose every scale is two channel
attention blocks (CAB: conv, PReLU, conv, channel attention by squeeze-excitation with
reduction 4, residual); scales are changed by bilinear resampling and a 1x1 convolution that
adds (going down) or removes (going up) `scale_unetfeats` channels, and each skip connection
passes through a CAB. Stage 3 (ORSNet) works at full resolution: three original-resolution
blocks (ORB: `num_cab` CABs and a conv, residual), each followed by the stage-2 encoder and
decoder features of one scale, upsampled and 1x1-projected. Stage 1 reads the image as four
non-overlapping quarters, stage 2 as two halves (top, bottom), stage 3 whole: the quarters'
encoder features are joined side by side into halves for the stage-1 decoder, the halves'
ones on top of each other for the stage-2 decoder. Between stages, the supervised attention
module (SAM, 1x1 convolutions) turns features F into a restored image X = conv2(F) + I (I the
stage's input) and passes on F + conv1(F) * sigmoid(conv3(X)); each next stage fuses them with
its own shallow features (conv + CAB) by a 3x3 convolution of their concatenation. Cross-stage
feature fusion (CSFF) adds 1x1-convolved stage-1 encoder and decoder features to stage 2's
encoder at every scale. The last image is tail(ORSNet features) + I. No convolution has a bias.

One PReLU (one learned slope) is shared by every CAB, as in the released checkpoints, which
store it under each CAB's `body.1.weight`. The module and parameter names are the ones the
released checkpoints use (shallow_feat{1,2,3}, stage{1,2}_encoder, stage{1,2}_decoder,
stage3_orsnet, sam12, sam23, concat12, concat23, tail, and inside them encoder_level{1,2,3},
down12/down23, csff_enc/dec{1,2,3}, decoder_level{1,2,3}, skip_attn{1,2}, up21/up32, orb{1,2,3},
up_enc/dec{1,2}, conv_enc/dec{1,2,3}), so that those files load strictly, key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines._published import load_strict, read_state
from bench.api import CheckpointError, quoted

# the released models' widths: (n_feat, scale_unetfeats, scale_orsnetfeats)
WIDTHS = {"denoising": (80, 48, 32), "deblurring": (96, 48, 32), "deraining": (40, 20, 16)}
REDUCTION = 4  # channel attention's squeeze
MULTIPLE = 8  # sides the network takes: halved once into patches, then twice in the U-Nets


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)


class ChannelAttention(nn.Module):
    """Squeeze-excitation: x * sigmoid(conv(relu(conv(mean over pixels of x))))."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(_conv(c, c // REDUCTION, 1), nn.ReLU(), _conv(c // REDUCTION, c, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv_du(x.mean(dim=(2, 3), keepdim=True))


class CAB(nn.Module):
    """Channel attention block: x + CA(conv(act(conv(x))))."""

    def __init__(self, c: int, act: nn.Module) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(c, c), act, _conv(c, c))
        self.CA = ChannelAttention(c)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.CA(self.body(x))


def _cabs(n: int, c: int, act: nn.Module) -> nn.Sequential:
    return nn.Sequential(*(CAB(c, act) for _ in range(n)))


class Resample(nn.Module):
    """Bilinear resampling by `factor`, then a 1x1 convolution cin -> cout. Its Sequential sits
    under `attr` ('down' or 'up'), the checkpoints' name."""

    def __init__(self, attr: str, factor: float, cin: int, cout: int) -> None:
        super().__init__()
        self.attr, self.factor = attr, factor
        self.add_module(attr, nn.Sequential(nn.Identity(), _conv(cin, cout, 1)))

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=self.factor, mode="bilinear", align_corners=False)
        return getattr(self, self.attr)(x)


class Encoder(nn.Module):
    """Three scales of two CABs (widths f, f+u, f+2u); with `csff`, the previous stage's
    encoder and decoder features of each scale are added, 1x1-convolved."""

    def __init__(self, f: int, u: int, act: nn.Module, csff: bool) -> None:
        super().__init__()
        widths = (f, f + u, f + 2 * u)
        for i, c in enumerate(widths, 1):
            self.add_module(f"encoder_level{i}", _cabs(2, c, act))
        self.down12 = Resample("down", 0.5, widths[0], widths[1])
        self.down23 = Resample("down", 0.5, widths[1], widths[2])
        self.csff = csff
        if csff:
            for kind in ("enc", "dec"):
                for i, c in enumerate(widths, 1):
                    self.add_module(f"csff_{kind}{i}", _conv(c, c, 1))

    def forward(self, x: Tensor, enc: list[Tensor] | None = None, dec: list[Tensor] | None = None) -> list[Tensor]:
        outs = []
        for i in (1, 2, 3):
            if i > 1:
                x = getattr(self, f"down{i - 1}{i}")(x)
            x = getattr(self, f"encoder_level{i}")(x)
            if self.csff and enc is not None and dec is not None:
                x = x + getattr(self, f"csff_enc{i}")(enc[i - 1]) + getattr(self, f"csff_dec{i}")(dec[i - 1])
            outs.append(x)
        return outs


class Decoder(nn.Module):
    """From the coarsest scale up: upsample, add the CAB-processed skip, two CABs. Returns the
    decoder's features at each scale, finest first."""

    def __init__(self, f: int, u: int, act: nn.Module) -> None:
        super().__init__()
        widths = (f, f + u, f + 2 * u)
        for i, c in enumerate(widths, 1):
            self.add_module(f"decoder_level{i}", _cabs(2, c, act))
        self.skip_attn1 = CAB(widths[0], act)
        self.skip_attn2 = CAB(widths[1], act)
        self.up21 = Resample("up", 2.0, widths[1], widths[0])
        self.up32 = Resample("up", 2.0, widths[2], widths[1])

    def forward(self, enc: list[Tensor]) -> list[Tensor]:
        dec3 = self.decoder_level3(enc[2])
        dec2 = self.decoder_level2(self.up32(dec3) + self.skip_attn2(enc[1]))
        dec1 = self.decoder_level1(self.up21(dec2) + self.skip_attn1(enc[0]))
        return [dec1, dec2, dec3]


class SAM(nn.Module):
    """Supervised attention: (F + conv1(F) * sigmoid(conv3(X)), X) with X = conv2(F) + image."""

    def __init__(self, f: int) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3 = _conv(f, f, 1), _conv(f, 3, 1), _conv(3, f, 1)

    def forward(self, feats: Tensor, image: Tensor) -> tuple[Tensor, Tensor]:
        restored = self.conv2(feats) + image
        return feats + self.conv1(feats) * torch.sigmoid(self.conv3(restored)), restored


class ORB(nn.Module):
    """Original-resolution block: x + conv(CABs(x))."""

    def __init__(self, c: int, num_cab: int, act: nn.Module) -> None:
        super().__init__()
        self.body = nn.Sequential(*(CAB(c, act) for _ in range(num_cab)), _conv(c, c))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ORSNet(nn.Module):
    """Stage 3: three ORBs at width f+o, after each the stage-2 encoder and decoder features of
    the next scale, brought to full resolution (bilinear x2 and 1x1 convs back to f) and 1x1-
    projected to f+o, are added."""

    def __init__(self, f: int, u: int, o: int, num_cab: int, act: nn.Module) -> None:
        super().__init__()
        for i in (1, 2, 3):
            self.add_module(f"orb{i}", ORB(f + o, num_cab, act))
        for kind in ("enc", "dec"):
            self.add_module(f"up_{kind}1", Resample("up", 2.0, f + u, f))
            self.add_module(f"up_{kind}2", nn.Sequential(Resample("up", 2.0, f + 2 * u, f + u),
                                                         Resample("up", 2.0, f + u, f)))
            for i in (1, 2, 3):
                self.add_module(f"conv_{kind}{i}", _conv(f, f + o, 1))

    def forward(self, x: Tensor, enc: list[Tensor], dec: list[Tensor]) -> Tensor:
        for i in (1, 2, 3):
            e, d = enc[i - 1], dec[i - 1]
            if i > 1:
                e, d = getattr(self, f"up_enc{i - 1}")(e), getattr(self, f"up_dec{i - 1}")(d)
            x = getattr(self, f"orb{i}")(x) + getattr(self, f"conv_enc{i}")(e) + getattr(self, f"conv_dec{i}")(d)
        return x


def split(x: Tensor, dim: int) -> Tensor:
    """The two halves of x along `dim` (2: top, bottom; 3: left, right), stacked on the batch
    axis: each half is then processed on its own (channel attention pools per half), as the
    paper's patches are, in one call."""
    return torch.cat(x.chunk(2, dim), 0)


def join(x: Tensor, dim: int) -> Tensor:
    """The inverse of `split`: the batch's two halves put back side by side along `dim`."""
    return torch.cat(x.chunk(2, 0), dim)


class MPRNet(nn.Module):
    """Images (B, 3, H, W), H and W multiples of 8 -> the three stages' restored images, last
    stage first (not clipped)."""

    def __init__(self, n_feat: int = 80, scale_unetfeats: int = 48, scale_orsnetfeats: int = 32,
                 num_cab: int = 8) -> None:
        super().__init__()
        f, u, o = n_feat, scale_unetfeats, scale_orsnetfeats
        act = nn.PReLU()  # one slope, shared by every CAB
        for i in (1, 2, 3):
            self.add_module(f"shallow_feat{i}", nn.Sequential(_conv(3, f), CAB(f, act)))
        self.stage1_encoder, self.stage1_decoder = Encoder(f, u, act, csff=False), Decoder(f, u, act)
        self.stage2_encoder, self.stage2_decoder = Encoder(f, u, act, csff=True), Decoder(f, u, act)
        self.stage3_orsnet = ORSNet(f, u, o, num_cab, act)
        self.sam12, self.sam23 = SAM(f), SAM(f)
        self.concat12 = _conv(2 * f, f)
        self.concat23 = _conv(2 * f, f + o)
        self.tail = _conv(f + o, 3)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if image.shape[-2] % MULTIPLE or image.shape[-1] % MULTIPLE:
            raise ValueError(f"MPRNet: sides must be multiples of {MULTIPLE}, got {tuple(image.shape[-2:])}")
        halves = split(image, 2)  # top, bottom
        quarters = split(halves, 3)  # (top, bottom) left, then (top, bottom) right
        # stage 1: the quarters encoded, their features joined into halves, decoded
        enc1 = [join(e, 3) for e in self.stage1_encoder(self.shallow_feat1(quarters))]
        dec1 = self.stage1_decoder(enc1)
        feats, img1 = self.sam12(dec1[0], halves)
        # stage 2: the halves, with stage 1's features (CSFF); encoded, joined, decoded
        x = self.concat12(torch.cat([self.shallow_feat2(halves), feats], 1))
        enc2 = [join(e, 2) for e in self.stage2_encoder(x, enc1, dec1)]
        dec2 = self.stage2_decoder(enc2)
        feats, img2 = self.sam23(dec2[0], image)
        # stage 3: the whole image at full resolution, with stage 2's features
        x = self.concat23(torch.cat([self.shallow_feat3(image), feats], 1))
        img3 = self.tail(self.stage3_orsnet(x, enc2, dec2)) + image
        return img3, img2, join(img1, 2)


def task_widths(task: str, n_feat: int = 0, scale_unetfeats: int = 0, scale_orsnetfeats: int = 0) -> dict[str, int]:
    """The network's widths: `task`'s released ones, each overridden where given (not 0)."""
    given = (n_feat, scale_unetfeats, scale_orsnetfeats)
    f, u, o = (g or w for g, w in zip(given, WIDTHS[task], strict=True))
    return {"n_feat": f, "scale_unetfeats": u, "scale_orsnetfeats": o}


def load_mprnet(path: str, owner: str, **config: int) -> MPRNet:
    """An MPRNet of `config` holding the weights in `path` ({'state_dict': sd}, keys maybe
    prefixed 'module.', or a plain state_dict), read weights_only and loaded strictly
    (baselines/_published.py). The shared PReLU's copies must agree: a file whose CABs have
    slopes of their own is another network, refused rather than silently averaged away."""
    state = read_state(path, owner, "{'state_dict': state_dict}")
    with torch.device("meta"):
        net = MPRNet(**config)
    label = "MPRNet(" + ", ".join(f"{k}={v}" for k, v in config.items()) + ")"
    net = load_strict(net, state, path, owner, label)
    slopes = [f"{n}.weight" for n, m in net.named_modules(remove_duplicate=False) if isinstance(m, nn.PReLU)]
    if any(not torch.equal(state[k], state[slopes[0]]) for k in slopes):
        raise CheckpointError(f"{owner}: weights {quoted(path)} do not fit {label}: its PReLU slopes differ "
                              f"between blocks ({slopes[0]}, ...), MPRNet shares one")
    return net
