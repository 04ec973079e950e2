"""OrbitFuture behaves as a concurrent.futures.Future, however it is waited for."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import orbitpy


@pytest.fixture
def slow_echo(make_orbit: Callable[..., Any]) -> Any:
    @make_orbit
    def echo(x: Any, delay: float = 0.0) -> Any:
        time.sleep(delay)
        return x

    return echo


def test_result_and_done(slow_echo: Any) -> None:
    fut = slow_echo.call_async(1, 0.2)
    assert isinstance(fut, cf.Future) and isinstance(fut, orbitpy.OrbitFuture)
    assert not fut.done() and fut.running()
    with pytest.raises(TimeoutError):
        fut.result(timeout=0.01)
    assert fut.result(timeout=5) == 1
    assert fut.done() and not fut.running() and fut.exception() is None
    assert not fut.cancel()


def test_done_polling_settles_without_blocking(slow_echo: Any) -> None:
    fut = slow_echo.call_async("x", 0.05)
    deadline = time.monotonic() + 5
    polls = 0
    while not fut.done():
        polls += 1
        assert time.monotonic() < deadline
    assert polls > 0 and fut.result() == "x"


def test_callbacks_fire_without_anyone_waiting(slow_echo: Any) -> None:
    seen = threading.Event()
    got: list[Any] = []
    fut = slow_echo.call_async(7, 0.05)
    fut.add_done_callback(lambda f: (got.append(f.result()), seen.set()))
    assert seen.wait(5) and got == [7]
    late: list[Any] = []
    fut.add_done_callback(lambda f: late.append(f.result()))  # already done: runs now
    assert late == [7]


def test_concurrent_futures_wait_and_as_completed(slow_echo: Any) -> None:
    futs = [slow_echo.call_async(i, 0.01) for i in range(5)]
    done, pending = cf.wait(futs, timeout=10)
    assert not pending and sorted(f.result() for f in done) == list(range(5))
    futs = [slow_echo.call_async(i, 0.01) for i in range(5)]
    assert sorted(f.result() for f in cf.as_completed(futs, timeout=10)) == list(range(5))
    futs = [slow_echo.call_async(i) for i in range(3)]
    done, _ = cf.wait(futs, timeout=10, return_when=cf.FIRST_COMPLETED)
    assert done


def test_asyncio_wrap_future(slow_echo: Any) -> None:
    async def main() -> list[Any]:
        futs = [asyncio.wrap_future(slow_echo.call_async(i, 0.01)) for i in range(4)]
        return list(await asyncio.gather(*futs))

    assert asyncio.run(main()) == [0, 1, 2, 3]


def test_many_threads_wait_on_one_future(slow_echo: Any) -> None:
    fut = slow_echo.call_async("shared", 0.1)
    results: list[Any] = []

    def waiter() -> None:
        results.append(fut.result(timeout=10))

    threads = [threading.Thread(target=waiter) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == ["shared"] * 6


def test_exception_and_crash_through_every_path(make_orbit: Callable[..., Any]) -> None:
    @make_orbit
    def boom(kind: str) -> None:
        if kind == "raise":
            raise KeyError("k")
        import os

        os._exit(5)

    f1 = boom.call_async("raise")
    assert isinstance(f1.exception(timeout=10), KeyError)
    f2 = boom.call_async("crash")
    got: list[BaseException | None] = []
    ev = threading.Event()
    f2.add_done_callback(lambda f: (got.append(f.exception()), ev.set()))
    assert ev.wait(10)
    assert isinstance(got[0], orbitpy.OrbitCrashed) and got[0].exitcode == 5


def test_signal_handler_interrupts_a_sync_wait(make_orbit: Callable[..., Any]) -> None:
    import signal

    class Interrupted(Exception):
        pass

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted

    @make_orbit
    def slow(x: int) -> int:
        time.sleep(0.5 if x else 0)
        return x

    assert slow(0) == 0  # the orbit is started before the alarm: a fork under load is slow
    old = signal.signal(signal.SIGALRM, handler)
    try:
        t0 = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(Interrupted):
            slow(1)
        assert time.monotonic() - t0 < 0.45  # the wait ended at the signal
        assert slow(2) == 2  # the orbit goes on; the abandoned call finished first
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_skip_if_busy_and_cancel_queued(make_orbit: Callable[..., Any]) -> None:
    @make_orbit
    def task(x: Any, delay: float = 0.0) -> Any:
        orbitpy.push("started")
        time.sleep(delay)
        return x

    first = task.call_async("first", 0.3)
    assert next(first.updates(timeout=10)) == "started"  # it runs now
    with pytest.raises(orbitpy.OrbitBusy):
        task.call_async_ex(("skipped",), skip_if_busy=True)
    queued = [task.call_async(i) for i in range(3)]
    last = task.call_async_ex(("last",), cancel_queued=True)
    assert first.result(timeout=10) == "first"  # already running: not cancelled
    for f in queued:
        with pytest.raises(cf.CancelledError):
            f.result(timeout=10)
    assert last.result(timeout=10) == "last"
    assert task.call_async_ex(("idle",), skip_if_busy=True).result(timeout=10) == "idle"
