"""asyncio: fn.acall(), aupdates(), cancellation, and arena scopes in tasks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import orbitpy

pytestmark = pytest.mark.timeout(60)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture
def task(make_orbit: Callable[..., Any]) -> Any:
    @make_orbit
    def work(x: Any, delay: float = 0.0, marker: str = "", pushes: int = 0) -> Any:
        for i in range(pushes):
            orbitpy.push(i)
        time.sleep(delay)
        if marker:
            with open(marker, "w") as f:
                f.write("ran")
        if x == "boom":
            raise ValueError("boom from the orbit")
        return x

    return work


class Ticker:
    """A task that counts its wake-ups while it runs (other tasks progress)."""

    def __init__(self) -> None:
        self.ticks = 0
        self._stop = False

    async def run(self) -> None:
        while not self._stop:
            await asyncio.sleep(0.005)
            self.ticks += 1

    def stop(self) -> None:
        self._stop = True


# ------------------------------------------------------------------ acall


def test_acall_returns_result_and_raises_orbit_exception(task: Any) -> None:
    async def main() -> None:
        fut = task.acall(21)
        assert isinstance(fut, asyncio.Future) and isinstance(fut, orbitpy.AsyncOrbitFuture)
        assert await fut == 21
        assert await task.with_options(timeout=5).acall([1, 2]) == [1, 2]
        with pytest.raises(ValueError, match="boom from the orbit") as ei:
            await task.acall("boom")
        assert isinstance(ei.value.__cause__, orbitpy.RemoteTraceback)

    run(main())


def test_acall_per_call_timeout(task: Any) -> None:
    async def main() -> None:
        with pytest.raises(orbitpy.OrbitTimeout):
            await task.with_options(timeout=0.2).acall(1, 30)
        assert await task.acall(2) == 2  # restarted

    run(main())


def test_acall_argument_error_comes_out_of_await(task: Any) -> None:
    async def main() -> None:
        await task.acall(0)
        fut = task.acall(threading.Lock())  # cannot be pickled
        with pytest.raises(TypeError, match="cannot send the arguments"):
            await fut

    run(main())


def test_aupdates_yields_pushed_values_then_result(task: Any) -> None:
    async def main() -> None:
        call = task.acall("done", 0.05, pushes=4)
        got = [u async for u in call.aupdates()]
        assert got == [0, 1, 2, 3]
        assert await call == "done"

    run(main())


def test_loop_runs_while_a_call_runs(task: Any) -> None:
    async def main() -> None:
        await task.acall(0)
        ticker = Ticker()
        t = asyncio.create_task(ticker.run())
        assert await task.acall(1, 0.3) == 1
        ticker.stop()
        await t
        assert ticker.ticks >= 5  # a sync call would have let it tick at most once

    run(main())


def test_call_that_starts_the_orbit_is_issued_off_the_loop_thread(task: Any) -> None:
    """The first call (and the first after a restart) forks the orbit and
    copies every arena page: it is issued by a worker thread, later calls
    on the loop's thread."""
    where: list[str] = []
    handle = task.orbit
    submit = handle._submit

    def recording_submit(*a: Any, **k: Any) -> Any:
        where.append(threading.current_thread().name)
        return submit(*a, **k)

    handle._submit = recording_submit

    async def main() -> None:
        loop_thread = threading.current_thread().name
        assert await task.acall(1) == 1
        assert await task.acall(2) == 2
        handle.restart()
        first, second = task.acall(3), task.acall(4)  # the second waits its turn
        assert (await first, await second) == (3, 4)
        assert where[0] != loop_thread and where[1] == loop_thread
        assert where[2] != loop_thread and where[3] != loop_thread

    run(main())


# ------------------------------------------------------------ cancellation


