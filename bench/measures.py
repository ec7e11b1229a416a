"""What every cell measures.

Correlation with the dataset's opinion scores (SROCC, PLCC, via scipy), the attack's
gain, and how visible the perturbation is (PSNR, SSIM, via pyiqa). Gains are read on
scores min-max scaled by the cell's own clean scores and oriented so that a positive
gain means the attack moved the score in the model's "better" direction:

    f(s)     = (s - min clean) / (max clean - min clean)      (1 - that for lower-better)
    abs_gain = mean(f(s*) - f(s))
    rel_gain = mean((f(s*) - f(s)) / (f(s) + 1))

as in the IQA-robustness literature (Antsiferova et al., "Comparing the robustness of
modern no-reference image- and video-quality metrics to adversarial attacks", AAAI 2024).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats
from torch import Tensor

MEASURES_VERSION = "1"


def correlations(pred: np.ndarray, mos: np.ndarray, lower_better: bool) -> tuple[float, float]:
    """SROCC and PLCC, signed so that a model agreeing with the MOS scores positive."""
    if len(pred) < 3 or np.ptp(pred) == 0 or np.ptp(mos) == 0:
        return math.nan, math.nan
    sign = -1.0 if lower_better else 1.0
    return sign * float(stats.spearmanr(pred, mos).statistic), sign * float(stats.pearsonr(pred, mos).statistic)


def scaled(scores: np.ndarray, clean: np.ndarray, lower_better: bool) -> np.ndarray:
    lo, hi = float(clean.min()), float(clean.max())
    f = (scores - lo) / (hi - lo if hi > lo else 1.0)
    return 1.0 - f if lower_better else f


def gains(clean: np.ndarray, attacked: np.ndarray, lower_better: bool) -> tuple[float, float]:
    fc, fa = scaled(clean, clean, lower_better), scaled(attacked, clean, lower_better)
    return float(np.mean(fa - fc)), float(np.mean((fa - fc) / (fc + 1.0)))


class Fidelity:
    """PSNR and SSIM of attacked against clean images (pyiqa's implementations)."""

    def __init__(self) -> None:
        import pyiqa

        self.psnr = pyiqa.create_metric("psnr", device="cpu")
        self.ssim = pyiqa.create_metric("ssim", device="cpu")

    @torch.no_grad()
    def __call__(self, attacked: Tensor, clean: Tensor) -> tuple[float, float]:
        a, c = attacked.cpu().float(), clean.cpu().float()
        psnr = self.psnr(a, c).reshape(-1)
        psnr = torch.where(torch.isinf(psnr), torch.full_like(psnr, 100.0), psnr)  # identical: cap
        return float(psnr.mean()), float(self.ssim(a, c).reshape(-1).mean())


def cell_metrics(
    mos: np.ndarray, clean: np.ndarray, attacked: np.ndarray, lower_better: bool, psnr: float, ssim: float
) -> dict[str, float]:
    s_c, p_c = correlations(clean, mos, lower_better)
    s_a, p_a = correlations(attacked, mos, lower_better)
    abs_gain, rel_gain = gains(clean, attacked, lower_better)
    return {
        "n_images": int(len(mos)),
        "srocc_clean": s_c, "srocc_attacked": s_a, "plcc_clean": p_c, "plcc_attacked": p_a,
        "abs_gain": abs_gain, "rel_gain": rel_gain, "psnr": psnr, "ssim": ssim,
    }
