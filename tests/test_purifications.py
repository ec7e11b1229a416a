"""The MSU benchmark's purifications in baselines/compression.py and baselines/spatial.py: each
computes what the benchmark's code computes (or what it says it deviates to), differentiable JPEG
is close to Pillow's JPEG and is attacked through the codec's own gradient, and each keeps a tiny
model's clean scores within the tolerance declared here. (Shape, ranking, declared randomness and
the attack view's gradient are checked for every purification in tests/test_baselines.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from bench.api import DEFENSES
from bench.plugins import load_plugins

load_plugins()

# Mean |score change| on clean images, as a fraction of the clean scores' spread (max - min), that each
# defense at its defaults may cause on the tiny model below (declared here, not in DefenseInfo: the figure
# belongs to this model, and a record's metadata would read it as holding for every model). Measured (torch
# 2.14, kornia 0.9): diff-jpeg 0.002, unsharp 0.015, upscale 0.012, color-quantization 0.004, flip 0.017; for
# comparison jpeg 0.004, gaussian-blur 0.011, resize 0.014. The tolerances leave about 1.5-2.5x headroom.
CLEAN_TOLERANCE = {"diff-jpeg": 0.005, "unsharp": 0.025, "upscale": 0.02, "color-quantization": 0.006, "flip": 0.025}


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Twelve 48 px crops (the corners) of three skimage photos shrunk 4x: natural content, edges and
    flat areas, which is what JPEG's blocks and the filters act on (random texture is not)."""
    import skimage.data

    crops = []
    for name in ("astronaut", "chelsea", "coffee"):
        im = Image.fromarray(getattr(skimage.data, name)())
        im = im.resize((im.width // 4, im.height // 4), Image.Resampling.BICUBIC)
        t = torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255
        for top in (0, t.shape[1] - 48):
            for left in (0, t.shape[2] - 48):
                crops.append(t[:, top:top + 48, left:left + 48])
    return torch.stack(crops)


def _tiny_model() -> nn.Module:
    """A small conv net with fixed random weights (its own generator: the same on every run): it
    responds to colour, edges and their position, as a learned IQA model does, and is not flip-invariant."""
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) / p[0].numel() ** 0.5)
    return net.eval()


@pytest.mark.parametrize("name", sorted(CLEAN_TOLERANCE))
def test_clean_scores_within_declared_tolerance(name, photos):
    model, d = _tiny_model(), DEFENSES.create(name)
    with torch.no_grad():
        clean, purified = model(photos).flatten(), model(d.purify(photos)).flatten()
    change = float((purified - clean).abs().mean() / (clean.max() - clean.min()))
    assert change <= CLEAN_TOLERANCE[name], f"{name}: clean scores moved {change:.3f} of their spread"


def test_clean_tolerance_can_fail(photos):
    """The check has teeth: the strongest presets of the benchmark leave the tolerance declared for the
    defaults (measured: 0.028 for upscale at scale 0.1, 0.21 for colour quantization to 2 levels)."""
    model = _tiny_model()
    with torch.no_grad():
        clean = model(photos).flatten()
        for name, params in (("upscale", {"scale": 0.1}), ("color-quantization", {"levels": 2})):
            purified = model(DEFENSES.create(name, **params).purify(photos)).flatten()
            assert float((purified - clean).abs().mean() / (clean.max() - clean.min())) > CLEAN_TOLERANCE[name]


@pytest.mark.parametrize("quality", [10, 50, 90])
def test_diff_jpeg_is_close_to_pillow_jpeg(quality, photos):
    """kornia's codec against Pillow's (libjpeg) at the same quality, per image. Measured: PSNR between
    the two at least 32.5 / 38.3 / 39.2 dB at quality 10 / 50 / 90, and their mean difference at most
    0.35 / 0.33 / 0.51 of JPEG's own mean change to the image (it rounds with a cubic, not exactly)."""
    ours = DEFENSES.create("diff-jpeg", quality=quality).purify(photos)
    pillow = DEFENSES.create("jpeg", quality=quality).purify(photos)
    psnr = -10 * torch.log10(((ours - pillow) ** 2).mean((1, 2, 3)))
    gap, own = (ours - pillow).abs().mean((1, 2, 3)), (pillow - photos).abs().mean((1, 2, 3))
    assert psnr.min() >= 30 and (gap / own).max() <= 0.6
    farther = DEFENSES.create("jpeg", quality=100 - quality if quality != 50 else 10).purify(photos)
    assert (ours - farther).abs().mean() > gap.mean()  # the quality is matched, not just "some JPEG"


