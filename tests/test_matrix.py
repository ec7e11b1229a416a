import pytest
from conftest import write_matrix

from bench.errors import MatrixError, UnknownNameError
from bench.matrix import load_matrix
from bench.plugins import load_plugins

load_plugins()


def test_quick_matrix_crosses_everything():
    m = load_matrix("quick")
    cells = m.cells()
    assert len(cells) == len(m.models) * len(m.defenses) * sum(len(e) for _, e in m.attacks) * len(m.datasets)
    assert len({c.key for c in cells}) == len(cells)


def test_changing_one_parameter_changes_exactly_its_cells(tmp_path):
    a = {c.key: c for c in load_matrix(str(write_matrix(tmp_path / "a.toml", quality=50))).cells()}
    b = {c.key: c for c in load_matrix(str(write_matrix(tmp_path / "b.toml", quality=70))).cells()}
    changed = [c for k, c in a.items() if k not in b]
    assert changed and all(c.defense.name == "jpeg" for c in changed)
    assert len(changed) == sum(1 for c in a.values() if c.defense.name == "jpeg")


@pytest.mark.parametrize(
    "old,new,match",
    [
        ('suite = "tiny-v1"', 'suite = "tiny-v1"\ncolour = 3', "unknown field 'colour'"),
        ("piqe = {}", "piqe = 3", "field 'models.piqe' must be a table"),
        ("jpeg = { quality = 50 }", "jpeg = { quality = \"high\" }", "defenses.jpeg.*must be int"),
        ("pgd = { eps = [4, 8], steps = 3 }", "pgd = { steps = 3 }", "attacks.pgd.eps.*missing"),
        ("fgsm = { eps = [4] }", "fgsm = { eps = [300] }", "outside \\(0, 1\\]"),
        ("fgsm = { eps = [4] }", "fgsm = { eps = [0.03] }", "set eps_unit = \"1\""),
        ('suite = "tiny-v1"', 'suite = "tiny-v1"\neps_unit = "1"', "did you mean 4/255"),
        ("seed = 0", "seed = \"zero\"", "field 'seed' must be int"),
        ("[datasets]\nembedded = { size = 48, n_images = 8 }", "", "field 'datasets' is missing"),
    ],
)
def test_bad_fields_are_named(tmp_path, old, new, match):
    path = write_matrix(tmp_path / "bad.toml", **{old: new})
    assert new in path.read_text() or not new
    with pytest.raises(MatrixError, match=match) as e:
        load_matrix(str(path))
    assert str(path) in str(e.value)


def test_unknown_component_names_the_field_and_close_names(tmp_path):
    path = write_matrix(tmp_path / "bad.toml", **{"jpeg = {": "jepg = {"})
    with pytest.raises(UnknownNameError, match="unknown defense 'jepg'; did you mean jpeg.*field 'defenses'"):
        load_matrix(str(path))


def test_invalid_toml_is_reported(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text("models = [")
    with pytest.raises(MatrixError, match="not valid TOML"):
        load_matrix(str(p))


def test_unknown_builtin_matrix_name():
    with pytest.raises(UnknownNameError, match="unknown matrix 'quik'; did you mean quick"):
        load_matrix("quik")


def test_blocks_add_cross_products_that_inherit_what_they_do_not_name(tmp_path):
    from bench.plugins import load_plugins

    load_plugins()
    f = tmp_path / "b.toml"
    f.write_text("""
name = "b"
[models]
piqe = {}
[defenses]
none = {}
[attacks]
fgsm = { eps = [2, 4] }
[datasets]
embedded = { n_images = 8 }
[blocks.jpeg-too]
defenses = { none = {}, jpeg = { quality = 30 } }
attacks = { fgsm = { eps = [4, 8] } }
""")
    m = load_matrix(str(f))
    labels = sorted(c.label for c in m.cells())
    # top: none x fgsm@2,4; block: (none, jpeg) x fgsm@4,8; none/fgsm@4 is one cell, not two
    assert labels == sorted(["piqe/none/fgsm@2/embedded", "piqe/none/fgsm@4/embedded", "piqe/none/fgsm@8/embedded",
                             "piqe/jpeg/fgsm@4/embedded", "piqe/jpeg/fgsm@8/embedded"])
    f.write_text(f.read_text().replace("attacks = {", "atacks = {"))
    with pytest.raises(MatrixError, match="unknown field 'blocks.jpeg-too.atacks'"):
        load_matrix(str(f))


def test_full_covers_every_registered_component_and_budget():
    from bench.api import ATTACKS, DEFENSES, MODELS

    def builtin(registry) -> set[str]:  # other tests register plugins in this process too
        return {n for n in registry.names() if registry.origin(n).split(".")[0] in ("bench", "defenses", "baselines")}

    cells = load_matrix("full").cells()
    assert {c.defense.name for c in cells} == builtin(DEFENSES)
    assert {c.attack.name for c in cells} == builtin(ATTACKS)
    # the official BRISQUE needs a weight file that cannot be had offline (see full.toml)
    assert {c.model.name for c in cells} == builtin(MODELS) - {"brisque"}
    for attack in builtin(ATTACKS):
        assert {c.eps for c in cells if c.attack.name == attack} >= {2.0, 4.0, 8.0}
