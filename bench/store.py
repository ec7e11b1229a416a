"""The results store: one JSON record per cell under `<results>/cells/<key>.json`.

Each record is written atomically (temporary file, fsync, rename), so a killed run
leaves either the whole record or none. A record carries its own checksum; a record
that does not match it is reported and treated as absent, so the cell is recomputed.
This module imports no torch: the exporter and the site read the store through it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# the schema is bench.record's (EXPORT_COLUMNS, digest: importable from here too); torch-free, like this module
from bench.record import (
    COMPONENTS,
    EXPORT_COLUMNS,
    OTHER_MEASURES,
    PROVENANCE,
    SCHEMA,
    CellRecord,
    canonical,
    digest,
    upgrade,
    validate,
)
from bench.registry import origin_label


class ResultsStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.cells = self.root / "cells"

    def check_writable(self) -> None:
        """Fail before any work if records cannot be written here."""
        from bench.errors import BenchError

        try:
            self.cells.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.cells, prefix=".probe-"):
                pass
        except OSError as e:
            raise BenchError(
                f"results directory '{self.root}' cannot be written ({e.strerror or e}); "
                "choose another with --results DIR or fix its permissions"
            ) from None

    def path(self, key: str) -> Path:
        if not key.isalnum():  # keys are hex digests: never a path that leaves the store
            raise ValueError(f"invalid cell key {key!r}")
        return self.cells / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        p = self.path(key)
        if not p.exists():
            return None
        return _read(p)

    def put(self, record: CellRecord | dict[str, Any]) -> Path:
        """Write a record, checked against the schema (bench.record: RecordError naming
        the field that does not fit; a record of an older version is converted first),
        with its version and checksum."""
        record = validate(record.to_dict() if isinstance(record, CellRecord) else upgrade(dict(record)))
        record = dict(record, schema=SCHEMA)
        record.pop("checksum", None)
        record["checksum"] = digest(record)
        p = self.path(record["key"])
        try:
            atomic_write(p, json.dumps(record, indent=1, sort_keys=True, allow_nan=True).encode())
        except OSError as e:
            from bench.errors import BenchError

            raise BenchError(
                f"cannot write the record of cell {record['key'][:12]} to '{p}' ({e.strerror or e}); nothing was "
                "half-written and finished cells are kept: free space or fix permissions, then run the same "
                "command again to resume") from e
        return p

    def put_asset(self, key: str, name: str, data: bytes) -> str:
        """A file a record refers to (an example image), written atomically before the
        record; returns its path relative to the store's root."""
        if not name.replace(".", "").replace("-", "").replace("_", "").isalnum() or name.startswith("."):
            raise ValueError(f"invalid asset name {name!r}")
        self.path(key)  # validates the key
        p = self.root / "assets" / key / name
        atomic_write(p, data)
        return p.relative_to(self.root).as_posix()

    def log_run(self, entry: dict[str, Any]) -> None:
        """One JSON line per finished `bench run` (what it computed, how long it took), so
        that a run's wall time stays known after the run: `bench perf` reads it."""
        with open(self.root / "runs.jsonl", "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")

    def runs(self) -> list[dict[str, Any]]:
        path = self.root / "runs.jsonl"
        if not path.is_file():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a crash
        return out

    def records(self) -> Iterator[dict[str, Any]]:
        if not self.cells.is_dir():
            return
        for p in sorted(self.cells.glob("*.json")):
            rec = _read(p)
            if rec is not None:
                yield rec


def atomic_write(p: Path, data: bytes) -> None:
    """Temporary file, fsync, rename: a crash or a full disk leaves the old file or none,
    never half of one. Every file the benchmark keeps (records, caches, checkpoints) is
    written this way; readable by all (mkstemp alone would make it private)."""
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(p: Path) -> dict[str, Any] | None:
    try:
        rec = json.loads(p.read_text())
        if not isinstance(rec, dict):
            raise ValueError(f"valid JSON, but a {type(rec).__name__}, not a record")
        stored = rec.pop("checksum", None)
        if stored != digest(rec):
            raise ValueError("checksum mismatch")
        rec["checksum"] = stored
        return upgrade(rec)  # a record of an older schema, converted
    except (ValueError, OSError) as e:
        warnings.warn(f"ignoring corrupt result record {p} ({e}); its cell will be recomputed", stacklevel=2)
        return None


