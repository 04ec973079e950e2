"""examples/websvc: the web service answers, its tasks run in orbits, find a
stalled request, survive injected crashes, and SIGTERM leaves no process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

WEBSVC = Path(__file__).resolve().parent.parent / "examples" / "websvc"
pytestmark = pytest.mark.timeout(180)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, proc: subprocess.Popen[str], port: int, log: Path) -> None:
        self.proc = proc
        self.log = log
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start(tmp_path: Path, *options: str) -> Server:
    for _ in range(3):  # the free port may be taken meanwhile
        port = free_port()
        log = tmp_path / f"websvc-{port}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "websvc", "--port", str(port), "--faults",
                 "--stuck-after", "0.5", "--log-level", "info", *options],
                cwd=WEBSVC, stdout=out, stderr=subprocess.STDOUT, text=True,
                start_new_session=True,
                # the "memory" fault: an orbit dies at 128 MiB, a thread holds 256 MiB
                env=dict(os.environ, WEBSVC_TASK_MEMORY_MB="128",
                         WEBSVC_FAULT_MEMORY_CAP_MB="256"))
        server = Server(proc, port, log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if server.client.get("/health").status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        stop(server)
        if "address already in use" not in server.output():
            raise AssertionError(f"the service did not start:\n{server.output()}")
    raise AssertionError("no free port")


def stop(server: Server) -> None:
    server.client.close()
    if server.proc.poll() is None:
        try:
            os.killpg(server.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.proc.wait(timeout=30)


@pytest.fixture
def run_service(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def run(*options: str) -> Server:
        server = start(tmp_path, *options)
        started.append(server)
        return server

    yield run
    for server in started:
        stop(server)


def until(check: Callable[[], Any], what: str, server: Server, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s\n{server.output()[-4000:]}")
        time.sleep(0.1)


def scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = server.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def sample(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def terminate(server: Server) -> None:
    """SIGTERM; the service must end within 30 s.  uvicorn shuts down
    gracefully, then re-raises the signal it caught: status 0 or -SIGTERM."""
    server.proc.send_signal(signal.SIGTERM)
    try:
        rc = server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"no exit 30 s after SIGTERM:\n{server.output()[-3000:]}") from None
    assert rc in (0, -signal.SIGTERM), server.output()[-3000:]


def orbit_pids(server: Server) -> set[int]:
    tasks = server.client.get("/debug/tasks").json()["tasks"]
    return {t["pid"] for t in tasks.values() if t.get("pid")}


def alive_as_orbit(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return "(orbit:websvc" in stat and stat.rsplit(")", 1)[1].split()[0] != "Z"


def exercise(server: Server, seconds: float) -> int:
    """Mixed requests for `seconds`, each answer checked; how many were sent."""
    c = server.client
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r = c.get(f"/items/{n % 5000}")
        assert r.status_code == 200 and r.json()["id"] == n % 5000, r.text
        r = c.get("/items", params={"q": "oak", "limit": 5})
        items = r.json()["items"]
        assert r.status_code == 200 and 0 < len(items) <= 5
        assert all("oak" in it["name"] for it in items)
        r = c.post("/sessions", json={"user": f"u{n}", "data": {"cart": [n, n + 1]}})
        assert r.status_code == 201, r.text
        sid = r.json()["sid"]
        r = c.patch(f"/sessions/{sid}", json={"data": {"step": n, "note": "x" * (n % 50)}})
        assert r.status_code == 200, r.text
        r = c.get(f"/sessions/{sid}")
        assert r.status_code == 200
        assert r.json()["data"] == {"cart": [n, n + 1], "step": n, "note": "x" * (n % 50)}
        assert r.json()["user"] == f"u{n}"
        if n % 10 == 0:
            r = c.get("/report")
            assert r.status_code == 200 and r.json()["home"]["items"] > 0
        n += 1
    assert c.get("/items/99999").status_code == 404
    assert c.get("/sessions/nosuch").status_code == 404
    return n


def test_service_in_orbits_answers_reports_and_survives_crashes(
        run_service: Callable[..., Server]) -> None:
    server = run_service("--tasks", "orbit", "--session-ttl", "300")
    c = server.client
    assert c.get("/health").json()["tasks"] == "orbit"

    # A stalled request is reported by the watchdog while it is in flight.
    stalled: dict[str, Any] = {}
    staller = threading.Thread(
        target=lambda: stalled.update(r=httpx.get(f"{c.base_url}/stall?ms=4000", timeout=30)))
    staller.start()
    try:
        n = exercise(server, 3.0)
        report = until(lambda: [s for s in c.get("/debug/stuck").json()["stuck"]
                                if s["handler"] == "GET /stall"], "stall reported", server)
        assert report[0]["seconds"] > 0.5 and "GET /stall" in report[0]["diagnosis"]
    finally:
        staller.join(timeout=60)
    assert stalled["r"].status_code == 200 and stalled["r"].json() == {"stalled_ms": 4000}
    assert "stuck request" in server.output()
    until(lambda: not c.get("/debug/stuck").json()["stuck"], "stall cleared", server)

    # A short-lived session is removed by the expiry task.
    r = c.post("/sessions", json={"user": "brief", "ttl": 0.3})
    assert r.status_code == 201
    until(lambda: sample(scrape(server), "websvc_sessions_expired_total") >= 1,
          "session expired", server)
    assert c.get(f"/sessions/{r.json()['sid']}").status_code == 404

    # /metrics: the service's histograms (computed in the metrics orbit) and
    # orbitpy's own metrics of the three orbits.
    def item_count() -> float:
        return sample(scrape(server), "websvc_request_duration_seconds_count",
                      route="GET /items/{item_id:int}")
    until(lambda: item_count() >= n, "request records counted", server)
    m = scrape(server)
    assert sample(m, "websvc_request_duration_seconds_bucket",
                  route="GET /stall", le="+Inf") >= 1
    assert sample(m, "websvc_request_duration_quantile_seconds",
                  route="GET /stall", quantile="0.99") >= 4.0
    assert sample(m, "websvc_sessions") >= n
    for task in ("watchdog", "metrics", "expiry"):
        assert sample(m, "orbitpy_calls_total", orbit=f"websvc-{task}") > 0, task
        assert sample(m, "orbitpy_orbit_up", orbit=f"websvc-{task}") == 1, task
        assert sample(m, "orbitpy_call_duration_seconds_count", orbit=f"websvc-{task}") > 0
        assert sample(m, "websvc_task_failures_total", task=task, mode="orbit") == 0, task

    # Injected crashes: a SIGSEGV in the watchdog's orbit, os._exit in the
    # metrics orbit, runaway memory in the expiry orbit (its memory_limit
    # stops it).  All three restart; the service answers throughout.
    before = orbit_pids(server)
    faults = {"watchdog": "segv", "metrics": "osexit", "expiry": "memory"}
    for task, kind in faults.items():
        r = c.post("/debug/fault", params={"task": task, "kind": kind})
        assert r.status_code == 200, r.text
    exercise(server, 1.0)
    ok_after: dict[str, float] = {}

    def restarted() -> bool:
        tasks = c.get("/debug/tasks").json()["tasks"]
        for t in faults:
            if tasks[t]["failures"] == 1 and t not in ok_after:
                ok_after[t] = tasks[t]["last_ok"]
        return all(tasks[t]["crashes"] == 1 and tasks[t]["failures"] == 1
                   and tasks[t]["last_ok"] > ok_after.get(t, float("inf"))
                   and tasks[t]["fault_pending"] is None for t in faults)
    until(restarted, "tasks crashed and restarted", server)
    runs = c.get("/debug/tasks").json()["tasks"]["watchdog"]["runs"]
    until(lambda: c.get("/debug/tasks").json()["tasks"]["watchdog"]["runs"] > runs + 5,
          "watchdog runs again", server)
    m = scrape(server)
    for task in faults:
        assert sample(m, "orbitpy_crashes_total", orbit=f"websvc-{task}") == 1, task
    assert sample(m, "orbitpy_restarts_total", orbit="websvc-watchdog") >= 1
    out = server.output()
    assert "SIGSEGV" in out and "exited with status 70" in out
    assert "ran out of memory (its memory_limit)" in out
    exercise(server, 0.5)

    # SIGTERM: the server ends, and with it every orbit process it had.
    pids = before | orbit_pids(server)
    assert pids and all(p not in (0, server.proc.pid) for p in pids)
    terminate(server)
    until(lambda: not any(alive_as_orbit(p) for p in pids), "orbits gone", server, 10)
    assert "Application shutdown complete" in server.output()


def test_service_with_thread_tasks_reports_a_stall(run_service: Callable[..., Server]) -> None:
    server = run_service("--tasks", "thread")
    c = server.client
    assert c.get("/health").json()["tasks"] == "thread"
    staller = threading.Thread(
        target=lambda: httpx.get(f"{c.base_url}/stall?ms=2000", timeout=30))
    staller.start()
    try:
        exercise(server, 1.0)
        until(lambda: c.get("/debug/stuck").json()["stuck"], "stall reported", server)
    finally:
        staller.join(timeout=60)
    until(lambda: sample(scrape(server), "websvc_request_duration_seconds_count",
                         route="GET /stall") >= 1, "metrics computed", server)
    m = scrape(server)
    assert sample(m, "websvc_task_runs_total", task="watchdog", mode="thread") > 0
    assert not any(name.startswith("orbitpy_calls_total") and dict(labels).get("orbit", "")
                   .startswith("websvc-") for name, labels in m)
    terminate(server)


def _benchlib() -> Any:
    """examples/websvc/benchlib.py (the experiment scripts' helpers)."""
    sys.path.insert(0, str(WEBSVC))
    try:
        import benchlib
    finally:
        sys.path.remove(str(WEBSVC))
    return benchlib


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, comm) of the live children of `pid`."""
    return [(p.pid, p.comm) for p in _benchlib().proc_table().values()
            if p.ppid == pid and p.state not in "ZX"]


@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_gunicorn_workers_each_run_their_own_orbits(preload: bool, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = dict(os.environ, WEBSVC_BIND=f"127.0.0.1:{port}", WEBSVC_WORKERS="2",
               WEBSVC_TASKS="orbit")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "websvc/gunicorn_conf.py",
             *(["--preload"] if preload else []), "websvc.app:app"],
            cwd=WEBSVC, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        def each_worker_has_its_orbits() -> list[int]:
            workers = [p for p, comm in children(proc.pid)]
            if len(workers) != 2:
                return []
            for w in workers:
                names = sorted(comm for _, comm in children(w))
                if names != ["orbit:websvc-ex", "orbit:websvc-me", "orbit:websvc-wa"]:
                    return []
            return workers

        deadline = time.monotonic() + 60
        workers: list[int] = []
        while not workers and time.monotonic() < deadline:
            workers = each_worker_has_its_orbits()
            time.sleep(0.2)
        assert workers, f"workers and their orbits:\n{log.read_text()}"
        # the master itself runs no orbit
        assert all(not comm.startswith("orbit:") for _, comm in children(proc.pid))
        orbit_pids = {p for w in workers for p, _ in children(w)}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15) as c:
            for i in range(20):
                r = c.post("/sessions", json={"user": f"g{i}"})
                assert r.status_code == 201
                assert c.get(f"/sessions/{r.json()['sid']}").status_code == 200
            assert c.get("/health").json()["worker"] in workers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
        deadline = time.monotonic() + 10
        while any(alive_as_orbit(p) for p in orbit_pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive_as_orbit(p) for p in orbit_pids)
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


WRK_SUMMARY = """\
Running 5s test @ http://127.0.0.1:8000
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   120.52ms   40.11ms   1.40s    70.00%
    Req/Sec   200.10     50.22   300.00     68.00%
  Latency Distribution
     50%  115.00ms
     75%  140.00ms
     90%  170.00ms
     99%    1.25s
  2000 requests in 5.01s, 1.20MB read
  Socket errors: connect 1, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:    399.20
Transfer/sec:    245.00KB
Session reads 404: 5
"""


def test_the_experiment_scripts_read_wrk_summaries() -> None:
    """bench.py, faults_bench.py and shutdown_bench.py read wrk's summary
    through benchlib.parse_wrk: the numbers the README's tables come from."""
    benchlib = _benchlib()
    res = benchlib.parse_wrk(WRK_SUMMARY)
    assert res == pytest.approx({"rps": 399.2, "p50_ms": 115.0, "p99_ms": 1250.0,
                                 "requests": 2000.0, "non2xx": 7.0, "socket_errors": 6.0,
                                 "connect": 1.0, "read": 3.0, "write": 0.0, "timeout": 2.0,
                                 "session_404": 5.0})
    clean = benchlib.parse_wrk(WRK_SUMMARY.replace("  Socket errors: connect 1, read 3, "
                                                   "write 0, timeout 2\n", "")
                               .replace("  Non-2xx or 3xx responses: 7\n", "")
                               .replace("Session reads 404: 5\n", ""))
    assert clean["non2xx"] == 0 and clean["socket_errors"] == 0 and clean["rps"] == 399.2
    assert clean["session_404"] == 0
