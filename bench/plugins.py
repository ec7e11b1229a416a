"""Plugin discovery, in three places (as pytest does it):

1. built-ins: every module of `bench.models`, `bench.attacks`, `bench.datasets`, and of
   the top-level packages `defenses` and `baselines`;
2. installed packages, through the entry-point groups `bench.models`, `bench.attacks`,
   `bench.defenses`, `bench.datasets` (the entry-point name is the component's name);
3. single files given with `--plugin path/to/file.py`.

A plugin that fails to import is recorded in its registry's `broken` table with the
error, so that the cells that name it fail with a message naming the plugin, and the
rest of the matrix runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
import traceback
from importlib.metadata import entry_points
from pathlib import Path

from bench.api import ATTACKS, DATASETS, DEFENSES, MODELS
from bench.registry import PLUGIN_FILE_PREFIX, Registry

BUILTIN_PACKAGES = {
    "bench.models": MODELS,
    "bench.attacks": ATTACKS,
    "bench.datasets": DATASETS,
    "defenses": DEFENSES,
    "baselines": DEFENSES,
}
_loaded_files: set[Path] = set()
_builtins_done = False


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
        try:
            obj = ep.load()
        except Exception as e:
            registry.broken[ep.name] = f"entry point {ep.value} ({ep.dist.name if ep.dist else '?'}): {_why(e)}"
            continue
        if isinstance(obj, type) and obj.info.name not in registry:
            registry.register(obj, origin=f"entry point {ep.value}")


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
    try:
        spec.loader.exec_module(module)
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
