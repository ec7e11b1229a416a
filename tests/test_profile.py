"""The layer profile (bench/profile.py), operator norms (bench/opnorm.py) and their files
(bench/profile_store.py): known values on layers of known behaviour, power iteration
against the explicit matrix, identical files after a killed and resumed run, no change to
any measure, the export table and the site page."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from conftest import fresh_cache
from test_interrupts import _run_cmd

from bench import opnorm, profile_store
from bench.cli import main
from bench.profile import INPUT, SCORE, Probe, random_like, select_layers
from bench.store import ResultsStore
from defenses.orthoflow.layers import CayleyConv2d


class Scale(nn.Module):
    """A scaled identity: its operator norm is |s| and it changes no relative change."""

    def __init__(self, s: float) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.tensor(s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.s * x


def cayley(channels: int, scale: float) -> CayleyConv2d:
    torch.manual_seed(0)
    block = CayleyConv2d(channels, 3)
    with torch.no_grad():
        block.weight.normal_(0, 0.3)  # far from the identity it starts at
        block.scale.fill_(scale)
    return block.eval()


def known_linear(singular: list[float], n: int) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    """A bias-free n -> n linear layer U diag(s) V^T, with V's first and last columns (the
    input directions of the largest and smallest singular values)."""
    g = torch.Generator().manual_seed(1)
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    s = torch.zeros(n, dtype=torch.float64)
    s[: len(singular)] = torch.tensor(singular, dtype=torch.float64)
    lin = nn.Linear(n, n, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(u @ torch.diag(s) @ v.T)
    return lin, v[:, 0], v[:, len(singular) - 1]


def test_layers_of_known_behaviour_report_their_known_amplification_and_norms() -> None:
    """ReLU on positive inputs, an orthogonal Cayley block (any scale), a scaled identity:
    the relative change goes through each unchanged (amplification 1); the linear head's
    value is its own ratio; the norms are |scale|, |s| and the largest singular value."""
    c, hw = 3, 8
    lin, _, _ = known_linear([5.0, 3.0, 2.0, 0.5], c * hw * hw)
    net = nn.Sequential(nn.ReLU(), cayley(c, 1.7), Scale(-2.5), nn.Flatten(), lin.float()).eval()
    probe = Probe(net, net, seed=0)
    assert [(n, k) for n, _, k in probe.layers] == [("0", "activation"), ("1", "layer"), ("2", "layer"), ("4", "linear")]
    g = torch.Generator().manual_seed(2)
    x = 0.3 + 0.4 * torch.rand(4, c, hw, hw, generator=g)
    d = 0.05 * (2 * torch.rand(x.shape, generator=g) - 1)  # x + d stays positive: ReLU passes it as it is
    (amp,) = probe.run(x, [x + d], start=0)
    assert probe.order == [INPUT, "0", "1", "2", "4", SCORE]
    torch.testing.assert_close(amp[:4], torch.ones(4, 4, dtype=torch.float64), rtol=2e-5, atol=0)
    a_in = (-2.5 * net[1](x)).flatten(1).double()  # the head's input, clean and perturbed
    d_in = (-2.5 * net[1](x + d)).flatten(1).double() - a_in
    head = ((d_in @ lin.weight.double().T).norm(dim=1) / (a_in @ lin.weight.double().T).norm(dim=1)
            / (d.flatten(1).double().norm(dim=1) / x.flatten(1).double().norm(dim=1)))
    torch.testing.assert_close(amp[4], head, rtol=1e-4, atol=0)
    torch.testing.assert_close(amp[5], head, rtol=1e-4, atol=0)  # the head's output is the score

    # the Cayley block says its norm (|scale|), and power iteration on its Jacobian agrees
    assert opnorm.spectral_norm(net[1], probe.inputs["1"]) == (pytest.approx(1.7, rel=1e-6), "self-reported")
    assert opnorm.jacobian_norm(net[1], probe.inputs["1"]) == pytest.approx(1.7, rel=1e-4)
    assert opnorm.spectral_norm(cayley(c, -0.8), probe.inputs["1"]) == (pytest.approx(0.8, rel=1e-6), "self-reported")
    how = "power-iteration (Jacobian at the clean input)"
    assert opnorm.spectral_norm(net[2], probe.inputs["2"]) == (pytest.approx(2.5, rel=1e-5), how)
    assert opnorm.spectral_norm(lin, probe.inputs["4"]) == (pytest.approx(5.0, rel=1e-6), "exact")  # float32 weights


def test_a_linear_layer_amplifies_by_the_ratio_of_its_singular_values_along_their_directions() -> None:
    """Clean input along the smallest singular direction, perturbation along the largest:
    the relative change grows by exactly s_max / s_min."""
    lin, v_max, v_min = known_linear([5.0, 3.0, 2.0, 0.5], 6)
    x = torch.stack([v_min, 2 * v_min])
    (amp,) = Probe(lin, lin, seed=0).run(x, [x + 1e-3 * v_max], start=0)
    torch.testing.assert_close(amp[1], torch.full((2,), 10.0, dtype=torch.float64), rtol=1e-9, atol=0)


@pytest.fixture
def one_thread():
    """Power iteration on a tiny grid is hundreds of tiny ops: one thread each, not a pool's wake-ups."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("spec", [
    {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": 1},
    {"in_channels": 3, "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1},  # output_padding: size back
    {"in_channels": 2, "out_channels": 4, "kernel_size": 3, "dilation": 2, "padding": 2, "groups": 2},
    {"in_channels": 3, "out_channels": 2, "kernel_size": (2, 3), "stride": (2, 1)},
])
def test_power_iteration_matches_the_largest_singular_value_of_the_explicit_matrix(spec: dict, one_thread: None) -> None:
    torch.manual_seed(3)
    conv = nn.Conv2d(**spec).double()
    shape = (conv.in_channels, 6, 5)
    op = lambda v: F.conv2d(v, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    jac = torch.func.jacrev(op)(torch.zeros(1, *shape, dtype=torch.float64))  # (out..., 1, in...): the matrix
    explicit = float(torch.linalg.matrix_norm(jac.reshape(-1, torch.Size(shape).numel()), ord=2))
    assert opnorm.conv2d_norm(conv, shape, iters=3000, tol=1e-13) == pytest.approx(explicit, rel=1e-9)
    norm, how = opnorm.spectral_norm(conv, torch.zeros(1, *shape, dtype=torch.float64))
    assert how == "power-iteration" and explicit * (1 - 1e-3) < norm <= explicit * (1 + 1e-12)  # from below


def test_wrappers_and_containers_are_not_layers_and_outputs_replaced_by_hooks_are_read_before() -> None:
    """A module holding every layer only repeats the score, a Sequential is not a layer of
    its own; a block whose layers are not all of the model is one; a conv's own output is
    read before another hook passes it on through something else."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
            self.head = nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x).mean((2, 3))).squeeze(1)

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = Net()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    w = Wrapper().eval()
    assert [(n, k) for n, _, k in select_layers(w)] == [("net.body.0", "conv"), ("net.body.1", "activation"),
                                                        ("net.head", "linear")]
    conv = w.net.body[0]
    conv.register_forward_hook(lambda m, a, o: o + 100.0)  # what follows the conv sees more than its output
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 6, 6, generator=g)
    d = 0.01 * torch.rand(x.shape, generator=g)
    probe = Probe(w, w, seed=0)
    (amp,) = probe.run(x, [x + d], start=0)
    assert probe.order == [INPUT, "net.body.0", "net.body.1", "net.head", SCORE]
    own = (conv._conv_forward(x + d, conv.weight, conv.bias) - conv._conv_forward(x, conv.weight, conv.bias))
    rel = own.flatten(1).norm(dim=1) / conv._conv_forward(x, conv.weight, conv.bias).flatten(1).norm(dim=1)
    expected = rel.double() / (d.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)).double()
    torch.testing.assert_close(amp[1], expected, rtol=1e-4, atol=0)


def test_a_kept_clean_pass_a_watched_pass_and_smaller_slices_give_the_same_amplification(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clean pass kept for a group's next cell, the run's own pass read instead of one
    of the profile's, and slices of one image where memory is short, change no value."""
    from bench import profile

    torch.manual_seed(6)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 1)).eval()
    x = torch.rand(3, 3, 8, 8)
    d = 0.01 * torch.randn(x.shape)
    reference = Probe(net, net, seed=0).run(x, [x + d], start=0)
    probe = Probe(net, net, seed=0)
    probe.run(x, [x + 2 * d], start=0)  # a first cell keeps the clean pass
    assert list(probe.cache) == [0]
    assert torch.equal(probe.run(x, [x + d], start=0), reference)
    watched = Probe(net, net, seed=0)  # read off someone else's pass over the perturbed images
    with torch.no_grad(), watched.watching(x, x + d, start=0) as found:
        net(x + d)
    torch.testing.assert_close(found[0], reference[0], rtol=1e-6, atol=0)
    sliced = Probe(net, net, seed=0)
    sliced.clean(x[:1], -1)
    monkeypatch.setattr(profile, "PROBE_BYTES", sliced.bytes_per_image * 1.5)  # one image a pass
    torch.testing.assert_close(sliced.run(x, [x + d], start=0), reference, rtol=1e-4, atol=0)  # float32 sums
    assert sorted(sliced.cache) == [0, 1, 2]


