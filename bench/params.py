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

import copy
import types
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from bench.errors import MatrixError, quoted

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


def _odd(v: int) -> int:
    if int(v) % 2 != 1:
        raise ValueError("must be odd")
    return v


Odd = AfterValidator(_odd)  # Annotated[int, Odd]: odd numbers only (kernel sizes with a centre tap)


class Params(BaseModel):
    """Base of every declaration: no unknown key, no silent conversion (strict: "3" is not
    3, 3.0 is not an int, True is not a number; an int is a float), finite numbers only."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for k, f in cls.model_fields.items():  # matrices may leave any parameter out
            if f.is_required():
                raise TypeError(f"{cls.__qualname__}: parameter {k!r} has no default; give it one")
        try:  # a default the declaration itself refuses is a bug of the declaration
            cls.model_validate(cls.field_defaults())
        except ValidationError as e:
            raise TypeError(f"{cls.__qualname__}: its own defaults are refused: {e.errors()[0]['msg']} "
                            f"(at {'.'.join(map(str, e.errors()[0]['loc'])) or 'the model'})") from None

    @classmethod
    def field_defaults(cls) -> dict[str, Any]:
        """The declared defaults, as the plain dict components keep in `defaults`."""
        return {k: copy.deepcopy(f.get_default(call_default_factory=True)) for k, f in cls.model_fields.items()}

    @classmethod
    def with_defaults(cls, **changes: Any) -> type[Params]:
        """The same declaration with other defaults (a registered variant of a component)."""
        unknown = sorted(set(changes) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"{cls.__qualname__}.with_defaults: unknown parameter(s) {', '.join(unknown)}")
        fields: dict[str, Any] = {}
        for k, v in changes.items():
            f = copy.copy(cls.model_fields[k])
            f.default = v
            fields[k] = (cls.model_fields[k].annotation, f)
        return create_model(cls.__name__, __base__=cls, __module__=cls.__module__, **fields)


# ----------------------------------------------------------------------------- which contract
class Derived(dict):
    """A `defaults` dict derived from a declaration (not a plain declaration itself)."""


def declared(cls: type) -> type[Params] | None:
    """The declaration that governs `cls`: the nearest class in its MRO that declares
    either `Params` (a declaration) or a plain `defaults` dict (None: inferred)."""
    for c in cls.__mro__:
        own = c.__dict__
        p = own.get("Params")
        if isinstance(p, type) and issubclass(p, Params):
            return p
        if "defaults" in own and not isinstance(own["defaults"], Derived):
            return None
    return None


def derive_defaults(cls: type) -> None:
    """Give a class with a declaration its `defaults` (a `Derived` dict) to read."""
    model = declared(cls)
    if model is not None and not isinstance(cls.__dict__.get("defaults"), Derived):
        cls.defaults = Derived(model.field_defaults())


def defaults_of(cls: type) -> dict[str, Any]:
    p = declared(cls)
    return p.field_defaults() if p is not None else dict(getattr(cls, "defaults", {}) or {})


class Parametrized:
    """Mixin of the component base classes: a class that declares `Params` gets its
    `defaults` derived from it; one that overrides a declared parent's `defaults` with the
    same keys keeps the parent's types, ranges and help with its own defaults."""

    defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if "Params" in own:
            p = own["Params"]
            if not (isinstance(p, type) and issubclass(p, Params)):
                raise TypeError(f"{cls.__qualname__}.Params must subclass bench.api.Params")
            derived = Derived(p.field_defaults())
            if "defaults" in own and own["defaults"] != derived:
                raise TypeError(f"{cls.__qualname__} declares both Params and a different `defaults`; "
                                "declare the defaults in Params only")
            cls.defaults = derived
        elif "defaults" in own and isinstance(own["defaults"], dict):
            parent = declared(cls.__mro__[1])  # what would govern the class without its own dict
            if parent is not None and set(own["defaults"]) == set(parent.model_fields):
                try:
                    cls.Params = parent.with_defaults(**own["defaults"])
                except TypeError:  # a default the parent's declaration refuses: infer, as before
                    return
                cls.defaults = Derived(own["defaults"])


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


# ----------------------------------------------------------------------------- documentation
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
