"""Measure synchronous empty orbit calls in a fresh process, for variants that
need an environment fixed before the first orbit starts (ORBITPY_SPIN_US is
read once per process and inherited by orbits forked afterwards).

Usage: python _sync_worker.py ROUNDS WARMUP [PLACEMENT]  (environment set)
PLACEMENT: "free" (default: the scheduler decides), "split" (main on one CPU,
the orbit on another) or "same" (both on one CPU).
Prints JSON: {"samples": [seconds, ...], "spin_us": "...", "calls": n, ...}.
Each sample is timed like a pytest-benchmark pedantic round: perf_counter()
right before and right after ``fn()``.
"""

from __future__ import annotations

import json
import os
import sys
import time

import orbitpy


def main() -> int:
    rounds, warmup = int(sys.argv[1]), int(sys.argv[2])
    placement = sys.argv[3] if len(sys.argv) > 3 else "free"
    cpus = None
    if placement != "free":
        mine = sorted(os.sched_getaffinity(0))
        if placement == "split" and len(mine) < 2:
            raise SystemExit("split placement needs two CPUs")
        os.sched_setaffinity(0, {mine[0]})  # main (the orbit is forked from it)
        cpus = [mine[1] if placement == "split" else mine[0]]

    @orbitpy.orbit(name="bench-sync-env", cpus=cpus)
    def empty() -> None:
        return None

    try:
        for _ in range(warmup):
            empty()
        samples = []
        timer = time.perf_counter
        for _ in range(rounds):
            t0 = timer()
            empty()
            samples.append(timer() - t0)
        calls = empty.orbit.stats()["calls"]
    finally:
        empty.orbit.close()
    json.dump({"samples": samples, "spin_us": os.environ.get("ORBITPY_SPIN_US"),
               "calls": calls, "placement": placement, "orbit_cpus": cpus}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
