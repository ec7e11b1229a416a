"""Progress lines of the long steps (issue 18, item 11): each names its step and says the
time left, also when stderr is not a terminal, and `BENCH_PROGRESS=0` silences them."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from bench import progress as progress_module
from bench.api import FitContext, IQASplit, create_model
from bench.progress import progress
from bench.training import finetune

# tqdm's "[elapsed<remaining" field, with the remaining time filled in
LEFT = re.compile(r"\[\d\d:\d\d<\d\d:\d\d")


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_PROGRESS", "1")


def _split(n: int = 8, size: int = 48) -> IQASplit:
    g = torch.Generator().manual_seed(1)
    return IQASplit(torch.rand(n, 3, size, size, generator=g), torch.rand(n, generator=g) * 100,
                    [f"i{i}" for i in range(n)], [f"r{i % 4}" for i in range(n)])


def _lines_with(err: str, text: str) -> list[str]:
    return [line for line in err.splitlines() if text in line]


def test_helper_names_the_step_and_the_time_left_as_lines(shown: None, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in progress(range(3), desc="demo: counting", unit="thing"):
        pass
    err = capsys.readouterr().err
    lines = _lines_with(err, "demo: counting")
    assert lines and "\r" not in err  # not a terminal: whole lines, no in-place redraws
    assert any("3/3" in line and LEFT.search(line) for line in lines), err


@pytest.mark.parametrize("setting", ["0", "off", "false"])
def test_helper_respects_the_off_switch(setting: str, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BENCH_PROGRESS", setting)
    with progress(total=2, desc="demo: silent") as bar:
        bar.update(2)
    assert list(progress([1, 2], desc="demo: silent")) == [1, 2]  # still iterates
    assert "demo: silent" not in capsys.readouterr().err


def test_explicit_show_and_empty_steps(shown: None, capsys: pytest.CaptureFixture[str]) -> None:
    list(progress(range(2), desc="demo: hidden", show=False))
    list(progress([], desc="demo: empty"))  # nothing to count: no bar, like the runner's
    assert capsys.readouterr().err == ""


def test_no_progress_flag_switches_it_off_for_workers_too(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from bench.cli import main

    monkeypatch.setenv("BENCH_PROGRESS", "1")  # restored afterwards
    main(["run", "--matrix", "quick", "--results", str(tmp_path / "r"), "--no-progress", "--jobs", "0"])
    assert not progress_module.enabled()


@pytest.mark.parametrize("name", ["cnniqa", "wadiqam_nr", "resnet18_iqa"])
def test_model_training_shows_its_progress(name: str, shown: None, capsys: pytest.CaptureFixture[str]) -> None:
    split = _split()
    m = create_model(name, epochs=2, batch_size=4)
    lo, hi = m.info.score_range
    ctx = FitContext(train=split, targets=lo + split.mos / 100 * (hi - lo), seed=0, device=torch.device("cpu"),
                     log=lambda s: None)
    m.fit(ctx)
    err = capsys.readouterr().err
    lines = _lines_with(err, f"model '{name}': training, epoch")
    # one bar over both epochs (2 x 2 batches): the time left is that of the whole fit
    assert any(f"model '{name}': training, epoch 2/2" in line and "4/4" in line and LEFT.search(line)
               for line in lines), err


def test_finetune_shows_its_progress_over_all_epochs(shown: None, capsys: pytest.CaptureFixture[str]) -> None:
    split = _split(6, 8)
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1))
    ctx = FitContext(train=split, targets=split.mos / 100, seed=0, device=torch.device("cpu"), log=lambda s: None)
    finetune(model, ctx, lambda x, y: ((model(x).reshape(-1) - y) ** 2).mean(), name="tiny", epochs=3, lr=1e-3,
             batch_size=3)
    err = capsys.readouterr().err
    assert any("defense 'tiny': fine-tuning, epoch 3/3" in line and "6/6" in line and LEFT.search(line)
               for line in _lines_with(err, "defense 'tiny'")), err


def test_embedded_pseudo_mos_shows_its_progress(shown: None, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.datasets.embedded import pseudo_mos

    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    pseudo_mos(ref, ref, batch=2)
    err = capsys.readouterr().err
    assert any("3/3" in line and LEFT.search(line) for line in _lines_with(err, "embedded: building pseudo-MOS")), err


def test_decode_check_shows_progress_only_for_files_it_decodes(shown: None, tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from bench.datasets.checks import check_files

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.full((40, 40, 3), 40 * i, np.uint8)).save(p)
        paths.append(str(p))
    assert check_files(paths, True, "tiny", tmp_path) == [None, None, None]
    err = capsys.readouterr().err
    assert any("3/3" in line and LEFT.search(line) for line in _lines_with(err, "tiny: decoding images")), err
    assert check_files(paths, True, "tiny", tmp_path) == [None, None, None]  # all cached: nothing to show
    assert "decoding images" not in capsys.readouterr().err


def test_lines_do_not_glue_onto_a_bar_redrawn_in_place(shown: None, capsys: pytest.CaptureFixture[str]) -> None:
    """The runner's cell bar leaves its line open (a carriage return, no newline)."""
    import sys

    from tqdm import tqdm

    cells = tqdm(total=2, unit="cell", file=sys.stderr)
    list(progress(range(2), desc="demo: inner"))
    cells.close()
    err = capsys.readouterr().err
    assert all(line.startswith("demo: inner") for line in err.split("\n") if "demo: inner" in line), err
