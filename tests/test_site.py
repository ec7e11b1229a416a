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
ROOT = Path(__file__).resolve().parents[1]


def make_record(model: str, defense: str, attack: str, eps: float, *, dataset: str = "embedded",
                status: str = "ok", flags: tuple[str, ...] = (), message: str = "", seed: int = 0) -> dict:
    """A synthetic record shaped like the runner's; metrics are a deterministic function of the cell."""
    cell = {"model": model, "defense": defense, "attack": attack, "eps": eps, "dataset": dataset}
    rng = random.Random(digest(cell))
    nan = math.nan
    ok = status == "ok"
    gain = min(1.0, eps / 16 * rng.uniform(0.2, 1.0)) if ok else nan
    metrics = {
        "n_images": 4 if ok else 0, "srocc_clean": rng.uniform(0.6, 0.9) if ok else nan,
        "srocc_attacked": rng.uniform(-0.2, 0.6) if ok else nan, "plcc_clean": rng.uniform(0.6, 0.9) if ok else nan,
        "plcc_attacked": rng.uniform(-0.2, 0.6) if ok else nan, "abs_gain": gain, "rel_gain": gain * 2,
        "psnr": rng.uniform(30, 45) if ok else nan, "ssim": rng.uniform(0.8, 1.0) if ok else nan, "seconds": 0.5,
    }
    return {
        "key": digest(cell), "cell": cell, "config": {},
        "meta": {"model": {"name": model, "lower_better": False}, "defense": {"name": defense, "kind": "purification"},
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
    recs += [
        make_record("cnniqa", HOSTILE, "pgd", 4, flags=("zero-gradients",)),
        make_record("cnniqa", "blur", "pgd", 4, status="error", message="RuntimeError: <b>boom</b> & more"),
        make_record("dbcnn", "blur", "fgsm", 4, status="skipped", message="not applicable"),
        make_record("dbcnn", "jpeg", "pgd", 16, flags=("zero-gradients", "clipped")),
    ]
    return recs


def build_store(root: Path, records: list[dict]) -> Path:
    store = ResultsStore(root)
    for r in records:
        store.put(r)
    return root


@pytest.fixture
def site(tmp_path: Path) -> Path:
    results = build_store(tmp_path / "results", small_records())
    return render_site(results, tmp_path / "site")


def test_files_exist(site: Path) -> None:
    out = site.parent
    for name in ("index.html", "cells.csv", "cells.json", "static/site.css", "static/site.js", "plots/gain_vs_eps.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert site.name == "index.html"
    csv_head = (out / "cells.csv").read_text().splitlines()[0]
    assert csv_head.startswith("model,defense,attack,eps,dataset,status,n_images")
    assert len((out / "cells.csv").read_text().splitlines()) == len(small_records()) + 1


def test_hostile_name_is_escaped(site: Path) -> None:
    html = site.read_text()
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # summary table and filter, as text
    assert "<b>boom</b>" not in html
    assert html.count("<script") == 2  # site.js and the JSON data block, nothing else


def test_labels_and_marks(site: Path) -> None:
    html = site.read_text()
    assert "vs pseudo-MOS" in html
    assert 'class="flagged"' in html  # summary row of a group with flagged cells
    assert "abc123" in html and "2.14.1" in html and "test-cpu" in html


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
    html = site.read_text()
    urls = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html)
    assert urls, "expected some links"
    for url in urls:
        assert not re.match(r"^([a-z][a-z0-9+.-]*:|//|/)", url, re.IGNORECASE), url
    assert "http://" not in html and "https://" not in html


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
        results = build_store(tmp_path / "results", recs)
    start = time.perf_counter()
    index = render_site(results, tmp_path / "site")
    seconds = time.perf_counter() - start
    size = index.stat().st_size
    print(f"10k cells: render {seconds:.2f} s, index.html {size / 1e6:.2f} MB")
    assert seconds < 10, seconds
    assert size < 2_000_000, size
