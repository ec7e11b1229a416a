"""The `embedded` dataset: offline build, cache, splits. Built once at 48 px (the
smallest size VIF accepts) into a temporary cache, so the file runs in well under a minute."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.api import DATASETS
from bench.datasets import embedded as E

SIZE = 48


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build once with the network cut off (a build that reached for pooch would fail),
    its pseudo-MOS scored on two processes."""
    root = tmp_path_factory.mktemp("bench-cache")

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network access during the embedded build")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_CACHE", str(root))
        mp.setattr(socket.socket, "connect", no_network)
        mp.setattr(socket, "create_connection", no_network)
        mp.setattr(E, "BUILD_WORKERS", 2)
        E.EmbeddedDataset(size=SIZE).split(0)
    return root


@pytest.fixture
def env(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BENCH_CACHE", str(cache))
    return cache


def test_import_does_not_load_pyiqa() -> None:
    code = "import sys, bench.datasets; assert 'pyiqa' not in sys.modules, 'pyiqa imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_registered_with_checked_params() -> None:
    assert DATASETS.get("embedded") is E.EmbeddedDataset
    ds = DATASETS.create("embedded", size=SIZE, n_images=10)
    assert ds.params == {"size": SIZE, "n_images": 10, "test_fraction": 0.3}
    with pytest.raises(ValueError):
        E.EmbeddedDataset(size=32).split(0)


def test_build_records_sources_and_files(env: Path) -> None:
    meta = E.EmbeddedDataset(size=SIZE).metadata
    assert meta["n_references"] >= E.MIN_REFERENCES
    assert meta["n_images"] == meta["n_references"] * (1 + 5 * len(E.DISTORTIONS))
    assert len(E.DISTORTIONS) >= 10
    assert all({"name", "package", "version"} <= set(s) for s in meta["sources"])
    assert (env / f"embedded-v{E.VERSION}-{SIZE}.npz").exists()
    assert json.loads((env / f"embedded-v{E.VERSION}-{SIZE}.json").read_text()) == meta


def test_pseudo_mos_falls_with_level(env: Path) -> None:
    # Measured -0.99 at 48 and 96 px; saturation (colour only) is the weakest type.
    ordering = E.EmbeddedDataset(size=SIZE).metadata["level_spearman"]
    assert ordering["mean"] < -0.9
    assert all(v < -0.8 for v in ordering.values())


def test_split_by_reference_deterministic(env: Path) -> None:
    ds = E.EmbeddedDataset(size=SIZE)
    train, test = ds.split(0)
    assert not set(train.refs) & set(test.refs)
    assert len(train) + len(test) == ds.metadata["n_images"]
    again_train, again_test = E.EmbeddedDataset(size=SIZE).split(0)
    assert again_test.names == test.names and torch.equal(again_test.images, test.images)
    assert again_train.names == train.names
    assert E.EmbeddedDataset(size=SIZE).split(1)[1].refs != test.refs
    for s in (train, test):
        assert s.images.dtype == torch.float32 and s.images.shape[1:] == (3, SIZE, SIZE)
        assert 0 <= s.images.min() and s.images.max() <= 1
        assert s.mos.dtype == torch.float32 and 0 <= s.mos.min() and s.mos.max() <= 100
    refs = [i for i, n in enumerate(train.names) if n.endswith("__reference")]
    assert refs and torch.all(train.mos[refs] == 100)


def test_n_images_keeps_the_spread(env: Path) -> None:
    full_train, full_test = E.EmbeddedDataset(size=SIZE).split(3)
    train, test = E.EmbeddedDataset(size=SIZE, n_images=12).split(3)
    assert len(test) == 12 and train.names == full_train.names
    assert set(test.names) <= set(full_test.names)
    lo, hi = float(full_test.mos.min()), float(full_test.mos.max())
    assert float(test.mos.min()) <= np.percentile(full_test.mos, 10)
    assert float(test.mos.max()) >= np.percentile(full_test.mos, 90)
    assert float(test.mos.max() - test.mos.min()) > 0.6 * (hi - lo)
    assert E.EmbeddedDataset(size=SIZE, n_images=12).split(3)[1].names == test.names
    assert len(E.EmbeddedDataset(size=SIZE, n_images=10**6).split(3)[1]) == len(full_test)


def test_cache_is_reused(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reuse is: nothing built, distorted or scored again, and the cache files left as they are."""
    def redone(*a: object, **k: object) -> None:
        raise AssertionError("the embedded dataset was built again instead of read from the cache")

    for name in ("build", "load_references", "distort", "pseudo_mos"):
        monkeypatch.setattr(E, name, redone)
    files = sorted(env.glob(f"embedded-v{E.VERSION}-{SIZE}.*"))
    assert [f.suffix for f in files] == [".json", ".npz"]
    before = [(f, f.stat().st_mtime_ns, f.stat().st_size) for f in files]
    builds = E.BUILD_COUNT
    train, test = E.EmbeddedDataset(size=SIZE).split(5)
    assert E.BUILD_COUNT == builds
    assert [(f, f.stat().st_mtime_ns, f.stat().st_size) for f in files] == before
    assert len(train) + len(test) == E.EmbeddedDataset(size=SIZE).metadata["n_images"]


def test_rebuild_is_byte_identical(env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the number of build processes: the cache's was built on two, this on one."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(E, "BUILD_WORKERS", 1)
    E.load(SIZE)
    for suffix in (".npz", ".json"):
        name = f"embedded-v{E.VERSION}-{SIZE}{suffix}"
        assert (tmp_path / name).read_bytes() == (env / name).read_bytes(), name
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_sources_warn_then_fail(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def broken() -> np.ndarray:
        raise FileNotFoundError("gone")

    real = list(E._candidates())
    monkeypatch.setattr(E, "_candidates", lambda: iter(real[:8] + [("ghost", "nowhere", broken)]))
    capsys.readouterr()
    names, images, _ = E.load_references(SIZE)
    assert "ghost" not in names and images.shape == (8, SIZE, SIZE, 3)
    # one clean line, not Python's warning format
    assert capsys.readouterr().err == ("warning: embedded dataset: skipping source 'ghost' (nowhere): "
                                       "FileNotFoundError: gone\n")

    monkeypatch.setattr(E, "_candidates", lambda: iter(real[:3] + [("ghost", "nowhere", broken)]))
    with pytest.raises(RuntimeError, match="at least"):
        E.load_references(SIZE)
    assert "skipping source 'ghost'" in capsys.readouterr().err


def test_cache_dir_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_CACHE", raising=False)
    assert E.cache_path(96) == Path.home() / ".cache" / "iqa-bench" / f"embedded-v{E.VERSION}-96.npz"
