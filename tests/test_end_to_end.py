"""A tiny real run through the CLI: matrix -> cells -> store -> export -> site."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_matrix

from bench.cli import main
from bench.store import EXPORT_COLUMNS, ResultsStore


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One run shared by the tests of this file, which only read it: a test that runs
    again into a results folder works on its own copy (`own_results`)."""
    d = tmp_path_factory.mktemp("e2e")
    matrix = write_matrix(d / "tiny.toml")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["run", "--matrix", str(matrix), "--results", str(d / "results"), "--site-out", str(d / "site"),
                     "--no-progress", "--device", "cpu"])
    d.joinpath("run.out").write_text(out.getvalue())
    d.joinpath("run.err").write_text(err.getvalue())
    return d, matrix, code


def own_results(run_dir, tmp_path: Path) -> Path:
    shutil.copytree(run_dir[0] / "results", tmp_path / "results")
    return tmp_path / "results"


TINY_CELLS = sorted((m, d, a, e) for m in ("cnniqa", "piqe") for d in ("jpeg", "none")
                    for a, e in (("fgsm", 4.0), ("pgd", 4.0), ("pgd", 8.0)))


def frame(results: Path) -> pd.DataFrame:
    from bench.store import records_frame

    return records_frame(list(ResultsStore(results).records()))


def test_every_cell_is_computed(run_dir):
    d, _, code = run_dir
    df = frame(d / "results")
    assert code == 0
    assert sorted(zip(df.model, df.defense, df.attack, df.eps)) == TINY_CELLS  # models x defenses x 3 budgets
    assert re.fullmatch(rf"12 cells: 0 already in the store, 12 ok \(\d+\.\d s\)\n"
                        rf"site: {re.escape(str(d / 'site' / 'index.html'))} \(\d+\.\d s\)\n",
                        (d / "run.out").read_text()), (d / "run.out").read_text()
    assert (d / "run.err").read_text().splitlines()[0] == \
        f"matrix 'tiny': 12 cells, 12 to compute, results in {d / 'results'}/, device cpu"
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


def test_defenses_benchmark_measures_read_the_undefended_model_and_the_purified_image(run_dir):
    d, _, _ = run_dir
    recs = {(r["cell"]["model"], r["cell"]["defense"], r["cell"]["attack"], r["cell"]["eps"]): r
            for r in ResultsStore(d / "results").records()}
    for (model, defense, attack, eps), r in recs.items():
        m, p = r["metrics"], r["per_image"]
        # the undefended scores are the base model's clean scores, whatever the defense
        assert p["undefended"] == recs[(model, "none", attack, eps)]["per_image"]["clean"]
        u, a = np.array(p["undefended"]), np.array(p["attacked"])
        assert m["robust_gain"] == pytest.approx(np.mean(np.abs(u - a)) / (u.max() - u.min()))
        assert m["robust_gain_ci_lo"] <= m["robust_gain"] <= m["robust_gain_ci_hi"]
        if defense == "none":  # no purification: the similarity is the attack's own SSIM + PSNR / 40
            assert m["purified_similarity"] == pytest.approx(m["ssim"] + m["psnr"] / 40)
        else:  # the model sees the JPEG of the attacked image, further from the clean one than it
            assert m["purified_similarity"] < recs[(model, "none", attack, eps)]["metrics"]["purified_similarity"]


def test_records_carry_provenance_and_views(run_dir):
    d, _, _ = run_dir
    rec = next(ResultsStore(d / "results").records())
    prov = rec["provenance"]
    for k in ("bench", "torch", "pyiqa", "git_commit", "seed", "matrix", "hardware", "date", "duration_s"):
        assert k in prov
    assert prov["hardware"]["determinism"] == {"deterministic_algorithms": False, "cudnn_deterministic": False,
                                               "cudnn_benchmark": False}  # torch's defaults, as this run had them
    assert prov["hardware"]["torch_threads"] >= 1
    df = frame(d / "results")
    jpeg_views = set(df[df.defense == "jpeg"].attack_view)
    assert all("bpda(identity)" in v for v in jpeg_views)
    assert set(df[(df.defense == "none") & (df.model == "cnniqa")].attack_view) == {"direct"}
    trained = [r for r in ResultsStore(d / "results").records() if r["cell"]["model"] == "cnniqa"]
    assert all(r["weights"]["source"] == "trained here" and r["weights"]["dataset"] == "embedded" for r in trained)


