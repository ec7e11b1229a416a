"""The files each zoo model reads and its size, known without building it.

`bench list models`, `bench weights` and the up-front check of a run need them in
milliseconds, offline; building a model to find out costs seconds to minutes. So they are
recorded once, from random-weights builds (which request every file but read none), in
`bench/data/pyiqa_zoo.json`, and the zoo's tests rebuild every model and fail where the
record and the build disagree. Regenerate after a pyiqa upgrade:

    python -m bench.models.pyiqa_zoo
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from .build import cache_path

MANIFEST = Path(__file__).resolve().parents[2] / "data" / "pyiqa_zoo.json"
CLIP_HOST = "openaipublic.azureedge.net/clip/"


def folder_of(url: str) -> str:
    """pyiqa keeps its files in hub/pyiqa; its CLIP loader keeps OpenAI's in hub/clip."""
    return "clip" if CLIP_HOST in url else "pyiqa"


@cache
def manifest() -> dict[str, dict[str, Any]]:
    return json.loads(MANIFEST.read_text()) if MANIFEST.is_file() else {}


def files(name: str) -> list[dict[str, Any]]:
    """Each file model `name` reads: url, folder, where it belongs here, whether it is there."""
    out = []
    for url in manifest().get(name, {}).get("urls", []):
        path = cache_path(url, folder_of(url))
        out.append({"url": url, "path": str(path), "present": path.is_file(),
                    "bytes": path.stat().st_size if path.is_file() else None})
    return out


# Constructor options that only choose which published file is read.
WEIGHTS_ONLY = ("pretrained", "train_dataset", "regressor_dataset")


def structure(net: Any, opts: dict[str, Any]) -> str:
    """A digest of the network's state entries with their shapes and of the options that
    shape it: two models with the same one are the same network with other weights (the
    zoo's tests score and differentiate one of them)."""
    import hashlib

    text = ";".join(f"{k}:{tuple(v.shape)}" for k, v in net.state_dict().items())
    text += json.dumps({k: v for k, v in opts.items() if k not in WEIGHTS_ONLY}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


BACKBONE_OPTIONS = ("backbone", "base_model_name", "semantic_model_name", "clip_backbone")


def backbone(net: Any, opts: dict[str, Any]) -> str:
    """The network's backbone as its constructor names it (an option such as
    `base_model_name`, given or defaulted), else the class of its largest part."""
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(type(net)).parameters.items()}
    for key in BACKBONE_OPTIONS:
        value = opts.get(key, defaults.get(key))
        if isinstance(value, str) and value:
            return value
    parts = [(sum(p.numel() for p in m.parameters()), type(m).__name__) for m in net.children()]
    return max(parts)[1] if parts else type(net).__name__


def record(model: Any) -> dict[str, Any]:
    return {"urls": list(dict.fromkeys(model.built.urls)), "parameters": sum(p.numel() for p in model.parameters()),
            "structure": structure(model.net, model.entry.opts), "backbone": backbone(model.net, model.entry.opts)}
