"""The cell record, defined once: `CellRecord` and its typed parts are what the executor
fills for a cell; `to_dict` is the JSON object the store checks (`validate`) and keeps,
with its schema version; `upgrade` converts a record of an older version read back.
`COLUMNS` declares every column of the flat table (bench.store.records_frame) that the
export, the flags and the site read. Torch-free: the store and the site import it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

# 1: `data` held the test split's notes flat; early records lack parts; nothing was checked on write
# 2: `data` is {"test": notes, "train": notes} or {}; every record is checked on write
SCHEMA = 2

JSON = dict[str, Any]
STATUSES = ("ok", "error", "skipped")
# A cell skipped by `bench run --skip-missing` (weights or data root not here): the next run computes it again.
SKIPPED_MISSING = "missing here: "


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def digest(obj: Any) -> str:
    """The sha256 of an object's canonical JSON: cell keys, record checksums, cache keys."""
    return hashlib.sha256(canonical(obj).encode()).hexdigest()


class RecordError(ValueError):
    """A record that does not fit the schema: which field, what it should be."""


def _check(value: Any, hint: Any, where: str) -> Any:
    """`value` as `hint` wants it (a Part from its dict); RecordError where it does not fit."""
    if hint is Any:
        return value
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
        inner = next(a for a in args if a is not type(None))
        if value is None or (value == {} and isinstance(inner, type) and issubclass(inner, Part)):
            return None  # a part the cell did not reach is {} on disk
        return _check(value, inner, where)
    if isinstance(hint, type) and issubclass(hint, Part):
        return hint.from_dict(value, where)
    origin = typing.get_origin(hint) or hint
    ok = {float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool)}.get(origin, lambda v: isinstance(v, origin))
    if not ok(value):
        raise RecordError(f"record field '{where}': expected {getattr(hint, '__name__', hint)}, "
                          f"got {type(value).__name__}")
    if origin is list and args:
        for i, v in enumerate(value):
            _check(v, args[0], f"{where}[{i}]")
    elif origin is dict and len(args) == 2:
        for k, v in value.items():
            _check(v, args[1], f"{where}.{k}")
    return value


class Part:
    """A typed part of a record. Built from its JSON object with every field's type checked
    and required fields present; keys it does not declare are kept in `extra`, so that
    `to_dict` gives back what was read."""

    extra: JSON

    @classmethod
    def from_dict(cls, d: Any, where: str = "") -> Any:
        where = where or cls.__name__
        if not isinstance(d, dict):
            raise RecordError(f"record field '{where}': expected an object, got {type(d).__name__}")
        hints = _hints(cls)
        kw: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name == "extra":
                continue
            if f.name in d:
                kw[f.name] = _check(d[f.name], hints[f.name], f"{where}.{f.name}")
            elif f.default is MISSING and f.default_factory is MISSING:
                raise RecordError(f"record field '{where}.{f.name}' is missing")
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**kw, extra={k: v for k, v in d.items() if k not in names})

    def to_dict(self) -> JSON:
        """The JSON object: a part that is None (the cell did not reach it) as {}."""
        parts, out = _part_fields(type(self)), {}
        for f in (f for f in fields(self) if f.name != "extra"):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if isinstance(v, Part) else {} if v is None and f.name in parts else v
        return {**out, **self.extra}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _part_fields(cls: type) -> frozenset[str]:
    """The fields of `cls` that hold a Part (or None)."""
    return frozenset(k for k, h in _hints(cls).items()
                     if any(isinstance(a, type) and issubclass(a, Part) for a in (h, *typing.get_args(h))))


@dataclass
class CellRef(Part):
    """`cell`: the names that identify a cell, and its budget in /255 (px: meta.attack.budget_unit)."""

    model: str
    defense: str
    attack: str
    eps: float
    dataset: str
    extra: JSON = field(default_factory=dict)


@dataclass
class Config(Part):
    """`config`: all that determines the result (each component's {"name", "params", "version"})."""

    model: JSON
    defense: JSON
    attack: JSON
    dataset: JSON
    eps_255: float  # the cell's eps: in pixels where meta.attack.budget_unit is "px" (a flow attack)
    seed: int
    eot_samples: int
    extra: JSON = field(default_factory=dict)


@dataclass
class AttackViewInfo(Part):
    """`view`: how the attack saw the defense (bench.gradients.AttackView)."""

    summary: str
    bpda_surrogate: str | None = None
    eot_samples: int | None = None
    model_gradient: str | None = None
    extra: JSON = field(default_factory=dict)


@dataclass
class DataNotes(Part):
    """`data`: what loading did to each split (files skipped, converted; layout)."""

    test: JSON
    train: JSON
    extra: JSON = field(default_factory=dict)


@dataclass
class Example(Part):
    """`example`: the image whose score the attack moved most, its files under the store."""

    name: str
    clean_score: float
    attacked_score: float
    files: dict[str, str]
    index: int | None = None
    extra: JSON = field(default_factory=dict)


@dataclass
class PerImage(Part):
    """`per_image`: each test image's name, MOS, clean and attacked score (measures 6 on, in `extra`: the undefended
    model's clean score `undefended`, the purified image's `similarity`; bench.defense_measures)."""

    names: list[str]
    mos: list[float]
    clean: list[float]
    attacked: list[float]
    extra: JSON = field(default_factory=dict)


