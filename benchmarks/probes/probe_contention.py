"""Question: how slow are sync calls when other processes keep the CPUs busy?

Sync call latency when the CPUs are contended (not part of the pytest run).

orbitpy's main and orbit each spin ORBITPY_SPIN_US (default 100 µs) before
sleeping.  When a CPU hog takes one of the two CPUs, main and the orbit
sometimes share the other one, and a side that spins keeps the CPU from the
side it is waiting for: such calls take about twice the spin.

    python benchmarks/probes/probe_contention.py [HOGS]            # default spin
    ORBITPY_SPIN_US=0 python benchmarks/probes/probe_contention.py [HOGS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import orbitpy


def main() -> None:
    nhogs = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(nhogs)]
    try:
        time.sleep(0.3)

        @orbitpy.orbit(name="probe-contention")
        def empty() -> None:
            return None

        try:
            for _ in range(200):
                empty()
            times = []
            for _ in range(2000):
                t0 = time.perf_counter()
                empty()
                times.append(time.perf_counter() - t0)
        finally:
            empty.orbit.close()
        times.sort()
        spin = os.environ.get("ORBITPY_SPIN_US", "100 (default)")
        med = statistics.median(times) * 1e6
        p90 = times[len(times) * 9 // 10] * 1e6
        slow = sum(t > 150e-6 for t in times)
        print(f"{nhogs} CPU hog(s), ORBITPY_SPIN_US={spin}: sync call median {med:.1f} µs, "
              f"p90 {p90:.1f} µs, calls over 150 µs: {slow} of {len(times)}")
    finally:
        for h in hogs:
            h.kill()
            h.wait()


if __name__ == "__main__":
    main()
