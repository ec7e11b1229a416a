"""`real-esrgan` (baselines/realesrgan.py, baselines/_rrdbnet.py) on tiny generators: the
published checkpoint layout loads strictly and the purification keeps the input's shape and
range and passes a gradient; a URL is downloaded once and its sha256 checked; a checkpoint
carrying pickled code is refused unrun; no weights, or a file that does not fit, is one line
before any work; and the default architecture has RealESRGAN_x4plus's exact parameter count."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from baselines._rrdbnet import RRDBNet
from bench.api import DEFENSES, CheckpointError, WeightsMissingError
from bench.cli import main
from bench.gradients import AttackView, DefendedModel
from bench.plugins import load_plugins

load_plugins()
TINY = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}
X4PLUS_URL = "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth"


def one_line(msg: str) -> bool:
    return len(msg.splitlines()) == 1 and all(c.isprintable() for c in msg)


def _tiny(scale: int = 4, **config: int) -> RRDBNet:
    """A tiny generator (fixed seed) whose output sits mostly inside (0, 1): its last layer
    shrunk around 0.5, so that the clipping leaves the gradient of most pixels."""
    torch.manual_seed(0)
    net = RRDBNet(**{**TINY, **config}, scale=scale)
    with torch.no_grad():
        net.conv_last.weight.mul_(0.1)
        net.conv_last.bias.fill_(0.5)
    return net


def _official(path: Path, scale: int = 4, key: str = "params_ema", **config: int) -> Path:
    """A tiny generator's weights saved as the published files hold them: {'params_ema': sd}."""
    torch.save({key: _tiny(scale, **config).state_dict()}, path)
    return path


def _images(n: int = 2, h: int = 37, w: int = 50) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------- the architecture
def test_default_is_realesrgan_x4plus_with_its_exact_parameter_count():
    """16,697,987: counted here by hand from the layer shapes the papers give (nf 64, gc 32, 23 RRDBs)."""
    nf, gc, blocks = 64, 32, 23

    def conv(cin: int, cout: int) -> int:  # 3x3 kernel and a bias
        return cin * cout * 9 + cout

    dense = sum(conv(nf + k * gc, gc) for k in range(4)) + conv(nf + 4 * gc, nf)
    by_hand = conv(3, nf) + blocks * 3 * dense + conv(nf, nf) * 4 + conv(nf, 3)  # body, up1, up2, hr
    assert by_hand == 16_697_987
    with torch.device("meta"):
        net = RRDBNet()
    assert sum(p.numel() for p in net.parameters()) == by_hand
    keys = set(net.state_dict())
    assert {"conv_first.weight", "body.22.rdb3.conv5.bias", "conv_body.weight", "conv_up1.weight", "conv_up2.bias",
            "conv_hr.weight", "conv_last.bias"} <= keys and len(keys) == 702
    with torch.device("meta"):
        x2 = RRDBNet(scale=2)
    assert x2.conv_first.in_channels == 12  # pixel-unshuffle by 2 in front


def test_dense_block_and_residual_scaling_as_the_paper_describes():
    torch.manual_seed(0)
    net = RRDBNet(**TINY, scale=4)
    block, x = net.body[0].rdb1, torch.randn(1, 8, 5, 5)
    feats = [x]
    for k in range(1, 5):
        feats.append(F.leaky_relu(getattr(block, f"conv{k}")(torch.cat(feats, 1)), 0.2))
    torch.testing.assert_close(block(x), x + 0.2 * block.conv5(torch.cat(feats, 1)))
    with torch.no_grad():  # every dense block's last convolution at zero: each dense block is the identity,
        for m in net.body.modules():  # so an RRDB returns x + 0.2 * x (its own scaled residual)
            if hasattr(m, "conv5"):
                m.conv5.weight.zero_()
                m.conv5.bias.zero_()
    torch.testing.assert_close(block(x), x)
    torch.testing.assert_close(net.body(x), 1.2 * x)
    assert net(torch.rand(1, 3, 6, 7)).shape == (1, 3, 24, 28)
    assert RRDBNet(**TINY, scale=2)(torch.rand(1, 3, 6, 8)).shape == (1, 3, 12, 16)


