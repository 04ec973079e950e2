"""Snapshot scaling: what ``fn.call_async(buf)`` costs (returning = the
snapshot taken) against the number of dirty pages, and against the arena's
size with a fixed dirty set, in each snapshot mode (uffd, mprotect, full:
``orbitpy.arena(size, snapshot=...)``).

The measurement is bench_call_async.py's (``measure``, state "idle": the
orbit finished its earlier calls, each round dirties k pages, every other
page so that each is its own copy run, then waits until the orbit and main's
dispatcher sleep, and only ``call_async`` is timed); here over wider ranges:

dirty   k = 1 ... 65,536 dirty pages (quick: 1, 64, 4,096), in an arena
        twice the size of the resident buffer the pages are written to; the
        buffer is 8 MiB or the 2k pages the k dirty pages need, whichever
        is larger (so at k = 65,536: 512 MiB resident in a 1 GiB arena).
size    DIRTY_FIXED dirty pages, arenas of 16 MiB ... 1 GiB (quick: 16 and
        256 MiB), half of each resident.

``full`` mode copies every resident page of the arena on each call, whatever
k.  The report derives pages per second (k / median) and the marginal cost
per page.  Group "snapshot <mode>"; one arena and orbit at a time; with
orbitpy's copying between calls stopped, as in bench_call_async.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ._benchutil import by_mode
from .bench_call_async import MODES, STRIDE, Rig, measure

pytestmark = pytest.mark.usefixtures("no_background_sync")

KS = by_mode([1, 64, 4096], [1, 16, 256, 4096, 65536])
SIZES_MB = by_mode([16, 256], [16, 128, 1024])
DIRTY_FIXED = 64
MIN_BUFFER = 8 << 20


def rounds_for(k: int, arena_mb: int) -> int:
    """Fewer rounds where one call copies a lot (full mode copies the whole
    resident half of the arena)."""
    if k >= 16384 or arena_mb >= 512:
        return 8
    if k >= 1024 or arena_mb >= 128:
        return by_mode(15, 30)
    return by_mode(50, 100)


class Rigs:
    """One Rig at a time: a new one (the old one closed) when a benchmark
    asks for another mode or size."""

    def __init__(self) -> None:
        self.key: tuple[str, int] | None = None
        self.rig: Rig | None = None

    def get(self, mode: str, buffer: int) -> Rig:
        if self.key != (mode, buffer):
            self.close()
            self.rig = Rig(mode, arena=2 * buffer, buffer=buffer, warm=False)
            self.key = (mode, buffer)
        assert self.rig is not None
        return self.rig

    def close(self) -> None:
        if self.rig is not None:
            rig, self.rig, self.key = self.rig, None, None
            rig.close()


@pytest.fixture(scope="module")
def rigs() -> Iterator[Rigs]:
    r = Rigs()
    try:
        yield r
    finally:
        r.close()


def _run(benchmark: Any, rigs: Rigs, mode: str, sweep: str, k: int, buffer: int) -> None:
    rig = rigs.get(mode, buffer)
    arena_mb = (2 * buffer) >> 20
    benchmark.group = f"snapshot {mode}"
    benchmark.extra_info.update(kind="snapshot", sweep=sweep, mode=mode, k=k,
                                arena_mb=arena_mb, resident_mb=buffer >> 20)
    measure(benchmark, rig, "idle", k, rounds_for(k, arena_mb))


@pytest.mark.parametrize("k", KS, ids=[f"k{k:05d}" for k in KS])
@pytest.mark.parametrize("mode", MODES)
def test_dirty(benchmark: Any, rigs: Rigs, mode: str, k: int) -> None:
    _run(benchmark, rigs, mode, "dirty", k, max(MIN_BUFFER, k * STRIDE))


@pytest.mark.parametrize("arena_mb", SIZES_MB, ids=[f"{m}MB" for m in SIZES_MB])
@pytest.mark.parametrize("mode", MODES)
def test_size(benchmark: Any, rigs: Rigs, mode: str, arena_mb: int) -> None:
    assert DIRTY_FIXED * STRIDE <= (arena_mb << 20) // 2
    _run(benchmark, rigs, mode, "size", DIRTY_FIXED, (arena_mb << 20) // 2)

