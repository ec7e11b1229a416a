import re
from pathlib import Path

import pytest
from conftest import write_matrix

from bench.errors import MatrixError, UnknownNameError
from bench.matrix import load_matrix
from bench.plugins import load_plugins

load_plugins()


ROOT = Path(__file__).resolve().parent.parent
# bench/matrices/quick.toml, read by hand: piqe, cnniqa x none, ortho+act+prune, jpeg,
# adv-train x fgsm, pgd x eps 2, 4, 8 x embedded
QUICK = [(m, d, a, e, "embedded") for m in ("piqe", "cnniqa") for d in ("none", "ortho+act+prune", "jpeg", "adv-train")
         for a in ("fgsm", "pgd") for e in (2.0, 4.0, 8.0)]
QUICK_CELLS = 48  # 2 models x 4 defenses x 2 attacks x 3 budgets x 1 dataset


def test_quick_matrix_crosses_everything():
    cells = load_matrix("quick").cells()
    assert len(QUICK) == QUICK_CELLS and len(cells) == QUICK_CELLS
    assert sorted((c.model.name, c.defense.name, c.attack.name, c.eps, c.dataset.name) for c in cells) == sorted(QUICK)
    assert len({c.key for c in cells}) == len(cells)


def test_readme_states_the_quick_matrix_cell_count():
    """The README's number is the one `load_matrix('quick')` gives: a matrix changed
    without its README fails here (and so does a README changed alone)."""
    n = len(load_matrix("quick").cells())
    assert n == QUICK_CELLS
    readme = " ".join((ROOT / "README.md").read_text().split())  # line breaks are not content
    stated = re.findall(r"`bench/matrices/quick\.toml`: (\d+) cells \(2 models x 4 defenses x 2 attacks x 3 "
                        r"budgets x 1 dataset\)", readme)
    assert stated == [str(n)]


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
    # a defense that must be given published weights (info.needs_weights: real-esrgan) cannot run offline
    assert {c.defense.name for c in cells} == {n for n in builtin(DEFENSES) if not DEFENSES.get(n).info.needs_weights}
    assert {c.attack.name for c in cells} == builtin(ATTACKS)
    # what cannot run offline: the official BRISQUE's weight file (see full.toml), the zoo's and the
    # paper models' published files (bench/matrices/paper.toml), models listed as not run here
    offline = {n for n in builtin(MODELS) if not (MODELS.get(n).published_files() or MODELS.get(n).info.unavailable)}
    assert {c.model.name for c in cells} == offline - {"brisque", "koncept512", "linearityiqa"}
    for attack in builtin(ATTACKS):  # a flow attack's eps is in pixels: its own block's [0.5, 1] px
        linf = ATTACKS.get(attack).info.norm == "Linf"
        assert {c.eps for c in cells if c.attack.name == attack} >= ({2.0, 4.0, 8.0} if linf else {0.5, 1.0})


# ----------------------------------------------------------------------------- [claim]: the site's roles, as data
def test_builtin_matrices_name_todays_claim_roles():
    quick, full, standard = (load_matrix(n).claim for n in ("quick", "full", "standard"))
    assert quick["method"] == full["method"] == ["ortho+act+prune"]
    assert quick["rivals"] == full["rivals"] == ["none", "adv-train"]
    assert full["controls"] == ["ortho", "ortho+act", "act", "prune", "finetune-only", "nt"]
    assert quick["reference"] == full["reference"] == standard["reference"] == "none"
    assert quick["suite"] == full["suite"] == standard["suite"] == "standard-v3"
    assert standard["method"] == []  # the standard suite tests no method: only the reference and the suite


