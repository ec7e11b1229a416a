"""Property test of the matrix parser: any document, however broken, is either a valid
matrix, exactly the one an independent reading of the document predicts, or rejected
with one BenchError that names a field at fault, exactly; never another exception, never
a traceback.

The prediction (`expect`) is this file's own reading of the matrix format (see
bench/matrix.py's docstring and docs/ARCHITECTURE.md), written without the loader's code:
each field's type, the required sections, budgets in /255 units within (0, 1] on images,
blocks that inherit what they do not name, and the parameters each component used here
declares, copied out by hand in `DECLARED` (defaults) and `ALLOWED` (types and ranges)."""

from __future__ import annotations

import math
import tomllib
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bench.api import ATTACKS, DATASETS, DEFENSES, MODELS
from bench.errors import BenchError, MatrixError, UnknownNameError
from bench.matrix import load_matrix
from bench.plugins import load_plugins

load_plugins()  # the built-in components, as `bench run` loads them before the matrix

VALID = {
    "name": "fuzz", "seed": 0, "batch_size": 8, "eot_samples": 2, "eps_unit": "1/255",
    "models": {"piqe": {}},
    "defenses": {"none": {}, "jpeg": {"quality": 50}},
    "attacks": {"fgsm": {"eps": [2, 4]}, "pgd": {"eps": [4], "steps": 3, "alpha": 1.0}},
    "datasets": {"embedded": {"size": 48, "n_images": 8}},
    "blocks": {"more": {"defenses": {"jpeg": {"quality": 30}}, "attacks": {"pgd": {"eps": [8]}}}},
}
# every place a user can get wrong, as a path into the document
PATHS = [
    ("name",), ("seed",), ("batch_size",), ("eot_samples",), ("eps_unit",), ("suite",), ("surprise",),
    ("models",), ("models", "piqe"), ("models", "no-such-model"), ("defenses",), ("defenses", "jpeg"),
    ("defenses", "jpeg", "quality"), ("defenses", "jpeg", "qualty"), ("attacks",), ("attacks", "fgsm"),
    ("attacks", "fgsm", "eps"), ("attacks", "pgd", "steps"), ("attacks", "pgd", "alpha"),
    ("datasets",), ("datasets", "embedded", "size"), ("datasets", "embedded", "n_images"),
    ("blocks",), ("blocks", "more"), ("blocks", "more", "defenses"), ("blocks", "more", "models"),
    ("blocks", "more", "attacks", "pgd", "eps"), ("blocks", "more", "oops"),
]

scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.booleans(),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)


def _mutated(path: tuple[str, ...], value: Any, delete: bool) -> dict[str, Any]:
    doc = tomllib.loads(tomli_w.dumps(VALID))  # a deep copy
    node = doc
    for key in path[:-1]:
        node = node[key]
    if delete:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return doc


def is_one_line(msg: str) -> bool:
    """One line of printable text: no line break of any kind (str.splitlines knows
    \\x1c, \\u2028 and others besides \\n), no other control character."""
    return len(msg.splitlines()) == 1 and all(c.isprintable() or c == " " for c in msg)


# ----------------------------------------------------------------------------- the prediction
# The parameters (and their defaults) that the components this file uses declare, by hand.
# All these models have usable gradients.
DECLARED = {
    "model": {"piqe": {}},
    "defense": {"none": {}, "jpeg": {"quality": 50}},
    "attack": {"fgsm": {}, "pgd": {"steps": 10, "alpha": 1.0, "random_start": True}},
    "dataset": {"embedded": {"size": 96, "n_images": None, "test_fraction": 0.3}},
}


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:  # a float parameter takes an int too; never a bool, NaN or infinity
    return (isinstance(v, float) and math.isfinite(v)) or _int(v)


