"""The record schema (bench/record.py): what the store accepts on write, how an older
record reads back, and the flat table's columns, declared once."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_site import make_record, small_records

from bench.record import (
    COLUMNS,
    EXPORT_COLUMNS,
    MEASURES,
    OTHER_MEASURES,
    SCHEMA,
    AttackViewInfo,
    CellRecord,
    RecordError,
    digest,
    upgrade,
)
from bench.store import ResultsStore, records_frame


def _full() -> dict:
    """A record with every part, as the executor writes one."""
    r = make_record("cnniqa", "jpeg", "pgd", 4.0)
    r["metrics"].update(setup_seconds=1.0, linf=4 / 255)
    r["config"] = {"model": {"name": "cnniqa", "params": {}, "version": "1"}, "defense": {"name": "jpeg"},
                   "attack": {"name": "pgd"}, "dataset": {"name": "embedded"}, "eps_255": 4.0, "seed": 0,
                   "eot_samples": 8}
    r["view"] = {"summary": "bpda(identity)", "bpda_surrogate": "identity", "eot_samples": None,
                 "model_gradient": "autograd"}
    r["weights"] = {"source": "trained here", "path": "/c/cnniqa.pt", "sha256": "ab" * 32}
    r["fit"] = {}
    r["data"] = {"test": {"skipped": 1, "converted": {"gray": 2}}, "train": {"skipped": 0}}
    r["example"] = {"name": "a", "index": 0, "clean_score": 0.2, "attacked_score": 0.5,
                    "files": {"clean": "assets/k/clean.png"}}
    r["meta"]["defense"]["origin"] = {"kind": "built-in", "module": "baselines.jpeg"}
    r["provenance"].update(matrix_sha256="cd" * 32, suite="quick-v1", claim={})
    return r


def test_a_full_record_round_trips_through_its_typed_form():
    r = _full()
    rec = CellRecord.from_dict(r)
    assert rec.view == AttackViewInfo("bpda(identity)", "identity", None, "autograd")
    assert rec.to_dict() == {**r, "schema": SCHEMA}
    # parts a cell did not reach are None in code and {} on disk; a None value stays None
    err = CellRecord.from_dict({**r, "view": {}, "data": {}, "example": {}, "per_image": {}})
    assert (err.view, err.data, err.example, err.per_image) == (None, None, None, None)
    assert err.to_dict()["view"] == {} and rec.to_dict()["view"]["eot_samples"] is None


@pytest.mark.parametrize(("change", "field"), [
    (lambda r: r.pop("cell"), "record.cell"),
    (lambda r: r["cell"].pop("eps"), "record.cell.eps"),
    (lambda r: r["metrics"].update(abs_gain="0.3"), "record.metrics.abs_gain"),
    (lambda r: r["metrics"].pop("psnr"), "psnr"),
    (lambda r: r.update(status="fine"), "status"),
    (lambda r: r.update(flags="zero-gradients"), "record.flags"),
    (lambda r: r["per_image"]["clean"].append("x"), "record.per_image.clean[2]"),
    (lambda r: r["provenance"].update(seed="0"), "record.provenance.seed"),
    (lambda r: r.update(metrix={}), "metrix"),
])
def test_the_store_refuses_a_record_that_does_not_fit_and_names_the_field(tmp_path, change, field):
    r = _full()
    change(r)
    with pytest.raises(RecordError, match=re.escape(field)):
        ResultsStore(tmp_path).put(r)
    assert not list((tmp_path / "cells").glob("*.json"))


def test_a_record_of_schema_1_still_loads_converted(tmp_path):
    """Written before the schema had a version 2: the test split's notes flat in `data`,
    no `example` or `view`. It reads back (checksum intact) as a version 2 record."""
    old = _full()
    for k in ("example", "view"):
        old.pop(k)
    old["data"] = {"skipped": 3, "converted": {"cmyk": 1}, "dataset_layout": "official"}
    old["schema"] = 1
    old["checksum"] = digest(old)
    store = ResultsStore(tmp_path)
    store.cells.mkdir(parents=True)
    store.path(old["key"]).write_text(json.dumps(old))
    rec = store.get(old["key"])
    assert rec["schema"] == SCHEMA and rec["view"] == {} and rec["example"] == {}
    assert rec["data"] == {"test": {"skipped": 3, "converted": {"cmyk": 1}, "dataset_layout": "official"},
                           "train": {}}
    row = records_frame([rec]).iloc[0]
    assert (row["test_skipped"], row["test_converted"], math.isnan(row["train_skipped"])) == (3, 1, True)
    assert upgrade(rec) is rec  # current: left as it is


def test_every_column_of_the_table_is_declared_once():
    df = records_frame([_full(), *small_records()])
    assert list(df.columns[: len(EXPORT_COLUMNS)]) == EXPORT_COLUMNS
    assert set(df.columns) <= set(COLUMNS), set(df.columns) - set(COLUMNS)
    assert set(EXPORT_COLUMNS) <= set(COLUMNS) and set(MEASURES) <= set(EXPORT_COLUMNS)


def test_the_site_gives_even_an_empty_frame_every_text_and_number_column():
    from bench.leaderboard.tables import prepare

    df = prepare(records_frame([]))
    for name, kind in COLUMNS.items():
        if kind in ("text", "number"):  # the measures only some cells have too: NaN where none has them
            assert name in df.columns, name
    assert df[list(OTHER_MEASURES)].empty