# ----------------------------------------------------------------------------- loading and purifying
@pytest.mark.parametrize(("scale", "key"), [(4, "params_ema"), (2, "params_ema"), (4, "params"), (4, None)])
def test_published_layout_loads_and_purifies_with_a_gradient(tmp_path, scale, key):
    path = tmp_path / "w.pth"
    if key is None:  # a plain state_dict
        torch.save(_tiny(scale).state_dict(), path)
    else:
        _official(path, scale, key)
    d = DEFENSES.create("real-esrgan", **TINY, scale=scale, weights=str(path))
    x = _images().requires_grad_(True)
    out = d.purify(x)
    assert out.shape == x.shape and out.dtype == x.dtype and 0 <= out.min() and out.max() <= 1
    assert ((out > 0) & (out < 1)).float().mean() > 0.9  # the gradient below is not a few pixels' alone
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert torch.equal(d.purify(x.detach()), d.purify(x.detach()))  # deterministic
    assert not any(p.requires_grad for p in d.net.parameters())


def test_metadata_attacked_through_its_gradient_and_records_the_file(tmp_path, centre_brightness):
    path = _official(tmp_path / "w.pth")
    d = DEFENSES.create("real-esrgan", **TINY, weights=str(path))
    info = d.info
    assert info.kind == "purification" and info.differentiable and not info.randomized and info.surrogate is None
    assert "RealESRGAN_x4plus.pth" in info.needs_weights and X4PLUS_URL in info.needs_weights
    view = AttackView(DefendedModel(centre_brightness, d), eot_samples=2)
    assert "bpda" not in view.summary and "eot" not in view.summary
    x = _images().requires_grad_(True)
    (g,) = torch.autograd.grad(view(x).sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert not d.trains()  # nothing fitted or cached: the file is recorded as the cells' fit part
    assert d.provenance() == {"source": "local file", "path": str(path), "scale": 4,
                              "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def test_no_weights_is_one_line_before_any_work(tmp_path, capsys):
    for params in ({}, {"weights": str(tmp_path / "absent.pth")}):
        with pytest.raises(WeightsMissingError) as e:
            DEFENSES.create("real-esrgan", **params)
        msg = str(e.value)
        assert one_line(msg) and "defense 'real-esrgan'" in msg and X4PLUS_URL in msg
        assert 'weights = "PATH or URL"' in msg
    with pytest.raises(WeightsMissingError, match="RealESRGAN_x2plus.pth"):
        DEFENSES.create("real-esrgan", scale=2)


def test_a_file_that_does_not_fit_names_its_keys(tmp_path):
    state = _tiny().state_dict()
    state["conv_final.weight"] = state.pop("conv_last.weight")
    path = tmp_path / "renamed.pth"
    torch.save({"params_ema": state}, path)
    with pytest.raises(CheckpointError) as e:
        DEFENSES.create("real-esrgan", **TINY, weights=str(path))
    msg = str(e.value)
    assert one_line(msg) and "missing keys conv_last.weight" in msg and "unexpected keys conv_final.weight" in msg
    deeper = _official(tmp_path / "deeper.pth", num_block=2)  # a second RRDB the config does not have
    with pytest.raises(CheckpointError, match=r"missing keys none; unexpected keys body\.1\.rdb1\.conv1\.weight"):
        DEFENSES.create("real-esrgan", **TINY, weights=str(deeper))
    with pytest.raises(CheckpointError, match="wrong shapes for conv_first.weight"):  # an x4 file at scale 2
        DEFENSES.create("real-esrgan", **TINY, scale=2, weights=str(_official(tmp_path / "x4.pth")))


def test_bench_list_says_which_file_to_supply(capsys):

    assert main(["list", "defenses"]) == 0
    line = next(v for v in capsys.readouterr().out.splitlines() if v.startswith("real-esrgan "))
    assert "needs weights you supply: RealESRGAN_x4plus.pth" in line and X4PLUS_URL in line
