"""The paper's running example under load: the deadlock detector of
examples/deadlock_detector.py (its LockManager, whose tables live in an
arena, and its ``find_deadlocks``) with a transaction workload, the detector
run inline, in a thread, or in an orbit.

Workload: WORKERS threads run transactions for SECONDS (quick: 3 s, full:
10 s) per variant; each takes LOCKS_PER_TXN of N_LOCKS named locks in random
order (so deadlocks form on their own), works HOLD_S while holding them and
commits; an aborted transaction (a deadlock victim) retries under a new name.
Meanwhile main serves request-like work back to back (_gil_worker.request, a
few hundred µs of Python each) and, every DETECT_EVERY_S:

inline  runs the detector itself (the example's function, un-orbited) on the
        live tables, holding the lock manager's mutex;
thread  a detector thread does that instead of main (copying the tables under
        the mutex, searching outside it);
orbit   main calls ``find_deadlocks.call_async`` under the mutex (the
        snapshot is taken before it returns), and handles the reports when
        the orbit is done, between requests.

Every reported victim still blocked as the detector saw it is aborted.
Detection latency: from the moment the cycle was complete (the latest start
of a blocking acquire among its transactions) to the victim's abort; these
are the benchmark's rounds (group "deadlock").  extra_info: main's request
throughput and p50/p99, transactions committed per second, deadlocks.
"""

from __future__ import annotations

import importlib.util
import random
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ._benchutil import by_mode, replay
from ._gil_worker import request

# `with arena:` blocks (the lock manager's): conftest.py runs this module
# after the others (the allocator hooks they install stay for the run).
INSTALLS_ARENA_HOOKS = True
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "deadlock_detector.py"
SECONDS = by_mode(3.0, 10.0)
WORKERS = 8
N_LOCKS = 24
LOCKS_PER_TXN = 3
HOLD_S = 0.002
DETECT_EVERY_S = 0.020
VARIANTS = ["inline", "thread", "orbit"]

pytestmark = pytest.mark.benchmark(group="deadlock")


def _load_example() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("deadlock_detector_example", EXAMPLE)
    if spec is None or spec.loader is None:
        pytest.skip(f"{EXAMPLE} not found")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Example:
    """The example's lock manager (one arena for the module) and its
    detector, as an orbit and as a plain function that returns its reports."""

    def __init__(self) -> None:
        import orbitpy

        self.mod = _load_example()
        self.arena = orbitpy.arena(16 << 20)
        self.mgr = self.mod.LockManager(self.arena)
        self.orbit_fn = self.mod.find_deadlocks
        with self.mgr.cond:  # start the orbit before any worker thread exists
            self.orbit_fn(self.mgr.owner, self.mgr.waiting, self.mgr.started)

    def plain(self, owner: Any, waiting: Any, started: Any) -> list[dict[str, Any]]:
        """The same function, run here: its pushes collected in a list."""
        reports: list[dict[str, Any]] = []
        shim = types.SimpleNamespace(push=reports.append)
        code = self.orbit_fn.__wrapped__
        fn = types.FunctionType(code.__code__, {**code.__globals__, "orbitpy": shim})
        fn(owner, waiting, started)
        return reports

    def close(self) -> None:
        self.orbit_fn.orbit.close()


@pytest.fixture(scope="module")
def example() -> Iterator[Example]:
    ex = Example()
    try:
        yield ex
    finally:
        ex.close()


