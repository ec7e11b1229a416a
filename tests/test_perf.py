"""`bench perf`'s projection of the full matrix's cold time from sampled cells
(bench.perf.projection), on synthetic samples whose answer is worked out by hand."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bench.perf import projection


class FakeMatrix:
    """What `projection` reads of a Matrix: cells() with model/defense/attack names."""

    def __init__(self, types: list[tuple[str, str, str]], eps: list[int]) -> None:
        self._cells = [SimpleNamespace(model=SimpleNamespace(name=m), defense=SimpleNamespace(name=d),
                                       attack=SimpleNamespace(name=a), eps=e)
                       for m, d, a in types for e in eps]

    def cells(self) -> list[SimpleNamespace]:
        return self._cells


def sample(model: str, defense: str, attack: str, seconds: float, setup: float, *, n: int = 16,
           status: str = "ok") -> dict:
    return {"cell": {"model": model, "defense": defense, "attack": attack},
            "status": status, "metrics": {"n_images": n, "seconds": seconds, "setup_seconds": setup}}


TYPES = [("cnniqa", "none", "fgsm"), ("cnniqa", "none", "pgd"), ("cnniqa", "ortho", "fgsm"),
         ("cnniqa", "ortho", "pgd"), ("piqe", "none", "pgd"), ("piqe", "ortho", "pgd")]


def samples() -> list[dict]:
    return [
        sample("cnniqa", "none", "fgsm", 1.0, 5.0),
        sample("cnniqa", "none", "pgd", 2.0, 5.0),
        sample("cnniqa", "none", "pgd", 4.0, 5.0),  # a second budget of the type: mean 3.0
        sample("cnniqa", "ortho", "fgsm", 0.5, 40.0),
        sample("cnniqa", "ortho", "pgd", 6.0, 40.0),
        sample("piqe", "none", "pgd", 1.5, 2.0),
        # a skipped group (the defense does not apply) still counts as sampled, at its own time
        sample("piqe", "ortho", "pgd", 0.0, 0.25, n=0, status="skipped"),
        # a failed cell is no timing: its numbers must not enter the projection
        sample("cnniqa", "none", "fgsm", 1000.0, 1000.0, status="error"),
    ]


def test_projection_counts_setups_once_per_group_and_scales_attacks_by_images() -> None:
    full = FakeMatrix(TYPES, eps=[2, 4, 8])  # 18 cells, 3 budgets per type
    total, source = projection(full, samples(), n_full=64)
    # set-ups, once per (model, defense): 5 + 40 + 2 + 0.25 = 47.25
    # attacks, mean seconds per type x 3 budgets x 64/16 images:
    #   cnniqa/none: (1.0 + 3.0) * 12 = 48; cnniqa/ortho: (0.5 + 6.0) * 12 = 78;
    #   piqe/none: 1.5 * 12 = 18; piqe/ortho: 0
    assert total == pytest.approx(47.25 + 48 + 78 + 18, abs=1e-9)
    assert source == "projected: 6 cell types timed on 16 test images (full has 64), set-ups counted once per group"


def test_projection_scales_by_the_largest_sampled_test_split() -> None:
    """n_sample is the most test images an ok cell had (a thinned dataset's cells have fewer)."""
    full = FakeMatrix([("cnniqa", "none", "fgsm")], eps=[4])
    got, source = projection(full, [sample("cnniqa", "none", "fgsm", 2.0, 1.0, n=8),
                                    sample("cnniqa", "none", "fgsm", 4.0, 1.0, n=32)], n_full=96)
    assert got == pytest.approx(1.0 + (2.0 + 4.0) / 2 * 96 / 32)
    assert "timed on 32 test images (full has 96)" in source


def test_projection_refuses_a_cell_type_that_was_not_sampled() -> None:
    full = FakeMatrix(TYPES + [("cnniqa", "jpeg", "square")], eps=[4])
    with pytest.raises(RuntimeError) as e:
        projection(full, samples(), n_full=64)
    assert str(e.value) == ("cannot project the full matrix: 1 cell types not sampled, e.g. "
                            "[('cnniqa', 'jpeg', 'square')]")


def test_a_type_whose_only_sample_failed_is_not_sampled() -> None:
    full = FakeMatrix([("cnniqa", "none", "fgsm"), ("cnniqa", "none", "pgd")], eps=[4])
    recs = [sample("cnniqa", "none", "fgsm", 1.0, 5.0), sample("cnniqa", "none", "pgd", 2.0, 5.0, status="error")]
    with pytest.raises(RuntimeError, match=r"1 cell types not sampled, e\.g\. \[\('cnniqa', 'none', 'pgd'\)\]"):
        projection(full, recs, n_full=64)


def test_perf_refuses_a_workdir_that_is_not_empty(tmp_path) -> None:
    """An earlier run's store in --workdir would turn the cold run warm without a word:
    refused in one line, before anything runs."""
    from bench.errors import BenchError
    from bench.perf import perf

    (tmp_path / "quick").mkdir()
    ran = []
    with pytest.raises(BenchError, match=r"--workdir .* is not empty"):
        perf(tmp_path / "results", tmp_path, log=ran.append)
    assert ran == [] and [p.name for p in tmp_path.iterdir()] == ["quick"]
