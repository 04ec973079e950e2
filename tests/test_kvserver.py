"""examples/kvserver: a Redis-protocol server whose maintenance tasks run in orbits.

Each test starts the server as a subprocess (``python -m kvserver --port 0``,
``--tasks=orbit``) and talks to it with the ``redis`` client.  Everything
polls with deadlines: nothing assumes how fast a loaded VM is.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

KVSERVER = Path(__file__).resolve().parent.parent / "examples" / "kvserver"
START_TIMEOUT = 60.0


class KVServer:
    def __init__(self, directory: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kvserver", "--port", "0", "--dir", str(directory),
             "--tasks", "orbit", *args],
            cwd=KVSERVER, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                pytest.fail(f"kvserver did not start: {self.output}")
            m = re.match(r"kvserver ready on ([\d.]+):(\d+)", line)
            if m:
                self.port = int(m.group(2))
                break
        self.client = redis.Redis(port=self.port, socket_timeout=30, protocol=2)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def children(self) -> set[int]:
        pids: set[int] = set()
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                pids |= {int(p) for p in (task / "children").read_text().split()}
            except FileNotFoundError:
                pass
        return pids

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        if hasattr(self, "client"):
            self.client.close()
        self.reader.join(timeout=30)  # its output ends with the process
        if not self.reader.is_alive() and self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def wait_for(what: str, cond: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KVServer]:
    srv = KVServer(tmp_path_factory.mktemp("kv"))
    yield srv
    srv.stop()


def test_commands_and_redis_error_wording(server: KVServer) -> None:
    r = server.client
    assert r.ping() is True
    assert r.echo("hi") == b"hi"
    assert r.set("c:s", "v") is True and r.get("c:s") == b"v"
    assert r.set("c:s", "w", nx=True) is None and r.get("c:s") == b"v"
    assert r.set("c:absent", "w", xx=True) is None and r.exists("c:absent") == 0
    assert r.incr("c:n") == 1 and r.incr("c:n") == 2 and r.decr("c:n") == 1
    assert r.rpush("c:l", "b", "c") == 2 and r.lpush("c:l", "a") == 3
    assert r.lrange("c:l", 0, -1) == [b"a", b"b", b"c"]
    assert r.lrange("c:l", -2, 10) == [b"b", b"c"] and r.llen("c:l") == 3
    assert r.lpop("c:l") == b"a" and r.rpop("c:l") == b"c"
    assert r.hset("c:h", mapping={"f": "1", "g": "2"}) == 2 and r.hget("c:h", "g") == b"2"
    assert r.hgetall("c:h") == {b"f": b"1", b"g": b"2"}
    assert r.sadd("c:set", "x", "y", "x") == 2 and r.smembers("c:set") == {b"x", b"y"}
    assert set(r.keys("c:*")) >= {b"c:s", b"c:n", b"c:l", b"c:h", b"c:set"}
    assert r.delete("c:s", "c:absent") == 1 and r.get("c:s") is None
    assert r.expire("c:n", 100) is True and 0 < r.ttl("c:n") <= 100 and r.ttl("c:l") == -1
    assert r.ttl("c:absent") == -2 and 0 < r.pttl("c:n") <= 100_000
    assert r.dbsize() >= 4
    assert r.config_get("save")["save"] and r.config_get("appendonly") == {"appendonly": "no"}
    with pytest.raises(redis.ResponseError, match=re.escape(
            "WRONGTYPE Operation against a key holding the wrong kind of value")):
        r.lpush("c:h", "x")
    with pytest.raises(redis.ResponseError, match=re.escape(
            "wrong number of arguments for 'get' command")):
        r.execute_command("GET")
    with pytest.raises(redis.ResponseError) as err:
        r.execute_command("FOO", "a", "b")
    assert str(err.value) == "unknown command 'FOO', with args beginning with: 'a' 'b' "
    r.set("c:txt", "x")
    with pytest.raises(redis.ResponseError, match="value is not an integer or out of range"):
        r.incr("c:txt")
    assert r.ping() is True


def redis_cli(port: int, *args: str, stdin: str | None = None) -> str:
    """redis-cli's output (it prints error replies too, on stdout)."""
    exe = shutil.which("redis-cli")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("redis-cli is missing (.ci/run installs Debian's redis-tools)")
        pytest.skip("redis-cli is not installed (Debian: redis-tools)")
    done = subprocess.run([exe, "-p", str(port), *args], input=stdin, capture_output=True,
                          text=True, timeout=30)
    assert not done.stderr or "Warning" in done.stderr, done.stderr
    return done.stdout


