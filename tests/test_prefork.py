"""Arenas and orbits in processes forked from main (issue 8.6): a child makes
its own arenas in every mode; a child handed the parent's arena (a
pre-forking server: gunicorn --preload) fails loudly and says what to do."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import orbitpy
from conftest import SNAPSHOT_MODES, snapshot_params

MakeOrbit = Callable[..., Any]


def in_forked_child(fn: Callable[[], int], timeout: float = 60) -> int:
    """Run fn() in a child made with os.fork(); return its exit code (fn's
    return value; 99 if it raised)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            code = fn()
        except BaseException:  # noqa: BLE001 - reported through the exit code
            traceback.print_exc()
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"the forked child did not finish within {timeout} s")
        time.sleep(0.01)


@pytest.mark.parametrize("mode", snapshot_params(SNAPSHOT_MODES))
def test_child_makes_arenas_after_fork(mode: str, make_orbit: MakeOrbit,
                                       new_arena: Any) -> None:
    # The parent uses the mode first, so whatever it opens for it is inherited.
    parent_buf = new_arena(1 << 20, mode).buffer(4096)
    parent_buf[0] = 5

    @make_orbit
    def first(b: memoryview) -> int:
        return b[0]

    assert first(parent_buf) == 5

    def child() -> int:
        arenas = [orbitpy.arena(1 << 20, snapshot=mode) for _ in range(2)]
        bufs = [a.buffer(4096) for a in arenas]

        @orbitpy.orbit
        def total(x: memoryview, y: memoryview) -> int:
            return x[0] + y[0]

        try:
            bufs[0][0], bufs[1][0] = 7, 8
            if total(*bufs) != 15:
                return 1
            bufs[0][0] = 30
            if total(*bufs) != 38:
                return 2
            # the inherited orbit function works too (an orbit of the child's own)
            return 0 if first(bufs[1]) == 8 else 3
        finally:
            total.orbit.close()
            first.orbit.close()

    assert in_forked_child(child) == 0
    assert first(parent_buf) == 5  # the parent's orbit is untouched


def test_parents_arena_in_a_forked_child_fails_loudly(make_orbit: MakeOrbit,
                                                      new_arena: Any) -> None:
    buf = new_arena(1 << 20).buffer(4096)

    @make_orbit
    def first(b: memoryview) -> int:
        return b[0]

    assert first(buf) == 0

    def child() -> int:
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append  # type: ignore[method-assign]
        logging.getLogger("orbitpy").addHandler(handler)
        try:
            messages = []
            for _ in range(3):  # every call fails, the log says it once
                try:
                    first(buf)
                except orbitpy.OrbitError as e:
                    messages.append(str(e))
            if len(messages) != 3:
                return 1
            for m in messages:
                if "created in another process" not in m or "post_fork" not in m:
                    print(m, file=sys.stderr)
                    return 2
            if len(records) != 1 or records[0].levelno != logging.ERROR:
                print(records, file=sys.stderr)
                return 3
            return 0
        finally:
            first.orbit.close()

    assert in_forked_child(child) == 0
    assert first(buf) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


GUNICORN_APP = """
import orbitpy

arena = orbitpy.arena(1 << 20)          # made in the master: the mistake
buf = arena.buffer(4096)

@orbitpy.orbit
def first(b):
    return b[0]

def app(environ, start_response):
    try:
        body = f"ok {first(buf)}".encode()
        status = "200 OK"
    except orbitpy.OrbitError as e:
        body = str(e).encode()
        status = "500 Internal Server Error"
    start_response(status, [("Content-Type", "text/plain")])
    return [body]
"""


POST_FORK_APP = """
import orbitpy

state = {}

def make_arenas():                      # called in each worker (post_fork)
    arena = orbitpy.arena(1 << 20)
    buf = arena.buffer(4096)
    buf[0] = 42
    state["buf"] = buf

@orbitpy.orbit
def first(b):
    return b[0]

def app(environ, start_response):
    try:
        body = f"ok {first(state['buf'])}".encode()
        status = "200 OK"
    except orbitpy.OrbitError as e:
        body = str(e).encode()
        status = "500 Internal Server Error"
    start_response(status, [("Content-Type", "text/plain")])
    return [body]
"""

POST_FORK_CONF = """
def post_fork(server, worker):
    import app
    app.make_arenas()
"""


def run_gunicorn(tmp_path: Path, app: str, *args: str) -> tuple[bytes, str]:
    """Serve `app` with gunicorn (one worker), GET / once; (reply, stderr)."""
    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable))
    if gunicorn is None:
        pytest.skip("gunicorn is not installed")
    (tmp_path / "app.py").write_text(textwrap.dedent(app))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORBITPY_")}
    proc = subprocess.Popen([gunicorn, "--preload", "-w", "1", "-b", f"127.0.0.1:{port}",
                             "--chdir", str(tmp_path), *args, "app:app"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reply = b""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    c.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                    while chunk := c.recv(65536):
                        reply += chunk
                break
            except OSError:
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=10)
    return reply, err


def test_gunicorn_preload_fails_loudly(tmp_path: Path) -> None:
    reply, err = run_gunicorn(tmp_path, GUNICORN_APP)
    assert reply.split(b" ")[1:2] == [b"500"], (reply, err[-3000:])
    assert b"post_fork" in reply, reply
    # The worker logged it (gunicorn's error log is stderr).
    assert "created in another process" in err, err[-3000:]


def test_gunicorn_post_fork_arenas_work(tmp_path: Path) -> None:
    (tmp_path / "conf.py").write_text(textwrap.dedent(POST_FORK_CONF))
    reply, err = run_gunicorn(tmp_path, POST_FORK_APP, "-c", str(tmp_path / "conf.py"))
    assert reply.split(b" ")[1:2] == [b"200"], (reply, err[-3000:])
    assert reply.endswith(b"ok 42"), reply
