"""Models score as the originals do, through the code path that `bench score` uses."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from bench.api import create_model
from bench.cli import main
from bench.errors import CheckpointError, WeightsMissingError
from bench.images import load_image
from bench.weights import load_into, read_state_dict

CALIBRA = Path(__import__("pyiqa").__file__).resolve().parent.parent / "ResultsCalibra" / "dist_dir"
FILES = [CALIBRA / f"{n}.bmp" for n in ("I03", "I04", "I06", "I08", "I19")]
PIQE_MATLAB = [100.00, 21.62, 35.86, 41.15, 76.95]  # MATLAB piqe() on these TID2013 images


def test_piqe_matches_official_matlab_values(capsys):
    assert main(["score", "--model", "piqe", *map(str, FILES)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.rsplit(",", 1)[0] for line in lines] == [str(f) for f in FILES]
    got = [float(line.rsplit(",", 1)[1]) for line in lines]
    assert got == pytest.approx(PIQE_MATLAB, rel=1e-2)


def test_piqe_gradient_needs_its_declared_surrogate():
    m = create_model("piqe")
    x = load_image(FILES[1])[0][None, :, :96, :96].requires_grad_(True)
    (g_plain,) = torch.autograd.grad(m(x).sum(), x)
    assert not m.info.differentiable and g_plain.abs().sum() == 0  # why it declares a surrogate
    (g,) = torch.autograd.grad(m.gradient_forward(x).sum(), x)
    assert g.abs().sum() > 0
    assert torch.equal(m.gradient_forward(x).detach(), m(x).detach())


def test_learned_model_without_weights_says_what_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert main(["score", "--model", "cnniqa", str(FILES[0])]) == 1
    err = capsys.readouterr().err
    assert "model 'cnniqa' has no weights here" in err and "pyiqa" in err and "bench train" in err
    with pytest.raises(WeightsMissingError):
        from bench.weights import resolve_weights

        resolve_weights(create_model("cnniqa"), trained_path=tmp_path / "x.pt", train=None, log=print)


def test_score_with_local_weights(tmp_path, capsys):
    m = create_model("cnniqa").eval()
    torch.save(m.state_dict(), tmp_path / "w.pt")
    assert main(["score", "--model", "cnniqa", "--weights", str(tmp_path / "w.pt"), str(FILES[0])]) == 0
    path, score = capsys.readouterr().out.strip().rsplit(",", 1)
    assert path == str(FILES[0]) and float(score) == pytest.approx(float(m(load_image(FILES[0])[0][None]).detach()), rel=1e-4)


class Evil:
    """Unpickling it touches `mark`: code from the file ran."""

    def __init__(self, mark: Path) -> None:
        self.mark = mark

    def __reduce__(self):
        return (Path.touch, (self.mark,))


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    pickle.loads(pickle.dumps(Evil(tmp_path / "control")))  # the mark works: a plain unpickle runs it
    assert (tmp_path / "control").exists()
    mark = tmp_path / "evil-checkpoint-ran"
    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump({"params": {"w": Evil(mark)}}, f)
    with pytest.raises(CheckpointError, match="refused.*never loaded"):
        read_state_dict(p)
    assert not mark.exists()


class TrainingNote:
    """A harmless custom object, as training scripts often save beside the weights."""

    def __init__(self) -> None:
        self.epoch = 3


def test_refused_checkpoint_is_one_clean_line_with_the_conversion(tmp_path, capsys):
    p = tmp_path / "with-note.pt"
    torch.save({"params": create_model("cnniqa").state_dict(), "note": TrainingNote()}, p)
    with pytest.raises(CheckpointError) as e:
        read_state_dict(p)
    msg = e.value.args[0]  # as built, before the one-line guard of BenchError.__str__
    for relayed in ("\x1b", "[1m", "weights_only=False", "can still be loaded", "add_safe_globals"):
        assert relayed not in msg, (relayed, msg)
    assert msg.startswith(f"checkpoint '{p}' is refused: it carries a pickled test_models.TrainingNote object "
                          "besides tensors;")
    assert "torch.save(model.state_dict(), 'weights.pth')" in msg and ".safetensors" in msg
    # the same through the CLI: one line on stderr, exit status 1
    assert main(["score", "--model", "cnniqa", "--weights", str(p), str(FILES[0])]) == 1
    err = capsys.readouterr().err  # "error: model 'cnniqa' (its module): CheckpointError: <msg>"
    assert err.startswith("error: ") and err.endswith(f": {msg}\n") and err.count("\n") == 1, err


def test_checkpoint_that_does_not_fit_lists_keys(tmp_path):
    m = create_model("cnniqa")
    state = m.state_dict()
    state["extra.weight"] = state.pop("net.fc3.weight")
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match=r"missing keys \['net.fc3.weight'\].*unexpected keys \['extra.weight'\]"):
        load_into(m, tmp_path / "w.pt", "model 'cnniqa'")


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16"])
def test_images_are_converted_to_rgb(tmp_path, mode):
    from PIL import Image

    src = Image.open(FILES[1]).convert("RGB").resize((32, 32))
    img = src.convert(mode) if mode != "I;16" else Image.fromarray(
        (torch.rand(32, 32).numpy() * 65535).astype("uint16"))
    ext = "tiff" if mode == "CMYK" else "png"
    img.save(tmp_path / f"x.{ext}")
    x, conv = load_image(tmp_path / f"x.{ext}")
    assert x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1 and conv == f"{mode}->RGB"


def test_unreadable_image_is_one_error_line_and_the_rest_is_scored(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    assert main(["score", "--model", "piqe", str(bad), str(FILES[1])]) == 1
    out = capsys.readouterr()
    assert out.err.startswith(f"error: cannot score '{bad}': not an image that can be read (") and \
        out.err.count("\n") == 1
    path, score = out.out.removesuffix("\n").split(",")  # one line: the readable image, scored
    assert path == str(FILES[1]) and float(score) == pytest.approx(PIQE_MATLAB[1], rel=1e-2)


def test_published_checkpoint_layout_loads(tmp_path):
    """pyiqa's published files hold the bare network under 'params' (no 'net.' prefix)."""
    src = create_model("cnniqa").eval()
    torch.save({"params": src.net.state_dict()}, tmp_path / "CNNIQA_koniq10k.pth")
    dst = create_model("cnniqa").eval()
    load_into(dst, tmp_path / "CNNIQA_koniq10k.pth", "model 'cnniqa'")
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(src(x), dst(x))