def test_redis_cli_gets_the_answers_redis_gives(server: KVServer) -> None:
    p = server.port
    # Raw output (redis-cli's default when its output is not a terminal).
    assert redis_cli(p, "SET", "cli:k", "v") == "OK\n"
    assert redis_cli(p, "GET", "cli:k") == "v\n"
    assert redis_cli(p, "GET", "cli:absent") == "\n"
    assert redis_cli(p, "LPUSH", "cli:l", "a", "b", "c") == "3\n"
    assert redis_cli(p, "LRANGE", "cli:l", "0", "-1") == "c\nb\na\n"
    assert redis_cli(p, "INCR", "cli:n") == "1\n"
    assert redis_cli(p, "LPUSH", "cli:k", "x").rstrip("\n") == \
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    # As on a terminal (--no-raw): quoted strings, typed replies.
    assert redis_cli(p, "--no-raw", "GET", "cli:k") == '"v"\n'
    assert redis_cli(p, "--no-raw", "GET", "cli:absent") == "(nil)\n"
    assert redis_cli(p, "--no-raw", "INCR", "cli:n") == "(integer) 2\n"
    assert redis_cli(p, "--no-raw", "LRANGE", "cli:l", "0", "-1") == \
        '1) "c"\n2) "b"\n3) "a"\n'
    assert redis_cli(p, "--no-raw", "LRANGE", "cli:absent", "0", "-1") == "(empty array)\n"
    assert redis_cli(p, "--no-raw", "GET") == \
        "(error) ERR wrong number of arguments for 'get' command\n"
    assert redis_cli(p, "--no-raw", "NOSUCH", "a") == \
        "(error) ERR unknown command 'NOSUCH', with args beginning with: 'a' \n"
    # Commands read from stdin, one a line, answers in order.
    assert redis_cli(p, stdin="SET cli:s 1\nINCR cli:s\nGET cli:s\nDEL cli:s\nEXISTS cli:s\n"
                     ) == "OK\n2\n2\n1\n0\n"
    r = server.client  # what redis-cli wrote, as the Python client sees it
    assert r.get("cli:k") == b"v" and r.lrange("cli:l", 0, -1) == [b"c", b"b", b"a"]
    assert r.get("cli:n") == b"2"


def test_active_expiry_deletes_keys_through_the_orbit(server: KVServer) -> None:
    r = server.client
    with r.pipeline(transaction=False) as p:
        for i in range(300):
            p.set(f"e:{i}", "v", px=50)
        p.set("e:keep", "v", ex=1000)
        p.execute()
    # Nothing reads these keys, so only active expiry can remove them.
    wait_for("active expiry", lambda: r.info("stats")["active_expired_keys"] >= 250 and
             r.info("keyspace")["db0"]["expires"] <= 2)  # e:keep, and c:n of another test
    assert r.info("stats")["active_expired_keys"] >= 250
    assert r.get("e:keep") == b"v"