def test_seeds_matrix_repeats_quick_on_cnniqa_and_is_fulls_claim_block_on_resnet18():
    seeds, quick, full = (load_matrix(n) for n in ("seeds", "quick", "full"))
    assert seeds.seeds == [0, 1, 2] and seeds.split_seeds == "fixed" and seeds.seed == quick.seed == full.seed
    cells = seeds.cells()
    assert len(cells) == 3 * (4 * 2 * 3 + 7 * 3)
    # seed 0's CNNIQA cells are quick's own; ResNet-18's are the full matrix's claim block, key for key
    assert {c.key for c in cells if c.model.name == "cnniqa" and c.seed == 0} == \
        {c.key for c in quick.cells() if c.model.name == "cnniqa"}
    claim = next(b for b in full.blocks if b.name == "claim")
    assert {c.key for c in cells if c.model.name == "resnet18_iqa"} == \
        {c.key for c in full.cells() if c.model.name == "resnet18_iqa" and c.seed in claim.seeds
         and c.defense.name in {d.name for d in claim.defenses} and c.attack.name == "pgd"}


def test_claim_roles_are_checked_one_line_each(tmp_path):
    ok = write_matrix(tmp_path / "ok.toml", extra_defenses='"ortho+act+prune" = {}\n"adv-train" = {}')
    plain = {c.key for c in load_matrix(str(ok)).cells()}
    good = ok.read_text() + ('\n[claim]\nmethod = ["ortho+act+prune", "jpeg"]\nrivals = ["none", "adv-train"]\n'
                             'reference = "none"\nlabels = { "adv-train" = "adversarial training" }\nsuite = "standard-v3"\n')
    f = tmp_path / "claim.toml"
    f.write_text(good)
    m = load_matrix(str(f))
    assert m.claim == {"method": ["ortho+act+prune", "jpeg"], "rivals": ["none", "adv-train"], "reference": "none",
                       "suite": "standard-v3", "labels": {"adv-train": "adversarial training"}}
    assert {c.key for c in m.cells()} == plain  # roles change no cell key
    bad = [
        ('method = ["ortho+act+prune", "jpeg"]', 'method = "ortho"',
         ("field 'claim.method' names 'ortho', not a defense of this matrix (its defenses: none, jpeg, "
          "ortho+act+prune, adv-train)")),
        ('rivals = ["none", "adv-train"]', 'rivals = ["none", "nt\\n"]', r"field 'claim.rivals' names 'nt\\n', not a"),
        ('rivals = ["none", "adv-train"]', 'rivals = ["none", "jpeg"]', "'claim.method' names too: give each defense"),
        ('rivals = ["none", "adv-train"]', 'rivals = "none"', "field 'claim.rivals' must be a list of defense names"),
        ('rivals = ["none", "adv-train"]', 'rivals = ["none", "none"]', "field 'claim.rivals' names 'none' twice"),
        ('reference = "none"', 'reference = "jpeg"', "'claim.method' names too"),
        ('reference = "none"', 'reference = 3', "field 'claim.reference' must be a defense's name (the undefended reference for clean loss), got 3"),
        ('suite = "standard-v3"', 'suits = "standard-v3"', "unknown field 'claim.suits' (allowed: method, rivals"),
        ('labels = { "adv-train" = "adversarial training" }', 'labels = { piqe = "a model" }',
         "field 'claim.labels.piqe' labels a defense with no role"),
        ('method = ["ortho+act+prune", "jpeg"]', 'method = []', "field 'claim.method' must be"),
        ('method = ["ortho+act+prune", "jpeg"]\n', '', "field 'claim.rivals' needs a method to compare"),
    ]
    for old, new, match in bad:
        assert old in good, old
        f.write_text(good.replace(old, new))
        with pytest.raises(MatrixError, match=re.escape(match) if "\\\\" not in match else match) as e:
            load_matrix(str(f))
        assert len(str(e.value).splitlines()) == 1, str(e.value)
    # a block's defenses are the matrix's defenses too
    f.write_text(ok.read_text() + '[blocks.more]\ndefenses = { nt = {} }\n[claim]\nmethod = "nt"\n')
    assert load_matrix(str(f)).claim == {"method": ["nt"]}
