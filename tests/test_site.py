"""The static leaderboard: files, escaping, determinism, no torch, size and speed at 10k cells."""

from __future__ import annotations

import math
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.leaderboard import render_site
from bench.store import ResultsStore, digest

HOSTILE = "<script>alert(1)</script>"
KINDS = {"none": "none", "ortho+act+prune": "architectural", "adv-train": "training", "nt": "training"}
ROOT = Path(__file__).resolve().parents[1]


def make_record(model: str, defense: str, attack: str, eps: float, *, dataset: str = "embedded",
                status: str = "ok", flags: tuple[str, ...] = (), message: str = "", seed: int = 0) -> dict:
    """A synthetic record shaped like the runner's; metrics are a deterministic function of the cell."""
    cell = {"model": model, "defense": defense, "attack": attack, "eps": eps, "dataset": dataset}
    rng = random.Random(digest(cell))
    nan = math.nan
    ok = status == "ok"
    gain = min(1.0, eps / 16 * rng.uniform(0.2, 1.0)) if ok else nan
    clean_srocc = rng.uniform(0.6, 0.9) if ok else nan
    r_score = 1.5 - gain if ok else nan
    metrics = {
        "n_images": 4 if ok else 0, "srocc_clean": clean_srocc,
        "srocc_clean_ci_lo": clean_srocc - 0.1, "srocc_clean_ci_hi": clean_srocc + 0.05,
        "abs_gain_ci_lo": gain - 0.03, "abs_gain_ci_hi": gain + 0.04, "rel_gain_ci_lo": gain * 2 - 0.05,
        "rel_gain_ci_hi": gain * 2 + 0.05, "robustness_score": r_score, "robustness_score_ci_lo": r_score - 0.1,
        "robustness_score_ci_hi": r_score + 0.1,
        "srocc_attacked": rng.uniform(-0.2, 0.6) if ok else nan, "plcc_clean": rng.uniform(0.6, 0.9) if ok else nan,
        "plcc_attacked": rng.uniform(-0.2, 0.6) if ok else nan, "abs_gain": gain, "rel_gain": gain * 2,
        "psnr": rng.uniform(30, 45) if ok else nan, "ssim": rng.uniform(0.8, 1.0) if ok else nan, "seconds": 0.5,
        "mos_gain": gain * 4, "mos_gain_ci_lo": gain * 4 - 0.1, "mos_gain_ci_hi": gain * 4 + 0.1,
    }
    return {
        "key": digest(cell), "cell": cell, "config": {},
        "meta": {"model": {"name": model, "lower_better": False}, "defense": {"name": defense, "kind": KINDS.get(defense, "purification"),
                                                                  "description": f"{defense} described",
                                                                  "reference": "https://arxiv.org/abs/2506.04951"},
                 "attack": {"name": attack}, "dataset": {"name": dataset, "mos_name": "pseudo-MOS"}},
        "view": {"summary": "bpda(identity)"}, "status": status, "message": message, "metrics": metrics,
        "per_image": {"names": ["a", "b"], "mos": [0.1, 0.9], "clean": [0.2, 0.8], "attacked": [0.5, 0.5]},
        "flags": list(flags),
        "provenance": {"bench": "0.1.0", "torch": "2.14.1", "pyiqa": "0.1.16", "torchattacks": "3.5.1",
                       "python": "3.11.7", "git_commit": "abc123", "seed": seed, "matrix": "quick",
                       "hardware": {"cpu": "test-cpu", "device": "cpu", "cores": 2},
                       "date": f"2026-11-25T05:{int(eps):02d}:00+00:00", "duration_s": 1.0},
    }


def small_records() -> list[dict]:
    recs = [make_record(m, d, a, e) for m in ("cnniqa", "dbcnn") for d in ("none", "jpeg")
            for a in ("fgsm", "pgd") for e in (2, 4, 8)]
    recs += [make_record("cnniqa", d, a, e) for d in ("ortho+act+prune", "adv-train") for a in ("fgsm", "pgd")
             for e in (2, 4, 8)]
    recs += [
        make_record("cnniqa", HOSTILE, "pgd", 4, flags=("zero-gradients",)),
        make_record("cnniqa", "blur", "pgd", 4, status="error", message="RuntimeError: <b>boom</b> & more"),
        make_record("dbcnn", "blur", "fgsm", 4, status="skipped", message="not applicable"),
        make_record("dbcnn", "jpeg", "pgd", 16, flags=("zero-gradients", "clipped")),
    ]
    return recs


def build_store(root: Path, records: list[dict], examples: bool = True) -> Path:
    """Write the records; give ok cells at eps 8 an example (as the runner will) whose
    files this writes itself: 8x8 PNGs under assets/<key>/."""
    store = ResultsStore(root)
    for r in records:
        if examples and r["status"] == "ok" and r["cell"]["eps"] == 8:
            r = dict(r, example=write_example(root, r["key"]))
        store.put(r)
    return root


def write_example(root: Path, key: str) -> dict:
    from PIL import Image

    files = {}
    for i, role in enumerate(("clean", "attacked", "perturbation")):
        rel = f"assets/{key}/{role}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (40 * i, 100, 200)).save(root / rel)
        files[role] = rel
    return {"name": "img<1>.png", "clean_score": 0.25, "attacked_score": 0.75, "files": files}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    results = build_store(tmp_path / "results", small_records())
    return render_site(results, tmp_path / "site")