def test_slowlog_is_filled_by_the_orbit(server: KVServer) -> None:
    r = server.client
    r.config_set("slowlog-log-slower-than", 0)
    try:
        r.slowlog_reset()
        r.set("sl:key", "sl-value")
        entry = wait_for("a slow log entry", lambda: [
            e for e in r.slowlog_get(128) if e["command"] == b"SET sl:key sl-value"])
        assert entry[0]["duration"] >= 0 and entry[0]["start_time"] > 0
        assert r.slowlog_len() >= 1
        # Kept as Redis keeps them: arguments cut to 128 bytes, at most 32 of
        # them (the ring keeps a request's first 224 bytes: the rest is
        # counted, not kept)
        r.set("sl:long", "v" * 200)
        r.rpush("sl:many", *[str(i) for i in range(40)])
        want_long = [b"SET", b"sl:long", b"v" * 128 + b"... (72 more bytes)"]
        long = wait_for("the long SET", lambda: [
            e for e in r.slowlog_get(128) if e["command"] == b" ".join(want_long)])
        many = wait_for("the long RPUSH", lambda: [
            e for e in r.slowlog_get(128) if e["command"].startswith(b"RPUSH sl:many 0 1 2")])
        assert long and many[0]["command"].endswith(b" more arguments)")
        assert len(many[0]["command"].split(b" ")) <= 32 + 3  # "... (N more arguments)"
    finally:
        r.config_set("slowlog-log-slower-than", 10000)


def dataset(r: redis.Redis) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    for key in r.keys("*"):
        kind = r.type(key)
        out[key] = {b"string": r.get, b"list": lambda k: r.lrange(k, 0, -1),
                    b"hash": r.hgetall, b"set": r.smembers}[kind](key)
    return out


@pytest.mark.timeout(400)
def test_bgsave_snapshot_is_the_dataset_when_accepted(tmp_path: Path) -> None:
    srv = KVServer(tmp_path)
    try:
        r = srv.client
        model: dict[bytes, Any] = {}
        with r.pipeline(transaction=False) as p:
            for i in range(20000):
                p.set(f"k:{i}", f"value-{i}")
                model[f"k:{i}".encode()] = f"value-{i}".encode()
            for i in range(50):
                p.rpush(f"l:{i}", *[f"x{j}" for j in range(i + 1)])
                model[f"l:{i}".encode()] = [f"x{j}".encode() for j in range(i + 1)]
                p.hset(f"h:{i}", mapping={f"f{j}": f"{j}" for j in range(i + 1)})
                model[f"h:{i}".encode()] = {f"f{j}".encode(): f"{j}".encode()
                                            for j in range(i + 1)}
                p.sadd(f"s:{i}", *[f"m{j}" for j in range(i + 1)])
                model[f"s:{i}".encode()] = {f"m{j}".encode() for j in range(i + 1)}
            p.set("t:ttl", "lives", ex=3600)
            model[b"t:ttl"] = b"lives"
            p.execute()
        # BGSAVE, then keep writing while the orbit saves: the file must hold
        # the dataset as it was when BGSAVE was accepted, none of what follows.
        with r.pipeline(transaction=False) as p:
            p.bgsave()
            for i in range(0, 20000, 3):
                p.set(f"k:{i}", "changed")
            for i in range(0, 20000, 7):
                p.delete(f"k:{i}")
            p.rpush("l:0", "later")
            p.set("new:key", "later")
            replies = p.execute()
        assert replies[0] in (True, b"Background saving started")
        wait_for("the BGSAVE to end", lambda: (
            lambda p: p["rdb_bgsave_in_progress"] == 0 and p["rdb_saves"] >= 1)(
                r.info("persistence")), timeout=120)
        assert r.info("persistence")["rdb_last_bgsave_status"] == "ok"
        assert r.get("new:key") == b"later"
    finally:
        assert srv.stop() == 0, srv.output
    loaded = KVServer(tmp_path, "--load")
    try:
        assert dataset(loaded.client) == model
        assert 3500 < loaded.client.ttl("t:ttl") <= 3600
    finally:
        assert loaded.stop() == 0, loaded.output


