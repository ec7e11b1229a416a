"""Fault injection: killed runs resume to the same numbers, a second run on the same
results folder is refused, plugins that hang or eat memory fail only their own cells,
a corrupt record is recomputed, a full disk never leaves half a record."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import pytest
from conftest import write_matrix
from test_plugins import run_small

from bench.cli import main
from bench.errors import BenchError
from bench.lock import RunLock
from bench.record import MEASURES
from bench.store import ResultsStore

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="signals, flock and /proc are Linux's")


def _run_cmd(matrix: Path, results: Path) -> list[str]:
    return [sys.executable, "-m", "bench", "run", "--matrix", str(matrix), "--results", str(results),
            "--no-site", "--no-progress"]


def _numbers(results: Path) -> dict[str, tuple]:
    out = {}
    for r in ResultsStore(results).records():
        assert r["status"] == "ok", r["message"]
        m = r["metrics"]
        out[r["key"]] = (m["abs_gain"], m["srocc_clean"], m["psnr"], *r["per_image"]["clean"],
                         *r["per_image"]["attacked"])
    return out


def _kill_after(cmd: list[str], results: Path, n_cells: int, env: dict[str, str]) -> int:
    """Start a real run and SIGKILL it once `n_cells` records exist (0: as soon as it works)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cells = results / "cells"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        have = len(list(cells.glob("*.json"))) if cells.is_dir() else 0
        if have >= n_cells and (n_cells or (results / ".lock").exists()):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return len(list(cells.glob("*.json"))) if cells.is_dir() else 0


