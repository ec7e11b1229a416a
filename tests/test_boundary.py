"""The plugin boundary: every plugin, built in or third-party, imports only `bench.api`.

The rule (CONTRIBUTING.md, "What a plugin may import"; docs/ARCHITECTURE.md): a module of
a built-in plugin package (those `bench.plugins` discovers: `bench.models`, `bench.attacks`,
`bench.datasets`, `defenses`, `baselines`, with their subpackages) imports from the
project (`bench`, `defenses`, `baselines`) only

1. `bench.api`, and
2. helper modules of its own plugin package: modules there that register no component
   (`bench.attacks._common`, `baselines._training`, `defenses/orthoflow/layers.py`, the
   dataset helpers `bench.datasets.files` with `.layouts` and `.scorefiles`, `.roots`,
   `.checks`, `.sampling`).

So no plugin imports bench's internals (store, runner, weights, gradients, ...), another
plugin, or a module of another plugin package. A third-party plugin has no package of its
own here: it imports `bench.api` alone. Checked statically (ast), every import statement
anywhere in a module (functions included) and `importlib.import_module("...")` calls with a
literal name; then shown to suffice: one third-party plugin of each kind, importing only
`bench.api`, runs through `bench run --plugin FILE` to status ok.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.cli import main
from bench.plugins import BUILTIN_PACKAGES
from bench.store import ResultsStore, records_frame

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {top: ROOT / top for top in {"bench", *(p.split(".")[0] for p in BUILTIN_PACKAGES)}}
PUBLIC = "bench.api"
REGISTERS = {"register_model", "register_attack", "register_defense", "register_dataset", "register"}


# ----------------------------------------------------------------------------- the checker
def module_file(name: str, roots: dict[str, Path]) -> Path | None:
    """The file of module `name` in the project (a package's `__init__.py`), or None."""
    top, *rest = name.split(".")
    if top not in roots:
        return None
    base = roots[top].joinpath(*rest)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return base.with_suffix(".py") if rest and base.with_suffix(".py").is_file() else None


def module_name(path: Path, roots: dict[str, Path]) -> tuple[str, bool]:
    """(dotted name, is a package) of a project file."""
    for top, folder in roots.items():
        if path.is_relative_to(folder):
            parts = [top, *path.relative_to(folder).with_suffix("").parts]
            is_pkg = parts[-1] == "__init__"
            return ".".join(parts[:-1] if is_pkg else parts), is_pkg
    raise ValueError(f"{path} is not in the project")


def registers(path: Path) -> bool:
    """Whether a module registers a component (a plugin) rather than only helping plugins:
    it names a `register_*` decorator or a registry's `.register`."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Name) and node.id in REGISTERS:
            return True
        if isinstance(node, ast.Attribute) and node.attr in REGISTERS:
            return True
    return False


def imported(tree: ast.AST, module: str, is_pkg: bool, roots: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, module) for every project module the code imports: `import a.b`, `from a
    import b` (a.b where that is a module, else a), relative imports resolved, and
    `importlib.import_module("a.b")` / `__import__("a.b")` with a literal name."""
    package = module if is_pkg else module.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            for a in node.names:
                sub = f"{src}.{a.name}"
                out.append((node.lineno, sub if a.name != "*" and module_file(sub, roots) else src))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr == "import_module") or \
                    (isinstance(f, ast.Name) and f.id in ("import_module", "__import__")):
                out.append((node.lineno, node.args[0].value))
    return sorted((line, m) for line, m in out if m.split(".")[0] in roots)


def violations(path: Path, plugin_package: str | None, roots: dict[str, Path] = PROJECT) -> list[str]:
    """Each import of `path` that breaks the rule, as `file:line: imports X (why)`.
    `plugin_package`: the built-in plugin package the file belongs to; None for a
    third-party plugin, which may import bench.api alone."""
    source = path.read_text()
    module, is_pkg = module_name(path, roots) if plugin_package else (path.stem, False)
    lines = source.splitlines()
    out = []
    for line, target in imported(ast.parse(source, str(path)), module, is_pkg, roots):
        if target == PUBLIC:
            continue
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}: " \
                f"`{lines[line - 1].strip()}` imports {target}"
        own = plugin_package is not None and (target == plugin_package or target.startswith(plugin_package + "."))
        if not own:
            out.append(f"{where}: a plugin imports from the project only {PUBLIC}"
                       + (f" and helpers of its own package {plugin_package}" if plugin_package else ""))
            continue
        file = module_file(target, roots)
        if file is None:
            out.append(f"{where}: no such module in {plugin_package}")
        elif registers(file):
            out.append(f"{where}: a plugin module (it registers a component); plugins never import each other")
    return out


def plugin_modules() -> list[tuple[Path, str]]:
    """Every module of the built-in plugin packages, subpackages included, with its package."""
    out = []
    for package in BUILTIN_PACKAGES:
        folder = ROOT.joinpath(*package.split("."))
        out += [(p, package) for p in sorted(folder.rglob("*.py")) if "__pycache__" not in p.parts]
    return out