def test_a_randomized_forward_draws_the_same_noise_for_clean_and_perturbed_and_the_callers_state_is_kept() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)).eval()

    def noisy(z: torch.Tensor) -> torch.Tensor:  # a randomized defense in front of the model
        return net(z + 0.1 * torch.randn_like(z))

    x = torch.rand(2, 3, 8, 8)
    torch.manual_seed(7)
    state = torch.get_rng_state()
    (amp,) = Probe(net, noisy, seed=0).run(x, [x + 1e-3], start=0)
    assert torch.equal(torch.get_rng_state(), state)
    # the input the model sees is x + noise: with one draw for both passes its change is d's
    assert ((amp[0] - 1).abs() < 0.2).all()


def test_random_control_has_the_adversarial_norm_and_stays_in_range() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, 3, 8, 8, generator=g) * 0.8 + 0.1
    d = (torch.rand(x.shape, generator=g) - 0.5) * 0.02
    r = random_like(d, x, seed=5)
    torch.testing.assert_close((r - x).flatten(1).norm(dim=1), d.flatten(1).norm(dim=1), rtol=1e-5, atol=0)
    assert torch.equal(r, random_like(d, x, seed=5)) and not torch.equal(r, random_like(d, x, seed=6))
    assert 0 <= float(random_like(d * 100, x, seed=5).min()) and float(random_like(d * 100, x, seed=5).max()) <= 1


