"""Bad input: one clear line naming the thing and the fix, exit status 2 for names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_unknown_matrix_exits_2_with_close_names(capsys):
    assert main(["run", "--matrix", "quik", "--results", "/tmp/unused-results", "--no-site"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown matrix 'quik'; did you mean quick" in err


def test_unknown_model_in_a_matrix_exits_2(tmp_path, tiny_matrix, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(tiny_matrix.read_text().replace("cnniqa =", "cnnqia ="))
    assert main(["run", "--matrix", str(bad), "--results", str(tmp_path / "r"), "--no-site"]) == 2
    assert "unknown model 'cnnqia'; did you mean cnniqa" in capsys.readouterr().err
    assert not list((tmp_path / "r" / "cells").glob("*.json"))


def test_unknown_model_for_score_exits_2(capsys):
    assert main(["score", "--model", "brisk", "x.png"]) == 2
    assert "unknown model 'brisk'" in capsys.readouterr().err


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
    err = capsys.readouterr().err
    assert f"results directory '{f}' cannot be written" in err and "--results" in err


def test_export_without_store(tmp_path, capsys):
    assert main(["export", "--results", str(tmp_path / "none")]) == 1
    assert "no results store" in capsys.readouterr().err


def test_bench_list_is_quick_and_imports_no_pyiqa():
    code = "import sys, runpy; sys.argv=['bench','list','models']; " \
           "import bench.cli as c; c.main(['list','models']); assert 'pyiqa' not in sys.modules, 'pyiqa imported'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
