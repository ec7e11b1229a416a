"""Matrices: TOML files (data only, never code) that name what to cross.

    name = "quick"
    seed = 0                    # the split's draw, and the training seed when `seeds` is absent
    seeds = [0, 1, 2]           # optional: every cell once per training seed (records carry it);
                                # a block's own `seeds` applies to its cells
    split_seeds = "fixed"       # one split for every seed; "per-seed": each seed draws its own
    eps_unit = "1/255"          # or "1": image units on [0, 1]
    profile = false             # no layer profile (bench/profile.py; default true)
    [models]                    # each section: component name -> its parameters
    piqe = {}
    [defenses]
    none = {}
    jpeg = { quality = 50 }
    [attacks]
    pgd = { eps = [2, 4, 8], steps = 10 }   # attacks also list their budgets
    [datasets]
    embedded = { n_images = 32 }

    [blocks.defenses-on-cnniqa]   # optional: more cross products, added to the one above;
    models = { cnniqa = {} }      # a block names the sections it changes, the others are
    defenses = { jpeg = {}, "ortho+act+prune" = {} }   # the top level's

A cell is one (model, defense, attack, eps, dataset, seed). Its key is a hash of everything
that determines its result, so re-running skips finished cells and changing one
component's parameters (or version) recomputes exactly the cells that use it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import MatrixError, UnknownNameError, quoted
from bench.matrix_checks import (  # [claim], budgets, gradients
    CLAIM_FIELDS,  # noqa: F401 - part of this module's names before the checks moved
    EPS_UNITS,
    _budget_unit,
    _check_gradients,
    _claim,
    _eps_list,
)
from bench.registry import Registry, check_params
from bench.store import digest

MATRIX_DIR = Path(__file__).parent / "matrices"
TOP_LEVEL = {
    "name": str, "description": str, "seed": int, "seeds": list, "split_seeds": str, "eps_unit": str, "suite": str,
    "eot_samples": int, "batch_size": int, "models": dict, "defenses": dict, "attacks": dict, "datasets": dict,
    "blocks": dict, "claim": dict, "profile": bool,
}
BLOCK_FIELDS = ("description", "models", "defenses", "attacks", "datasets", "seeds")
REQUIRED = ("models", "defenses", "attacks", "datasets")


@dataclass(frozen=True)
class Spec:
    """A component as a matrix names it: registry name, parameters, version."""

    kind: str
    name: str
    params: dict[str, Any]
    version: str = "?"

    def ident(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params, "version": self.version}


@dataclass(frozen=True)
class Cell:
    model: Spec
    defense: Spec
    attack: Spec
    eps: float  # in /255 units (pixels for a flow attack: AttackInfo.budget_unit), as the site shows it
    dataset: Spec
    seed: int  # what trains and draws: model training, defense fits, random starts, random defenses
    eot_samples: int
    key: str = field(default="", compare=False)
    split_seed: int | None = None  # the train/test split's draw (None: the same as `seed`)

    @property
    def label(self) -> str:
        return f"{self.model.name}/{self.defense.name}/{self.attack.name}@{self.eps:g}/{self.dataset.name}"

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model.name, "defense": self.defense.name, "attack": self.attack.name,
                "eps": self.eps, "dataset": self.dataset.name}


@dataclass(frozen=True)
class Block:
    """One cross product of a matrix."""

    name: str
    models: list[Spec]
    defenses: list[Spec]
    attacks: list[tuple[Spec, list[float]]]
    datasets: list[Spec]
    seeds: list[int] = field(default_factory=list)  # a block's own seeds; [] for the matrix's


@dataclass
class Matrix:
    name: str
    path: str
    sha256: str
    seed: int
    suite: str
    eot_samples: int
    batch_size: int
    models: list[Spec]
    defenses: list[Spec]
    attacks: list[tuple[Spec, list[float]]]
    datasets: list[Spec]
    # names the registries do not know while some plugin failed to load: their cells
    # fail with the plugin's error instead of stopping the whole run
    broken: dict[str, str] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)  # added to the top level's cross product
    claim: dict[str, Any] = field(default_factory=dict)  # the checked [claim] table; {} without one
    profile: bool = True  # the layer profile (bench/profile.py); no part of any key: it changes no measure
    # every cell is run once per seed; the split is drawn with `seed` for all of them
    # ("fixed": training noise alone) or with each seed ("per-seed": repeated random splits)
    seeds: list[int] = field(default_factory=list)
    split_seeds: str = "fixed"

    def run_seeds(self, block: Block | None = None) -> list[tuple[int, int | None]]:
        """(seed, split seed) of each repetition (of `block`'s cells, where it has seeds of
        its own); the split seed None where it is the seed."""
        seeds = (block.seeds if block else []) or self.seeds or [self.seed]
        if self.split_seeds == "per-seed":
            return [(s, None) for s in seeds]
        return [(s, None if s == self.seed else self.seed) for s in seeds]

    def cells(self) -> list[Cell]:
        """The top level's cross product, then each block's; a cell named twice is one cell."""
        from bench.measures import MEASURES_VERSION

        out: dict[str, Cell] = {}
        top = Block("", self.models, self.defenses, self.attacks, self.datasets)
        for b in [top, *self.blocks]:
            for ds in b.datasets:
                for m in b.models:
                    for d in b.defenses:
                        for a, eps_list in b.attacks:
                            for eps in eps_list:
                                for seed, split_seed in self.run_seeds(b):
                                    key = digest({
                                        "model": m.ident(), "defense": d.ident(), "attack": a.ident(), "eps": eps,
                                        "dataset": ds.ident(), "seed": seed, "eot": self.eot_samples,
                                        "measures": MEASURES_VERSION, "batch_size": self.batch_size,
                                        **({"split_seed": split_seed} if split_seed is not None else {}),
                                    })
                                    out.setdefault(key, Cell(m, d, a, eps, ds, seed, self.eot_samples, key,
                                                             split_seed))
        return list(out.values())


def resolve_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise MatrixError(f"matrix file {quoted(p)} does not exist")
        return p
    builtin = MATRIX_DIR / f"{name_or_path}.toml"
    if builtin.is_file():
        return builtin
    raise UnknownNameError("matrix", name_or_path, list_matrices(), "or give the path of a .toml file")


def list_matrices() -> list[str]:
    return sorted(p.stem for p in MATRIX_DIR.glob("*.toml"))


def load_matrix(name_or_path: str) -> Matrix:
    from bench.api import ATTACKS, DATASETS, DEFENSES, MODELS

    path = resolve_path(name_or_path)
    raw_bytes = path.read_bytes()
    where = f"matrix {quoted(path)}"
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise MatrixError(f"{where} is not valid TOML: {e}") from None
    for k, v in raw.items():
        if k not in TOP_LEVEL:
            raise MatrixError(f"{where}: unknown field {quoted(k)} (allowed: {', '.join(TOP_LEVEL)})")
        if not isinstance(v, TOP_LEVEL[k]) or (TOP_LEVEL[k] is int and isinstance(v, bool)):
            raise MatrixError(f"{where}: field '{k}' must be {TOP_LEVEL[k].__name__}, got {v!r}")
    for k in REQUIRED:
        if not raw.get(k):
            raise MatrixError(f"{where}: field '{k}' is missing or empty: name at least one {k[:-1]}")
    unit = raw.get("eps_unit", "1/255")
    if unit not in EPS_UNITS:
        raise MatrixError(f"{where}: eps_unit {quoted(unit)} not allowed (allowed: {', '.join(EPS_UNITS)})")
    for k in ("eot_samples", "batch_size"):
        if k in raw and raw[k] < 1:
            raise MatrixError(f"{where}: field '{k}' must be at least 1, got {raw[k]}")

    broken: dict[str, str] = {}

    def specs(section: str, registry: Registry, pop: tuple[str, ...] = (), table: dict | None = None,
              prefix: str = "") -> list[tuple[Spec, dict]]:
        out = []
        for name, params in (raw[section] if table is None else table).items():
            field_name = f"{prefix}{section}.{name}"
            if not isinstance(params, dict):
                raise MatrixError(f"{where}: field {quoted(field_name)} must be a table of parameters, "
                                  f"e.g. {quoted(name)} = {{}}")
            params = dict(params)
            extra = {k: params.pop(k) for k in pop if k in params}
            if name not in registry:
                if registry.broken:  # perhaps the plugin that failed defines it: fail its cells only
                    broken[name] = "; ".join(f"{k}: {v}" for k, v in registry.broken.items())
                    out.append((Spec(registry.kind, name, params, "unloaded"), extra))
                    continue
                raise UnknownNameError(registry.kind, name, registry.names(),
                                       f"in {where}, field {quoted(prefix + section)}")
            cls = registry.get(name)
            try:
                merged = check_params(registry.kind, name, cls, params)  # its declaration: types, ranges, choices
            except MatrixError as e:
                raise MatrixError(f"{where}, field {quoted(field_name)}: {e}") from None
            if registry.kind in ("defense", "attack"):  # their constructors only check values: cheap
                try:
                    cls(**merged)
                except (ValueError, TypeError) as e:
                    raise MatrixError(f"{where}, field {quoted(field_name)}: {e}") from None
            out.append((Spec(registry.kind, name, merged, cls.info.version), extra))
        return out

    def block(name: str, table: dict[str, Any]) -> Block:
        prefix = f"blocks.{name}." if name else ""

        def section(key: str, registry: Registry, pop: tuple[str, ...] = ()) -> list[tuple[Spec, dict]]:
            if name and key not in table:  # a block inherits what it does not name
                return specs(key, registry, pop)
            if not isinstance(table.get(key), dict) or not table[key]:
                raise MatrixError(f"{where}: field {quoted(prefix + key)} must be a non-empty table, "
                                  f"e.g. {key} = {{ ... }}")
            return specs(key, registry, pop, table[key], prefix)

        attacks = [(spec, _eps_list(extra.get("eps"), _budget_unit(ATTACKS, spec.name, unit),
                                    f"{where}, field {quoted(f'{prefix}attacks.{spec.name}.eps')}"))
                   for spec, extra in section("attacks", ATTACKS, pop=("eps",))]
        models = [s for s, _ in section("models", MODELS)]
        _check_gradients(where, models, [a for a, _ in attacks], MODELS, ATTACKS)
        return Block(name, models, [s for s, _ in section("defenses", DEFENSES)], attacks,
                     [s for s, _ in section("datasets", DATASETS)], _seeds(f"{where}, block {quoted(name)}", table)
                     if name else [])

    top = block("", raw)
    blocks = []
    for name, table in raw.get("blocks", {}).items():
        if not name.strip():  # '' would also read as the top level's own fields
            raise MatrixError(f"{where}: field 'blocks' has a block named {quoted(name)}; give it a name, "
                              "e.g. [blocks.more]")
        if not isinstance(table, dict):
            raise MatrixError(f"{where}: field {quoted(f'blocks.{name}')} must be a table, e.g. [blocks.{quoted(name)}]")
        for k in table:
            if k not in BLOCK_FIELDS:
                raise MatrixError(f"{where}: unknown field {quoted(f'blocks.{name}.{k}')} "
                                  f"(allowed: {', '.join(BLOCK_FIELDS)})")
        if "description" in table and not isinstance(table["description"], str):
            raise MatrixError(f"{where}: field {quoted(f'blocks.{name}.description')} must be str")
        blocks.append(block(name, table))
    claim = _claim(where, raw.get("claim"), [d.name for b in (top, *blocks) for d in b.defenses])
    return Matrix(
        name=raw.get("name", path.stem),
        path=str(path),
        sha256=digest(raw_bytes.decode("utf-8")),
        seed=raw.get("seed", 0),
        suite=raw.get("suite", ""),
        eot_samples=raw.get("eot_samples", 8),
        batch_size=raw.get("batch_size", 16),
        models=top.models,
        defenses=top.defenses,
        attacks=top.attacks,
        datasets=top.datasets,
        broken=broken,
        blocks=blocks,
        claim=claim,
        profile=raw.get("profile", True),
        seeds=_seeds(where, raw),
        split_seeds=raw.get("split_seeds", "fixed"),
    )


def _seeds(where: str, raw: dict[str, Any]) -> list[int]:
    """The `seeds` list, checked: distinct integers; `split_seeds` "fixed" or "per-seed"."""
    seeds = raw.get("seeds", [])
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) or len(set(seeds)) != len(seeds):
        raise MatrixError(f"{where}: field 'seeds' must list distinct integers, e.g. seeds = [0, 1, 2]; got {seeds!r}")
    if raw.get("split_seeds", "fixed") not in ("fixed", "per-seed"):
        raise MatrixError(f"{where}: field 'split_seeds' must be \"fixed\" (one split, drawn with `seed`) or "
                          f"\"per-seed\" (each seed draws its own split); got {raw['split_seeds']!r}")
    return list(seeds)
