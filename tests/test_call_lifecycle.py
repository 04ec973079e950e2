"""How calls end: answers that reached main survive a crash whoever notices
it, restarts/closes/crashes racing calls never wedge the orbit, cancelled and
abandoned calls do not hold up later ones, and timeouts say what happened."""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import orbitpy


def wait_dead(pid: int, timeout: float = 10.0) -> None:
    """Wait until process pid has exited (without reaping it)."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    assert ready, f"process {pid} did not exit"


def segfault() -> None:
    import ctypes

    ctypes.string_at(0)


# ------------------------------------------------ answers before a crash

@pytest.mark.parametrize("notice", ["call_async", "sync"])
def test_answers_before_a_crash_survive_a_new_call(make_orbit: Callable[..., Any],
                                                   notice: str) -> None:
    @make_orbit
    def job(i: int) -> int:
        orbitpy.push(("update", i))
        if i == 5:
            segfault()
        return i

    futs = [job.call_async(i) for i in range(1, 6)]
    wait_dead(job.orbit.pid)
    # A new submission, not a waiter, finds the orbit dead.
    if notice == "sync":
        assert job(6) == 6
    else:
        assert job.call_async(6).result(timeout=10) == 6
    for i, fut in enumerate(futs[:4], 1):
        assert list(fut.updates(timeout=10)) == [("update", i)]
        assert fut.result(timeout=10) == i
    with pytest.raises(orbitpy.OrbitCrashed) as e:
        futs[4].result(timeout=10)
    assert e.value.signal == 11
    assert list(futs[4].updates(timeout=10)) == [("update", 5)]


def test_answer_before_a_restart_survives_it(make_orbit: Callable[..., Any],
                                            tmp_path: Any) -> None:
    started = tmp_path / "started"

    @make_orbit
    def job(i: int, mark: str = "") -> int:
        if mark:
            open(mark, "w").close()
            time.sleep(30)
        return i

    first = job.call_async(1)
    second = job.call_async(2, str(started))
    deadline = time.monotonic() + 10
    while not started.exists():  # so the first answer is in main's channel, unread
        assert time.monotonic() < deadline
        time.sleep(0.01)
    job.orbit.restart()
    assert first.result(timeout=10) == 1
    with pytest.raises(orbitpy.OrbitCrashed):
        second.result(timeout=10)


# ------------------------------------------------------------- races

def _stress(workers: list[Callable[[], None]], seconds: float,
            counters: dict[str, int]) -> None:
    """Run each worker in a loop in its own thread for `seconds`; fail when a
    counter stops moving for 10 s (a deadlock) or a worker raises."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop(w: Callable[[], None]) -> None:
        while not stop.is_set():
            try:
                w()
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                stop.set()

    threads = [threading.Thread(target=loop, args=(w,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    end = time.monotonic() + seconds
    last = dict(counters)
    moved = time.monotonic()
    while time.monotonic() < end and not stop.is_set():
        time.sleep(0.25)
        now = dict(counters)
        if all(now[k] > last[k] for k in now):
            last, moved = now, time.monotonic()
        elif time.monotonic() - moved > 10:
            stop.set()
            pytest.fail(f"no progress for 10 s: {now}")
    stop.set()
    for t in threads:
        t.join(15)
        assert not t.is_alive(), "a worker thread is stuck"
    if errors:
        raise errors[0]


def test_restarts_crashes_and_closes_racing_calls(make_orbit: Callable[..., Any]) -> None:
    counters = {"calls": 0, "restarts": 0, "closes": 0}

    def make() -> Any:
        @make_orbit(restart=1000)
        def job(i: int) -> int:
            if i % 7 == 0:
                segfault()
            return i

        return job

    current = [make()]
    n = [0]

    def caller() -> None:
        job = current[0]
        n[0] += 1
        i = n[0]
        try:
            if i % 3:
                assert job(i) == i
            else:
                assert job.call_async(i).result(timeout=30) == i
        except orbitpy.OrbitCrashed:
            pass  # a crash (i % 7 == 0) or a restart from the other thread
        except orbitpy.OrbitClosed:
            pass  # closed by the closer: the next round uses a new orbit
        counters["calls"] += 1

    def restarter() -> None:
        try:
            current[0].orbit.restart()
        except orbitpy.OrbitClosed:
            pass
        counters["restarts"] += 1
        time.sleep(0.002)

    def closer() -> None:
        time.sleep(0.2)
        old, current[0] = current[0], make()
        old.orbit.close()
        counters["closes"] += 1

    _stress([caller, caller, restarter, closer], 8, counters)
    assert counters["calls"] > 20 and counters["restarts"] > 20