def data_notes(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What loading did to each split, as {"test": notes, "train": notes}. Schema 1
    records may hold the test split's notes alone, flat: the train split is then {}."""
    data = record.get("data") or {}
    if not isinstance(data, dict):
        return {"test": {}, "train": {}}
    if data and set(data) <= {"test", "train"} and all(isinstance(v, dict) for v in data.values()):
        return {"test": data.get("test") or {}, "train": data.get("train") or {}}
    return {"test": data, "train": {}}


def notes_counts(notes: dict[str, Any]) -> tuple[float, float]:
    """(files skipped, files converted) of one split's notes; NaN where it does not say."""
    skipped, converted = notes.get("skipped"), notes.get("converted")
    n_skipped = float(skipped) if isinstance(skipped, (int, float)) and not isinstance(skipped, bool) else math.nan
    if isinstance(converted, dict):
        return n_skipped, float(sum(v for v in converted.values() if isinstance(v, (int, float))))
    return n_skipped, math.nan


def flatten(r: dict[str, Any]) -> dict[str, Any]:
    """One record (of the current schema) as one row of the table: each key a column
    that bench.record.COLUMNS declares, or a measure of its metrics."""
    row = {**r["cell"], "status": r["status"], "message": r.get("message", "")}
    row.update(r.get("metrics", {}))
    row["key"] = r["key"]
    row["flags"] = ";".join(r.get("flags", []))
    row["attack_view"] = r.get("view", {}).get("summary", "")
    meta = r.get("meta", {})
    row["defense_kind"] = meta.get("defense", {}).get("kind", "")
    row["model_lower_better"] = meta.get("model", {}).get("lower_better")
    row["mos_name"] = meta.get("dataset", {}).get("mos_name", "")
    row["attack_needs_gradients"] = meta.get("attack", {}).get("needs_gradients")
    row["budget_unit"] = meta.get("attack", {}).get("budget_unit") or "1/255"  # eps's unit ("px": a flow attack)
    for kind in COMPONENTS:  # where each component's code came from
        origin = meta.get(kind, {}).get("origin")
        row[f"{kind}_origin"] = origin_label(origin) if isinstance(origin, dict) else ""
    weights = r.get("weights") or {}
    for k in ("source", "path", "sha256"):
        row[f"weights_{k}"] = str(weights.get(k) or "")
    for split, notes in data_notes(r).items():
        row[f"{split}_skipped"], row[f"{split}_converted"] = notes_counts(notes)
    conf = r.get("config", {})
    row["setting"] = digest([conf.get(k) for k in ("model", "defense", "dataset", "eps_255", "seed",
                                                    "eot_samples")])[:12] if conf else ""
    prov = r.get("provenance", {})
    for k in PROVENANCE:
        v = prov.get(k)
        row[f"prov_{k}"] = v if not isinstance(v, dict) else canonical(v)
    return row


def records_frame(records: list[dict[str, Any]] | Iterator[dict[str, Any]]):  # -> pandas.DataFrame
    """Flatten records into one row per cell: the export columns first, then the rest."""
    import pandas as pd

    rows = [flatten(upgrade(r)) for r in records]
    df = pd.DataFrame(rows)
    for c in (*EXPORT_COLUMNS, *OTHER_MEASURES):  # NaN where no record has it (older records, other cells)
        if c not in df.columns:
            df[c] = math.nan
    rest = [c for c in df.columns if c not in EXPORT_COLUMNS]
    df = df[EXPORT_COLUMNS + rest]
    if len(df):
        df = df.sort_values(["model", "dataset", "defense", "attack", "eps"], kind="stable").reset_index(drop=True)
    from bench.flags import add_read_time_flags  # torch-free, like this module

    return add_read_time_flags(df)
