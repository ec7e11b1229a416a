"""A run that meets another run, Ctrl-C or SIGKILL: `--wait` waits for the other run's
lock and then proceeds (or gives up with status 3 naming the holder); SIGINT stops after
the finished cells, says so and keeps them; a SIGKILL while a model trains resumes to
exactly the numbers of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import fresh_cache

import bench.lock
from bench.cli import main
from bench.lock import RunLock
from bench.store import ResultsStore

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="signals and flock are Linux's")

ONE_CELL = """
name = "one"
seed = 0
batch_size = 8
[models]
piqe = {}
[defenses]
none = {}
[attacks]
fgsm = { eps = [4] }
[datasets]
embedded = { size = 48, n_images = 8 }
"""

# 12 PIQE cells in two groups: enough that a run is still going when its first record lands
TWELVE_CELLS = """
name = "twelve"
seed = 0
batch_size = 8
[models]
piqe = {}
[defenses]
none = {}
jpeg = {}
[attacks]
fgsm = { eps = [2, 4, 8] }
pgd = { eps = [2, 4, 8], steps = 3 }
[datasets]
embedded = { size = 48, n_images = 8 }
"""

# CNNIQA trained here, on a small train split (test_fraction 0.9: 2 of the 18 reference
# photos and their distortions, ~120 images), so that training takes a second or two
TRAINS = """
name = "trains"
seed = 0
batch_size = 8
[models]
cnniqa = {{ epochs = {epochs} }}
[defenses]
none = {{}}
{defenses}
[attacks]
fgsm = {{ eps = [4] }}
pgd = {{ eps = [4], steps = 3 }}
[datasets]
embedded = {{ size = 48, n_images = 8, test_fraction = 0.9 }}
"""

TRAINING_LINE = "model 'cnniqa': no published weights here; training it on the dataset's train split"
TIMING = ("seconds", "setup_seconds")


def _run_cmd(matrix: Path, results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bench", "run", "--matrix", str(matrix), "--results", str(results),
            "--no-site", "--no-progress", *extra]


def _numbers(results: Path) -> dict[str, dict]:
    """Every number of every record but the timings, by cell key."""
    out = {}
    for r in ResultsStore(results).records():
        assert r["status"] == "ok", r["message"]
        out[r["key"]] = {"metrics": {k: v for k, v in r["metrics"].items() if k not in TIMING},
                         "per_image": r["per_image"], "flags": r["flags"]}
    return out


# ----------------------------------------------------------------------------- --wait
def test_wait_waits_for_the_lock_then_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock is held by another thread (flock locks belong to open files, so a second
    open in the same process is refused like another process): the run waits, polling,
    and computes its cell only after the holder lets go."""
    (tmp_path / "m.toml").write_text(ONE_CELL)
    results = tmp_path / "r"
    polls: list[float] = []
    monkeypatch.setattr(bench.lock, "time", SimpleNamespace(
        monotonic=time.monotonic, sleep=lambda s: (polls.append(time.monotonic()), time.sleep(s))))
    held, released = threading.Event(), []

    def holder() -> None:
        with RunLock(results):
            held.set()
            deadline = time.monotonic() + 120
            while not polls and time.monotonic() < deadline:  # until the run is waiting on the lock
                time.sleep(0.01)
            time.sleep(1.0)
            released.append(time.time())

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(30)
    start = time.monotonic()
    code = main(["run", "--matrix", str(tmp_path / "m.toml"), "--results", str(results), "--no-site",
                 "--no-progress", "--wait", "60"])
    t.join()
    assert code == 0
    assert len(polls) >= 2 and polls[-1] - polls[0] >= 0.5  # it waited through several polls
    assert time.monotonic() - start >= 1.0
    (record,) = (results / "cells").glob("*.json")
    assert record.stat().st_mtime >= released[0]  # computed after the holder let go
    assert [r["status"] for r in ResultsStore(results).records()] == ["ok"]


