"""What the defenses that run a published network share (`real-esrgan`, `mprnet`; not a
plugin: discovery skips `_` modules): the weights file a user gives (a path, or a URL
downloaded once), its sha256, its record in the cells' provenance, and a strict load.

One place, so that every such defense refuses the same things the same way, each in ONE
line naming the defense: no weights (WeightsMissingError, before any work), a sha256 that is
not the one asked for, a file carrying pickled code (read weights_only: refused, never run),
a file that does not fit the network (the missing and unexpected keys, or the wrong shapes,
named) -- the last three CheckpointErrors.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, TypeVar

from torch import Tensor, nn

from bench.api import (
    CheckpointError,
    Field,
    Params,
    WeightsMissingError,
    cache_dir,
    download,
    file_sha256,
    model_validator,
    quoted,
    read_checkpoint,
)

M = TypeVar("M", bound=nn.Module)
WRAPPERS = ("params_ema", "params", "state_dict", "model")  # what releases wrap a state_dict in, preferred first


def is_url(weights: str) -> bool:
    """Whether `weights` names a file to download (http or https) rather than a local path."""
    return weights.startswith(("http://", "https://"))


def check_sha256_param(sha256: str) -> None:
    """A `sha256` parameter is 64 hex digits or '' (not checked): a typo must not pass as 'no check'."""
    if sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise ValueError(f"parameter 'sha256' must be 64 hex digits or '', got {quoted(sha256)}")


class WeightsParams(Params):
    """The parameters every such defense has (its own come after them): the file, required,
    and its expected sha256, 64 hex digits or '' (a typo must not pass as 'no check')."""

    weights: str = Field("", description="the network's published weights: a local file or an http(s) URL "
                         "(required; '': the defense refuses to run)")
    sha256: str = Field("", description="the weights file's expected sha256, checked at every load ('': not "
                        "checked, only recorded)")

    @model_validator(mode="after")
    def _sha256(self) -> WeightsParams:
        check_sha256_param(self.sha256)
        return self


def weights_file(weights: str, name: str, needed: str) -> Path:
    """The local weights file `weights` names (a URL is downloaded first, once, into
    BENCH_CACHE/downloads/ by bench's download: whole or not at all, BENCH_OFFLINE and
    BENCH_WEIGHTS_MIRROR obeyed), or WeightsMissingError: one line naming defense `name`
    and saying what is `needed` and how to give it."""
    weights = weights.strip()
    if not weights:
        raise WeightsMissingError(f"defense '{name}' has no weights (it is never run with random ones); {needed}")
    if is_url(weights):
        where = cache_dir() / "downloads" / hashlib.sha256(weights.encode()).hexdigest()[:16]
        got = download(weights, where / (weights.rsplit("/", 1)[-1].split("?")[0] or "weights.pth"))
        if not isinstance(got, Path):
            raise WeightsMissingError(f"defense '{name}': its weights could not be downloaded from {quoted(weights)} "
                                      f"({got}); download the file yourself and give its path; {needed}")
        return got
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsMissingError(f"defense '{name}': its weights file {quoted(weights)} does not exist; {needed}")
    return path


def checked_sha256(path: Path, want: str, name: str) -> str:
    """The file's sha256, refused (CheckpointError) where `want` is given and differs."""
    digest, want = file_sha256(path), want.lower()
    if want and digest != want:
        raise CheckpointError(f"defense '{name}': weights {quoted(path)} have sha256 {digest}, not the expected "
                              f"{want}; give the right file (or sha256)")
    return digest


def weights_record(weights: str, path: Path, digest: str) -> dict[str, Any]:
    """The file as a cell's provenance records it: where it came from, where it is, its
    sha256 read at this run's load (the cell's key holds the path, not the content)."""
    weights = weights.strip()
    url = {"url": weights} if is_url(weights) else {}
    return {"source": "downloaded" if url else "local file", "path": str(path), "sha256": digest, **url}


def state_of(obj: Any, path: str, owner: str, layout: str) -> dict[str, Tensor]:
    """The network's state_dict inside what a checkpoint holds: the first of WRAPPERS found
    ({'params_ema': sd}: Real-ESRGAN's averaged weights; {'state_dict': sd}: MPRNet's), or a
    plain state_dict; 'module.' prefixes (DataParallel) dropped. `layout` says, in the error,
    what the published files hold."""
    for key in WRAPPERS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{owner}: weights {quoted(path)} are not a state_dict of tensors (the published "
                              f"files hold {layout})")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def read_state(path: str, owner: str, layout: str) -> dict[str, Tensor]:
    """`state_of` the file, read weights_only: a file that carries pickled code is refused, never run."""
    return state_of(read_checkpoint(path), path, owner, layout)


def names(keys: list[str]) -> str:
    """At most five keys, and how many more: an error stays one readable line."""
    shown = ", ".join(keys[:5])
    return f"{shown} (and {len(keys) - 5} more)" if len(keys) > 5 else shown


def load_strict(net: M, state: dict[str, Tensor], path: str, owner: str, label: str) -> M:
    """`net` (built on the meta device, so that its parameters are not first initialized for
    nothing) holding `state`, loaded strictly: a key missing or left over, or a shape that
    differs, is a CheckpointError naming them and `label` (the network and its config). In
    eval mode, float32, its parameters frozen (attacks differentiate the input only)."""
    target = net.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    if missing or unexpected:
        raise CheckpointError(f"{owner}: weights {quoted(path)} do not fit {label}: missing keys "
                              f"{names(missing) or 'none'}; unexpected keys {names(unexpected) or 'none'}")
    bad = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in target.items()
           if state[k].shape != v.shape]
    if bad:
        raise CheckpointError(f"{owner}: weights {quoted(path)} do not fit {label}: wrong shapes for {names(bad)}")
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    return net.eval().requires_grad_(False)