def test_sigkill_at_several_points_then_resume_equals_an_uninterrupted_run(tmp_path):
    matrix = write_matrix(tmp_path / "m.toml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BENCH_CACHE": str(tmp_path / "cache")}
    reference = tmp_path / "reference"
    subprocess.run(_run_cmd(matrix, reference), env=env, check=True, capture_output=True)
    expected = _numbers(reference)
    assert len(expected) == 12
    # the reference's cache (CNNIQA trained): kills while cells run; a kill while a model trains is
    # test_interrupts' test_sigkill_while_a_model_trains_...
    results = tmp_path / "killed"
    kept = [_kill_after(_run_cmd(matrix, results), results, n, env) for n in (3, 8)]
    assert kept[-1] < 12, f"the run finished before it could be killed: {kept}"
    leftovers = [p.name for p in (results / "cells").glob(".*.tmp")]
    assert not leftovers, f"half-written records left behind: {leftovers}"
    done = subprocess.run(_run_cmd(matrix, results), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"{kept[-1]} already in the store" in done.stdout
    got = _numbers(results)
    assert got.keys() == expected.keys()
    for key, numbers in expected.items():
        assert got[key] == pytest.approx(numbers, abs=1e-6), key


def test_a_second_run_on_the_same_results_is_refused(tmp_path, capsys):
    matrix = write_matrix(tmp_path / "m.toml")
    results = tmp_path / "r"
    with RunLock(results):
        code = main(["run", "--matrix", str(matrix), "--results", str(results), "--no-site", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3
    assert "is in use by a running `bench run`" in err and f"pid {os.getpid()}" in err and "--wait" in err
    assert not list((results / "cells").glob("*.json"))


def test_a_stale_lock_of_a_dead_run_is_taken_over(tmp_path):
    results = tmp_path / "r"
    results.mkdir()
    (results / ".lock").write_text("pid 999999: python -m bench run --matrix quick")  # its process is gone
    with RunLock(results) as lock:
        assert lock.took_over == "pid 999999: python -m bench run --matrix quick"
        assert (results / ".lock").read_text().startswith(f"pid {os.getpid()}")
    assert (results / ".lock").read_text() == ""


def test_the_lock_is_released_when_its_process_is_killed(tmp_path):
    results = tmp_path / "r"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from bench.lock import RunLock\n"
                               f"with RunLock({str(results)!r}):\n    print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(Exception, match="in use"), RunLock(results):
        pass
    holder.kill()
    holder.wait()
    with RunLock(results) as lock:
        assert lock.took_over and f"pid {holder.pid}" in lock.took_over


HANG_LOG = '''
import os
import time
from contextlib import contextmanager


@contextmanager
def logged_hang():
    """Each hang writes a line when it starts and, when stopped, how long it lasted."""
    log = os.environ["BENCH_TEST_HANG_LOG"]
    with open(log, "a") as f:
        f.write("entered\\n")
    t0 = time.monotonic()
    try:
        yield
    finally:
        with open(log, "a") as f:
            f.write(f"stopped after {time.monotonic() - t0:.3f} s\\n")
'''

HOGS = HANG_LOG + '''
import torch
from bench.api import Defense, DefenseInfo, register_defense


@register_defense
class Hangs(Defense):
    info = DefenseInfo(name="hangs-forever", kind="purification")

    def purify(self, x):
        if x.requires_grad:  # hangs where gradients are first taken, after the clean scores
            with logged_hang():
                while True:
                    time.sleep(0.01)
        return x


@register_defense
class EatsMemory(Defense):
    info = DefenseInfo(name="eats-memory", kind="purification")

    def purify(self, x):
        if x.requires_grad:
            hoard = []
            while True:
                hoard.append(torch.ones(2**24))  # 64 MB a step, without bound
        return x
'''


class PeakRss:
    """This process's resident memory: at the start, and the most seen (sampled every 10 ms)."""

    def __enter__(self) -> Self:
        import threading

        from bench.guard import rss_bytes

        self.start = self.peak = rss_bytes()
        self._stop = threading.Event()

        def watch() -> None:
            while not self._stop.wait(0.01):
                self.peak = max(self.peak, rss_bytes())

        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def hang_log(path: Path) -> list[float]:
    """How long each logged hang lasted; every hang that started was stopped."""
    lines = path.read_text().splitlines() if path.exists() else []
    assert lines[::2] == ["entered"] * ((len(lines) + 1) // 2), lines
    assert all(x.startswith("stopped after ") and x.endswith(" s") for x in lines[1::2]) and len(lines) % 2 == 0, lines
    return [float(x.removeprefix("stopped after ").removesuffix(" s")) for x in lines[1::2]]


def test_plugins_that_hang_or_eat_memory_fail_only_their_own_cells(tmp_path, capsys, monkeypatch):
    import math

    import psutil

    from bench.guard import rss_bytes

    # The baseline, measured here, in this process, under whatever load the machine has:
    # the run with the undefended cell alone, its wall time and the memory it needs (after
    # a first run that builds the data, as the run under test will find it built).
    for d in ("warm", "base"):
        (tmp_path / d).mkdir()
    assert run_small(tmp_path / "warm", "", [])[0] == 0
    with PeakRss() as mem:
        t0 = time.monotonic()
        code, _ = run_small(tmp_path / "base", "", [])
        base_s = time.monotonic() - t0
    assert code == 0
    # The memory limit: the baseline's peak plus a margin that the undefended cell, run
    # again, cannot reach (half its own growth, at least 0.5 GB); eats-memory passes it.
    margin = max(0.5 * 2**30, 0.5 * (mem.peak - mem.start))
    limit_gb = math.ceil((mem.peak + margin) / 2**30 * 10) / 10
    if psutil.virtual_memory().available < limit_gb * 2**30 - rss_bytes() + 2**30:
        pytest.skip(f"too little free memory to let a plugin grow to {limit_gb} GB")
    f = tmp_path / "hogs.py"
    f.write_text(HOGS)
    monkeypatch.setenv("BENCH_TEST_HANG_LOG", str(tmp_path / "hang.log"))
    capsys.readouterr()  # the baseline's lines
    t0 = time.monotonic()
    code, recs = run_small(tmp_path, '"hangs-forever" = {}\n"eats-memory" = {}', [f],
                           extra=["--cell-timeout", "10", "--max-memory-gb", str(limit_gb)])
    wall = time.monotonic() - t0
    by = {r["cell"]["defense"]: r for r in recs}
    # The hang was entered once and cost at most its limit (it starts after the clean scores,
    # within the set-up the limit covers), the set-up it failed took the limit, with
    # generous margins (a stopped sleep returns at once) ...
    (hang,) = hang_log(tmp_path / "hang.log")
    assert 0 < hang <= 10 + 5, hang
    m = by["hangs-forever"]["metrics"]
    hung = m["setup_seconds"] + m["seconds"]
    assert 10 <= hung <= 10 + 5 + base_s, (hung, base_s)
    # ... and the rest of the run cost about what the baseline did: nothing else waited on it
    assert wall - hung <= 3 * base_s + 20, (wall, hung, base_s)
    assert code == 1
    assert by["none"]["status"] == "ok"
    assert by["hangs-forever"]["status"] == "error"
    assert "time limit of 10 s" in by["hangs-forever"]["message"] and "--cell-timeout" in by["hangs-forever"]["message"]
    assert by["eats-memory"]["status"] == "error"
    assert f"memory limit of {limit_gb:g} GB" in by["eats-memory"]["message"]
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"3 cells: 0 already in the store, 2 error, 1 ok \(\d+\.\d s\)", out[0]), out
    assert sorted(": ".join(line.split(": ", 2)[:2]) for line in out[1:]) == [
        "  error: piqe/eats-memory/fgsm@4/embedded", "  error: piqe/hangs-forever/fgsm@4/embedded"], out


def test_a_corrupt_record_is_reported_and_recomputed(tmp_path, capsys):
    code, recs = run_small(tmp_path, "", [])
    assert code == 0
    path = ResultsStore(tmp_path / "r").path(recs[0]["key"])
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # truncated, as by a crash of the disk
    with pytest.warns(UserWarning, match="corrupt result record .* will be recomputed"):
        code, _ = run_small(tmp_path, "", [])
    assert code == 0 and "1 ok" in capsys.readouterr().out
    timing = {"seconds", "setup_seconds"}
    new = json.loads(path.read_text())["metrics"]
    assert {k: v for k, v in new.items() if k not in timing} == {k: v for k, v in recs[0]["metrics"].items()
                                                                if k not in timing}


@pytest.mark.parametrize("corrupt", ["edited metric", "[]", "null", "42"])
def test_a_record_that_is_valid_json_but_not_what_was_written_is_recomputed(tmp_path, capsys, corrupt):
    """The checksum catches a hand-edited number; JSON that is no record at all is caught
    too (it crashed the store), and both cells are computed again to the same numbers."""
    code, recs = run_small(tmp_path, "", [])
    assert code == 0
    path = ResultsStore(tmp_path / "r").path(recs[0]["key"])
    if corrupt == "edited metric":
        rec = json.loads(path.read_text())
        rec["metrics"]["abs_gain"] = 0.0  # a better-looking defense, checksum left as it was
        path.write_text(json.dumps(rec))
        why = "checksum mismatch"
    else:
        path.write_text(corrupt)
        why = "valid JSON, but a .*, not a record"
    capsys.readouterr()
    with pytest.warns(UserWarning, match=f"corrupt result record .*{why}.* will be recomputed"):
        code, _ = run_small(tmp_path, "", [])
    assert code == 0 and "1 ok" in capsys.readouterr().out
    new = json.loads(path.read_text())["metrics"]
    assert new["abs_gain"] == recs[0]["metrics"]["abs_gain"] != 0.0


def test_an_error_cell_is_retried_on_the_next_run(tmp_path, capsys):
    f = tmp_path / "flaky.py"
    flag = tmp_path / "fixed"
    f.write_text(f'''
from pathlib import Path
from bench.api import Defense, DefenseInfo, register_defense

@register_defense
class Flaky(Defense):
    info = DefenseInfo(name="flaky", kind="purification")

    def purify(self, x):
        if not Path({str(flag)!r}).exists():
            raise RuntimeError("not fixed yet")
        return x
''')
    code, recs = run_small(tmp_path, "flaky = {}", [f])
    assert code == 1
    flag.touch()
    capsys.readouterr()
    code, recs = run_small(tmp_path, "flaky = {}", [f])
    assert code == 0 and all(r["status"] == "ok" for r in recs)
    assert "1 retried after an earlier error" in capsys.readouterr().out


def test_a_full_disk_leaves_no_half_written_record(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "r")
    real_fsync = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(BenchError, match="No space left .* nothing was half-written .* run the same command again"):
        store.put({"key": "ab12", "status": "ok", "metrics": {"n_images": 0, **dict.fromkeys(MEASURES, 0.0)},
                   "cell": {"model": "m", "defense": "d", "attack": "a", "eps": 4, "dataset": "x"}})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert not list((tmp_path / "r" / "cells").iterdir())
    assert store.get("ab12") is None


@pytest.mark.parametrize("name", ["../escape", "a/b", "a\\b", "..", ".hidden", "tab\there"])
def test_names_that_could_build_paths_are_refused(name):
    from bench.api import Defense, DefenseInfo
    from bench.registry import Registry

    cls = type("Hostile", (Defense,), {"info": DefenseInfo(name=name, kind="purification")})
    with pytest.raises(ValueError, match="may not contain"):
        Registry("defense", "bench.test").register(cls)


def test_a_plugin_with_a_path_name_fails_to_load_and_the_run_says_which(tmp_path, capsys):
    f = tmp_path / "hostile.py"
    f.write_text('''
from bench.api import Defense, DefenseInfo, register_defense

@register_defense
class Hostile(Defense):
    info = DefenseInfo(name="../escape", kind="purification")
''')
    code, recs = run_small(tmp_path, "", [f])
    err = capsys.readouterr().err
    assert code == 0 and all(r["status"] == "ok" for r in recs)  # the cells that do not need it run
    assert "warning: a plugin failed to load" in err and "hostile.py" in err and "may not contain" in err


HANGING_FIT = HANG_LOG + '''
import pyiqa  # noqa: F401 - the measures (PSNR, SSIM) import it on first use: here, outside any limit

from bench.api import Defense, DefenseInfo, IQAModel, ModelInfo, register_defense, register_model


@register_model
class MeanScore(IQAModel):
    """Scores the train split in no time, so that the set-up reaches the fit well within
    its limit (PIQE took 23 s for it on 2 loaded cores: the limit fired before any fit)."""

    info = ModelInfo(name="mean-score", lower_better=False, score_range=(0.0, 1.0), kind="classic",
                     differentiable=True)

    def forward(self, x):
        return x.mean(dim=(1, 2, 3))


@register_defense
class HangsInFit(Defense):
    info = DefenseInfo(name="hangs-in-fit", kind="training")

    def fit(self, model, ctx):
        with logged_hang():
            while True:
                time.sleep(0.01)
'''


def test_a_fit_that_hangs_under_jobs_fails_only_its_own_cells(tmp_path):
    """Training and fitting run before the cells (on a worker, with all cores) under the
    same limits as a group's set-up: a fit that hangs costs its time limit once and fails
    its own group's cells; the other group is computed. The limit (10 s) leaves the honest
    work of a set-up or a cell, a second or two here, a wide margin on a loaded machine."""
    from test_plugins import SMALL

    plugin = tmp_path / "hang.py"
    plugin.write_text(HANGING_FIT)
    matrix = tmp_path / "m.toml"
    matrix.write_text(SMALL.format(defenses='"hangs-in-fit" = {}').replace("eps = [4]", "eps = [4, 8]")
                      .replace("piqe = {}", '"mean-score" = {}'))
    cmd = [*_run_cmd(matrix, tmp_path / "r"), "--plugin", str(plugin), "--jobs", "2", "--cell-timeout", "10"]
    env = {**os.environ, "BENCH_TEST_HANG_LOG": str(tmp_path / "hang.log")}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, check=False)  # a hard stop only
    assert out.returncode == 1, out.stderr
    # the fit was entered once (not again for the group, nor per cell) and cost at most its
    # limit, with a generous margin (a stopped sleep returns at once)
    (hang,) = hang_log(tmp_path / "hang.log")
    assert 0 < hang <= 10 + 5, hang
    by = {}
    for r in ResultsStore(tmp_path / "r").records():
        by.setdefault(r["cell"]["defense"], []).append(r)
    assert [r["status"] for r in by["none"]] == ["ok", "ok"]
    assert [r["status"] for r in by["hangs-in-fit"]] == ["error", "error"]
    for r in by["hangs-in-fit"]:
        assert r["message"].startswith(f"defense 'hangs-in-fit' (plugin file {plugin} (sha256 ")
        assert r["message"].endswith("CellLimitError: set-up of mean-score/hangs-in-fit/embedded: stopped after the "
                                     "per-cell time limit of 10 s (raise it with --cell-timeout)"), r["message"]