def pages(out: Path) -> list[Path]:
    return sorted(out.glob("*.html"))


def test_files_exist(site: Path) -> None:
    out = site.parent
    for name in ("index.html", "claim.html", "cells.csv", "cells.json", "static/site.css", "static/site.js",
                 "plots/gain_vs_eps.png", "data/index.csv", "data/index.json", "data/claim.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert site.name == "index.html"
    csv_head = (out / "cells.csv").read_text().splitlines()[0]
    assert csv_head.startswith("model,defense,attack,eps,dataset,status,n_images")
    assert len((out / "cells.csv").read_text().splitlines()) == len(small_records()) + 1
    names = {p.name for p in pages(out)}
    assert len([n for n in names if n.startswith("defense-")]) == 6  # none, jpeg, blur, hostile, ortho.., adv-train
    assert len([n for n in names if n.startswith("model-")]) == 2
    for p in pages(out):  # every page has its own data files
        assert (out / "data" / f"{p.stem}.csv").is_file() and (out / "data" / f"{p.stem}.json").is_file(), p


HOSTILE_HTML = "&lt;script&gt;alert(1)&lt;/script&gt;"  # as text in HTML
HOSTILE_JSON = "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e"  # inside a <script type="application/json">
SITE_JS = '<script src="static/site.js" defer>'


def test_hostile_name_is_escaped(site: Path) -> None:
    import json

    out = site.parent
    islands_seen = 0
    for p in pages(out):
        html = p.read_text()
        # the only live scripts are the site's own code and its JSON data islands, each
        # closed once: a name that broke out of a data island would add a </script>
        tags = re.findall(r"<script\b[^>]*>", html)
        islands = [t for t in tags if re.fullmatch(r'<script type="application/json" id="[a-z-]+">', t)]
        assert sorted(tags) == sorted([SITE_JS] + islands), p
        assert html.count("</script>") == len(tags), p
        islands_seen += len(islands)
        assert HOSTILE not in html and "<script>" not in html, p
        assert "<b>boom</b>" not in html, p
        # every page's navigation names the hostile defense, as text
        assert f'<a href="{next(out.glob("defense-script-alert-1-script-*.html")).name}">{HOSTILE_HTML}</a>' in html, p
        # the data islands carry it (every island maps defense names to pages), with <, >
        # and & as JSON escapes
        assert (HOSTILE_JSON in html) == bool(islands), p
    assert islands_seen >= 2  # index.html's leaderboard and cells at least
    assert f'<option value="{HOSTILE_HTML}">{HOSTILE_HTML}</option>' in site.read_text()  # the filter option
    assert '"RuntimeError: \\u003cb\\u003eboom\\u003c/b\\u003e \\u0026 more"' in \
        next(out.glob("defense-blur-*.html")).read_text()
    # the JSON downloads are data, not pages: the name is there exactly, as a JSON string
    board = json.loads((out / "data" / "index.json").read_text())
    assert HOSTILE in {r["defense"] for r in board}
    for f in out.rglob("*"):  # names never become paths
        assert "<" not in f.name and ">" not in f.name, f
    assert [p.name.rsplit("-", 1)[0] for p in pages(out) if "script" in p.name] == ["defense-script-alert-1-script"]


def test_name_cannot_escape_the_output(tmp_path: Path) -> None:
    evil = make_record("cnniqa", "../../../evil", "pgd", 8)
    evil["example"] = {"name": "x", "clean_score": 0, "attacked_score": 1,
                       "files": {r: "../../outside.png" for r in ("clean", "attacked", "perturbation")}}
    (tmp_path / "outside.png").write_bytes(b"\x89PNG not really")
    out = render_site(build_store(tmp_path / "results", [evil], examples=False), tmp_path / "out" / "site").parent
    made = [p.resolve() for p in out.parent.parent.rglob("*") if p.is_file() and "results" not in p.parts]
    assert all(p.is_relative_to(out.resolve()) or p.name == "outside.png" for p in made), made
    assert not (out / "assets").exists()  # an example outside the results root is not copied
    assert "No cell of this defense saved an example" in next(out.glob("defense-evil-*.html")).read_text()


def test_leaderboard_marks_and_order(site: Path) -> None:
    import json

    rows = json.loads((site.parent / "data" / "index.json").read_text())
    worst = [r for r in rows if r["attack"] == "all (worst)" and r["model"] == "cnniqa"]
    ranked = [r for r in worst if r["rank"] is not None]
    gains = [r["worst_abs_gain"] for r in ranked]
    assert gains == sorted(gains) and [r["rank"] for r in ranked] == list(range(1, len(ranked) + 1))
    hostile = next(r for r in worst if r["defense"] == HOSTILE)
    assert hostile["rank"] is None and hostile["worst_abs_gain_flagged"]  # flagged: never ranked as robust
    assert worst.index(hostile) > worst.index(ranked[-1])
    blur = next(r for r in worst if r["defense"] == "blur")  # its only cell failed: listed, not ranked
    assert blur["rank"] is None and blur["flags"] == "no ok cell: 1 error"
    per_attack = {r["attack"] for r in rows}
    assert per_attack == {"all (worst)", "fgsm", "pgd"}
    for r in ranked:
        assert r["worst_abs_gain_ci_lo"] <= r["worst_abs_gain"] <= r["worst_abs_gain_ci_hi"]
    none = next(r for r in worst if r["defense"] == "none")
    assert none["srocc_delta"] == 0.0
    for r in worst:  # Δ vs none is exactly the difference of the clean SROCCs shown
        if r["srocc_delta"] is not None:
            assert r["srocc_delta"] == pytest.approx(r["srocc_clean"] - none["srocc_clean"], abs=2e-3)


def test_labels_marks_and_provenance(site: Path) -> None:
    for p in pages(site.parent):
        html = p.read_text()
        assert "abc123" in html and "2.14.1" in html and "test-cpu" in html and "2026-11-25T05:" in html, p
        assert f'href="data/{p.stem}.csv"' in html and f'href="data/{p.stem}.json"' in html, p
    assert "vs pseudo-MOS" in site.read_text()
    claim = (site.parent / "claim.html").read_text()
    assert "cnniqa on embedded, at eps 8/255" in claim and "ortho+act+prune" in claim and "adv-train" in claim
    assert "dbcnn on embedded: the full method (ortho+act+prune) has no successful cells" in claim


def test_defense_page_example(site: Path) -> None:
    out = site.parent
    html = next(out.glob("defense-jpeg-*.html")).read_text()
    imgs = re.findall(r'<img src="([^"]+)"', html)
    assert len([i for i in imgs if i.startswith("assets/")]) == 3
    for rel in imgs:
        assert (out / rel).is_file(), rel
    assert "img&lt;1&gt;.png" in html and "score 0.250" in html and "score 0.750" in html
    assert "https://arxiv.org/abs/2506.04951" in html and 'rel="noopener noreferrer"' in html


def test_render_is_deterministic(tmp_path: Path) -> None:
    results = build_store(tmp_path / "results", small_records())
    a = render_site(results, tmp_path / "a").parent
    b = render_site(results, tmp_path / "b").parent
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_links_are_relative(site: Path) -> None:
    for p in pages(site.parent):
        html = p.read_text()
        for url in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html):
            if url.startswith("https://") and 'rel="noopener noreferrer"' in html:
                continue  # a paper's reference: a link the reader may follow, never loaded
            assert not re.match(r"^([a-z][a-z0-9+.-]*:|//|/)", url, re.IGNORECASE), (p, url)
            assert (site.parent / url.split("#")[0]).exists() or url.startswith("#"), (p, url)


