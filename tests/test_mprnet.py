"""`mprnet` (baselines/mprnet.py, baselines/_mprnet.py) on tiny networks: the released
checkpoints' layout ({'state_dict': sd}, 'module.' prefixes, or a plain state_dict) loads
strictly and the purification keeps the input's shape (padded to multiples of 8 and cropped
back) and range and passes a gradient; the paper's structure holds (supervised attention,
the stage-1 quarters and halves, the global residual); a URL is downloaded once and its sha256
checked; pickled code is refused unrun; no weights, or a file that does not fit, is one line
before any work; and the released widths have the exact parameter counts counted by hand."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from baselines._mprnet import MPRNet, join, split
from bench.api import DEFENSES, CheckpointError, ParamError, WeightsMissingError
from bench.cli import main
from bench.gradients import AttackView, DefendedModel
from bench.plugins import load_plugins

load_plugins()
TINY = {"n_feat": 8, "scale_unetfeats": 4, "scale_orsnetfeats": 4, "num_cab": 1}
DENOISING_URL = "https://drive.google.com/file/d/1LODPt9kYmxwU98g96UrRA0_Eh5HYcsRw/view"


def one_line(msg: str) -> bool:
    return len(msg.splitlines()) == 1 and all(c.isprintable() for c in msg)


def _tiny(**config: int) -> MPRNet:
    """A tiny network (fixed seed) whose output sits mostly inside (0, 1): its last convolution
    shrunk, so the output is the input plus a small residual and clipping leaves most gradients."""
    torch.manual_seed(0)
    net = MPRNet(**{**TINY, **config})
    with torch.no_grad():
        net.tail.weight.mul_(0.1)
    return net


def _official(path: Path, prefix: str = "module.", **config: int) -> Path:
    """A tiny network's weights saved as the released files hold them: {'state_dict': sd}, keys
    prefixed 'module.' (trained under DataParallel), next to what else a training checkpoint keeps."""
    state = {prefix + k: v for k, v in _tiny(**config).state_dict().items()}
    torch.save({"epoch": 3, "state_dict": state, "optimizer": {"lr": 2e-4}}, path)
    return path


def _images(n: int = 2, h: int = 37, w: int = 50) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------- the architecture
@pytest.mark.parametrize(("task", "f", "u", "o", "released"), [("denoising", 80, 48, 32, 15_741_025),
                                                              ("deblurring", 96, 48, 32, 20_127_073),
                                                              ("deraining", 40, 20, 16, 3_637_249)])
def test_released_widths_have_their_exact_parameter_counts(task, f, u, o, released):
    """Counted by hand from the layer shapes the paper describes (no convolution has a bias;
    channel attention squeezes by 4; one PReLU slope shared by every CAB)."""

    def conv(cin: int, cout: int, k: int = 3) -> int:
        return cin * cout * k * k

    def cab(c: int) -> int:  # conv, PReLU (shared), conv, squeeze c -> c/4 -> c
        return 2 * conv(c, c) + conv(c, c // 4, 1) + conv(c // 4, c, 1)

    levels, w = (f, f + u, f + 2 * u), f + o
    encoder = sum(2 * cab(c) for c in levels) + conv(f, f + u, 1) + conv(f + u, f + 2 * u, 1)  # + down12, down23
    csff = 2 * sum(conv(c, c, 1) for c in levels)  # stage 2's encoder only
    decoder = sum(2 * cab(c) for c in levels) + cab(f) + cab(f + u) + conv(f + u, f, 1) + conv(f + 2 * u, f + u, 1)
    shallow = conv(3, f) + cab(f)
    sam = conv(f, f, 1) + conv(f, 3, 1) + conv(3, f, 1)
    orb = 8 * cab(w) + conv(w, w)
    orsnet = 3 * orb + 2 * (conv(f + u, f, 1) + conv(f + 2 * u, f + u, 1) + conv(f + u, f, 1)) + 6 * conv(f, w, 1)
    by_hand = (3 * shallow + 2 * encoder + csff + 2 * decoder + orsnet + 2 * sam
               + conv(2 * f, f) + conv(2 * f, w) + conv(w, 3) + 1)  # concat12, concat23, tail, the PReLU
    assert by_hand == released
    with torch.device("meta"):  # never run: only its shapes are read
        net = MPRNet(f, u, o)
    assert sum(p.numel() for p in net.parameters()) == by_hand
    keys = set(net.state_dict())  # 55 CABs of 5 keys (the PReLU listed in each) and 41 other convolutions
    assert len(keys) == 55 * 5 + 41
    assert {"shallow_feat1.0.weight", "shallow_feat3.1.body.1.weight", "stage1_encoder.down12.down.1.weight",
            "stage2_encoder.csff_dec3.weight", "stage1_decoder.up32.up.1.weight",
            "stage2_decoder.skip_attn2.CA.conv_du.2.weight", "stage3_orsnet.orb3.body.8.weight", "stage3_orsnet.up_dec2.1.up.1.weight",
            "stage3_orsnet.conv_enc3.weight", "sam23.conv3.weight", "concat12.weight", "concat23.weight",
            "tail.weight"} <= keys
    assert "stage1_encoder.csff_enc1.weight" not in keys and not any(k.endswith(".bias") for k in keys)


def test_supervised_attention_as_the_paper_describes():
    net = _tiny()
    sam, feats, image = net.sam12, torch.randn(2, 8, 6, 5), torch.rand(2, 3, 6, 5)
    out, restored = sam(feats, image)
    torch.testing.assert_close(restored, sam.conv2(feats) + image)  # a residual image on the stage's input
    torch.testing.assert_close(out, feats + sam.conv1(feats) * torch.sigmoid(sam.conv3(restored)))


def test_stage_one_reads_quarters_and_halves_and_the_last_stage_adds_the_input():
    net, x = _tiny(), _images(2, 16, 24)
    h, w = 8, 12
    assert torch.equal(split(split(x, 2), 3)[4:], torch.cat([x[..., :h, w:], x[..., h:, w:]]))  # right quarters
    assert torch.equal(join(join(split(split(x, 2), 3), 3), 2), x)

    def half(img: torch.Tensor) -> torch.Tensor:  # the paper's stage 1 on one half, its two quarters one by one
        left, right = (net.stage1_encoder(net.shallow_feat1(q)) for q in (img[..., :w], img[..., w:]))
        return net.sam12(net.stage1_decoder([torch.cat(p, 3) for p in zip(left, right, strict=True)])[0], img)[1]

    with torch.no_grad():
        _, stage2, stage1 = net(x)
        torch.testing.assert_close(stage1, torch.cat([half(x[..., :h, :]), half(x[..., h:, :])], 2))
        moved = x.clone()
        moved[..., :h, :w] += 0.1  # the top-left quarter: stage 1's bottom half cannot see it, stage 2 does
        _, stage2b, stage1b = net(moved)
        assert torch.equal(stage1b[..., h:, :], stage1[..., h:, :]) and not torch.equal(stage1b[..., :h, :], stage1[..., :h, :])
        assert not torch.equal(stage2b[..., h:, :], stage2[..., h:, :])
        net.tail.weight.zero_()  # no residual from stage 3: the image itself
        assert torch.equal(net(x)[0], x)
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.rand(1, 3, 12, 16))


# ----------------------------------------------------------------------------- loading and purifying
@pytest.mark.parametrize("layout", ["module.", "state_dict", "plain"])
def test_released_layout_loads_and_purifies_with_a_gradient(tmp_path, layout):
    path = tmp_path / "model_denoising.pth"
    if layout == "plain":
        torch.save(_tiny().state_dict(), path)
    else:
        _official(path, prefix="module." if layout == "module." else "")
    d = DEFENSES.create("mprnet", **TINY, weights=str(path))
    torch.testing.assert_close(d.net.state_dict(), _tiny().state_dict())
    x = _images().requires_grad_(True)
    out = d.purify(x)
    assert out.shape == x.shape and out.dtype == x.dtype and 0 <= out.min() and out.max() <= 1
    assert ((out > 0) & (out < 1)).float().mean() > 0.9  # the gradient below is not a few pixels' alone
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert torch.equal(d.purify(x.detach()), d.purify(x.detach()))  # deterministic
    assert not any(p.requires_grad for p in d.net.parameters())


def test_odd_sides_are_reflect_padded_to_multiples_of_8_and_cropped_back(tmp_path):
    d = DEFENSES.create("mprnet", **TINY, weights=str(_official(tmp_path / "w.pth")))
    for h, w in ((37, 50), (33, 41), (40, 56), (5, 3)):
        x = _images(1, h, w)
        assert d.purify(x).shape == x.shape
    x = _images(1, 37, 50)
    padded = F.pad(x, (0, 6, 0, 3), mode="reflect")  # to 40 x 56, on the bottom and right as the official test
    with torch.no_grad():
        torch.testing.assert_close(d.purify(x), d.net(padded)[0][..., :37, :50].clamp(0, 1))


def test_metadata_attacked_through_its_gradient_and_records_the_file(tmp_path, centre_brightness):
    path = _official(tmp_path / "w.pth")
    d = DEFENSES.create("mprnet", **TINY, weights=str(path))
    info = d.info
    assert info.kind == "purification" and info.differentiable and not info.randomized and info.surrogate is None
    assert "model_denoising.pth" in info.needs_weights and DENOISING_URL in info.needs_weights
    view = AttackView(DefendedModel(centre_brightness, d), eot_samples=2)
    assert "bpda" not in view.summary and "eot" not in view.summary
    x = _images().requires_grad_(True)
    (g,) = torch.autograd.grad(view(x).sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert not d.trains()  # nothing fitted or cached: the file is recorded as the cells' fit part
    assert d.provenance() == {"source": "local file", "path": str(path), "task": "denoising",
                              "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def test_no_weights_is_one_line_before_any_work(tmp_path, capsys):
    for params in ({}, {"weights": str(tmp_path / "absent.pth")}):
        with pytest.raises(WeightsMissingError) as e:
            DEFENSES.create("mprnet", **params)
        msg = str(e.value)
        assert one_line(msg) and "defense 'mprnet'" in msg and "model_denoising.pth" in msg and DENOISING_URL in msg
        assert 'weights = "PATH or URL"' in msg
    with pytest.raises(WeightsMissingError, match="model_deraining.pth"):
        DEFENSES.create("mprnet", task="deraining")
    with pytest.raises(ParamError, match="'n_feat' must be 0"):
        DEFENSES.create("mprnet", n_feat=2)


def test_a_file_that_does_not_fit_names_its_keys(tmp_path):
    state = _tiny().state_dict()
    state["tail_conv.weight"] = state.pop("tail.weight")
    path = tmp_path / "renamed.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as e:
        DEFENSES.create("mprnet", **TINY, weights=str(path))
    msg = str(e.value)
    assert one_line(msg) and "missing keys tail.weight" in msg and "unexpected keys tail_conv.weight" in msg
    deeper = _official(tmp_path / "deeper.pth", num_cab=2)  # two CABs in each ORB: its conv moves from body.1 to body.2
    with pytest.raises(CheckpointError, match=r"missing keys stage3_orsnet\.orb1\.body\.1\.weight, .*; unexpected keys "
                       r"stage3_orsnet\.orb1\.body\.1\.body\.0\.weight, .* \(and 13 more\)$"):
        DEFENSES.create("mprnet", **TINY, weights=str(deeper))
    wider = _official(tmp_path / "wider.pth", n_feat=12)  # another task's widths
    with pytest.raises(CheckpointError, match=r"do not fit MPRNet\(n_feat=8, .*wrong shapes for shallow_feat1\.0"):
        DEFENSES.create("mprnet", **TINY, weights=str(wider))
    state = _tiny().state_dict()
    state["stage3_orsnet.orb2.body.0.body.1.weight"] = torch.tensor([0.5])  # a slope of its own
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError, match="PReLU slopes differ between blocks") as e:
        DEFENSES.create("mprnet", **TINY, weights=str(path))
    assert one_line(str(e.value))


def test_bench_list_says_which_file_to_supply(capsys):
    assert main(["list", "defenses"]) == 0
    line = next(v for v in capsys.readouterr().out.splitlines() if v.startswith("mprnet "))
    assert "needs weights you supply: model_denoising.pth" in line and DENOISING_URL in line
