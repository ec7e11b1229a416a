"""Cold and warm wall time of `python -m bench run --matrix quick`, measured in one run.

Cold: an empty results store and an empty cache (the embedded data is built, CNNIQA is
trained, the orthogonal-flow defense is fitted). Warm: the same command again, every
cell already in the store. Prints one JSON line; targets: cold <= 300 s on 2 CPU cores,
warm/cold <= 0.1.

    python benchmarks/quick_run.py [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def timed_run(results: str, env: dict[str, str], jobs: int) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench", "run", "--matrix", "quick", "--results", results, "--site-out",
                    os.path.join(results, "site"), "--no-progress", "--jobs", str(jobs)],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1)
    jobs = ap.parse_args().jobs
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, BENCH_CACHE=os.path.join(tmp, "cache"))
        results = os.path.join(tmp, "results")
        cold = timed_run(results, env, jobs)
        warm = timed_run(results, env, jobs)
    print(json.dumps({"quick_cold_s": round(cold, 1), "quick_warm_s": round(warm, 2),
                      "warm_cold_ratio": round(warm / cold, 4), "jobs": jobs, "cores": os.cpu_count()}))


if __name__ == "__main__":
    main()