class Run:
    """One variant's run: the workers, the detector, the measurements."""

    def __init__(self, ex: Example, variant: str) -> None:
        self.ex, self.mgr, self.variant = ex, ex.mgr, variant
        self.stop = threading.Event()
        self.attempt: dict[str, float] = {}  # txn -> start of its current acquire
        self.latencies: list[float] = []
        self.commits = 0
        self.deadlocks = 0
        self.requests: list[float] = []
        self.lock = threading.Lock()

    def worker(self, w: int) -> None:
        rng = random.Random(w)
        mgr, n = self.mgr, 0
        while not self.stop.is_set():
            n += 1
            txn = f"w{w}-{n}"
            locks = rng.sample([f"L{i}" for i in range(N_LOCKS)], LOCKS_PER_TXN)
            mgr.begin(txn)
            try:
                for lock in locks:
                    self.attempt[txn] = time.monotonic()
                    mgr.acquire(txn, lock)
                end = time.perf_counter() + HOLD_S
                while time.perf_counter() < end:  # work while holding the locks
                    pass
            except self.ex.mod.TxnAborted:
                self.attempt.pop(txn, None)
                continue  # its locks are released; retry as a new transaction
            mgr.commit(txn)
            self.attempt.pop(txn, None)
            with self.lock:
                self.commits += 1

    def resolve(self, reports: Any) -> None:
        for rep in reports:
            victim = rep["victim"]
            formed = max(self.attempt.get(t, 0.0) for t in rep["cycle"])
            if self.mgr.abort(victim, rep["waits"][victim]) is not None:
                self.latencies.append(time.monotonic() - formed)
                self.deadlocks += 1

    def detect_plain(self, copy: bool) -> None:
        mgr = self.mgr
        with mgr.cond:
            if copy:
                state = (dict(mgr.owner), {t: set(s) for t, s in mgr.waiting.items()},
                         dict(mgr.started))
            else:
                reports = self.ex.plain(mgr.owner, mgr.waiting, mgr.started)
        if copy:
            reports = self.ex.plain(*state)
        self.resolve(reports)

    def detector_thread(self, done: threading.Event) -> None:
        while not done.wait(DETECT_EVERY_S):
            self.detect_plain(copy=True)

    def main_loop(self, until: Callable[[], bool]) -> None:
        mgr, timer = self.mgr, time.perf_counter
        fut = None
        next_tick = timer() + DETECT_EVERY_S
        i = 0
        while not until():
            t0 = timer()
            i += 1
            request(i)
            if fut is not None and fut.done():
                self.resolve(fut.updates())
                fut.result()
                fut = None
            if self.variant != "thread" and t0 >= next_tick:
                next_tick = t0 + DETECT_EVERY_S
                if self.variant == "inline":
                    self.detect_plain(copy=False)
                elif fut is None:
                    with mgr.cond:
                        fut = self.ex.orbit_fn.call_async(mgr.owner, mgr.waiting,
                                                          mgr.started)
            self.requests.append(timer() - t0)
        if fut is not None:
            self.resolve(fut.updates())
            fut.result()

    def go(self) -> dict[str, Any]:
        workers = [threading.Thread(target=self.worker, args=(w,), name=f"bench-txn-{w}")
                   for w in range(WORKERS)]
        done = threading.Event()
        det = None
        if self.variant == "thread":
            det = threading.Thread(target=self.detector_thread, args=(done,),
                                   name="bench-detector")
            det.start()
        for th in workers:
            th.start()
        t0 = time.monotonic()
        try:
            self.main_loop(lambda: time.monotonic() - t0 >= SECONDS)
            wall = time.monotonic() - t0
            n_requests = len(self.requests)
            self.stop.set()
            # The workers finish their transactions; the detector keeps
            # resolving deadlocks among them until they have.
            self.main_loop(lambda: not any(th.is_alive() for th in workers))
        finally:
            self.stop.set()
            for th in workers:
                th.join(30)
            done.set()
            if det is not None:
                det.join(30)
        req = sorted(self.requests[:n_requests])
        return {"wall_s": wall, "requests_per_s": n_requests / wall,
                "main_p50_s": req[len(req) // 2], "main_p99_s": req[int(0.99 * len(req))],
                "commits_per_s": self.commits / wall, "deadlocks": self.deadlocks}


@pytest.mark.parametrize("variant", VARIANTS)
def test_deadlock(benchmark: Any, example: Example, variant: str) -> None:
    run = Run(example, variant)
    out = run.go()
    assert not example.mgr.owner and not example.mgr.waiting, "transactions left behind"
    benchmark.extra_info.update(kind="deadlock", variant=variant, workers=WORKERS,
                                locks=N_LOCKS, locks_per_txn=LOCKS_PER_TXN,
                                detect_every_ms=DETECT_EVERY_S * 1e3, **out)
    if not run.latencies:
        pytest.skip("no deadlock formed in this run")
    replay(benchmark, run.latencies, "deadlock detection latency (cycle complete -> abort)")
