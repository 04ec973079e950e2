"""Transparency: arenas behave like ordinary memory for the rest of main.

System calls may write into arena buffers, main's signal handlers (and
faulthandler) keep working whatever tracks the pages, the snapshot mode can be
chosen from the environment, and main may write while calls are in flight.
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from orbitpy import _core

PAGE = 4096




def digest(b: Any) -> str:
    return hashlib.sha256(b).hexdigest()


def page_start(buf: Any, n: int = 0) -> int:
    """Offset in buf of the start of its n-th whole page."""
    return (-_core.buffer_address(buf)[0]) % PAGE + n * PAGE


def run_python(code: str, env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ORBITPY_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=timeout)


# ------------------------------------------- 10. system calls writing arenas

def _syscall_into(mode: str, do_io: Callable[[memoryview], int], payload: bytes,
                  make_orbit: Any, new_arena: Any) -> str:
    """Let a system call write `payload` into a page main has not written
    since the last call (so it is write-protected in the tracked modes).
    Returns 'ok' or 'EFAULT'."""
    a = new_arena(1 << 20, mode)
    buf = a.buffer(8 * PAGE)
    off = page_start(buf, 2)
    buf[off - 10:off] = b"0123456789"

    @make_orbit
    def content(b: memoryview) -> bytes:
        return bytes(b)

    assert content(buf) == bytes(buf)  # every page clean again
    before = bytes(buf)
    try:
        n = do_io(buf[off:off + 3 * PAGE])
    except OSError as e:
        # mprotect mode: the kernel cannot report its own write; the
        # documented outcome is EFAULT, with main's memory untouched.
        assert mode == "mprotect", f"{mode}: {e!r}"
        assert e.errno == errno.EFAULT, e
        assert bytes(buf) == before
        assert content(buf) == before
        return "EFAULT"
    assert n == len(payload)
    assert bytes(buf[off:off + n]) == payload
    assert content(buf) == bytes(buf)  # the orbit sees what the kernel wrote
    assert content(buf[off:off + n]) == payload
    return "ok"


def test_recv_into_an_arena_buffer(mode: str, make_orbit: Any, new_arena: Any) -> None:
    payload = bytes(range(256)) * 20  # 5120 bytes: crosses a page boundary
    s1, s2 = socket.socketpair()
    with s1, s2:
        s1.sendall(payload)

        def recv(view: memoryview) -> int:
            got = 0
            while got < len(payload):
                got += s2.recv_into(view[got:], len(payload) - got)
            return got

        outcome = _syscall_into(mode, recv, payload, make_orbit, new_arena)
    if mode != "mprotect":
        assert outcome == "ok"


def test_readv_from_a_pipe_into_an_arena_buffer(mode: str, make_orbit: Any,
                                                new_arena: Any) -> None:
    payload = os.urandom(2 * PAGE + 77)
    r, w = os.pipe()
    try:
        os.write(w, payload)

        def readv(view: memoryview) -> int:
            got = 0
            while got < len(payload):
                got += os.readv(r, [view[got:len(payload)]])
            return got

        outcome = _syscall_into(mode, readv, payload, make_orbit, new_arena)
    finally:
        os.close(r)
        os.close(w)
    if mode != "mprotect":
        assert outcome == "ok"


def test_syscall_into_a_page_main_already_dirtied(mode: str, make_orbit: Any,
                                                  new_arena: Any) -> None:
    """In every mode a page main wrote since the last call is writable: a
    read(2) into it works and the next call sees the data."""
    a = new_arena(1 << 20, mode)
    buf = a.buffer(4 * PAGE)
    off = page_start(buf, 1)

    @make_orbit
    def content(b: memoryview) -> bytes:
        return bytes(b)

    content(buf)
    buf[off] = 1  # dirty (unprotected) from here to the next call
    r, w = os.pipe()
    try:
        os.write(w, b"kernel wrote this")
        assert os.readv(r, [buf[off:off + 100]]) == 17
    finally:
        os.close(r)
        os.close(w)
    assert content(buf) == bytes(buf)
    assert bytes(buf[off:off + 17]) == b"kernel wrote this"


# --------------------------------------------------------- 11. signals

def test_python_signal_handler_keeps_working(mode: str, make_orbit: Any,
                                             new_arena: Any) -> None:
    got: list[float] = []
    old = signal.signal(signal.SIGUSR1, lambda signum, frame: got.append(time.monotonic()))
    try:
        a = new_arena(1 << 20, mode)
        buf = a.buffer(16 * PAGE)

        @make_orbit
        def slow(b: memoryview, delay: float) -> str:
            time.sleep(delay)
            return digest(b)

        for i in range(8):
            buf[page_start(buf, i)] = i + 1
            assert slow(buf, 0) == digest(buf)
            os.kill(os.getpid(), signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while len(got) < 8 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(got) == 8

        # A signal arriving while main waits for a call runs its handler,
        # and the call still completes.
        timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1))
        timer.start()
        buf[0] = 99
        want = digest(buf)
        assert slow(buf, 0.3) == want
        done = time.monotonic()
        timer.join()
        assert len(got) == 9 and got[-1] <= done
    finally:
        signal.signal(signal.SIGUSR1, old)


_FAULTHANDLER_SCRIPT = """
    import ctypes, faulthandler, os, sys
    import orbitpy

    MODE = "mprotect"
    if ENABLE_FIRST:
        faulthandler.enable()
    a = orbitpy.arena(1 << 20, snapshot=MODE)
    buf = a.buffer(64 * 4096)

    @orbitpy.orbit
    def total(b):
        return sum(b)

    for i in range(5):
        for p in range(0, len(buf), 4096):
            buf[p] = (buf[p] + 1) % 256
        assert total(buf) == sum(buf)
    if not ENABLE_FIRST:
        faulthandler.enable()
        for p in range(0, len(buf), 4096):  # pages write-protected again
            buf[p] = (buf[p] + 1) % 256
        assert total(buf) == sum(buf)
    print("orbit-pid", total.orbit.pid, flush=True)
    print("before-crash", flush=True)
    ctypes.string_at(0)
    print("survived", flush=True)
