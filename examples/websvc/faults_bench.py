"""Fault isolation under load: each fault kind injected into each task while
wrk loads the service, tasks in orbits and in threads.

    cd examples/websvc
    python faults_bench.py                 # 6 kinds x 3 tasks x 2 modes (~15 min)
    python faults_bench.py --quick         # shorter runs, a 2 s task timeout
    python faults_bench.py --modes orbit --tasks metrics --kinds segv,memory

Each cell (mode, task, fault kind) gets a fresh service (python -m websvc
--faults, uvicorn): it creates `--sessions` sessions with a one-hour TTL,
starts ``wrk -t2 -c50 --latency -s mixed.lua``, injects the fault into the
task's next run (POST /debug/fault) after `--inject-after` seconds, then
watches the task's counters (/debug/tasks) until it has run successfully
twice since the fault took effect, or the service died, or `--settle`
seconds after wrk's end.  Then it reads every session back and stops the
service with SIGTERM (SIGKILL after 15 s).  It reports, per cell, wrk's
"Non-2xx or 3xx responses" and "Socket errors", whether the sessions are
intact, the task's error, how long until it ran again, and the fate:
"restarted" (a new orbit process) or "recovered" (the same one; an
exception, sys.exit), and in thread mode "service died (...)", "task
stuck" or "kept going".

The fault kinds (websvc/tasks.py): segv (a NULL read through ctypes), abort
(os.abort()), hang (an endless busy loop: an orbit is killed at its
timeout), memory (runaway allocation: in an orbit up to its memory_limit,
512 MiB, where it dies with MemoryError; in a thread, where nothing stops it
but the machine, until `--memory-cap-mb` MiB are held, which stay held: a
leak), raise (an exception), exit (sys.exit(3)); also osexit (os._exit(70)),
not among the defaults.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import (
    GRACEFUL_TIMEOUT,
    Service,
    Wrk,
    become_subreaper,
    describe_status,
    get,
    machine,
    request,
    rss_mib,
)

KINDS = ("segv", "abort", "hang", "memory", "raise", "exit")
TASKS = ("watchdog", "metrics", "expiry")


def make_sessions(url: str, n: int) -> dict[str, dict[str, Any]]:
    sessions = {}
    for i in range(n):
        user, data = f"keep{i}", {"n": i, "cart": [i, i + 1], "note": "x" * (i % 40)}
        status, body = request(url, "POST", "/sessions",
                               {"user": user, "ttl": 3600, "data": data})
        if status != 201:
            raise RuntimeError(f"POST /sessions: {status} {body!r}")
        sessions[body["sid"]] = {"user": user, "data": data}
    return sessions


def check_sessions(url: str, sessions: dict[str, dict[str, Any]]) -> tuple[int, int]:
    """(intact, not intact) of `sessions`, read back one by one."""
    intact = 0
    for sid, want in sessions.items():
        try:
            status, body = request(url, "GET", f"/sessions/{sid}", timeout=10)
        except OSError:
            return intact, len(sessions) - intact
        if status == 200 and body["user"] == want["user"] and body["data"] == want["data"]:
            intact += 1
    return intact, len(sessions) - intact


def run_cell(mode: str, task: str, kind: str, args: argparse.Namespace,
             logdir: Path) -> dict[str, Any]:
    log = logdir / f"{mode}-{task}-{kind}.log"
    svc = Service("uvicorn", mode, log, faults=True,
                  env={"WEBSVC_TASK_TIMEOUT": str(args.task_timeout),
                       "WEBSVC_TASK_MEMORY_MB": str(args.memory_limit_mb),
                       "WEBSVC_FAULT_MEMORY_CAP_MB": str(args.memory_cap_mb)})
    svc.start()
    row: dict[str, Any] = {"mode": mode, "task": task, "kind": kind}
    try:
        sessions = make_sessions(svc.url, args.sessions)
        rss_before = rss_mib(svc.pid)
        wrk = Wrk(svc.url, args.duration, args.threads, args.connections)
        time.sleep(args.inject_after)
        before = get(svc.url, "/debug/tasks")["tasks"][task]
        t_inject = time.monotonic()
        status, body = request(svc.url, "POST", f"/debug/fault?task={task}&kind={kind}")
        if status != 200:
            raise RuntimeError(f"POST /debug/fault: {status} {body!r}")
        took_effect = back = None  # seconds after the injection
        ok_base: int | None = None
        last: dict[str, Any] = before
        unanswered = 0
        end = wrk.started + args.duration + args.settle
        while time.monotonic() < end:
            now = time.monotonic()
            if svc.proc is not None and svc.proc.poll() is not None:
                break
            if back is not None and wrk.proc.poll() is not None:
                break
            try:
                last = get(svc.url, "/debug/tasks", timeout=5)["tasks"][task]
            except (OSError, RuntimeError, KeyError):
                unanswered += 1
                time.sleep(0.1)
                continue
            ok = last["runs"] - last["failures"]
            if took_effect is None and (last["failures"] > before["failures"]
                                        or last["fault_pending"] is None):
                took_effect, ok_base = now - t_inject, ok
            elif (back is None and ok_base is not None and ok >= ok_base + 2
                  and last["last_ok"] > 0):
                back = now - t_inject
            time.sleep(0.1)
        died = svc.proc is not None and svc.proc.poll() is not None
        res, _ = wrk.result(interrupt=died)
        row.update(rps=res["rps"], requests=res["requests"], non2xx=res["non2xx"],
                   socket_errors=res["socket_errors"],
                   socket_detail={k: res[k] for k in ("connect", "read", "write", "timeout")},
                   unanswered_polls=unanswered)
        if died:
            row["sessions"] = "lost (service died)"
        else:
            intact, bad = check_sessions(svc.url, sessions)
            row["sessions"] = f"{intact}/{len(sessions)}"
        row["rss_growth_mib"] = 0 if died else round(rss_mib(svc.pid) - rss_before)
        failures = last["failures"] - before["failures"]
        row.update(failures=failures, error=last["last_error"] if failures else "",
                   took_effect_s=took_effect, back_after_s=back)
        if mode == "orbit":
            row["orbit"] = {k: last.get(k, 0) - before.get(k, 0)
                            for k in ("crashes", "timeouts", "restarts")}
            row["orbit_pid"] = f"{before.get('pid')}->{last.get('pid')}"
    finally:
        stopped = svc.stop(timeout=GRACEFUL_TIMEOUT + 5)
    fate = []
    if died:
        fate.append(f"service died ({describe_status(stopped.rc)})")
    elif back is not None:
        if mode == "orbit":
            new_process = row["orbit_pid"].split("->")[0] != row["orbit_pid"].split("->")[1]
            fate.append("restarted" if new_process else "recovered (same orbit)")
        else:
            fate.append("kept going")
        if row["rss_growth_mib"] > 256:
            fate.append(f"{row['rss_growth_mib']} MiB more resident in main (held)")
    elif failures:
        fate.append(f"task stuck ({failures} failed runs, none ok since)")
    else:
        fate.append("no effect seen")
    if stopped.killed:
        fate.append("did not exit on SIGTERM: SIGKILLed")
    elif not died and stopped.rc not in (0, -15):
        fate.append(f"SIGTERM: {describe_status(stopped.rc)}")
    if stopped.leftover:
        fate.append(f"{len(stopped.leftover)} processes left after it (killed): "
                    + ", ".join(f"{p.pid} {p.comm}" for p in stopped.leftover))
    row["fate"] = "; ".join(fate)
    row["stop_s"] = round(stopped.seconds, 1)
    return row


def fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", default="orbit,thread")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--kinds", default=",".join(KINDS),
                   help="fault kinds (also: osexit)")
    p.add_argument("--duration", type=float, default=12.0, help="seconds of wrk per cell (12)")
    p.add_argument("--inject-after", type=float, default=3.0,
                   help="seconds of load before the fault (3)")
    p.add_argument("--settle", type=float, default=15.0,
                   help="seconds after wrk's end to wait for the task to come back (15)")
    p.add_argument("--sessions", type=int, default=100, help="sessions checked (100)")
    p.add_argument("--task-timeout", type=float, default=5.0,
                   help="seconds a task run may take (the orbit's timeout; 5)")
    p.add_argument("--memory-limit-mb", type=int, default=512,
                   help="each task orbit's memory_limit (512)")
    p.add_argument("--memory-cap-mb", type=int, default=2048,
                   help="what the memory fault takes at most, held (in a thread) (2048)")
    p.add_argument("--threads", type=int, default=2, help="wrk -t (2)")
    p.add_argument("--connections", type=int, default=50, help="wrk -c (50)")
    p.add_argument("--quick", action="store_true",
                   help="--duration 6 --inject-after 2 --settle 8 --task-timeout 2 "
                        "--sessions 30")
    p.add_argument("--json", type=Path, help="write every cell's numbers here")
    p.add_argument("--logs", type=Path, help="keep the services' logs here")
    args = p.parse_args()
    if args.quick:
        args.duration, args.inject_after, args.settle = 6.0, 2.0, 8.0
        args.task_timeout, args.sessions = 2.0, 30
    become_subreaper()
    logdir = args.logs or Path(tempfile.mkdtemp(prefix="websvc-faults-"))
    logdir.mkdir(parents=True, exist_ok=True)
    print(f"# faults_bench.py: {machine()}", flush=True)
    print(f"# wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, fault after "
          f"{args.inject_after:g} s, task timeout {args.task_timeout:g} s, orbit "
          f"memory_limit {args.memory_limit_mb} MiB, thread memory cap "
          f"{args.memory_cap_mb} MiB, {args.sessions} sessions", flush=True)
    rows = []
    for mode in args.modes.split(","):
        for kind in args.kinds.split(","):
            for task in args.tasks.split(","):
                try:
                    row = run_cell(mode, task, kind, args, logdir)
                except Exception as e:  # noqa: BLE001 - report it, go on with the rest
                    row = {"mode": mode, "task": task, "kind": kind,
                           "fate": f"FAILED: {type(e).__name__}: {e}"[:300]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print("\n| tasks | task | fault | requests/s | non-2xx | socket errors | sessions intact "
          "| task error | ran again after | fate |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if "rps" not in r:
            print(f"| {r['mode']} | {r['task']} | {r['kind']} | | | | | | | {r['fate']} |")
            continue
        err = r["error"].replace("|", "/")[:70]
        back = f"{fmt_s(r['back_after_s'])} s" if r["back_after_s"] is not None else "never"
        print(f"| {r['mode']} | {r['task']} | {r['kind']} | {r['rps']:.0f} "
              f"| {r['non2xx']:.0f} | {r['socket_errors']:.0f} | {r['sessions']} "
              f"| {err} | {back} | {r['fate']} |")
    for mode in args.modes.split(","):
        done = [r for r in rows if r["mode"] == mode and "rps" in r]
        if not done:
            continue
        intact = sum(r["sessions"] == f"{args.sessions}/{args.sessions}" for r in done)
        print(f"\n{mode} mode, {len(done)} cells run: "
              f"non-2xx {sum(r['non2xx'] for r in done):.0f}, "
              f"socket errors {sum(r['socket_errors'] for r in done):.0f}, "
              f"sessions intact in {intact}, "
              f"task ran again in {sum(r['back_after_s'] is not None for r in done)}, "
              f"service died in {sum(r['fate'].startswith('service died') for r in done)}")
    print(f"\nlogs: {logdir}")


if __name__ == "__main__":
    main()