# ----------------------------------------------------------------------------- in a run
KILL_ONCE = '''"""A test attack: a random signed step of size eps; while the file named by
$PROFILE_TEST_KILL is missing, it creates it and kills its own process (SIGKILL)."""
import os
import signal

import torch

from bench.api import Attack, AttackInfo, register_attack


@register_attack
class KillOnce(Attack):
    info = AttackInfo(name="kill-once", needs_gradients=False, reference="test", description="random step")

    def perturb(self, objective, x, eps):
        marker = os.environ.get("PROFILE_TEST_KILL")
        if marker and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return x + eps * torch.sign(torch.randn_like(x))
'''

# CNNIQA trained here for one epoch on a small train split, two groups (the second with an
# orthogonal block after the first conv, one fine-tune), two batches a cell; the kill comes
# at the first group's second cell
MATRIX = """
name = "profiled"
seed = 0
batch_size = 4
{extra}
[models]
cnniqa = {{ epochs = 1 }}
[defenses]
none = {{}}
ortho = {{ epochs = 1 }}
[attacks]
pgd = {{ eps = [4], steps = 2 }}
kill-once = {{ eps = [4] }}
[datasets]
embedded = {{ size = 48, n_images = 8, test_fraction = 0.9 }}
"""


def _files(results: Path) -> dict[str, bytes]:
    base = results / profile_store.DIR
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*.json"))}