def test_a_wait_too_short_gives_up_with_status_3_naming_the_holder(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.toml").write_text(ONE_CELL)
    results = tmp_path / "r"
    script = ("import time; from bench.lock import RunLock\n"
              f"with RunLock({str(results)!r}):\n    print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        start = time.monotonic()
        code = main(["run", "--matrix", str(tmp_path / "m.toml"), "--results", str(results), "--no-site",
                     "--no-progress", "--wait", "1.2"])
        waited = time.monotonic() - start
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert code == 3
    assert 1.2 <= waited < 30
    assert f"error: results folder '{results}' is in use by a running `bench run` (pid {holder.pid}: -c)" in err
    assert not (results / "cells").exists() or not list((results / "cells").glob("*.json"))


# ----------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_stops_after_finished_cells_keeps_them_and_a_rerun_computes_the_rest(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    matrix = tmp_path / "m.toml"
    matrix.write_text(TWELVE_CELLS)
    results = tmp_path / "r"
    fresh_cache(tmp_path / "cache")  # the data is there; nothing else is
    env = {**os.environ, "BENCH_CACHE": str(tmp_path / "cache")}
    # Ctrl-C as at a terminal: the child starts with SIGINT's default action, whatever this
    # test process inherited or set (a runner that ignores SIGINT would pass SIG_IGN on)
    proc = subprocess.Popen(_run_cmd(matrix, results), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    cells = results / "cells"
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        if cells.is_dir() and any(cells.glob("*.json")):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, (out, err)
    assert err.rstrip().endswith("interrupted: finished cells are saved; run the same command again to resume")
    assert "Traceback" not in err and out == ""  # no summary: the run did not finish
    kept = {p.name: p.read_bytes() for p in cells.glob("*.json")}
    assert 1 <= len(kept) < 12, len(kept)
    assert not list(cells.glob(".*.tmp"))  # nothing half-written
    assert all(r["status"] == "ok" for r in ResultsStore(results).records())  # every kept record is whole

    capsys.readouterr()
    os.environ["BENCH_CACHE"], saved = str(tmp_path / "cache"), os.environ["BENCH_CACHE"]
    try:
        assert main(["run", "--matrix", str(matrix), "--results", str(results), "--no-site", "--no-progress"]) == 0
    finally:
        os.environ["BENCH_CACHE"] = saved
    out = capsys.readouterr().out
    assert out.startswith(f"12 cells: {len(kept)} already in the store, {12 - len(kept)} ok (")
    assert {p.name: p.read_bytes() for p in cells.glob("*.json") if p.name in kept} == kept  # not recomputed
    assert len(list(cells.glob("*.json"))) == 12


SWALLOWS_CTRL_C = """
import os, signal
from bench.api import Attack, AttackInfo, register_attack


@register_attack
class SwallowsCtrlC(Attack):
    info = AttackInfo(name="swallows-ctrl-c", needs_gradients=False, reference="test", description="Ctrl-C inside")

    def perturb(self, objective, x, eps):
        try:  # as a library might: the interrupt comes back as an ordinary error
            os.kill(os.getpid(), signal.SIGINT)
            import time; time.sleep(5)
        except KeyboardInterrupt as e:
            raise RuntimeError("interrupted inside a library") from e
        return x
"""


def test_ctrl_c_that_a_library_turns_into_an_error_still_stops_the_run_and_records_no_failure(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C turned into a RuntimeError inside a cell: not that cell's error (which a
    rerun would skip), but an interrupted run, exit 130, its finished cells kept."""
    (tmp_path / "swallow.py").write_text(SWALLOWS_CTRL_C)
    matrix = tmp_path / "m.toml"
    matrix.write_text(TWELVE_CELLS.replace("pgd = { eps = [2, 4, 8], steps = 3 }", "swallows-ctrl-c = { eps = [8] }"))
    results = tmp_path / "r"
    os.environ["BENCH_CACHE"] = str(fresh_cache(tmp_path / "cache"))  # the conftest's guard restores it
    # Ctrl-C as at a terminal: Python's own handler, whatever an earlier test's library installed
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = main(["run", "--matrix", str(matrix), "--results", str(results), "--no-site", "--no-progress",
                     "--plugin", str(tmp_path / "swallow.py")])
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, before)
    err = capsys.readouterr().err
    assert code == 130 and err.rstrip().endswith("run the same command again to resume"), err
    recs = list(ResultsStore(results).records())
    assert recs and all(r["status"] == "ok" for r in recs)  # the FGSM cells before it; no error record
    assert after is signal.default_int_handler  # the run gave the handler back
    # the next run in this process is not taken for interrupted, whatever handler SIGINT has
    again = tmp_path / "again.toml"
    again.write_text(TWELVE_CELLS.replace("pgd = { eps = [2, 4, 8], steps = 3 }", ""))
    signal.signal(signal.SIGINT, lambda *_: None)
    try:
        assert main(["run", "--matrix", str(again), "--results", str(results), "--no-site", "--no-progress"]) == 0
    finally:
        signal.signal(signal.SIGINT, before)


# ----------------------------------------------------------------------------- SIGKILL while training
def _state(cache: Path) -> dict[str, torch.Tensor]:
    (pt,) = (cache / "models").glob("cnniqa-*.pt")
    return torch.load(pt, weights_only=True)


def test_sigkill_while_a_model_trains_then_resume_gives_exactly_the_uninterrupted_numbers(tmp_path: Path) -> None:
    matrix = tmp_path / "m.toml"
    matrix.write_text(TRAINS.format(epochs=3, defenses=""))
    reference, cache_ref = tmp_path / "reference", fresh_cache(tmp_path / "cache-ref")
    done = subprocess.run(_run_cmd(matrix, reference), env={**os.environ, "BENCH_CACHE": str(cache_ref)},
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert TRAINING_LINE in done.stderr
    expected = _numbers(reference)
    assert len(expected) == 2

    results, cache = tmp_path / "killed", fresh_cache(tmp_path / "cache-killed")
    env = {**os.environ, "BENCH_CACHE": str(cache)}
    proc = subprocess.Popen(_run_cmd(matrix, results), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    seen = []
    for line in proc.stderr:  # stderr is line-buffered: the line arrives as it is written
        seen.append(line)
        if TRAINING_LINE in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    # killed while it trained: no checkpoint written, no cell computed
    assert not list((cache / "models").glob("cnniqa-*")) and not list((results / "cells").glob("*.json"))

    resumed = subprocess.run(_run_cmd(matrix, results), env=env, capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("2 cells: 0 already in the store, 2 ok (")
    got = _numbers(results)
    assert got.keys() == expected.keys()
    for key, numbers in expected.items():
        assert got[key] == numbers, key  # exactly: every metric, every per-image score
    ref_state, state = _state(cache_ref), _state(cache)
    assert ref_state.keys() == state.keys()
    assert all(torch.equal(ref_state[k], state[k]) for k in ref_state), "the retrained weights differ"
