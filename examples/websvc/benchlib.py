"""What bench.py, faults_bench.py and shutdown_bench.py share: starting the
service (uvicorn or gunicorn) on a free loopback port, running wrk and
reading its summary, asking the service over HTTP, and watching processes
in /proc (the service's tree, orphans).

Every process these scripts start is in a session of its own (the service,
wrk), and the scripts make themselves the child subreaper, so that an orbit
whose parent died is re-parented to the script, seen, and killed.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GRACEFUL_TIMEOUT = 10.0  # gunicorn_conf.graceful_timeout, uvicorn's timeout_graceful_shutdown


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=HERE,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    """When, where and how loaded: the header of every result."""
    load = os.getloadavg()
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit()}, "
            f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


# -- wrk

def seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if m is None:
        raise ValueError(text)
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                                "h": 3600.0}[m.group(2)]


def parse_wrk(out: str) -> dict[str, float]:
    """wrk --latency's summary: requests/s, p50 and p99 (ms), requests,
    non-2xx responses, socket errors (total and each kind)."""
    nan = float("nan")
    res: dict[str, float] = {"rps": nan, "p50_ms": nan, "p99_ms": nan, "requests": nan,
                             "non2xx": 0.0, "socket_errors": 0.0, "connect": 0.0,
                             "read": 0.0, "write": 0.0, "timeout": 0.0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ", out)
    if m:
        res["requests"] = float(m.group(1))
    for q in ("50", "99"):
        m = re.search(rf"^\s+{q}(?:\.000)?%\s+(\S+)", out, re.M)
        if m:
            res[f"p{q}_ms"] = seconds(m.group(1)) * 1000
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["non2xx"] = float(m.group(1))
    # mixed.lua's own count: reads of a session the worker asked does not
    # have (under gunicorn, the other worker made it)
    m = re.search(r"Session reads 404: (\d+)", out)
    res["session_404"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        for key, value in zip(("connect", "read", "write", "timeout"), m.groups(), strict=True):
            res[key] = float(value)
        res["socket_errors"] = float(sum(int(x) for x in m.groups()))
    return res


class Wrk:
    """wrk --latency -s mixed.lua against `url`, in the background."""

    def __init__(self, url: str, duration: float, threads: int = 2, connections: int = 50,
                 script: Path = HERE / "mixed.lua") -> None:
        self.duration = duration
        self.proc = subprocess.Popen(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
             "--latency", "-s", str(script), url],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        self.started = time.monotonic()

    def result(self, interrupt: bool = False) -> tuple[dict[str, float], str]:
        """Wait for wrk's end (SIGINT first if `interrupt`: wrk then stops
        and prints its summary); its parsed summary and its output."""
        if interrupt and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=self.duration + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            out += "\n(wrk killed: it did not end)"
        return parse_wrk(out), out


# -- HTTP

def request(url: str, method: str = "GET", path: str = "/", body: Any = None,
            timeout: float = 10.0) -> tuple[int, Any]:
    """One request on its own connection; (status, decoded JSON or text)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        r = conn.getresponse()
        data = r.read()
    except http.client.HTTPException as e:  # e.g. the connection closed mid-answer
        raise ConnectionError(f"{type(e).__name__}: {e}") from e
    finally:
        conn.close()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, data.decode(errors="replace")


def get(url: str, path: str, timeout: float = 10.0) -> Any:
    status, data = request(url, "GET", path, timeout=timeout)
    if status != 200:
        raise RuntimeError(f"GET {path}: {status} {data!r}"[:300])
    return data


def stalls_in_flight(url: str, workers: int, want: int, timeout: float = 5.0) -> int:
    """Ask /debug/inflight until `want` GET /stall requests are in flight
    over the `workers` workers (each answer is one worker's), or `timeout`;
    how many were seen."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = get(url, "/debug/inflight", timeout=5)
        except (OSError, RuntimeError):
            break
        seen[got["worker"]] = got["inflight"].get("GET /stall", 0)
        if len(seen) >= workers and sum(seen.values()) >= want:
            break
    return sum(seen.values())


def tasks_of_workers(url: str, workers: int, tries: int = 40) -> dict[int, dict[str, Any]]:
    """/debug/tasks of each worker (a request lands on any worker: ask until
    `workers` distinct ones answered, or `tries` times); worker pid -> tasks."""
    seen: dict[int, dict[str, Any]] = {}
    for _ in range(tries):
        try:
            got = get(url, "/debug/tasks", timeout=10)
        except (OSError, RuntimeError):
            break
        seen[got["worker"]] = got["tasks"]
        if len(seen) >= workers:
            break
    return seen


# -- processes

@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    comm: str
    state: str
    start: int  # clock ticks after boot: with pid, names one process

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.start)


def proc_table() -> dict[int, Proc]:
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(d)] = Proc(int(d), int(fields[1]), int(fields[2]), comm, fields[0],
                           int(fields[19]))
    return out


def descendants(root: int, table: dict[int, Proc] | None = None) -> list[Proc]:
    """The live (not zombie) processes below `root`."""
    table = proc_table() if table is None else table
    kids: dict[int, list[Proc]] = {}
    for p in table.values():
        kids.setdefault(p.ppid, []).append(p)
    out, todo = [], [root]
    while todo:
        for p in kids.get(todo.pop(), []):
            if p.state not in "ZX":
                out.append(p)
            todo.append(p.pid)
    return out


def alive(p: Proc) -> bool:
    """Is that very process (pid and start time) still running (not a zombie)?"""
    now = proc_table().get(p.pid)
    return now is not None and now.start == p.start and now.state not in "ZX"


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def become_subreaper() -> None:
    """Orphans of the processes this script starts are re-parented to it
    (PR_SET_CHILD_SUBREAPER), not to init: orphans() finds them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        print(f"note: PR_SET_CHILD_SUBREAPER failed (errno {ctypes.get_errno()}); "
              "orphans are looked for by ancestry only", file=sys.stderr)


