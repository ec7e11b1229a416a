"""A model that predicts nothing does not look robust: its cells are flagged, unranked on
the leaderboard and left out of the claim (issue: WaDIQaM-NR trained here, clean SROCC
-0.36, had the smallest gains of any learned model and was ranked like the others)."""

from __future__ import annotations

import json
from pathlib import Path

from test_site import build_store, make_record

from bench.flags import MIN_CLEAN_SROCC, not_predictive
from bench.leaderboard import render_site
from bench.leaderboard.claim import markdown
from bench.store import ResultsStore, records_frame


def _with_srocc(rec: dict, srocc: float, lo: float) -> dict:
    rec["metrics"].update(srocc_clean=srocc, srocc_clean_ci_lo=lo, srocc_clean_ci_hi=srocc + 0.1)
    return rec


def _records() -> list[dict]:
    recs = []
    for model, (srocc, lo) in {"flat": (-0.36, -0.6), "good": (0.8, 0.6), "wide": (0.45, -0.05)}.items():
        for defense in ("none", "ortho+act+prune", "adv-train"):
            for eps in (2, 8):
                rec = make_record(model, defense, "pgd", eps)
                rec["metrics"]["abs_gain"] = 0.01 if model == "flat" else 0.4  # flat: "most robust"
                recs.append(_with_srocc(rec, srocc, lo))
    return recs


def test_the_floor() -> None:
    assert MIN_CLEAN_SROCC == 0.3
    assert not_predictive(float("nan"), float("nan"))
    assert not_predictive(0.29, 0.1) and not_predictive(0.5, 0.0) and not_predictive(-0.4, -0.7)
    assert not not_predictive(0.3, 0.01) and not not_predictive(0.7, float("nan"))


def test_cells_flagged_unranked_and_left_out_of_the_claim(tmp_path: Path) -> None:
    results = build_store(tmp_path / "results", _records(), examples=False)
    df = records_frame(list(ResultsStore(results).records()))
    by_model = {m: set(g["flags"]) for m, g in df.groupby("model")}
    assert by_model["good"] == {""}
    assert by_model["flat"] == {"not-predictive(clean SROCC -0.36 < 0.3)"}
    assert by_model["wide"] == {"not-predictive(clean SROCC interval reaches -0.05 <= 0)"}

    site = render_site(results, tmp_path / "site")
    rows = json.loads((site.parent / "data" / "index.json").read_text())
    worst = [r for r in rows if r["attack"] == "all (worst)"]
    assert all(r["rank"] is None for r in worst if r["model"] in ("flat", "wide"))
    assert [r["rank"] for r in worst if r["model"] == "good"] == [1, 2, 3]

    text = markdown(df)
    for model in ("flat", "wide"):
        assert (f"{model} on embedded: the undefended model (none) and the full method (ortho+act+prune) do not "
                "predict quality here") in text
    assert "good on embedded, at eps 8/255 against the worst attack: the full method" in text
