"""Snapshots are consistent with respect to every thread that holds the GIL.

Writer threads keep replacing values in arena containers, each replacement a
single store (one bytecode, atomic under the GIL), so an invariant holds at
every point where the GIL can change hands: every value is a pair summing to
1000.  Other threads call orbit functions that check the invariant on their
snapshot, with no lock.  From the start of a call's pre-call check to the end
of its snapshot no other Python thread may run; if one did, the orbit would
see a mix of two states (a torn value) or reach freed memory (a crash).

The switch interval is made tiny so that the interpreter switches threads at
nearly every chance it gets; every snapshot mode is tested.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import orbitpy
from conftest import SNAPSHOT_MODES, snapshot_params

TOTAL = 1000


class Pair:
    __slots__ = ("a", "b")

    def __init__(self, a: int, b: int) -> None:
        self.a = a
        self.b = b


@dataclasses.dataclass(frozen=True)
class Frozen:
    a: int
    b: int


class Watched:
    """Records each run of its (Python) __setattr__."""

    runs: list[str] = []

    def __setattr__(self, name: str, value: Any) -> None:
        Watched.runs.append(name)
        object.__setattr__(self, name, value)


def make_value(kind: str, a: int) -> Any:
    if kind == "tuple":
        return (a, TOTAL - a)
    if kind == "list":
        return [a, TOTAL - a]
    return Pair(a, TOTAL - a)


def count_bad(container: Any) -> int:
    """In the orbit: values of the container that break the invariant."""
    values = container.values() if isinstance(container, dict) else container
    bad = 0
    for v in values:
        if type(v) is Pair:
            ok = v.a + v.b == TOTAL
        else:
            ok = type(v) in (tuple, list) and len(v) == 2 and v[0] + v[1] == TOTAL
        bad += not ok
    return bad


def count_bad_buffer(buf: memoryview) -> int:
    """In the orbit: 16-byte records (a, b) of the buffer with a + b != 1000."""
    return sum(1 for a, b in struct.iter_unpack("qq", buf) if a + b != TOTAL)


@contextmanager
def switch_often() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@contextmanager
def staging(nbytes: int | None) -> Iterator[None]:
    """Orbits created inside get a staging ring of nbytes (None: default): a
    small one makes queued calls wait for room and issue again."""
    old = os.environ.get("ORBITPY_STAGING")
    if nbytes is not None:
        os.environ["ORBITPY_STAGING"] = str(nbytes)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ORBITPY_STAGING", None)
        else:
            os.environ["ORBITPY_STAGING"] = old


def run_race(arena: orbitpy.Arena, container: Any, write: Callable[[random.Random], None],
             check: Any, arg: Any, writers: int, callers: int, calls: int,
             use_async: bool, objects: bool = True) -> dict[str, Any]:
    """`writers` threads call write() in a loop (inside `with arena:` when the
    arena holds `objects`) while
    `callers` threads each make `calls` calls of check(arg); returns what the
    calls saw."""
    stop = threading.Event()
    results: list[Any] = []
    lock = threading.Lock()

    def writer(seed: int) -> None:
        rnd = random.Random(seed)
        with arena if objects else contextlib.nullcontext():
            while not stop.is_set():
                for _ in range(20):
                    write(rnd)

    def caller() -> None:
        for _ in range(calls):
            try:
                if use_async:
                    r = check.call_async(arg).result(timeout=60)
                else:
                    r = check(arg)
            except orbitpy.OrbitCrashed as e:
                r = f"crash: {e}"
            except Exception as e:  # noqa: BLE001 - every outcome is recorded
                r = f"{type(e).__name__}: {e}"
            with lock:
                results.append(r)

    ws = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(writers)]
    cs = [threading.Thread(target=caller, daemon=True) for _ in range(callers)]
    with switch_often():
        for t in ws + cs:
            t.start()
        deadline = time.monotonic() + 100
        for t in cs:
            t.join(max(0.0, deadline - time.monotonic()))
        stop.set()
        for t in ws:
            t.join(10)
    assert not any(t.is_alive() for t in ws + cs), "a thread did not finish in time"
    return {"calls": len(results), "bad": [r for r in results if r != 0],
            "crashes": check.orbit.stats()["crashes"]}


def object_race(mode: str, kind: str, shape: str, size: int, writers: int, callers: int,
                calls: int, use_async: bool, stage: int | None,
                inside_with: bool = True) -> dict[str, Any]:
    arena = orbitpy.arena(128 << 20, snapshot=mode)
    with arena:
        if shape == "dict":
            container: Any = {k: make_value(kind, k % (TOTAL + 1)) for k in range(size)}
        else:
            container = [make_value(kind, k % (TOTAL + 1)) for k in range(size)]

    def write(rnd: random.Random) -> None:
        container[rnd.randrange(size)] = make_value(kind, rnd.randrange(TOTAL + 1))

    with staging(stage):
        check = orbitpy.orbit(name="consistency", timeout=60, restart=10**6)(count_bad)
    try:
        return run_race(arena, container, write, check, container, writers, callers, calls,
                        use_async, objects=inside_with)
    finally:
        check.orbit.close()
        with contextlib.suppress(RuntimeError):  # an object may outlive the test
            arena.close()


def buffer_race(mode: str, records: int, writers: int, callers: int,
                calls: int) -> dict[str, Any]:
    arena = orbitpy.arena(16 << 20, snapshot=mode)
    buf = arena.buffer(16 * records)
    for i in range(records):
        buf[16 * i:16 * i + 16] = struct.pack("qq", i % TOTAL, TOTAL - i % TOTAL)

    def write(rnd: random.Random) -> None:
        i, a = rnd.randrange(records), rnd.randrange(TOTAL + 1)
        buf[16 * i:16 * i + 16] = struct.pack("qq", a, TOTAL - a)  # one store

    check = orbitpy.orbit(name="consistency-buf", timeout=60, restart=10**6)(count_bad_buffer)
    try:
        return run_race(arena, None, write, check, buf, writers, callers, calls, False,
                        objects=False)
    finally:
        check.orbit.close()
        buf.release()
        arena.close()


def assert_consistent(seen: dict[str, Any]) -> None:
    assert seen["calls"] > 0
    assert seen["crashes"] == 0 and not seen["bad"], (
        f"{seen['crashes']} orbit crash(es), {len(seen['bad'])} of {seen['calls']} calls "
        f"saw torn values or failed: {seen['bad'][:5]}")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", snapshot_params(SNAPSHOT_MODES))
def test_stress_dict_of_tuples(mode: str) -> None:
    """The issue's scenario: two writers, a caller thread, every mode."""
    assert_consistent(object_race(mode, "tuple", "dict", 20000, writers=2, callers=1,
                                  calls=40, use_async=False, stage=None))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", snapshot_params(SNAPSHOT_MODES))
