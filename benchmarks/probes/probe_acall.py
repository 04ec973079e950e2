"""Question: what does an asyncio call cost, and how long can an orbit's start stall the loop?

asyncio calls: latency and event-loop stalls (not part of the pytest run).

    python benchmarks/probes/probe_acall.py [ROUNDS]

1. Latency, medians in µs over ROUNDS (default 2000) empty calls each, made
   from a coroutine: ``await fn.acall()``, ``await
   asyncio.wrap_future(fn.call_async())``, and a sync ``fn()`` (which blocks
   the loop for the whole call).
2. The largest event-loop stall while a call starts the orbit over 200k arena
   objects (first call, then first call after ``restart()``): a ticker task
   sleeps 1 ms in a loop and records how late it wakes; reported for the
   call made with ``acall`` and with a sync call, each in a fresh process.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time

import orbitpy


def latency(rounds: int) -> None:
    @orbitpy.orbit(name="probe-acall")
    def empty() -> None:
        return None

    async def run() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"acall": [], "wrap_future": [], "sync": []}
        await empty.acall()
        for _ in range(rounds):
            t = time.perf_counter_ns()
            await empty.acall()
            out["acall"].append((time.perf_counter_ns() - t) / 1e3)
            t = time.perf_counter_ns()
            await asyncio.wrap_future(empty.call_async())
            out["wrap_future"].append((time.perf_counter_ns() - t) / 1e3)
            t = time.perf_counter_ns()
            empty()
            out["sync"].append((time.perf_counter_ns() - t) / 1e3)
        return out

    try:
        res = asyncio.run(run())
    finally:
        empty.orbit.close()
    for k, v in res.items():
        print(f"latency {k:12s} median {statistics.median(v):8.1f} µs  "
              f"p90 {statistics.quantiles(v, n=10)[-1]:8.1f} µs")


class Session:
    __slots__ = ("user", "n")

    def __init__(self, user: str, n: int) -> None:
        self.user, self.n = user, n


def stall(mode: str) -> None:
    arena = orbitpy.arena(256 << 20)
    with arena:
        sessions = {f"s{i}": Session(f"u{i}", i) for i in range(200_000)}

    @orbitpy.orbit(name="probe-acall-stall")
    def count(s: dict[str, Session]) -> int:
        return len(s)

    async def ticker(stop: asyncio.Event, late: list[float]) -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            late.append(time.perf_counter() - t - 0.001)

    async def one_call() -> tuple[float, float]:
        stop, late = asyncio.Event(), []
        tick = asyncio.create_task(ticker(stop, late))
        await asyncio.sleep(0.05)
        late.clear()
        t = time.perf_counter()
        n = await count.acall(sessions) if mode == "acall" else count(sessions)
        took = time.perf_counter() - t
        await asyncio.sleep(0.02)
        stop.set()
        await tick
        assert n == len(sessions)
        return took, max(late)

    try:
        first = asyncio.run(one_call())
        count.orbit.restart()
        again = asyncio.run(one_call())
    finally:
        count.orbit.close()
    for what, (took, worst) in (("first call", first), ("after restart", again)):
        print(f"stall {mode:5s} {what:14s} call {took * 1e3:6.1f} ms  "
              f"largest loop stall {worst * 1e3:6.1f} ms")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--stall":
        stall(sys.argv[2])
        return
    latency(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
    for mode in ("acall", "sync"):
        for _ in range(3):
            subprocess.run([sys.executable, __file__, "--stall", mode], check=True)


if __name__ == "__main__":
    main()
