"""Transparency: arenas behave like ordinary memory for the rest of main.

System calls may write into arena buffers, main's signal handlers keep
working whatever tracks the pages, and main may write while calls are in
flight.  (mprotect's fault handling beside main's SIGSEGV handlers and
faulthandler, and ORBITPY_SNAPSHOT, are the userspace backend's: see
backend_user/test_tracking_modes.py.)
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import socket
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


# ---------------------------------------------- 12. the snapshot argument

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
