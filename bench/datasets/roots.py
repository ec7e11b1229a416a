"""Where each real dataset lives on this machine: its root folder.

A root is machine configuration, not part of an experiment, so it never enters a cell
key: two machines holding KonIQ-10k in different folders compute the same cells. Looked
up, first found wins:

1. `--data-root NAME=PATH` on `run`, `train` or `score` (the CLI writes it into the
   environment variable below before any work starts, so worker processes inherit it);
2. the environment variable `BENCH_DATA_<NAME>` (upper case, anything not a letter or
   digit as `_`: `BENCH_DATA_KONIQ10K`);
3. `bench-data.toml` in the working directory;
4. `$XDG_CONFIG_HOME/bench/data.toml` (default `~/.config/bench/data.toml`).

A config file maps dataset names to folders, relative paths being relative to the file:

    koniq10k = "/data/koniq10k"
    tid2013 = "../datasets/tid2013"

A dataset given a `root` parameter in the matrix uses that (and then, since the user put
it there, it is part of that matrix's cell keys).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

from bench.api import BenchError

CONFIG_NAME = "bench-data.toml"


class DataRootError(BenchError):
    """A data root that is missing, malformed or does not hold the dataset."""

    exit_code = 2


def env_var(name: str) -> str:
    return "BENCH_DATA_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def config_files() -> list[Path]:
    """The config files looked at, in order of precedence (present or not)."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [Path.cwd() / CONFIG_NAME, Path(xdg) / "bench" / "data.toml"]


def _read_config(path: Path) -> dict[str, Path]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise DataRootError(f"data-root config '{path}' cannot be read ({type(e).__name__}: {e}); "
                            f"fix it or remove it (format: NAME = \"PATH\" per line)") from None
    out = {}
    for name, value in data.items():
        if not isinstance(value, str):
            raise DataRootError(f"data-root config '{path}': '{name}' must be a path string, got {value!r} "
                                f"(format: {name} = \"/path/to/{name}\")")
        out[name] = (path.parent / Path(value).expanduser()).resolve()
    return out


def find_root(name: str) -> tuple[Path | None, str]:
    """(root, where it was configured) for dataset `name`; (None, places looked) if nowhere."""
    var = env_var(name)
    if os.environ.get(var):
        return Path(os.environ[var]).expanduser(), f"${var}"
    for path in config_files():
        if path.is_file():
            roots = _read_config(path)
            if name in roots:
                return roots[name], str(path)
    looked = ", ".join([f"--data-root {name}=PATH", f"${var}"] + [str(p) for p in config_files()])
    return None, looked


def apply_cli_roots(pairs: list[str]) -> dict[str, Path]:
    """Parse `--data-root NAME=PATH` values and export each as its environment variable
    (so that worker processes see them); returns name -> path."""
    out: dict[str, Path] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise DataRootError(f"--data-root '{pair}': expected NAME=PATH, e.g. --data-root koniq10k=/data/koniq10k")
        root = Path(path).expanduser().resolve()
        if not root.is_dir():
            raise DataRootError(f"--data-root {name}: '{root}' is not a directory; give the folder the dataset "
                                f"was extracted into")
        out[name] = root
    for name, root in out.items():
        os.environ[env_var(name)] = str(root)
    return out
