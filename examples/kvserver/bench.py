"""Overhead of the auxiliary tasks: redis-benchmark against --tasks=inline|thread|orbit.

    python bench.py [-n 200000] [--runs 5] [--keys 1000000] [--modes inline,thread,orbit]

Each run starts a fresh server per mode (the modes' order rotates from run to
run, so drift on a shared machine does not favour one), preloads --keys keys
(made by the server: DEBUG POPULATE; --volatile of them then get a TTL spread
over --ttl-min..--ttl-max seconds, so active expiry has work during the whole
run), warms up (one BGSAVE, waited for: see warm_up), sends BGSAVE every
--bgsave-every seconds, keeps the slow log on
(threshold 10 ms, Redis's default), and runs ``redis-benchmark -t
set,get,incr,lpush,lrange_100 -c 50 --csv`` (--tests) with -P 1 and -P 16.
Prints a Markdown table: the median over the runs of requests/s (with
min-max), of p50 and of p99 latency, and each mode's median throughput as a
ratio of inline's; --json writes every run's numbers.
Needs redis-benchmark (Debian: redis-tools) and the redis client.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
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
from typing import Any

import redis

HERE = Path(__file__).resolve().parent


def start(mode: str, directory: str, arena_size: int) -> tuple[subprocess.Popen[str], int]:
    cmd = [sys.executable, "-m", "kvserver", "--port", "0", "--dir", directory, "--tasks", mode]
    if arena_size:
        cmd += ["--arena-size", str(arena_size)]
    proc = subprocess.Popen(cmd, cwd=HERE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"ready on [\d.]+:(\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"kvserver ({mode}) did not start: {line!r}")
    threading.Thread(target=_drain, args=(proc, mode), daemon=True).start()
    return proc, int(m.group(1))


def _drain(proc: subprocess.Popen[str], mode: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:  # the server's log: task failures would show here
        print(f"# [{mode}] {line.rstrip()}", file=sys.stderr)


def preload(port: int, keys: int, volatile: float, ttl: tuple[int, int]) -> None:
    """--keys keys of 32 bytes made by the server (DEBUG POPULATE, as with
    Redis), then a TTL on every 1/volatile-th of them (pipelined EXPIREs)."""
    r = redis.Redis(port=port, protocol=2, socket_timeout=300)
    r.execute_command("DEBUG", "POPULATE", keys, "pre", 32)
    every = round(1 / volatile) if volatile > 0 else 0
    if every:
        with r.pipeline(transaction=False) as p:
            for i in range(0, keys, every):
                p.expire(f"pre:{i}", random.randint(*ttl))
                if i % (10000 * every) == 0:
                    p.execute()
            p.execute()
    r.close()


def warm_up(r: redis.Redis) -> None:
    """One BGSAVE, waited for, and a second for the periodic tasks: the first
    orbit calls after a bulk load copy the whole arena into each orbit's copy
    (seconds at 1M keys: README, "BGSAVE: main's stall"), which the benchmark
    would otherwise count against whichever test ran first.  Every mode gets
    the same warm-up."""
    r.bgsave()
    deadline = time.monotonic() + 300
    while r.info("persistence")["rdb_bgsave_in_progress"] and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)


def bgsaver(port: int, every: float, stop: threading.Event) -> None:
    r = redis.Redis(port=port, protocol=2, socket_timeout=60)
    while not stop.wait(every):
        try:
            r.bgsave()
        except redis.ResponseError:
            pass  # one still running: Redis answers the same
    r.close()


def benchmark(port: int, n: int, pipeline: int, tests: str) -> dict[str, dict[str, float]]:
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", tests,
                          "-n", str(n), "-c", "50", "-P", str(pipeline), "--csv"],
                         capture_output=True, text=True, timeout=3600, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    return {row["test"]: {"rps": float(row["rps"]), "p50": float(row["p50_latency_ms"]),
                          "p99": float(row["p99_latency_ms"])} for row in rows}


def one_run(mode: str, a: argparse.Namespace) -> dict[str, Any]:
    """A fresh server: preload, tasks firing, both pipelines."""
    with tempfile.TemporaryDirectory() as d:
        proc, port = start(mode, d, a.arena_size)
        stop = threading.Event()
        try:
            t0 = time.monotonic()
            preload(port, a.keys, a.volatile, (a.ttl_min, a.ttl_max))
            r = redis.Redis(port=port, protocol=2, socket_timeout=60)
            r.config_set("slowlog-log-slower-than", 10000)
            loaded = time.monotonic() - t0
            warm_up(r)
            saver = threading.Thread(target=bgsaver, args=(port, a.bgsave_every, stop))
            saver.start()
            t0 = time.monotonic()
            results = {str(pl): benchmark(port, a.n, pl, a.tests)
                       for pl in map(int, a.pipelines.split(","))}
            stop.set()
            saver.join()
            info = r.info()
            r.close()
            return {"mode": mode, "results": results, "preload_s": loaded,
                    "bench_s": time.monotonic() - t0,
                    "bgsaves": info.get("rdb_saves"), "expired": info.get("active_expired_keys"),
                    "task_failures": info.get("task_failures"), "keys_left": info.get("db0")}
        finally:
            stop.set()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=200000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keys", type=int, default=1000000)
    ap.add_argument("--volatile", type=float, default=0.1, help="share of keys with a TTL")
    ap.add_argument("--ttl-min", type=int, default=30)
    ap.add_argument("--ttl-max", type=int, default=600)
    ap.add_argument("--arena-size", type=int, default=1 << 30)
    ap.add_argument("--bgsave-every", type=float, default=5.0)
    ap.add_argument("--modes", default="inline,thread,orbit")
    ap.add_argument("--pipelines", default="1,16")
    ap.add_argument("--tests", default="set,get,incr,lpush,lrange_100",
                    help="redis-benchmark -t (its 'lrange' adds LRANGE_300/500/600, "
                         "minutes per run here)")
    ap.add_argument("--json", help="write every run's numbers here")
    a = ap.parse_args()
    modes = a.modes.split(",")
    runs: list[dict[str, Any]] = []
    for run in range(a.runs):
        for mode in modes[run % len(modes):] + modes[:run % len(modes)]:
            got = one_run(mode, a)
            got["run"] = run + 1
            runs.append(got)
            print(f"# run {run + 1} {mode}: preload {got['preload_s']:.0f} s, bench "
                  f"{got['bench_s']:.0f} s, {got['bgsaves']} BGSAVEs, {got['expired']} keys "
                  f"expired actively, {got['task_failures']} task failures", file=sys.stderr)
            if a.json:
                Path(a.json).write_text(json.dumps(runs, indent=1))
    report(runs, modes)


def report(runs: list[dict[str, Any]], modes: list[str]) -> None:
    cells: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for got in runs:
        for pl, tests in got["results"].items():
            for test, m in tests.items():
                cell = cells.setdefault((pl, test, got["mode"]), {})
                for k, v in m.items():
                    cell.setdefault(k, []).append(v)
    head = " | ".join(f"{m} req/s (min-max) | p50 / p99 ms" for m in modes)
    ratios = " | ".join(f"{m}/{modes[0]}" for m in modes[1:])
    print(f"| -P | test | {head} | {ratios} |")
    print("| ---: | --- |" + " ---: | ---: |" * len(modes) + " ---: |" * (len(modes) - 1))
    for pl, test in dict.fromkeys((pl, test) for pl, test, _ in cells):
        row, med = [], {}
        for m in modes:
            c = cells.get((pl, test, m))
            if c is None:
                row += ["-", "-"]
                continue
            med[m] = statistics.median(c["rps"])
            row += [f"{med[m]:,.0f} ({min(c['rps']):,.0f}-{max(c['rps']):,.0f})",
                    f"{statistics.median(c['p50']):.2f} / {statistics.median(c['p99']):.2f}"]
        row += [f"{med[m] / med[modes[0]]:.3f}" if m in med and modes[0] in med else "-"
                for m in modes[1:]]
        print(f"| {pl} | {test} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    t0 = time.monotonic()
    main()
    print(f"# {time.monotonic() - t0:.0f} s", file=sys.stderr)
