"""One registry class for models, attacks, defenses and datasets.

Components register with a decorator on their class (`@register_defense`); the class
carries `info` (its metadata) and `defaults` (its parameters and their default values).
Plugins that failed to load are remembered by where they came from, so that a cell
naming a missing component can say which plugin is at fault.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from bench.errors import UnknownNameError

PLUGIN_FILE_PREFIX = "bench_plugin_"

T = TypeVar("T", bound=type)


_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")

class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}
        # name (or plugin source) -> why it failed to load
        self.broken: dict[str, str] = {}

    def register(self, cls: T | None = None, *, origin: str | None = None) -> Any:
        def deco(c: T) -> T:
            info = getattr(c, "info", None)
            name = getattr(info, "name", None)
            if not name:
                raise TypeError(f"{self.kind} class {c.__qualname__} must declare `info` with a name")
            if not isinstance(name, str) or _UNSAFE.search(name) or name.startswith(".") or ".." in name:
                raise ValueError(f"{self.kind} class {c.__qualname__} ({_origin_of(c)}): name {name!r} may not "
                                 "contain '/', '\\', '..', control characters or start with '.' (names become "
                                 "parts of file names); choose another")
            if not isinstance(getattr(c, "defaults", {}), dict):
                raise TypeError(f"{self.kind} '{name}': `defaults` must be a dict")
            if name in self._items and self._items[name] is not c:
                prev = self._origin.get(name, "?")
                raise ValueError(f"{self.kind} '{name}' registered twice ({prev} and {c.__module__})")
            self._items[name] = c
            self._origin[name] = origin or _origin_of(c)
            return c

        return deco(cls) if cls is not None else deco

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        if name in self.broken:
            raise UnknownNameError(self.kind, name, self._items, f"its plugin failed to load: {self.broken[name]}")
        extra = ""
        if self.broken:
            extra = "plugins that failed to load: " + "; ".join(f"{k}: {v}" for k, v in self.broken.items())
        raise UnknownNameError(self.kind, name, self._items, extra)

    def origin(self, name: str) -> str:
        return self._origin.get(name, "?")

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._items.items()))

    def create(self, name: str, **params: Any) -> Any:
        cls = self.get(name)
        return cls(**check_params(self.kind, name, getattr(cls, "defaults", {}), params))


def _origin_of(cls: type) -> str:
    """Module name, or the file for plugins loaded with --plugin FILE."""
    module = sys.modules.get(cls.__module__)
    if cls.__module__.startswith(PLUGIN_FILE_PREFIX) and module is not None:
        return getattr(module, "__file__", cls.__module__)
    return cls.__module__


def check_params(kind: str, name: str, defaults: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Merge `params` over `defaults`, refusing unknown keys and wrong types by name."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        from bench.errors import MatrixError

        allowed = ", ".join(sorted(defaults)) or "none"
        raise MatrixError(f"{kind} '{name}': unknown parameter(s) {', '.join(unknown)} (allowed: {allowed})")
    merged = dict(defaults)
    for k, v in params.items():
        d = defaults[k]
        if d is not None and not _same_type(d, v):
            from bench.errors import MatrixError

            raise MatrixError(
                f"{kind} '{name}': parameter '{k}' must be {type(d).__name__} like its default {d!r}, got {v!r}"
            )
        merged[k] = v
    return merged


def _same_type(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))