@pytest.mark.timeout(300)
def test_sigterm_shuts_down_cleanly_with_no_orphans(tmp_path: Path) -> None:
    srv = KVServer(tmp_path)
    r = srv.client
    r.config_set("slowlog-log-slower-than", 0)
    r.set("a", "1", px=10)
    assert r.bgsave()
    wait_for("the BGSAVE to end", lambda: r.info("persistence")["rdb_saves"] >= 1, 120)
    wait_for("the slow log", lambda: r.slowlog_len() > 0)
    # The three tasks' orbits are running: the server's children.
    children = wait_for("three orbits", lambda: (lambda c: c if len(c) >= 3 else None)(
        srv.children()))
    assert srv.stop() == 0, srv.output
    assert "kvserver: shut down" in "".join(srv.output)

    def gone(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        return state in ("Z", "X")  # ended; reaping is up to whoever inherited it

    wait_for("the orbits to end", lambda: all(gone(p) for p in children), 30)
    assert not any(os.path.exists(p) for p in tmp_path.glob("*.tmp-*"))


@pytest.mark.timeout(300)
def test_a_fault_in_each_task_leaves_the_server_serving_and_the_task_resumes(
        tmp_path: Path) -> None:
    """Every fault kind, each task hit: the orbit fails, main keeps serving,
    the task carries on (the memory kind: past the orbit's memory_limit)."""
    srv = KVServer(tmp_path)
    try:
        r = srv.client
        r.set("f:data", "kept")

        def failures() -> int:
            return int(r.info("stats")["task_failures"])

        def expiry_works(tag: str) -> None:
            before = r.info("stats")["active_expired_keys"]
            with r.pipeline(transaction=False) as p:
                for i in range(100):
                    p.set(f"f:{tag}{i}", "v", px=20)
                p.execute()
            wait_for(f"expiry after the {tag}",
                     lambda: r.info("stats")["active_expired_keys"] >= before + 80)

        # Active expiry: its orbit segfaults, then raises; the next cycles
        # expire keys again.
        assert r.execute_command("DEBUG", "TASKFAULT", "expiry", "segfault") == b"OK"
        wait_for("the expiry orbit's crash", lambda: failures() >= 1)
        expiry_works("segfault")
        r.execute_command("DEBUG", "TASKFAULT", "expiry", "exception")
        wait_for("the expiry task's exception", lambda: failures() >= 2)
        expiry_works("exception")
        assert "InjectedFault: fault injected on request" in "".join(srv.output)

        # Slow log: its orbit aborts; later slow commands are logged.
        r.config_set("slowlog-log-slower-than", 0)
        r.execute_command("DEBUG", "TASKFAULT", "slowlog", "abort")
        wait_for("the slow-log orbit's crash",
                 lambda: r.set("f:tick", "1") and failures() >= 3)
        r.slowlog_reset()
        r.set("f:after", "abort")
        wait_for("slow log after the crash", lambda: any(
            e["command"] == b"SET f:after abort" for e in r.slowlog_get(128)))

        # BGSAVE: its orbit calls sys.exit(), runs out of memory (a runaway
        # allocation past the orbit's memory_limit), hangs (past the save's
        # timeout); each of those saves fails, the next one works.
        for n, kind in enumerate(("exit", "memory", "hang"), 4):
            # (a hang: a short timeout, but not so short that the runaway
            # allocation on a loaded machine overran it)
            r.config_set("kvserver-bgsave-timeout", 1 if kind == "hang" else 600)
            r.execute_command("DEBUG", "TASKFAULT", "bgsave", kind)
            assert r.bgsave()
            wait_for(f"the failed BGSAVE ({kind})", lambda: failures() >= n and (  # noqa: B023
                lambda p: p["rdb_bgsave_in_progress"] == 0 and
                p["rdb_last_bgsave_status"] == "err")(r.info("persistence")), 120)
            assert r.get("f:data") == b"kept" and r.ping()
        log = "".join(srv.output)
        assert "ran out of memory" in log and "OrbitTimeout" in log, log
        r.config_set("kvserver-bgsave-timeout", 600)
        assert r.bgsave()
        wait_for("the next BGSAVE", lambda: (lambda p: p["rdb_bgsave_in_progress"] == 0 and
                 p["rdb_last_bgsave_status"] == "ok")(r.info("persistence")), 120)
        assert (tmp_path / "dump.kvs").exists()
        assert r.get("f:data") == b"kept" and r.ping()
    finally:
        assert srv.stop() == 0, srv.output
