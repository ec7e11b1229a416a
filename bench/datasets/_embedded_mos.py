"""The `embedded` dataset's pseudo-MOS (four full-reference pyiqa metrics averaged, see
`bench.datasets.embedded`) and how well it orders the distortion levels; apart from the build.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch

from bench.api import progress


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def pseudo_mos(dist: np.ndarray, ref: np.ndarray, batch: int = 32) -> np.ndarray:
    """Pseudo-MOS (0..100, higher better) of uint8 (N, H, W, 3) images against their refs."""
    # shown before pyiqa is imported (~3 s), so that no silent gap follows the distortions
    bar = progress(total=len(dist), desc="embedded: building pseudo-MOS", unit="img")
    import pyiqa  # lazily: it is slow to import and only the build needs it

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).permute(0, 3, 1, 2).float().div(255.0)

    from pyiqa.archs.func_util import preprocess_rgb
    from pyiqa.archs.ssim_arch import ssim

    def ssim32(d: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        # pyiqa's SSIM metric, minus its cast to float64, whose conv is ~15x slower on CPU.
        y = [preprocess_rgb(v, test_y_channel=True, data_range=255, color_space="yiq") for v in (d, r)]
        return ssim(y[0], y[1], data_range=255)

    metrics: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
        n: pyiqa.create_metric(n, device="cpu") for n in ("fsim", "vif", "gmsd")
    }
    metrics["ssim"] = ssim32
    raw: dict[str, list[np.ndarray]] = {n: [] for n in metrics}
    with torch.no_grad(), bar:
        for i in range(0, len(dist), batch):
            d, r = t(dist[i:i + batch]), t(ref[i:i + batch])
            for n, m in metrics.items():
                raw[n].append(m(d, r).double().reshape(-1).numpy())
            bar.update(len(d))
    s = {n: np.concatenate(v) for n, v in raw.items()}
    q = (np.clip((s["fsim"] - 0.5) / 0.5, 0, 1) + np.clip(s["ssim"], 0, 1)
         + np.clip(s["vif"], 0, 1) + np.clip(1 - s["gmsd"] / 0.35, 0, 1)) / 4
    return np.round(100.0 * q, 3).astype(np.float32)


def level_ordering(refs: np.ndarray, types: np.ndarray, levels: np.ndarray, mos: np.ndarray) -> dict[str, float]:
    """Mean Spearman(level, pseudo-MOS) within each (reference, type), overall and by type."""
    from scipy.stats import spearmanr

    by_type: dict[str, list[float]] = {}
    for r in np.unique(refs):
        for k in np.unique(types[types != "reference"]):
            m = (refs == r) & (types == k)
            rho = spearmanr(levels[m], mos[m]).statistic
            by_type.setdefault(str(k), []).append(0.0 if np.isnan(rho) else float(rho))  # ties: no order
    out = {"mean": round(float(np.mean([v for vs in by_type.values() for v in vs])), 4)}
    out.update({k: round(float(np.mean(v)), 4) for k, v in sorted(by_type.items())})
    return out