# What each of those parameters allows (type, range), copied out of the declarations by hand:
# "3" is not 3, 3.0 is not an int, True is not a number (TOML has no None to give).
ALLOWED = {
    ("defense", "jpeg", "quality"): lambda v: _int(v) and 1 <= v <= 95,
    ("attack", "pgd", "steps"): lambda v: _int(v) and v >= 1,
    ("attack", "pgd", "alpha"): lambda v: _number(v) and v > 0,
    ("attack", "pgd", "random_start"): lambda v: isinstance(v, bool),
    ("dataset", "embedded", "size"): lambda v: _int(v) and v >= 48,
    ("dataset", "embedded", "n_images"): lambda v: _int(v) and v >= 1,
    ("dataset", "embedded", "test_fraction"): lambda v: _number(v) and 0 < v < 1,
}
REGISTRIES = {"model": MODELS, "defense": DEFENSES, "attack": ATTACKS, "dataset": DATASETS}
TOP_TYPES = {"name": str, "description": str, "seed": int, "eps_unit": str, "suite": str, "eot_samples": int,
             "batch_size": int, "models": dict, "defenses": dict, "attacks": dict, "datasets": dict, "blocks": dict,
             "claim": dict}
SECTIONS = {"models": "model", "defenses": "defense", "attacks": "attack", "datasets": "dataset"}
UNITS = {"1/255": 255.0, "1": 1.0}


class Unmodelled(Exception):
    """The document names a registered component that DECLARED does not describe."""


def q(name: object) -> str:
    """A name from the file as messages quote it (Python's repr: control characters escaped)."""
    return repr(str(name))


def expect(raw: dict[str, Any]) -> dict[str, Any] | list[tuple[type, tuple[str, ...]]]:
    """The matrix `raw` (a parsed document, named fuzz.toml) describes, as `summary` gives it,
    or every fault in it: (error class, the parts of the message that name the field)."""
    faults: list[tuple[type, tuple[str, ...]]] = []

    def fault(*parts: str, error: type = MatrixError) -> None:
        faults.append((error, parts))

    def typed(k: str) -> bool:
        v = raw[k]
        return isinstance(v, TOP_TYPES[k]) and not (TOP_TYPES[k] is int and isinstance(v, bool))

    if "claim" in raw:
        raise Unmodelled("[claim]")  # the site's roles: tested in test_matrix.py
    for k in raw:
        if k not in TOP_TYPES:
            fault(f"unknown field {q(k)}")
        elif not typed(k):
            fault(f"field '{k}' must be {TOP_TYPES[k].__name__}, got ")
    ok = {k for k in raw if k in TOP_TYPES and typed(k)}
    for k in SECTIONS:
        if k not in raw or (k in ok and not raw[k]):
            fault(f"field '{k}' is missing or empty")
    unit = raw["eps_unit"] if "eps_unit" in ok else "1/255"
    if unit not in UNITS:
        fault(f"eps_unit {q(unit)} not allowed")
    for k in ("eot_samples", "batch_size"):
        if k in ok and raw[k] < 1:
            fault(f"field '{k}' must be at least 1, got {raw[k]}")

    def specs(section: str, table: dict[str, Any], prefix: str) -> list[tuple[str, dict, Any]]:
        kind, out = SECTIONS[section], []
        for name, params in table.items():
            field = f"{prefix}{section}.{name}"
            if not isinstance(params, dict):
                fault(f"field {q(field)} must be a table of parameters")
                continue
            params = dict(params)
            eps = params.pop("eps", None) if kind == "attack" else None
            registry = REGISTRIES[kind]
            if name not in DECLARED[kind]:
                if name in registry.names():
                    raise Unmodelled(f"{kind} {name}")
                if registry.broken:  # a plugin failed: its cells fail, the matrix loads
                    out.append((name, params, eps))
                else:
                    fault(f"unknown {kind} {q(name)}", f"field {q(prefix + section)}", error=UnknownNameError)
                continue
            declared = DECLARED[kind][name]
            unknown = sorted(set(params) - set(declared))
            if unknown:
                fault(f"field {q(field)}: {kind} {q(name)}: unknown parameter(s) {', '.join(map(q, unknown))} ")
                continue
            wrong = [k for k, v in params.items() if not ALLOWED[(kind, name, k)](v)]
            for k in wrong:
                fault(f"field {q(field)}: {kind} {q(name)}: parameter {q(k)} must be ")
            if not wrong:
                out.append((name, {**declared, **params}, eps))
        return out

    def budgets(value: Any, field: str) -> list[float]:
        if unit not in UNITS:
            return []
        if value is None:
            fault(f"field {q(field)}: missing; list the budgets")
            return []
        out = []
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                fault(f"field {q(field)}: {v!r} is not a number")
            elif not 0 < v / UNITS[unit] <= 1:
                fault(f"field {q(field)}: eps {v} in units of {unit} is ")
            elif unit == "1/255" and v < 0.25:
                fault(f"field {q(field)}: eps {v} in units of 1/255 is only ")
            else:
                out.append(round(v * 255 / UNITS[unit], 6))  # in /255 units, as the site shows them
        return out

    def block(name: str, table: dict[str, Any]) -> tuple:
        prefix = f"blocks.{name}." if name else ""
        parts = []
        for section in ("models", "defenses", "attacks", "datasets"):
            if name and section not in table:  # inherited from the top level
                own, where = raw.get(section) if section in ok else None, ""
            else:
                own, where = table.get(section), prefix
                if not isinstance(own, dict) or not own:
                    if name:
                        fault(f"field {q(prefix + section)} must be a non-empty table")
                    own = None
            got = specs(section, own, where) if isinstance(own, dict) else []
            if section == "attacks":
                got = [(n, p, budgets(eps, f"{where}attacks.{n}.eps")) for n, p, eps in got]
            parts.append([g if section == "attacks" else g[:2] for g in got])
        return (name, *parts)

    blocks = [block("", raw)]
    for name, table in (raw["blocks"] if "blocks" in ok else {}).items():
        if not name.strip():
            fault(f"field 'blocks' has a block named {q(name)}; give it a name")
        elif not isinstance(table, dict):
            fault(f"field {q(f'blocks.{name}')} must be a table")
        else:
            for k in table:
                if k not in ("description", "models", "defenses", "attacks", "datasets"):
                    fault(f"unknown field {q(f'blocks.{name}.{k}')}")
            if "description" in table and not isinstance(table["description"], str):
                fault(f"field {q(f'blocks.{name}.description')} must be str")
            blocks.append(block(name, table))
    if faults:
        return faults

    cells: dict[str, str] = {}
    for _, models, defenses, attacks, datasets in blocks:
        for ds in datasets:
            for m in models:
                for d in defenses:
                    for a, a_params, eps_list in attacks:
                        for eps in eps_list:  # a cell named twice (same components, same budget) is one
                            ident = repr((m, d, (a, a_params), eps, ds))
                            cells.setdefault(ident, f"{m[0]}/{d[0]}/{a}@{eps:g}/{ds[0]}")
    return {"name": raw.get("name", "fuzz"), "seed": raw.get("seed", 0), "suite": raw.get("suite", ""),
            "eot_samples": raw.get("eot_samples", 8), "batch_size": raw.get("batch_size", 16),
            "blocks": [list(b) for b in blocks], "cells": sorted(cells.values())}


