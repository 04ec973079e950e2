"""Snapshot semantics: what an orbit call sees of the arenas, and what it costs.

Every call sees the arenas exactly as they were when the call was issued (for
``call_async``: when it returned), at the same address as in main, and nothing
the orbit writes ever reaches main or a later call.  In the 'uffd' and
'mprotect' modes a call copies exactly the pages main wrote since the
previous call of that orbit; in 'full' mode every populated page (those
counts, and the staging ring, are the userspace backend's: they are tested in
backend_user/test_snapshot_costs.py).
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import orbitpy
from conftest import BACKEND_COPIES, full_syncs
from orbitpy import _core
from snapshot_util import (
    PAGE,
    TRACKED_MODES,
    addr_of,
    delta,
    digest,
    page_starts,
    populated_pages,
)

# ------------------------------------------------------- 1. same address

def test_buffer_has_the_same_address_in_the_orbit(mode: str, make_orbit: Any,
                                                  new_arena: Any) -> None:
    a = new_arena(1 << 20, mode)
    assert a.snapshot_mode == mode
    buf = a.buffer(3 * PAGE + 123)
    buf[:5] = b"hello"

    @make_orbit
    def where(b: memoryview) -> tuple[int, int, bytes]:
        return addr_of(b), len(b), bytes(b[:5])

    addr = addr_of(buf)
    assert a.address <= addr < a.address + a.size
    assert where(buf) == (addr, len(buf), b"hello")
    # A contiguous slice crosses as its own address, too.
    assert where(buf[100:300]) == (addr + 100, 200, bytes(buf[100:105]))


def test_arena_created_after_the_orbit_started(mode: str, make_orbit: Any,
                                               new_arena: Any) -> None:
    first = new_arena(1 << 20, mode)
    fb = first.buffer(PAGE)
    fb[:3] = b"one"

    @make_orbit
    def look(b: memoryview) -> tuple[int, bytes]:
        return addr_of(b), bytes(b[:3])

    assert look(fb) == (addr_of(fb), b"one")
    pid = look.orbit.pid
    assert pid > 0

    later = new_arena(4 << 20, mode)  # created while the orbit process runs
    lb = later.buffer(2 * PAGE)
    lb[:3] = b"two"
    lb[PAGE:PAGE + 3] = b"2nd"
    assert look(lb) == (addr_of(lb), b"two")
    assert look(lb[PAGE:]) == (addr_of(lb) + PAGE, b"2nd")
    assert look(fb) == (addr_of(fb), b"one")
    assert look.orbit.pid == pid, "the orbit was restarted to see the new arena"
    assert look.orbit.stats()["full_syncs"] == full_syncs(2)  # one per arena


def test_buffer_outliving_its_arena_object_still_crosses_by_address(
        mode: str, make_orbit: Any) -> None:
    """`buf = orbitpy.arena(n).buffer(k)`: the buffer keeps the arena's
    memory alive and valid, so it must still cross to an orbit by address."""
    buf = orbitpy.arena(1 << 20, snapshot=mode).buffer(2 * PAGE)
    arr = np.frombuffer(buf, dtype=np.int64)
    gc.collect()
    buf[:2] = b"hi"

    @make_orbit
    def look(b: Any) -> tuple[int, bytes]:
        return _core.buffer_address(b)[0], bytes(memoryview(b).cast("B")[:2])

    assert look(arr) == (addr_of(arr), b"hi")  # by address, not a pickled copy
    assert look(buf) == (addr_of(buf), b"hi")


def test_buffer_lookup_is_safe_while_other_threads_create_arenas(make_orbit: Any,
                                                                new_arena: Any) -> None:
    """Passing arena buffers must work while another thread creates and
    closes arenas (the lookup of "which arena holds this buffer" must not
    see a half-updated table)."""
    hole = new_arena(1 << 20)  # leaves a gap below the arenas we keep
    keep = [new_arena(1 << 20) for _ in range(3)]
    bufs = [k.buffer(PAGE) for k in keep]
    hole.close()
    views = [b[i:i + 8] for b in bufs for i in range(0, PAGE, 32)]

    @make_orbit
    def count(vs: list[memoryview]) -> list[int]:
        return sorted({_core.buffer_address(v)[0] & ~0xFFFFF for v in vs})

    want = sorted({k.address for k in keep})
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            orbitpy.arena(1 << 16).close()  # lands in the gap: shifts the table

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # make thread switches (and the race) frequent
    t = threading.Thread(target=churn)
    t.start()
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            assert count(views) == want
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old_interval)


def test_memoryview_formats_and_shapes_cross_by_address(mode: str, make_orbit: Any,
                                                        new_arena: Any) -> None:
    a = new_arena(1 << 20, mode)
    buf = a.buffer(4 * PAGE)
    np.frombuffer(buf, dtype=np.float64)[:] = np.arange(len(buf) // 8) * 0.5

    @make_orbit
    def look(b: memoryview) -> tuple[int, str, tuple[int, ...], bool, str]:
        return addr_of(b), b.format, b.shape, b.readonly, digest(b.tobytes())

    def expect(b: memoryview) -> tuple[int, str, tuple[int, ...], bool, str]:
        return addr_of(b), b.format, b.shape, b.readonly, digest(b.tobytes())

    for v in (buf.cast("d"), buf.cast("B", (4, PAGE)), buf.toreadonly(), buf[8:].cast("q"),
              buf[PAGE:2 * PAGE].cast("i")):
        assert look(v) == expect(v)


def test_arena_closed_and_replaced_at_the_same_address(mode: str, make_orbit: Any) -> None:
    a = orbitpy.arena(1 << 20, snapshot=mode)
    buf = a.buffer(2 * PAGE)
    buf[:3] = b"old"

    @make_orbit
    def look(b: memoryview) -> tuple[int, bytes]:
        return addr_of(b), bytes(b[:8])

    assert look(buf) == (addr_of(buf), b"old" + bytes(5))
    del buf
    gc.collect()
    a.close()
    b = orbitpy.arena(1 << 20, snapshot=mode)  # usually reuses the address range
    try:
        nb = b.buffer(2 * PAGE)
        nb[:5] = b"fresh"
        assert look(nb) == (addr_of(nb), b"fresh" + bytes(3))
        nb[:5] = b"again"
        assert look(nb) == (addr_of(nb), b"again" + bytes(3))
        del nb
    finally:
        gc.collect()
        b.close()


# ------------------------------------------------- 2. snapshot at call time

def test_sync_call_sees_the_content_at_call_time(mode: str, make_orbit: Any,
                                                 new_arena: Any) -> None:
    a = new_arena(1 << 20, mode)
    buf = a.buffer(8 * PAGE)

    @make_orbit
    def content(b: memoryview) -> bytes:
        return bytes(b)

    for i in range(5):
        buf[i * 1000:(i + 1) * 1000] = bytes([i + 1]) * 1000
        assert content(buf) == bytes(buf)


def test_async_snapshot_is_fixed_when_call_async_returns(mode: str, make_orbit: Any,
                                                         new_arena: Any) -> None:
    a = new_arena(1 << 20, mode)
    buf = a.buffer(16 * PAGE)
    arr = np.frombuffer(buf, dtype=np.int64)
    arr[:] = 1

    @make_orbit
    def slow_sum(x: np.ndarray) -> int:
        time.sleep(0.05)
        return int(x.sum())

    assert slow_sum(arr) == len(arr)  # the orbit is up and idle
    fut = slow_sum.call_async(arr)
    arr[:] = 7  # overwrites every page while the call sleeps
    assert fut.result(timeout=30) == len(arr)
    assert slow_sum(arr) == 7 * len(arr)


def test_queued_async_calls_each_see_their_own_snapshot(mode: str, make_orbit: Any,
                                                        new_arena: Any) -> None:
    a = new_arena(1 << 20, mode)
    buf = a.buffer(16 * PAGE)
    arr = np.frombuffer(buf, dtype=np.int64)

    @make_orbit
    def read_all(x: np.ndarray) -> tuple[int, int, int]:
        time.sleep(0.02)
        return int(x.min()), int(x.max()), int(x[len(x) // 2])

    futs = []
    for i in range(8):
        arr[:] = i
        futs.append(read_all.call_async(arr))
    arr[:] = -1
    assert [f.result(timeout=30) for f in futs] == [(i, i, i) for i in range(8)]
    assert read_all(arr) == (-1, -1, -1)


# --------------------------------------------------- 3. orbit writes never leak

def test_orbit_writes_never_reach_main_or_later_calls(mode: str, make_orbit: Any,
                                                      new_arena: Any) -> None:
    a = new_arena(1 << 20, mode)
    buf = a.buffer(16 * PAGE)
    buf[:] = bytes(range(256)) * (len(buf) // 256)
    original = bytes(buf)

    @make_orbit
    def scribble(b: memoryview, fill: int) -> tuple[str, str]:
        before = digest(b)
        b[:] = bytes([fill]) * len(b)
        return before, digest(b)

    seen, after = scribble(buf, 0xEE)
    assert seen == digest(original)
    assert after == digest(b"\xee" * len(buf))  # the orbit sees its own writes...
    assert bytes(buf) == original  # ...main never does

    # Next call: main's content everywhere, also on pages main did not touch.
    buf[5 * PAGE] = 0x42
    expected = bytes(buf)
    seen, _ = scribble(buf, 0x11)
    assert seen == digest(expected)
    seen, _ = scribble(buf, 0x22)  # main wrote nothing in between
    assert seen == digest(expected)
    assert bytes(buf) == expected


def test_orbit_writes_to_pages_main_never_wrote_are_discarded(mode: str, make_orbit: Any,
                                                             new_arena: Any) -> None:
    a = new_arena(1 << 20, mode)
    buf = a.buffer(32 * PAGE)  # most pages never populated in main

    @make_orbit
    def poke(b: memoryview, off: int) -> int:
        old = b[off]
        b[off] = 0x5A
        return old

    offs = page_starts(buf, 20)
    for off in offs:
        assert poke(buf, off) == 0
    for off in offs:
        assert poke(buf, off) == 0
    assert bytes(buf) == bytes(len(buf))


# -------------------------------------------------- 5. property: random histories

_OFF = st.integers(min_value=0, max_value=(64 << 10) - 1)
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), _OFF, st.binary(min_size=1, max_size=300)),
        st.tuples(st.just("fill"), st.integers(0, 15), st.binary(min_size=1, max_size=1)),
        st.tuples(st.just("call"), st.just(0), st.just(b"")),
        st.tuples(st.just("async"), st.sampled_from([0, 0, 2]), st.just(b"")),
        st.tuples(st.just("orbit_write"), _OFF, st.binary(min_size=1, max_size=300)),
    ),
    min_size=2, max_size=30)


def test_property_every_call_sees_mains_snapshot(mode: str, make_orbit: Any,
                                                 new_arena: Any) -> None:
    a = new_arena(1 << 20, mode)
    buf = a.buffer(64 << 10)
    size = len(buf)

    @make_orbit
    def observe(b: memoryview, sleep_ms: int, off: int, data: bytes) -> str:
        if sleep_ms:
            time.sleep(sleep_ms / 1000)
        seen = digest(b)
        if data:
            b[off:off + len(data)] = data
        return seen

    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(_OPS)
    def history(ops: list[tuple[str, int, bytes]]) -> None:
        pending: list[tuple[Any, str]] = []
        for kind, x, data in ops:
            if kind == "write":
                data = data[:size - x]
                buf[x:x + len(data)] = data
            elif kind == "fill":
                buf[x * PAGE:(x + 1) * PAGE] = data * PAGE
            elif kind == "call":
                assert observe(buf, 0, 0, b"") == digest(buf)
            elif kind == "async":
                fut = observe.call_async(buf, x, 0, b"")
                pending.append((fut, digest(buf)))
            else:  # orbit_write: the orbit scribbles after looking
                data = data[:size - x]
                fut = observe.call_async(buf, 0, x, data)
                pending.append((fut, digest(buf)))
        expected_main = bytes(buf)
        for fut, want in pending:
            assert fut.result(timeout=30) == want
        assert bytes(buf) == expected_main  # the orbit's writes never leak
        assert observe(buf, 0, 0, b"") == digest(expected_main)

    history()
    st_ = observe.orbit.stats()
    assert st_["full_syncs"] == full_syncs(1) and st_["crashes"] == 0
    assert st_["calls"] >= 300  # the histories did exercise the orbit


# ----------------------------------------------------------------- 6. numpy

def test_numpy_array_arrives_as_a_view_of_the_snapshot(mode: str, make_orbit: Any,
                                                       new_arena: Any) -> None:
    a = new_arena(4 << 20, mode)
    buf = a.buffer(1 << 20)
    arr = np.frombuffer(buf, dtype=np.int64)
    arr[:] = np.arange(len(arr))

    @make_orbit
    def describe(x: np.ndarray) -> tuple[str, int, tuple[int, ...], tuple[int, ...], int, str]:
        assert type(x) is np.ndarray
        return (x.dtype.str, x.__array_interface__["data"][0], x.shape, x.strides,
                int(x.sum()), digest(np.ascontiguousarray(x).tobytes()))

    def expect(x: np.ndarray) -> tuple[str, int, tuple[int, ...], tuple[int, ...], int, str]:
        return (x.dtype.str, x.__array_interface__["data"][0], x.shape, x.strides,
                int(x.sum()), digest(np.ascontiguousarray(x).tobytes()))

    views = {
        "whole": arr,
        "2d": arr.reshape(256, -1),
        "strided": arr[5::7],
        "2d-strided": arr.reshape(256, -1)[1::3, ::5],
        "transposed": arr.reshape(256, -1).T,
        "reversed-middle": arr[1000:3000][::-1],
        "float-view": arr.view(np.float64)[10:20],
    }
    for name, v in views.items():
        assert describe(v) == expect(v), name
    n = len(arr)
    assert int(arr.sum()) == n * (n - 1) // 2

    arr[::2] = 0  # every page changes
    for name, v in views.items():
        assert describe(v) == expect(v), name


def test_numpy_orbit_writes_to_array_do_not_leak(mode: str, make_orbit: Any,
                                                 new_arena: Any) -> None:
    a = new_arena(1 << 20, mode)
    arr = np.frombuffer(a.buffer(64 * PAGE), dtype=np.float64)
    arr[:] = 1.5

    @make_orbit
    def clobber(x: np.ndarray) -> float:
        s = float(x.sum())
        x[:] = -1.0
        return s

    assert clobber(arr) == 1.5 * len(arr)
    assert clobber(arr) == 1.5 * len(arr)
    assert (arr == 1.5).all()


def test_numpy_negative_stride_view_at_the_arena_end_is_not_copied(
        make_orbit: Any, new_arena: Any) -> None:
    """A reversed view whose first element is near the end of the arena must
    cross as an address like any other view (the orbit sees main's address)."""
    a = new_arena(1 << 20, "uffd")
    arr = np.frombuffer(a.buffer((1 << 20) - PAGE), dtype=np.int64)
    arr[:] = np.arange(len(arr))

    @make_orbit
    def where(x: np.ndarray) -> tuple[int, tuple[int, ...], int]:
        return x.__array_interface__["data"][0], x.strides, int(x[0])

    for v in (arr[::-1], arr[::-3], arr[len(arr) // 2:][::-1]):
        assert where(v) == (v.__array_interface__["data"][0], v.strides, int(v[0]))


def test_noncontiguous_memoryview_is_refused(new_arena: Any, make_orbit: Any) -> None:
    a = new_arena(1 << 20)
    buf = a.buffer(PAGE)

    @make_orbit
    def f(b: memoryview) -> int:
        return len(b)

    with pytest.raises(TypeError, match="non-contiguous"):
        f(buf[::2])
    assert f(buf[10:20]) == 10


# ---------------------------------------------------------- 7. several arenas

def test_several_arenas_passed_in_one_call(mode: str, make_orbit: Any,
                                           new_arena: Any) -> None:
    arenas = [new_arena(1 << 20, mode) for _ in range(3)]
    bufs = [a.buffer(4 * PAGE) for a in arenas]

    @make_orbit
    def look(*bs: memoryview) -> list[tuple[int, str]]:
        return [(addr_of(b), digest(b)) for b in bs]

    for round_ in range(3):
        for i, b in enumerate(bufs):
            b[round_ * PAGE:(round_ + 1) * PAGE] = bytes([10 * i + round_ + 1]) * PAGE
        assert look(*bufs) == [(addr_of(b), digest(b)) for b in bufs]
    assert look.orbit.stats()["full_syncs"] == full_syncs(3)


def test_declared_areas_are_synced_without_being_passed(mode: str, make_orbit: Any,
                                                        new_arena: Any) -> None:
    a1 = new_arena(1 << 20, mode)
    a2 = new_arena(1 << 20, mode)
    b1, b2 = a1.buffer(8 * PAGE), a2.buffer(8 * PAGE)
    where = [(addr_of(b1), len(b1)), (addr_of(b2), len(b2))]

    @make_orbit(areas=[a1, a2])
    def read_by_address(spans: list[tuple[int, int]]) -> list[str]:
        return [digest(_core.memory_at(addr, n)) for addr, n in spans]

    for i in range(4):
        b1[i * PAGE] = i + 1
        if i % 2:
            b2[i * PAGE + 1] = i + 7
        assert read_by_address(where) == [digest(b1), digest(b2)]
    st_ = read_by_address.orbit.stats()
    assert st_["full_syncs"] == full_syncs(2)
    assert st_["snapshot_mode"] == mode

    @make_orbit(areas=[a1])
    def mixed(b: memoryview, addr: int, n: int) -> tuple[str, str]:
        return digest(b), digest(_core.memory_at(addr, n))

    b1[3] = 99
    b2[4] = 98
    assert mixed(b2, addr_of(b1), len(b1)) == (digest(b2), digest(b1))


# ------------------------------------------------- 8. two orbits, one arena

@pytest.mark.usefixtures("no_background_sync")  # counts each call's copies
def test_two_orbits_over_one_arena_have_independent_snapshots(mode: str, make_orbit: Any,
                                                              new_arena: Any) -> None:
    a = new_arena(1 << 20, mode)
    buf = a.buffer(64 * PAGE)
    offs = page_starts(buf, 30)

    def body(b: memoryview) -> str:
        return digest(b)

    orbit_a = make_orbit(body, name="A")
    orbit_b = make_orbit(body, name="B")

    def write(pages: list[int], value: int) -> None:
        for p in pages:
            buf[offs[p] + 17] = value

    write([1, 2, 3], 1)  # P1
    assert orbit_a(buf) == digest(buf)
    sa0 = orbit_a.orbit.stats()
    assert sa0["full_syncs"] == full_syncs(1)
    c0 = sa0["pages_copied"]

    write([10, 11, 12, 13], 2)  # P2
    assert orbit_b(buf) == digest(buf)
    sb0 = orbit_b.orbit.stats()
    assert sb0["full_syncs"] == full_syncs(1)  # B's first call is a full sync
    assert orbit_a(buf) == digest(buf)
    sa1 = orbit_a.orbit.stats()
    assert sa1["full_syncs"] == full_syncs(1)

    write([20, 21], 3)  # P3
    write([1], 4)
    assert orbit_b(buf) == digest(buf)
    sb1 = orbit_b.orbit.stats()
    assert orbit_a(buf) == digest(buf)
    sa2 = orbit_a.orbit.stats()
    assert orbit_b(buf) == digest(buf)
    sb2 = orbit_b.orbit.stats()

    if not BACKEND_COPIES:  # nothing copied, nothing counted (conftest.py)
        assert sb2["pages_copied"] == sa2["pages_copied"] == 0
    elif mode in TRACKED_MODES:
        # B's full sync: every page main ever wrote (P1's pages, the
        # allocator's, P2).
        assert sb0["pages_copied"] == c0 + 4
        assert delta(sa1, sa0, "pages_copied") == 4  # P2, collected by B's call
        assert delta(sb1, sb0, "pages_copied") == 3
        assert delta(sa2, sa1, "pages_copied") == 3
        assert delta(sb2, sb1, "pages_copied") == 0
    else:
        populated = populated_pages(a.address, a.size)
        assert delta(sb2, sb1, "pages_copied") == populated


def test_two_orbits_interleaved_async_calls(mode: str, make_orbit: Any,
                                            new_arena: Any) -> None:
    """One orbit busy (its snapshots staged), the other idle (written
    straight into its copy): each call sees main at its own call time."""
    a = new_arena(1 << 20, mode)
    buf = a.buffer(64 * PAGE)
    arr = np.frombuffer(buf, dtype=np.uint8)
    offs = page_starts(buf, 60)

    def body(b: memoryview, delay: float) -> str:
        time.sleep(delay)
        return digest(b)

    slow = make_orbit(body, name="slow")
    fast = make_orbit(body, name="fast")
    rng = np.random.default_rng(5)
    pending = []
    for i in range(30):
        for p in rng.choice(60, int(rng.integers(0, 8)), replace=False):
            arr[offs[p] + i] = i + 1
        if i % 3 == 0:
            pending.append((slow.call_async(buf, 0.01), digest(buf)))
        else:
            assert fast(buf, 0) == digest(buf)
            pending.append((fast.call_async(buf, 0), digest(buf)))
    assert [f.result(timeout=30) for f, _ in pending] == [w for _, w in pending]
    assert slow(buf, 0) == fast(buf, 0) == digest(buf)
    assert slow.orbit.stats()["full_syncs"] == fast.orbit.stats()["full_syncs"] == full_syncs(1)


@pytest.mark.usefixtures("no_background_sync")  # counts each call's copies
def test_restarted_orbit_gets_a_full_snapshot(mode: str, make_orbit: Any,
                                              new_arena: Any) -> None:
    a = new_arena(1 << 20, mode)
    buf = a.buffer(32 * PAGE)
    offs = page_starts(buf, 20)
    for off in offs[:10]:
        buf[off] = 1

    @make_orbit
    def check(b: memoryview, scribble: bool) -> str:
        seen = digest(b)
        if scribble:
            b[:] = b"\xff" * len(b)
        return seen

    assert check(buf, True) == digest(buf)
    first = check.orbit.stats()["pages_copied"]
    pid = check.orbit.pid
    check.orbit.restart()
    for off in offs[10:15]:
        buf[off] = 2
    assert check(buf, False) == digest(buf)
    s = check.orbit.stats()
    assert check.orbit.pid != pid
    assert s["full_syncs"] == full_syncs(2)
    if not BACKEND_COPIES:  # nothing copied, nothing counted (conftest.py)
        assert s["pages_copied"] == first == 0
    elif mode in TRACKED_MODES:
        # The new process's copy gets every page main ever wrote.
        assert s["pages_copied"] - first == first + 5
    assert check(buf, False) == digest(buf)


def test_concurrent_callers_each_see_their_own_latest_writes(mode: str, make_orbit: Any,
                                                            new_arena: Any) -> None:
    """Threads share two orbits; each thread owns a region of one arena and
    checks that every call (sync or async) sees what it wrote just before."""
    a = new_arena(4 << 20, mode)
    nthreads, region = 4, 32 * PAGE
    buf = a.buffer(nthreads * region)
    arr = np.frombuffer(buf, dtype=np.uint8)

    def body(b: np.ndarray, lo: int, hi: int) -> str:
        return digest(b[lo:hi].tobytes())

    orbits = [make_orbit(body, name="x"), make_orbit(body, name="y")]
    errors: list[str] = []

    def worker(t: int) -> None:
        lo, hi = t * region, (t + 1) * region
        rng = np.random.default_rng(t)
        for i in range(25):
            n = int(rng.integers(1, region // 2))
            start = int(rng.integers(lo, hi - n))
            arr[start:start + n] = rng.integers(0, 256, n, dtype=np.uint8)
            want = digest(arr[lo:hi].tobytes())
            ob = orbits[(t + i) % 2]
            got = (ob.call_async(arr, lo, hi).result(timeout=30) if i % 2
                   else ob(arr, lo, hi))
            if got != want:
                errors.append(f"thread {t} step {i}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(nthreads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors
    for ob in orbits:
        assert ob(arr, 0, len(arr)) == digest(buf)
        assert ob.orbit.stats()["full_syncs"] == full_syncs(1)



def test_a_call_over_the_area_limit_is_refused_in_the_words_of_arenas(
        make_orbit: Any, new_arena: Any) -> None:
    # The core takes at most MAX_CALL_AREAS areas per call; a user passes
    # arenas, so the Python layer refuses first and says arenas.
    limit = _core.MAX_CALL_AREAS
    arenas = [new_arena(PAGE) for _ in range(limit + 1)]
    bufs = [a.buffer(8) for a in arenas]

    @make_orbit(areas=arenas[:limit])
    def at_limit() -> int:
        return 1

    @make_orbit(areas=arenas[:limit])
    def over_limit(b: memoryview) -> int:
        return 1

    assert at_limit() == 1
    with pytest.raises(ValueError, match=f"uses {limit + 1} arenas, at most {limit} are "):
        over_limit(bufs[limit])
    assert over_limit.orbit.pid == 0  # refused before the orbit was started
    del bufs
