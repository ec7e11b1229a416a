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


# The square sides tried, smallest first, when the smallest input a network scores is measured.
SIDES = (16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384)


def scores_at(model: Any, side: int) -> bool:
    """Whether `model` scores a batch of two `side` x `side` images to finite values (no
    exception: pyiqa's networks refuse small inputs by assertion, by a reshape that does
    not fit, or by a pooling window larger than the feature map)."""
    import torch

    torch.manual_seed(0)
    try:
        with torch.no_grad():
            return bool(torch.isfinite(model(torch.rand(2, 3, side, side))).all())
    except Exception:  # noqa: BLE001 - any failure means: not at this size
        return False


def smallest_side(model: Any) -> int | None:
    """The smallest of `SIDES` at which `model` scores (None: none of them). Measured, not
    read from papers: the documentation of most networks does not state it, and a matrix
    whose images are smaller must be refused with this number, not fail inside a cell."""
    return next((side for side in SIDES if scores_at(model, side)), None)


def record(model: Any) -> dict[str, Any]:
    return {"urls": list(dict.fromkeys(model.built.urls)), "parameters": sum(p.numel() for p in model.parameters()),
            "structure": structure(model.net, model.entry.opts), "backbone": backbone(model.net, model.entry.opts)}
