"""The checks `load_matrix` makes beyond field types: the [claim] table, the attacks'
budgets (eps), and gradient attacks only on models with gradients; kept out of `bench.matrix`,
which holds the format and the cells.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.errors import MatrixError, quoted
from bench.registry import Registry

if TYPE_CHECKING:  # bench.matrix imports this module
    from bench.matrix import Spec

# [claim]: who plays which part on the site (bench/leaderboard/roles.py); recorded in every cell
CLAIM_FIELDS = {
    "method": "a defense's name or a list of them (each gets its own claim section)",
    "rivals": "a list of defense names (compared with the method in the sentence)",
    "controls": "a list of defense names (shown beside the method in the table)",
    "reference": "a defense's name (the undefended reference for clean loss)",
    "labels": "a table of defense name = \"what the sentence calls it\"",
    "suite": "an attack suite's name (the leaderboard ranks its cells where there are any)",
}
EPS_UNITS = {"1/255": 255.0, "1": 1.0}


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


def _budget_unit(attacks: Registry, name: str, unit: str) -> str:
    """The unit an attack's eps is given in: the matrix's eps_unit for L-inf attacks, the
    attack's own (`AttackInfo.budget_unit`, "px") for a flow attack, whose budget is a displacement."""
    return "px" if name in attacks and attacks.get(name).info.norm == "flow" else unit


def _eps_list(value: Any, unit: str, where: str) -> list[float]:
    """Budgets as given, in /255 units (in pixels where unit is "px"), checked so that a unit
    mistake cannot pass."""
    if value is None:
        raise MatrixError(f"{where}: missing; list the budgets, e.g. eps = [2, 4, 8] (in {unit} units)")
    values = value if isinstance(value, list) else [value]
    if unit == "px":
        return [_px(v, where) for v in values]
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


def _px(v: Any, where: str) -> float:
    """A flow attack's budget: the largest displacement in pixels. A displacement of 1/255 px
    or less moves nothing visibly (an L-inf budget in image units, given by mistake), and one
    past 64 px is no longer a small perturbation of the 32 to 512 px images here."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise MatrixError(f"{where}: {v!r} is not a number")
    if not 1 / 255 < v <= 64:
        raise MatrixError(f"{where}: eps {v} is a flow attack's largest displacement in pixels (its budget_unit is "
                          "\"px\", whatever the matrix's eps_unit): give it in (1/255, 64], e.g. eps = [0.5, 1]")
    return round(float(v), 6)


def _check_gradients(where: str, models: list[Spec], attacks: list[Spec], model_reg: Registry,
                     attack_reg: Registry) -> None:
    """Before any work: a gradient attack on a model with no usable gradient (declared not
    differentiable and no `gradient_surrogate`) would report "robust" for a model it
    never attacked, so the matrix is refused, naming the attacks that do fit."""
    for m in models:
        if m.name not in model_reg:
            continue  # its plugin failed to load: its cells fail with that error
        info = model_reg.get(m.name).info
        if info.unavailable:
            raise MatrixError(f"{where}: model '{m.name}' cannot be run here: {info.unavailable}; remove it from "
                              "the matrix (`bench list models` shows which can)")
        if info.differentiable or info.gradient_surrogate:
            continue
        needing = [a.name for a in attacks if a.name in attack_reg and attack_reg.get(a.name).info.needs_gradients]
        if needing:
            fits = [n for n, cls in attack_reg if not cls.info.needs_gradients]
            raise MatrixError(
                f"{where}: model '{m.name}' has no usable gradients (differentiable = False, no gradient_surrogate) "
                f"but attack(s) {', '.join(needing)} need them; attack it with {', '.join(fits) or 'a black-box attack'} "
                "(needs_gradients = False) in a separate matrix, or give the model a gradient_surrogate")