def test_cancelling_a_queued_call_skips_it(task: Any, tmp_path: Path) -> None:
    marker = tmp_path / "queued-ran"

    async def main() -> None:
        await task.acall(0)
        running = task.acall("first", 0.5)
        queued = asyncio.ensure_future(task.acall("second", 0, str(marker)))
        await asyncio.sleep(0.05)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert await running == "first"  # the running call was left alone
        assert await task.acall("after") == "after"

    run(main())
    assert not marker.exists()
    assert task.orbit.stats()["restarts"] == 0


def test_cancelling_a_running_call_kills_the_orbit(task: Any, tmp_path: Path) -> None:
    marker = tmp_path / "killed-ran"

    async def main() -> None:
        await task.acall(0)
        pid = task.orbit.pid
        call = asyncio.ensure_future(task.acall(1, 30, str(marker)))
        await asyncio.sleep(0.3)
        t = time.monotonic()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert time.monotonic() - t < 10
        assert await task.acall("next") == "next"
        assert task.orbit.pid != pid

    run(main())
    assert not marker.exists()
    assert task.orbit.stats()["cancelled"] == 1


def test_cancelling_a_running_finish_call_lets_it_finish(task: Any, tmp_path: Path) -> None:
    marker = tmp_path / "finished"

    async def main() -> None:
        await task.acall(0)
        pid = task.orbit.pid
        call = asyncio.ensure_future(
            task.with_options(on_interrupt="finish").acall(1, 0.4, str(marker)))
        await asyncio.sleep(0.1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call  # at once: the result will be discarded
        assert not marker.exists()
        assert await task.acall("next") == "next"  # runs after the finished call
        assert marker.exists() and task.orbit.pid == pid

    run(main())


def test_wait_for_timeout_cancels_like_cancel(task: Any, tmp_path: Path) -> None:
    marker = tmp_path / "timed-out-ran"

    async def main() -> None:
        await task.acall(0)
        pid = task.orbit.pid
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(task.acall(1, 30, str(marker)), 0.3)
        assert await task.acall("next") == "next"
        assert task.orbit.pid != pid
        pid = task.orbit.pid
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(
                task.with_options(on_interrupt="finish").acall(2, 0.5, str(marker)), 0.1)
        assert await task.acall("again") == "again"
        assert marker.exists() and task.orbit.pid == pid

    run(main())


# ------------------------------------------------- arena scopes and tasks


@pytest.fixture
def arena() -> Any:
    a = orbitpy.arena(16 << 20)
    yield a


def test_with_arena_held_across_an_await_raises_naming_the_block(arena: Any) -> None:
    leaked: list[Any] = []

    async def bystander() -> None:
        leaked.append(["made by another task"])

    async def holds_the_block() -> None:
        with arena:
            t = asyncio.create_task(bystander())
            await asyncio.sleep(0)  # the loop runs the bystander here
        await t

    async def main() -> None:
        with pytest.raises(orbitpy.OrbitError, match=r"held across an await") as ei:
            await holds_the_block()
        assert f"{__file__}:" in str(ei.value) and "holds_the_block" in str(ei.value)
        assert "@arena.allocating" in str(ei.value)
        assert arena.contains(leaked[0])  # what the check is about
        assert not arena.contains([1])    # the scope was left all the same

    run(main())


def test_with_arena_not_spanning_a_suspension_is_fine(arena: Any) -> None:
    async def done() -> int:
        return 1

    async def main() -> list[Any]:
        with arena:
            x = [await done()]  # awaits, but never suspends: no other task ran
        await asyncio.sleep(0)
        with arena:
            y = [2]
        return [x, y]

    x, y = run(main())
    assert arena.contains(x) and arena.contains(y)


def test_blocks_sharing_one_pending_sentinel_each_see_a_suspension(arena: Any) -> None:
    """The loop's sentinel is shared by every block entered before it runs
    (a server enters thousands per loop iteration): a block entered after
    others in the same callback, and one entered after the sentinel ran,
    are each still caught spanning an await, and short blocks in between
    are not."""
    leaked: list[Any] = []

    async def bystander() -> None:
        leaked.append(["made by another task"])

    async def spans_an_await() -> None:
        with pytest.raises(orbitpy.OrbitError, match=r"held across an await"):
            with arena:
                t = asyncio.create_task(bystander())
                await asyncio.sleep(0)
        await t

    async def main() -> None:
        for _ in range(100):  # many short blocks first: one pending sentinel
            with arena:
                pass
        await spans_an_await()
        await asyncio.sleep(0)  # the sentinel has run; the next block arms another
        with arena:
            pass
        await spans_an_await()

    run(main())
    assert len(leaked) == 2


def test_cancelled_inside_with_arena_warns_and_keeps_the_cancellation(arena: Any) -> None:
    async def holds_the_block() -> None:
        with arena:
            await asyncio.sleep(10)

    async def main() -> None:
        t = asyncio.create_task(holds_the_block())
        await asyncio.sleep(0.01)
        t.cancel()
        with pytest.warns(RuntimeWarning, match="held across an await"):
            with pytest.raises(asyncio.CancelledError):
                await t
        assert not arena.contains([1])

    run(main())


def test_interleaved_blocks_of_two_tasks_are_both_reported(arena: Any) -> None:
    other = orbitpy.arena(16 << 20)
    errors: list[BaseException] = []

    async def holder(a: Any, entered: asyncio.Event, go: asyncio.Event) -> None:
        try:
            with a:
                entered.set()
                await go.wait()
        except orbitpy.OrbitError as e:
            errors.append(e)

    async def main() -> None:
        in1, in2, go = asyncio.Event(), asyncio.Event(), asyncio.Event()
        t1 = asyncio.create_task(holder(arena, in1, go))
        await in1.wait()
        t2 = asyncio.create_task(holder(other, in2, go))
        await in2.wait()
        go.set()  # t1 leaves its block first, while t2's (entered later) is open
        await asyncio.gather(t1, t2)

    run(main())
    assert len(errors) == 2
    x = [1]
    assert not arena.contains(x) and not other.contains(x)


def test_allocating_coroutine_scope_follows_the_task(arena: Any) -> None:
    inside: list[Any] = []
    outside: list[Any] = []

    @arena.allocating
    async def handler(n: int) -> dict[str, Any]:
        for i in range(n):
            inside.append([i])
            await asyncio.sleep(0.001)
        return {"made": "inside"}

    async def unrelated(n: int) -> None:
        for i in range(n):
            outside.append([i])
            await asyncio.sleep(0.001)

    async def main() -> Any:
        result, _ = await asyncio.gather(handler(20), unrelated(20))
        return result

    result = run(main())
    assert len(inside) == len(outside) == 20
    assert all(arena.contains(x) for x in inside)
    assert not any(arena.contains(x) for x in outside)
    assert arena.contains(result)
    assert not arena.contains([1])


def test_allocating_coroutine_gets_exceptions_and_cancellation(arena: Any) -> None:
    caught: list[Any] = []

    @arena.allocating
    async def handler() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            caught.append(["cleanup"])
            raise

    @arena.allocating
    async def failing() -> None:
        await asyncio.sleep(0)
        raise KeyError("k")

    async def main() -> None:
        t = asyncio.create_task(handler())
        await asyncio.sleep(0.01)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        with pytest.raises(KeyError):
            await failing()

    run(main())
    assert arena.contains(caught[0])
    assert not arena.contains([1])


def test_allocating_plain_function_and_generator(arena: Any) -> None:
    @arena.allocating
    def make(n: int) -> list[int]:
        return list(range(n))

    @arena.allocating
    def gen(n: int) -> Any:
        for i in range(n):
            yield [i]
        return "end"

    assert make.__name__ == "make" and arena.contains(make(3))
    between = []
    for item in gen(3):
        assert arena.contains(item)
        between.append([0])  # the consumer's own objects are not in the arena
    assert not any(arena.contains(x) for x in between)
    with pytest.raises(TypeError, match="async generators"):
        @arena.allocating
        async def agen() -> Any:
            yield 1
