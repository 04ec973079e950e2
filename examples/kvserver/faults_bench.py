"""Fault isolation under load: each fault in each task, for --tasks=orbit|thread|inline.

    python faults_bench.py [--quick] [--modes orbit,thread,inline]
                           [--tasks expiry,slowlog,bgsave]
                           [--faults segfault,abort,hang,memory,exception,exit]
                           [--keys 100000] [--volatile 0.1] [--window 3]

For every (mode, task, fault) it starts a fresh server (``python -m kvserver
--load``) on a preloaded dataset (--keys keys, --volatile of them with TTLs of
1-30 s, so active expiry has work), then:

1. runs load: ``redis-benchmark -t set,get,incr,lpush -n 5000 -c 50 -P 1 -q -l`` in
   the background, and a "model" client (redis-py, one connection) that
   SETs, INCRs and RPUSHes keys of its own (``model:*``) and GETs them back,
   checking every reply against the model it keeps (a timeout or an error
   reply counts as an error; the key it was writing is then left out of the
   comparison, its value being unknown);
2. after --warmup seconds injects the fault (``DEBUG TASKFAULT task fault``;
   for bgsave also ``BGSAVE``, so that it runs) and keeps the load on for
   --window seconds (a hang: the task's timeout plus 2.5 s), pinging the
   server every 0.5 s (an answer within 1 s counts);
3. records the server's fate (its process died with a signal or exited /
   does not answer PING within 1 s: hung / kept going), its RSS growth, the
   errors the model client and redis-benchmark saw (its error lines, or its
   early exit), and what the server logged about the task;
4. checks that the task resumed: expiry: keys nobody reads are still
   deleted actively (INFO's active_expired_keys grows after 500 more keys
   with a 0.2 s TTL are set); slowlog: a slow command (KEYS over the whole
   keyspace, over --slowlog-us) appears in SLOWLOG GET; bgsave: after the
   load stops, the next BGSAVE succeeds and its file, read back, holds every
   model key and preloaded key with the right value;
5. checks that the dataset equals the model (every model key, and
   --check-keys of the preloaded keys without TTL);
6. kills the server's process group and checks that none of its processes
   (orbits, fork children) are left.

Prints a Markdown table (progress on stderr).  --quick: the orbit mode only,
20k keys, a 2 s window.  Needs redis-benchmark (Debian: redis-tools) and the
redis client; run it with the Python that has orbitpy.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from kvserver.dumpfile import FILENAME, read_dump, write_dump  # noqa: E402
from kvserver.faults import KINDS, TASKS  # noqa: E402

MODES = ("orbit", "thread", "inline")
TASK_TIMEOUT_S = 5  # kvserver/tasks.py's: an expiry or slow-log orbit call's timeout
PING_TIMEOUT_S = 1.0


# -- the server and what happens to it ------------------------------------------------
class Server:
    def __init__(self, mode: str, directory: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kvserver", "--port", "0", "--dir", directory,
             "--tasks", mode, "--load"],
            cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)  # its own session: every process it starts is found
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.port = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.ready.wait(60) or not self.port:
            self.kill()
            raise RuntimeError(f"kvserver ({mode}) did not start: {self.lines[-5:]}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            m = re.match(r"kvserver ready on [\d.]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                self.ready.set()
        self.ready.set()

    def rss(self) -> int:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def descendants(self) -> set[int]:
        """The server's processes: its children (orbits, fork children), theirs, ..."""
        found: set[int] = set()
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                tasks = list(Path(f"/proc/{pid}/task").iterdir())
            except OSError:
                continue
            for t in tasks:
                try:
                    kids = {int(c) for c in (t / "children").read_text().split()}
                except OSError:
                    continue
                todo += kids - found
                found |= kids
        return found

    def session(self, also: Collection[int] = ()) -> list[int]:
        """Live processes of the server's session (its own, since start_new_session),
        and those of `also` still alive (zombies are ended)."""
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] not in ("Z", "X") and (int(fields[3]) == self.proc.pid
                                                or int(d.name) in also):
                out.append(int(d.name))
        return out

    def fate(self) -> str:
        code = self.proc.poll()
        if code is None:
            return "running"
        if code < 0:
            try:
                return f"died ({signal.Signals(-code).name})"
            except ValueError:
                return f"died (signal {-code})"
        return f"exited ({code})"

    def kill(self) -> list[int]:
        """End the whole session; the pids of its processes still alive 3 s later."""
        family = self.descendants()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 3
        left = self.session(family)
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = self.session(family)
        for pid in left:  # report them, and do not leave them behind either
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.reader.join(timeout=5)
        if self.proc.stdout is not None and not self.reader.is_alive():
            self.proc.stdout.close()
        return left


