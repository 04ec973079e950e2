"""asyncio-native calls: ``await fn.acall(...)`` and ``call.aupdates()``.

The call is issued where it is cheap (on the event loop's thread) and its
answer is awaited where waiting costs nothing: the orbit's dispatcher thread
sleeps in the C core (GIL released) until the call ends, then hands the
outcome to the loop with ``call_soon_threadsafe``; decoding happens on the
loop.  Nothing blocks the loop and no ``concurrent.futures.Future`` or
``asyncio.wrap_future`` sits in between.

A call that must start the orbit process (the first call, the first after a
restart or a crash) forks and copies every arena page into the new orbit
(~0.1 s with 200k arena objects): that one is issued by a worker thread, so
the loop keeps running wherever that work lets the GIL go.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import _core, _pickle

if TYPE_CHECKING:
    from ._orbit import OnInterrupt, OrbitHandle

R = TypeVar("R")


class AsyncOrbitFuture(asyncio.Future, Generic[R]):  # type: ignore[type-arg]
    """The pending result of ``fn.acall(...)``: an :class:`asyncio.Future`.

    ``await`` it for the result (or the orbit's exception).  Cancelling it
    -- directly, by cancelling the task awaiting it, or by an expiring
    ``asyncio.wait_for``/``asyncio.timeout`` -- cancels the call: a call still
    queued is skipped by the orbit; the call the orbit is running is killed
    (the orbit restarts) if its ``on_interrupt`` is ``"kill"``, or finishes
    with its result discarded if ``"finish"``.  ``aupdates()`` iterates over
    what the orbit pushes for the call.
    """

    def __init__(self, handle: OrbitHandle, timeout: float | None,
                 on_interrupt: OnInterrupt, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._handle = handle
        self._timeout = timeout
        self._on_interrupt = on_interrupt
        self._lock = threading.Lock()
        self._core_future: Any = None
        self._cancel_requested = False
        self._issued = threading.Event()  # set once issued, or once it never will be
        # For the orbit's call latency (orbitpy.metrics): from acall() to the
        # loop taking the answer, as a sync call counts from issuing to its return.
        self._started = time.perf_counter()

    # -- issuing (loop thread, or the issuer thread)

    def _issue(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._cancel_requested:
            self._issued.set()
            return
        try:
            cf = self._handle._submit(args, kwargs)
            if self._timeout is not None:
                cf.set_timeout(self._timeout)
        except Exception as e:  # the caller's await raises it
            self._issued.set()
            self._post(self._fail, e)
            return
        except BaseException:  # KeyboardInterrupt on the loop's thread: not the call's
            self._issued.set()
            raise
        with self._lock:
            self._core_future = cf
            cancelled = self._cancel_requested
        self._issued.set()
        if cancelled:
            self._cancel_core(cf)
        self._handle._dispatch(self)

    def _post(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self.get_loop().call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the loop is closed: nobody awaits the call any more

    # -- settling (the dispatcher thread waits, the loop settles)

    def _resolve(self, timeout: float | None) -> None:
        """Called by the orbit's dispatcher thread: wait for the call's end
        (GIL released) and hand the outcome to the loop."""
        try:
            ret, data = self._core_future.wait(None)
        except _core.CoreError as e:
            self._post(self._settle_error, e)
        except BaseException as e:  # noqa: BLE001
            self._post(self._fail, e)
        else:
            self._post(self._settle, ret, data)

    def _settle(self, ret: int, data: bytes) -> None:
        if self.done():
            return  # cancelled while it ran to the end ("finish"): discarded
        self._handle.latency.observe(time.perf_counter() - self._started)
        try:
            value = self._handle._decode(ret, data)
        except BaseException as e:  # noqa: BLE001 - the orbit's exception
            super().set_exception(e)
        else:
            super().set_result(value)

    def _settle_error(self, e: Any) -> None:
        if self.done():
            return
        if e.code == _core.E_CANCELLED:  # a later call's cancel_queued
            super().cancel()
        else:  # a crash, a timeout: the failed call counts in the latency too
            self._handle.latency.observe(time.perf_counter() - self._started)
            super().set_exception(self._handle._error(e, self._timeout))

    def _fail(self, e: BaseException) -> None:
        if not self.done():
            super().set_exception(e)

    # -- cancelling

    def _cancel_core(self, cf: Any) -> None:
        try:
            cf.cancel(self._on_interrupt == "kill")
        except _core.CoreError:
            pass  # the orbit is gone or closed: nothing runs the call

    def cancel(self, msg: Any = None) -> bool:
        """Cancel the call (see the class doc); True unless it had ended."""
        if self.done():
            return False
        with self._lock:
            self._cancel_requested = True
            cf = self._core_future
        if cf is not None:
            self._cancel_core(cf)
        return super().cancel(msg)

    # -- updates

    async def aupdates(self) -> AsyncIterator[Any]:
        """Yield what the orbit pushes for this call (``orbitpy.push``), in
        order, as it arrives; ends when the call has ended and every update
        was yielded (the call's outcome is what awaiting this future gives)."""
        loop = self.get_loop()
        items: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue()

        def pull() -> None:  # a thread: waits in the core with the GIL released
            self._issued.wait()
            cf = self._core_future
            while cf is not None:
                try:
                    more, data = cf.pull(None)
                except BaseException:  # noqa: BLE001 - the call failed: its result says why
                    break
                if not more:
                    break
                try:
                    loop.call_soon_threadsafe(items.put_nowait, (True, data))
                except RuntimeError:
                    return
            try:
                loop.call_soon_threadsafe(items.put_nowait, (False, None))
            except RuntimeError:
                pass

        threading.Thread(target=pull, name="orbitpy-aupdates", daemon=True).start()
        while True:
            more, data = await items.get()
            if not more:
                return
            yield _pickle.loads(data)


# Calls that must start the orbit process are issued here, in order, so the
# fork and the full copy do not run on an event loop's thread.
_issuer_queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
_issuer: threading.Thread | None = None
_issuer_lock = threading.Lock()
_issuing: dict[int, int] = {}  # id(handle) -> calls waiting in the issuer


def _run_issuer() -> None:
    while True:
        fut, args, kwargs = _issuer_queue.get()
        try:
            fut._issue(args, kwargs)
        except BaseException as e:  # noqa: BLE001 - the issuer must live on
            fut._post(fut._fail, e)
        finally:
            with _issuer_lock:
                key = id(fut._handle)
                _issuing[key] -= 1
                if not _issuing[key]:
                    del _issuing[key]
        del fut, args, kwargs


def _reset_after_fork() -> None:
    global _issuer, _issuer_queue
    _issuer, _issuer_queue = None, queue.SimpleQueue()
    _issuing.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


def _needs_process(handle: OrbitHandle) -> bool:
    """Will the next call start an orbit process (fork + copy of every arena page)?"""
    core = handle._core
    return core is None or core.closed or core.pid == 0


def acall(handle: OrbitHandle, args: tuple[Any, ...], kwargs: dict[str, Any],
          timeout: float | None = None,
          on_interrupt: OnInterrupt | None = None) -> AsyncOrbitFuture[Any]:
    """Issue a call for a running event loop; see OrbitFunction.acall."""
    global _issuer
    loop = asyncio.get_running_loop()
    fut: AsyncOrbitFuture[Any] = AsyncOrbitFuture(handle, timeout,
                                                  on_interrupt or handle._on_interrupt, loop)
    key = id(handle)
    with _issuer_lock:
        # Behind a call still waiting in the issuer, a call must wait too:
        # calls are issued in the order they were made.
        offload = key in _issuing or _needs_process(handle)
        if offload:
            _issuing[key] = _issuing.get(key, 0) + 1
            if _issuer is None or not _issuer.is_alive():
                _issuer = threading.Thread(target=_run_issuer, name="orbitpy-aio-issuer",
                                           daemon=True)
                _issuer.start()
            _issuer_queue.put((fut, args, kwargs))
    if not offload:
        fut._issue(args, kwargs)
    return fut
