"""How a component declares its parameters (the `Params` base, `Odd`, the `Parametrized`
mixin) and which declaration governs a class; `bench.params` checks values against them.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, create_model


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