"""


def _orbit_gone(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("enable_first", [True, False],
                         ids=["faulthandler-then-arena", "arena-then-faulthandler"])
def test_faulthandler_and_genuine_segfault_with_mprotect(enable_first: bool) -> None:
    proc = run_python(_FAULTHANDLER_SCRIPT.replace("ENABLE_FIRST", str(enable_first)))
    out, err = proc.stdout, proc.stderr
    # Tracking faults are not reported; the process got as far as the crash.
    assert "before-crash" in out, f"rc={proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    assert err.count("Fatal Python error") == 1, err
    assert "survived" not in out
    # The genuine fault: faulthandler reports it and the process dies of it.
    assert proc.returncode == -signal.SIGSEGV, (proc.returncode, err)
    assert "Segmentation fault" in err
    assert "string_at" in err or "line" in err
    pid = int(out.split("orbit-pid", 1)[1].split()[0])
    assert _orbit_gone(pid), f"orbit {pid} outlived its crashed main"


def test_python_sigsegv_handler_chain_untouched_by_tracking_faults() -> None:
    """A SIGSEGV handler installed before an mprotect arena is not called for
    the arena's tracking faults, but still gets genuine faults."""
    code = """
        import ctypes, signal, os, sys
        import orbitpy

        calls = []
        a = None
        def handler(signum, frame):
            calls.append(signum)
            print("handler", len(calls), flush=True)
            os._exit(42)

        signal.signal(signal.SIGSEGV, handler)
        a = orbitpy.arena(1 << 20, snapshot="mprotect")
        buf = a.buffer(32 * 4096)

        @orbitpy.orbit
        def total(b):
            return sum(b)

        for i in range(3):
            for p in range(0, len(buf), 4096):
                buf[p] = i + 1
            assert total(buf) == sum(buf)
        print("tracking-ok", calls, flush=True)
        total.orbit.close()
        os.kill(os.getpid(), signal.SIGSEGV)
        print("survived", flush=True)
    """
    proc = run_python(code)
    assert "tracking-ok []" in proc.stdout, proc.stdout + proc.stderr
    assert "handler 1" in proc.stdout, proc.stdout + proc.stderr
    assert "survived" not in proc.stdout
    assert proc.returncode == 42, proc.stderr


