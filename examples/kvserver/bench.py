"""Overhead of the auxiliary tasks: redis-benchmark against --tasks=inline|thread|orbit.

    python bench.py [-n 200000] [--runs 5] [--keys 100000] [--modes inline,thread,orbit]

For each mode it starts the server, preloads --keys keys (10% with a TTL of
1-60 s, so active expiry has work), sends BGSAVE every --bgsave-every seconds
and turns the slow log on (threshold 10 ms, as Redis's default), then runs
``redis-benchmark -t set,get,incr,lpush,lrange -c 50 --csv`` with -P 1 and
-P 16.  Prints a Markdown table of the medians (and spread) of throughput and
p50/p99 latency over the runs.  Needs redis-benchmark (Debian: redis-tools)
and the redis client.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

HERE = Path(__file__).resolve().parent


def start(mode: str, directory: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-m", "kvserver", "--port", "0", "--dir", directory,
                             "--tasks", mode], cwd=HERE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"ready on [\d.]+:(\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"kvserver ({mode}) did not start: {line!r}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain its log
    return proc, int(m.group(1))


def preload(port: int, keys: int) -> None:
    r = redis.Redis(port=port, protocol=2)
    with r.pipeline(transaction=False) as p:
        for i in range(keys):
            if i % 10 == 0:
                p.set(f"pre:{i}", "x" * 32, ex=random.randint(1, 60))
            else:
                p.set(f"pre:{i}", "x" * 32)
            if i % 10000 == 9999:
                p.execute()
        p.execute()


def bgsaver(port: int, every: float, stop: threading.Event) -> None:
    r = redis.Redis(port=port, protocol=2, socket_timeout=30)
    while not stop.wait(every):
        try:
            r.bgsave()
        except redis.ResponseError:
            pass  # one still running


def benchmark(port: int, n: int, pipeline: int) -> dict[str, dict[str, float]]:
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "set,get,incr,lpush,lrange",
                          "-n", str(n), "-c", "50", "-P", str(pipeline), "--csv"],
                         capture_output=True, text=True, timeout=3600, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    return {row["test"]: {"rps": float(row["rps"]), "p50": float(row["p50_latency_ms"]),
                          "p99": float(row["p99_latency_ms"])} for row in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=200000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keys", type=int, default=100000)
    ap.add_argument("--bgsave-every", type=float, default=5.0)
    ap.add_argument("--modes", default="inline,thread,orbit")
    ap.add_argument("--pipelines", default="1,16")
    a = ap.parse_args()
    results: dict[tuple[str, int, str], dict[str, list[float]]] = {}
    for mode in a.modes.split(","):
        with tempfile.TemporaryDirectory() as d:
            proc, port = start(mode, d)
            stop = threading.Event()
            try:
                preload(port, a.keys)
                redis.Redis(port=port, protocol=2).config_set("slowlog-log-slower-than", 10000)
                threading.Thread(target=bgsaver, args=(port, a.bgsave_every, stop),
                                 daemon=True).start()
                for run in range(a.runs):
                    for pl in map(int, a.pipelines.split(",")):
                        for test, m in benchmark(port, a.n, pl).items():
                            cell = results.setdefault((mode, pl, test), {})
                            for k, v in m.items():
                                cell.setdefault(k, []).append(v)
                        print(f"# {mode} -P {pl} run {run + 1} done", file=sys.stderr)
            finally:
                stop.set()
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    print("| tasks | -P | test | requests/s (median, min-max) | p50 ms | p99 ms |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for (mode, pl, test), cell in results.items():
        rps = cell["rps"]
        print(f"| {mode} | {pl} | {test} | {statistics.median(rps):,.0f} "
              f"({min(rps):,.0f}-{max(rps):,.0f}) | {statistics.median(cell['p50']):.3f} | "
              f"{statistics.median(cell['p99']):.3f} |")


if __name__ == "__main__":
    t0 = time.monotonic()
    main()
    print(f"# {time.monotonic() - t0:.0f} s", file=sys.stderr)
