"""The parameter contract (bench/params.py): every component declares each parameter with
its type, range or choices, default and help; a bad value is refused wherever a component
is created, in one line naming the component, the parameter, what is allowed and what was
given; `bench list --params` shows the declarations; a plain `defaults` dict still works."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import pytest

from bench.api import ATTACKS, DATASETS, DEFENSES, MODELS, Defense, DefenseInfo, Field, Params, create_defense
from bench.cli import main
from bench.errors import MatrixError
from bench.matrix import load_matrix
from bench.params import ParamError, declared, docs
from bench.plugins import load_plugins
from bench.registry import Registry, check_params

load_plugins()  # the built-in components, as `bench run` loads them
REGISTRIES = (MODELS, ATTACKS, DEFENSES, DATASETS)
BUILT_IN = [(reg, name) for reg in REGISTRIES for name in reg.names()
            if reg.origin_record(name).get("kind") == "built-in"]


def one_line(msg: str) -> bool:
    return len(msg.splitlines()) == 1 and all(c.isprintable() for c in msg)


@pytest.mark.parametrize(("registry", "name"), BUILT_IN, ids=[f"{r.kind}:{n}" for r, n in BUILT_IN])
def test_every_component_declares_each_parameter_with_help(registry, name):
    cls = registry.get(name)
    if cls.defaults:
        assert declared(cls) is not None, f"{registry.kind} {name} declares a plain defaults dict, not Params"
    params = docs(cls)
    assert [p.name for p in params] == list(cls.defaults)  # `defaults` is derived from the declaration
    for p in params:
        assert p.help and "\n" not in p.help, (name, p.name)
        assert p.default == cls.defaults[p.name] and p.type and p.allowed
    registry.check(name, {})  # the declared defaults pass their own declaration


MATRIX = """name = "m"
seed = 0
[models]
{model}
[defenses]
{defense}
[attacks]
{attack}
[datasets]
{dataset}
"""
OK = {"model": "cnniqa = {}", "defense": "none = {}", "attack": "fgsm = { eps = [2] }", "dataset": "embedded = {}"}


@pytest.mark.parametrize(("section", "text", "field", "says"), [
    ("defense", "jpeg = { quality = 120 }", "defenses.jpeg",  # out of range
     "defense 'jpeg': parameter 'quality' must be int in [1, 95], got 120"),
    ("defense", '"ortho+act+prune" = { activation = "tanh" }', "defenses.ortho+act+prune",  # not a choice
     "defense 'ortho+act+prune': parameter 'activation' must be one of 'silu', 'gelu', 'elu', 'none', got 'tanh'"),
    ("defense", 'jpeg = { quality = "high" }', "defenses.jpeg",  # wrong type
     "defense 'jpeg': parameter 'quality' must be int in [1, 95], got 'high'"),
    ("defense", "jpeg = { quality = 50.0 }", "defenses.jpeg",  # a float is not an int
     "defense 'jpeg': parameter 'quality' must be int in [1, 95], got 50.0"),
    ("defense", '"gaussian-blur" = { kernel_size = 4 }', "defenses.gaussian-blur",
     "defense 'gaussian-blur': parameter 'kernel_size' must be an odd int in [3, 11], got 4"),
    ("defense", 'ortho = { block = "rko", kernel_size = 2 }', "defenses.ortho",  # a rule on two parameters
     "defense 'ortho': kernel_size 2 must be odd for the rko block (its identity sits at the centre tap)"),
    ("defense", '"adv-train" = { freeze_bn = 1 }', "defenses.adv-train",
     "defense 'adv-train': parameter 'freeze_bn' must be bool, got 1"),
    ("attack", "pgd = { eps = [2], steps = 0 }", "attacks.pgd",
     "attack 'pgd': parameter 'steps' must be int >= 1, got 0"),
    ("attack", "pgd = { eps = [2], alpha = nan }", "attacks.pgd",
     "attack 'pgd': parameter 'alpha' must be float > 0, got nan"),
    ("dataset", "embedded = { test_fraction = 1.5 }", "datasets.embedded",
     "dataset 'embedded': parameter 'test_fraction' must be float in (0, 1), got 1.5"),
    ("dataset", "embedded = { n_images = 0 }", "datasets.embedded",
     "dataset 'embedded': parameter 'n_images' must be int >= 1 or None, got 0"),
    ("model", "cnniqa = { lr = -1.0 }", "models.cnniqa",
     "model 'cnniqa': parameter 'lr' must be float > 0, got -1.0"),
])
def test_a_bad_value_is_refused_at_matrix_load_in_one_line(tmp_path, section, text, field, says):
    path = tmp_path / "m.toml"
    path.write_text(MATRIX.format(**{**OK, section: text}))
    with pytest.raises(MatrixError) as e:
        load_matrix(str(path))
    msg = str(e.value)
    assert one_line(msg), msg
    assert msg == f"matrix '{path}', field '{field}': {says}"


def test_none_where_not_allowed_is_refused_wherever_a_component_is_created():
    """TOML has no None: it comes from Python (`create_*`) or a registry check."""
    with pytest.raises(ParamError) as e:
        create_defense("jpeg", quality=None)
    assert str(e.value) == "defense 'jpeg': parameter 'quality' must be int in [1, 95], got None"
    assert isinstance(e.value, MatrixError) and isinstance(e.value, ValueError)
    with pytest.raises(ParamError, match=r"^dataset 'koniq10k': parameter 'size' must be int >= 32, got None$"):
        DATASETS.check("koniq10k", {"size": None})
    assert DATASETS.check("koniq10k", {"n_images": None, "root": None})["n_images"] is None  # None allowed here
    with pytest.raises(ParamError, match=r"^defense 'jpeg': unknown parameter\(s\) 'qualty' \(allowed: quality\)$"):
        DEFENSES.get("jpeg")(qualty=3)  # built directly, not through the registry: the same contract


def test_params_keep_the_values_given_so_cell_keys_do_not_move(tmp_path):
    """`component.params` is a plain dict of the values given over the defaults, not
    pydantic's converted copies: an int given for a float stays the int it was."""
    path = tmp_path / "m.toml"
    path.write_text(MATRIX.format(**{**OK, "attack": "pgd = { eps = [2], alpha = 1 }"}))
    (pgd, _), = load_matrix(str(path)).attacks
    assert pgd.params == {"steps": 10, "alpha": 1, "random_start": True}
    assert type(pgd.params) is dict and type(pgd.params["alpha"]) is int
    assert type(create_defense("jpeg").params) is dict


