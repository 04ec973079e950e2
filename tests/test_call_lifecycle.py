"""How calls end: answers that reached main survive a crash whoever notices
it, restarts/closes/crashes racing calls never wedge the orbit, cancelled and
abandoned calls do not hold up later ones, and timeouts say what happened."""

from __future__ import annotations

import concurrent.futures as cf
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import orbitpy


def wait_dead(pid: int, timeout: float = 10.0) -> None:
    """Wait until process pid has exited (without reaping it)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # already reaped
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
    counters = {"calls": 0, "restarts": 0, "closes": 0, "cancels": 0}

    def make() -> Any:
        @make_orbit(restart=1000)
        def job(i: int, delay: float = 0.0) -> int:
            if i % 7 == 0:
                segfault()
            time.sleep(delay)
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

    def canceller() -> None:
        job = current[0]
        try:
            futs = [job.call_async(1, 0.05), job.call_async(2), job.call_async_ex((3,),
                                                                                   timeout=0.01)]
        except orbitpy.OrbitClosed:
            return
        time.sleep(0.01)
        futs[0].cancel()
        for f in futs:
            try:
                f.result(timeout=30)
            except (cf.CancelledError, orbitpy.OrbitError):
                pass
        counters["cancels"] += 1

    _stress([caller, caller, restarter, closer, canceller], 8, counters)
    assert counters["calls"] > 20 and counters["restarts"] > 20


# ------------------------------------------------- cancelling, interrupts

@pytest.fixture
def sleeper(make_orbit: Callable[..., Any], tmp_path: Any) -> Any:
    """sleeper(x, delay, mark): pushes "started", sleeps, touches `mark`
    (if given) when it finishes, returns x."""

    @make_orbit
    def sleeper(x: Any, delay: float = 0.0, mark: str = "") -> Any:
        orbitpy.push("started")
        time.sleep(delay)
        if mark:
            open(mark, "w").close()
        return x

    return sleeper


def started(fut: Any) -> None:
    assert next(fut.updates(timeout=10)) == "started"


def test_cancel_a_queued_call(sleeper: Any) -> None:
    first = sleeper.call_async(1, 0.3)
    second = sleeper.call_async(2, 30)
    third = sleeper.call_async(3)
    start = time.monotonic()
    assert second.cancel()
    assert second.cancelled() and second.done() and not second.running()
    with pytest.raises(cf.CancelledError):
        second.result(timeout=0)
    assert second.cancel()  # again: still cancelled
    assert first.result(timeout=10) == 1 and not first.cancel()
    assert third.result(timeout=10) == 3
    assert time.monotonic() - start < 15  # the cancelled call did not run
    st = sleeper.orbit.stats()
    assert (st["cancelled"], st["failed"], st["restarts"], st["crashes"]) == (1, 1, 0, 0)


def test_cancel_queued_flag_reports_cancelled(sleeper: Any) -> None:
    first = sleeper.call_async("first", 0.3)
    started(first)
    queued = [sleeper.call_async(i) for i in range(3)]
    last = sleeper.call_async_ex(("last",), cancel_queued=True)
    assert all(f.cancelled() for f in queued)
    assert not first.cancelled() and first.result(timeout=10) == "first"
    assert last.result(timeout=10) == "last"


def test_cancel_a_running_call_kills_the_orbit(sleeper: Any, tmp_path: Any) -> None:
    mark = tmp_path / "finished"
    fut = sleeper.call_async(1, 30, str(mark))
    started(fut)
    behind = [sleeper.call_async(i) for i in (2, 3)]
    pid = sleeper.orbit.pid
    assert fut.cancel()
    assert fut.cancelled()
    with pytest.raises(cf.CancelledError):
        fut.result()
    wait_dead(pid)
    # the calls queued behind it run on the restarted orbit, in order
    assert [f.result(timeout=15) for f in behind] == [2, 3]
    assert sleeper(4) == 4 and sleeper.orbit.pid != pid
    assert not mark.exists()
    st = sleeper.orbit.stats()
    assert (st["cancelled"], st["crashes"], st["restarts"]) == (1, 0, 1)


def test_call_after_cancelling_a_running_call_runs(sleeper: Any) -> None:
    """The call after one cancelled (killed) while running runs and returns
    its value: nothing of the cancel carries over to it."""
    for i in range(30):
        fut = sleeper.call_async(-1, 30)
        started(fut)
        assert fut.cancel()
        assert sleeper(i) == i
    assert sleeper.orbit.stats()["cancelled"] == 30


def test_cancel_kill_racing_the_answer_spares_the_next_call(sleeper: Any) -> None:
    """The orbit answers a call while it is being cancelled with a kill: a
    thread waiting on it has pulled the answer but not delivered it when
    cancel() kills the orbit.  The answer stands (cancel() is False) and the
    call queued behind it, whose process was killed, runs again on the
    restarted orbit; it used to take the cancel's error and raise
    CancelledError without having been cancelled."""
    old = sys.getswitchinterval()
    for i in range(3):
        first = sleeper.call_async("first", 0.2)
        second = sleeper.call_async(i, 0.6)
        started(first)
        first.add_done_callback(lambda _: None)  # the dispatcher thread waits on it
        time.sleep(0.1)  # ...inside the orbit's pull, GIL dropped
        sys.setswitchinterval(100)
        try:
            # Keep the GIL while the first call ends: the dispatcher pulls its
            # answer, then waits for the GIL to deliver it.
            end = time.monotonic() + 0.4
            while time.monotonic() < end:
                pass
            cancelled = first.cancel()
        finally:
            sys.setswitchinterval(old)
        assert second.result(timeout=15) == i
        if not cancelled:
            assert first.result(timeout=15) == "first"


def test_cancel_a_running_call_made_to_finish(sleeper: Any, tmp_path: Any) -> None:
    mark = tmp_path / "finished"
    fut = sleeper.call_async_ex((1, 0.3, str(mark)), on_interrupt="finish")
    started(fut)
    assert not fut.cancel()  # running: as concurrent.futures, left alone
    assert fut.result(timeout=10) == 1 and mark.exists()


def test_result_timeout_does_not_cancel(sleeper: Any) -> None:
    fut = sleeper.call_async(1, 0.3)
    with pytest.raises(TimeoutError) as e:
        fut.result(timeout=0.01)
    assert not isinstance(e.value, orbitpy.OrbitTimeout)
    assert fut.result(timeout=10) == 1


def _interrupt_after(seconds: float) -> Any:
    import signal

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    return old


def _restore(old: Any) -> None:
    import signal

    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("on_interrupt", ["kill", "finish"])
def test_ctrl_c_in_a_sync_call(make_orbit: Callable[..., Any], tmp_path: Any,
                               on_interrupt: str) -> None:
    mark = tmp_path / "finished"

    @make_orbit(on_interrupt=on_interrupt)
    def task(x: Any, delay: float = 0.0, mark: str = "") -> Any:
        time.sleep(delay)
        if mark:
            open(mark, "w").close()
        return x

    assert task(0) == 0
    pid = task.orbit.pid
    old = _interrupt_after(0.3)
    try:
        with pytest.raises(KeyboardInterrupt):
            task(1, 2.0 if on_interrupt == "finish" else 30, str(mark))
    finally:
        _restore(old)
    assert task(2) == 2  # runs after the interrupted call, or on a new orbit
    if on_interrupt == "kill":
        assert task.orbit.pid != pid and not mark.exists()
        assert task.orbit.stats()["cancelled"] == 1
    else:
        assert task.orbit.pid == pid and mark.exists()


def test_asyncio_cancellation_kills_the_running_call(sleeper: Any, tmp_path: Any) -> None:
    import asyncio

    mark = tmp_path / "finished"
    fut = sleeper.call_async(1, 30, str(mark))
    started(fut)

    async def main() -> None:
        task = asyncio.ensure_future(asyncio.wrap_future(fut))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.05)  # the cancel reaches the orbit future
        # later calls are not held up by the abandoned one
        assert await asyncio.wait_for(asyncio.wrap_future(sleeper.call_async(2)), 15) == 2

    asyncio.run(main())
    assert fut.cancelled() and not mark.exists()


# ------------------------------------------------------ per-call timeouts

def test_per_call_timeout(sleeper: Any, new_arena: Callable[..., orbitpy.Arena]) -> None:
    start = time.monotonic()
    with pytest.raises(orbitpy.OrbitTimeout) as e:
        sleeper.with_options(timeout=0.3)(1, 30)
    assert "timeout of 0.3 s" in str(e.value)
    assert time.monotonic() - start < 15
    buf = new_arena(1 << 20).buffer(16)
    fut = sleeper.call_async_ex((2, 30), timeout=0.3)
    behind = sleeper.call_async(3)  # arguments only: it runs on the next orbit
    with_arena = sleeper.call_async(buf)  # its snapshot goes with the killed orbit
    with pytest.raises(orbitpy.OrbitTimeout):
        fut.result(timeout=15)
    assert behind.result(timeout=15) == 3
    with pytest.raises(orbitpy.OrbitAborted) as a:
        with_arena.result(timeout=15)
    assert a.value.reason == "timeout"
    assert "because an earlier call overran its timeout" in str(a.value)
    assert "signal" not in str(a.value)
    assert sleeper.with_options(timeout=10).call_async(4, 0.2).result(timeout=15) == 4
    st = sleeper.orbit.stats()
    assert (st["timeouts"], st["failed"], st["crashes"]) == (2, 3, 0)
    del buf, with_arena, a


def test_per_call_options_are_checked(sleeper: Any) -> None:
    with pytest.raises(ValueError):
        sleeper.with_options(timeout=0)
    with pytest.raises(ValueError):
        sleeper.call_async_ex((1,), timeout=-1)
    with pytest.raises(ValueError):
        sleeper.with_options(on_interrupt="later")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        orbitpy.orbit(on_interrupt="later")  # type: ignore[call-overload]


def test_orbit_timeout_is_not_a_timeout_error() -> None:
    assert issubclass(orbitpy.OrbitTimeout, orbitpy.OrbitError)
    assert not issubclass(orbitpy.OrbitTimeout, TimeoutError)
    assert issubclass(orbitpy.OrbitAborted, orbitpy.OrbitCrashed)
