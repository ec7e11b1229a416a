"""Shared fixtures. Every test session gets its own cache (embedded data, trained
models) so that nothing from a user's ~/.cache leaks into what the tests see."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_CACHE = tempfile.mkdtemp(prefix="bench-test-cache-")
os.environ["BENCH_CACHE"] = _SESSION_CACHE

TINY_MATRIX = """
name = "tiny"
seed = 0
suite = "tiny-v1"
batch_size = 8
eot_samples = 2

[models]
piqe = {{}}
cnniqa = {{ epochs = 2 }}

[defenses]
none = {{}}
jpeg = {{ quality = {quality} }}
{extra_defenses}

[attacks]
fgsm = {{ eps = [4] }}
pgd = {{ eps = [4, 8], steps = 3 }}

[datasets]
embedded = {{ size = 48, n_images = 8 }}
"""


def write_matrix(path: Path, quality: int = 50, extra_defenses: str = "", **replace: str) -> Path:
    text = TINY_MATRIX.format(quality=quality, extra_defenses=extra_defenses)
    for old, new in replace.items():
        text = text.replace(old, new)
    path.write_text(text)
    return path


@pytest.fixture
def tiny_matrix(tmp_path: Path) -> Path:
    return write_matrix(tmp_path / "tiny.toml")


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return Path(_SESSION_CACHE)