def summary(m) -> dict[str, Any]:
    """What a loaded matrix says, in `expect`'s terms."""
    def specs(ss):
        return [(s.name, s.params) for s in ss]

    blocks = [("", m.models, m.defenses, m.attacks, m.datasets)]
    blocks += [(b.name, b.models, b.defenses, b.attacks, b.datasets) for b in m.blocks]
    return {"name": m.name, "seed": m.seed, "suite": m.suite, "eot_samples": m.eot_samples,
            "batch_size": m.batch_size,
            "blocks": [[n, specs(ms), specs(ds), [(a.name, a.params, eps) for a, eps in at], specs(dd)]
                       for n, ms, ds, at, dd in blocks],
            "cells": sorted(c.label for c in m.cells())}


def canon(x: Any) -> Any:
    """Lists for tuples, and NaN as a string: equal summaries compare equal."""
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    if isinstance(x, dict):
        return {k: canon(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [canon(v) for v in x]
    return x


def _check(text: str, tmp_path) -> None:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        want: Any = [(MatrixError, ("is not valid TOML: ",))]
    else:
        try:
            want = expect(raw)
        except Unmodelled:
            assume(False)  # a random name that happens to be a component DECLARED does not know
    f = tmp_path / "fuzz.toml"
    f.write_text(text)
    try:
        m = load_matrix(str(f))
    except BenchError as e:
        msg = str(e)
        assert is_one_line(msg), msg
        assert isinstance(want, list), f"refused a valid matrix: {msg}"
        assert any(type(e) is cls and all(part in msg for part in parts) for cls, parts in want), \
            f"{type(e).__name__}: {msg}\nnames none of these faults: {want}"
    else:
        assert isinstance(want, dict), f"loaded a matrix with these faults: {want}"
        assert canon(summary(m)) == canon(want)


def test_the_valid_matrix_is_exactly_this(tmp_path):
    f = tmp_path / "fuzz.toml"
    f.write_text(tomli_w.dumps(VALID))
    got = summary(load_matrix(str(f)))
    assert got == expect(tomllib.loads(tomli_w.dumps(VALID)))
    assert got["cells"] == ["piqe/jpeg/fgsm@2/embedded", "piqe/jpeg/fgsm@4/embedded", "piqe/jpeg/pgd@4/embedded",
                            "piqe/jpeg/pgd@8/embedded", "piqe/none/fgsm@2/embedded", "piqe/none/fgsm@4/embedded",
                            "piqe/none/pgd@4/embedded"]
    pgd = {"steps": 3, "alpha": 1.0, "random_start": True}
    assert got["blocks"] == [
        ["", [("piqe", {})], [("none", {}), ("jpeg", {"quality": 50})],
         [("fgsm", {}, [2.0, 4.0]), ("pgd", pgd, [4.0])], [("embedded", {"size": 48, "n_images": 8, "test_fraction": 0.3})]],
        ["more", [("piqe", {})], [("jpeg", {"quality": 30})], [("pgd", dict(pgd, steps=10), [8.0])],
         [("embedded", {"size": 48, "n_images": 8, "test_fraction": 0.3})]],
    ]


def test_declared_parameters_are_the_components_own():
    """DECLARED is the prediction's copy: it must still be what the components declare."""
    for kind, names in DECLARED.items():
        for name, params in names.items():
            assert REGISTRIES[kind].get(name).defaults == params, (kind, name)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), value=values, delete=st.booleans())