def test_rerun_skips_finished_cells_and_recomputes_only_changed_ones(run_dir, tmp_path, capsys):
    _, matrix, _ = run_dir
    results = own_results(run_dir, tmp_path)  # this test adds cells: never to the shared store
    before = {p.name: p.stat().st_mtime_ns for p in (results / "cells").glob("*.json")}
    assert len(before) == 12
    assert main(["run", "--matrix", str(matrix), "--results", str(results), "--no-site", "--no-progress",
                 "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert re.fullmatch(r"12 cells: 12 already in the store, none computed \(\d+\.\d s\)\n", out), out
    assert err == f"matrix 'tiny': 12 cells, 0 to compute, results in {results}/, device cpu\n"
    after = {p.name: p.stat().st_mtime_ns for p in (results / "cells").glob("*.json")}
    assert before == after

    changed = write_matrix(tmp_path / "tiny70.toml", quality=70)
    assert main(["run", "--matrix", str(changed), "--results", str(results), "--no-site", "--no-progress",
                 "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert re.fullmatch(r"12 cells: 6 already in the store, 6 ok \(\d+\.\d s\)\n", out), out
    assert err.splitlines()[0] == f"matrix 'tiny': 12 cells, 6 to compute, results in {results}/, device cpu"
    new = {p.name for p in (results / "cells").glob("*.json")} - set(before)
    recs = [json.loads((results / "cells" / n).read_text()) for n in new]
    assert sorted((r["cell"]["model"], r["cell"]["defense"], r["cell"]["attack"], r["cell"]["eps"]) for r in recs) \
        == [c for c in TINY_CELLS if c[1] == "jpeg"]
    assert {r["config"]["defense"]["params"]["quality"] for r in recs} == {70}
    assert after == {p.name: p.stat().st_mtime_ns for p in (results / "cells").glob("*.json") if p.name in before}


def test_export_has_the_documented_columns(run_dir, capsys):
    d, _, _ = run_dir
    assert main(["export", "--results", str(d / "results"), "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split(",")
    assert header[: len(EXPORT_COLUMNS)] == EXPORT_COLUMNS
    out = d / "cells.json"
    assert main(["export", "--results", str(d / "results"), "--format", "json", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert sorted((r["model"], r["defense"], r["attack"], r["eps"]) for r in rows) == TINY_CELLS


def test_site_is_rendered(run_dir):
    d, _, _ = run_dir
    html = (d / "site" / "index.html").read_text()
    assert "cnniqa" in html and "ortho" not in html.split("<body", 1)[0]
    assert len((d / "site" / "cells.csv").read_text().splitlines()) == 1 + 12
    # the plots: the claim, gain vs eps, two per defense page, one per model page, one per
    # (model, dataset) on the layer-profile pages; and one example (clean, attacked,
    # perturbation) per defense, from one of its cells
    from bench.leaderboard.safe import slug

    site = d / "site"
    pngs = sorted(str(p.relative_to(site)) for p in site.rglob("*.png"))
    defenses = sorted(p.stem for p in site.glob("defense-*.html"))
    models = sorted(p.stem for p in site.glob("model-*.html"))
    profiles = sorted(p.stem for p in site.glob("profile-*.html"))
    assert len(defenses) == 2 and len(models) == 2 and len(profiles) == 2
    assert [p for p in pngs if p.startswith("plots/")] == sorted(
        ["plots/claim.png", "plots/gain_vs_eps.png"] + [f"plots/{m}.png" for m in models]
        + [f"plots/{p}-{kind}.png" for p in defenses for kind in ("gain", "shift")]
        + [f"plots/{p}-{slug('embedded')}.png" for p in profiles])
    assets = [p for p in pngs if p.startswith("assets/")]
    keys = sorted({p.split("/")[1] for p in assets})
    assert assets == [f"assets/{k}/{role}.png" for k in keys for role in ("attacked", "clean", "perturbation")]
    by_key = {r["key"]: r["cell"]["defense"] for r in ResultsStore(d / "results").records()}
    assert sorted(by_key[k] for k in keys) == ["jpeg", "none"]


def test_index_lists_each_attack_with_its_reference_and_parameters(run_dir):
    from bench.api import ATTACKS

    html = (run_dir[0] / "site" / "index.html").read_text()
    section = html[html.index('<section id="attacks">'):]
    section = section[:section.index("</section>")]
    for name in ("fgsm", "pgd"):
        info = ATTACKS.get(name).info
        assert f"<td>{name}</td>" in section and f'href="{info.reference}"' in section, name
    assert "<code>alpha=1.0, random_start=true, steps=3</code>" in section  # pgd's parameters, as run


def test_model_weights_are_traceable_from_record_csv_and_page(run_dir):
    """A model trained here: every record, cells.csv and the model's page name the
    checkpoint's path and sha256, and the page its training summary."""
    from bench.weights import file_sha256

    d, _, _ = run_dir
    trained = [r for r in ResultsStore(d / "results").records() if r["cell"]["model"] == "cnniqa"]
    (path,) = {r["weights"]["path"] for r in trained}
    sha = file_sha256(path)
    assert {r["weights"]["sha256"] for r in trained} == {sha}
    cells = pd.read_csv(d / "site" / "cells.csv")
    cnn = cells[cells.model == "cnniqa"]
    assert set(zip(cnn.weights_source, cnn.weights_path, cnn.weights_sha256)) == {("trained here", path, sha)}
    page = next((d / "site").glob("model-cnniqa-*.html")).read_text()
    w = trained[0]["weights"]
    assert f"<td>embedded</td><td>trained here</td><td><code>{path}</code></td><td><code>{sha}</code></td>" \
           f"<td>trained on embedded, seed 0, train images {w['n_train']}, training views {w['n_views']}, test SROCC {w['test_srocc']:.3f}" in page
    piqe = next((d / "site").glob("model-piqe-*.html")).read_text()
    assert "<dt>kind</dt><dd>classic</dd>" in piqe and "<code>built-in bench.models.classic</code>" in piqe


def test_a_flow_attack_runs_in_pixels_and_its_cells_record_the_unit(tmp_path):
    """stAdv at 1 px (eps_unit says /255: a flow budget is in its own unit): the record says
    px, the cell stayed within its displacement, and a certified defense records no L-inf
    certificate for it (a flow budget is no L-inf ball)."""
    matrix = write_matrix(tmp_path / "m.toml", **{
        "cnniqa = {{ epochs = 2 }}".format(): "", "none = {}\njpeg = { quality = 50 }": "mean-smoothing = { n = 2 }",
        "fgsm = { eps = [4] }": "stadv = { eps = [1], steps = 2 }", "pgd = { eps = [4, 8], steps = 3 }": "",
        "n_images = 8": "n_images = 4", "eot_samples = 2": "eot_samples = 1\nprofile = false"})
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(["run", "--matrix", str(matrix), "--results", str(tmp_path / "r"), "--no-site", "--no-progress"])
    assert code == 0
    df = frame(tmp_path / "r")
    assert list(zip(df.defense, df.attack, df.eps, df.budget_unit, df.status)) == [
        ("mean-smoothing", "stadv", 1.0, "px", "ok")]
    assert (df.linf > 0).all() and df.cert_vacuous.isna().all()  # set (0 to 1) wherever a certificate is recorded
    (rec,) = ResultsStore(tmp_path / "r").records()
    assert rec["meta"]["attack"]["budget_unit"] == "px" and rec["config"]["eps_255"] == 1.0
