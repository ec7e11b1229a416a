"""What the layer profile costs: the quick matrix run with and without it, in one run.

The trained models and fitted defenses are cached first (one run, not timed), so that the
timed runs compute every cell again but train nothing: the profile's share of that is its
share of the attack work, the larger of the two shares a user can see (a cold run adds
training, which the profile does not touch). The runs alternate, off then on, `--repeat`
times, each into an empty results store; prints one JSON line with the median of each and
their ratio (issue 16's budget: at most 1.10).

    python benchmarks/profile_cost.py [--repeat N] [--matrix quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(matrix: Path, results: Path, env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench", "run", "--matrix", str(matrix), "--results", str(results),
                    "--no-site", "--no-progress"], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--matrix", default="quick")
    args = ap.parse_args()
    from bench.matrix import MATRIX_DIR

    text = (MATRIX_DIR / f"{args.matrix}.toml").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        env = dict(os.environ, BENCH_CACHE=str(tmp_path / "cache"))
        on, off = tmp_path / "on.toml", tmp_path / "off.toml"
        on.write_text(text)
        off.write_text(f"profile = false\n{text}")
        timed_run(off, tmp_path / "warm-up", env)  # trains and fits into the cache
        times: dict[str, list[float]] = {"off": [], "on": []}
        for i in range(args.repeat):
            for name, matrix in (("off", off), ("on", on)):
                times[name].append(timed_run(matrix, tmp_path / f"{name}-{i}", env))
                print(f"run {i + 1}/{args.repeat} profile {name}: {times[name][-1]:.1f} s", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"matrix": args.matrix, "profile_off_s": round(med["off"], 1), "profile_on_s": round(med["on"], 1),
                      "on_off_ratio": round(med["on"] / med["off"], 3), "runs_each": args.repeat,
                      "cores": os.cpu_count()}))


if __name__ == "__main__":
    main()
