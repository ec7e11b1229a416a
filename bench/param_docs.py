"""Parameters described for people: `bench list --params` lines and the "must be ..." part
of `bench.params`' messages, read off a component's declaration.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types as at

from bench.param_declarations import Odd, declared, defaults_of


@dataclass(frozen=True)
class ParamDoc:
    """One parameter as `bench list --params` shows it."""

    name: str
    type: str  # int, float, bool, str, int or None, ...
    default: Any
    allowed: str  # [1, 95], one of 'l1', 'mse', > 0, any
    help: str  # "" where the component declared none (a plain defaults dict)
    rule: str  # what a message says it must be: "int in [1, 95]"

    def line(self) -> str:
        help_ = self.help or "(no help declared)"
        return f"{self.name}: {self.type}, default {self.default!r}, allowed {self.allowed}; {help_}"


def docs(cls: type) -> list[ParamDoc]:
    """Every parameter of a component class, in declaration order."""
    model = declared(cls)
    if model is None:
        out = []
        for k, d in defaults_of(cls).items():
            t = "any" if d is None else ("float" if isinstance(d, float) else type(d).__name__)
            out.append(ParamDoc(k, t, d, "any" if d is None else f"any {t}", "",
                                "anything" if d is None else f"{t} like its default {d!r}"))
        return out
    return [_doc(k, f) for k, f in model.model_fields.items()]


def _doc(name: str, f: Any) -> ParamDoc:
    ann, nullable = f.annotation, False
    if get_origin(ann) in (Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        nullable = len(args) < len(get_args(ann))
        ann = args[0] if len(args) == 1 else ann
    if get_origin(ann) is Literal:
        choices = get_args(ann)
        t = type(choices[0]).__name__ if len({type(c) for c in choices}) == 1 else "any"
        allowed = "one of " + ", ".join(repr(c) for c in choices)
        rule = allowed
    else:
        t, bounds = _type_name(ann), _bounds(f.metadata)
        odd = any(m == Odd for m in f.metadata)
        where = f" in {bounds}" if bounds.startswith(("[", "(")) else f" {bounds}" if bounds else ""
        rule = f"{'an odd ' if odd else ''}{t}{where}"
        allowed = ", ".join(x for x in ("odd" if odd else "", bounds) if x) or ("True or False" if ann is bool else "any")
    if nullable:
        t, rule = f"{t} or None", f"{rule} or None"
        allowed = allowed if allowed == "any" else f"{allowed} or None"
    return ParamDoc(name, t, f.get_default(call_default_factory=True), allowed, f.description or "", rule)


def _type_name(ann: Any) -> str:
    if ann is Any:
        return "any"
    if isinstance(ann, type):
        return ann.__name__
    return str(ann).replace("typing.", "")


def _bounds(metadata: list[Any]) -> str:
    lo = hi = None
    lo_open = hi_open = False
    for m in metadata:
        if isinstance(m, at.Ge):
            lo, lo_open = m.ge, False
        elif isinstance(m, at.Gt):
            lo, lo_open = m.gt, True
        elif isinstance(m, at.Le):
            hi, hi_open = m.le, False
        elif isinstance(m, at.Lt):
            hi, hi_open = m.lt, True
        elif isinstance(m, at.Interval):
            if m.ge is not None:
                lo, lo_open = m.ge, False
            if m.gt is not None:
                lo, lo_open = m.gt, True
            if m.le is not None:
                hi, hi_open = m.le, False
            if m.lt is not None:
                hi, hi_open = m.lt, True
    if lo is not None and hi is not None:
        return f"{'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_num(lo)}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {_num(hi)}"
    return ""


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)
