"""GIL relief: main serving request-like work while a CPU-heavy maintenance
task (a scan of a large dict) runs every 100 ms, in a thread vs in an orbit
vs no task at all, and the same scan in a plain forked process as the control
for what running any work on the other CPU costs main: main's per-request
latency (p50/p99) and throughput.

Measured in a subprocess (_gil_worker.py, whose docstring says exactly what
runs), one run for the four variants, 3 s each in quick mode with a
300,000-entry table, 10 s each with 1,000,000 entries in the full mode.  Each
variant's request latencies are replayed as one benchmark of group
"gil-relief" (their raw samples feed the report's latency CDF); extra_info
has the throughput, p50/p99 and how many scans completed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ._benchutil import by_mode, replay

HERE = Path(__file__).resolve().parent
SECONDS = by_mode(3.0, 10.0)
ENTRIES = by_mode(300_000, 1_000_000)
VARIANTS = ["none", "thread", "orbit", "process"]

pytestmark = pytest.mark.benchmark(group="gil-relief")


def quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(HERE / "_gil_worker.py"), str(SECONDS),
                           str(ENTRIES)], capture_output=True, text=True,
                          timeout=60 + 6 * SECONDS, check=False)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_gil_relief(benchmark: Any, run: dict[str, Any], variant: str) -> None:
    v = run["variants"][variant]
    samples = v["samples"]
    benchmark.extra_info.update(
        kind="gil", variant=variant, entries=run["entries"], seconds=run["seconds"],
        scan_ms=round(run["scan_ms"], 1), build_s=round(run["build_s"], 2),
        switch_interval_ms=run["switch_interval_ms"], requests=v["requests"],
        throughput=round(v["throughput"], 1), scans=v["scans"],
        p50_s=quantile(samples, 0.50), p99_s=quantile(samples, 0.99),
        p999_s=quantile(samples, 0.999))
    replay(benchmark, samples, "subprocess _gil_worker.py, perf_counter per request")