def test_a_broken_field_is_rejected_naming_it(tmp_path, path, value, delete):
    _check(tomli_w.dumps(_mutated(path, value, delete)), tmp_path)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_any_text_is_a_matrix_or_a_clear_error(tmp_path, text):
    _check(text, tmp_path)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=len(tomli_w.dumps(VALID))))
def test_a_truncated_matrix_is_a_clear_error(tmp_path, cut):
    _check(tomli_w.dumps(VALID)[:cut], tmp_path)


# Cases hypothesis found (issue 18): names from the file carrying a line break or another
# control character. Each must come back as one line that shows the name escaped.
@pytest.mark.parametrize(("path", "value", "shown"), [
    (("blocks",), {"a\nb": 0}, r"'blocks.a\nb'"),
    (("models",), {"\x1f": {}}, r"unknown model '\x1f'"),
    (("models", "piqe"), {"x\ry": 0}, r"unknown parameter(s) 'x\ry'"),
    (("surprise",), 1, "unknown field 'surprise'"),
    (("blocks", "more", "de\u2028sc"), "x", r"'blocks.more.de\u2028sc'"),
    (("eps_unit",), "1\n/255", r"eps_unit '1\n/255' not allowed"),
])
def test_names_from_the_file_are_escaped_on_one_line(tmp_path, path, value, shown):
    f = tmp_path / "m.toml"
    doc = _mutated(path, value, False)
    f.write_text(tomli_w.dumps(doc))
    with pytest.raises(BenchError) as e:
        load_matrix(str(f))
    msg = str(e.value)
    assert is_one_line(msg) and shown in msg, msg


def test_a_block_without_a_name_is_refused_naming_blocks(tmp_path):
    # found by the fuzz test: [blocks.""] was taken for the top level and the error named 'attacks'
    f = tmp_path / "m.toml"
    f.write_text(tomli_w.dumps(_mutated(("blocks",), {"": {}}, False)))
    with pytest.raises(BenchError, match=r"field 'blocks' has a block named ''; give it a name"):
        load_matrix(str(f))
