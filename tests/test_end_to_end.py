"""A tiny real run through the CLI: matrix -> cells -> store -> export -> site."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_matrix

from bench.cli import main
from bench.store import EXPORT_COLUMNS, ResultsStore


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    matrix = write_matrix(d / "tiny.toml")
    code = main(["run", "--matrix", str(matrix), "--results", str(d / "results"), "--site-out", str(d / "site"),
                 "--no-progress", "--device", "cpu"])
    return d, matrix, code


def frame(results: Path) -> pd.DataFrame:
    from bench.store import records_frame

    return records_frame(list(ResultsStore(results).records()))


def test_every_cell_is_computed(run_dir):
    d, _, code = run_dir
    df = frame(d / "results")
    assert code == 0
    assert len(df) == 2 * 2 * 3  # models x defenses x (fgsm@4, pgd@4, pgd@8)
    assert set(df.status) == {"ok"}, df[["model", "defense", "attack", "status", "message"]]
    assert (df.n_images == 8).all()


def test_attack_raises_the_undefended_score_within_budget(run_dir):
    d, _, _ = run_dir
    df = frame(d / "results")
    undefended = df[(df.defense == "none") & (df.attack == "pgd")]
    assert (undefended.abs_gain > 0.02).all(), undefended[["model", "eps", "abs_gain"]]
    assert (df.linf <= df.eps / 255 + 1e-6).all()
    # a bigger budget buys a bigger gain for PGD on the learned model
    cnn = undefended[undefended.model == "cnniqa"].set_index("eps").abs_gain
    assert cnn[8.0] > cnn[4.0]


def test_records_carry_provenance_and_views(run_dir):
    d, _, _ = run_dir
    rec = next(ResultsStore(d / "results").records())
    prov = rec["provenance"]
    for k in ("bench", "torch", "pyiqa", "git_commit", "seed", "matrix", "hardware", "date", "duration_s"):
        assert k in prov
    df = frame(d / "results")
    jpeg_views = set(df[df.defense == "jpeg"].attack_view)
    assert all("bpda(identity)" in v for v in jpeg_views)
    assert set(df[(df.defense == "none") & (df.model == "cnniqa")].attack_view) == {"direct"}
    trained = [r for r in ResultsStore(d / "results").records() if r["cell"]["model"] == "cnniqa"]
    assert all(r["weights"]["source"] == "trained here" and r["weights"]["dataset"] == "embedded" for r in trained)


def test_rerun_skips_finished_cells_and_recomputes_only_changed_ones(run_dir, capsys):
    d, matrix, _ = run_dir
    before = {p.name: p.stat().st_mtime_ns for p in (d / "results" / "cells").glob("*.json")}
    assert main(["run", "--matrix", str(matrix), "--results", str(d / "results"), "--no-site", "--no-progress"]) == 0
    assert "12 already in the store" in capsys.readouterr().out
    after = {p.name: p.stat().st_mtime_ns for p in (d / "results" / "cells").glob("*.json")}
    assert before == after

    changed = write_matrix(d / "tiny70.toml", quality=70)
    assert main(["run", "--matrix", str(changed), "--results", str(d / "results"), "--no-site", "--no-progress"]) == 0
    new = set(p.name for p in (d / "results" / "cells").glob("*.json")) - set(before)
    recs = [json.loads((d / "results" / "cells" / n).read_text()) for n in new]
    assert len(recs) == 6 and all(r["cell"]["defense"] == "jpeg" for r in recs)


def test_export_has_the_documented_columns(run_dir, capsys):
    d, _, _ = run_dir
    assert main(["export", "--results", str(d / "results"), "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split(",")
    assert header[: len(EXPORT_COLUMNS)] == EXPORT_COLUMNS
    out = d / "cells.json"
    assert main(["export", "--results", str(d / "results"), "--format", "json", "--out", str(out)]) == 0
    assert len(json.loads(out.read_text())) >= 12


def test_site_is_rendered(run_dir):
    d, _, _ = run_dir
    html = (d / "site" / "index.html").read_text()
    assert "cnniqa" in html and "ortho" not in html.split("<body", 1)[0]
    assert (d / "site" / "cells.csv").is_file()
    assert list((d / "site").rglob("*.png"))
