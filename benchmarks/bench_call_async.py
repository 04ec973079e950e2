"""Target 1: ``fn.call_async(buf)`` returns (its snapshot taken) within
15 µs + 1 µs per dirty page.

A 16 MiB arena holds an 8 MiB buffer whose pages are all resident (main's data
lives there).  Each round, outside the timing, waits for the previous call,
writes one byte to each of k pages of the buffer (every other page, so no two
dirty pages are adjacent and each is its own copy run), and waits
ORBITPY_SPIN_US + 100 µs without sleeping so that the orbit and main's
dispatcher thread have stopped spinning; then only ``fn.call_async(buf)`` is
timed.  States:

idle   the orbit finished every earlier call and sleeps: the dirty pages are
       copied straight into the orbit's copy of the arena.
busy   the orbit is inside an earlier call (blocked reading a pipe that main
       writes to at the start of the next round, so it is busy for exactly as
       long as needed): the dirty pages go to the staging ring.  The ring is
       warmed first (more than its 64 MiB staged once), so these rounds
       measure the steady state, not first-touch page faults in the ring.
hot    (uffd, k <= 10 only) like idle, but without the settling wait: the
       orbit still spins on its answer, as for a caller that calls in a loop.

The snapshot modes: uffd (the default here), and forced mprotect and full
(full copies every resident page of the arena on every call, whatever k).
orbitpy's copying between calls (background sync) is stopped here: it would
copy some of a round's dirty pages before the timed call.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

import orbitpy

from ._benchutil import PAGE, busy_wait, by_mode, settle_time

ARENA = 16 << 20
BUFFER = 8 << 20
STRIDE = 2 * PAGE  # dirty pages are never adjacent
KS = [0, 1, 10, 100, 1000]
MODES = ["uffd", "mprotect", "full"]
ROUNDS = by_mode(100, 400)
# csrc/us/dirty_track_mprotect.c: MP_SPLIT_BUDGET
MPROTECT_SPLIT_BUDGET = 8192
WARMUP = 20

assert KS[-1] * STRIDE <= BUFFER

# What a call copies is what is timed: no copying between calls.
pytestmark = pytest.mark.usefixtures("no_background_sync")


class Rig:
    """An arena, a buffer in it and an orbit function over it, in one mode.
    (bench_snapshot_scaling.py uses it with other sizes and no busy rounds.)"""

    def __init__(self, mode: str, arena: int = ARENA, buffer: int = BUFFER,
                 warm: bool = True) -> None:
        self.mode = mode
        self.size = buffer
        try:
            self.arena = orbitpy.arena(arena, snapshot=mode)
        except OSError as e:
            pytest.skip(f"snapshot mode {mode} unavailable: {e}")
        self.buf = self.arena.buffer(buffer)
        for off in range(0, buffer, PAGE):  # resident, like live data
            self.buf[off] = 1
        # The orbit blocks on this pipe in "busy" rounds.  Created before the
        # orbit process is forked, so the orbit inherits it.
        self.rfd, self.wfd = os.pipe()
        rfd = self.rfd

        def snapshot_target(buf: memoryview, block: bool = False) -> None:
            if block:
                os.read(rfd, 1)

        self.fn = orbitpy.orbit(name=f"bench-call-async-{mode}")(snapshot_target)
        self.fut: Any = None
        self.blocker: Any = None
        self.fn.call_async(self.buf).result()  # start the orbit, first full sync
        if warm:
            self.warm_staging()

    def warm_staging(self) -> None:
        """Stage more than the whole staging ring once, so that the busy
        rounds measure a warm ring: its shared pages are populated on first
        use, and a first touch costs a page fault and a page clear on top of
        the copy (see README.md)."""
        try:
            ring = int(os.environ.get("ORBITPY_STAGING") or "0", 0) or 64 << 20
        except ValueError:
            ring = 64 << 20
        for r in range(ring // self.size + 2):
            self.blocker = self.fn.call_async(self.buf, True)
            self.dirty_all(r & 0xFF)
            self.fut = self.fn.call_async(self.buf)  # staged: the orbit is busy
            self.drain()

    def drain(self) -> None:
        """Let the orbit finish everything main issued."""
        if self.blocker is not None:
            os.write(self.wfd, b"x")
            self.blocker.result()
            self.blocker = None
        if self.fut is not None:
            self.fut.result()
            self.fut = None

    def dirty_all(self, value: int) -> None:
        buf = self.buf
        for off in range(0, self.size, PAGE):
            buf[off] = value

    def dirty(self, k: int, value: int) -> None:
        buf = self.buf
        for i in range(k):
            buf[i * STRIDE] = value

    def close(self) -> None:
        try:
            self.drain()
        finally:
            self.fn.orbit.close()
            self.buf.release()
            del self.buf
            self.arena.close()
            os.close(self.rfd)
            os.close(self.wfd)


@pytest.fixture(scope="module", params=MODES)
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    r = Rig(request.param)
    try:
        yield r
    finally:
        r.close()


CASES = ([("idle", k) for k in KS] + [("busy", k) for k in KS]
         + [("hot", k) for k in KS if k <= 10])


@pytest.mark.parametrize(("state", "k"), CASES, ids=[f"{s}-k{k:04d}" for s, k in CASES])
def test_call_async(benchmark: Any, rig: Rig, state: str, k: int) -> None:
    if state == "hot" and rig.mode != "uffd":
        pytest.skip("the hot state is measured in uffd mode only")
    benchmark.group = f"call_async {rig.mode}"
    benchmark.extra_info.update(kind="call_async", mode=rig.mode, state=state, k=k)
    measure(benchmark, rig, state, k, ROUNDS)


def measure(benchmark: Any, rig: Rig, state: str, k: int, rounds: int) -> None:
    """Time `rounds` calls ``rig.fn.call_async(buf)``, each after dirtying k
    pages (see the module's docstring); checks the pages each one copied."""
    settle = 0.0 if state == "hot" else settle_time()
    call_async = rig.fn.call_async
    buf = rig.buf
    stats = rig.fn.orbit.stats
    copied: list[int] = []  # pages copied by each timed call
    mark = [-1]

    def setup() -> None:
        if mark[0] >= 0:  # the snapshot is taken (and counted) at submission
            copied.append(stats()["pages_copied"] - mark[0])
        rig.drain()
        if state == "busy":
            rig.blocker = call_async(buf, True)  # the orbit takes it and blocks
        rig.dirty(k, len(copied) & 0xFF)
        mark[0] = stats()["pages_copied"]
        if settle:
            busy_wait(settle)

    def target() -> None:
        rig.fut = call_async(buf)

    rig.drain()
    benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=min(WARMUP, rounds),
                       iterations=1)
    copied.append(stats()["pages_copied"] - mark[0])
    rig.drain()
    # What was measured: pages each timed call copied (k; in full mode every
    # resident page of the arena; in mprotect mode more than k once k passes
    # its split budget, 8192 pages, after which whole 2 MiB chunks open).
    copied.sort()
    benchmark.extra_info["pages_copied_median"] = copied[len(copied) // 2]
    assert rig.arena.snapshot_mode == rig.mode
    if rig.mode == "uffd" or (rig.mode == "mprotect" and k <= MPROTECT_SPLIT_BUDGET):
        assert copied[0] == copied[-1] == k, (copied[0], copied[-1])
    elif rig.mode == "mprotect":
        assert copied[0] >= k, (copied[0], k)
