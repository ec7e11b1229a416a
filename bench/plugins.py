"""Plugin discovery, in three places (as pytest does it):

1. built-ins: every module of `bench.models`, `bench.attacks`, `bench.datasets`, and of
   the top-level packages `defenses` and `baselines`;
2. installed packages, through the entry-point groups `bench.models`, `bench.attacks`,
   `bench.defenses`, `bench.datasets` (the entry-point name is the component's name);
3. single files given with `--plugin path/to/file.py`.

A plugin that fails to import is recorded in its registry's `broken` table with the
error, so that the cells that name it fail with a message naming the plugin, and the
rest of the matrix runs. What an entry point or a file registers keeps its origin (the
entry point, its distribution and version; the file's path and sha256), which every
record carries: a number on the leaderboard names the package that produced it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pkgutil
import sys
import traceback
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from bench.registry import ATTACKS, DATASETS, DEFENSES, MODELS, PLUGIN_FILE_PREFIX, Registry

BUILTIN_PACKAGES = {
    "bench.models": MODELS,
    "bench.attacks": ATTACKS,
    "bench.datasets": DATASETS,
    "defenses": DEFENSES,
    "baselines": DEFENSES,
}
REGISTRIES = (MODELS, ATTACKS, DEFENSES, DATASETS)
_loaded_files: set[Path] = set()
_builtins_done = False


def _snapshot() -> list[set[str]]:
    return [set(reg.names()) for reg in REGISTRIES]


def _claim(before: list[set[str]], origin: dict[str, Any]) -> None:
    """Give what was registered since `before` its loader's origin (the decorator alone
    knows only the module)."""
    for reg, names in zip(REGISTRIES, before, strict=True):
        for name in set(reg.names()) - names:
            mod = reg.get(name).__module__
            if mod.startswith(PLUGIN_FILE_PREFIX):  # its import name varies by process: the file's own stem
                mod = Path(origin.get("path", mod)).stem
            reg.set_origin(name, {**origin, "module": mod})


def entry_point_origin(ep: EntryPoint) -> dict[str, Any]:
    """The entry point and the distribution (name and version) that declares it."""
    dist = ep.dist
    return {"kind": "entry point", "entry_point": ep.name, "group": ep.group, "value": ep.value,
            "distribution": (dist.name if dist else None) or "?", "version": (dist.version if dist else None) or "?"}


def _why(e: BaseException) -> str:
    last = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    where = f" at {Path(last[0].filename).name}:{last[0].lineno}" if last else ""
    return f"{type(e).__name__}: {e}{where}"


def _import_package_modules(package: str, registry: Registry) -> None:
    try:
        pkg = importlib.import_module(package)
    except Exception as e:  # a broken built-in package must not stop the others
        registry.broken[package] = _why(e)
        return
    for mod in pkgutil.iter_modules(pkg.__path__, prefix=f"{package}."):
        if mod.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        try:
            importlib.import_module(mod.name)
        except Exception as e:
            registry.broken[mod.name] = _why(e)


def _load_entry_points(registry: Registry) -> None:
    for ep in entry_points(group=registry.entry_point_group):
        if ep.name in registry:
            continue
        origin = entry_point_origin(ep)
        before = _snapshot()
        try:
            obj = ep.load()
        except Exception as e:
            registry.broken[ep.name] = f"entry point {ep.value} ({origin['distribution']}): {_why(e)}"
            continue
        if isinstance(obj, type) and getattr(getattr(obj, "info", None), "name", None) not in registry:
            registry.register(obj, origin={**origin, "module": obj.__module__})
        _claim(before, origin)


def load_plugin_file(path: str | Path) -> None:
    """Import a single plugin file; its decorators register what it defines."""
    p = Path(path).resolve()
    if p in _loaded_files:
        return
    if not p.is_file():
        from bench.errors import BenchError

        raise BenchError(f"plugin file '{path}' does not exist; give the path of a .py file with --plugin")
    name = f"{PLUGIN_FILE_PREFIX}{p.stem}_{abs(hash(p)) % 10**8}"
    spec = importlib.util.spec_from_file_location(name, p)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    before = _snapshot()
    try:
        source = p.read_bytes()  # hashed and run from the same bytes: the checksum is of what ran
        exec(compile(source, str(p), "exec"), module.__dict__)  # noqa: S102 - the user's own plugin file
        _claim(before, {"kind": "plugin file", "path": str(p), "sha256": hashlib.sha256(source).hexdigest()})
    except Exception as e:
        sys.modules.pop(name, None)
        msg = f"plugin file {p.name}: {_why(e)}"
        for reg in (MODELS, ATTACKS, DEFENSES, DATASETS):
            reg.broken[str(p)] = msg
    _loaded_files.add(p)


def loaded_files() -> list[str]:
    return sorted(str(p) for p in _loaded_files)


def load_plugins(files: list[str] | tuple[str, ...] = ()) -> None:
    global _builtins_done
    if not _builtins_done:
        _builtins_done = True
        for package, registry in BUILTIN_PACKAGES.items():
            _import_package_modules(package, registry)
        for registry in (MODELS, ATTACKS, DEFENSES, DATASETS):
            _load_entry_points(registry)
    for f in files:
        load_plugin_file(f)
