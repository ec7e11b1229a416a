"""Where a number came from: versions, commit, hardware, date."""

from __future__ import annotations

import datetime as dt
import functools
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import bench


def _version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "not installed"


@functools.cache
def git_commit() -> str:
    root = Path(bench.__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


@functools.cache
def environment(device: str) -> dict[str, Any]:
    import torch

    hw: dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "torch_threads": torch.get_num_threads(), "device": device, "platform": platform.platform(),
                          "memory_gb": round(total_memory_gb(), 1)}
    if device.startswith("cuda") and torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(0)
    # what decides whether the same seed gives the same bits (threads above: CPU reductions)
    hw["determinism"] = {"deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                         "cudnn_deterministic": torch.backends.cudnn.deterministic,
                         "cudnn_benchmark": torch.backends.cudnn.benchmark}
    return {
        "bench": bench.__version__, "torch": torch.__version__, "pyiqa": _version("pyiqa"),
        "torchattacks": _version("torchattacks"), "python": platform.python_version(),
        "git_commit": git_commit(), "hardware": hw,
    }


def total_memory_gb() -> float:
    """Physical memory of this machine (0 where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 0.0


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
