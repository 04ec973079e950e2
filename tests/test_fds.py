"""What an orbit inherits: main's descriptors (issue 8.4), and what closing an
arena releases (issue 8.5)."""

from __future__ import annotations

import logging
import os
import select
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import orbitpy
from conftest import orbit_fds

MakeOrbit = Callable[..., Any]


def eof_within(fd: int, seconds: float) -> bool:
    """Does the read end `fd` see end-of-file within `seconds`?"""
    ready, _, _ = select.select([fd], [], [], seconds)
    return bool(ready) and os.read(fd, 1) == b""


# ------------------------------------------------ 8.4: main's descriptors

def test_pipe_main_closes_reaches_eof_while_the_orbit_lives(make_orbit: MakeOrbit) -> None:
    r, w = os.pipe()
    try:
        @make_orbit
        def pid() -> int:
            return os.getpid()

        orbit_pid = pid()  # the orbit is forked while main holds the write end
        os.close(w)
        w = -1
        assert eof_within(r, 5), "an orbit keeps main's closed pipe open"
        assert pid() == orbit_pid  # the same orbit, still alive
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_listening_socket_main_closed_refuses_connections(make_orbit: MakeOrbit) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]

    @make_orbit
    def pid() -> int:
        return os.getpid()

    orbit_pid = pid()
    srv.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert pid() == orbit_pid


def test_orbit_keeps_its_own_and_standard_descriptors(make_orbit: MakeOrbit) -> None:
    """0/1/2 stay; sockets, pipes and event descriptors main had do not (the
    orbit's own channel is its only socket)."""
    sock_a, sock_b = socket.socketpair()
    r, w = os.pipe()
    efd = os.eventfd(0)
    try:
        @make_orbit
        def pid() -> int:
            return os.getpid()

        held = orbit_fds(pid())
        assert sum(t.startswith("socket:") for t in held) == 1, held  # its channel
        assert not [t for t in held if t.startswith("pipe:")], held
        assert not [t for t in held if "eventfd" in t], held
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/{pid()}/fd/{fd}") == os.readlink(f"/proc/self/fd/{fd}")
    finally:
        for fd in (r, w, efd):
            os.close(fd)
        sock_a.close()
        sock_b.close()


def test_pass_fds_keeps_a_descriptor(make_orbit: MakeOrbit) -> None:
    r, w = os.pipe()
    other_r, other_w = os.pipe()
    try:
        @make_orbit(pass_fds=[w])
        def write(data: bytes) -> int:
            return os.write(w, data)

        assert write(b"hello") == 5
        assert os.read(r, 5) == b"hello"
        os.close(w)
        w = -1
        # The orbit still holds it: no end-of-file for the reader.
        assert not eof_within(r, 0.3)
        assert write(b"again") == 5
        assert os.read(r, 5) == b"again"
        # ...and only it: the other pipe main had is gone from the orbit.
        os.close(other_w)
        other_w = -1
        assert eof_within(other_r, 5)
        write.orbit.close()
        assert eof_within(r, 5)
    finally:
        for fd in (r, w, other_r, other_w):
            if fd >= 0:
                os.close(fd)


def test_pass_fds_accepts_objects_with_fileno(make_orbit: MakeOrbit) -> None:
    a, b = socket.socketpair()
    with a, b:
        @make_orbit(pass_fds=[a])
        def send(data: bytes) -> int:
            return a.send(data)

        assert send(b"ping") == 4
        assert b.recv(4) == b"ping"


@pytest.mark.parametrize("bad", [[-1], ["x"], [True], 3])
def test_pass_fds_is_checked(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="pass_fds"):
        orbitpy.orbit(pass_fds=bad)


def test_a_closed_socket_fails_clearly_in_the_orbit(make_orbit: MakeOrbit) -> None:
    """A socket object main had is unusable in the orbit (it raises), and its
    descriptor number is not handed to anything else there."""
    a, b = socket.socketpair()
    with a, b:
        @make_orbit
        def send() -> str:
            try:
                a.send(b"x")
            except OSError as e:
                return type(e).__name__
            return "sent"

        assert send() == "OSError"
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(1)


def test_logging_to_a_file_works_in_the_orbit(make_orbit: MakeOrbit, tmp_path: Path) -> None:
    log = logging.getLogger("orbitpy-test-file")
    handler = logging.FileHandler(tmp_path / "task.log")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        @make_orbit
        def task(n: int) -> int:
            log.info("orbit says %d", n)
            handler.flush()
            return n

        assert task(7) == 7
        assert task(8) == 8
    finally:
        log.removeHandler(handler)
        handler.close()
    assert (tmp_path / "task.log").read_text() == "orbit says 7\norbit says 8\n"


def test_logging_to_stderr_works_in_the_orbit() -> None:
    code = textwrap.dedent("""
        import logging, orbitpy
        logging.basicConfig(level=logging.INFO, format="%(process)d %(message)s")

        @orbitpy.orbit
        def task():
            logging.getLogger("t").info("from the orbit")
            return 1

        assert task() == 1
        task.orbit.close()
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORBITPY_")}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    assert "from the orbit" in p.stderr, p.stderr


# ------------------------------------------------ 8.5: closing an arena


def test_arena_cycles_under_a_low_descriptor_limit() -> None:
    code = textwrap.dedent("""
        import resource, orbitpy
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

        @orbitpy.orbit
        def first(b):
            return b[0]

        @orbitpy.orbit
        def second(b):
            return b[1]

        for i in range(400):
            a = orbitpy.arena(64 << 10)
            b = a.buffer(4096)
            b[0], b[1] = i % 256, (i + 1) % 256
            assert first(b) == i % 256 and second(b) == (i + 1) % 256, i
            del b
            a.close()
        first.orbit.close()
        second.orbit.close()
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORBITPY_")}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=100, env=env)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]
