"""Plugins from the three places, and faults that stay inside their own cells."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.store import ResultsStore, records_frame

ROOT = Path(__file__).resolve().parent.parent

SMALL = """
name = "small"
seed = 0
batch_size = 8
[models]
piqe = {{}}
[defenses]
none = {{}}
{defenses}
[attacks]
fgsm = {{ eps = [4] }}
[datasets]
embedded = {{ size = 48, n_images = 6 }}
"""


def contributing_example() -> str:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    return re.search(r"`my_blur/defense.py`:\n\n```python\n(.*?)```", text, re.DOTALL).group(1)


def run_small(tmp_path: Path, defenses: str, plugins: list[Path], extra: list[str] = ()) -> tuple[int, list[dict]]:
    matrix = tmp_path / "m.toml"
    matrix.write_text(SMALL.format(defenses=defenses))
    args = ["run", "--matrix", str(matrix), "--results", str(tmp_path / "r"), "--no-site", "--no-progress"]
    for p in plugins:
        args += ["--plugin", str(p)]
    code = main([*args, *extra])
    return code, list(ResultsStore(tmp_path / "r").records())


def install_example(tmp_path: Path, version: str) -> dict[str, str]:
    """The CONTRIBUTING.md example as pip installs it (a package and its dist-info with an
    entry point) under tmp_path/site; returns the environment that puts it on the path."""
    pkg = tmp_path / "site" / "my_blur"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "defense.py").write_text(contributing_example())
    dist = tmp_path / "site" / f"my_blur-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: my-blur\nVersion: {version}\n")
    (dist / "entry_points.txt").write_text("[bench.defenses]\nmy-blur = my_blur.defense:GaussianBlur\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(ROOT)]))


def test_contributing_example_as_entry_point(tmp_path):
    """The CONTRIBUTING.md example, installed the way pip installs an entry point."""
    env = install_example(tmp_path, "0.1.0")
    out = subprocess.run([sys.executable, "-m", "bench", "list", "defenses"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^my-blur\s+purification", out.stdout, re.MULTILINE), out.stdout
    matrix = tmp_path / "m.toml"
    matrix.write_text(SMALL.format(defenses='"my-blur" = { sigma = 1.5 }'))
    out = subprocess.run([sys.executable, "-m", "bench", "run", "--matrix", str(matrix), "--results",
                          str(tmp_path / "r"), "--no-site", "--no-progress"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    df = records_frame(list(ResultsStore(tmp_path / "r").records()))
    assert set(df[df.defense == "my-blur"].status) == {"ok"}


def test_entry_point_origin_names_its_distribution_and_version(tmp_path):
    """`bench list`, every record and the leaderboard row say which package (and which
    version of it) produced a component loaded through an entry point."""
    env = install_example(tmp_path, "0.3.2")
    label = "entry point my-blur = my_blur.defense:GaussianBlur (my-blur 0.3.2)"
    out = subprocess.run([sys.executable, "-m", "bench", "list", "defenses"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("my-blur "))
    assert line.endswith(f"  [from {label}]"), line
    assert re.search(r"^none\s.*\[from built-in baselines\.none\]$", out.stdout, re.MULTILINE), out.stdout
    matrix = tmp_path / "m.toml"
    matrix.write_text(SMALL.format(defenses='"my-blur" = { sigma = 1.5 }'))
    out = subprocess.run([sys.executable, "-m", "bench", "run", "--matrix", str(matrix), "--results",
                          str(tmp_path / "r"), "--site-out", str(tmp_path / "out"), "--no-progress"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    by = {r["cell"]["defense"]: r for r in ResultsStore(tmp_path / "r").records()}
    assert by["my-blur"]["meta"]["defense"]["origin"] == {
        "kind": "entry point", "entry_point": "my-blur", "group": "bench.defenses",
        "value": "my_blur.defense:GaussianBlur", "distribution": "my-blur", "version": "0.3.2",
        "module": "my_blur.defense"}
    assert by["none"]["meta"]["defense"]["origin"] == {"kind": "built-in", "module": "baselines.none"}
    board = json.loads((tmp_path / "out" / "data" / "index.json").read_text())
    assert {r["defense_origin"] for r in board if r["defense"] == "my-blur"} == {label}
    page = next((tmp_path / "out").glob("defense-my-blur-*.html")).read_text()
    assert f"<code>{label}</code>" in page


def test_single_file_plugin(tmp_path, capsys):
    f = tmp_path / "blur.py"
    f.write_text(contributing_example())
    code, recs = run_small(tmp_path, '"my-blur" = {}', [f])
    assert code == 0
    assert {r["cell"]["defense"]: r["status"] for r in recs} == {"none": "ok", "my-blur": "ok"}
    # where each component came from, in every record and in `bench list`
    sha = hashlib.sha256(f.read_bytes()).hexdigest()
    by = {r["cell"]["defense"]: r for r in recs}
    assert by["my-blur"]["meta"]["defense"]["origin"] == {"kind": "plugin file", "path": str(f.resolve()),
                                                          "sha256": sha, "module": "blur"}
    assert by["none"]["meta"]["defense"]["origin"] == {"kind": "built-in", "module": "baselines.none"}
    assert by["none"]["meta"]["model"]["origin"] == {"kind": "built-in", "module": "bench.models.classic"}
    df = records_frame(recs)
    assert set(zip(df.defense, df.defense_origin)) == {("my-blur", f"plugin file {f.resolve()} (sha256 {sha[:12]})"),
                                                       ("none", "built-in baselines.none")}
    capsys.readouterr()
    assert main(["list", "defenses", "--plugin", str(f)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("my-blur "))
    assert line.endswith(f"  [from plugin file {f.resolve()} (sha256 {sha[:12]})]"), line


FAULTY = '''
import torch
from bench.api import Defense, DefenseInfo, register_defense

@register_defense
class Raises(Defense):
    info = DefenseInfo(name="raises", kind="purification")
    def purify(self, x):
        raise RuntimeError("boom in purify")

@register_defense
class GivesNaN(Defense):
    info = DefenseInfo(name="gives-nan", kind="purification")
    def purify(self, x):
        return x * float("nan")
'''


def test_faulty_plugins_fail_only_their_own_cells(tmp_path):
    f = tmp_path / "faulty.py"
    f.write_text(FAULTY)
    code, recs = run_small(tmp_path, "raises = {}\n\"gives-nan\" = {}", [f])
    by = {r["cell"]["defense"]: r for r in recs}
    assert code == 1
    assert by["none"]["status"] == "ok"
    assert by["raises"]["status"] == "error" and "defense 'raises'" in by["raises"]["message"]
    assert "boom in purify" in by["raises"]["message"] and "faulty.py" in by["raises"]["message"]
    assert by["gives-nan"]["status"] == "error" and "non-finite" in by["gives-nan"]["message"]


def test_plugin_that_fails_to_import_fails_its_cells(tmp_path):
    f = tmp_path / "broken.py"
    f.write_text("import torch\nraise ImportError('needs a package that is not installed')\n")
    code, recs = run_small(tmp_path, "mystery = {}", [f])
    by = {r["cell"]["defense"]: r for r in recs}
    assert code == 1 and by["none"]["status"] == "ok"
    assert by["mystery"]["status"] == "error"
    assert "broken.py" in by["mystery"]["message"] and "not installed" in by["mystery"]["message"]


def test_missing_plugin_file_is_a_clear_error(tmp_path, capsys):
    code, _ = run_small(tmp_path, "", [tmp_path / "nope.py"])
    assert code == 1
    assert "plugin file" in capsys.readouterr().err


BUILTIN = {
    "models": ["brisque", "brisque-live-libsvm", "cnniqa", "niqe", "piqe", "resnet18_iqa", "wadiqam_nr"],
    "attacks": ["ami-fgsm", "apgd", "cumulative-uap", "fgsm", "generative-uap", "i-fgsm", "ioi", "korhonen", "madc",
                "mi-fgsm", "one-pixel", "parsimonious", "perceptual", "pgd", "square", "stadv", "std-fgsm",
                "uap"],
    "defenses": ["act", "adv-train", "bit-depth", "color-quantization", "denoised-smoothing", "diff-jpeg", "dncnn",
                 "finetune-only", "flip", "gaussian-blur", "jpeg", "mean-smoothing", "median-blur", "mprnet", "none",
                 "nt", "ortho", "ortho+act", "ortho+act+prune", "ortho+act+prune-l2", "prune", "random-crop",
                 "random-flip", "random-noise", "random-rotate", "randomized-smoothing", "real-esrgan", "resize", "unsharp",
                 "upscale"],
    "datasets": ["csiq", "embedded", "kadid10k", "koniq10k", "live", "livec", "pipal", "spaq", "tid2013"],
    "matrices": ["full", "paper", "quick", "seeds", "standard"],
}


@pytest.mark.parametrize("kind", ["models", "attacks", "defenses", "datasets", "matrices"])
def test_list(kind, capsys):
    from bench import api

    assert main(["list", kind]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line[:1].strip()]  # continuation lines are indented
    # every built-in and whatever plugins other tests loaded in this process, once each, in name
    # order; then one "!" line for each plugin that failed to load here
    registry = getattr(api, kind.upper()) if kind != "matrices" else None
    names = [line.split()[0] for line in lines if not line.startswith("! ")]
    assert names == sorted(set(BUILTIN[kind]) | set(registry.names() if registry else ())), out
    assert [line for line in lines if line.startswith("! ")] == [
        f"! {src}: failed to load: {why}" for src, why in sorted(registry.broken.items() if registry else ())]
    if kind == "matrices":
        quick = next(line for line in out.splitlines() if line.startswith("quick "))
        assert re.match(r"quick +48 cells +models=2 defenses=4 attacks=2 datasets=1$", quick), out


def test_contributing_model_example_scores_a_third_party_checkpoint(tmp_path, capsys):
    import torch

    text = (ROOT / "CONTRIBUTING.md").read_text()
    code = re.search(r"`my_model.py`:\n\n```python\n(.*?)```", text, re.DOTALL).group(1)
    f = tmp_path / "my_model.py"
    f.write_text(code)
    from bench.plugins import load_plugin_file

    load_plugin_file(f)
    from bench.api import create_model

    model = create_model("my-cnn").eval()
    torch.save(model.state_dict(), tmp_path / "my_cnn.pt")
    img = ROOT / "tests" / "artifacts" / "tiny.png"
    img.parent.mkdir(exist_ok=True)
    from PIL import Image

    Image.new("RGB", (24, 24), (120, 30, 200)).save(img)
    assert main(["score", "--plugin", str(f), "--model", "my-cnn", "--weights", str(tmp_path / "my_cnn.pt"),
                 str(img)]) == 0
    path, score = capsys.readouterr().out.strip().rsplit(",", 1)
    assert path == str(img) and 0 < float(score) < 1
    assert main(["score", "--plugin", str(f), "--model", "my-cnn", str(img)]) == 1
    assert "model 'my-cnn' has no weights here" in capsys.readouterr().err
