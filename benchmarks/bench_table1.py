"""The paper's Table 1 in Python: one small auxiliary task, called 100 times,
by every way Python offers to run it elsewhere, with main's heap at 32 MB,
1 GB and 8 GB (quick mode: 32 MB and 1 GB).

Main's heap is a SmallPageHeap (_benchutil): a private anonymous mapping with
MADV_NOHUGEPAGE, every page written, so it is made of 4 KiB pages like
CPython's object heap (a big bytearray may get transparent huge pages, and
fork then looks ~16x cheaper than it is for a heap of Python objects).

The task's state: a 1 MiB buffer (256 pages, resident) in a 4 MiB arena.
Before each call, outside the timing (pedantic ``setup``), main writes one
byte to each of DIRTY pages of it (a few dirty pages per call, as for a task
that sees main's latest state); the task reads the first byte of every page
and returns the sum.  Group "table1", 100 rounds of one call each:

orbit-sync      ``fn(buf)``: the orbit (forked once, after the heap was
                built) gets the dirty pages and runs the task; main waits.
orbit-async     ``fn.call_async(buf)`` returning (snapshot taken); the result
                is collected in the next round's setup, outside the timing.
fork            ``os.fork()`` per call: the child runs the task on its
                copy-on-write view, writes the result to a pipe and
                ``_exit``s; the parent reads it and ``waitpid``s.
mp-pickle       a ``multiprocessing.Process`` worker (started once): main
                sends the state (``bytes(buf)``, pickled by the Pipe) and reads
                the result.
process-pool    ``ProcessPoolExecutor(1).submit(task, bytes(buf)).result()``
                (the pool started once).
thread          a worker thread (started once) fed through a queue: it reads
                the buffer in place (no copy and no isolation: the floor).
subinterpreter  where the Python has one (3.12 ``_xxsubinterpreters``, 3.13
                ``_interpreters``, 3.14 ``concurrent.interpreters``): the task
                run in a subinterpreter created once, the state passed as
                bytes (copied in); in this thread, synchronously.  3.12/3.13:
                the result stays in the subinterpreter (their low-level
                modules have no return value).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import orbitpy

from ._benchutil import PAGE, SmallPageHeap, by_mode, rss_bytes

HEAPS_MB = by_mode([32, 1024], [32, 1024, 8192])
CALLS = 100  # rounds per benchmark: one call each
STATE = 1 << 20
DIRTY = 4
VARIANTS = ["orbit-sync", "orbit-async", "fork", "mp-pickle", "process-pool", "thread",
            "subinterpreter"]

pytestmark = pytest.mark.benchmark(group="table1")


def task(state: Any) -> int:
    """The auxiliary task: read the first byte of every page of the state."""
    return sum(state[::PAGE])


TASK_SRC = "result = sum(state[::4096])"


def _mp_worker(conn: Any) -> None:
    while True:
        state = conn.recv()
        if state is None:
            return
        conn.send(task(state))


class Subinterpreter:
    """The task in a subinterpreter, with whichever module this Python has."""

    def __init__(self) -> None:
        self.close: Callable[[], None]
        try:
            from concurrent import interpreters  # type: ignore[attr-defined]  # 3.14

            interp = interpreters.create()
            self.call = lambda state: interp.call(task, state)
            self.close = interp.close
            return
        except ImportError:
            pass
        try:
            import _interpreters as mod  # type: ignore[import-not-found]  # 3.13
        except ImportError:
            try:
                import _xxsubinterpreters as mod  # type: ignore[import-not-found,no-redef]
            except ImportError:
                pytest.skip("this Python has no subinterpreter module")
        iid = mod.create()
        run = getattr(mod, "exec", None) or mod.run_string

        def call(state: bytes) -> None:
            if run(iid, TASK_SRC, {"state": state}) is not None:  # 3.13: an error summary
                raise RuntimeError("the task failed in the subinterpreter")

        self.call = call
        self.close = lambda: mod.destroy(iid)


class World:
    """Main's heap of `mb` MiB, the task's state in an arena, and an orbit
    forked after both."""

    def __init__(self, mb: int) -> None:
        self.arena = orbitpy.arena(4 * STATE)
        self.buf = self.arena.buffer(STATE)
        for off in range(0, STATE, PAGE):
            self.buf[off] = 1
        self.heap = SmallPageHeap(mb)
        self.mb = mb
        self.fn = orbitpy.orbit(name=f"bench-table1-{mb}")(task)
        self.fn(self.buf)  # start it: forked now, with the heap
        self.rss_mb = rss_bytes() >> 20
        self.value = 1

    def dirty(self) -> None:
        self.value = (self.value + 1) & 0x7F or 1
        buf, v = self.buf, self.value
        for i in range(DIRTY):
            buf[i * 8 * PAGE] = v

    def expected(self) -> int:
        return task(self.buf)

    def close(self) -> None:
        self.fn.orbit.close()
        self.buf.release()
        self.arena.close()
        self.heap.close()


@pytest.fixture(scope="module", params=HEAPS_MB, ids=[f"{m}MB" for m in HEAPS_MB])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    w = World(request.param)
    try:
        yield w
    finally:
        w.close()


def _measure(benchmark: Any, w: World, variant: str, call: Callable[[], Any],
             check: Callable[[], None] | None = None, warmup: int = 5) -> None:
    benchmark.extra_info.update(kind="table1", variant=variant, heap_mb=w.mb, rss_mb=w.rss_mb,
                                dirty_pages=DIRTY, state_bytes=STATE,
                                heap="mmap MAP_PRIVATE|MAP_ANONYMOUS + MADV_NOHUGEPAGE, "
                                     "4 KiB pages, all written")

    def setup() -> None:
        if check is not None:
            check()
        w.dirty()

    benchmark.pedantic(call, setup=setup, rounds=CALLS, warmup_rounds=warmup, iterations=1)
    if check is not None:
        check()


@pytest.mark.parametrize("variant", VARIANTS)
def test_table1(benchmark: Any, world: World, variant: str) -> None:
    w = world
    getattr(_Variants(benchmark, w), variant.replace("-", "_"))()


class _Variants:
    """One method per row of the table; each starts its worker outside the
    timing and stops it before returning."""

    def __init__(self, benchmark: Any, w: World) -> None:
        self.b, self.w = benchmark, w

    def orbit_sync(self) -> None:
        w = self.w
        out: list[int] = []
        _measure(self.b, w, "orbit-sync", lambda: out.append(w.fn(w.buf)))
        assert out[-1] == w.expected()

    def orbit_async(self) -> None:
        w = self.w
        futs: list[Any] = []

        def check() -> None:
            if futs:
                assert futs.pop().result() is not None

        _measure(self.b, w, "orbit-async", lambda: futs.append(w.fn.call_async(w.buf)), check)

    def fork(self) -> None:
        w = self.w

        def fork_call() -> int:
            r, wr = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.write(wr, str(task(w.buf)).encode())
                finally:
                    os._exit(0)
            os.close(wr)
            try:
                v = int(os.read(r, 64))
            finally:
                os.close(r)
                os.waitpid(pid, 0)
            return v

        _measure(self.b, w, "fork", fork_call, warmup=2)

    def mp_pickle(self) -> None:
        w = self.w
        parent, child = multiprocessing.Pipe()
        proc = multiprocessing.Process(target=_mp_worker, args=(child,), daemon=True)
        proc.start()

        def call() -> int:
            parent.send(bytes(w.buf))
            return int(parent.recv())

        try:
            _measure(self.b, w, "mp-pickle", call)
        finally:
            parent.send(None)
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
            parent.close()
            child.close()

    def process_pool(self) -> None:
        w = self.w
        with concurrent.futures.ProcessPoolExecutor(1) as ex:
            ex.submit(task, b"").result()
            _measure(self.b, w, "process-pool", lambda: ex.submit(task, bytes(w.buf)).result())

    def thread(self) -> None:
        w = self.w
        inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        outbox: queue.SimpleQueue[int] = queue.SimpleQueue()

        def worker() -> None:
            while (state := inbox.get()) is not None:
                outbox.put(task(state))

        th = threading.Thread(target=worker, name="bench-table1-thread", daemon=True)
        th.start()

        def call() -> int:
            inbox.put(w.buf)
            return outbox.get()

        try:
            _measure(self.b, w, "thread", call)
        finally:
            inbox.put(None)
            th.join(10)

    def subinterpreter(self) -> None:
        w = self.w
        sub = Subinterpreter()
        try:
            _measure(self.b, w, "subinterpreter", lambda: sub.call(bytes(w.buf)))
        finally:
            sub.close()
