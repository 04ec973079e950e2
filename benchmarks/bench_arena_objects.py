"""Python objects in an arena: an orbit call that reads the records main just
changed, vs the two ways of getting the same state to another process
without orbitpy.

State: an arena (512 MiB) holding a dict of N = 1,000,000 account records,
``{id: Record(id, balance, name)}`` with ``Record`` a ``__slots__`` class
(int id, float balance, 11-character str name), built inside ``with arena:``
-- what a service keeps in memory for a table of accounts; about 300 bytes
per record in the arena (dict entry, record, float, str).  Main also holds a
1 GiB bytearray with every page written, so its heap is ~1.4 GB for every
variant (it makes the fork-per-call comparison that of bench_heap.py; an
orbit is forked once, a pool worker once per test).

Each round, outside the timing (pedantic ``setup``): change a fraction f of
the records (0.01 %, 0.1 %, 1 %: 100, 1,000, 10,000 records; uniformly random
keys, so nearly every changed record is on its own page -- the worst case for
page-granular snapshots), inside ``with arena:`` (``r.balance = r.balance +
1.0``).  Timed: one synchronous call that sums the balances of the changed
records (a list of keys, made outside the arena, so pickled) and returns it:

orbit  ``fn(table, keys)``: the table crosses by address; main checks the
       pages it changed (incremental pre-call check), copies them into the
       orbit's snapshot, the orbit reads the records from it.  Also at f = 0
       (no change: the fixed cost).
pool   ``ProcessPoolExecutor(1)`` (fork context, one pool per fraction,
       reused across its rounds, started outside the timing):
       ``pool.submit(sum_balances, table, keys).result()``, which pickles the
       whole table (the worker must see the current state).
fork   ``os.fork()`` per call: the child computes the sum from its
       copy-on-write view and writes it to a pipe; the parent reads it and
       reaps the child.

Every result is checked against the sum main computes itself.  The orbit
benchmarks store in ``extra_info`` the median per timed call of the pages
copied into the orbit's snapshot (``pages_copied``) and the pre-call check's
counters (``arena.stats()['checks']`` deltas: pages, objects, copies, ns),
and from DIAG_ROUNDS more rounds issued with ``call_async`` (same changes)
the issue time (check + snapshot taken) and the orbit's own compute time, so
``report.py`` can split the call into check, snapshot and orbit work per
changed page.  The first call after the build (a full check and a full copy)
is recorded as ``first_call_*``, and ``gc_full_collections`` counts full
collections in main during the orbit rounds (each writes every tracked arena
object's header: the next call re-checks and copies most of the table).

Effects on the rest of the process: the first ``with arena:`` installs
orbitpy's allocator hooks and turns CPython's free lists off for good (plain
allocation-heavy Python runs ~1.6x slower afterwards, also in forked pool
workers and fork-per-call children), and an open object arena is synced in
every orbit call of the process.  The fixture closes the arena at the end;
the hooks stay.  Run this module on its own (it takes about 80 s) when the
other modules' numbers matter:

    python -m pytest benchmarks/bench_arena_objects.py --benchmark-only \
        --benchmark-json=objects.json && python benchmarks/report.py objects.json
"""

from __future__ import annotations

import concurrent.futures
import gc
import multiprocessing
import os
import random
import statistics
import struct
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import orbitpy

from ._benchutil import quick, rss_bytes

N = 1_000_000
ARENA_BYTES = 512 << 20
BALLAST_BYTES = 1 << 30
FRACTIONS = [0.0001, 0.001, 0.01]
ORBIT_ROUNDS = {0.0: 30, 0.0001: 30, 0.001: 30, 0.01: 15}
ORBIT_WARMUP = 2
DIAG_ROUNDS = 10
POOL_ROUNDS = 3  # ~5 s each: pickling 1M slotted objects, unpickling them in the worker
FORK_ROUNDS = 10

pytestmark = pytest.mark.benchmark(group="arena-objects")
# `with arena:` blocks in this process: conftest.py runs this module after
# the others (the allocator hooks it installs stay for the rest of the run).
INSTALLS_ARENA_HOOKS = True

if quick():  # ~80 s and 1.5 GB: the full suite only
    pytest.skip("bench_arena_objects runs in the full mode only", allow_module_level=True)


class Record:
    """An account row."""

    __slots__ = ("id", "balance", "name")

    def __init__(self, id: int, balance: float, name: str) -> None:
        self.id = id
        self.balance = balance
        self.name = name


def sum_balances(table: dict[int, Record], keys: list[int]) -> float:
    """The work, the same in every variant."""
    return sum(table[k].balance for k in keys)


def pct(f: float) -> str:
    return f"{f * 100:g}%"


