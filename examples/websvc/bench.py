"""Overhead: throughput and latency of websvc under wrk, tasks in threads vs
in orbits, under uvicorn and under gunicorn (-w 2).

    cd examples/websvc
    python bench.py                      # the issue's experiment (~25 min)
    python bench.py --quick              # 2 runs of 5 s each: does it work?
    python bench.py --runs 5 --duration 30 --servers uvicorn,gunicorn \\
        --metrics-loads 0,1000000 --modes thread,orbit

For each server and metrics load (0: the ordinary service; 1000000: the
metrics task computes percentiles over a million more records every second,
a CPU-heavy task, where the question is main's p99 with that task in a
thread of the service, holding the GIL, or in an orbit), `--runs` rounds;
each round runs every mode once, the order alternating from round to round
(thread, orbit; orbit, thread; ...) so that drift in the machine's load
does not favour one mode.  Each run starts a fresh service on a free
loopback port, waits until its tasks have run, loads it with
``wrk -t2 -c50 -d<duration>s --latency -s mixed.lua`` and stops it with
SIGTERM.  Prints one line per run, then per configuration the medians and
min-max of requests/s, p50 and p99, and the orbit/thread ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchlib import Service, Wrk, become_subreaper, machine, tasks_of_workers


def run_once(server: str, mode: str, metrics_load: int, args: argparse.Namespace,
             logdir: Path) -> dict[str, float]:
    log = logdir / f"{server}-{mode}-{metrics_load}-{time.monotonic_ns()}.log"
    svc = Service(server, mode, log, metrics_load=metrics_load, workers=args.workers)
    svc.start()
    try:
        before = tasks_of_workers(svc.url, svc.nworkers)
        t0 = time.monotonic()
        res, out = Wrk(svc.url, args.duration, args.threads, args.connections).result()
        elapsed = time.monotonic() - t0
        after = tasks_of_workers(svc.url, svc.nworkers)
        if res["rps"] != res["rps"]:  # nan: wrk printed no summary
            raise RuntimeError(f"wrk failed:\n{out}")
        # Watchdog runs per second (10 when the loop keeps its period), over
        # the workers asked both times; task failures over all workers seen.
        rates = [(after[w]["watchdog"]["runs"] - before[w]["watchdog"]["runs"]) / elapsed
                 for w in after if w in before]
        res["watchdog_runs_per_s"] = statistics.mean(rates) if rates else float("nan")
        res["task_failures"] = float(sum(t["failures"] for tasks in after.values()
                                         for t in tasks.values()))
    finally:
        stopped = svc.stop()
    res["stop_s"] = stopped.seconds
    if stopped.killed or stopped.leftover:
        print(f"  warning: {server}/{mode}: stop took {stopped.seconds:.1f} s, "
              f"killed={stopped.killed}, left over (killed since): {stopped.leftover}",
              flush=True)
    return res


def spread(values: list[float]) -> str:
    return (f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"
            if len(values) > 1 else f"{values[0]:.0f}")


def spread_ms(values: list[float]) -> str:
    digits = 1 if max(values) < 100 else 0
    med, lo, hi = statistics.median(values), min(values), max(values)
    return (f"{med:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})" if len(values) > 1
            else f"{med:.{digits}f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="rounds per configuration (5)")
    p.add_argument("--duration", type=int, default=30, help="seconds of wrk per run (30)")
    p.add_argument("--quick", action="store_true",
                   help="2 runs of 5 s (a check that it works, not a measurement)")
    p.add_argument("--servers", default="uvicorn,gunicorn")
    p.add_argument("--modes", default="thread,orbit")
    p.add_argument("--metrics-loads", default="0,1000000",
                   help="synthetic records per metrics run, one configuration each")
    p.add_argument("--metrics-load", type=int, help="one metrics load (as --metrics-loads N)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    p.add_argument("--threads", type=int, default=2, help="wrk -t (2)")
    p.add_argument("--connections", type=int, default=50, help="wrk -c (50)")
    p.add_argument("--json", type=Path, help="write every run's numbers here")
    p.add_argument("--logs", type=Path, help="keep the services' logs here")
    args = p.parse_args()
    if args.quick:
        args.runs, args.duration = 2, 5
    loads = ([args.metrics_load] if args.metrics_load is not None
             else [int(x) for x in args.metrics_loads.split(",")])
    servers, modes = args.servers.split(","), args.modes.split(",")
    become_subreaper()
    print(f"# bench.py: {machine()}", flush=True)
    print(f"# wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency "
          f"-s mixed.lua; {args.runs} rounds; servers {servers}; metrics loads {loads}",
          flush=True)
    results: dict[str, list[dict[str, float]]] = {}
    logdir = args.logs or Path(tempfile.mkdtemp(prefix="websvc-bench-"))
    logdir.mkdir(parents=True, exist_ok=True)
    for server in servers:
        for load in loads:
            for i in range(args.runs):
                order = modes if i % 2 == 0 else modes[::-1]
                for mode in order:
                    try:
                        res = run_once(server, mode, load, args, logdir)
                    except Exception as e:  # noqa: BLE001 - report it, go on with the rest
                        print(f"{server} load={load} run {i + 1} {mode}: FAILED: {e}",
                              flush=True)
                        continue
                    results.setdefault(f"{server}|{load}|{mode}", []).append(res)
                    print(f"{server} load={load} run {i + 1} {mode}: "
                          + ", ".join(f"{k}={v:.1f}" for k, v in res.items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(f"\n{args.runs} rounds per configuration, wrk -t{args.threads} "
          f"-c{args.connections} -d{args.duration}s; median (min-max)\n")
    print("| server | metrics load | tasks | requests/s | p50 ms | p99 ms "
          "| non-2xx (session reads 404) | socket errors | watchdog runs/s | task failures |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for key, runs in results.items():
        server, load, mode = key.split("|")
        col = {k: [r[k] for r in runs] for k in runs[0]}
        print(f"| {server} | {int(load):,} | {mode} | {spread(col['rps'])} "
              f"| {spread_ms(col['p50_ms'])} | {spread_ms(col['p99_ms'])} "
              f"| {sum(col['non2xx']):.0f} ({sum(col['session_404']):.0f}) "
              f"| {sum(col['socket_errors']):.0f} "
              f"| {statistics.median(col['watchdog_runs_per_s']):.1f} "
              f"| {sum(col['task_failures']):.0f} |")
    if "thread" in modes and "orbit" in modes:
        print("\norbit / thread, medians:\n")
        print("| server | metrics load | requests/s | p50 | p99 |")
        print("| --- | --- | --- | --- | --- |")
        for server in servers:
            for load in loads:
                t = results.get(f"{server}|{load}|thread")
                o = results.get(f"{server}|{load}|orbit")
                if not t or not o:
                    continue
                ratio = {k: statistics.median(r[k] for r in o)
                         / statistics.median(r[k] for r in t)
                         for k in ("rps", "p50_ms", "p99_ms")}
                print(f"| {server} | {load:,} | {ratio['rps']:.3f} | {ratio['p50_ms']:.3f} "
                      f"| {ratio['p99_ms']:.3f} |")
    print(f"\nlogs: {logdir}")


if __name__ == "__main__":
    main()
