"""One registry class for models, attacks, defenses and datasets.

Components register with a decorator on their class (`@register_defense`); the class
carries `info` (its metadata) and `Params` (its parameters declared: type, range or
choices, default, help; see `bench.params`), or a plain `defaults` dict.
Plugins that failed to load are remembered by where they came from, so that a cell
naming a missing component can say which plugin is at fault. Every registered component
keeps its origin (built-in module, entry point with its distribution and version, or
--plugin file with its sha256): records and the site say which code produced a number.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from bench.errors import UnknownNameError
from bench.params import check, derive_defaults

PLUGIN_FILE_PREFIX = "bench_plugin_"
BUILTIN_TOP_PACKAGES = ("bench", "defenses", "baselines")

T = TypeVar("T", bound=type)


_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")

class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._origin: dict[str, dict[str, Any]] = {}
        # name (or plugin source) -> why it failed to load
        self.broken: dict[str, str] = {}

    def register(self, cls: T | None = None, *, origin: dict[str, Any] | None = None) -> Any:
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
            derive_defaults(c)  # a declaring class outside bench.api's bases gets its `defaults` here
            if name in self._items and self._items[name] is not c:
                prev = self.origin(name)
                raise ValueError(f"{self.kind} '{name}' registered twice ({prev} and {c.__module__})")
            self._items[name] = c
            if origin or name not in self._origin:  # the same class again keeps what its loader knew
                self._origin[name] = dict(origin) if origin else origin_record(c)
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
        """Where `name` came from, in a few words (module, entry point or plugin file)."""
        rec = self._origin.get(name)
        return describe_origin(rec) if rec else "?"

    def origin_record(self, name: str) -> dict[str, Any]:
        """Where `name` came from, as the fields a record keeps (see `origin_record`)."""
        return dict(self._origin.get(name) or {"kind": "unknown"})

    def set_origin(self, name: str, origin: dict[str, Any]) -> None:
        """Replace what the decorator could infer (plugin loading knows more: the entry
        point and its distribution, the plugin file's checksum)."""
        if name in self._items:
            self._origin[name] = dict(origin)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._items.items()))

    def create(self, name: str, **params: Any) -> Any:
        cls = self.get(name)
        return cls(**check_params(self.kind, name, cls, params))

    def check(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """`params` merged over `name`'s defaults, checked against its declaration."""
        return check_params(self.kind, name, self.get(name), params)


def _origin_of(cls: type) -> str:
    """Module name, or the file for plugins loaded with --plugin FILE."""
    return describe_origin(origin_record(cls))


def origin_record(cls: type) -> dict[str, Any]:
    """What the class itself tells of its origin: its module, and whether that is one of
    the built-in packages or a --plugin file (the loader adds entry points' distributions
    and files' checksums). Kinds: "built-in", "plugin file", "entry point", "import"."""
    mod = cls.__module__
    if mod.startswith(PLUGIN_FILE_PREFIX):
        path = str(getattr(sys.modules.get(mod), "__file__", "") or mod)
        return {"kind": "plugin file", "module": path.rsplit("/", 1)[-1].removesuffix(".py"), "path": path}
    kind = "built-in" if mod.split(".")[0] in BUILTIN_TOP_PACKAGES else "import"
    return {"kind": kind, "module": mod}


def describe_origin(rec: dict[str, Any]) -> str:
    """One line for messages (a failing component is named by it): the module for
    built-ins, the file and its sha256 for --plugin files, the entry point with its
    distribution and version for installed packages."""
    kind = rec.get("kind")
    if kind == "plugin file":
        sha = f" (sha256 {str(rec['sha256'])[:12]})" if rec.get("sha256") else ""
        return f"plugin file {rec.get('path') or rec.get('module') or '?'}{sha}"
    if kind == "entry point":
        return (f"entry point {rec.get('entry_point', '?')} = {rec.get('value', '?')} "
                f"({rec.get('distribution', '?')} {rec.get('version', '?')})")
    return str(rec.get("module") or "?")


def origin_label(rec: dict[str, Any]) -> str:
    """`describe_origin` with built-ins said to be built-in: what `bench list`, the CSV
    export and the site show beside a component."""
    if rec.get("kind") == "built-in":
        return f"built-in {rec.get('module') or '?'}"
    return describe_origin(rec)


def check_params(kind: str, name: str, cls_or_defaults: type | dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Merge `params` over the component's defaults, refusing unknown keys and values its
    declaration does not allow with one line naming the component, the parameter, what is
    allowed and what was given (`bench.params.check`). `cls_or_defaults`: the component's
    class (its `Params` declaration, or types inferred from a plain `defaults` dict), or a
    plain defaults dict."""
    return check(kind, name, cls_or_defaults, params)


# The four registries, one per kind. They live here, not in bench.api (which re-exports them,
# typed): bench.plugins fills them without importing bench.api, which loads plugins on first
# use, so the two modules do not import each other.
MODELS: Registry[Any] = Registry("model", "bench.models")
ATTACKS: Registry[Any] = Registry("attack", "bench.attacks")
DEFENSES: Registry[Any] = Registry("defense", "bench.defenses")
DATASETS: Registry[Any] = Registry("dataset", "bench.datasets")
