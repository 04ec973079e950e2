"""A service-shaped loop: do orbit calls stay incremental while main's
collector runs?

State: 200,000 ``Session`` objects (a plain class, four attributes) in a
256 MiB arena, in a list built inside ``with arena:``.

The loop (main thread, wall-clock paced):
- every 10 ms a batch of "requests", ~20,000 allocations per second in all:
  each request makes a dict, a list and a tuple outside the arena, keeps the
  request in a bounded cache for a few seconds (so requests survive into
  the oldest generation, as in a service with caches) and is a reference
  cycle (request <-> payload: garbage only the collector frees, so the
  automatic collector runs often, full collections included); inside ``with arena:`` it updates a
  few sessions (``version`` and ``last``, a new tuple: the old one is
  dropped), and replaces one session with a new one that is part of a
  cycle (cyclic garbage in the arena);
- every 100 ms an orbit call that reads the sessions changed since the
  previous call (their indices are passed; the orbit sums their versions,
  checked against main's sum).

Automatic garbage collection stays on with CPython's default thresholds.
Reported: the orbit call's p50/p99/max (ms), pages copied into the orbit's
snapshot per call (``handle.stats()`` deltas), the arena's pages in use, and
how many full (generation 2) collections main ran (``gc.callbacks``).

``reads_effect()`` measures issue 9 item 6: what main merely *reading* every
session (a sweep, no writes) costs the next call: its time, the pages it
copied (pages_copied) and the pages its check looked at again.

pytest runs a short loop (10 s, 3 s in quick mode; ``ORBITPY_BENCH_SERVICE_S`` to
change it):

    python -m pytest benchmarks/bench_service_loop.py --benchmark-only

Standalone, for the long run (prints a JSON summary):

    python -m benchmarks.bench_service_loop --seconds 120 [--reads] [--asyncio]

``--asyncio`` runs the same loop on an asyncio event loop instead: the
request batches are a task ticking every 10 ms, the orbit calls a task
awaiting ``fn.acall(...)`` every 100 ms, and the largest *loop stall* (how
late a tick ran: the time the loop was held by something else) is reported
alongside the call times.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import statistics
import sys
import time
from typing import Any

import orbitpy

N_SESSIONS = 200_000
ARENA_BYTES = 256 << 20
PAGE = 4096
TICK_S = 0.010  # one batch of requests
CALL_EVERY_S = 0.100
ALLOCS_PER_S = 20_000
ALLOCS_PER_REQUEST = 4  # request dict, payload list, tuple, cache entry
ARENA_UPDATES_PER_TICK = 5
CACHE_SECONDS = 3.0
# `with arena:` blocks in this process: conftest.py runs this module after
# the others (the allocator hooks it installs stay for the rest of the run).
INSTALLS_ARENA_HOOKS = True


class Session:
    """A logged-in user's state."""

    def __init__(self, sid: int, user: str) -> None:
        self.sid = sid
        self.user = user
        self.version = 0
        self.last: tuple[int, float] = (0, 0.0)


def read_changed(sessions: list[Session], ids: list[int]) -> int:
    """The orbit's work: sum the versions of the sessions changed since the
    previous call."""
    return sum(sessions[i].version for i in ids)


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


class FullCollections:
    """Counts main's generation-2 collections while installed."""

    def __init__(self) -> None:
        self.count = 0
        self.ms: list[float] = []  # how long each took
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self.count += 1
            self._t0 = time.perf_counter()
        else:
            self.ms.append((time.perf_counter() - self._t0) * 1e3)

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        gc.callbacks.remove(self)


def build(arena: orbitpy.Arena) -> list[Session]:
    with arena:
        return [Session(i, f"user{i:07d}") for i in range(N_SESSIONS)]


