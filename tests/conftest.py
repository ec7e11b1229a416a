"""Shared fixtures. Every test session gets its own cache (embedded data, trained
models) so that nothing from a user's ~/.cache leaks into what the tests see."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests: in CI (env var CI set, as CI services and `.ci/run` do) a fixed,
# derandomized search, so a CI run cannot fail at random and a failure reproduces
# exactly; elsewhere ("dev") a random search that may find new cases. A longer hunt:
# HYPOTHESIS_PROFILE=deep pytest tests/test_matrix_fuzz.py
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=150, print_blob=True)
settings.register_profile("dev", deadline=None, max_examples=150)
settings.register_profile("deep", deadline=None, max_examples=3000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

_SESSION_CACHE = tempfile.mkdtemp(prefix="bench-test-cache-")
os.environ["BENCH_CACHE"] = _SESSION_CACHE
# pyiqa's cache of published weights lives under TORCH_HOME: a machine that holds the
# published CNNIQA file must see the same models as one that holds none. Tests that need
# published weights put files into this empty folder themselves.
os.environ["TORCH_HOME"] = str(Path(_SESSION_CACHE) / "torch-home")

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


def fresh_cache(path: Path) -> Path:
    """An empty BENCH_CACHE but for the embedded data at 48 px (built once per test session,
    in the session's cache): no trained model, no fitted defense."""
    from bench.datasets import embedded

    built = embedded.cache_path(48)
    if not (built.exists() and built.with_suffix(".json").exists()):
        embedded.load(48)
    path.mkdir(parents=True)
    for f in (built, built.with_suffix(".json")):
        shutil.copyfile(f, path / f.name)
    return path


@pytest.fixture
def tiny_matrix(tmp_path: Path) -> Path:
    return write_matrix(tmp_path / "tiny.toml")


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return Path(_SESSION_CACHE)


def _restore_environment(saved: dict[str, str]) -> None:
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _environment_stays_in_its_test():
    """What the code under test writes into os.environ on purpose (`--no-progress` switches
    progress off for this process and its workers; `--data-root` exports BENCH_DATA_*) is
    undone after each test, so that no test sees another's switches, in any order."""
    saved = dict(os.environ)
    yield
    _restore_environment(saved)


@pytest.fixture(autouse=True, scope="module")
def _environment_stays_in_its_module():
    """The same for module-scoped fixtures (a shared `bench run --no-progress` set up once for
    a module): what they switch is undone when the module ends, not carried into the next."""
    saved = dict(os.environ)
    yield
    _restore_environment(saved)


@pytest.fixture(autouse=True)
def _plugins_stay_in_their_test():
    """What a test's plugins register (components, plugin files that failed to load, files
    shipped to workers) is undone after it: the registries are process-wide, and a broken
    plugin left behind turns every later unknown name into a "plugin failed" cell and adds
    warnings to every later command's output, so results would depend on test order. The
    built-ins are loaded first, so that they are part of what is kept."""
    from bench import plugins

    plugins.load_plugins()
    saved = [(reg, {k: v.copy() for k, v in vars(reg).items() if isinstance(v, (dict, set))})
             for reg in plugins.REGISTRIES]
    files = set(plugins._loaded_files)
    yield
    for reg, attrs in saved:
        for k, v in attrs.items():
            getattr(reg, k).clear()
            getattr(reg, k).update(v)
    plugins._loaded_files.clear()
    plugins._loaded_files.update(files)


@pytest.fixture
def one_thread():
    """Torch on one thread for tests of tiny tensors: one thread runs them faster than two, which
    wait on each other whenever another process holds a core (measured: 0.7 against 1.7 ms a DnCNN pass)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A folder served over HTTP on 127.0.0.1 (no proxy, not offline, no mirror, BENCH_CACHE
    in tmp_path); yields (folder, base URL, handler class: its `requests` counts requests)."""
    import functools
    import http.server
    import threading

    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                "BENCH_OFFLINE", "BENCH_WEIGHTS_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "www"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        requests = 0

        def log_message(self, *args: object) -> None:
            Quiet.requests += 1

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}", Quiet
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def centre_brightness():
    """A differentiable score to attack through a defense: mean brightness of the centre."""
    import torch

    from bench.api import IQAModel, ModelInfo

    class CentreBrightness(IQAModel):
        info = ModelInfo(name="centre-brightness", lower_better=False, score_range=(0.0, 1.0), kind="classic",
                         differentiable=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[..., 4:-4, 4:-4].mean(dim=(1, 2, 3))

    return CentreBrightness()
