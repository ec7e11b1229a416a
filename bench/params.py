"""The parameter contract: what a component may be given, checked wherever it is created.

A component declares its parameters as a nested pydantic model, each with its type, its
range or choices, its default and a one-line help:

    from typing import Literal
    from bench.api import Defense, Field, Params

    class Blur(Defense):
        class Params(Params):
            kernel_size: int = Field(5, ge=3, le=11, description="side of the blur kernel, px")
            mode: Literal["reflect", "zeros"] = Field("reflect", description="how borders are padded")

`Odd` (`kernel_size: Annotated[int, Odd] = ...`) refuses even numbers; a rule that ties
two parameters together is a pydantic `model_validator` raising ValueError with one line.
A variant that changes only defaults says so: `Params = Blur.Params.with_defaults(mode="zeros")`.

`check` merges what a matrix, the CLI or Python gives over the defaults and refuses a
bad value with ONE line naming the component, the parameter, what is allowed and what
was given (`ParamError`). The merged values are the ones given, not pydantic's coerced
copies: `component.params` stays a plain dict, and a cell's key hashes exactly what the
matrix says. `defaults` (a plain dict) is derived from the declaration.

A third-party component that declares only a plain `defaults` dict keeps working: each
parameter's type is inferred from its default (a float takes an int too, a default of
None takes anything), as before there were declarations.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, model_validator

from bench.errors import MatrixError, quoted
from bench.param_declarations import (  # declaring parameters, and which declaration governs a class
    Derived,
    Odd,
    Parametrized,
    Params,
    declared,
    defaults_of,
    derive_defaults,  # noqa: F401 - bench.registry imports it from here
)
from bench.param_docs import ParamDoc, _doc, docs  # parameters described: `bench list --params`, messages

__all__ = [
    "Derived",
    "Field",
    "Odd",
    "ParamDoc",
    "ParamError",
    "Parametrized",
    "Params",
    "check",
    "declared",
    "docs",
    "model_validator",
]


class ParamError(MatrixError, ValueError):
    """A parameter refused: one line naming the component, the parameter, what is allowed
    and what was given. A MatrixError (exit status 2) and a ValueError (what a plugin's
    own check raised before declarations)."""


# ----------------------------------------------------------------------------- checking
def check(kind: str, name: str, cls_or_defaults: type | dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Merge `params` over the defaults, refusing an unknown key or a bad value with one
    line (`ParamError`). `cls_or_defaults`: the component class, or a plain defaults dict."""
    if isinstance(cls_or_defaults, dict):
        model, defaults = None, dict(cls_or_defaults)
    else:
        model, defaults = declared(cls_or_defaults), defaults_of(cls_or_defaults)
    unknown = sorted(set(params) - set(defaults), key=str)
    if unknown:
        allowed = ", ".join(sorted(defaults)) or "none"
        raise ParamError(f"{kind} {quoted(name)}: unknown parameter(s) {', '.join(map(quoted, unknown))} "
                         f"(allowed: {allowed})")
    merged = {**defaults, **params}
    if model is None:
        for k, v in params.items():
            d = defaults[k]
            if d is not None and not _same_type(d, v):
                raise ParamError(f"{kind} {quoted(name)}: parameter {quoted(k)} must be {type(d).__name__} like its "
                                 f"default {d!r}, got {_shown(v)}")
        return merged
    try:
        model.model_validate(merged)
    except ValidationError as e:
        raise ParamError(_message(kind, name, model, e)) from None
    return merged


def _message(kind: str, name: str, model: type[Params], e: ValidationError) -> str:
    err = e.errors(include_url=False)[0]
    loc = err.get("loc") or ()
    field = loc[0] if loc and isinstance(loc[0], str) and loc[0] in model.model_fields else None
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    if field is None:  # a rule on several parameters (a model_validator): its own words
        why = err.get("ctx", {}).get("error")
        text = str(why) if why is not None else err.get("msg", "refused")
        return f"{kind} {quoted(name)}: {text}{more}"
    doc = _doc(field, model.model_fields[field])
    return f"{kind} {quoted(name)}: parameter {quoted(field)} must be {doc.rule}, got {_shown(err.get('input'))}{more}"


def _shown(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _same_type(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))
