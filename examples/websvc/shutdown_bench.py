"""Shutdown under load: SIGTERM to the gunicorn master, and to the process
group of a uvicorn run, while wrk loads the service and a few long requests
are in flight.

    cd examples/websvc
    python shutdown_bench.py               # 4 scenarios x 2 modes, 3 rounds (~6 min)
    python shutdown_bench.py --quick       # 1 round
    python shutdown_bench.py --scenarios gunicorn-master --modes orbit --rounds 5

Scenarios: gunicorn-master (SIGTERM to gunicorn's master, which passes it
on to its 2 workers), uvicorn-group (SIGTERM to the process group of
``python -m websvc``: uvicorn and its orbits get it at once, as from a
terminal's Ctrl-C or a supervisor's killpg), and also gunicorn-group and
uvicorn-main (SIGTERM to uvicorn's process alone).

Each run starts the service, records its process tree (workers, orbits) and
keeps sampling it, starts ``wrk -t2 -c50 --latency -s mixed.lua``, and after
`--load-before` seconds sends `--stalls` requests GET /stall?ms=`--stall-ms`
on connections of their own, waits until the service has them in flight
(GET /debug/inflight, up to half their length), and `--stall-lead` seconds later sends
SIGTERM.
It reports how long the root process and each worker took to end (the
graceful timeout is 10 s: gunicorn's graceful_timeout, uvicorn's
timeout_graceful_shutdown), when the last orbit process ended, processes of
the service still alive 5 s after its end (orphans: they are killed and
listed; the script is the child subreaper, so an orphan cannot escape to
init unseen), the in-flight /stall requests' answers (each must be a 200),
wrk's errors (connections closed by the server's shutdown show as socket
errors, as they must: those requests were never answered and wrk counts
them, which is what "lost" means for a client: they are reported, not
hidden), and the log's error lines.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchlib import (
    GRACEFUL_TIMEOUT,
    Service,
    TreeWatcher,
    Wrk,
    alive,
    become_subreaper,
    describe_status,
    kill_and_reap,
    machine,
    orphans,
    request,
    stalls_in_flight,
)

SCENARIOS = {  # name -> (server, signal the whole process group?)
    "gunicorn-master": ("gunicorn", False),
    "uvicorn-group": ("uvicorn", True),
    "gunicorn-group": ("gunicorn", True),
    "uvicorn-main": ("uvicorn", False),
}


def stall_requests(url: str, n: int, ms: int) -> tuple[list[threading.Thread],
                                                        list[dict[str, Any]]]:
    answers: list[dict[str, Any]] = [{} for _ in range(n)]

    def one(i: int) -> None:
        t = time.monotonic()
        try:
            status, body = request(url, "GET", f"/stall?ms={ms}", timeout=ms / 1000 + 30)
            answers[i].update(status=status, ok=status == 200 and body == {"stalled_ms": ms})
        except OSError as e:
            answers[i].update(status=f"{type(e).__name__}: {e}", ok=False)
        answers[i]["seconds"] = time.monotonic() - t

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    return threads, answers


def run(scenario: str, mode: str, args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    server, group = SCENARIOS[scenario]
    log = logdir / f"{scenario}-{mode}-{time.monotonic_ns()}.log"
    svc = Service(server, mode, log, workers=args.workers).start()
    proc = svc.proc
    assert proc is not None
    watcher = TreeWatcher(svc.pid)
    row: dict[str, Any] = {"scenario": scenario, "mode": mode}
    wrk: Wrk | None = None
    try:
        wrk = Wrk(svc.url, args.duration, args.threads, args.connections)
        time.sleep(args.load_before)
        threads, answers = stall_requests(svc.url, args.stalls, args.stall_ms)
        # SIGTERM once they are in flight in the service (accepted, their
        # handler running), not merely sent: a connection still in the
        # listen backlog when the server closes its socket is reset, which
        # says nothing about the service's shutdown.
        row["stalls_in_flight"] = stalls_in_flight(svc.url, svc.nworkers, args.stalls,
                                                   timeout=0.5 * args.stall_ms / 1000)
        time.sleep(args.stall_lead)
        tree = svc.tree()
        workers = [p for p in tree if p.ppid == svc.pid] if server == "gunicorn" else []
        row["processes_at_sigterm"] = {"workers": len(workers),
                                       "orbits": sum(p.comm.startswith("orbit:")
                                                     for p in tree)}
        t0 = time.monotonic()
        try:
            (os.killpg if group else os.kill)(svc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        gone: dict[tuple[int, int], float] = {}
        root_exit: float | None = None
        killed = False
        limit = GRACEFUL_TIMEOUT + 10
        while True:
            now = time.monotonic() - t0
            for p in list(watcher.seen.values()):
                if p.key not in gone and not alive(p):
                    gone[p.key] = now
            if root_exit is None and proc.poll() is not None:
                root_exit = now
            if root_exit is not None and (len(gone) == len(watcher.seen)
                                          or now > root_exit + args.linger):
                break
            if root_exit is None and now > limit:
                killed = True
                svc.kill()
                root_exit = time.monotonic() - t0
            time.sleep(0.02)
        seen = watcher.stop()
        left = [p for p in seen if alive(p)]
        left += [p for p in orphans({svc.pid, wrk.proc.pid}) if p.key not in
                 {q.key for q in seen}]
        kill_and_reap(left)
        res, _ = wrk.result(interrupt=True)
        for t in threads:
            t.join(timeout=args.stall_ms / 1000 + 40)
        worker_exit = [gone.get(w.key) for w in workers]
        orbit_exit = [gone[p.key] for p in seen if p.comm.startswith("orbit:") and p.key in gone]
        text = svc.output()
        errors = [line for line in text.splitlines()
                  if re.search(r"Traceback|\bERROR\b|\berror\b|Exception", line)]
        row.update(
            root=describe_status(proc.returncode) + (" (SIGKILLed)" if killed else ""),
            root_exit_s=root_exit,
            workers_exit_s=max((w for w in worker_exit if w is not None), default=None),
            workers_within_graceful=all(w is not None and w <= GRACEFUL_TIMEOUT
                                        for w in worker_exit) if workers else None,
            orbits_seen=sum(p.comm.startswith("orbit:") for p in seen),
            last_orbit_exit_s=max(orbit_exit, default=None),
            orphans=[f"{p.pid} {p.comm}" for p in left],
            stalls_ok=sum(a.get("ok", False) for a in answers),
            stalls=len(answers),
            stall_failures=sorted({str(a.get("status")) for a in answers if not a.get("ok")}),
            wrk_requests=res["requests"], non2xx=res["non2xx"], session_404=res["session_404"],
            socket_errors=res["socket_errors"],
            socket_detail={k: res[k] for k in ("connect", "read", "write", "timeout")},
            log_errors=len(errors), first_errors=errors[:3])
    finally:
        watcher.stop()
        if wrk is not None and wrk.proc.poll() is None:
            wrk.proc.kill()
            wrk.proc.wait()
        if proc.poll() is None:
            svc.kill()
    return row


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--modes", default="orbit,thread")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="1 round")
    p.add_argument("--duration", type=float, default=10.0,
                   help="wrk's duration; it is interrupted once the service is gone (10)")
    p.add_argument("--load-before", type=float, default=3.0,
                   help="seconds of load before the long requests (3)")
    p.add_argument("--stalls", type=int, default=8, help="long requests in flight (8)")
    p.add_argument("--stall-ms", type=int, default=3000,
                   help="their length (3000 ms: under load, a new connection may wait "
                        "a second to be accepted, and the script's polls too)")
    p.add_argument("--stall-lead", type=float, default=0.2,
                   help="seconds between their being in flight and SIGTERM (0.2)")
    p.add_argument("--linger", type=float, default=5.0,
                   help="seconds after the root's end for its processes to end (5)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    p.add_argument("--threads", type=int, default=2, help="wrk -t (2)")
    p.add_argument("--connections", type=int, default=50, help="wrk -c (50)")
    p.add_argument("--json", type=Path, help="write every run's numbers here")
    p.add_argument("--logs", type=Path, help="keep the services' logs here")
    args = p.parse_args()
    if args.quick:
        args.rounds = 1
    become_subreaper()
    logdir = args.logs or Path(tempfile.mkdtemp(prefix="websvc-shutdown-"))
    logdir.mkdir(parents=True, exist_ok=True)
    print(f"# shutdown_bench.py: {machine()}", flush=True)
    print(f"# wrk -t{args.threads} -c{args.connections}; SIGTERM after {args.load_before:g} s "
          f"of load, {args.stall_lead:g} s after {args.stalls} x /stall?ms={args.stall_ms} are "
          f"in flight; graceful timeout {GRACEFUL_TIMEOUT:g} s", flush=True)
    rows = []
    for i in range(args.rounds):
        for scenario in args.scenarios.split(","):
            for mode in args.modes.split(","):
                try:
                    row = run(scenario, mode, args, logdir)
                except Exception as e:  # noqa: BLE001 - report it, go on with the rest
                    row = {"scenario": scenario, "mode": mode,
                           "failed": f"{type(e).__name__}: {e}"[:300]}
                row["round"] = i + 1
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print("\n| SIGTERM to | tasks | round | root | root ended s | workers ended s (<= 10) "
          "| orbits seen | last orbit ended s | orphans | /stall answered 200 "
          "| wrk non-2xx (session reads 404) | wrk socket errors | log error lines |")
    print("| --- " * 13 + "|")
    for r in rows:
        if "failed" in r:
            print(f"| {r['scenario']} | {r['mode']} | {r['round']} | FAILED: {r['failed']} "
                  + "| " * 9 + "|")
            continue
        within = {None: "", True: " (yes)", False: " (NO)"}[r["workers_within_graceful"]]
        sock = r["socket_detail"]
        print(f"| {r['scenario']} | {r['mode']} | {r['round']} | {r['root']} "
              f"| {fmt(r['root_exit_s'])} | {fmt(r['workers_exit_s'])}{within} "
              f"| {r['orbits_seen']} | {fmt(r['last_orbit_exit_s'])} "
              f"| {len(r['orphans'])} | {r['stalls_ok']}/{r['stalls']} "
              f"({r['stalls_in_flight']} in flight) "
              f"| {r['non2xx']:.0f} ({r['session_404']:.0f}) "
              f"| {r['socket_errors']:.0f} (c {sock['connect']:.0f}, "
              f"r {sock['read']:.0f}, w {sock['write']:.0f}, t {sock['timeout']:.0f}) "
              f"| {r['log_errors']} |")
    for r in rows:
        if r.get("orphans") or r.get("stall_failures") or r.get("first_errors"):
            print(f"\n{r['scenario']} {r['mode']} round {r['round']}: orphans {r['orphans']}, "
                  f"/stall failures {r['stall_failures']}, log: {r['first_errors']}")
    print(f"\nlogs: {logdir}")


if __name__ == "__main__":
    main()