def serve_tick(arena: orbitpy.Arena, sessions: list[Session], cache: collections.deque[Any],
               changed: set[int], requests_per_tick: int, rid: int, victim: int,
               now: float) -> tuple[int, int]:
    """One tick of the service: requests_per_tick requests on main's heap
    (each a cycle, so only the collector frees it, kept a while in `cache`),
    ARENA_UPDATES_PER_TICK session updates in the arena and one session
    replaced (the old one left as cyclic garbage).  Returns (rid, victim)."""
    for _ in range(requests_per_tick):
        rid += 1
        req: dict[str, Any] = {"id": rid, "path": "/api/item", "user": rid % N_SESSIONS}
        payload: list[Any] = [rid, rid + 1, rid + 2]
        req["payload"] = payload
        payload.append(req)
        cache.append((rid, req))
    with arena:
        for k in range(ARENA_UPDATES_PER_TICK):
            i = (rid * 7919 + k * 104729) % N_SESSIONS
            s = sessions[i]
            s.version += 1
            s.last = (rid, now)
            changed.add(i)
        victim = (victim + 15485863) % N_SESSIONS
        old = sessions[victim]
        new = Session(old.sid, old.user)
        new.version = old.version + 1
        new.last = (rid, now)
        old.last = (rid, old)  # type: ignore[assignment]  # cyclic garbage
        sessions[victim] = new
        changed.add(victim)
    return rid, victim


def run_loop(seconds: float, arena: orbitpy.Arena, sessions: list[Session],
             fn: Any) -> dict[str, Any]:
    """The service loop for `seconds` of wall time; its measurements."""
    requests_per_tick = max(1, int(ALLOCS_PER_S * TICK_S / ALLOCS_PER_REQUEST))
    cache: collections.deque[Any] = collections.deque(
        maxlen=int(CACHE_SECONDS / TICK_S) * requests_per_tick)
    changed: set[int] = set()
    call_ms: list[float] = []
    with_full: set[int] = set()  # calls a full collection ran inside of
    pages: list[int] = []
    allocations = 0
    rid = 0
    victim = 0
    pages_before = fn.orbit.stats()["pages_copied"]
    orbitpy_stats = getattr(orbitpy, "arena_collection_stats", None)
    arena_gc_before = orbitpy_stats()["arena_collections"] if orbitpy_stats else 0
    with FullCollections() as full:
        start = time.perf_counter()
        next_tick = next_call = start
        while True:
            now = time.perf_counter()
            if now - start >= seconds:
                break
            if now >= next_call:
                ids = sorted(changed)
                changed.clear()
                expect = read_changed(sessions, ids)
                n0 = full.count
                t0 = time.perf_counter()
                got = fn(sessions, ids)
                call_ms.append((time.perf_counter() - t0) * 1e3)
                if full.count != n0:  # the call's own allocations set one off
                    with_full.add(len(call_ms) - 1)
                if got != expect:
                    raise AssertionError(f"orbit read {got}, main has {expect}")
                p = fn.orbit.stats()["pages_copied"]
                pages.append(p - pages_before)
                if os.environ.get("ORBITPY_BENCH_TRACE"):
                    print(f"call {len(call_ms)}: {call_ms[-1]:.1f} ms, {pages[-1]} pages, "
                          f"load {os.getloadavg()[0]:.1f}", file=sys.stderr)
                pages_before = p
                next_call += CALL_EVERY_S
            if now >= next_tick:
                rid, victim = serve_tick(arena, sessions, cache, changed, requests_per_tick,
                                         rid, victim, now)
                allocations += requests_per_tick * ALLOCS_PER_REQUEST + ARENA_UPDATES_PER_TICK + 3
                next_tick += TICK_S
            wait = min(next_tick, next_call) - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        elapsed = time.perf_counter() - start
    st = arena.stats()
    out: dict[str, Any] = {
        "python": sys.version.split()[0],
        "seconds": round(elapsed, 1),
        "calls": len(call_ms),
        "allocations_per_s": round(allocations / elapsed),
        "full_collections": full.count,
        "full_collection_ms_max": round(max(full.ms, default=0.0), 1),
        "calls_with_a_full_collection_inside": len(with_full),
        "call_ms_p50": round(statistics.median(call_ms), 3) if call_ms else 0.0,
        "call_ms_p99": round(_pct(call_ms, 0.99), 3),
        "call_ms_max": round(max(call_ms, default=0.0), 3),
        "call_ms_p99_no_full_collection_inside": round(_pct(
            [ms for k, ms in enumerate(call_ms) if k not in with_full], 0.99), 3),
        "pages_copied_p50": int(statistics.median(pages)) if pages else 0,
        "pages_copied_p99": int(_pct([float(p) for p in pages], 0.99)),
        "pages_copied_max": max(pages, default=0),
        "arena_pages_in_use": st["used"] // PAGE,
        "arena_used_mb": round(st["used"] / (1 << 20), 1),
    }
    if orbitpy_stats:
        out["arena_collections"] = orbitpy_stats()["arena_collections"] - arena_gc_before
    out["max_call_copied_pct_of_arena"] = round(
        100.0 * out["pages_copied_max"] / max(1, out["arena_pages_in_use"]), 1)
    out["_call_ms"] = call_ms
    return out