def test_cli_refuses_a_bad_matrix_with_one_line_and_status_2(tmp_path, capsys):
    path = tmp_path / "m.toml"
    path.write_text(MATRIX.format(**{**OK, "defense": "jpeg = { quality = 0 }"}))
    assert main(["run", "--matrix", str(path), "--results", str(tmp_path / "r"), "--no-site"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: matrix '{path}', field 'defenses.jpeg': defense 'jpeg': parameter 'quality' must be " \
                  "int in [1, 95], got 0"
    assert not list((tmp_path / "r").glob("cells/*.json"))


def test_list_params_shows_each_parameter(capsys):
    assert main(["list", "defenses", "--params"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "    quality: int, default 50, allowed [1, 95]; JPEG quality the input is re-encoded at (libjpeg scale)" \
        in lines
    at = lines.index(next(x for x in lines if x.startswith("ortho+act+prune ")))
    assert lines[at + 1].startswith("    insert: str, default 'first', allowed one of 'first', 'all', 'none'; ")
    assert "    lr: float, default 0.0001, allowed [1e-06, 0.0001]; Adam learning rate of the fine-tunes " \
           "(the method's range: fine-tuning only)" in lines
    assert main(["list", "attacks", "--params"]) == 0
    assert "    steps: int, default 10, allowed >= 1; signed-gradient steps" in capsys.readouterr().out.splitlines()


def test_variants_change_only_defaults():
    full, prune = DEFENSES.get("ortho+act+prune"), DEFENSES.get("prune")
    assert prune.defaults == {**full.defaults, "insert": "none", "activation": "none"}
    assert [(d.name, d.type, d.allowed, d.help) for d in docs(prune)] == \
           [(d.name, d.type, d.allowed, d.help) for d in docs(full)]
    create_defense("ortho", amount=0.0)  # no pruning step: the amount is not used
    with pytest.raises(ParamError, match=r"^defense 'prune': amount 0.0 must be in \(0, 1\) when prune is "):
        create_defense("prune", amount=0.0)


def test_a_plain_defaults_dict_still_works():
    """A third-party plugin that declares only `defaults`: types inferred from them."""
    reg = Registry("defense", "bench.defenses")

    @reg.register
    class Legacy(Defense):
        info = DefenseInfo(name="legacy", kind="purification")
        defaults: ClassVar[dict[str, Any]] = {"sigma": 1.0, "steps": 3, "mode": "a", "anything": None}

    assert declared(Legacy) is None
    assert reg.create("legacy", sigma=2, anything=[1]).params == {"sigma": 2, "steps": 3, "mode": "a", "anything": [1]}
    with pytest.raises(MatrixError, match=r"^defense 'legacy': parameter 'steps' must be int like its default 3, "
                                          r"got 1.5$"):
        reg.create("legacy", steps=1.5)
    assert check_params("defense", "x", {"quality": 50}, {"quality": 30}) == {"quality": 30}
    assert [d.line() for d in docs(Legacy)][:2] == ["sigma: float, default 1.0, allowed any float; (no help declared)",
                                                    "steps: int, default 3, allowed any int; (no help declared)"]


def test_a_declaration_is_checked_when_the_class_is_made():
    with pytest.raises(TypeError, match="its own defaults are refused"):
        class Bad(Params):  # its creation is what is tested
            k: int = Field(0, ge=1, description="k")
    with pytest.raises(TypeError, match="has no default"):
        class NoDefault(Params):
            k: int = Field(ge=1, description="k")

    class Sub(DEFENSES.get("jpeg")):  # a subclass overriding `defaults` keeps the declaration
        defaults: ClassVar[dict[str, Any]] = {"quality": 80}

    assert declared(Sub) is not None and Sub(quality=90).params == {"quality": 90}
    with pytest.raises(ParamError, match="must be int in"):
        Sub(quality=99)


def test_defense_page_shows_the_parameters_the_cells_ran_with(tmp_path):
    from test_site import build_store, make_record

    from bench.leaderboard import render_site

    recs = []
    for q, eps in ((50, 2), (50, 4), (30, 8)):
        r = make_record("cnniqa", "jpeg", "fgsm", eps)
        part = {k: {"name": v, "params": {}, "version": "1"} for k, v in r["cell"].items() if k != "eps"}
        part["defense"]["params"] = {"quality": q}
        r["config"] = {**part, "eps_255": float(eps), "seed": 0, "eot_samples": 1}
        recs.append(r)
    recs.append(make_record("cnniqa", "none", "fgsm", 2))  # its record holds no config: not shown
    out = render_site(build_store(tmp_path / "results", recs, examples=False), tmp_path / "site").parent
    html = next(out.glob("defense-jpeg-*.html")).read_text()
    table = re.search(r'<section id="parameters">(.*?)</section>', html, re.DOTALL).group(1)
    assert re.findall(r"<th scope=\"col\">([^<]*)</th>", table) == ["parameter", "2 cells", "1 cell"]
    assert re.search(r"<code>quality</code></th><td><code>50</code></td><td><code>30</code></td>", table)
    none = next(out.glob("defense-none-*.html")).read_text()
    assert "not recorded in the store" in none and 'id="parameters"' not in none