def orphans(known: Iterable[int]) -> list[Proc]:
    """Live children of this script other than those it started itself:
    processes re-parented here after their parent died."""
    me, skip = os.getpid(), set(known)
    mine = [p for p in proc_table().values() if p.ppid == me and p.pid not in skip]
    for p in mine:
        if p.state in "ZX":  # an orphan that ended since: reap it
            try:
                os.waitpid(p.pid, os.WNOHANG)
            except ChildProcessError:
                pass
    return [p for p in mine if p.state not in "ZX"]


def kill_and_reap(procs: Iterable[Proc]) -> None:
    for p in procs:
        if alive(p):
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    time.sleep(0.1)
    for p in procs:
        try:
            os.waitpid(p.pid, os.WNOHANG)  # ours if it was re-parented here
        except ChildProcessError:
            pass


def describe_status(rc: int | None) -> str:
    if rc is None:
        return "running"
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit {rc}"


# -- the service

@dataclass
class Stopped:
    rc: int | None          # the root's status (Popen.returncode)
    seconds: float          # from the signal to the root's end
    killed: bool            # it did not end in time: SIGKILLed
    leftover: list[Proc]    # processes of the service alive after it (killed since)


@dataclass
class Service:
    """One run of the service: `python -m websvc` (uvicorn) or gunicorn with
    UvicornWorker and `workers` workers, tasks in `mode`."""

    server: str
    mode: str
    log: Path
    metrics_load: int = 0
    faults: bool = False
    workers: int = 2
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def nworkers(self) -> int:
        return self.workers if self.server == "gunicorn" else 1

    def start(self, timeout: float = 60.0) -> Service:
        for _ in range(3):  # the free port may be taken meanwhile
            self.port = free_port()
            env = dict(os.environ, WEBSVC_TASKS=self.mode,
                       WEBSVC_METRICS_LOAD=str(self.metrics_load),
                       WEBSVC_FAULTS="1" if self.faults else "0", **self.env)
            if self.server == "uvicorn":
                cmd = [sys.executable, "-m", "websvc", "--port", str(self.port),
                       "--tasks", self.mode, "--metrics-load", str(self.metrics_load),
                       "--log-level", "warning", *(["--faults"] if self.faults else [])]
            elif self.server == "gunicorn":
                env.update(WEBSVC_BIND=f"127.0.0.1:{self.port}",
                           WEBSVC_WORKERS=str(self.workers))
                cmd = [sys.executable, "-m", "gunicorn", "-c", "websvc/gunicorn_conf.py",
                       "websvc.app:app"]
            else:
                raise ValueError(f"server: uvicorn or gunicorn, not {self.server!r}")
            with open(self.log, "ab") as out:
                self.proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdout=out,
                                             stderr=subprocess.STDOUT,
                                             start_new_session=True)
            self.started = time.monotonic()
            if self._wait_ready(timeout):
                return self
            self.kill()
            if "address already in use" not in self.output().lower():
                raise RuntimeError(f"the service did not start:\n{self.output()[-3000:]}")
        raise RuntimeError("no free port")

    def _wait_ready(self, timeout: float) -> bool:
        """Every worker answering, and each of its tasks run once (so that
        its orbit exists)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            workers = tasks_of_workers(self.url, self.nworkers, tries=10)
            if len(workers) >= self.nworkers and all(
                    t["runs"] >= 1 for tasks in workers.values() for t in tasks.values()):
                return True
            time.sleep(0.2)
        return False

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tree(self) -> list[Proc]:
        """The service's processes below its root: workers, orbits."""
        return descendants(self.pid)

    def stop(self, sig: int = signal.SIGTERM, group: bool = False,
             timeout: float = GRACEFUL_TIMEOUT + 10, linger: float = 5.0,
             known: Iterable[int] = ()) -> Stopped:
        """Send `sig` (to the process group if `group`), wait up to `timeout`
        for the root to end (then SIGKILL everything), and up to `linger`
        more for the processes that were below it (workers, orbits) to end.
        Those still alive then, and any orphan re-parented to this script
        (other than the `known` children it started), are killed and
        reported as left over."""
        assert self.proc is not None
        tree = self.tree() if self.proc.poll() is None else []
        t0 = time.monotonic()
        if self.proc.poll() is None:
            try:
                if group:
                    os.killpg(self.proc.pid, sig)
                else:
                    self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
        killed = False
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            killed = True
            self.kill()
        took = time.monotonic() - t0
        deadline = time.monotonic() + linger
        while any(alive(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.05)
        keys = {p.key for p in tree}
        left = [p for p in tree if alive(p)]
        left += [p for p in orphans({self.proc.pid, *known}) if p.key not in keys]
        kill_and_reap(left)
        return Stopped(self.proc.returncode, took, killed, left)

    def kill(self) -> None:
        """SIGKILL the service's process group and everything below its root."""
        if self.proc is None:
            return
        below = self.tree() if self.proc.poll() is None else []
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        kill_and_reap(below)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


class TreeWatcher:
    """Samples a process tree every `period` seconds in a thread: every
    process ever seen below `root` (a worker restarted, an orbit restarted)."""

    def __init__(self, root: int, period: float = 0.1) -> None:
        import threading

        self.root = root
        self.period = period
        self.seen: dict[tuple[int, int], Proc] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for p in descendants(self.root):
                self.seen.setdefault(p.key, p)
            self._stop.wait(self.period)

    def stop(self) -> list[Proc]:
        self._stop.set()
        self._thread.join(timeout=5)
        return list(self.seen.values())