@dataclass
class State:
    arena: orbitpy.Arena
    table: dict[int, Record]
    ballast: bytearray
    build_s: float
    rng: random.Random = field(default_factory=lambda: random.Random(20221011))

    def change(self, n: int) -> tuple[list[int], float]:
        """Change n random records (in the arena); their keys and the sum the
        call must return."""
        keys = self.rng.sample(range(N), n)
        table = self.table
        with self.arena:
            for k in keys:
                r = table[k]
                r.balance = r.balance + 1.0
        return keys, sum_balances(table, keys)

    def checks(self) -> dict[str, int]:
        """The pre-call check counters (cumulative, all arenas)."""
        return dict(self.arena.stats()["checks"])

    def info(self) -> dict[str, Any]:
        st = self.arena.stats()
        return {"records": N, "arena_mb": st["size"] >> 20, "arena_used_mb": st["used"] >> 20,
                "ballast_mb": len(self.ballast) >> 20, "rss_mb": rss_bytes() >> 20,
                "build_s": round(self.build_s, 2)}


@pytest.fixture(scope="module")
def state() -> Iterator[State]:
    arena = orbitpy.arena(ARENA_BYTES)
    t0 = time.perf_counter()
    with arena:
        table = {i: Record(i, float(i % 1000), f"user{i:07d}") for i in range(N)}
    build_s = time.perf_counter() - t0
    ballast = bytearray(b"\x01") * BALLAST_BYTES  # every page written: resident
    st = State(arena, table, ballast, build_s)
    del table, ballast
    try:
        yield st
    finally:
        # Leave nothing behind for the benchmark modules that run next: the
        # heap, and the arena (an open object arena is synced in every orbit
        # call of the process).
        st.ballast = bytearray()
        st.table.clear()
        st.table = {}
        gc.collect()
        try:
            arena.close()
        except RuntimeError as e:  # something (a traceback?) still holds a record
            warnings.warn(f"bench_arena_objects: arena left open: {e}", stacklevel=1)


@dataclass
class OrbitFixture:
    fn: Any
    first_call: dict[str, Any]


def _orbit_sum(table: dict[int, Record], keys: list[int],
               timed: bool = False) -> float | tuple[float, float]:
    t0 = time.perf_counter()
    s = sum_balances(table, keys)
    return (s, time.perf_counter() - t0) if timed else s


@pytest.fixture(scope="module")
def orbit_fn(state: State) -> Iterator[OrbitFixture]:
    fn = orbitpy.orbit(name="bench-arena-objects", timeout=120)(_orbit_sum)
    try:
        c0, t0 = state.checks(), time.perf_counter()
        assert fn(state.table, [0, 1]) == state.table[0].balance + state.table[1].balance
        first_s = time.perf_counter() - t0
        c1, o1 = state.checks(), fn.orbit.stats()
        first = {"first_call_s": round(first_s, 3), "first_call_pages_copied": o1["pages_copied"],
                 "first_call_check_pages": c1["pages"] - c0["pages"],
                 "first_call_check_objects": c1["objects"] - c0["objects"],
                 "first_call_check_s": round((c1["ns"] - c0["ns"]) * 1e-9, 3)}
        yield OrbitFixture(fn, first)
    finally:
        fn.orbit.close()


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after}


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else 0.0


def _group(benchmark: Any, f: float) -> None:
    benchmark.group = f"arena-objects {pct(f)}"


# --------------------------------------------------------------------- orbit