# ----------------------------------------------------------------------------- the built-ins keep the rule
def test_builtin_plugins_import_only_bench_api_and_their_own_helpers() -> None:
    modules = plugin_modules()
    assert len(modules) > 40 and any(p.name == "files.py" for p, _ in modules)  # the walk found them all
    found = [v for path, package in modules for v in violations(path, package)]
    assert not found, "plugins import internals:\n" + "\n".join(found)


def test_every_name_in_api_all_is_importable_and_api_imports_no_plugin() -> None:
    import subprocess

    code = ("import sys, bench.api as a; before = set(sys.modules); "
            "missing = [n for n in a.__all__ if not hasattr(a, n)]; assert not missing, missing; "
            "from bench.api import *; "
            "plugins = sorted(m for m in sys.modules if m.startswith(('bench.models.', 'bench.attacks.', "
            "'defenses', 'baselines')) or m.startswith('bench.datasets.') and m.rsplit('.', 1)[1] not in "
            "('files', 'layouts', 'scorefiles', 'roots', 'checks', 'sampling')); assert not plugins, plugins; "
            "assert 'pandas' not in before, 'bench.api alone imports pandas'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600,
                         check=False)
    assert out.returncode == 0, out.stderr


def test_the_checker_names_the_module_and_the_import(tmp_path: Path) -> None:
    """It is not vacuous: each kind of breach is reported with its file, line and import."""
    pkg = tmp_path / "plug"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "_helper.py").write_text("from bench.api import warn\nfrom . import other_helper\n")
    (pkg / "other_helper.py").write_text("X = 1\n")
    (pkg / "good.py").write_text("from bench.api import register_model\nfrom plug import _helper\n"
                                 "from ._helper import warn\n@register_model\nclass A: ...\n")
    (pkg / "bad.py").write_text(
        "from bench.api import register_attack\n"
        "from bench.store import atomic_write\n"  # an internal
        "import bench.weights\n"  # an internal, plain import
        "from bench import gradients\n"  # an internal, as a submodule
        "from plug import good\n"  # another plugin
        "def f():\n    from bench.runner import Runner\n"  # inside a function
        "def g():\n    import importlib\n    return importlib.import_module('bench.measures')\n"
        "@register_attack\nclass B: ...\n")
    roots = {**PROJECT, "plug": pkg}
    assert violations(pkg / "good.py", "plug", roots) == []
    assert violations(pkg / "_helper.py", "plug", roots) == []
    found = violations(pkg / "bad.py", "plug", roots)
    assert [v.split(": ", 1)[0] for v in found] == [f"{pkg / 'bad.py'}:{n}" for n in (2, 3, 4, 5, 7, 10)], found
    assert "`from bench.store import atomic_write` imports bench.store: a plugin imports from the project only " \
           "bench.api and helpers of its own package plug" in found[0]
    assert "imports bench.gradients" in found[2] and "imports bench.runner" in found[4]
    assert "imports plug.good: a plugin module (it registers a component)" in found[3]
    assert "imports bench.measures" in found[5]
    third = tmp_path / "third.py"
    third.write_text("from bench.api import FileDataset\nfrom bench.datasets.files import Layout\n")
    assert [v.split(" imports ", 1)[1] for v in violations(third, None, roots)] == [
        "bench.datasets.files: a plugin imports from the project only bench.api"]


# ----------------------------------------------------------------------------- bench.api suffices
MODEL = '''"""A third-party model: sharpness (mean absolute Laplacian) of the image rounded to 8
bits, as many classic metrics do; attacks differentiate it straight through the rounding."""

import torch
import torch.nn.functional as F

from bench.api import IQAModel, ModelInfo, StraightThroughRounding, register_model

LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


@register_model
class Sharpness(IQAModel):
    info = ModelInfo(name="tp-sharpness", lower_better=False, score_range=(0.0, 1.0), kind="classic",
                     differentiable=False, gradient_surrogate="straight-through rounding", min_size=8,
                     reference="https://example.org/tp-sharpness", description="Mean |Laplacian|, squashed.")
    defaults = {"gain": 20.0}

    def forward(self, x):
        grey = (x * 255).round().mean(dim=1, keepdim=True) / 255
        lap = F.conv2d(grey, LAPLACE.to(x), padding=1)
        return torch.tanh(self.params["gain"] * lap.abs().mean(dim=(1, 2, 3)))

    def gradient_forward(self, x):
        with StraightThroughRounding():
            return self(x)
'''

