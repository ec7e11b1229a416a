"""Fault injection: killed runs resume to the same numbers, a second run on the same
results folder is refused, plugins that hang or eat memory fail only their own cells,
a corrupt record is recomputed, a full disk never leaves half a record."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_matrix
from test_plugins import run_small

from bench.cli import main
from bench.errors import BenchError
from bench.lock import RunLock
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
    # a fresh cache for the killed runs: the first kill lands while CNNIQA trains
    env["BENCH_CACHE"] = str(tmp_path / "cache-killed")
    results = tmp_path / "killed"
    kept = [_kill_after(_run_cmd(matrix, results), results, n, env) for n in (0, 3, 8)]
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


HOGS = '''
import time
import torch
from bench.api import Defense, DefenseInfo, register_defense


@register_defense
class Hangs(Defense):
    info = DefenseInfo(name="hangs-forever", kind="purification")

    def purify(self, x):
        if x.requires_grad:  # hangs in the attack, after the clean scores are taken
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


def test_plugins_that_hang_or_eat_memory_fail_only_their_own_cells(tmp_path, capsys):
    from bench.guard import rss_bytes

    f = tmp_path / "hogs.py"
    f.write_text(HOGS)
    limit_gb = round(rss_bytes() / 2**30 + 1.5, 1)
    t0 = time.monotonic()
    code, recs = run_small(tmp_path, '"hangs-forever" = {}\n"eats-memory" = {}', [f],
                           extra=["--cell-timeout", "10", "--max-memory-gb", str(limit_gb)])
    assert time.monotonic() - t0 < 90  # the hang costs its 10 s; the rest must not wait on it
    by = {r["cell"]["defense"]: r for r in recs}
    assert code == 1
    assert by["none"]["status"] == "ok"
    assert by["hangs-forever"]["status"] == "error"
    assert "time limit of 10 s" in by["hangs-forever"]["message"] and "--cell-timeout" in by["hangs-forever"]["message"]
    assert by["eats-memory"]["status"] == "error"
    assert f"memory limit of {limit_gb:g} GB" in by["eats-memory"]["message"]
    out = capsys.readouterr().out
    assert "1 ok" in out and "2 error" in out


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
        store.put({"key": "ab12", "status": "ok"})
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