def _measures(results: Path) -> dict[str, tuple]:
    """Every record's measures but the timings, and its per-image scores, by key."""
    out = {}
    for r in ResultsStore(results).records():
        assert r["status"] == "ok", r["message"]
        out[r["key"]] = ({k: v for k, v in r["metrics"].items() if k not in ("seconds", "setup_seconds")},
                         r["per_image"], r["flags"])
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The reference run (uninterrupted, with the profile), on a cache of its own."""
    tmp = tmp_path_factory.mktemp("profile-runs")
    (tmp / "kill_once.py").write_text(KILL_ONCE)
    matrix = tmp / "m.toml"
    matrix.write_text(MATRIX.format(extra=""))
    env = {**os.environ, "BENCH_CACHE": str(fresh_cache(tmp / "cache"))}
    env.pop("PROFILE_TEST_KILL", None)
    plugin = ["--plugin", str(tmp / "kill_once.py")]
    done = subprocess.run(_run_cmd(matrix, tmp / "reference", *plugin), env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    return {"tmp": tmp, "matrix": matrix, "env": env, "plugin": plugin, "reference": tmp / "reference"}


def test_profiles_of_a_killed_and_resumed_run_are_those_of_the_uninterrupted_one(runs: dict) -> None:
    """SIGKILL in the first group's second cell, then the same command again: every profile
    file, the group's included (written again by the resumed run), is byte for byte the
    reference's, as every measure is."""
    results, env = runs["tmp"] / "killed", {**runs["env"], "PROFILE_TEST_KILL": str(runs["tmp"] / "killed.marker")}
    killed = subprocess.run(_run_cmd(runs["matrix"], results, *runs["plugin"]), env=env, capture_output=True,
                            text=True, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    kept = _files(results)
    assert len(list((results / "cells").glob("*.json"))) == 1 and len(kept) == 2  # the group's file, one cell's
    assert not list((results / profile_store.DIR).rglob(".*.tmp"))  # nothing half-written
    resumed = subprocess.run(_run_cmd(runs["matrix"], results, *runs["plugin"]), env=env, capture_output=True,
                             text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("4 cells: 1 already in the store, 3 ok (")
    reference = _files(runs["reference"])
    assert len(reference) == 2 + 4  # a group file each, a cell file each
    assert _files(results) == reference
    assert _measures(results) == _measures(runs["reference"])


def test_the_profile_changes_no_measure_and_a_matrix_field_turns_it_off(runs: dict) -> None:
    matrix = runs["tmp"] / "off.toml"
    matrix.write_text(MATRIX.format(extra="profile = false"))
    results = runs["tmp"] / "off"
    done = subprocess.run(_run_cmd(matrix, results, *runs["plugin"]), env=runs["env"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert not (results / profile_store.DIR).exists()
    assert _measures(results) == _measures(runs["reference"])  # same keys: the field is no part of them


def test_the_matrix_field_is_a_boolean(tmp_path: Path) -> None:
    from bench.errors import MatrixError
    from bench.matrix import load_matrix

    for extra, on in (("", True), ("profile = false", False), ("profile = true", True)):
        (tmp_path / "m.toml").write_text(MATRIX.format(extra=extra).replace("kill-once", "fgsm"))
        assert load_matrix(str(tmp_path / "m.toml")).profile is on
    (tmp_path / "m.toml").write_text(MATRIX.format(extra="profile = 0").replace("kill-once", "fgsm"))
    with pytest.raises(MatrixError, match="field 'profile' must be bool, got 0"):
        load_matrix(str(tmp_path / "m.toml"))


def test_export_reads_the_profile_tables_with_pandas(runs: dict, tmp_path: Path) -> None:
    ref = runs["reference"]
    for table, n_rows in (("profile", None), ("profile-pooled", None), ("gradients", 2)):
        out = tmp_path / f"{table}.csv"
        assert main(["export", "--results", str(ref), "--table", table, "--out", str(out)]) == 0
        df = pd.read_csv(out)
        assert n_rows is None or len(df) == n_rows
    prof = pd.read_csv(tmp_path / "profile.csv")
    layers = {d: list(g.sort_values("depth")["layer"].unique()) for d, g in prof.groupby("defense")}
    assert layers["none"] == [INPUT, "net.conv1", "net.fc1", "net.fc2", "net.fc3", SCORE]
    assert layers["ortho"] == [INPUT, "net.conv1", "net.conv1.orthogonal", "net.fc1", "net.fc2", "net.fc3",
                                         SCORE]
    assert len(prof) == 2 * 2 * (len(layers["none"]) + len(layers["ortho"]))  # 2 cells a group, 2 perturbations
    assert set(prof["n"]) == {8}  # images with a value
    inputs = prof[(prof["layer"] == INPUT)]
    assert (inputs["amplification"] == 1).all()  # no purification: the model sees the perturbation as it is
    ortho = prof[(prof["defense"] == "ortho") & prof["layer"].isin(["net.conv1", "net.conv1.orthogonal"])]
    by_layer = ortho.pivot_table(index=["key", "perturbation"], columns="layer", values="amplification")
    # an orthogonal block passes the relative change on unchanged: its amplification is its input's
    assert ((by_layer["net.conv1.orthogonal"] / by_layer["net.conv1"] - 1).abs() < 1e-3).all()
    block = prof[prof["layer"] == "net.conv1.orthogonal"].iloc[0]
    assert block["opnorm"] == pytest.approx(1.0, abs=0.05) and block["opnorm_method"] == "self-reported"
    grads = pd.read_csv(tmp_path / "gradients.csv")
    assert (grads["grad_l1"] > grads["grad_l2"]).all() and (grads["grad_l2"] > 0).all()  # ||g||_1 >= ||g||_2


def test_the_site_has_a_profile_page_per_model_linked_from_the_claim(runs: dict, tmp_path: Path) -> None:
    from bench.leaderboard import render_site

    index = render_site(runs["reference"], tmp_path / "site")
    out = index.parent
    (page,) = out.glob("profile-*.html")
    html = page.read_text()
    assert "net.conv1.orthogonal" in html and "adversarial" in html and "first-order bound" in html
    (plot,) = out.glob("plots/profile-*.png")
    assert plot.stat().st_size > 0 and f'src="plots/{plot.name}"' in html
    assert (out / "data" / f"{page.stem}.csv").is_file() and (out / "data" / f"{page.stem}-gradients.csv").is_file()
    claim = (out / "claim.html").read_text()
    assert f'href="{page.name}"' in claim and "Where the perturbation grows" in claim
