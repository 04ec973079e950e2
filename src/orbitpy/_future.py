"""The future of an orbit call (`OrbitFuture`) and the dispatcher thread
that settles the futures nobody waits on (callbacks or waiters attached)."""

from __future__ import annotations

import concurrent.futures
import errno
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from . import _core, _pickle

if TYPE_CHECKING:
    from ._orbit import OrbitHandle

R = TypeVar("R")
OnInterrupt = Literal["kill", "finish"]


class OrbitFuture(concurrent.futures.Future, Generic[R]):
    """The pending result of ``fn.call_async(...)``.

    A :class:`concurrent.futures.Future` (so ``asyncio.wrap_future``,
    ``concurrent.futures.wait`` and callbacks work).  ``cancel()`` cancels a
    call still queued behind another (the orbit skips it); the call the orbit
    may be running is ended by killing the orbit process unless the call was
    made with ``on_interrupt="finish"`` (then ``cancel()`` returns False, as
    for a running ``concurrent.futures`` call).  Cancelling an
    ``asyncio.wrap_future()`` of it does the same.  ``result(timeout=...)``
    expiring raises :class:`TimeoutError` and leaves the call running.

    Resolution is lazy: ``result()``, ``exception()`` and ``done()`` read the
    orbit's answer in the calling thread (no hand-off between threads).  Only
    when something must be told without asking -- a done callback, or a
    ``concurrent.futures.wait``/``as_completed`` waiter -- does the orbit's
    dispatcher thread take the future over.
    """

    def __init__(self, core: Any, handle: OrbitHandle, timeout: float | None = None,
                 on_interrupt: OnInterrupt = "kill") -> None:
        self._dispatched = True  # no hand-off while Future.__init__ runs
        super().__init__()
        self.set_running_or_notify_cancel()
        self._core = core
        self._handle = handle
        self._timeout = timeout
        self._on_interrupt = on_interrupt
        self._resolve_lock = threading.Lock()
        self._issued = time.perf_counter()  # for handle.latency; see call_async
        self._dispatched = False

    # Waiters of concurrent.futures.wait()/as_completed() are appended to
    # _waiters directly: a future with waiters must resolve by itself.
    @property
    def _waiters(self) -> list[Any]:
        if not self._dispatched and self._state == "RUNNING":
            self._dispatch()
        return self.__dict__["_waiters_list"]

    @_waiters.setter
    def _waiters(self, value: list[Any]) -> None:
        self.__dict__["_waiters_list"] = value

    def _dispatch(self) -> None:
        self._dispatched = True
        self._handle._dispatch(self)

    def _resolve(self, timeout: float | None) -> None:
        """Wait (up to timeout) for the orbit's answer and settle the future."""
        if self._state != "RUNNING":
            return
        if timeout is None:
            got = self._resolve_lock.acquire()
        elif timeout <= 0:
            got = self._resolve_lock.acquire(blocking=False)
        else:
            got = self._resolve_lock.acquire(timeout=timeout)
        if not got:
            # Another thread is waiting for the answer: it will settle it.
            if not super().done():
                raise TimeoutError("the orbit call is still running")
            return
        try:
            self._settle(timeout)
        finally:
            self._resolve_lock.release()

    def _settle(self, timeout: float | None) -> None:
        if self._state == "RUNNING":
            try:
                ret, data = self._core.wait(timeout)
            except _core.CoreError as e:
                if e.code == _core.E_CANCELLED:  # cancel(), or cancel_queued
                    self._mark_cancelled()
                else:
                    self._finish(None, self._handle._error(e, self._timeout))
                return
            try:
                value = self._handle._decode(ret, data)
            except BaseException as e:  # noqa: BLE001 - the orbit's exception
                self._finish(None, e)
            else:
                self._finish(value, None)

    def _finish(self, value: Any, exc: BaseException | None) -> None:
        self._handle.latency.observe(time.perf_counter() - self._issued)
        try:
            if exc is not None:
                self.set_exception(exc)
            else:
                self.set_result(value)
        except concurrent.futures.InvalidStateError:
            pass  # cancel() from another thread got there first

    def _mark_cancelled(self) -> bool:
        """Settle the future as cancelled (the core has cancelled the call)."""
        with self._condition:
            if self._state == "FINISHED":
                return False
            if self._state == "RUNNING":
                self._state = "CANCELLED_AND_NOTIFIED"
                for waiter in self.__dict__.get("_waiters_list", ()):
                    waiter.add_cancelled(self)
                self._condition.notify_all()
            else:
                return True
        self._invoke_callbacks()  # type: ignore[attr-defined]
        return True

    def cancel(self) -> bool:
        """Cancel the call; True if it is cancelled (``cancelled()`` then
        holds and ``result()`` raises CancelledError).  A queued call is
        skipped by the orbit.  The call the orbit may be running is ended by
        killing (and restarting) the orbit, unless it was made with
        ``on_interrupt="finish"``: then it is left to finish and this returns
        False.  False too once the call has finished."""
        if self._state != "RUNNING":
            return self._state != "FINISHED"
        if self._handle._inherited():
            return False  # an inherited future: its orbit is not ours
        if not self._core.cancel(self._on_interrupt == "kill"):
            return super().cancelled()
        return self._mark_cancelled()

    def cancelled(self) -> bool:
        if self._state == "RUNNING":
            self.done()  # a cancel_queued from a later call may have ended it
        return super().cancelled()

    def done(self) -> bool:
        if self._state == "RUNNING":
            try:
                self._resolve(0)  # take what the orbit has sent, never wait
            except TimeoutError:
                return False
        return super().done()

    def running(self) -> bool:
        return not self.done()

    def result(self, timeout: float | None = None) -> R:
        self._resolve(timeout)
        return super().result(0)  # type: ignore[no-any-return]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._resolve(timeout)
        return super().exception(0)

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[Any]], object]) -> None:
        super().add_done_callback(fn)
        if not self._dispatched and self._state == "RUNNING":
            self._dispatch()

    def updates(self, timeout: float | None = None) -> Iterator[Any]:
        """Yield the updates the orbit pushed for this call, in order, as they
        arrive; stops when the call has ended and all were yielded.
        `timeout` bounds the wait for each update (TimeoutError)."""
        while True:
            try:
                more, data = self._core.pull(timeout)
            except _core.CoreError as e:
                if e.code == errno.ECHILD:
                    raise self._handle._error(e) from None
                return  # the call failed; result() tells why
            if not more:
                return
            yield _pickle.loads(data)



class Dispatcher:
    """An orbit's dispatcher thread: settles the futures handed to it, in
    order, as soon as the orbit answers.  Started on first use."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, fut: Any) -> None:
        """Have the thread settle `fut` (an OrbitFuture or AsyncOrbitFuture)."""
        self._ensure_thread()
        self._queue.put(fut)

    def stop(self) -> None:
        """End the thread once it has settled what it was handed."""
        if self._thread is not None:
            self._queue.put(None)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=_dispatch, args=(self._queue,),
                    name=f"orbitpy-dispatch-{self._name}", daemon=True)
                self._thread.start()


def _dispatch(q: queue.SimpleQueue[Any]) -> None:
    """Settle the futures handed over, in order.  The C core drops the GIL
    while this thread waits."""
    while True:
        fut = q.get()
        if fut is None:
            return
        try:
            fut._resolve(None)
        except BaseException:  # noqa: BLE001 - never let the dispatcher die
            pass
        del fut
