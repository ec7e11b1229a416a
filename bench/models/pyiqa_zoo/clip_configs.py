"""CLIP networks with random weights, for building CLIP-based models offline.

pyiqa's CLIP loader reads the architecture off the published file (widths and depths from
tensor shapes), so without the file there is nothing to build. The hyperparameters of the
released CLIP models are in Radford et al., "Learning Transferable Visual Models From
Natural Language Supervision" (ICML 2021), Tables 19 and 20; they are what `build_model`
would read off each file.
"""

from __future__ import annotations

from typing import Any

from torch import nn

TEXT = {"context_length": 77, "vocab_size": 49408}
CONFIGS: dict[str, dict[str, Any]] = {
    "RN50": {"embed_dim": 1024, "image_resolution": 224, "vision_layers": (3, 4, 6, 3), "vision_width": 64,
             "vision_patch_size": None, "transformer_width": 512, "transformer_heads": 8, "transformer_layers": 12},
    "ViT-B/32": {"embed_dim": 512, "image_resolution": 224, "vision_layers": 12, "vision_width": 768,
                 "vision_patch_size": 32, "transformer_width": 512, "transformer_heads": 8, "transformer_layers": 12},
    "ViT-B/16": {"embed_dim": 512, "image_resolution": 224, "vision_layers": 12, "vision_width": 768,
                 "vision_patch_size": 16, "transformer_width": 512, "transformer_heads": 8, "transformer_layers": 12},
    "ViT-L/14": {"embed_dim": 768, "image_resolution": 224, "vision_layers": 24, "vision_width": 1024,
                 "vision_patch_size": 14, "transformer_width": 768, "transformer_heads": 12, "transformer_layers": 12},
}


def random_clip(name: str, cls: type | None = None) -> nn.Module:
    """A CLIP network of class `cls`: pyiqa's copy by default (with positional-embedding
    options); OpenAI's `clip.model.CLIP` or A-FINE's `AFINECLIP` for the models that load
    theirs (same constructor)."""
    if cls is None:
        from pyiqa.archs.clip_model import CLIP as cls

    if name not in CONFIGS:
        raise LookupError(f"no random-weights build of CLIP {name!r}: its architecture is read off its file")
    return cls(**CONFIGS[name], **TEXT).float().eval()