def client(port: int, timeout: float) -> redis.Redis:
    """A client that reports a timeout or a lost connection instead of
    retrying (redis-py retries by default, which would send a write twice)."""
    return redis.Redis(port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
                       protocol=2, retry=Retry(NoBackoff(), 0))


def ping(port: int) -> bool:
    r = client(port, PING_TIMEOUT_S)
    try:
        return bool(r.ping())
    except redis.RedisError:
        return False
    finally:
        r.close()


# -- the model client -------------------------------------------------------------------
class ModelClient:
    """Writes keys of its own and checks every reply against its model."""

    def __init__(self, port: int, nkeys: int = 200) -> None:
        self.port, self.nkeys = port, nkeys
        self.values: dict[bytes, Any] = {}   # key -> bytes (strings, counters) or list
        self.uncertain: set[bytes] = set()   # a write whose outcome is not known
        self.ops = self.errors = 0
        self.first_errors: list[str] = []
        self.max_latency = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _error(self, what: str) -> None:
        self.errors += 1
        if len(self.first_errors) < 3:
            self.first_errors.append(what)

    def _run(self) -> None:
        r = client(self.port, 2)
        rnd = random.Random(1)
        while not self.stop.is_set():
            op, i = rnd.randrange(4), rnd.randrange(self.nkeys)  # SET, INCR, RPUSH, GET
            key = f"model:{('s', 'c', 'l', 's')[op]}:{i}".encode()
            if key in self.uncertain:
                continue
            t0 = time.monotonic()
            try:
                if op == 0:
                    value = f"v{self.ops}".encode()
                    ok, got, want = r.set(key, value) is True, None, True
                    if ok:
                        self.values[key] = value
                elif op == 1:
                    n = int(self.values.get(key, b"0")) + 1
                    self.values[key] = str(n).encode()
                    got = r.incr(key)
                    ok, want = got == n, n
                elif op == 2:
                    lst = self.values.setdefault(key, [])
                    lst.append(f"x{self.ops}".encode())
                    got = r.rpush(key, lst[-1])
                    ok, want = got == len(lst), len(lst)
                else:
                    got, want = r.get(key), self.values.get(key)
                    ok = got == want
                if not ok:
                    self.uncertain.add(key)
                    self._error(f"{key.decode()}: {got!r}, expected {want!r}")
            except redis.RedisError as e:
                self.uncertain.add(key)
                self._error(f"{key.decode()}: {type(e).__name__}: {e}")
                self.stop.wait(0.1)
            self.ops += 1
            self.max_latency = max(self.max_latency, time.monotonic() - t0)
        r.close()

    def certain(self) -> dict[bytes, Any]:
        return {k: v for k, v in self.values.items() if k not in self.uncertain}


# -- one case ---------------------------------------------------------------------------
@dataclass
class Outcome:
    mode: str
    task: str
    fault: str
    server: str = ""
    answered: str = ""
    client: str = ""
    bench: str = ""
    data: str = ""
    resumed: str = ""
    logged: str = ""
    rss: str = ""
    left: str = ""
    notes: list[str] = field(default_factory=list)
    lines0: int = 0  # the server's output lines before the fault


def preload(directory: str, keys: int, volatile: float) -> dict[bytes, bytes]:
    """Write the dataset the server loads; returns its keys without TTL."""
    rnd = random.Random(7)
    now = int(time.time() * 1000)
    data: dict[bytes, Any] = {}
    expires: dict[bytes, int] = {}
    every = round(1 / volatile) if volatile > 0 else 0
    for i in range(keys):
        k = f"pre:{i}".encode()
        data[k] = f"value-{i:08d}-{'x' * 16}".encode()
        if every and i % every == 0:
            expires[k] = now + rnd.randint(1000, 30000)
    write_dump(data, expires, os.path.join(directory, FILENAME))
    return {k: v for k, v in data.items() if k not in expires}


