"""Build a pyiqa network from its configuration with every file it reads under our control.

pyiqa's constructors download as they build: the published IQA checkpoint (pyiqa's
`load_file_from_url`, into `$TORCH_HOME/hub/pyiqa`), CLIP files (into `hub/clip`),
ImageNet backbones (timm, torchvision), and read them with `torch.load(weights_only=False)`.
While one is built here:

- every `torch.load` is `weights_only=True`: a file carrying pickled objects is refused;
- every published file comes through `fetch` (pyiqa's cache first; online, downloaded with
  torch.hub's progress bar to a temporary file then renamed; offline, one line naming the
  file, its address and where to put it), and its path and sha256 are recorded;
- ImageNet backbone weights are never fetched: the IQA checkpoint overwrites them. That is
  checked, not assumed: `Built.uncovered` lists the state entries no load wrote;
- with `random_weights=True` (tests, `bench weights`) no file is read at all: loads are
  recorded and skipped, and the network keeps its random initialisation.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from bench.api import CheckpointError, WeightsMissingError, download, file_sha256, quoted, refusal

from .clip_configs import random_clip

_random = contextvars.ContextVar("pyiqa_zoo_random", default=False)


@contextlib.contextmanager
def random_weights() -> Iterator[None]:
    """Build zoo models with random weights and read no file (tests, listing the files a
    model needs). A model built so has no weights source: the runner never scores with it."""
    token = _random.set(True)
    try:
        yield
    finally:
        _random.reset(token)


def random_weights_on() -> bool:
    return _random.get()


@dataclass
class Built:
    net: nn.Module
    files: list[dict[str, Any]] = field(default_factory=list)  # {"url", "path", "sha256", "bytes"} per file read
    urls: list[str] = field(default_factory=list)  # every file the published model needs, in build order
    uncovered: list[str] = field(default_factory=list)  # state entries no checkpoint wrote (published build)


def cache_path(url: str, folder: str = "pyiqa") -> Path:
    """Where pyiqa (folder 'pyiqa') or its CLIP loader ('clip') keeps the file of `url`."""
    return Path(torch.hub.get_dir()) / folder / os.path.basename(urlparse(url).path)


def fetch(url: str, owner: str, folder: str = "pyiqa", progress: bool = True) -> Path:
    """The published file at `url`, from the cache or downloaded into it (bench.api.download)."""
    target = cache_path(url, folder)
    got = download(url, target, progress)
    if isinstance(got, Path):
        return got
    raise WeightsMissingError(f"model {quoted(owner)} needs its published file {quoted(target.name)}: it is not in "
                              f"{target.parent} and {got}; download {url} into that folder "
                              f"(or set TORCH_HOME to a folder whose hub/{folder}/ holds it)")


def _pyiqa_modules() -> list[Any]:
    """pyiqa's modules and OpenAI's `clip` package (LAION-Aes loads CLIP through it)."""
    return [m for n, m in list(sys.modules.items()) if n.split(".")[0] in ("pyiqa", "clip")]


RANDOM = "random-weights://"  # the "path" a random-weights build gets for a file: never opened


class _Skip(dict):
    """What reading a file gives in a random-weights build: an empty state whose every
    entry is empty too, so that code picking a key out of a checkpoint keeps going."""

    def __getitem__(self, key: Any) -> _Skip:
        return _Skip()

    def get(self, key: Any, default: Any = None) -> _Skip:
        return _Skip()

    def __delitem__(self, key: Any) -> None:
        pass


# The zoo's only TorchScript files are ARNIQA's regressors: the paper's linear map from the
# two scales' ResNet-50 features (2 x 2048) to the score. A random-weights build gets one.
ARNIQA_REGRESSOR = (4096, 1)


@contextlib.contextmanager
def _rebound(pairs: list[tuple[Any, Any]]) -> Iterator[None]:
    """Replace each original function by its stand-in wherever pyiqa bound it (module
    attributes, `from x import f` copies included), and put them back afterwards."""
    undo = []
    for module in _pyiqa_modules():
        for name, value in list(vars(module).items()):
            for orig, new in pairs:
                if value is orig:
                    undo.append((module, name, orig))
                    setattr(module, name, new)
    try:
        yield
    finally:
        for module, name, orig in undo:
            setattr(module, name, orig)


@contextlib.contextmanager
def _patched(obj: Any, name: str, new: Any) -> Iterator[None]:
    orig = getattr(obj, name)
    setattr(obj, name, new)
    try:
        yield
    finally:
        setattr(obj, name, orig)


def _without_backbone_weights(builder: Callable[..., Any]) -> Callable[..., Any]:
    """A torchvision or timm builder that leaves the network random: the published IQA
    checkpoint replaces those weights (checked afterwards). `weights`/`pretrained` are
    switched off however they are passed, by keyword or by position."""
    try:
        signature = inspect.signature(builder)
    except (TypeError, ValueError):
        signature = None

    def build(*args: Any, **kwargs: Any) -> Any:
        if signature is not None:
            try:
                bound = signature.bind_partial(*args, **kwargs)
            except TypeError:
                return builder(*args, **kwargs)
            extra = next((bound.arguments.get(p.name, {}) for p in signature.parameters.values()
                          if p.kind is p.VAR_KEYWORD), {})
            for key, off in (("weights", None), ("pretrained", False)):
                for where in (bound.arguments, extra):
                    if key in where:
                        where[key] = off
            return builder(*bound.args, **bound.kwargs)
        for key, off in (("weights", None), ("pretrained", False)):
            if key in kwargs:
                kwargs[key] = off
        return builder(*args, **kwargs)

    return build


def build_network(arch: str, opts: dict[str, Any], owner: str, *, random_weights: bool = False,
          progress: bool = True) -> Built:
    import pyiqa.archs
    import timm
    import torchvision
    from pyiqa.archs import arch_util, clip_model
    from pyiqa.utils import download_util
    from pyiqa.utils.registry import ARCH_REGISTRY

    if arch not in ARCH_REGISTRY:
        pyiqa.archs._lazy_import_arch(arch)  # pyiqa 0.1.16 imports a network's module on first use
    out = Built(net=nn.Module())
    safe_load = torch.load
    written: list[tuple[nn.Module, list[str]]] = []

    def fetch_url(url: str, *args: Any, folder: str = "pyiqa", **kwargs: Any) -> str:
        out.urls.append(url)
        if random_weights:
            return RANDOM + url
        path = fetch(url, owner, folder, progress)
        out.files.append({"url": url, "path": str(path), "sha256": file_sha256(path), "bytes": path.stat().st_size})
        return str(path)

    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        if random_weights and str(f).startswith(RANDOM):
            return _Skip()
        kwargs["weights_only"] = True
        try:
            return safe_load(f, *args, **kwargs)
        except Exception as e:
            import pickle

            if isinstance(e, pickle.UnpicklingError):
                raise CheckpointError(refusal(getattr(f, "name", f), e)) from None
            raise

    def jit_load(f: Any, *args: Any, **kwargs: Any) -> Any:
        """TorchScript (ARNIQA's regressors): its own restricted loader, no Python pickle
        callables; in a random-weights build, a random module of the same shape."""
        if random_weights and str(f).startswith(RANDOM):
            return nn.Linear(*ARNIQA_REGRESSOR)
        return original_jit_load(f, *args, **kwargs)

    def load_network(net: nn.Module, path: str, strict: bool = True, weight_keys: str | None = None) -> None:
        if random_weights:
            out.urls.append(path)
            return
        original_load_network(net, path, strict, weight_keys)

    def load_state(module: nn.Module, state: Any, strict: bool = True, assign: bool = False) -> Any:
        if random_weights:
            return nn.modules.module._IncompatibleKeys([], [])
        result = original_load_state(module, state, strict=strict, assign=assign)
        missing = set(getattr(result, "missing_keys", []))
        written.append((module, [k for k in module.state_dict() if k not in missing]))
        return result

    def clip_download(url: str, root: str) -> str:
        return fetch_url(url, folder="clip")

    def clip_loader(original: Callable[..., Any], cls: type | None, pair: bool) -> Callable[..., Any]:
        """A CLIP `load` (pyiqa's, OpenAI's or A-FINE's: `pair` when it also returns the
        preprocessing): the published file in a normal build, a random network of the
        released architecture in a random-weights one."""

        def load_clip(name: str, *args: Any, **kwargs: Any) -> Any:
            if not random_weights:
                return original(name, *args, **kwargs)
            out.urls.append(clip_model._MODELS.get(name, name))
            net = random_clip(name, cls)
            return (net, None) if pair else net

        return load_clip

    original_load_network = arch_util.load_pretrained_network
    original_jit_load = torch.jit.load
    original_load_state = nn.Module.load_state_dict
    import clip as openai_clip  # OpenAI's package (a pyiqa dependency); needs setuptools' pkg_resources
    from timm.models import _builder as timm_builder

    vision = {name: f for name, f in vars(torchvision.models).items() if callable(f) and name.islower()}
    afine = sys.modules.get("pyiqa.archs.afineclip_model")  # A-FINE's own CLIP copy, with its own download
    own_clip = [(afine._download, clip_download),
                (afine.load, clip_loader(afine.load, afine.AFINECLIP, pair=True))] if afine else []
    with contextlib.ExitStack() as stack:
        # pyiqa prints what it loads: to stderr, so that `bench score`'s stdout stays one line a file
        stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        stack.enter_context(_rebound([*own_clip,(download_util.load_file_from_url, fetch_url),
                                      (arch_util.load_pretrained_network, load_network),
                                      (clip_model.load, clip_loader(clip_model.load, None, pair=False)),
                                      (clip_model._download, clip_download),
                                      (openai_clip.load, clip_loader(openai_clip.load, openai_clip.model.CLIP, pair=True)),
                                      (timm_builder.build_model_with_cfg,
                                       _without_backbone_weights(timm_builder.build_model_with_cfg)),
                                      (openai_clip.clip._download, clip_download)]))
        stack.enter_context(_patched(torch, "load", load))
        stack.enter_context(_patched(torch.jit, "load", jit_load))
        if random_weights:  # nothing derived from random weights lands in pyiqa's cache (LIQE caches text features)
            stack.enter_context(_patched(torch, "save", lambda *a, **k: None))
        stack.enter_context(_patched(torch.hub, "load_state_dict_from_url",
                                     lambda url, *a, **k: load(fetch_url(url), map_location="cpu")))
        stack.enter_context(_patched(nn.Module, "load_state_dict", load_state))
        stack.enter_context(_patched(timm, "create_model", _without_backbone_weights(timm.create_model)))
        for name, f in vision.items():
            stack.enter_context(_patched(torchvision.models, name, _without_backbone_weights(f)))
        # no autograd while building: what a constructor computes (LIQE's text features for
        # 495 prompts) is a constant, and with autograd on it held 20 GB of graph
        with torch.device("cpu"), torch.no_grad():
            out.net = _construct(ARCH_REGISTRY.get(arch), opts, random_weights)
    if not random_weights:
        out.uncovered = _uncovered(out.net, written)
    return out


def _construct(cls: type, opts: dict[str, Any], random_weights: bool) -> nn.Module:
    """The network. A random-weights build where the constructor puts what it read
    somewhere no empty stand-in fits (CLIP-IQA+ assigns a file's tensor to its prompt) is
    redone with pyiqa's own `pretrained=False` switch, after the first try has recorded the
    files the published model needs; the architecture is the same either way."""
    try:
        return cls(**opts)
    except (TypeError, KeyError, AttributeError, RuntimeError):
        if not random_weights or "pretrained" not in inspect.signature(cls).parameters:
            raise
        return cls(**{**opts, "pretrained": False})


def _uncovered(net: nn.Module, written: list[tuple[nn.Module, list[str]]]) -> list[str]:
    """The entries of the network's state that no checkpoint load wrote: random still."""
    prefix = {id(m): f"{name}." if name else "" for name, m in net.named_modules()}
    done = {prefix[id(m)] + k for m, keys in written if id(m) in prefix for k in keys}
    return [k for k in net.state_dict() if k not in done]
