"""The results store: one JSON record per cell under `<results>/cells/<key>.json`.

Each record is written atomically (temporary file, fsync, rename), so a killed run
leaves either the whole record or none. A record carries its own checksum; a record
that does not match it is reported and treated as absent, so the cell is recomputed.
This module imports no torch: the exporter and the site read the store through it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCHEMA = 1
EXPORT_COLUMNS = [
    "model", "defense", "attack", "eps", "dataset", "status", "n_images",
    "srocc_clean", "srocc_attacked", "plcc_clean", "plcc_attacked",
    "abs_gain", "rel_gain", "robustness_score", "psnr", "ssim", "seconds",
    "srocc_clean_ci_lo", "srocc_clean_ci_hi", "abs_gain_ci_lo", "abs_gain_ci_hi",
    "rel_gain_ci_lo", "rel_gain_ci_hi", "robustness_score_ci_lo", "robustness_score_ci_hi",
]


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def digest(obj: Any) -> str:
    return hashlib.sha256(canonical(obj).encode()).hexdigest()


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

    def put(self, record: dict[str, Any]) -> Path:
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
        stored = rec.pop("checksum", None)
        if stored != digest(rec):
            raise ValueError("checksum mismatch")
        rec["checksum"] = stored
        return rec
    except (ValueError, OSError) as e:
        warnings.warn(f"ignoring corrupt result record {p} ({e}); its cell will be recomputed", stacklevel=2)
        return None


def records_frame(records: list[dict[str, Any]] | Iterator[dict[str, Any]]):  # -> pandas.DataFrame
    """Flatten records into one row per cell: the export columns first, then the rest."""
    import pandas as pd

    rows = []
    for r in records:
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
        # cells that differ only in their attack: what cross-cell flags compare (bench/flags.py)
        conf = r.get("config", {})
        row["setting"] = digest([conf.get(k) for k in ("model", "defense", "dataset", "eps_255", "seed",
                                                        "eot_samples")])[:12] if conf else ""
        prov = r.get("provenance", {})
        for k in ("bench", "torch", "pyiqa", "torchattacks", "python", "git_commit", "seed", "matrix",
                  "matrix_sha256", "suite", "date", "hardware"):
            v = prov.get(k)
            row[f"prov_{k}"] = v if not isinstance(v, dict) else canonical(v)
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in EXPORT_COLUMNS:
        if c not in df.columns:
            df[c] = math.nan
    rest = [c for c in df.columns if c not in EXPORT_COLUMNS]
    df = df[EXPORT_COLUMNS + rest]
    if len(df):
        df = df.sort_values(["model", "dataset", "defense", "attack", "eps"], kind="stable").reset_index(drop=True)
    from bench.flags import add_cross_cell_flags  # torch-free, like this module

    return add_cross_cell_flags(df)