@pytest.mark.parametrize("fraction", [0.0, *FRACTIONS], ids=pct)
def test_orbit(benchmark: Any, state: State, orbit_fn: OrbitFixture, fraction: float) -> None:
    fn = orbit_fn.fn
    n = round(N * fraction)
    expected: list[float] = []
    results: list[float] = []
    per_round: list[tuple[dict[str, int], dict[str, int]]] = []  # (checks, orbit stats)
    before: dict[str, Any] = {}
    gc0 = gc.get_stats()[2]["collections"]

    def close_round() -> None:
        if before:
            per_round.append((_delta(state.checks(), before["chk"]),
                              _delta(_orbit_counts(fn), before["orb"])))
            before.clear()

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        close_round()
        keys, want = state.change(n)
        expected.append(want)
        before.update(chk=state.checks(), orb=_orbit_counts(fn))
        return (state.table, keys), {}

    def target(table: dict[int, Record], keys: list[int]) -> None:
        results.append(fn(table, keys))

    _group(benchmark, fraction)
    benchmark.pedantic(target, setup=setup, rounds=ORBIT_ROUNDS[fraction],
                       warmup_rounds=ORBIT_WARMUP, iterations=1)
    close_round()
    assert results == expected
    timed = per_round[ORBIT_WARMUP:]

    # Diagnostic rounds (not part of the benchmark's statistics): the same
    # call split into issue (pre-call check + snapshot taken, returns when
    # call_async does) and the orbit's own work.
    diag: list[dict[str, float]] = []
    for _ in range(DIAG_ROUNDS):
        keys, want = state.change(n)
        c0, o0 = state.checks(), _orbit_counts(fn)
        t0 = time.perf_counter()
        fut = fn.call_async(state.table, keys, timed=True)
        t1 = time.perf_counter()
        got, compute_s = fut.result()
        t2 = time.perf_counter()
        assert got == want
        c, o = _delta(state.checks(), c0), _delta(_orbit_counts(fn), o0)
        diag.append({"issue_s": t1 - t0, "total_s": t2 - t0, "check_s": c["ns"] * 1e-9,
                     "compute_s": compute_s, "pages_copied": o["pages_copied"]})

    chk_ns = sum(c["ns"] for c, _ in timed)
    chk_pages = sum(c["pages"] for c, _ in timed)
    benchmark.extra_info.update(
        kind="arena_objects", variant="orbit", fraction=fraction, changed=n,
        pages_copied=_median([o["pages_copied"] for _, o in timed]),
        pages_reset=_median([o["pages_reset"] for _, o in timed]),
        check_pages=_median([c["pages"] for c, _ in timed]),
        check_objects=_median([c["objects"] for c, _ in timed]),
        check_copies=_median([c["copies"] for c, _ in timed]),
        check_s=_median([c["ns"] * 1e-9 for c, _ in timed]),
        check_ns_per_page=round(chk_ns / chk_pages, 1) if chk_pages else None,
        diag_rounds=DIAG_ROUNDS,
        issue_s=_median([d["issue_s"] for d in diag]),
        diag_total_s=_median([d["total_s"] for d in diag]),
        diag_check_s=_median([d["check_s"] for d in diag]),
        orbit_compute_s=_median([d["compute_s"] for d in diag]),
        diag_pages_copied=_median([d["pages_copied"] for d in diag]),
        gc_full_collections=gc.get_stats()[2]["collections"] - gc0,
        **orbit_fn.first_call, **state.info())


def _orbit_counts(fn: Any) -> dict[str, int]:
    st = fn.orbit.stats()
    return {k: int(st[k]) for k in ("pages_copied", "pages_reset", "calls")}


# --------------------------------------------------------------------- pool

def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _wait_single_threaded(timeout: float = 5.0) -> None:
    """A shut-down pool's threads are joined, but their OS threads may take
    a moment to be gone; forking meanwhile (the next pool, fork-per-call)
    draws CPython's 'process is multi-threaded' warning."""
    deadline = time.monotonic() + timeout
    while _os_threads() > 1 and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize("fraction", FRACTIONS, ids=pct)
def test_pool(benchmark: Any, state: State, fraction: float) -> None:
    n = round(N * fraction)
    expected: list[float] = []
    results: list[float] = []
    ctx = multiprocessing.get_context("fork")
    _wait_single_threaded()
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        pool.submit(int).result()  # the worker is up before the first round

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            keys, want = state.change(n)
            expected.append(want)
            return (state.table, keys), {}

        def target(table: dict[int, Record], keys: list[int]) -> None:
            results.append(pool.submit(sum_balances, table, keys).result())

        _group(benchmark, fraction)
        benchmark.pedantic(target, setup=setup, rounds=POOL_ROUNDS, iterations=1)
    _wait_single_threaded()
    assert results == expected
    benchmark.extra_info.update(kind="arena_objects", variant="pool", fraction=fraction,
                                changed=n, **state.info())


# --------------------------------------------------------------------- fork

def _fork_call(table: dict[int, Record], keys: list[int]) -> float:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, answer, leave without cleanup
        code = 1
        try:
            os.close(r)
            os.write(w, struct.pack("d", sum_balances(table, keys)))
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    try:
        data = b""
        while len(data) < 8:
            chunk = os.read(r, 8 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if len(data) != 8 or status != 0:
        raise RuntimeError(f"fork-per-call child failed (status {status})")
    return float(struct.unpack("d", data)[0])


@pytest.mark.parametrize("fraction", FRACTIONS, ids=pct)
def test_fork(benchmark: Any, state: State, fraction: float) -> None:
    n = round(N * fraction)
    expected: list[float] = []
    results: list[float] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        keys, want = state.change(n)
        expected.append(want)
        return (state.table, keys), {}

    def target(table: dict[int, Record], keys: list[int]) -> None:
        results.append(_fork_call(table, keys))

    _group(benchmark, fraction)
    _wait_single_threaded()
    benchmark.pedantic(target, setup=setup, rounds=FORK_ROUNDS, warmup_rounds=1, iterations=1)
    assert results == expected
    benchmark.extra_info.update(kind="arena_objects", variant="fork", fraction=fraction,
                                changed=n, **state.info())