def info(r: redis.Redis, section: str) -> dict[str, Any]:
    return r.info(section)  # type: ignore[no-any-return]


def wait_until(cond: Callable[[], Any], timeout: float, period: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return True
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(period)


def compare(got: dict[bytes, Any], want: dict[bytes, Any]) -> list[bytes]:
    return [k for k, v in want.items() if got.get(k) != v]


def read_back(r: redis.Redis, keys: list[bytes]) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    for start in range(0, len(keys), 2000):
        chunk = keys[start:start + 2000]
        with r.pipeline(transaction=False) as p:
            for k in chunk:
                if k.startswith(b"model:l:"):
                    p.lrange(k, 0, -1)
                else:
                    p.get(k)
            for k, v in zip(chunk, p.execute(), strict=True):
                out[k] = v
    return out


def run_case(a: argparse.Namespace, mode: str, task: str, fault: str) -> Outcome:
    o = Outcome(mode, task, fault)
    with tempfile.TemporaryDirectory(prefix="kvfaults-") as d:
        persistent = preload(d, a.keys, a.volatile)
        srv = Server(mode, d)
        model = ModelClient(srv.port)
        try:
            _case(a, o, srv, d, persistent, model, task, fault)
        finally:
            model.stop.set()
            if model.thread.ident is not None:
                model.thread.join(timeout=5)
            left = srv.kill()
            o.left = "none" if not left else f"{len(left)} process(es)"
            if o.lines0:
                o.logged = what_it_said(srv.lines[o.lines0:], task, o.server == "kept going")
    return o


def _case(a: argparse.Namespace, o: Outcome, srv: Server, d: str,
          persistent: dict[bytes, bytes], model: ModelClient, task: str, fault: str) -> None:
    port = srv.port
    r = client(port, 5)
    r.config_set("slowlog-log-slower-than", a.slowlog_us)
    r.config_set("kvserver-bgsave-timeout", a.bgsave_timeout)
    out_path, err_path = os.path.join(d, "bench.out"), os.path.join(d, "bench.err")
    with open(out_path, "wb") as bout, open(err_path, "wb") as berr:
        bench = subprocess.Popen(
            ["redis-benchmark", "-p", str(port), "-t", "set,get,incr,lpush", "-n", "5000",
             "-c", "50", "-P", "1", "-q", "-l"], stdout=bout, stderr=berr,
            stdin=subprocess.DEVNULL)
    bench_code: int | None = None
    try:
        model.thread.start()
        time.sleep(a.warmup)
        rss0 = srv.rss()
        o.lines0 = len(srv.lines)
        failures0 = int(info(r, "stats")["task_failures"])
        r.execute_command("DEBUG", "TASKFAULT", task, fault)
        if task == "bgsave":
            r.bgsave()
        window = a.window
        if fault == "hang":
            window = max(window, (a.bgsave_timeout if task == "bgsave" else TASK_TIMEOUT_S) + 2.5)
        watch(o, srv, window)
        alive = o.server == "kept going"
        o.resumed = "-"
        if alive:  # the expiry and slow-log tasks are checked under load
            try:
                # A runaway allocation in a thread competes with main for the
                # GIL: it takes a while to reach its cap, and the task resumes after.
                check_resumed_under_load(a, o, r, task, 4 * a.resume_timeout
                                         if fault == "memory" else a.resume_timeout)
            except redis.RedisError as e:
                o.resumed = f"? (the server stopped answering: {type(e).__name__})"
        o.rss = f"{(srv.rss() - rss0) / 2**20:+.0f} MiB" if srv.proc.poll() is None else "-"
        model.stop.set()
        model.thread.join(timeout=10)
        bench_code = bench.poll()
    finally:
        if bench.poll() is None:
            bench.kill()
        bench.wait(timeout=10)
    out = Path(out_path).read_bytes().decode(errors="replace").replace("\r", "\n")
    err = Path(err_path).read_bytes().decode(errors="replace").strip()
    errors = [ln for ln in out.splitlines() + err.splitlines() if "rror" in ln]
    rps = sorted(float(m) for m in re.findall(r"^\w+: ([\d.]+) requests per second", out, re.M))
    o.bench = "ran" if bench_code is None else f"exited ({bench_code})"
    if rps:
        o.bench += f", {rps[len(rps) // 2]:,.0f} req/s"
    if errors:
        o.bench += f", {len(errors)} error line(s): {errors[0][:60]}"
    o.client = (f"0 / {model.ops} ops" if not model.errors else
                f"{model.errors} / {model.ops} ops: {model.first_errors[0][:60]}")
    o.client += f" (max {model.max_latency * 1000:.0f} ms)"
    if srv.proc.poll() is not None or not ping(port):
        o.data = "-"
        if o.server == "kept going":
            o.server = "hung later" if srv.proc.poll() is None else srv.fate() + " later"
        return
    try:
        check_dataset(a, o, r, model, persistent)
        if task == "bgsave":
            check_next_bgsave(o, r, d, model, persistent)
        failures = int(info(r, "stats")["task_failures"]) - failures0
        if failures:
            o.notes.append(f"task_failures +{failures}")
    except redis.RedisError as e:
        o.notes.append(f"the server stopped answering: {type(e).__name__}")
    r.close()


def watch(o: Outcome, srv: Server, window: float) -> None:
    """Ping the server every 0.5 s for `window` seconds; its fate after it."""
    pings = failed = 0
    deadline = time.monotonic() + window
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        pings += 1
        if not ping(srv.port):
            failed += 1
            if srv.proc.poll() is not None:
                break
        time.sleep(max(0.0, 0.5 - (time.monotonic() - t0)))
    alive = srv.proc.poll() is None and any(ping(srv.port) for _ in range(3))
    o.server = ("kept going" if alive else "hung" if srv.proc.poll() is None else srv.fate())
    o.answered = "all" if not failed else f"{pings - failed} of {pings}"


def what_it_said(lines: list[str], task: str, alive: bool) -> str:
    """The server's first line about the task's failure (or its last words)."""
    said = [ln for ln in lines if f"{task} task failed" in ln]
    if said:
        return said[0].split("task failed: ", 1)[1][:90]
    if not alive:
        said = [ln for ln in lines if ln.strip()]
        return said[0][:90] if said else "(nothing)"
    return "(nothing)"


def check_resumed_under_load(a: argparse.Namespace, o: Outcome, r: redis.Redis,
                             task: str, timeout: float) -> None:
    if task == "expiry":  # keys nobody reads must still be deleted
        def expired() -> int:
            return int(info(r, "stats")["active_expired_keys"])
        before = expired()
        with r.pipeline(transaction=False) as p:
            for i in range(500):
                p.set(f"probe:{i}", "v", px=200)
            p.execute()
        ok = wait_until(lambda: expired() >= before + 50, timeout)
        o.resumed = "yes" if ok else f"no ({expired() - before} keys in {timeout:g} s)"
    elif task == "slowlog":  # a slow command must reach SLOWLOG GET
        r.slowlog_reset()
        marker = f"slowprobe:{uuid.uuid4().hex}:*".encode()
        r.keys(marker)
        ok = wait_until(lambda: any(e["command"] == b"KEYS " + marker
                                    for e in r.slowlog_get(128)), timeout)
        o.resumed = "yes" if ok else f"no (not in SLOWLOG GET in {timeout:g} s)"
    else:  # the faulted BGSAVE: how did it end?
        wait_until(lambda: info(r, "persistence")["rdb_bgsave_in_progress"] == 0, timeout)
        p = info(r, "persistence")
        o.notes.append("the faulted save: " + (
            "still running" if p["rdb_bgsave_in_progress"] else p["rdb_last_bgsave_status"]))


def check_dataset(a: argparse.Namespace, o: Outcome, r: redis.Redis, model: ModelClient,
                  persistent: dict[bytes, bytes]) -> None:
    """Every model key, and a sample of the preloaded keys, read back."""
    want = model.certain()
    sample = random.Random(3).sample(sorted(persistent), min(a.check_keys, len(persistent)))
    want.update({k: persistent[k] for k in sample})
    bad = compare(read_back(r, list(want)), want)
    o.data = (f"= model ({len(model.certain())} model keys, {len(sample)} preloaded)"
              if not bad else f"{len(bad)} of {len(want)} keys differ, e.g. {bad[0]!r}")
    if model.uncertain:
        o.data += f"; {len(model.uncertain)} key(s) unknown after errors"


def check_next_bgsave(o: Outcome, r: redis.Redis, d: str, model: ModelClient,
                      persistent: dict[bytes, bytes]) -> None:
    """With the load stopped: the next BGSAVE must succeed and its file hold
    every model key and every preloaded key without TTL."""
    saves0 = int(info(r, "persistence")["rdb_saves"])
    try:
        r.bgsave()
    except redis.ResponseError as e:
        o.resumed = f"no (BGSAVE: {e})"
        return
    if not wait_until(lambda: (lambda p: p["rdb_bgsave_in_progress"] == 0 and
                               p["rdb_saves"] > saves0)(info(r, "persistence")), 60):
        o.resumed = "no (the next BGSAVE did not end in 60 s)"
    elif info(r, "persistence")["rdb_last_bgsave_status"] != "ok":
        o.resumed = "no (the next BGSAVE failed)"
    else:
        data, _ = read_dump(os.path.join(d, FILENAME))
        want = model.certain()
        want.update(persistent)
        bad = compare(data, want)
        o.resumed = ("yes, file = model" if not bad else
                     f"saved, but {len(bad)} of {len(want)} keys differ in the file")


# -- the matrix -------------------------------------------------------------------------
COLUMNS = [("tasks", "mode"), ("task", "task"), ("fault", "fault"), ("server", "server"),
           ("PING ≤1 s", "answered"), ("model client errors", "client"),
           ("redis-benchmark", "bench"), ("dataset", "data"), ("task resumed", "resumed"),
           ("server log", "logged"), ("RSS", "rss"), ("left behind", "left")]


def row(o: Outcome) -> str:
    cells = [str(getattr(o, attr)).replace("|", "\\|") for _, attr in COLUMNS]
    if o.notes:
        cells[8] += " (" + "; ".join(o.notes) + ")"
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--faults", default=",".join(KINDS))
    ap.add_argument("--keys", type=int, default=100000, help="preloaded keys")
    ap.add_argument("--volatile", type=float, default=0.1, help="share with a TTL of 1-30 s")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of load before the fault")
    ap.add_argument("--window", type=float, default=3.0, help="seconds of load after it")
    ap.add_argument("--resume-timeout", type=float, default=5.0)
    ap.add_argument("--bgsave-timeout", type=int, default=5,
                    help="CONFIG SET kvserver-bgsave-timeout (the orbit's, seconds)")
    ap.add_argument("--slowlog-us", type=int, default=5000,
                    help="slowlog-log-slower-than (KEYS over the dataset must take longer)")
    ap.add_argument("--check-keys", type=int, default=10000,
                    help="preloaded keys read back and compared")
    ap.add_argument("--quick", action="store_true",
                    help="orbit mode only, 20k keys, a 2 s window")
    a = ap.parse_args()
    if a.quick:
        a.modes, a.keys, a.window = "orbit", min(a.keys, 20000), 2.0
    t0 = time.monotonic()
    outcomes = []
    for mode in a.modes.split(","):
        for task in a.tasks.split(","):
            for fault in a.faults.split(","):
                c0 = time.monotonic()
                try:
                    o = run_case(a, mode, task, fault)
                except Exception as e:  # the experiment's own failure: say so, go on
                    o = Outcome(mode, task, fault, server=f"experiment failed: {e!r}"[:120])
                outcomes.append(o)
                print(f"# {mode} {task} {fault}: {o.server}; resumed {o.resumed}; "
                      f"{time.monotonic() - c0:.1f} s", file=sys.stderr, flush=True)
    print(f"<!-- python faults_bench.py {' '.join(sys.argv[1:])}; "
          f"{len(outcomes)} cases in {time.monotonic() - t0:.0f} s -->")
    print("| " + " | ".join(c for c, _ in COLUMNS) + " |")
    print("|" + " --- |" * len(COLUMNS))
    for o in outcomes:
        print(row(o))


if __name__ == "__main__":
    main()
