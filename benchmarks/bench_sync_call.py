"""Target 2: a synchronous empty orbit call (``fn()``, no arguments, returns
None) takes at most 1.5x a bare cross-process futex round trip.

Group "sync-call", all in one run.  On this 2-vCPU VM the cost of a sleeping
wake-up depends on where the two processes run: waking a process on the other
(idle, halted) vCPU costs tens of µs, waking one on the same vCPU a few.  An
unpinned pair lands either way, run by run, so the sleeping variants are
measured pinned, both ways ("split": two CPUs, "same": one CPU).

orbit                   fn() on a warm orbit, back to back, in this process,
                        unpinned, orbitpy's default ORBITPY_SPIN_US=100 (both
                        sides spin that long before sleeping)
orbit-spin0[-split|-same]
                        the same with ORBITPY_SPIN_US=0 (sleep at once),
                        unpinned or pinned.  The variable is read once per
                        process and inherited by the orbits it forks, so these
                        run in a subprocess (benchmarks/_sync_worker.py) that
                        times each call with perf_counter exactly like a
                        pedantic round; its samples are replayed into this run.
futex-sleep-split|-same orbitpy._bench.futex_roundtrip(spin_us=0): the bare
                        round trip in C, both sides FUTEX_WAIT at once.
futex-spin-split        the same, spinning ORBITPY_SPIN_US before sleeping
                        (what orbitpy does, minus Python, sockets, snapshots).
                        (Spinning on one shared CPU is pointless: each side
                        spins out its 100 µs while the other cannot run.)
                        Futex rounds are timed in C, one sample per round trip,
                        over several forked children, and replayed.
process-pool            concurrent.futures.ProcessPoolExecutor(1).submit(f).result()
mp-pipe                 multiprocessing.Pipe: send(0), the worker sends it back
plain-call              f() in this thread (the floor; auto-calibrated rounds)
"""

from __future__ import annotations

import array
import concurrent.futures
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from orbitpy._bench import futex_roundtrip

import orbitpy

from ._benchutil import replay, spin_us

HERE = Path(__file__).resolve().parent
ROUNDS = 3000
WARMUP = 300
FUTEX_CHILDREN = 4
FUTEX_PER_CHILD = 1000
POOL_ROUNDS = 1000
PIPE_ROUNDS = 2000
CPUS = sorted(os.sched_getaffinity(0))

pytestmark = pytest.mark.benchmark(group="sync-call")


def _placement_cpus(placement: str) -> tuple[int, int]:
    if placement == "split":
        if len(CPUS) < 2:
            pytest.skip("needs two CPUs")
        return CPUS[0], CPUS[1]
    return CPUS[0], CPUS[0]


def _noop() -> None:
    return None


def _pipe_worker(conn: Any) -> None:
    while True:
        msg = conn.recv()
        if msg is None:
            return
        conn.send(msg)


@pytest.fixture(scope="module")
def empty() -> Iterator[Any]:
    @orbitpy.orbit(name="bench-sync")
    def empty_fn() -> None:
        return None

    try:
        for _ in range(WARMUP):
            empty_fn()
        yield empty_fn
    finally:
        empty_fn.orbit.close()


def test_orbit(benchmark: Any, empty: Any) -> None:
    benchmark.extra_info.update(kind="sync", variant="orbit", spin_us=spin_us(),
                                placement="free")
    benchmark.pedantic(empty, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)


@pytest.mark.parametrize("pause_ms", [1, 5])
def test_orbit_after_pause(benchmark: Any, empty: Any, pause_ms: int) -> None:
    """The sync call of a service that calls now and then: main sleeps
    `pause_ms` before each call (outside the timing), so both sides start
    from sleep, as with a periodic maintenance task."""
    benchmark.extra_info.update(kind="sync", variant=f"orbit-pause-{pause_ms}",
                                spin_us=spin_us(), placement="free")
    benchmark.pedantic(empty, setup=lambda: time.sleep(pause_ms / 1000), rounds=200,
                       warmup_rounds=5, iterations=1)


@pytest.mark.parametrize("placement", ["free", "split", "same"])
def test_orbit_spin0(benchmark: Any, placement: str) -> None:
    if placement != "free":
        _placement_cpus(placement)
    env = dict(os.environ, ORBITPY_SPIN_US="0")
    proc = subprocess.run(
        [sys.executable, str(HERE / "_sync_worker.py"), str(ROUNDS), str(WARMUP), placement],
        env=env, capture_output=True, text=True, timeout=100, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["spin_us"] == "0" and out["calls"] == ROUNDS + WARMUP
    variant = "orbit-spin0" + ("" if placement == "free" else f"-{placement}")
    benchmark.extra_info.update(kind="sync", variant=variant, spin_us=0, placement=placement)
    replay(benchmark, out["samples"], "subprocess with ORBITPY_SPIN_US=0, perf_counter per call")


@pytest.mark.parametrize(("spin", "placement"), [("spin", "split"), ("sleep", "split"),
                                                 ("sleep", "same")])
def test_futex(benchmark: Any, spin: str, placement: str) -> None:
    cpus = _placement_cpus(placement)
    s = spin_us() if spin == "spin" else 0
    samples: list[float] = []
    for _ in range(FUTEX_CHILDREN):
        buf = array.array("d", bytes(8 * FUTEX_PER_CHILD))
        futex_roundtrip(FUTEX_PER_CHILD, s, buf, warmup=50, cpus=cpus)
        samples.extend(buf)
    benchmark.extra_info.update(kind="sync", variant=f"futex-{spin}-{placement}", spin_us=s,
                                placement=placement, cpus=list(cpus))
    replay(benchmark, samples, "futex_roundtrip, C clock per round trip")


def test_process_pool(benchmark: Any) -> None:
    benchmark.extra_info.update(kind="sync", variant="process-pool")
    with concurrent.futures.ProcessPoolExecutor(1) as ex:
        for _ in range(50):
            ex.submit(_noop).result()

        def call() -> None:
            ex.submit(_noop).result()

        benchmark.pedantic(call, rounds=POOL_ROUNDS, warmup_rounds=50, iterations=1)


def test_mp_pipe(benchmark: Any) -> None:
    benchmark.extra_info.update(kind="sync", variant="mp-pipe")
    parent, child = multiprocessing.Pipe()
    worker = multiprocessing.Process(target=_pipe_worker, args=(child,), daemon=True)
    worker.start()
    try:
        def roundtrip() -> None:
            parent.send(0)
            parent.recv()

        for _ in range(50):
            roundtrip()
        benchmark.pedantic(roundtrip, rounds=PIPE_ROUNDS, warmup_rounds=50, iterations=1)
    finally:
        parent.send(None)
        worker.join(10)
        if worker.is_alive():
            worker.kill()
            worker.join()
        parent.close()
        child.close()


def test_plain_call(benchmark: Any) -> None:
    benchmark.extra_info.update(kind="sync", variant="plain-call")
    benchmark(_noop)