@dataclass
class Provenance(Part):
    """`provenance`: versions, commit, hardware, seed, matrix, date and duration."""

    bench: str
    torch: str
    pyiqa: str
    torchattacks: str
    python: str
    git_commit: str
    hardware: JSON
    seed: int
    matrix: str
    date: str
    duration_s: float
    matrix_sha256: str | None = None
    suite: str | None = None
    claim: JSON | None = None  # the matrix's [claim] roles (bench/leaderboard/roles.py)
    extra: JSON = field(default_factory=dict)


@dataclass
class CellRecord(Part):
    """One cell's record. Parts the cell did not reach (an error before the data loaded)
    are None and written as {}. `meta`: each component's declared metadata and origin by
    kind; `weights`: where the model's parameters came from; `fit`: the defense's fit."""

    key: str
    cell: CellRef
    status: str
    metrics: dict[str, float]
    message: str = ""
    config: Config | None = None
    meta: dict[str, JSON] = field(default_factory=dict)
    weights: JSON = field(default_factory=dict)
    fit: JSON = field(default_factory=dict)
    view: AttackViewInfo | None = None
    data: DataNotes | None = None
    example: Example | None = None
    flags: list[str] = field(default_factory=list)
    per_image: PerImage | None = None
    provenance: Provenance | None = None
    schema: int = SCHEMA
    extra: JSON = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise RecordError(f"record field 'status': one of {', '.join(STATUSES)}, got {self.status!r}")
        missing = [k for k in ("n_images", *MEASURES) if k not in self.metrics]
        if missing:
            raise RecordError(f"record field 'metrics' lacks {', '.join(missing)}")
        if set(self.extra) - {"checksum"}:
            raise RecordError(f"record has unknown fields: {', '.join(sorted(set(self.extra) - {'checksum'}))}")


def validate(record: JSON) -> JSON:
    """The record if it fits the current schema; RecordError naming the field otherwise."""
    CellRecord.from_dict(record, "record")
    return record


def upgrade(record: JSON) -> JSON:
    """A record read back, as the current schema has it (a copy where it changes)."""
    if record.get("schema") == SCHEMA:
        return record
    parts = ("config", "meta", "weights", "fit", "view", "example", "per_image", "provenance", "metrics")
    rec = {"message": "", "flags": [], **{k: {} for k in parts}, **record}  # early records lack some
    data = rec.get("data") or {}
    if isinstance(data, dict) and data and not (set(data) <= {"test", "train"}
                                                and all(isinstance(v, dict) for v in data.values())):
        rec["data"] = {"test": data, "train": {}}  # schema 1: the test split's notes, flat
    rec["schema"] = SCHEMA
    return rec


# ----------------------------------------------------------------------------- the flat table
IDENTITY = tuple(f.name for f in fields(CellRef) if f.name != "extra")  # model, defense, attack, eps, dataset
MEASURES = (  # every measure an ok cell has, in export order; NaN where a cell has none
    "srocc_clean", "srocc_attacked", "plcc_clean", "plcc_attacked", "abs_gain", "rel_gain", "robustness_score",
    "psnr", "ssim", "seconds", "srocc_clean_ci_lo", "srocc_clean_ci_hi", "abs_gain_ci_lo", "abs_gain_ci_hi",
    "rel_gain_ci_lo", "rel_gain_ci_hi", "robustness_score_ci_lo", "robustness_score_ci_hi",
)
# measures some cells have: the group's shared set-up time, the L-inf distance used, what a certified defense
# guarantees, the gain in MOS units (measures 4 on), the MSU benchmark's other three (5 on), the defenses benchmark's two (6)
OTHER_MEASURES = ("setup_seconds", "linf", "cert_vacuous", "cert_lo_mean", "cert_hi_mean", "cert_width_mean",
                  "cert_attacked_inside", "srocc_attacked_ci_lo", "srocc_attacked_ci_hi",
                  *(f"{m}{end}" for m in ("mos_gain", "rel_gain_classic", "wasserstein_score", "energy_score",
                                          "robust_gain", "purified_similarity") for end in ("", "_ci_lo", "_ci_hi")))
EXPORT_COLUMNS = [*IDENTITY, "status", "n_images", *MEASURES]
COMPONENTS = ("model", "defense", "attack", "dataset")
PROVENANCE = ("bench", "torch", "pyiqa", "torchattacks", "python", "git_commit", "seed", "matrix",
              "matrix_sha256", "suite", "claim", "date", "hardware")
# cells that differ only in their attack (cross-cell flags compare them)
COMPARABLE = ("model", "defense", "dataset", "eps", "budget_unit", "setting")

# name -> kind: "text", "number", "bool" or "raw" (as recorded), in export order
COLUMNS: dict[str, str] = {
    **{c: "number" if c == "eps" else "text" for c in IDENTITY}, "status": "text", "n_images": "number",
    **dict.fromkeys(MEASURES, "number"), "message": "text", **dict.fromkeys(OTHER_MEASURES, "number"),
    "key": "text", "flags": "text", "attack_view": "text", "defense_kind": "text", "model_lower_better": "bool",
    "mos_name": "text", "attack_needs_gradients": "bool", **{f"{k}_origin": "text" for k in COMPONENTS},
    **{f"weights_{k}": "text" for k in ("source", "path", "sha256")},
    **{f"{s}_{n}": "number" for s in ("test", "train") for n in ("skipped", "converted")},
    "budget_unit": "text", "setting": "text", **{f"prov_{k}": "raw" for k in PROVENANCE},
}


def columns(*names: str) -> list[str]:
    """The names, each checked to be a column: a consumer naming an unknown one fails on import."""
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise KeyError(f"not columns of the records table: {', '.join(unknown)}")
    return list(names)


def of_kind(kind: str) -> list[str]:
    return [c for c, k in COLUMNS.items() if k == kind]
