"""NIQE and BRISQUE score as their references do, through `bench score`, and attacks get gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.api import create_model
from bench.cli import main
from bench.errors import WeightsMissingError
from bench.images import load_image

CALIBRA = Path(__import__("pyiqa").__file__).resolve().parent.parent / "ResultsCalibra" / "dist_dir"
FILES = [CALIBRA / f"{n}.bmp" for n in ("I03", "I04", "I06", "I08", "I19")]

# Official MATLAB values on these TID2013 images (pyiqa's calibration table).
NIQE_MATLAB = [15.7536, 3.6549, 3.2355, 3.1840, 8.6352]
BRISQUE_MATLAB = [94.6421, -0.1076, 0.9929, 5.3583, 72.2617]
# NOT official values: regression values of our own pipeline (pyiqa's BRISQUE features, the
# `brisque` 0.2.0 wheel's LIVE-trained libsvm SVR and its own min/max normalisation), measured
# here on 2025-11-25; they pin the pipeline, they do not claim agreement with MATLAB.
BRISQUE_LIVE_LIBSVM_OURS = [95.0088, -8.91768, 13.143, 17.5403, 81.2691]


@pytest.fixture(autouse=True)
def _one_thread():
    # These metrics work on small tensors: on a busy machine, torch's thread pool costs more
    # than it gains (measured 22 s -> 6 s for five images on 2 loaded cores).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _score(capsys, name: str) -> list[float]:
    assert main(["score", "--model", name, *map(str, FILES)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.rsplit(",", 1)[0] for line in lines] == [str(f) for f in FILES]
    return [float(line.rsplit(",", 1)[1]) for line in lines]


# How far our NIQE is from MATLAB's on each image, as measured for issue 19 (`bench score
# --model niqe`, 2 CPU cores): I03 -0.64%, I04 +0.0003%, I06 -0.04%, I08 +0.26%, I19 +5.07%.
# Each image may deviate by what was measured plus 0.1 percentage point (float32 arithmetic
# and BLAS differ between machines by far less), so a change of a few tenths of a percent on
# any image fails.
# The outlier, I19 (9.073 against MATLAB's 8.635): our pristine MVG parameters are the
# original NIQE release's as shipped in basicsr 1.4.2 (bench/data/niqe_pris_params.npz, the
# only copy we may ship without downloading), and with them I19, a heavily distorted image
# (coarse blocks of flat colour), scores 5.1% above the MATLAB reference. The cause is not
# established; the other four, blurred, noisy and clean content alike, agree within 0.7%, so
# the pipeline (Y channel, 8-bit rounding, 96x96 blocks, the MVG distance) is not at fault in
# general. I19 is also pinned to our own value, so that it cannot drift inside its wide band.
NIQE_REL_TOL = [0.0064 + 1e-3, 0.000003 + 1e-3, 0.0004 + 1e-3, 0.0026 + 1e-3, 0.0507 + 1e-3]
NIQE_I19_OURS = 9.07274


def test_niqe_matches_official_matlab_values(capsys):
    got = _score(capsys, "niqe")
    for f, ours, matlab, tol in zip(FILES, got, NIQE_MATLAB, NIQE_REL_TOL):
        assert abs(ours - matlab) <= tol * matlab, f"{f.stem}: {ours} vs MATLAB {matlab}, allowed {tol:.2%}"
    assert got[FILES.index(CALIBRA / "I19.bmp")] == pytest.approx(NIQE_I19_OURS, rel=1e-3)


def test_niqe_parameters_are_local_and_never_downloaded(monkeypatch):
    import pyiqa.archs.niqe_arch as arch

    def no_network(*a, **k):
        raise AssertionError("NIQE tried to download its parameters")

    monkeypatch.setattr(arch, "load_file_from_url", no_network)
    m = create_model("niqe")
    assert m.net.mu_pris_param.shape == (36,) and m.net.cov_pris_param.shape == (36, 36)


def test_brisque_live_libsvm_regression_values(capsys):
    assert _score(capsys, "brisque-live-libsvm") == pytest.approx(BRISQUE_LIVE_LIBSVM_OURS, rel=1e-4, abs=1e-3)
    assert "NOT the official" in create_model("brisque-live-libsvm").info.description


def test_brisque_official_values_where_weights_are_present(capsys):
    from bench.models.classic import BRISQUE_WEIGHTS, Brisque, pyiqa_cache_dir

    if Brisque.pretrained_weights() is None:
        pytest.skip(f"official BRISQUE weights {BRISQUE_WEIGHTS} not in pyiqa's cache {pyiqa_cache_dir()}")
    assert _score(capsys, "brisque") == pytest.approx(BRISQUE_MATLAB, rel=1e-3, abs=1e-2)


def test_brisque_without_weights_says_what_is_missing(tmp_path, monkeypatch, capsys):
    import pyiqa.archs.brisque_arch as arch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(arch, "load_file_from_url", lambda *a, **k: pytest.fail("tried to download"))
    assert main(["score", "--model", "brisque", str(FILES[0])]) == 1
    err = capsys.readouterr().err
    assert "brisque_svm_weights.pth" in err and str(tmp_path / "hub" / "pyiqa") in err and "brisque-live-libsvm" in err
    with pytest.raises(WeightsMissingError, match="nothing is downloaded"):
        create_model("brisque")


def test_brisque_reads_cached_weights_as_plain_tensors(tmp_path, monkeypatch):
    from pyiqa.archs.brisque_arch import brisque

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "pyiqa").mkdir()
    sv_coef, sv = torch.randn(7, dtype=torch.float64), torch.rand(7, 36, dtype=torch.float64)
    torch.save((sv_coef, sv), tmp_path / "pyiqa" / "brisque_svm_weights.pth")
    x = load_image(FILES[1])[0][None, :, :64, :64]
    want = brisque(x.double(), sv_coef=sv_coef, sv=sv, gamma=0.05, rho=-153.591).reshape(-1)
    m = create_model("brisque")
    assert m(x).double() == pytest.approx(want.float().double(), rel=1e-5)
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(m.gradient_forward(x).sum(), x)  # attacks get a real gradient
    assert m.info.differentiable and torch.isfinite(g).all() and g.abs().sum() > 0


@pytest.mark.parametrize("name", ["niqe", "brisque-live-libsvm"])
def test_gradient_is_real_and_finite(name):
    m = create_model(name)
    assert m.info.differentiable and m.info.gradient_surrogate is None
    x = load_image(FILES[1])[0][None, :, :192, :192].requires_grad_(True)
    (g,) = torch.autograd.grad(m.gradient_forward(x).sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    # a small step along the gradient raises the score: the gradient is informative
    with torch.no_grad():
        assert float(m((x + 2 / 255 * g.sign()).clamp(0, 1))) > float(m(x))
