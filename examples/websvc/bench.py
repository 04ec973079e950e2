"""Throughput and latency of websvc under wrk, tasks in threads vs in orbits.

    cd examples/websvc
    python bench.py [--runs 5] [--duration 30] [--metrics-load 0] [--modes thread,orbit]

Each run starts a fresh service (python -m websvc) on a free loopback port,
loads it with ``wrk -t2 -c50 --latency -s mixed.lua`` and stops it with
SIGTERM.  Prints one line per run and a markdown table of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if m is None:
        raise ValueError(text)
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(2)]


def parse_wrk(out: str) -> dict[str, float]:
    res = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
           "non2xx": 0.0, "socket_errors": 0.0}
    for q in ("50", "99"):
        m = re.search(rf"^\s+{q}%\s+(\S+)", out, re.M)
        res[f"p{q}_ms"] = seconds(m.group(1)) * 1000 if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["non2xx"] = float(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["socket_errors"] = float(sum(int(x) for x in m.groups()))
    return res


def run_once(mode: str, duration: int, metrics_load: int) -> dict[str, float]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "websvc", "--port", str(port),
                             "--tasks", mode, "--log-level", "warning",
                             "--metrics-load", str(metrics_load)],
                            cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the service did not start") from None
                time.sleep(0.2)
        wrk = subprocess.run(["wrk", "-t2", "-c50", f"-d{duration}s", "--latency",
                              "-s", str(HERE / "mixed.lua"), url],
                             capture_output=True, text=True, timeout=duration + 60)
        res = parse_wrk(wrk.stdout)
        with urllib.request.urlopen(f"{url}/debug/tasks", timeout=10) as r:
            tasks = json.load(r)["tasks"]
        res["watchdog_runs_per_s"] = tasks["watchdog"]["runs"] / max(duration, 1)
        res["task_failures"] = float(sum(t["failures"] for t in tasks.values()))
        return res
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--duration", type=int, default=30)
    p.add_argument("--metrics-load", type=int, default=0)
    p.add_argument("--modes", default="thread,orbit")
    args = p.parse_args()
    modes = args.modes.split(",")
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for i in range(args.runs):
        for mode in modes:  # interleaved: drift in the machine's load hits both
            res = run_once(mode, args.duration, args.metrics_load)
            results[mode].append(res)
            print(f"run {i + 1} {mode}: " + ", ".join(f"{k}={v:.1f}" for k, v in res.items()),
                  flush=True)
    keys = ("rps", "p50_ms", "p99_ms", "non2xx", "socket_errors", "watchdog_runs_per_s",
            "task_failures")
    print(f"\nmedians of {args.runs} runs, wrk -t2 -c50 -d{args.duration}s, "
          f"metrics load {args.metrics_load}\n")
    print("| tasks | " + " | ".join(keys) + " |")
    print("| --- " * (len(keys) + 1) + "|")
    for mode in modes:
        meds = [statistics.median(r[k] for r in results[mode]) for k in keys]
        print(f"| {mode} | " + " | ".join(f"{v:.1f}" for v in meds) + " |")


if __name__ == "__main__":
    main()