def test_stress_queued_calls_small_staging(mode: str) -> None:
    """Two callers queue calls behind each other through a staging ring too
    small for their snapshots: a call waits for room, then is checked and
    snapshotted again, still atomically."""
    assert_consistent(object_race(mode, "tuple", "dict", 20000, writers=2, callers=2,
                                  calls=20, use_async=True, stage=64 << 10))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", snapshot_params(SNAPSHOT_MODES))
def test_stress_writers_outside_with(mode: str) -> None:
    """Writers that store values made outside the arena: each call's check
    copies them in, in the same step as the snapshot."""
    assert_consistent(object_race(mode, "tuple", "dict", 20000, writers=2, callers=1,
                                  calls=30, use_async=False, stage=None, inside_with=False))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", snapshot_params(SNAPSHOT_MODES))
def test_stress_buffer_records(mode: str) -> None:
    """A call that passes only an arena buffer: no pre-call check, same rule."""
    assert_consistent(buffer_race(mode, 50000, writers=2, callers=1, calls=30))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", snapshot_params(SNAPSHOT_MODES))
@settings(max_examples=4, derandomize=True, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate],  # no shrinking: threads are not replayable
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["tuple", "list", "pair"]),
       shape=st.sampled_from(["dict", "list"]),
       size=st.sampled_from([3000, 20000]),
       writers=st.integers(1, 3),
       callers=st.integers(1, 2),
       use_async=st.booleans())
def test_threads_see_gil_atomic_snapshots(mode: str, kind: str, shape: str, size: int,
                                          writers: int, callers: int,
                                          use_async: bool) -> None:
    """N writers and M callers: every call's result is the invariant's."""
    assert_consistent(object_race(mode, kind, shape, size, writers, callers, calls=12,
                                  use_async=use_async, stage=None))


def test_check_runs_no_python_code(make_orbit: Any, new_arena: Any) -> None:
    """The check gives arena instances a dict of their own without calling
    the class's __setattr__: that is Python code, during which another thread
    could run mid-check (and a frozen dataclass's refuses)."""
    arena = new_arena(16 << 20)
    with arena:
        t = {"frozen": Frozen(1, 2), "watched": Watched()}
        t["watched"].x = 3
    Watched.runs.clear()
    f = make_orbit(lambda t: t["frozen"].a + t["frozen"].b + t["watched"].x)
    assert f(t) == 6
    assert Watched.runs == []


@pytest.mark.timeout(120)
def test_threads_entering_a_new_arena_register_it_once() -> None:
    """Threads that enter a new arena at the same moment register it with the
    allocator hooks once: a second registration would outlive close()."""
    from orbitpy import _core

    extra: list[int] = []
    errors: list[str] = []
    with switch_often():
        for _ in range(600):
            arena = orbitpy.arena(1 << 20)
            barrier = threading.Barrier(4)

            def enter(arena: orbitpy.Arena = arena, barrier: threading.Barrier = barrier) -> None:
                barrier.wait(10)
                try:
                    with arena:
                        pass
                except Exception as e:  # noqa: BLE001 - recorded, asserted below
                    errors.append(repr(e))

            ts = [threading.Thread(target=enter) for _ in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(10)
            regs = [h for h in _core.heap_areas() if h.area is arena._area]
            extra.append(len(regs) - 1)
            for h in regs:  # also the extra ones, so that they do not pile up
                if h is not arena._heap:
                    _core.heap_unregister_area(h)
            arena.close()
    assert not errors and not any(extra), (
        f"{sum(extra)} extra registration(s), errors: {errors[:3]}")
