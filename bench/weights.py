"""Where a model's parameters come from, and how checkpoints are read and written.

Order for a learned model: the `weights` path given in the matrix or on the command
line; the published weights in pyiqa's cache; a checkpoint trained here earlier (cached
under BENCH_CACHE with its training record); else, where the caller allows it, training
on the dataset's train split. Checkpoints are loaded with `weights_only=True` (or from
safetensors): a file that carries pickled code is refused, never executed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.errors import CheckpointError, WeightsMissingError, quoted
from bench.store import atomic_write


def cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "iqa-bench")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest_files(files: list[dict[str, Any]]) -> str:
    """One sha256 for a set of weights files ({"sha256": ...} each): a lone file's own, so
    that a model with one published file is recorded exactly as before."""
    if len(files) == 1:
        return files[0]["sha256"]
    return hashlib.sha256("".join(f["sha256"] for f in files).encode()).hexdigest()


def read_checkpoint(path: str | Path) -> Any:
    """What a checkpoint file holds, read with `weights_only=True` (tensors, numbers,
    strings, containers), or from safetensors; a file with pickled objects is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(refusal(path, e)) from None
    except Exception as e:  # noqa: BLE001 - torch.load raises many kinds
        raise CheckpointError(f"checkpoint {quoted(path)} cannot be read ({type(e).__name__}: {_first_line(e)}); "
                              "give a state_dict saved with torch.save or a .safetensors file") from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    obj = read_checkpoint(path)
    for key in ("params", "state_dict", "model"):  # common wrappers (pyiqa uses "params")
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint '{path}' is not a state_dict (got {type(obj).__name__})")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def refusal(path: str | Path, e: BaseException) -> str:
    """Why a checkpoint that `weights_only=True` refused is not loaded, and how to convert
    it. torch's own message is not relayed: it is coloured with terminal escapes and
    advises `weights_only=False`, the code-running load this project refuses on purpose;
    only the class it stopped at is kept, as a hint to where the file came from."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(e))
    found = re.search(r"GLOBAL ([A-Za-z_][\w.]*)", text)
    if found:
        what = f"it carries a pickled {found.group(1)} object besides tensors"
    else:
        stop = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
        what = ("it is not a plain tensor checkpoint: it is not a torch file at all, or it carries pickled "
                f"objects besides tensors ({stop.group(1).strip()[:120] if stop else 'unreadable pickle data'})")
    return (f"checkpoint {quoted(path)} is refused: {what}; unpickling such a file could run code, so it is "
            "never loaded; convert it once where you trust it: load the model there and re-save its weights "
            "alone with torch.save(model.state_dict(), 'weights.pth') or "
            "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors'), then give that file")


def _first_line(e: BaseException) -> str:
    """An exception's first line of text, without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(e)).strip()
    return (text.splitlines() or [""])[0][:200]


def load_into(module: nn.Module, path: str | Path, owner: str) -> None:
    state = read_state_dict(path)
    target = module.state_dict()
    # Published files (pyiqa's) hold the bare network's keys; our wrappers keep it as `net`.
    if target and all(k.startswith("net.") for k in target) and not any(k.startswith("net.") for k in state):
        state = {f"net.{k}": v for k, v in state.items()}
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint '{path}' does not fit {owner}: missing keys {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
            f"{' ...' if len(unexpected) > 5 else ''}"
        )
    bad = [k for k in target if tuple(state[k].shape) != tuple(target[k].shape)]
    if bad:
        raise CheckpointError(f"checkpoint '{path}' does not fit {owner}: wrong shapes for {bad[:5]}")
    module.load_state_dict(state, strict=True)


def save_checkpoint(module: nn.Module, path: Path, record: dict[str, Any]) -> None:
    """State dict and its JSON record, each written atomically (record last)."""
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    atomic_write(path, buf.getvalue())
    atomic_write(path.with_suffix(".json"), json.dumps(record, indent=1, sort_keys=True).encode())


def cached_checkpoint(path: Path) -> dict[str, Any] | None:
    """The training record of a complete cached checkpoint, or None."""
    rec = path.with_suffix(".json")
    if path.is_file() and rec.is_file():
        return json.loads(rec.read_text())
    return None


def _trains_here(model: Any) -> bool:
    """Whether the model's class has its own `fit` (bench.api.IQAModel's does nothing):
    read off the class, so that this module needs no bench.api (which imports it)."""
    owner = next((c for c in type(model).__mro__ if "fit" in vars(c)), None)
    return owner is not None and not (owner.__name__ == "IQAModel" and owner.__module__ == "bench.components")


def resolve_weights(
    model: nn.Module,
    *,
    trained_path: Path,
    train: Callable[[], dict[str, Any]] | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Give a learned model its parameters; return where they came from."""
    info = model.info
    given = model.params.get("weights")
    if given:
        model.load_weights(given)
        return {"source": "local file", "path": str(given), "sha256": file_sha256(given)}
    built_with = model.weights_source()
    if built_with:
        return built_with
    published = model.pretrained_weights()
    if published:
        load_into(model, published, f"model '{info.name}'")
        return {"source": "published (pyiqa cache)", "path": published, "sha256": file_sha256(published)}
    record = cached_checkpoint(trained_path)
    if record is not None:
        load_into(model, trained_path, f"model '{info.name}'")
        return {"source": "trained here", **record, **_file(trained_path)}
    if train is None:
        fix = "pass --weights PATH (or a `weights` field in the matrix)"
        if _trains_here(model):
            fix = f"copy the published file into pyiqa's cache, {fix}, or train it with " \
                  f"`python -m bench train --model {info.name} --dataset embedded`"
        raise WeightsMissingError(
            f"model '{info.name}' has no weights here: looked for a --weights PATH, pyiqa's cache "
            f"({Path(torch.hub.get_dir()) / 'pyiqa'}) and a checkpoint trained here ({trained_path}); {fix}."
        )
    log(f"model '{info.name}': no published weights here; training it on the dataset's train split")
    record = train()
    save_checkpoint(model, trained_path, record)
    return {"source": "trained here", **record, **_file(trained_path)}


def _file(path: Path) -> dict[str, str]:
    """The checkpoint a model trained here was read from: like published or local weights,
    its path and sha256 go into every record (and onto the model's page)."""
    return {"path": str(path), "sha256": file_sha256(path)}