def test_readme_claim_section(tmp_path: Path) -> None:
    from bench.cli import main

    # a model and a purification named as a script: both reach the README's section
    hostile = [make_record(HOSTILE, d, "pgd", 8) for d in ("none", HOSTILE)]
    results = build_store(tmp_path / "results", small_records() + hostile)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- claim:start -->\nplaceholder\n<!-- claim:end -->\n\ntail\n")
    assert main(["site", "--results", str(results), "--out", str(tmp_path / "site"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "placeholder" not in text and text.endswith("<!-- claim:end -->\n\ntail\n")
    assert "cnniqa on embedded, at eps 8/255" in text and "| ortho+act+prune |" in text
    # Synthetic numbers: none's interval [0.288, 0.358] meets the full method's [0.330, 0.400];
    # adv-train's [0.408, 0.478] does not.
    assert "gain is not below none's, and the 95% intervals overlap" in text
    assert "below adv-train's, and the 95% intervals do not overlap" in text
    # markdown renders raw HTML: the names appear only escaped, as text
    lines = text.splitlines()
    assert f"### {HOSTILE_HTML} on embedded" in lines
    assert f"{HOSTILE_HTML} on embedded: the full method (ortho+act+prune) has no successful cells, " \
           "so the claim is not tested here." in lines
    assert sum(line.startswith(f"| {HOSTILE_HTML} (best purification) | purification | ") for line in lines) == 1
    assert text.count(HOSTILE_HTML) == 3
    assert "<script" not in text and "</script" not in text
    again = readme.read_text()
    main(["site", "--results", str(results), "--out", str(tmp_path / "site"), "--readme", str(readme)])
    assert readme.read_text() == again  # idempotent
    # a second section, named: only its own markers' text changes
    readme.write_text(again + "<!-- claim-b:start -->\nold\n<!-- claim-b:end -->\n")
    assert main(["site", "--results", str(results), "--out", str(tmp_path / "site"), "--readme", str(readme),
                 "--readme-section", "claim-b"]) == 0
    first, second = readme.read_text().split("<!-- claim-b:start -->")
    assert first == again and "placeholder-b" not in second and "| ortho+act+prune |" in second
    readme.write_text("no markers")
    assert main(["site", "--results", str(results), "--out", str(tmp_path / "site"), "--readme", str(readme)]) != 0


def test_readme_claim_merges_seeds_as_the_claim_page_does(tmp_path: Path) -> None:
    from bench.cli import main

    recs = []
    for seed in (0, 1):
        for d in ("none", "ortho+act+prune", "adv-train"):
            r = make_record("cnniqa", d, "pgd", 8, seed=seed)
            shift = 0.1 * (seed + 1)
            r["per_image"] = {**r["per_image"], "attacked": [0.2 + shift, 0.8 + shift]}
            r["metrics"] = {**r["metrics"], "abs_gain": r["metrics"]["abs_gain"] + shift}
            recs.append({**r, "key": digest([r["cell"], seed])})
    results = build_store(tmp_path / "results", recs, examples=False)
    readme = tmp_path / "README.md"
    readme.write_text("<!-- claim:start -->\n<!-- claim:end -->\n")
    assert main(["site", "--results", str(results), "--out", str(tmp_path / "site"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    # one row per defense over both seeds (not the luckiest seed's cell), as on site/claim.html
    assert "Over 2 training seeds" in text and "One training seed" not in text
    assert sum(line.startswith("| ortho+act+prune ") for line in text.splitlines()) == 1
    assert "(2 seeds) |" in text


def test_render_does_not_import_torch(tmp_path: Path) -> None:
    results = build_store(tmp_path / "results", small_records())
    code = ("import sys; from bench.leaderboard import render_site; "
            f"render_site({str(results)!r}, {str(tmp_path / 'site')!r}); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_empty_store_renders(tmp_path: Path) -> None:
    index = render_site(tmp_path / "nothing", tmp_path / "site")
    assert "0 cells" in index.read_text()


def test_10k_cells_fast_and_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = [f"model{i}" for i in range(10)]
    defenses = [f"defense{i}" for i in range(10)]
    attacks = [f"attack{i}" for i in range(10)]
    eps = [1, 2, 4, 8, 16, 32, 0.5, 0.25, 64, 128]
    recs = [make_record(m, d, a, e) for m in models for d in defenses for a in attacks for e in eps]
    assert len(recs) == 10_000
    with monkeypatch.context() as m:
        m.setattr(os, "fsync", lambda fd: None)  # durability is not under test: write fast
        results = build_store(tmp_path / "results", recs, examples=False)
        small = build_store(tmp_path / "small", recs[:1_000], examples=False)

    def render_cpu(store: Path, out: Path) -> tuple[Path, float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        page = render_site(store, out)
        return page, time.perf_counter() - start, time.process_time() - cpu

    _, _, cpu_1k = render_cpu(small, tmp_path / "site-1k")
    index, seconds, cpu = render_cpu(results, tmp_path / "site")
    size = index.stat().st_size
    print(f"10k cells: render {seconds:.2f} s wall, {cpu:.2f} s CPU (1k cells: {cpu_1k:.2f} s), "
          f"index.html {size / 1e6:.2f} MB, {len(list(index.parent.glob('*.html')))} pages")
    # CPU time, not wall time (neighbours on a loaded machine), and only against the same
    # render of 1k cells in this process, so that a slower or busier machine does not decide
    # it: 10x the cells may cost at most 6x the CPU (plots and templates are a fixed cost).
    # No absolute cap: CPU time too grows on a loaded machine (about 9 s idle on 2 cores,
    # 21.6 s with three other jobs running), and speed is reported by `bench perf`.
    assert cpu < 6 * cpu_1k, (cpu, cpu_1k)
    assert size < 2_000_000, size


def test_leaderboard_ranks_the_standard_suite(tmp_path: Path) -> None:
    """Cells of another suite (other attacks, budgets) must not enter the ranking when
    standard-suite cells exist; they stay in the cell table."""
    import json

    std = [make_record("cnniqa", d, "pgd", 4) for d in ("none", "jpeg")]
    other = [make_record("cnniqa", "jpeg", "fgsm", 2), make_record("cnniqa", "blur", "fgsm", 2)]
    for r in std:
        r["provenance"]["suite"] = "standard-v1"
    for r in other:
        r["provenance"]["suite"] = "quick-v1"
    for r in std + other:  # which suite is the standard one: the matrices' [claim] suite, recorded
        r["provenance"]["claim"] = {"method": [], "reference": "none", "suite": "standard-v1"}
    index = render_site(build_store(tmp_path / "results", std + other, examples=False), tmp_path / "site")
    rows = json.loads((index.parent / "data" / "index.json").read_text())
    assert {r["defense"] for r in rows} == {"none", "jpeg"} and {r["attack"] for r in rows} == {"all (worst)", "pgd"}
    assert "standard attack suite (standard-v1); 2 cells of other suites" in index.read_text()
    assert len((index.parent / "cells.csv").read_text().splitlines()) == 5
    only_other = render_site(build_store(tmp_path / "r2", other, examples=False), tmp_path / "s2").read_text()
    assert "No cell ran under the standard attack suite" in only_other and "quick-v1" in only_other
    for r in std + other:  # no record names a standard suite: every cell is ranked, and the page says so
        del r["provenance"]["claim"]
    unnamed = render_site(build_store(tmp_path / "r3", std + other, examples=False), tmp_path / "s3")
    assert "No result names a standard attack suite" in unnamed.read_text()
    assert {r["attack"] for r in json.loads((unnamed.parent / "data" / "index.json").read_text())} == \
        {"all (worst)", "pgd", "fgsm"}


# ----------------------------------------------------------------------------- provenance on the site
EP_ORIGIN = {"kind": "entry point", "entry_point": "my-blur", "group": "bench.defenses",
             "value": "my_blur.defense:GaussianBlur", "distribution": "my-blur", "version": "0.1.0",
             "module": "my_blur.defense"}
EP_LABEL = "entry point my-blur = my_blur.defense:GaussianBlur (my-blur 0.1.0)"
TRAINED = {"source": "trained here", "path": "/cache/models/cnniqa-0123.pt", "sha256": "ab" * 32,
           "dataset": "embedded", "seed": 7, "n_train": 120, "test_srocc": 0.81234, "test_plcc": 0.79,
           "mos_name": "pseudo-MOS", "params": {"epochs": 2}}
PUBLISHED = {"source": "published (pyiqa cache)", "path": f"/hub/pyiqa/{HOSTILE}.pth", "sha256": "cd" * 32}
NEW_NOTES = {"test": {"dataset_layout": "official", "verify": "decode", "size": 32, "skipped": 2,
                      "skipped_files": ["a.png", "<b>.png"], "converted": {"L->RGB": 3}},
             "train": {"dataset_layout": "official", "verify": "decode", "size": 32, "skipped": 1,
                       "skipped_files": ["c.png"], "converted": {}}}
OLD_NOTES = {"dataset_layout": "pyiqa", "verify": "header", "size": 64, "skipped": 4,
             "skipped_files": ["d.png"], "converted": {"P->RGB": 1}}  # before both splits were recorded


def provenance_records() -> list[dict]:
    """cnniqa, trained here on `embedded` and published on `koniq10k`, under `none` (built in)
    and `my-blur` (from an installed package); the koniq10k records hold the old flat notes."""
    recs = []
    for dataset, weights, notes in (("embedded", TRAINED, NEW_NOTES), ("koniq10k", PUBLISHED, OLD_NOTES)):
        for defense, origin in (("none", {"kind": "built-in", "module": "baselines.none"}), ("my-blur", EP_ORIGIN)):
            for eps in (4, 8):
                r = make_record("cnniqa", defense, "pgd", eps, dataset=dataset)
                r["meta"]["model"] = {"name": "cnniqa", "lower_better": False, "score_range": [0.0, 100.0],
                                      "kind": "learned", "description": "CNN <b>model</b>", "version": "1",
                                      "reference": "https://arxiv.org/abs/1234.5678",
                                      "origin": {"kind": "built-in", "module": "bench.models.cnniqa"}}
                r["meta"]["defense"]["origin"] = origin
                r["weights"], r["data"] = weights, notes
                recs.append(r)
    return recs


def test_model_page_shows_its_card_and_weights(tmp_path: Path) -> None:
    import pandas as pd

    index = render_site(build_store(tmp_path / "results", provenance_records(), examples=False), tmp_path / "site")
    html = next(index.parent.glob("model-cnniqa-*.html")).read_text()
    for part in ("CNN &lt;b&gt;model&lt;/b&gt;",
                 '<a href="https://arxiv.org/abs/1234.5678" rel="noopener noreferrer">https://arxiv.org/abs/1234.5678</a>',
                 "<dt>direction</dt><dd>higher is better</dd>", "<dt>score range</dt><dd>[0, 100]</dd>",
                 "<dt>kind</dt><dd>learned</dd>", "<code>built-in bench.models.cnniqa</code>",
                 ("<td>embedded</td><td>trained here</td><td><code>/cache/models/cnniqa-0123.pt</code></td>"
                  f"<td><code>{'ab' * 32}</code></td><td>trained on embedded, seed 7, train images 120, "
                  "test SROCC 0.812, test PLCC 0.790, against pseudo-MOS</td><td class=\"num\">4</td>"),
                 ("<td>koniq10k</td><td>published (pyiqa cache)</td>"
                  f"<td><code>/hub/pyiqa/&lt;script&gt;alert(1)&lt;/script&gt;.pth</code></td><td><code>{'cd' * 32}"
                  "</code></td><td>&ndash;</td>"),
                 f'<span class="n">from {EP_LABEL}</span>'):
        assert part in html, part
    assert "<script>alert(1)" not in html and "<b>model" not in html
    assert "from built-in" not in html  # built-in defenses need no note in the rows
    cells = pd.read_csv(index.parent / "cells.csv")
    got = set(zip(cells["dataset"], cells["weights_source"], cells["weights_sha256"], cells["weights_path"]))
    assert got == {("embedded", "trained here", "ab" * 32, "/cache/models/cnniqa-0123.pt"),
                   ("koniq10k", "published (pyiqa cache)", "cd" * 32, f"/hub/pyiqa/{HOSTILE}.pth")}


def test_plugin_origin_on_the_leaderboard_and_defense_page(tmp_path: Path) -> None:
    import json

    import pandas as pd

    index = render_site(build_store(tmp_path / "results", provenance_records(), examples=False), tmp_path / "site")
    rows = json.loads((index.parent / "data" / "index.json").read_text())
    assert {(r["defense"], r["defense_origin"]) for r in rows} == {("my-blur", EP_LABEL),
                                                                 ("none", "built-in baselines.none")}
    assert 'data-col="defense_origin"' in index.read_text()
    page = next(index.parent.glob("defense-my-blur-*.html")).read_text()
    assert f"<dt>code</dt><dd><code>{EP_LABEL}</code></dd>" in page
    cells = pd.read_csv(index.parent / "cells.csv")
    assert set(zip(cells["defense"], cells["defense_origin"])) == {("my-blur", EP_LABEL),
                                                                   ("none", "built-in baselines.none")}
    assert set(cells["model_origin"]) == {"built-in bench.models.cnniqa"}


def test_both_splits_loading_notes_in_csv_and_site_old_records_still_read(tmp_path: Path) -> None:
    import pandas as pd

    from bench.store import data_notes

    assert data_notes({"data": NEW_NOTES}) == NEW_NOTES
    assert data_notes({"data": OLD_NOTES}) == {"test": OLD_NOTES, "train": {}}
    assert data_notes({}) == {"test": {}, "train": {}}
    index = render_site(build_store(tmp_path / "results", provenance_records(), examples=False), tmp_path / "site")
    cells = pd.read_csv(index.parent / "cells.csv")
    counts = cells.groupby("dataset")[["test_skipped", "test_converted", "train_skipped", "train_converted"]].first()
    assert counts.loc["embedded"].tolist() == [2, 3, 1, 0]
    assert counts.loc["koniq10k", "test_skipped"] == 4 and counts.loc["koniq10k", "test_converted"] == 1
    assert counts.loc["koniq10k", ["train_skipped", "train_converted"]].isna().all()  # old record: unknown
    html = index.read_text()
    section = html[html.index('<section id="datasets">'):html.index('<section id="cells-section">')]
    for row in (('<td>embedded</td><td>test</td><td>official</td><td>decode</td><td class="num">32</td>'
                 '<td class="num">2</td><td><code>a.png</code> <code>&lt;b&gt;.png</code></td><td class="num">3</td>'
                 '<td>L-&gt;RGB: 3</td><td class="num">4</td>'),
                ('<td>embedded</td><td>train</td><td>official</td><td>decode</td><td class="num">32</td>'
                 '<td class="num">1</td><td><code>c.png</code></td><td class="num">0</td><td>&ndash;</td>'
                 '<td class="num">4</td>'),
                ('<td>koniq10k</td><td>test</td><td>pyiqa</td><td>header</td><td class="num">64</td>'
                 '<td class="num">4</td><td><code>d.png</code></td><td class="num">1</td><td>P-&gt;RGB: 1</td>'
                 '<td class="num">4</td>')):
        assert row in section, row
    assert "<td>koniq10k</td><td>train</td>" not in section  # the old record does not say


# ----------------------------------------------------------------------------- the claim's roles come from the data
# what bench/matrices/quick.toml's [claim] table records in every cell (bench.matrix, bench.executor)
QUICK_CLAIM = {"method": ["ortho+act+prune"], "rivals": ["none", "adv-train"], "reference": "none",
               "labels": {"none": "no defense", "adv-train": "adversarial training"}, "suite": "standard-v1"}
# small_records()' cnniqa section under today's roles: the README's sentence, word for word
TODAYS_SENTENCE = (
    "cnniqa on embedded, at eps 8/255 against the worst attack: the full method (ortho+act+prune) has abs gain "
    "0.360 [0.330, 0.400]; no defense (none) 0.318 [0.288, 0.358]: the full method's gain is not below none's, and "
    "the 95% intervals overlap, so these data do not separate them; adversarial training (adv-train) 0.438 "
    "[0.408, 0.478]: the full method's gain is below adv-train's, and the 95% intervals do not overlap. "
    "In MOS units the full method's shift is 1.439 [1.339, 1.539] against none's 1.272 [1.172, 1.372]: not below "
    "none's, and the 95% intervals overlap, so these data do not separate them; the two measures agree. "
    "One training seed: the intervals cover its images only, so training noise cannot be told apart from a "
    "difference between defenses (run the matrix with seeds = [0, 1, 2]). "
    "Its clean SROCC is within 0.05 of none's (+0.020).")


def test_the_claim_says_when_the_gain_in_mos_units_disagrees_with_the_normalised_gain(tmp_path: Path) -> None:
    """A fine-tune that narrows the clean scores raises the normalised gain with no change in
    quality: the method looks worse than none there, not in MOS units, and the claim says so."""
    from bench.leaderboard.claim import tables
    from bench.store import records_frame

    recs = [make_record("cnniqa", d, "pgd", 8) for d in ("none", "ortho+act+prune")]
    for r in recs:
        r["provenance"]["claim"] = QUICK_CLAIM
    for r, gain, mos in ((recs[0], 0.3, 1.5), (recs[1], 0.6, 0.5)):
        r["metrics"].update(abs_gain=gain, abs_gain_ci_lo=gain - 0.02, abs_gain_ci_hi=gain + 0.02,
                            mos_gain=mos, mos_gain_ci_lo=mos - 0.1, mos_gain_ci_hi=mos + 0.1)
    (group,) = tables(records_frame(recs))
    assert ("In MOS units the full method's shift is 0.500 [0.400, 0.600] against none's 1.500 [1.400, 1.600]: "
            "below none's, and the 95% intervals do not overlap; the two measures disagree, so the normalised "
            "gain's ordering is not a change in quality.") in group["sentence"]


def renamed(rec: dict, name: str) -> dict:
    """The same cell, numbers and kind under another defense name."""
    import copy

    rec = copy.deepcopy(rec)
    rec["cell"]["defense"] = rec["meta"]["defense"]["name"] = name
    rec["meta"]["defense"]["description"] = f"{name} described"
    rec["key"] = digest(rec["cell"])
    return rec


def claim_records(claim: dict | None, methods: tuple[str, ...] = ("ortho+act+prune",)) -> list[dict]:
    """small_records() with the full method's cells under each name of `methods`, every
    record carrying `claim` as the runner records a matrix's [claim] table."""
    recs = []
    for r in small_records():
        for rec in [renamed(r, m) for m in methods] if r["cell"]["defense"] == "ortho+act+prune" else [r]:
            if claim is not None:
                rec["provenance"]["claim"] = claim
            recs.append(rec)
    return recs


def claim_frame(results: Path):
    from bench.leaderboard.tables import prepare
    from bench.store import records_frame

    return prepare(records_frame(list(ResultsStore(results).records())))


def test_todays_roles_from_the_records_give_todays_sentence(tmp_path: Path) -> None:
    from bench.leaderboard import claim

    results = build_store(tmp_path / "results", claim_records(QUICK_CLAIM), examples=False)
    groups = claim.tables(claim_frame(results))
    assert [(g["method"], g["model"]) for g in groups] == [("ortho+act+prune", "cnniqa"), ("ortho+act+prune", "dbcnn")]
    assert groups[0]["sentence"] == TODAYS_SENTENCE
    assert [r["defense"] for r in groups[0]["rows"]] == ["none", "ortho+act+prune", "adv-train", "jpeg"]
    text = claim.markdown(claim_frame(results))
    assert text.splitlines()[2] == "### cnniqa on embedded"  # one method: today's headings
    assert "Roles from the \\[claim\\] table the results record (matrix quick): method ortho+act+prune against " \
           "none, adv-train; clean-loss reference none; ranked suite standard-v1." in text


def test_a_renamed_method_gets_its_own_claim_section(tmp_path: Path) -> None:
    """Renaming the defense (and the [claim] table with it) keeps the claim tested: the
    same section under the new name, not "the claim is not tested"."""
    from markupsafe import escape

    from bench.leaderboard import claim

    mine = dict(QUICK_CLAIM, method=["my-method"])
    results = build_store(tmp_path / "results", claim_records(mine, ("my-method",)), examples=False)
    groups = claim.tables(claim_frame(results))
    assert [(g["method"], g["model"]) for g in groups] == [("my-method", "cnniqa"), ("my-method", "dbcnn")]
    expected = TODAYS_SENTENCE.replace("ortho+act+prune", "my-method")
    assert groups[0]["sentence"] == expected
    assert [r["defense"] for r in groups[0]["rows"]] == ["none", "my-method", "adv-train", "jpeg"]
    before = claim.markdown(claim_frame(build_store(tmp_path / "before", claim_records(QUICK_CLAIM), examples=False)))
    assert claim.markdown(claim_frame(results)) == before.replace("ortho+act+prune", "my-method")
    page = (render_site(results, tmp_path / "site").parent / "claim.html").read_text()
    assert str(escape(expected)) in page and "ortho+act+prune" not in page
    assert "method <code>my-method</code>" in page


def test_two_methods_get_two_claim_sections(tmp_path: Path) -> None:
    from markupsafe import escape

    from bench.leaderboard import claim

    both = dict(QUICK_CLAIM, method=["ortho+act+prune", "my-method"])
    results = build_store(tmp_path / "results", claim_records(both, ("ortho+act+prune", "my-method")), examples=False)
    groups = claim.tables(claim_frame(results))
    assert [(g["method"], g["model"]) for g in groups] == [
        ("ortho+act+prune", "cnniqa"), ("ortho+act+prune", "dbcnn"), ("my-method", "cnniqa"), ("my-method", "dbcnn")]
    assert groups[0]["sentence"] == TODAYS_SENTENCE
    assert groups[2]["sentence"] == TODAYS_SENTENCE.replace("ortho+act+prune", "my-method")
    assert [r["defense"] for r in groups[2]["rows"]] == ["none", "my-method", "adv-train", "jpeg"]
    text = claim.markdown(claim_frame(results))
    assert [line for line in text.splitlines() if line.startswith("### ")] == [
        "### ortho+act+prune: cnniqa on embedded", "### ortho+act+prune: dbcnn on embedded",
        "### my-method: cnniqa on embedded", "### my-method: dbcnn on embedded"]
    page = (render_site(results, tmp_path / "site").parent / "claim.html").read_text()
    assert page.count('<section class="group">') == 4
    for g in groups:
        assert str(escape(g["sentence"])) in page
    model_page = next((tmp_path / "site").glob("model-cnniqa-*.html")).read_text()
    assert str(escape(TODAYS_SENTENCE)) in model_page  # a model's page says every method's sentence
    assert str(escape(TODAYS_SENTENCE.replace("ortho+act+prune", "my-method"))) in model_page


def test_without_claim_table_roles_come_from_defense_kinds_and_the_site_says_so(tmp_path: Path) -> None:
    from bench.leaderboard import claim

    results = build_store(tmp_path / "results", claim_records(None, ("my-method",)), examples=False)
    groups = claim.tables(claim_frame(results))
    # kind "architectural": a method; kind "none": the reference; kind "training": a rival
    assert [(g["method"], g["model"]) for g in groups] == [("my-method", "cnniqa"), ("my-method", "dbcnn")]
    assert groups[0]["sentence"] == TODAYS_SENTENCE.replace("ortho+act+prune", "my-method").replace(
        "adversarial training (adv-train)", "training defense (adv-train)")
    rule = ("No result records a [claim] table, so the roles come from the defenses' declared kinds: each defense of "
            "kind architectural is a method (my-method), compared with the reference and the defenses of kind "
            "training (none, adv-train); the clean-loss reference is the defense of kind none (none)")
    assert rule.replace("[", "\\[").replace("]", "\\]") in claim.markdown(claim_frame(results))
    page = (render_site(results, tmp_path / "site").parent / "claim.html").read_text()
    assert rule.replace("'", "&#39;") in page


def test_the_site_code_names_no_component_or_suite() -> None:
    """The roles, the reference and the ranked suite come from the records: no registered
    component's name (defense, model, attack, dataset) and no matrix's suite appears in
    bench/leaderboard/ as a string literal of its Python or of its templates' Jinja code,
    nor as an element's whole text (`<code>nt</code>`) in a template."""
    import ast
    import tomllib

    from jinja2 import Environment

    from bench.api import ATTACKS, DATASETS, DEFENSES, MODELS
    from bench.plugins import load_plugins

    load_plugins()
    names: dict[str, str] = {}
    for kind, registry in (("defense", DEFENSES), ("model", MODELS), ("attack", ATTACKS), ("dataset", DATASETS)):
        for n in registry.names():
            names.setdefault(n, kind)
    for matrix in (ROOT / "bench" / "matrices").glob("*.toml"):
        raw = tomllib.loads(matrix.read_text())
        for suite in (raw.get("suite"), raw.get("claim", {}).get("suite")):
            if suite:
                names.setdefault(suite, f"suite of {matrix.name}")
    assert {"none", "ortho+act+prune", "adv-train", "nt", "standard-v3"} <= set(names)
    site = ROOT / "bench" / "leaderboard"
    found = []
    for path in sorted(site.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r} ({names[node.value]})")
    for path in sorted(site.rglob("*.j2")):
        for lineno, token, value in Environment().lex(path.read_text()):
            if token == "string" and ast.literal_eval(value) in names:
                found.append(f"{path.relative_to(ROOT)}:{lineno}: {value} ({names[ast.literal_eval(value)]})")
            if token == "data":
                for m in re.finditer(r">\s*([^<>\s]+)\s*<", value):
                    if m.group(1) in names:
                        found.append(f"{path.relative_to(ROOT)}:{lineno}: >{m.group(1)}< ({names[m.group(1)]})")
    assert not found, "the site's code names components or suites; take them from the records:\n" + "\n".join(found)


def test_leaderboard_marks_published_rows_apart_from_trained_here(tmp_path: Path) -> None:
    import json

    index = render_site(build_store(tmp_path / "results", provenance_records(), examples=False), tmp_path / "site")
    rows = json.loads((index.parent / "data" / "index.json").read_text())
    got = {(r["dataset"], r["weights"]) for r in rows if r["attack"] == "all (worst)"}
    assert got == {("embedded", "trained here"), ("koniq10k", "published (pyiqa cache)")}


def test_every_measure_is_explained_in_one_line_on_the_pages_with_cells(site: Path) -> None:
    from bench.leaderboard.tables import CELL_COLUMNS

    out = site.parent
    explained = [c for c in CELL_COLUMNS if c.title]
    keys = {c.key for c in explained}
    # the MSU robustness benchmark's six measures, the MOS-unit gain and the defenses benchmark's, each with its line
    assert {"abs_gain", "rel_gain", "rel_gain_classic", "robustness_score", "wasserstein_score", "energy_score",
            "mos_gain", "robust_gain", "purified_similarity", "srocc_clean", "srocc_attacked", "psnr", "ssim"} <= keys
    defense_page = next(p for p in pages(out) if p.name.startswith("defense-"))
    for page in (out / "index.html", defense_page):
        html = page.read_text()
        notes = html[html.index('<details class="measures">'):]
        notes = notes[:notes.index("</details>")]
        for c in explained:
            assert f"<dt>{c.label}</dt>" in notes and "\n" not in c.title, (page.name, c.key)


def test_a_flow_attacks_cells_show_px_and_stay_out_of_every_linf_comparison(tmp_path: Path) -> None:
    """stAdv's eps is a displacement in pixels: 1 px is no 1/255. Its cells show "px" (cell
    tables, the defense page's example) and take no part in the worst case over attacks at an
    eps, nor in the cross-cell black-box check, even where it hurts most at the same number."""
    import json

    import pandas as pd

    results = tmp_path / "results"
    linf = [make_record("cnniqa", d, "fgsm", e) for d in ("none", "jpeg") for e in (1, 2)]
    flow = [make_record("cnniqa", d, "stadv", 1) for d in ("none", "jpeg")]
    for r in linf:
        r["meta"]["attack"]["needs_gradients"] = True
    for r in flow:  # a gain above every L-inf cell's, from an attack that would count as a black-box one
        r["meta"]["attack"] = {"name": "stadv", "norm": "flow", "budget_unit": "px", "needs_gradients": False}
        r["metrics"].update(abs_gain=0.9, abs_gain_ci_lo=0.85, abs_gain_ci_hi=0.95)
        r["example"] = write_example(results, r["key"])
    index = render_site(build_store(results, linf + flow, examples=False), tmp_path / "site")
    out = index.parent
    cells = pd.read_csv(out / "cells.csv")
    assert dict(zip(cells.attack, cells.budget_unit)) == {"fgsm": "1/255", "stadv": "px"}
    assert not cells["flags"].astype("string").fillna("").str.contains("blackbox-beats-whitebox").any()
    rows = json.loads((out / "data" / "index.json").read_text())
    assert {r["attack"] for r in rows} == {"all (worst)", "fgsm"}
    assert all(r["worst_abs_gain"] < 0.9 and r["abs_gain@1"] < 0.9 for r in rows)
    page = next(out.glob("defense-none-*.html")).read_text()
    assert "attack stadv at eps 1 px" in page and '"px"' in page and '"1/255"' in page
    assert "<td>flow, eps in px</td>" in index.read_text()  # the attacks table: its threat model and unit
