"""What every defense that runs a published network does with the weights file it is given
(baselines/_published.py), checked for each of them: a URL is downloaded once (served from
127.0.0.1) and its sha256 checked (right, upper-case, wrong, malformed), an unreachable one
is one line naming the release, a file carrying pickled code is refused, never run, and a
run whose matrix names the defense without weights stops in one line before any work."""

from __future__ import annotations

import hashlib

import pytest
import test_mprnet as mprnet
import test_realesrgan as realesrgan
import torch

from bench.api import DEFENSES, CheckpointError, ParamError, WeightsMissingError
from bench.cli import main
from bench.matrix import load_matrix

CASES = [  # the defense, its test module (TINY, _official, _images), the released file, its page, a key inside
    pytest.param("real-esrgan", realesrgan, "RealESRGAN_x4plus.pth", realesrgan.X4PLUS_URL,
                 {"params_ema": "conv_first.weight"}, id="real-esrgan"),
    pytest.param("mprnet", mprnet, "model_denoising.pth", mprnet.DENOISING_URL, {"state_dict": "tail.weight"},
                 id="mprnet"),
]


def one_line(msg: str) -> bool:
    return len(msg.splitlines()) == 1 and all(c.isprintable() for c in msg)


@pytest.mark.parametrize(("name", "case", "file", "page", "inner"), CASES)
def test_a_run_without_weights_stops_before_any_work(name, case, file, page, inner, tmp_path, capsys):
    matrix = tmp_path / "m.toml"
    matrix.write_text(f'name = "m"\n[models]\npiqe = {{}}\n[defenses]\nnone = {{}}\n"{name}" = {{}}\n'
                      '[attacks]\nfgsm = { eps = [4] }\n[datasets]\nembedded = { n_images = 8 }\n')
    with pytest.raises(WeightsMissingError):
        load_matrix(str(matrix))
    results = tmp_path / "results"
    assert main(["run", "--matrix", str(matrix), "--results", str(results)]) != 0
    err = capsys.readouterr().err.strip()
    assert one_line(err) and err.startswith(f"error: defense '{name}'") and page in err
    assert not results.exists()  # nothing computed nor written


@pytest.mark.parametrize(("name", "case", "file", "page", "inner"), CASES)
def test_url_is_downloaded_once_and_its_sha256_checked(name, case, file, page, inner, served, tmp_path):
    folder, base, handler = served
    path = case._official(folder / file)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    url = f"{base}/{file}"
    d = DEFENSES.create(name, **case.TINY, weights=url, sha256=digest)
    assert d.path.read_bytes() == path.read_bytes() and str(tmp_path / "cache" / "downloads") in str(d.path)
    assert d.purify(case._images()).shape == (2, 3, 37, 50)
    rec = d.provenance()
    assert rec["url"] == url and rec["sha256"] == digest and rec["source"] == "downloaded"
    fetched = handler.requests
    DEFENSES.create(name, **case.TINY, weights=url, sha256=digest.upper())  # cached: not fetched again
    assert handler.requests == fetched == 1
    with pytest.raises(CheckpointError) as e:
        DEFENSES.create(name, **case.TINY, weights=url, sha256="0" * 64)
    assert one_line(str(e.value)) and digest in str(e.value) and "0" * 64 in str(e.value)
    with pytest.raises(WeightsMissingError) as e:  # not served: the reason and what is needed, one line
        DEFENSES.create(name, **case.TINY, weights=f"{base}/nothing.pth")
    assert one_line(str(e.value)) and "could not be downloaded" in str(e.value) and page in str(e.value)
    with pytest.raises(ParamError, match="'sha256' must be 64 hex digits"):
        DEFENSES.create(name, **case.TINY, weights=url, sha256="abc")


@pytest.mark.parametrize(("name", "case", "file", "page", "inner"), CASES)
def test_pickled_code_is_refused_without_running_it(name, case, file, page, inner, tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))  # run, it would create the file

    path = tmp_path / file
    ((wrapper, key),) = inner.items()
    torch.save({wrapper: {key: Payload()}}, path)
    with pytest.raises(CheckpointError) as e:
        DEFENSES.create(name, **case.TINY, weights=str(path))
    assert one_line(str(e.value)) and "refused" in str(e.value)
    assert not marker.exists()
