"""Bad input: one clear line naming the thing and the fix, exit status 2 for names."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main

ROOT = Path(__file__).resolve().parent.parent
# known names from the registries: other tests register plugins in this process, so the
# list itself is matched loosely; everything around it is exact
KNOWN = r"\(known: [^()]*\)"


def test_unknown_matrix_exits_2_with_close_names(tmp_path, capsys):
    results = tmp_path / "unused-results"
    assert main(["run", "--matrix", "quik", "--results", str(results), "--no-site"]) == 2
    builtin = ", ".join(sorted(p.stem for p in (ROOT / "bench" / "matrices").glob("*.toml")))
    assert capsys.readouterr() == ("", (f"error: unknown matrix 'quik'; did you mean quick? (known: {builtin}); "
                                        "or give the path of a .toml file\n"))
    assert not list(results.glob("cells/*"))  # refused before any work


def test_unknown_model_in_a_matrix_exits_2(tmp_path, tiny_matrix, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(tiny_matrix.read_text().replace("cnniqa =", "cnnqia ="))
    assert main(["run", "--matrix", str(bad), "--results", str(tmp_path / "r"), "--no-site"]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(rf"error: unknown model 'cnnqia'; did you mean cnniqa(, [\w-]+)*\? {KNOWN}; "
                        rf"in matrix '{re.escape(str(bad))}', field 'models'\n", err), err
    assert not list((tmp_path / "r" / "cells").glob("*.json"))


def test_unknown_model_for_score_exits_2(capsys):
    assert main(["score", "--model", "brisk", "x.png"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and re.fullmatch(rf"error: unknown model 'brisk'; did you mean brisque\? {KNOWN}\n", err), err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; covered by the read-only file case")
def test_unwritable_results_dir(tmp_path, tiny_matrix, capsys):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    assert main(["run", "--matrix", str(tiny_matrix), "--results", str(ro / "r")]) == 1
    assert "cannot be written" in capsys.readouterr().err


def test_results_path_that_is_a_file_fails_before_any_work(tmp_path, tiny_matrix, capsys):
    f = tmp_path / "file"
    f.write_text("not a directory")
    assert main(["run", "--matrix", str(tiny_matrix), "--results", str(f)]) == 1
    assert capsys.readouterr().err == (f"error: results directory '{f}' cannot be written (Not a directory); "
                                       "choose another with --results DIR or fix its permissions\n")
    assert f.read_text() == "not a directory"


def test_export_without_store(tmp_path, capsys):
    none = tmp_path / "none"
    assert main(["export", "--results", str(none)]) == 1
    assert capsys.readouterr() == ("", (f"error: no results store at '{none}' (expected {none}/cells/); "
                                        "run `bench run` first\n"))


def test_bench_list_is_quick_and_imports_no_pyiqa():
    code = "import sys, runpy; sys.argv=['bench','list','models']; " \
           "import bench.cli as c; c.main(['list','models']); assert 'pyiqa' not in sys.modules, 'pyiqa imported'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600,
                         check=False)
    assert out.returncode == 0, out.stderr
    # one line a built-in model, in name order (a fresh process: no test's plugins), the zoo's among them
    names = [line.split()[0] for line in out.stdout.splitlines()]
    assert names == sorted(names) and len(names) == len(set(names)) == 73
    assert {"brisque", "brisque-live-libsvm", "cnniqa", "niqe", "piqe", "resnet18_iqa", "wadiqam_nr",
            "koncept512", "linearityiqa", "dbcnn", "maniqa", "tres", "qalign"} <= set(names)
    assert re.match(r"piqe +lower is better, range \[0, 100\], classic, gradient via straight-through rounding; "
                    r"weights: none needed +\[from built-in bench\.models\.classic\]$",
                    out.stdout.splitlines()[names.index("piqe")]), out.stdout


LEARNED_PLUGIN = '''
from torch import nn

from bench.api import IQAModel, ModelInfo, register_model


@register_model
class Fitless(IQAModel):
    info = ModelInfo(name="fitless-cnn", lower_better=False, score_range=(0.0, 1.0), kind="learned",
                     differentiable=True, min_size=8, weights="--weights PATH", reference="https://example.org",
                     description="weights from a checkpoint only")
    defaults = {"weights": ""}

    def __init__(self, **params):
        super().__init__(**params)
        self.net = nn.Linear(3, 1)

    def forward(self, x):
        return self.net(x.mean((2, 3))).reshape(-1)


@register_model
class Trainable(Fitless):
    info = ModelInfo(name="fit-cnn", lower_better=False, score_range=(0.0, 1.0), kind="learned",
                     differentiable=True, min_size=8, weights="trained here", reference="https://example.org",
                     description="trains here")

    def fit(self, ctx):
        pass
'''


def test_list_models_suggests_bench_train_only_for_models_that_can_train(tmp_path, capsys):
    plugin = tmp_path / "learned_plugin.py"
    plugin.write_text(LEARNED_PLUGIN)
    assert main(["list", "models", "--plugin", str(plugin)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "[not present, and it cannot be trained here: give a checkpoint with --weights PATH (or `weights` in " \
           "the matrix)]" in lines["fitless-cnn"]
    assert "bench train" not in lines["fitless-cnn"]
    assert "[not present: run `bench train --model fit-cnn` or give --weights PATH]" in lines["fit-cnn"]
    # and `bench train` refuses it in one line instead of a NotImplementedError from deep inside
    assert main(["train", "--model", "fitless-cnn", "--plugin", str(plugin)]) == 1
    err = capsys.readouterr().err
    assert err == "error: model 'fitless-cnn' cannot be trained here (it does not implement fit): give its " \
                  "weights with --weights PATH to `bench score`, or a `weights` field in a matrix\n"
