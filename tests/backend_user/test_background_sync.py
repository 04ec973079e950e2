"""Userspace backend: copying between calls (csrc/us/background_sync.c).

Every period (ORBITPY_BGSYNC_MS, 50 ms by default) a thread of main copies
the pages main wrote, and has not written again since, into the copies of
the orbits that are between calls; a call then copies only what is left.
What a call sees must not change: one snapshot of the moment it was made,
also for a call that does not name an arena whose copy the thread wrote.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from orbitpy import _core
from snapshot_util import PAGE, delta, digest, page_starts

PERIOD_MS = 20


@pytest.fixture
def fast_sync() -> Iterator[None]:
    prev = _core.set_background_sync(PERIOD_MS)
    yield
    _core.set_background_sync(prev)


def settle() -> None:
    """Long enough for pages written before it to be copied: quiet for a
    whole period, then copied by the next pass (generous, for a busy CI)."""
    time.sleep(15 * PERIOD_MS / 1000)


@pytest.mark.usefixtures("fast_sync")
def test_pages_written_between_calls_are_copied_before_the_call(make_orbit: Any,
                                                                new_arena: Any) -> None:
    a = new_arena(16 << 20)
    buf = a.buffer(2001 * PAGE)

    @make_orbit
    def check(b: memoryview) -> str:
        return digest(b)

    assert check(buf) == digest(buf)
    for rnd in range(1, 4):
        s0 = check.orbit.stats()
        offs = page_starts(buf, 500, step=3)
        for off in offs:
            buf[off] = rnd
        settle()
        assert check(buf) == digest(buf)
        # All 500 were copied by the thread, which the call does not count
        # (a slow CI may leave a few for the call).
        assert delta(check.orbit.stats(), s0, "pages_copied") < 100


@pytest.mark.usefixtures("fast_sync")
def test_stopped_copies_nothing_between_calls(make_orbit: Any, new_arena: Any) -> None:
    a = new_arena(16 << 20)
    buf = a.buffer(601 * PAGE)

    @make_orbit
    def check(b: memoryview) -> str:
        return digest(b)

    assert check(buf) == digest(buf)
    assert _core.set_background_sync(0) == PERIOD_MS
    s0 = check.orbit.stats()
    for off in page_starts(buf, 500):
        buf[off] = 7
    settle()
    assert check(buf) == digest(buf)
    assert delta(check.orbit.stats(), s0, "pages_copied") == 500


@pytest.mark.usefixtures("fast_sync")
def test_a_call_naming_no_arena_still_sees_one_snapshot(make_orbit: Any,
                                                         new_arena: Any) -> None:
    """The thread copies quiet pages and leaves a page main keeps writing:
    the orbit's copy then mixes two moments.  A call that does not name the
    arena (it reaches the buffer through a closure) must still see one."""
    a = new_arena(16 << 20)
    buf = a.buffer(65 * PAGE)
    offs = page_starts(buf, 64)
    lock = threading.Lock()
    value = [1]
    stop = threading.Event()

    def write_all(v: int) -> None:
        for off in offs:
            buf[off] = v

    write_all(1)

    @make_orbit
    def values(b: memoryview | None = None) -> set[int]:
        return {(buf if b is None else b)[off] for off in offs}

    def hot() -> None:  # page 0, written again and again: never quiet
        while not stop.is_set():
            with lock:
                buf[offs[0]] = value[0]
            time.sleep(0.001)

    assert values(buf) == {1}  # names the arena: the orbit gets its copy
    t = threading.Thread(target=hot)
    t.start()
    try:
        for v in range(2, 8):
            with lock:
                value[0] = v
                write_all(v)
            settle()
            with lock:
                assert values() == {v}  # names no arena
    finally:
        stop.set()
        t.join()
    assert values(buf) == {7}


@pytest.mark.usefixtures("fast_sync")
def test_snapshots_stay_consistent_while_a_thread_writes(make_orbit: Any,
                                                         new_arena: Any) -> None:
    """A writer keeps 200 pages equal to one counter (under a lock); calls
    made under that lock, at times the thread has copied part of the pages
    and not the rest, see them all equal."""
    a = new_arena(16 << 20)
    buf = a.buffer(401 * PAGE)
    offs = page_starts(buf, 200, step=2)
    lock = threading.Lock()
    stop = threading.Event()
    count = [0]

    def writer() -> None:
        while not stop.is_set():
            with lock:
                count[0] = (count[0] + 1) % 250
                for off in offs[: 20 + count[0] % 180]:
                    buf[off] = count[0]
                for off in offs[20 + count[0] % 180:]:
                    buf[off] = count[0]
            time.sleep(0.002 * (count[0] % 7))

    @make_orbit
    def values(b: memoryview) -> set[int]:
        return {b[off] for off in offs}

    t = threading.Thread(target=writer)
    t.start()
    try:
        deadline = time.monotonic() + 4
        calls = 0
        while time.monotonic() < deadline:
            with lock:
                assert values(buf) == {count[0]}
            calls += 1
            time.sleep(0.013 * (calls % 9))
    finally:
        stop.set()
        t.join()
    assert calls > 20


@pytest.mark.usefixtures("fast_sync")
def test_fork_while_the_thread_copies(make_orbit: Any, new_arena: Any) -> None:
    """Forks (a pre-forking server's workers) while the thread is copying:
    no child inherits a lock it cannot release; each makes its own arena
    and orbit, calls it, and exits."""
    a = new_arena(64 << 20)
    buf = a.buffer(8001 * PAGE)
    offs = page_starts(buf, 4000, step=2)

    @make_orbit
    def check(b: memoryview) -> str:
        return digest(b)

    assert check(buf) == digest(buf)
    for rnd in range(12):
        for off in offs:
            buf[off] = rnd + 1
        time.sleep(0.002 * (rnd % 5) + PERIOD_MS / 1000)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                import orbitpy

                ca = orbitpy.arena(1 << 20)
                cb = ca.buffer(16 * PAGE)
                cb[0] = 9
                f = orbitpy.orbit(timeout=20)(digest)
                code = 0 if f(cb) == digest(cb) else 2
                f.close()
                ca.close()
            finally:
                os._exit(code)
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail(f"child {rnd} hung")
            time.sleep(0.01)
        assert os.waitstatus_to_exitcode(status) == 0, rnd
    assert check(buf) == digest(buf)


@pytest.mark.usefixtures("fast_sync")
def test_warm_makes_a_late_first_call_copy_little(make_orbit: Any, new_arena: Any) -> None:
    """An orbit warmed before its arena is filled gets its copy filled
    between calls: its first call copies little, and sees everything."""
    a = new_arena(64 << 20)
    buf = a.buffer(4001 * PAGE)

    @make_orbit(areas=[a])
    def check(b: memoryview) -> str:
        return digest(b)

    check.orbit.warm()
    pid = check.orbit.pid
    assert pid > 0
    assert check.orbit.stats()["calls"] == 0
    for n, off in enumerate(page_starts(buf, 4000)):
        buf[off] = n % 251 + 1
    settle()
    assert check(buf) == digest(buf)
    st = check.orbit.stats()
    assert check.orbit.pid == pid
    assert st["full_syncs"] == 1  # the copy made by warm(), sent with this call
    assert st["pages_copied"] < 400  # of 4,000 written (an idle machine: ~0)
    check.orbit.warm(a)  # again: nothing to do, the same process
    assert check.orbit.pid == pid


def test_warm_without_the_thread_still_gives_whole_snapshots(make_orbit: Any,
                                                              new_arena: Any) -> None:
    a = new_arena(16 << 20)
    buf = a.buffer(501 * PAGE)
    prev = _core.set_background_sync(0)
    try:
        @make_orbit
        def check(b: memoryview) -> str:
            return digest(b)

        check.orbit.warm(a)
        for off in page_starts(buf, 500):
            buf[off] = 3
        assert check(buf) == digest(buf)
        assert check.orbit.stats()["pages_copied"] >= 500
    finally:
        _core.set_background_sync(prev)


def test_warm_refuses_what_is_not_an_arena(make_orbit: Any, new_arena: Any) -> None:
    import orbitpy

    @make_orbit
    def f() -> int:
        return 1

    with pytest.raises(TypeError, match="orbitpy arenas"):
        f.orbit.warm(b"not an arena")  # type: ignore[arg-type]
    a = new_arena(1 << 20)
    a.close()
    with pytest.raises(ValueError, match="closed"):
        f.orbit.warm(a)
    f.orbit.close()
    with pytest.raises(orbitpy.OrbitClosed):
        f.orbit.warm()
