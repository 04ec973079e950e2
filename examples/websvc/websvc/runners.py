"""Where the auxiliary tasks run: in orbits (``--tasks=orbit``) or in threads
of the service (``--tasks=thread``), behind one interface, so the two can be
compared under the same load."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orbitpy

Task = Callable[..., Iterator[Any]]


@dataclass
class TaskStatus:
    runs: int = 0
    failures: int = 0
    last_error: str = ""
    last_ok: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _push_reports(task: Task) -> Callable[..., int]:
    """The orbit side: run the task, send each report back with orbitpy.push."""
    def run_and_push(*args: Any, **kwargs: Any) -> int:
        n = 0
        for report in task(*args, **kwargs):
            orbitpy.push(report)
            n += 1
        return n
    run_and_push.__qualname__ = f"push_reports({task.__name__})"
    return run_and_push


async def _await_orbit(fn: orbitpy.OrbitFunction[..., int], *args: Any,
                       **kwargs: Any) -> list[Any]:
    """Run fn in its orbit without blocking the event loop; its pushed reports.
    ``fn.acall`` issues the call, and takes the call's snapshot, right here,
    synchronously, in the loop's thread: no request handler runs meanwhile,
    so the tables are as the handlers left them between two requests' steps.
    A call that must start the orbit process (the first, the first after a
    crash) orbitpy issues from a thread of its own, so that the fork does not
    stall the loop: that snapshot is consistent only between two bytecodes
    of the handlers (which is why the metrics task skips ring records newer
    than the `head` it was given).  Cancelling the awaiting task (the service
    stopping) cancels the call, killing the orbit if it runs."""
    call = fn.acall(*args, **kwargs)
    await call
    return [report async for report in call.aupdates()]  # the call has ended: all are there


class OrbitRunner:
    mode = "orbit"

    def __init__(self, tasks: dict[str, Task], timeout: float = 5.0,
                 memory_limit: int | None = None) -> None:
        self.status = {name: TaskStatus() for name in tasks}
        self.orbits = {name: orbitpy.orbit(_push_reports(task), name=f"websvc-{name}",
                                           timeout=timeout, memory_limit=memory_limit)
                       for name, task in tasks.items()}

    async def run(self, name: str, *args: Any, **kwargs: Any) -> list[Any]:
        return await _await_orbit(self.orbits[name], *args, **kwargs)

    def describe(self, name: str) -> dict[str, Any]:
        st = self.orbits[name].orbit.stats()
        return {key: st[key] for key in ("pid", "calls", "failed", "restarts", "crashes",
                                         "timeouts", "pages_copied", "bytes_synced")}

    def close(self) -> None:
        for fn in self.orbits.values():
            fn.orbit.close()


def _copied(value: Any) -> Any:
    """A shallow copy of a table, made in the loop's thread: the task's thread
    must not iterate over a dict the handlers change meanwhile."""
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


class ThreadRunner:
    mode = "thread"

    def __init__(self, tasks: dict[str, Task], timeout: float = 5.0) -> None:
        self.status = {name: TaskStatus() for name in tasks}
        self.tasks = tasks
        self.timeout = timeout
        self.pools = {name: concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"websvc-{name}") for name in tasks}

    async def run(self, name: str, *args: Any, **kwargs: Any) -> list[Any]:
        loop = asyncio.get_running_loop()
        call = functools.partial(lambda *a, **k: list(self.tasks[name](*a, **k)),
                                 *map(_copied, args), **kwargs)
        # A hung task thread cannot be killed: the run is abandoned, and the
        # task's next runs queue behind it.
        return await asyncio.wait_for(loop.run_in_executor(self.pools[name], call),
                                      self.timeout)

    def describe(self, name: str) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        for pool in self.pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


Runner = OrbitRunner | ThreadRunner


def make_runner(mode: str, tasks: dict[str, Task], timeout: float = 5.0,
                memory_limit: int | None = None) -> Runner:
    """memory_limit: bytes each task orbit may take (threads have no limit)."""
    if mode == "orbit":
        return OrbitRunner(tasks, timeout, memory_limit)
    return ThreadRunner(tasks, timeout)


def note_ok(status: TaskStatus) -> None:
    status.runs += 1
    status.last_ok = time.time()


def note_failure(status: TaskStatus, e: BaseException) -> None:
    status.runs += 1
    status.failures += 1
    status.last_error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
