"""What pyiqa 0.1.16 offers as no-reference models, read from its own configuration file
(`pyiqa/default_model_configs.py`) without importing pyiqa (3 s, 0.85 GB): names,
network type, constructor options, direction and score range, turned into numbers.

Which of them the benchmark attacks is decided here, each refusal with its reason, so that a
model is never silently missing: `bench list models` shows the refused ones too.
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

# Not attackable as an image-quality model, by pyiqa network type: why.
NOT_ATTACKED = {
    "QAlign": "LLM-based (mPLUG-Owl2, 7B): its score is read off next-token probabilities at batch size 1, "
              "16 GB of weights; not attacked here",
    "QReAlign": "LLM-based (Qwen2.5-VL): scores generated as text at batch size 1; not attacked here",
    "Compare2Score": "LLM-based (mPLUG-Owl2, 7B): scores by comparing against anchor images at batch size 1; "
                     "not attacked here",
    "FGResQ": "its vision tower is built by Hugging Face transformers from the hub "
              "(CLIPVisionModel.from_pretrained), outside pyiqa's files; not supported yet",
    "MACLIP": "pyiqa 0.1.16 builds its CLIP on device 'cuda' whatever the machine (CustomCLIP(device='cuda')); "
              "not supported yet",
    "AFINE": "pyiqa 0.1.16's A-FINE forward normalises its input in place and deep-copies it, so no gradient "
             "reaches the image; not attacked here",
    "CLIPScore": "text-image agreement: needs a caption for every image, not an image-quality score",
    "FID": "a distance between two image sets, not a per-image score",
    "InceptionScore": "a score of an image set, not a per-image score",
    "Entropy": "a hand-made statistic with no learned parameters (no published weights to attack)",
}
FACE = ("topiq's face-IQA variants align and crop each face with facexlib's detector first (pyiqa: no batches "
        "over 1, no gradient back-propagation); not attacked here")

# Networks that read what they are made of from their published file while being built, so
# that a random-weights build (the offline tests) cannot stand in: why. They run with their files.
BUILD_NEEDS_FILES = {  # by pyiqa name
    "qualiclip": "its prompts' text features are read from the published file while it is built",
}

# Names the benchmark's own models hold: they use pyiqa's network and published weights
# too, and can also be trained here (bench/models/cnniqa.py, wadiqam.py).
BUILT_IN = {"cnniqa", "wadiqam_nr"}

# Networks that score uniform 224-pixel crops in eval mode (a smaller image is first upsampled
# by pyiqa to 225 pixels on its short side), and the constructor option that sets how many.
CROPS_224 = {"MANIQA": "test_sample", "TReS": "test_sample", "HyperNet": "num_crop"}

# Classic metrics (no learned network): pyiqa's versions are not part of the zoo; the
# benchmark's own classic models (`piqe`, `niqe`, `brisque`) are the built-in ones.
CLASSIC = {"PIQE", "NIQE", "ILNIQE", "BRISQUE", "NRQM", "PI"}


@dataclass(frozen=True)
class ZooEntry:
    name: str  # pyiqa's metric name
    arch: str  # pyiqa's network type (ARCH_REGISTRY key)
    opts: dict[str, Any] = field(hash=False)  # constructor options, as pyiqa passes them
    lower_better: bool
    score_range: tuple[float, float]
    input_size: tuple[int, int] | None  # where the configuration fixes the test size
    refused: str | None  # why it is not attacked here; None: it is


def parse_range(text: str) -> tuple[float, float]:
    """pyiqa's rough range, '~0, ~1' or '0, ~' (open above), as numbers: an open end is
    infinite, '~' marks an approximate bound and is dropped."""
    lo, hi = (part.strip().lstrip("~").strip() for part in text.split(","))
    return (float(lo) if lo else -math.inf, float(hi) if hi else math.inf)


def refusal(arch: str, opts: dict[str, Any]) -> str | None:
    """Why a configuration is not attacked here, or None."""
    if "gfiqa" in str(opts.get("model_name", "")):
        return FACE
    return NOT_ATTACKED.get(arch)


def _config_file() -> str:
    spec = importlib.util.find_spec("pyiqa")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pyiqa is not installed: pip install pyiqa==0.1.16")
    return f"{list(spec.submodule_search_locations)[0]}/default_model_configs.py"


@cache
def entries() -> tuple[ZooEntry, ...]:
    """Every no-reference configuration of pyiqa that is not a classic metric."""
    spec = importlib.util.spec_from_file_location("_pyiqa_default_model_configs", _config_file())
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # a plain dict literal: no pyiqa import
    out = []
    for name, cfg in module.DEFAULT_CONFIGS.items():
        opts = dict(cfg["metric_opts"])
        arch = opts.pop("type")
        if cfg.get("metric_mode") != "NR" or arch in CLASSIC:
            continue
        size = opts.get("test_img_size")
        out.append(ZooEntry(name=name, arch=arch, opts=opts, lower_better=bool(cfg.get("lower_better", False)),
                            score_range=parse_range(cfg.get("score_range", "~, ~")),
                            input_size=(int(size), int(size)) if size else None, refused=refusal(arch, opts)))
    return tuple(out)


def class_name(name: str) -> str:
    """A Python identifier for a registry class made from a pyiqa name ('clipiqa+_rn50_512')."""
    return "Zoo_" + re.sub(r"\W", "_", name.replace("+", "plus"))
