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

A cell is one (model, defense, attack, eps, dataset). Its key is a hash of everything
that determines its result, so re-running skips finished cells and changing one
component's parameters (or version) recomputes exactly the cells that use it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import MatrixError, UnknownNameError
from bench.registry import Registry, check_params
from bench.store import digest

MATRIX_DIR = Path(__file__).parent / "matrices"
TOP_LEVEL = {
    "name": str, "description": str, "seed": int, "eps_unit": str, "suite": str,
    "eot_samples": int, "batch_size": int, "models": dict, "defenses": dict, "attacks": dict, "datasets": dict,
}
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

    def cells(self) -> list[Cell]:
        from bench.measures import MEASURES_VERSION

        out = []
        for ds in self.datasets:
            for m in self.models:
                for d in self.defenses:
                    for a, eps_list in self.attacks:
                        for eps in eps_list:
                            key = digest({
                                "model": m.ident(), "defense": d.ident(), "attack": a.ident(), "eps": eps,
                                "dataset": ds.ident(), "seed": self.seed, "eot": self.eot_samples,
                                "measures": MEASURES_VERSION,
                            })
                            out.append(Cell(m, d, a, eps, ds, self.seed, self.eot_samples, key))
        return out


def resolve_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise MatrixError(f"matrix file '{p}' does not exist")
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
    where = f"matrix '{path}'"
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise MatrixError(f"{where} is not valid TOML: {e}") from None
    for k, v in raw.items():
        if k not in TOP_LEVEL:
            raise MatrixError(f"{where}: unknown field '{k}' (allowed: {', '.join(TOP_LEVEL)})")
        if not isinstance(v, TOP_LEVEL[k]) or (TOP_LEVEL[k] is int and isinstance(v, bool)):
            raise MatrixError(f"{where}: field '{k}' must be {TOP_LEVEL[k].__name__}, got {v!r}")
    for k in REQUIRED:
        if not raw.get(k):
            raise MatrixError(f"{where}: field '{k}' is missing or empty: name at least one {k[:-1]}")
    unit = raw.get("eps_unit", "1/255")
    if unit not in EPS_UNITS:
        raise MatrixError(f"{where}: eps_unit '{unit}' not allowed (allowed: {', '.join(EPS_UNITS)})")
    for k in ("eot_samples", "batch_size"):
        if k in raw and raw[k] < 1:
            raise MatrixError(f"{where}: field '{k}' must be at least 1, got {raw[k]}")

    broken: dict[str, str] = {}

    def specs(section: str, registry: Registry, pop: tuple[str, ...] = ()) -> list[tuple[Spec, dict]]:
        out = []
        for name, params in raw[section].items():
            field_name = f"{section}.{name}"
            if not isinstance(params, dict):
                raise MatrixError(f"{where}: field '{field_name}' must be a table of parameters, e.g. {name} = {{}}")
            params = dict(params)
            extra = {k: params.pop(k) for k in pop if k in params}
            if name not in registry:
                if registry.broken:  # perhaps the plugin that failed defines it: fail its cells only
                    broken[name] = "; ".join(f"{k}: {v}" for k, v in registry.broken.items())
                    out.append((Spec(registry.kind, name, params, "unloaded"), extra))
                    continue
                raise UnknownNameError(registry.kind, name, registry.names(), f"in {where}, field '{section}'")
            cls = registry.get(name)
            try:
                merged = check_params(registry.kind, name, getattr(cls, "defaults", {}), params)
            except MatrixError as e:
                raise MatrixError(f"{where}, field '{field_name}': {e}") from None
            out.append((Spec(registry.kind, name, merged, cls.info.version), extra))
        return out

    attacks = []
    for spec, extra in specs("attacks", ATTACKS, pop=("eps",)):
        attacks.append((spec, _eps_list(extra.get("eps"), unit, f"{where}, field 'attacks.{spec.name}.eps'")))
    return Matrix(
        name=raw.get("name", path.stem),
        path=str(path),
        sha256=digest(raw_bytes.decode("utf-8")),
        seed=raw.get("seed", 0),
        suite=raw.get("suite", ""),
        eot_samples=raw.get("eot_samples", 8),
        batch_size=raw.get("batch_size", 16),
        models=[s for s, _ in specs("models", MODELS)],
        defenses=[s for s, _ in specs("defenses", DEFENSES)],
        attacks=attacks,
        datasets=[s for s, _ in specs("datasets", DATASETS)],
        broken=broken,
    )


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
                              "if you gave it in image units, set eps_unit = \"1\"")
        out.append(round(image_units * 255, 6))
    return out
