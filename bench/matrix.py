"""Matrices: TOML files (data only, never code) that name what to cross.

    name = "quick"
    seed = 0
    eps_unit = "1/255"          # or "1": image units on [0, 1]
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

A cell is one (model, defense, attack, eps, dataset). Its key is a hash of everything
that determines its result, so re-running skips finished cells and changing one
component's parameters (or version) recomputes exactly the cells that use it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import MatrixError, UnknownNameError, quoted
from bench.registry import Registry, check_params
from bench.store import digest

MATRIX_DIR = Path(__file__).parent / "matrices"
TOP_LEVEL = {
    "name": str, "description": str, "seed": int, "eps_unit": str, "suite": str,
    "eot_samples": int, "batch_size": int, "models": dict, "defenses": dict, "attacks": dict, "datasets": dict,
    "blocks": dict, "claim": dict,
}
# [claim]: who plays which part on the site (bench/leaderboard/roles.py); recorded in every cell
CLAIM_FIELDS = {
    "method": "a defense's name or a list of them (each gets its own claim section)",
    "rivals": "a list of defense names (compared with the method in the sentence)",
    "controls": "a list of defense names (shown beside the method in the table)",
    "reference": "a defense's name (the undefended reference for clean loss)",
    "labels": "a table of defense name = \"what the sentence calls it\"",
    "suite": "an attack suite's name (the leaderboard ranks its cells where there are any)",
}
BLOCK_FIELDS = ("description", "models", "defenses", "attacks", "datasets")
REQUIRED = ("models", "defenses", "attacks", "datasets")
EPS_UNITS = {"1/255": 255.0, "1": 1.0}


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
    eps: float  # in /255 units, as the site shows it
    dataset: Spec
    seed: int
    eot_samples: int
    key: str = field(default="", compare=False)

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
                                key = digest({
                                    "model": m.ident(), "defense": d.ident(), "attack": a.ident(), "eps": eps,
                                    "dataset": ds.ident(), "seed": self.seed, "eot": self.eot_samples,
                                    "measures": MEASURES_VERSION,
                                })
                                out.setdefault(key, Cell(m, d, a, eps, ds, self.seed, self.eot_samples, key))
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

        attacks = [(spec, _eps_list(extra.get("eps"), unit,
                                    f"{where}, field {quoted(f'{prefix}attacks.{spec.name}.eps')}"))
                   for spec, extra in section("attacks", ATTACKS, pop=("eps",))]
        models = [s for s, _ in section("models", MODELS)]
        _check_gradients(where, models, [a for a, _ in attacks], MODELS, ATTACKS)
        return Block(name, models, [s for s, _ in section("defenses", DEFENSES)], attacks,
                     [s for s, _ in section("datasets", DATASETS)])

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
    )


def _claim(where: str, table: dict[str, Any] | None, defenses: list[str]) -> dict[str, Any]:
    """The [claim] table, checked and normalised (`method` always a list): every name a
    defense of this matrix, each defense in one role (the reference may also be a rival
    or a control), rivals and controls only beside a method."""
    if table is None:
        return {}
    known = list(dict.fromkeys(defenses))
    for k in table:
        if k not in CLAIM_FIELDS:
            raise MatrixError(f"{where}: unknown field {quoted(f'claim.{k}')} (allowed: {', '.join(CLAIM_FIELDS)})")

    def bad(key: str, v: Any) -> MatrixError:
        return MatrixError(f"{where}: field 'claim.{key}' must be {CLAIM_FIELDS[key]}, got {v!r}")

    def names(key: str, one: bool) -> list[str]:
        v = table.get(key, [])
        v = [v] if one and isinstance(v, str) else v
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v) or (one and key in table and not v):
            raise bad(key, table[key])
        for i, n in enumerate(v):
            if n not in known:
                raise MatrixError(f"{where}: field 'claim.{key}' names {quoted(n)}, not a defense of this matrix "
                                  f"(its defenses: {', '.join(known)})")
            if n in v[:i]:
                raise MatrixError(f"{where}: field 'claim.{key}' names {quoted(n)} twice")
        return list(v)

    out: dict[str, Any] = {"method": names("method", True)}
    roles = {"method": out["method"]}
    for key in ("rivals", "controls"):
        if key in table:
            if not out["method"]:
                raise MatrixError(f"{where}: field 'claim.{key}' needs a method to compare: name it in 'claim.method'")
            out[key] = roles[key] = names(key, False)
    for key in ("reference", "suite"):
        if key in table:
            if not isinstance(table[key], str) or not table[key].strip():
                raise bad(key, table[key])
            out[key] = table[key]
    if "reference" in out:
        names("reference", True)
        roles["reference"] = [out["reference"]]
    seen: dict[str, str] = {}
    for key, listed in roles.items():
        for n in listed:
            other = seen.setdefault(n, key)
            if other != key and ("method" in (key, other) or "reference" not in (key, other)):
                raise MatrixError(f"{where}: field 'claim.{key}' names {quoted(n)}, which 'claim.{other}' names too: "
                                  "give each defense one role (only the reference may also be a rival or a control)")
    if "labels" in table:
        labels = table["labels"]
        if not isinstance(labels, dict) or not all(isinstance(v, str) and v.strip() for v in labels.values()):
            raise bad("labels", labels)
        for n in labels:
            if n not in seen:
                raise MatrixError(f"{where}: field {quoted(f'claim.labels.{n}')} labels a defense with no role in "
                                  f"the claim (its roles: {', '.join(seen) or 'none named'})")
        out["labels"] = dict(labels)
    return out


def _eps_list(value: Any, unit: str, where: str) -> list[float]:
    """Budgets as given, in /255 units, checked so that a unit mistake cannot pass."""
    if value is None:
        raise MatrixError(f"{where}: missing; list the budgets, e.g. eps = [2, 4, 8] (in {unit} units)")
    values = value if isinstance(value, list) else [value]
    scale = EPS_UNITS[unit]
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise MatrixError(f"{where}: {v!r} is not a number")
        image_units = v / scale
        if not 0 < image_units <= 1:
            hint = f"; did you mean {v}/255 (eps_unit = \"1/255\")?" if unit == "1" and 1 < v <= 255 else ""
            raise MatrixError(f"{where}: eps {v} in units of {unit} is {image_units:g} on [0, 1] images, "
                              f"outside (0, 1]{hint}")
        if unit == "1/255" and v < 0.25:
            raise MatrixError(f"{where}: eps {v} in units of 1/255 is only {image_units:.2g} on [0, 1] images; "
                              f"if you gave it in image units (= {v * 255:.3g}/255), write eps = {round(v * 255)} "
                              "or set eps_unit = \"1\"")
        out.append(round(image_units * 255, 6))
    return out


def _check_gradients(where: str, models: list[Spec], attacks: list[Spec], model_reg: Registry,
                     attack_reg: Registry) -> None:
    """Before any work: a gradient attack on a model with no usable gradient (declared not
    differentiable and no `gradient_surrogate`) would report "robust" for a model it
    never attacked, so the matrix is refused, naming the attacks that do fit."""
    for m in models:
        if m.name not in model_reg:
            continue  # its plugin failed to load: its cells fail with that error
        info = model_reg.get(m.name).info
        if info.differentiable or info.gradient_surrogate:
            continue
        needing = [a.name for a in attacks if a.name in attack_reg and attack_reg.get(a.name).info.needs_gradients]
        if needing:
            fits = [n for n, cls in attack_reg if not cls.info.needs_gradients]
            raise MatrixError(
                f"{where}: model '{m.name}' has no usable gradients (differentiable = False, no gradient_surrogate) "
                f"but attack(s) {', '.join(needing)} need them; attack it with {', '.join(fits) or 'a black-box attack'} "
                "(needs_gradients = False) in a separate matrix, or give the model a gradient_surrogate")