async def run_loop_asyncio(seconds: float, arena: orbitpy.Arena, sessions: list[Session],
                           fn: Any) -> dict[str, Any]:
    """run_loop's service on an asyncio loop, the calls made with acall;
    adds the largest loop stall (a tick's lateness) to its measurements."""
    requests_per_tick = max(1, int(ALLOCS_PER_S * TICK_S / ALLOCS_PER_REQUEST))
    cache: collections.deque[Any] = collections.deque(
        maxlen=int(CACHE_SECONDS / TICK_S) * requests_per_tick)
    changed: set[int] = set()
    call_ms: list[float] = []
    issue_ms: list[float] = []  # how long acall() itself held the loop
    pages: list[int] = []
    late_ms: list[float] = []
    late_gc: list[bool] = []  # a full collection ran since the previous tick
    counts = {"allocations": 0}
    full = FullCollections()
    start = time.perf_counter()
    end = start + seconds

    async def requests() -> None:
        rid = victim = 0
        next_tick = start
        seen_full = 0
        while True:
            now = time.perf_counter()
            if now >= end:
                return
            late_ms.append(max(0.0, (now - next_tick) * 1e3))
            late_gc.append(full.count != seen_full)
            seen_full = full.count
            rid, victim = serve_tick(arena, sessions, cache, changed, requests_per_tick,
                                     rid, victim, now)
            counts["allocations"] += (requests_per_tick * ALLOCS_PER_REQUEST
                                      + ARENA_UPDATES_PER_TICK + 3)
            next_tick += TICK_S
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))

    async def calls() -> None:
        pages_before = fn.orbit.stats()["pages_copied"]
        next_call = start
        while time.perf_counter() < end:
            ids = sorted(changed)
            changed.clear()
            expect = read_changed(sessions, ids)
            t0 = time.perf_counter()
            fut = fn.acall(sessions, ids)
            issue_ms.append((time.perf_counter() - t0) * 1e3)
            got = await fut
            call_ms.append((time.perf_counter() - t0) * 1e3)
            if got != expect:
                raise AssertionError(f"orbit read {got}, main has {expect}")
            p = fn.orbit.stats()["pages_copied"]
            pages.append(p - pages_before)
            pages_before = p
            next_call += CALL_EVERY_S
            await asyncio.sleep(max(0.0, next_call - time.perf_counter()))

    with full:
        await asyncio.gather(requests(), calls())
    elapsed = time.perf_counter() - start
    st = arena.stats()
    out: dict[str, Any] = {
        "python": sys.version.split()[0],
        "mode": "asyncio, acall",
        "seconds": round(elapsed, 1),
        "calls": len(call_ms),
        "allocations_per_s": round(counts["allocations"] / elapsed),
        "full_collections": full.count,
        "full_collection_ms_max": round(max(full.ms, default=0.0), 1),
        "call_ms_p50": round(statistics.median(call_ms), 3) if call_ms else 0.0,
        "call_ms_p99": round(_pct(call_ms, 0.99), 3),
        "call_ms_max": round(max(call_ms, default=0.0), 3),
        "acall_issue_ms_p50": round(statistics.median(issue_ms), 3) if issue_ms else 0.0,
        "acall_issue_ms_max": round(max(issue_ms, default=0.0), 3),
        "loop_stall_ms_p50": round(statistics.median(late_ms), 3) if late_ms else 0.0,
        "loop_stall_ms_p99": round(_pct(late_ms, 0.99), 3),
        "loop_stall_ms_max": round(max(late_ms, default=0.0), 3),
        # the stalls CPython's own full collections do not explain
        "loop_stall_ms_max_no_full_collection": round(max(
            (ms for ms, g in zip(late_ms, late_gc, strict=True) if not g), default=0.0), 3),
        "pages_copied_p50": int(statistics.median(pages)) if pages else 0,
        "pages_copied_max": max(pages, default=0),
        "arena_pages_in_use": st["used"] // PAGE,
    }
    out["max_call_copied_pct_of_arena"] = round(
        100.0 * out["pages_copied_max"] / max(1, out["arena_pages_in_use"]), 1)
    out["_call_ms"] = call_ms
    return out


