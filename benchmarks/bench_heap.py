"""Target 3: synchronous call latency with a 1 GB main heap within 1.2x of
the latency with a 32 MB heap (an orbit is forked once, not per call).

One process grows and shrinks its heap: for a heap of N MB it maps N MB of
4 KiB pages with every page written (resident; _benchutil.SmallPageHeap: a
private anonymous mapping with MADV_NOHUGEPAGE, as CPython's object heap is
made of 4 KiB pages, where a big bytearray may get transparent huge pages),
then starts a new orbit (forked with that heap) and measures, in group "heap":

sync-call      fn() on that warm orbit, back to back (as in "sync-call").
               A 30 ms stretch of calls on this VM varies by +-20% from one
               stretch to the next whatever the heap, so the sizes are
               measured alternately, 32-1024-1024-32-32-1024-..., 10 times each
               (quick mode: 4), each
               stretch with its own allocation and its own new orbit; each
               call is timed with perf_counter like a pedantic round, and the
               pooled samples of a size are replayed as one benchmark.
fork-per-call  what a fork-per-call design pays: os.fork(), the child
               os._exit(0)s at once, the parent waitpid()s (plain pedantic).

The process's own baseline (interpreter, pytest) comes on top of the
allocation; its resident size is recorded in extra_info["rss_mb"].
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

import orbitpy

from ._benchutil import SmallPageHeap, by_mode, replay, rss_bytes

HEAPS_MB = [32, 1024]
STRETCHES = by_mode(4, 10)  # per size
PER_STRETCH = 400
WARMUP = 200
FORK_ROUNDS = {32: 100, 1024: 20}

pytestmark = pytest.mark.benchmark(group="heap")


def _measure(mb: int) -> tuple[list[float], int]:
    """Per-call seconds of PER_STRETCH sync calls with an mb-MB heap."""
    block = SmallPageHeap(mb)

    @orbitpy.orbit(name=f"bench-heap-{mb}")
    def empty() -> None:
        return None

    try:
        for _ in range(WARMUP):  # also takes main's copy-on-write faults
            empty()
        timer = time.perf_counter
        out = []
        for _ in range(PER_STRETCH):
            t0 = timer()
            empty()
            out.append(timer() - t0)
        return out, rss_bytes()
    finally:
        empty.orbit.close()
        block.close()


@pytest.fixture(scope="module")
def sync_samples() -> dict[int, tuple[list[float], int]]:
    samples: dict[int, list[float]] = {mb: [] for mb in HEAPS_MB}
    rss: dict[int, int] = {}
    for i in range(STRETCHES):
        for mb in (HEAPS_MB if i % 2 == 0 else HEAPS_MB[::-1]):
            s, rss[mb] = _measure(mb)
            samples[mb].extend(s)
    return {mb: (samples[mb], rss[mb]) for mb in HEAPS_MB}


@pytest.mark.parametrize("heap_mb", HEAPS_MB, ids=[f"{m}MB" for m in HEAPS_MB])
def test_sync_call(benchmark: Any, sync_samples: dict[int, tuple[list[float], int]],
                   heap_mb: int) -> None:
    samples, rss = sync_samples[heap_mb]
    benchmark.extra_info.update(kind="heap", variant="sync-call", heap_mb=heap_mb,
                                rss_mb=round(rss / 2**20), stretches=STRETCHES)
    replay(benchmark, samples, f"{STRETCHES} alternating stretches, perf_counter per call")


@pytest.fixture(scope="module", params=HEAPS_MB, ids=[f"{m}MB" for m in HEAPS_MB])
def heap(request: pytest.FixtureRequest) -> Iterator[int]:
    mb = request.param
    block = SmallPageHeap(mb)
    try:
        yield mb
    finally:
        block.close()


def _fork_exit_wait() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def test_fork_per_call(benchmark: Any, heap: int) -> None:
    benchmark.extra_info.update(kind="heap", variant="fork-per-call", heap_mb=heap,
                                rss_mb=round(rss_bytes() / 2**20))
    benchmark.pedantic(_fork_exit_wait, rounds=FORK_ROUNDS[heap], warmup_rounds=2, iterations=1)