# --------------------------------------------------- 12. ORBITPY_SNAPSHOT

_ENV_SCRIPT = """
    import orbitpy
    a = orbitpy.arena(1 << 20)
    buf = a.buffer(4096)
    buf[0] = 7

    @orbitpy.orbit(areas=[a])
    def f():
        return 1

    @orbitpy.orbit
    def g(b):
        return b[0]

    assert f() == 1 and g(buf) == 7
    forced = orbitpy.arena(1 << 20, snapshot="full").snapshot_mode
    print(a.snapshot_mode, f.orbit.stats()["snapshot_mode"], g.orbit.stats()["snapshot_mode"],
          orbitpy.default_snapshot_mode(), forced)
    f.orbit.close()
    g.orbit.close()
"""


@pytest.mark.parametrize("env_mode", ["uffd", "mprotect", "full"])
def test_orbitpy_snapshot_environment_selects_the_default_mode(env_mode: str) -> None:
    proc = run_python(_ENV_SCRIPT, env={"ORBITPY_SNAPSHOT": env_mode})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [env_mode] * 4 + ["full"]


def test_orbitpy_snapshot_environment_auto_and_empty() -> None:
    for value in ("auto", ""):
        proc = run_python(_ENV_SCRIPT, env={"ORBITPY_SNAPSHOT": value})
        assert proc.returncode == 0, proc.stderr
        modes = proc.stdout.split()
        assert modes[0] in ("uffd", "mprotect", "full")
        assert modes == [modes[0]] * 4 + ["full"]


def test_invalid_orbitpy_snapshot_raises_value_error() -> None:
    code = """
        import orbitpy
        try:
            orbitpy.arena(1 << 20)
        except ValueError as e:
            print("ValueError", e)
        else:
            print("no error")
        print(orbitpy.arena(1 << 20, snapshot="mprotect").snapshot_mode)
    """
    proc = run_python(code, env={"ORBITPY_SNAPSHOT": "bogus"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("ValueError") and "bogus" in lines[0], proc.stdout
    assert lines[1] == "mprotect"


def test_invalid_snapshot_argument_raises_value_error(new_arena: Any) -> None:
    with pytest.raises(ValueError, match="snapshot mode"):
        new_arena(1 << 20, "dirty-bits")


# ------------------------------------------- 13. main writes during a call

def test_main_writes_during_a_call_do_not_disturb_it(mode: str, make_orbit: Any,
                                                     new_arena: Any) -> None:
    a = new_arena(4 << 20, mode)
    buf = a.buffer(1 << 20)
    arr = np.frombuffer(buf, dtype=np.uint8)
    rng = np.random.default_rng(3)
    arr[:] = rng.integers(0, 256, len(arr), dtype=np.uint8)

    @make_orbit
    def steady(x: np.ndarray, reads: int) -> tuple[bool, str]:
        first = digest(x)
        same = True
        for _ in range(reads):
            same = same and digest(x) == first
        return same, first

    stop = threading.Event()
    writes = [0]
    noise = [rng.integers(0, 256, len(arr), dtype=np.uint8) for _ in range(4)]

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            start = (i * 7919 * PAGE) % (len(arr) - 64 * PAGE)
            # Large copies: NumPy drops the GIL, so these run truly in
            # parallel with main's calls.
            np.copyto(arr[start:start + 64 * PAGE], noise[i % 4][:64 * PAGE])
            arr[i % len(arr)] = i % 256
            writes[0] += 1

    # A call issued before the writes start sees exactly the content at
    # call time, however much main writes meanwhile.
    want = digest(buf)
    fut = steady.call_async(arr, 100)
    t = threading.Thread(target=writer)
    t.start()
    try:
        assert fut.result(timeout=60) == (True, want)
        # Calls issued while the writer runs: each sees one constant snapshot.
        for _ in range(5):
            same, _h = steady(arr, 20)
            assert same
    finally:
        stop.set()
        t.join()
    assert writes[0] > 0
    # No write was lost by the tracking: the next call sees main exactly.
    assert steady(arr, 1) == (True, digest(buf))
    assert steady(arr, 1) == (True, digest(buf))