ATTACK = '''"""A third-party attack: a few signed-gradient steps of eps / steps each."""

import torch

from bench.api import Attack, AttackInfo, register_attack


@register_attack
class SignSteps(Attack):
    info = AttackInfo(name="tp-sign-steps", reference="https://arxiv.org/abs/1607.02533",
                      description="Iterative signed-gradient steps, no random start.")
    defaults = {"steps": 2}

    def perturb(self, objective, x, eps):
        x_adv = x.clone()
        for _ in range(self.params["steps"]):
            x_adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(x_adv).sum(), x_adv)
            x_adv = (x_adv.detach() + eps / self.params["steps"] * grad.sign()).clamp(0, 1)
        return x_adv
'''

DEFENSE = '''"""A third-party defense: quantize the input to a few grey levels (not differentiable:
attacked with BPDA through the identity)."""

from bench.api import Defense, DefenseInfo, register_defense


@register_defense
class Quantize(Defense):
    info = DefenseInfo(name="tp-quantize", kind="purification", differentiable=False, surrogate="identity",
                       reference="https://arxiv.org/abs/1704.01155", description="Bit-depth reduction.")
    defaults = {"levels": 16}

    def purify(self, x):
        n = self.params["levels"] - 1
        return (x * n).round() / n
'''

DATASET = '''"""A third-party dataset read from files: an official-like layout of `scores.csv`
(columns file, mos) beside `photos/`, or pyiqa's meta-info CSV. Everything it needs
comes from bench.api."""

from bench.api import (
    DatasetInfo,
    FileDataset,
    FileIndex,
    Layout,
    numbers,
    pyiqa_nr,
    read_csv,
    register_dataset,
    table,
)


def read_official(root):
    path = root / "scores.csv"
    df = read_csv(path, "tp-photos", ("file", "mos"))
    names = df["file"].astype(str)
    return table(names, FileIndex([root / "photos"]).locate(names, path, "tp-photos"),
                 numbers(df["mos"], path, "tp-photos"))


@register_dataset
class Photos(FileDataset):
    info = DatasetInfo(name="tp-photos", mode="NR", mos_range=(1.0, 5.0), mos_lower_better=False,
                       reference="https://example.org/tp-photos", description="Blurred textures, made-up MOS.")
    by_image = True  # authentic distortions: each image is its own group
    layouts = (Layout("official", ("scores.csv", "photos/"), read_official),
               pyiqa_nr("tp-photos", "meta_info_TPPhotosDataset.csv", "tp-photos/"))
'''

PLUGINS = {"tp_model.py": MODEL, "tp_attack.py": ATTACK, "tp_defense.py": DEFENSE, "tp_dataset.py": DATASET}

MATRIX = """
name = "third-party"
seed = 0
batch_size = 8
[models]
tp-sharpness = {{}}
[defenses]
none = {{}}
tp-quantize = {{ levels = 32 }}
[attacks]
tp-sign-steps = {{ eps = [4], steps = 2 }}
[datasets]
tp-photos = {{ size = 32, test_fraction = 0.5 }}
"""


def official_like(root: Path, n: int = 16) -> Path:
    """`scores.csv` + `photos/`: textures blurred more and more, MOS falling with the blur."""
    (root / "photos").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["file,mos"]
    for i in range(n):
        texture = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        img = Image.fromarray(texture)
        for _ in range(i // 2):
            img = img.resize((24, 24)).resize((48, 48), Image.Resampling.BILINEAR)
        img.save(root / "photos" / f"p{i:02d}.png")
        rows.append(f"p{i:02d}.png,{5 - 4 * i / (n - 1):.3f}")
    (root / "scores.csv").write_text("\n".join(rows) + "\n")
    return root


def test_a_third_party_plugin_of_each_kind_runs_on_bench_api_alone(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    files = []
    for name, code in PLUGINS.items():
        f = tmp_path / "plugins" / name
        f.parent.mkdir(exist_ok=True)
        f.write_text(code)
        assert violations(f, None) == [], name  # the same rule as the built-ins, third-party form
        files += ["--plugin", str(f)]
    data = official_like(tmp_path / "data")
    monkeypatch.setenv("BENCH_DATA_TP_PHOTOS", "")  # --data-root exports it: undone after the test
    matrix = tmp_path / "m.toml"
    matrix.write_text(MATRIX.format())
    code = main(["run", "--matrix", str(matrix), "--results", str(tmp_path / "r"), "--no-site", "--no-progress",
                 "--data-root", f"tp-photos={data}", *files])
    assert code == 0
    recs = list(ResultsStore(tmp_path / "r").records())
    assert sorted((r["cell"]["model"], r["cell"]["defense"], r["cell"]["attack"], r["cell"]["dataset"], r["status"])
                  for r in recs) == [("tp-sharpness", d, "tp-sign-steps", "tp-photos", "ok")
                                     for d in ("none", "tp-quantize")], [r.get("message") for r in recs]
    assert list(records_frame(recs).n_images) == [8, 8]  # 16 images, half on the test side
    for r in recs:
        for kind in ("model", "attack", "dataset") + (("defense",) if r["cell"]["defense"] != "none" else ()):
            assert r["meta"][kind]["origin"]["kind"] == "plugin file", (kind, r["meta"][kind]["origin"])