def reads_effect(arena: orbitpy.Arena, sessions: list[Session], fn: Any,
                 rounds: int = 5) -> dict[str, Any]:
    """Issue 9 item 6: main reads every session (no writes), then calls.
    Against a call after nothing happened at all."""
    quiet_ms, quiet_pages, read_ms, read_pages = [], [], [], []
    checked, check_ms = [], []
    gc_was = gc.isenabled()
    gc.disable()  # only the reads, not a collection, may dirty pages here
    try:
        for _ in range(rounds):
            fn(sessions, [0])
            p0 = fn.orbit.stats()["pages_copied"]
            t0 = time.perf_counter()
            fn(sessions, [0])
            quiet_ms.append((time.perf_counter() - t0) * 1e3)
            p1 = fn.orbit.stats()["pages_copied"]
            quiet_pages.append(p1 - p0)
            total = 0
            for s in sessions:  # a sweep: reads only
                total += s.version
            c0 = arena.stats()["checks"]
            t0 = time.perf_counter()
            fn(sessions, [0])
            read_ms.append((time.perf_counter() - t0) * 1e3)
            read_pages.append(fn.orbit.stats()["pages_copied"] - p1)
            c1 = arena.stats()["checks"]
            checked.append(c1["pages"] - c0["pages"])
            check_ms.append((c1["ns"] - c0["ns"]) / 1e6)
    finally:
        if gc_was:
            gc.enable()
    return {"quiet_call_ms": round(statistics.median(quiet_ms), 3),
            "quiet_call_pages": int(statistics.median(quiet_pages)),
            "after_read_sweep_call_ms": round(statistics.median(read_ms), 3),
            "after_read_sweep_pages": int(statistics.median(read_pages)),
            "after_read_sweep_pages_checked": int(statistics.median(checked)),
            "after_read_sweep_check_ms": round(statistics.median(check_ms), 3),
            "arena_pages_in_use": arena.stats()["used"] // PAGE}


def run(seconds: float, reads: bool = False, use_asyncio: bool = False) -> dict[str, Any]:
    arena = orbitpy.arena(ARENA_BYTES)
    fn = orbitpy.orbit(name="bench-service-loop", timeout=60)(read_changed)
    sessions: list[Session] = []
    try:
        sessions = build(arena)
        fn(sessions, [0])  # the first call: full check and copy
        collect_arenas = getattr(orbitpy, "collect_arenas", None)
        if collect_arenas:
            # The state is built and checked (the first check gives each
            # session a dict of its own, in the arena): collect it once, so
            # that the growth schedule counts from here.
            collect_arenas()
        fn(sessions, [0])
        if use_asyncio:
            out = asyncio.run(run_loop_asyncio(seconds, arena, sessions, fn))
        else:
            out = run_loop(seconds, arena, sessions, fn)
        if reads:
            out["reads"] = reads_effect(arena, sessions, fn)
        return out
    finally:
        fn.orbit.close()
        sessions.clear()
        gc.collect()
        collect_arenas = getattr(orbitpy, "collect_arenas", None)
        if collect_arenas:
            collect_arenas()
        try:
            arena.close()
        except RuntimeError as e:
            print(f"bench_service_loop: arena left open: {e}", file=sys.stderr)


# ------------------------------------------------------------------ pytest

def test_service_loop(benchmark: Any) -> None:
    from ._benchutil import by_mode, replay

    seconds = float(os.environ.get("ORBITPY_BENCH_SERVICE_S", "") or by_mode(3, 10))
    out = run(seconds)
    samples = [ms / 1e3 for ms in out.pop("_call_ms")]
    benchmark.extra_info.update(out)
    replay(benchmark, samples, "orbit call in a service loop")


def test_service_loop_asyncio(benchmark: Any) -> None:
    from ._benchutil import by_mode, replay

    seconds = float(os.environ.get("ORBITPY_BENCH_SERVICE_S", "") or by_mode(3, 10))
    out = run(seconds, use_asyncio=True)
    samples = [ms / 1e3 for ms in out.pop("_call_ms")]
    benchmark.extra_info.update(out)
    replay(benchmark, samples, "acall in an asyncio service loop")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--reads", action="store_true",
                    help="also measure a call after main reads every session")
    ap.add_argument("--asyncio", action="store_true",
                    help="run the loop on asyncio, the calls with acall; report loop stalls")
    args = ap.parse_args(argv)
    out = run(args.seconds, args.reads, args.asyncio)
    out.pop("_call_ms")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
