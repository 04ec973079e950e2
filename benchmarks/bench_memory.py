"""Memory per orbit: the orbit process's unique and proportional set sizes
(psutil USS/PSS, from /proc/PID/smaps) when the orbit is created at start-up
and when it is created after main built a 1 GB heap, before and after main
rewrites that heap.

Main's heap: a _benchutil.SmallPageHeap of HEAP_MB (4 KiB pages, MADV_NOHUGEPAGE,
every page written), like a heap of Python objects.  The orbit runs an empty
function; it is called once after each step so that it is up to date.

startup     the orbit is created and called, then main builds the heap: the
            heap was never in the orbit's address space.
after-heap  main builds the heap, then the orbit is created (forked): the
            orbit shares main's heap pages copy-on-write (PSS: half of them).
            When main rewrites the heap, each write copies the page in main
            and the orbit is left the only owner of the old one: its USS
            grows by the heap's size although it never touches it.

Each step's USS/PSS/RSS of the orbit and of main are in extra_info; the
rounds timed are empty sync calls after the rewrite (group "memory").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import orbitpy

from ._benchutil import SmallPageHeap, memory_of

HEAP_MB = 1024
MB = 1 << 20

pytestmark = pytest.mark.benchmark(group="memory")


def _empty() -> None:
    return None


@pytest.mark.parametrize("case", ["startup", "after-heap"])
def test_memory(benchmark: Any, case: str) -> None:
    pytest.importorskip("psutil")
    import os

    steps: dict[str, dict[str, float]] = {}
    heap: SmallPageHeap | None = None
    fn: Any = None

    def snap(step: str, call: Callable[[], None]) -> None:
        call()
        orb = memory_of(fn.orbit.stats()["pid"])
        me = memory_of(os.getpid())
        steps[step] = {f"orbit_{k}_mb": round(v / MB, 1) for k, v in orb.items()}
        steps[step].update({f"main_{k}_mb": round(v / MB, 1) for k, v in me.items()})

    try:
        if case == "startup":
            fn = orbitpy.orbit(name="bench-memory-startup")(_empty)
            snap("orbit-started", fn)
            heap = SmallPageHeap(HEAP_MB)
        else:
            heap = SmallPageHeap(HEAP_MB)
            fn = orbitpy.orbit(name="bench-memory-after-heap")(_empty)
        snap("heap-built", fn)
        heap.rewrite()
        snap("heap-rewritten", fn)
        benchmark.extra_info.update(kind="memory", case=case, heap_mb=HEAP_MB, steps=steps)
        benchmark.pedantic(fn, rounds=50, warmup_rounds=5, iterations=1)
    finally:
        if fn is not None:
            fn.orbit.close()
        if heap is not None:
            heap.close()
