"""The example image of a cell, kept for the site: of the test images, the one whose
score the attack moved most, saved as PNGs beside the record (the clean image, the
attacked one, and the perturbation amplified to the full range)."""

from __future__ import annotations

import io
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from bench.record import Example


class ExampleImage:
    """Offered each attacked batch in turn; keeps the image with the largest score shift
    in the attack's direction (the first such image on ties)."""

    def __init__(self, clean: Tensor, lower_better: bool) -> None:
        self.clean, self.sign = clean, -1.0 if lower_better else 1.0
        self.best: tuple[float, int, Tensor, Tensor, float] | None = None

    def offer(self, start: int, x: Tensor, adv: Tensor, scores: Tensor) -> None:
        """`x`, `adv`: a batch of clean and attacked images from index `start` of the split."""
        shift = self.sign * (scores - self.clean[start : start + len(x)])
        j = int(torch.argmax(shift))
        if self.best is None or float(shift[j]) > self.best[0]:
            self.best = (float(shift[j]), start + j, x[j].clone(), adv[j].clone(), float(scores[j]))

    def save(self, store: Any, key: str, names: list[str], eps: float) -> Example | None:
        """Write the three PNGs as the store's assets of cell `key`; None where no image was offered."""
        if self.best is None:
            return None
        _, idx, x, adv, score = self.best
        amplified = (0.5 + (adv - x) / (2 * eps)).clamp(0, 1)
        files = {}
        for part, img in (("clean", x), ("attacked", adv), ("perturbation", amplified)):
            arr = (img.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype("uint8")
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG")
            files[part] = store.put_asset(key, f"{part}.png", buf.getvalue())
        return Example(name=names[idx], index=idx, clean_score=float(self.clean[idx]), attacked_score=score,
                       files=files)
