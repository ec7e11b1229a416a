"""What the IQA defenses benchmark measures beyond the attack's gain (Gushchin et al., "Guardians
of Image Quality", ICML 2025, https://arxiv.org/abs/2408.01541), and the images' fidelity that
both MSU benchmarks report.

A defense can look robust by freezing its score (nothing moves it, neither the attack nor
the image's real quality) or by wrecking the image it hands the model. The defenses
benchmark therefore asks two more questions of every cell:

    robust_gain         = mean |u(x) - d(x*)| / (max u - min u)
    purified_similarity = mean SSIM(D(x*), x) + PSNR(D(x*), x) / 40

u is the undefended base model's score of each clean test image, d the defended model's
score of the attacked image (what the cell's gains read), D the defense's input transform
(`purify`; the identity for defenses that change the model instead, where the similarity is
the attack's own visibility). robust_gain: how far the defended, attacked score sits from
where the undefended model put the clean image, as a share of the undefended clean range;
lower is better, and it also holds what a defense did to clean scores (training and
architectural defenses change the model itself). purified_similarity: how close the image
the model finally scores is to the clean one; higher is better (SSIM <= 1, PSNR capped at
100 dB for identical images, as `psnr` is). For a randomized D one independent draw is
measured, on a forked random generator: the attack's own draws stay as they were.

The SROCC of defended clean and defended attacked scores with MOS, the benchmark's third
measure, is `srocc_clean` / `srocc_attacked` (bench.measures). Each measure here comes with a
95% BCa bootstrap interval over the cell's images, as the gains do.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from bench.measures import bootstrap_ci

if TYPE_CHECKING:
    from torch import Tensor

PSNR_CAP = 100.0  # dB given to identical images (PSNR is infinite there)
PSNR_SCALE = 40.0  # the defenses benchmark's SSIM + PSNR / 40


def robust_gain_per_image(undefended: np.ndarray, attacked: np.ndarray) -> np.ndarray:
    """|u(x) - d(x*)| per image, over the undefended clean scores' range (NaN where they
    have none: a constant model cannot be scaled)."""
    undefended, attacked = np.asarray(undefended, dtype=float), np.asarray(attacked, dtype=float)
    span = float(undefended.max() - undefended.min()) if len(undefended) else 0.0
    if not span > 0:
        return np.full(len(attacked), math.nan)
    return np.abs(undefended - attacked) / span


def defense_measures(undefended: np.ndarray, attacked: np.ndarray, similarity: np.ndarray) -> dict[str, float]:
    """robust_gain and purified_similarity of one cell, each with its interval over images."""
    out: dict[str, float] = {}
    for key, v in (("robust_gain", robust_gain_per_image(undefended, attacked)),
                   ("purified_similarity", np.asarray(similarity, dtype=float))):
        out[key] = float(np.mean(v)) if len(v) else math.nan
        out[f"{key}_ci_lo"], out[f"{key}_ci_hi"] = bootstrap_ci((v,), np.mean) if np.all(np.isfinite(v)) \
            else (math.nan, math.nan)
    return out


class Fidelity:
    """Per-image PSNR and SSIM of one image batch against another (pyiqa's implementations)."""

    def __init__(self) -> None:
        import pyiqa

        self.psnr = pyiqa.create_metric("psnr", device="cpu")
        self.ssim = pyiqa.create_metric("ssim", device="cpu")

    def __call__(self, images: Tensor, clean: Tensor) -> tuple[Tensor, Tensor]:
        import torch

        with torch.no_grad():
            a, c = images.cpu().float(), clean.cpu().float()
            psnr = self.psnr(a, c).reshape(-1)
            psnr = torch.where(torch.isinf(psnr), torch.full_like(psnr, PSNR_CAP), psnr)
            return psnr, self.ssim(a, c).reshape(-1)


class FidelityTally:
    """One cell's fidelity, batch by batch: the attack's PSNR and SSIM (x* against x) and
    the purified image's similarity (D(x*) against x), each image's kept."""

    def __init__(self, fidelity: Fidelity) -> None:
        self.fidelity = fidelity
        self.psnr: list[float] = []
        self.ssim: list[float] = []
        self.similarity: list[float] = []

    def add(self, clean: Tensor, attacked: Tensor, purified: Tensor) -> None:
        psnr, ssim = self.fidelity(attacked, clean)
        self.psnr += psnr.tolist()
        self.ssim += ssim.tolist()
        p_psnr, p_ssim = (psnr, ssim) if purified is attacked else self.fidelity(purified, clean)
        self.similarity += (p_ssim + p_psnr / PSNR_SCALE).tolist()

    def means(self) -> tuple[float, float]:
        """The cell's mean PSNR and SSIM of the attack."""
        return float(np.mean(self.psnr)), float(np.mean(self.ssim))
