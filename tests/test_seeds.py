"""Cells repeated over training seeds, merged into one row: means over seeds, intervals that
cover seeds and images (two-level bootstrap), the spread between seeds; cells that differ in
anything but their seed stay apart."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bench.leaderboard.seeds import combine_seeds, two_level_ci
from bench.measures import bootstrap_ci, per_image
from bench.record import digest
from bench.store import records_frame


def _record(seed: int, clean: np.ndarray, attacked: np.ndarray, mos: np.ndarray, eot: int = 8) -> dict:
    cell = {"model": "m", "defense": "d", "attack": "pgd", "eps": 8.0, "dataset": "embedded"}
    gains = per_image(clean, attacked, False)
    metrics = {"n_images": len(clean), "srocc_clean": 0.5, "srocc_attacked": 0.1, "plcc_clean": 0.5,
               "plcc_attacked": 0.1, "psnr": 40.0, "ssim": 0.9, "seconds": 1.0,
               "srocc_clean_ci_lo": 0.4, "srocc_clean_ci_hi": 0.6}
    for k, v in gains.items():
        metrics[k] = float(v.mean())
        metrics[f"{k}_ci_lo"], metrics[f"{k}_ci_hi"] = bootstrap_ci((v,), np.mean)
    config = {"model": "m", "seed": seed, "eot_samples": eot}
    return {"key": digest([cell, config]), "cell": cell, "config": config, "status": "ok", "message": "",
            "metrics": metrics, "flags": [], "meta": {"model": {"name": "m", "lower_better": False},
                                                      "dataset": {"name": "embedded", "mos_lower_better": False}},
            "per_image": {"names": [str(i) for i in range(len(clean))], "mos": mos.tolist(),
                          "clean": clean.tolist(), "attacked": attacked.tolist()},
            "provenance": {"seed": seed}}


def _seeded(shifts: list[float], n: int = 30, noise: float = 0.001, **kw) -> list[dict]:
    """One record per seed: the attack shifts every image by about `shifts[seed]`."""
    rng = np.random.default_rng(0)
    clean = np.linspace(0.0, 1.0, n)
    mos = clean + rng.normal(0, 0.1, n)
    return [_record(seed, clean, clean + s + rng.normal(0, noise, n), mos, **kw) for seed, s in enumerate(shifts)]


def _combined(records: list[dict]):
    return combine_seeds(records_frame(records), {r["key"]: r for r in records})


def test_three_seeds_become_one_row_whose_interval_covers_the_spread_between_seeds():
    recs = _seeded([0.1, 0.2, 0.3])
    (row,) = _combined(recs).to_dict("records")
    assert row["n_seeds"] == 3 and row["seeds"] == "0,1,2" and row["n_images"] == 90
    assert row["abs_gain"] == pytest.approx(np.mean([r["metrics"]["abs_gain"] for r in recs]))
    assert row["abs_gain_seed_sd"] == pytest.approx(np.std([r["metrics"]["abs_gain"] for r in recs], ddof=1))
    # each seed's interval over its images is narrow (images agree within a seed) ...
    widths = [r["metrics"]["abs_gain_ci_hi"] - r["metrics"]["abs_gain_ci_lo"] for r in recs]
    assert max(widths) < 0.002
    # ... the two-level one spans the seeds' means: seeds decide it, not images
    assert row["abs_gain_ci_lo"] < 0.15 and row["abs_gain_ci_hi"] > 0.25
    assert row["abs_gain_ci_lo"] < row["abs_gain"] < row["abs_gain_ci_hi"]
    assert row["abs_gain_ci_lo"] >= 0.1 - 1e-9 and row["abs_gain_ci_hi"] <= 0.3 + 1e-9  # never past any seed


def test_distance_scores_merge_with_an_interval_over_seeds_and_images_not_the_first_seeds():
    from bench.measures import DISTANCES, jackknife_ci, scaled

    recs = _seeded([0.1, 0.2, 0.3])
    for r in recs:  # the distances as a cell records them, with their interval over its images
        clean, attacked = (np.asarray(r["per_image"][k]) for k in ("clean", "attacked"))
        fc, fa = scaled(clean, clean, False), scaled(attacked, clean, False)
        for k, distance in DISTANCES.items():
            r["metrics"][k] = float(distance(fc, fa))
            r["metrics"][f"{k}_ci_lo"], r["metrics"][f"{k}_ci_hi"] = jackknife_ci((fc, fa), distance)
    (row,) = _combined(recs).to_dict("records")
    for k in DISTANCES:
        assert row[k] == pytest.approx(np.mean([r["metrics"][k] for r in recs]))
        assert row[f"{k}_seed_sd"] > 0.05
        # the merged interval spans the seeds' spread (each seed's own is narrow): the t-interval
        values = np.array([r["metrics"][k] for r in recs])
        half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / np.sqrt(3)
        assert (row[f"{k}_ci_lo"], row[f"{k}_ci_hi"]) == pytest.approx((values.mean() - half, values.mean() + half))
        assert row[f"{k}_ci_lo"] < values.min() and row[f"{k}_ci_hi"] > values.max(), k
        assert row[f"{k}_ci_hi"] > recs[0]["metrics"][f"{k}_ci_hi"] + 0.05, k


def test_seeds_that_agree_give_about_the_interval_over_images():
    rng = np.random.default_rng(1)
    v = rng.normal(0.2, 0.05, 40)
    lo1, hi1 = two_level_ci([v, v, v], lambda x: x.mean(axis=-1))
    lo, hi = bootstrap_ci((v,), np.mean)
    assert lo1 == pytest.approx(lo, abs=0.01) and hi1 == pytest.approx(hi, abs=0.01)


def test_one_seed_passes_through_unchanged():
    (rec,) = _seeded([0.2])
    (row,) = _combined([rec]).to_dict("records")
    assert row["n_seeds"] == 1 and math.isnan(row["abs_gain_seed_sd"])
    assert row["abs_gain_ci_lo"] == rec["metrics"]["abs_gain_ci_lo"]


def test_cells_that_differ_in_more_than_their_seed_stay_apart():
    recs = _seeded([0.1, 0.2]) + _seeded([0.1, 0.2], eot=16)
    rows = _combined(recs)
    assert sorted(rows["n_seeds"]) == [2, 2]


# ----------------------------------------------------------------------------- a run over seeds
def _run(tmp_path, name: str, **replace: str):
    from conftest import write_matrix

    from bench.cli import main
    from bench.store import ResultsStore

    m = write_matrix(tmp_path / f"{name}.toml", **{"pgd = { eps = [4, 8], steps = 3 }": "",
                                                   "jpeg = { quality = 50 }": "", **replace})
    assert main(["run", "--matrix", str(m), "--results", str(tmp_path / name), "--no-site", "--no-progress"]) == 0
    return list(ResultsStore(tmp_path / name).records())


def test_each_cell_runs_once_per_seed_on_one_split_and_the_site_merges_them(tmp_path):
    recs = _run(tmp_path, "fixed", **{"seed = 0": "seed = 0\nseeds = [0, 1]"})
    by = {(r["cell"]["model"], r["config"]["seed"]): r for r in recs}
    assert sorted(by) == [("cnniqa", 0), ("cnniqa", 1), ("piqe", 0), ("piqe", 1)]
    assert all(r["status"] == "ok" and r["data"]["test"]["split_seed"] == 0 for r in recs)  # one split for both
    assert by["piqe", 0]["per_image"] == by["piqe", 1]["per_image"]  # trains nothing: the same numbers
    assert by["cnniqa", 0]["per_image"]["names"] == by["cnniqa", 1]["per_image"]["names"]
    assert by["cnniqa", 0]["per_image"]["clean"] != by["cnniqa", 1]["per_image"]["clean"]  # trained twice
    merged = combine_seeds(records_frame(recs), {r["key"]: r for r in recs})
    assert sorted(merged["n_seeds"]) == [2, 2] and set(merged["seeds"]) == {"0,1"}
    row = merged[merged["model"] == "cnniqa"].iloc[0]
    per_seed = sorted(by[("cnniqa", s)]["metrics"]["abs_gain"] for s in (0, 1))
    assert sorted(map(float, row["abs_gain_per_seed"].split(","))) == pytest.approx(per_seed, rel=1e-5)
    assert row["abs_gain_seed_sd"] == pytest.approx(abs(per_seed[1] - per_seed[0]) / math.sqrt(2), rel=1e-6)

    # the site: a between-seed column beside the intervals, with that spread, and each seed's mark
    from bench.leaderboard import render_site

    render_site(tmp_path / "fixed", tmp_path / "site")
    (page,) = [p.read_text() for p in (tmp_path / "site").glob("model-cnniqa*.html")]
    assert "abs gain SD between seeds @4" in page and f'data-v="{round(row["abs_gain_seed_sd"], 3)}"' in page


def test_per_seed_splits_draw_a_split_per_seed(tmp_path):
    recs = _run(tmp_path, "split", **{"seed = 0": 'seed = 0\nseeds = [3, 4]\nsplit_seeds = "per-seed"',
                                      "cnniqa = { epochs = 2 }": ""})
    names = {r["config"]["seed"]: r["per_image"]["names"] for r in recs}
    assert {r["data"]["test"]["split_seed"] for r in recs} == {3, 4} and names[3] != names[4]


def test_a_block_with_seeds_of_its_own_repeats_only_its_cells(tmp_path):
    """The full matrix's claim block runs three seeds while the rest runs one: a block's
    `seeds` applies to its cells alone, and a bad list there is named with its block."""
    from conftest import write_matrix

    from bench.errors import MatrixError
    from bench.matrix import load_matrix

    block = '\n[blocks.b]\nseeds = [0, 1, 2]\nmodels = { piqe = {} }\ndefenses = { none = {} }\n' \
            'attacks = { fgsm = { eps = [2] } }\n'
    m = load_matrix(str(write_matrix(tmp_path / "m.toml", **{"[datasets]": f"{block}[datasets]"})))
    seeds: dict[tuple, list[int]] = {}
    for c in m.cells():
        seeds.setdefault((c.model.name, c.defense.name, c.attack.name, c.eps), []).append(c.seed)
    assert seeds.pop(("piqe", "none", "fgsm", 2.0)) == [0, 1, 2]
    assert set(map(tuple, seeds.values())) == {(0,)}  # the top level's cells: once, with `seed`
    bad = write_matrix(tmp_path / "bad.toml", **{"[datasets]": f"{block.replace('[0, 1, 2]', '[1, 1]')}[datasets]"})
    with pytest.raises(MatrixError, match="block 'b': field 'seeds' must list distinct integers"):
        load_matrix(str(bad))


@pytest.mark.parametrize(("line", "message"), [
    ("seeds = [0, 0]", "field 'seeds' must list distinct integers"),
    ('seeds = ["a"]', "field 'seeds' must list distinct integers"),
    ('split_seeds = "each"', "field 'split_seeds' must be \"fixed\""),
])
def test_bad_seeds_are_one_clear_line(tmp_path, line, message):
    from conftest import write_matrix

    from bench.errors import MatrixError
    from bench.matrix import load_matrix

    m = write_matrix(tmp_path / "m.toml", **{"seed = 0": f"seed = 0\n{line}"})
    with pytest.raises(MatrixError, match=message):
        load_matrix(str(m))


def test_two_cold_runs_of_one_seed_are_identical_whatever_ran_before_them(tmp_path, monkeypatch):
    """A model trained here starts from the seed, not from what the process drew before:
    a cold run (nothing cached), another matrix's run, then the first again cold, in one
    process, give the same records but for times and dates."""
    from conftest import fresh_cache, write_matrix

    from bench.cli import main

    def cold(name: str) -> object:
        monkeypatch.setenv("BENCH_CACHE", str(fresh_cache(tmp_path / f"cache-{name}")))
        recs = _run(tmp_path, name, **{"cnniqa = { epochs = 2 }": "cnniqa = { epochs = 1 }"})
        df = records_frame(recs)
        # what may differ: times, the date, and where the cache was (each run had its own)
        return df.drop(columns=[c for c in df.columns
                                if "seconds" in c or c in ("prov_date", "prov_hardware", "weights_path")])

    first = cold("a")
    other = write_matrix(tmp_path / "other.toml", **{"seed = 0": "seed = 5", "piqe = {}": ""})
    assert main(["run", "--matrix", str(other), "--results", str(tmp_path / "o"), "--no-site", "--no-progress"]) == 0
    import torch

    torch.rand(1000)  # and the global generator moved on
    again = cold("b")
    differ = [c for c in first.columns if not first[c].equals(again[c])]
    assert not differ, {c: (first[c].tolist(), again[c].tolist()) for c in differ}
