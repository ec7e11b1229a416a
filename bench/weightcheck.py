"""The published files a matrix's models read: listed with sizes, fetched before any cell
(`bench weights`, and `bench run` up front), and, where they cannot be had, named in one
line with the address each is published at and the folder it belongs in.

A cluster's workers can be provisioned beforehand: `bench weights --matrix M` on a machine
with internet fills the caches, which are then copied (or shared) as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import quoted
from bench.matrix import Matrix, Spec
from bench.store import digest
from bench.download import download


@dataclass
class Needed:
    model: str
    url: str
    path: str
    bytes: int | None  # None: not here (its size is known once downloaded)


def matrix_models(matrix: Matrix) -> list[Spec]:
    """Each distinct model (name and parameters) of the top level and the blocks, in order."""
    seen: dict[str, Spec] = {}
    for spec in [*matrix.models, *(s for b in matrix.blocks for s in b.models)]:
        seen.setdefault(digest(spec.ident()), spec)
    return list(seen.values())


def needed(matrix: Matrix) -> list[Needed]:
    """Every published file the matrix's models read (a model given `weights` reads its own)."""
    from bench.api import MODELS

    out: dict[str, Needed] = {}
    for spec in matrix_models(matrix):
        if spec.name not in MODELS or spec.params.get("weights"):
            continue
        for f in MODELS.get(spec.name).published_files():
            out.setdefault(f["path"], Needed(spec.name, f["url"], f["path"], f["bytes"]))
    return list(out.values())


def given_missing(matrix: Matrix) -> list[tuple[str, str]]:
    """(model name, problem line) for each `weights` file a matrix names that is not there."""
    from bench.api import MODELS

    out = []
    for spec in matrix_models(matrix):
        path = spec.params.get("weights")
        if path and not Path(path).is_file() and spec.name in MODELS:
            out.append((spec.name, f"model {quoted(spec.name)}: its weights file {quoted(path)} does not exist "
                       f"(expected: {MODELS.get(spec.name).info.weights})"))
    return out


def fetch(files: list[Needed], progress: bool = True) -> dict[str, str]:
    """Download what is not here; return {path: why it could not be had} for the rest."""
    missing = {}
    for f in files:
        got = download(f.url, f.path, progress)
        if isinstance(got, Path):
            f.bytes = got.stat().st_size
        else:
            missing[f.path] = got
    return missing


def missing_message(files: list[Needed], missing: dict[str, str]) -> str | None:
    """One line naming every missing file, where it is published and where it belongs."""
    gone = [f for f in files if f.path in missing]
    if not gone:
        return None
    parts = [f"model {quoted(f.model)} needs {quoted(Path(f.path).name)} (published at {f.url}; put it in "
             f"{Path(f.path).parent})" for f in gone]
    why = sorted(set(missing.values()))
    return f"{len(gone)} weights file(s) missing ({'; '.join(why)}): " + "; ".join(parts)


def table(files: list[Needed]) -> list[dict[str, Any]]:
    return [{"model": f.model, "file": Path(f.path).name, "bytes": f.bytes, "present": Path(f.path).is_file(),
             "path": f.path, "url": f.url} for f in files]
