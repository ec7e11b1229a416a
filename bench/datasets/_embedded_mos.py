"""The `embedded` dataset's pseudo-MOS (four full-reference pyiqa metrics averaged, see
`bench.datasets.embedded`) and how well it orders the distortion levels; apart from the build.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
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


_METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {}  # per process, built once


def _metrics() -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """The four metrics, built on first use in each process (a build worker too)."""
    if not _METRICS:
        import pyiqa  # lazily: it is slow to import and only the build needs it
        from pyiqa.archs.func_util import preprocess_rgb
        from pyiqa.archs.ssim_arch import ssim

        def ssim32(d: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
            # pyiqa's SSIM metric, minus its cast to float64, whose conv is ~15x slower on CPU.
            y = [preprocess_rgb(v, test_y_channel=True, data_range=255, color_space="yiq") for v in (d, r)]
            return ssim(y[0], y[1], data_range=255)

        _METRICS.update({n: pyiqa.create_metric(n, device="cpu") for n in ("fsim", "vif", "gmsd")})
        _METRICS["ssim"] = ssim32
    return _METRICS


def _score_batch(dist: np.ndarray, ref: np.ndarray, threads: int) -> dict[str, np.ndarray]:
    """Each metric's raw value for one batch, on `threads` torch threads."""
    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).permute(0, 3, 1, 2).float().div(255.0)

    with _torch_threads(threads), torch.no_grad():
        d, r = t(dist), t(ref)
        return {n: m(d, r).double().reshape(-1).numpy() for n, m in _metrics().items()}


def _forked_pool(workers: int) -> Executor | None:
    """`workers` forked processes (they inherit the imported modules, so start at once and
    hold no memory after the build), or None where this process cannot have any (no fork
    on this platform, a daemonic worker, a limit on processes): the batches are then scored
    here, to the same bytes, only slower."""
    if workers < 2 or "fork" not in mp.get_all_start_methods() or mp.current_process().daemon:
        return None
    try:
        return ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"))
    except (OSError, AssertionError, ValueError):
        return None


def pseudo_mos(dist: np.ndarray, ref: np.ndarray, batch: int = 32, workers: int = 1, threads: int = 1) -> np.ndarray:
    """Pseudo-MOS (0..100, higher better) of uint8 (N, H, W, 3) images against their refs.

    The batches are scored on `workers` processes of `threads` torch threads each, every
    batch by the same code with the same boundaries, so the bytes do not depend on
    `workers` (tested); the metrics' small kernels gain little from threads (measured: the
    same 34 s on 1 thread or 2), processes scale."""
    # shown before pyiqa is imported (~3 s), so that no silent gap follows the distortions
    bar = progress(total=len(dist), desc="embedded: building pseudo-MOS", unit="img")
    spans = [(i, min(i + batch, len(dist))) for i in range(0, len(dist), batch)]
    raw: dict[str, list[np.ndarray]] = {}
    _metrics()  # imported before any fork: the workers inherit it
    pool = _forked_pool(min(workers, len(spans)))
    with bar:
        try:
            if pool is None:
                scored: Iterator[dict[str, np.ndarray]] = (_score_batch(dist[a:b], ref[a:b], threads) for a, b in spans)
            else:
                scored = pool.map(_score_batch, *zip(*((dist[a:b], ref[a:b], threads) for a, b in spans)))
            for (a, b), values in zip(spans, scored, strict=True):
                for n, v in values.items():
                    raw.setdefault(n, []).append(v)
                bar.update(b - a)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
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