def test_diff_jpeg_is_attacked_through_the_codec():
    """The attack view differentiates the codec itself: at quality 10 it passes a flat change
    (the DC coefficients) but all but drops the finest checkerboard, which JPEG quantizes away;
    BPDA through the identity, as `jpeg` is attacked, would pass both alike."""
    d = DEFENSES.create("diff-jpeg", quality=10)
    assert d.info.differentiable and not d.info.randomized
    g = torch.Generator().manual_seed(1)
    x = (0.5 + 0.2 * torch.rand(2, 3, 48, 48, generator=g)).requires_grad_(True)
    idx = torch.arange(48)
    checker = (((idx[:, None] + idx[None, :]) % 2) * 2 - 1).float().expand(2, 3, 48, 48)
    response = {}
    for label, w in (("checker", checker), ("flat", torch.ones_like(x))):
        (grad,) = torch.autograd.grad((d.purify(x) * w).sum(), x)
        assert torch.isfinite(grad).all()
        response[label] = float(grad.norm() / w.norm())
    assert response["flat"] > 0.1 and response["checker"] < 0.1 * response["flat"]


def test_unsharp_is_the_benchmarks_formula(photos):
    """x + (x - GaussianBlur(x)) clipped to [0, 1], the MSU code's unsharp_masking with amount 1."""
    import torchvision.transforms.functional as TF

    for k, s in ((3, 1.0), (7, 2.0)):
        out = DEFENSES.create("unsharp", kernel_size=k, sigma=s).purify(photos)
        expected = (2 * photos - TF.gaussian_blur(photos, [k, k], [s, s])).clamp(0, 1)
        assert torch.allclose(out, expected, atol=1e-5)


def test_upscale_modes(photos):
    """Bilinear upscaling is exactly `resize` (why the default is bicubic); bicubic and nearest differ."""
    resize = DEFENSES.create("resize", scale=0.5).purify(photos)
    assert torch.equal(DEFENSES.create("upscale", mode="bilinear").purify(photos), resize)
    for mode in ("bicubic", "nearest"):
        out = DEFENSES.create("upscale", mode=mode).purify(photos)
        assert out.shape == photos.shape and (out - resize).abs().max() > 0.02
    nearest = DEFENSES.create("upscale", mode="nearest").purify(photos)
    assert torch.equal(nearest[..., ::2, ::2], nearest[..., 1::2, 1::2])  # 2x2 blocks at scale 0.5


def test_color_quantization_levels(photos):
    """`levels` uniform levels per channel; at 2^bits levels it is `bit-depth`."""
    assert torch.equal(DEFENSES.create("color-quantization", levels=16).purify(photos),
                       DEFENSES.create("bit-depth", bits=4).purify(photos))
    out = DEFENSES.create("color-quantization", levels=5).purify(photos)
    assert set(torch.unique(out).tolist()) <= {0.0, 0.25, 0.5, 0.75, 1.0} and (out - photos).abs().max() <= 0.125


def test_flip_axes(photos):
    both, h, v = (DEFENSES.create("flip", axes=a).purify(photos) for a in ("both", "horizontal", "vertical"))
    assert torch.equal(both, torch.rot90(photos, 2, (-2, -1)))  # the benchmark's torch.flip over H and W
    assert torch.equal(h, photos.flip(-1)) and torch.equal(v, photos.flip(-2))
    assert torch.equal(DEFENSES.create("flip").purify(both), photos)  # its own inverse: it loses nothing
