"""Orbit functions: the decorator, the handle, futures and the dispatcher."""

from __future__ import annotations

import atexit
import concurrent.futures
import errno
import functools
import gc
import os
import queue
import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, ParamSpec, TypeVar, overload

from . import _core, _objects, _pickle
from ._arena import Arena
from .errors import (
    EXIT_OUT_OF_MEMORY,
    OrbitBusy,
    OrbitClosed,
    OrbitCrashed,
    OrbitError,
    OrbitTimeout,
    RemoteTraceback,
    describe_status,
)

P = ParamSpec("P")
R = TypeVar("R")

_STATUS_OK, _STATUS_RAISED = 0, 1
_live_handles: weakref.WeakSet[OrbitHandle] = weakref.WeakSet()

# Bumped in every child forked from this process (no getpid() per call).
_fork_generation = 0


def _forked() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_forked)


# ------------------------------------------------------------ in the orbit

def in_orbit() -> bool:
    """True when running inside an orbit process."""
    return _core.in_orbit()


def push(obj: Any) -> None:
    """Inside an orbit: hand `obj` to main as an update of the current call
    (read with ``OrbitFuture.updates()``)."""
    if not _core.in_orbit():
        raise OrbitError("orbitpy.push() can only be called inside an orbit")
    _core.push(_pickle.dumps(obj))


def _run_in_orbit(fn: Callable[..., Any], arg: bytes) -> tuple[int, bytes]:
    """The orbit side of a call: runs in the orbit process."""
    try:
        if arg:
            args, kwargs = _pickle.loads_call(arg)
        else:
            args, kwargs = (), {}
        result = fn(*args, **kwargs)
        del args, kwargs
        try:
            return _STATUS_OK, (b"" if result is None else _pickle.dumps(result))
        except Exception as e:
            raise OrbitError(f"the result of {_name_of(fn)} could not be sent back: "
                             f"{type(e).__name__}: {e}") from None
    except BaseException as e:  # noqa: BLE001 - everything goes back to main
        if isinstance(e, MemoryError) or (isinstance(e, OSError) and e.errno == errno.ENOMEM):
            # Past its memory limit (mmap.mmap fails with ENOMEM) the orbit
            # cannot be trusted to go on; die with a status main recognises,
            # and let it restart.
            try:
                sys.stderr.write(f"orbitpy: orbit {_name_of(fn)} ran out of memory\n")
            finally:
                os._exit(EXIT_OUT_OF_MEMORY)
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        try:
            payload = _pickle.dumps((e, tb))
        except Exception:
            payload = _pickle.dumps((OrbitError(f"{type(e).__name__}: {e}"), tb))
        return _STATUS_RAISED, payload
    finally:
        # What the call leaves behind may point into this call's view of the
        # arenas (e.g. a __dict__ made for an arena object), which the next
        # call replaces: the collector must never walk it again.
        gc.freeze()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass


def _name_of(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


# ------------------------------------------------------------ in main

class OrbitFuture(concurrent.futures.Future, Generic[R]):
    """The pending result of ``fn.call_async(...)``.

    A :class:`concurrent.futures.Future` (so ``asyncio.wrap_future``,
    ``concurrent.futures.wait`` and callbacks work); the call is running from
    the moment it is issued, so it cannot be cancelled.

    Resolution is lazy: ``result()``, ``exception()`` and ``done()`` read the
    orbit's answer in the calling thread (no hand-off between threads).  Only
    when something must be told without asking -- a done callback, or a
    ``concurrent.futures.wait``/``as_completed`` waiter -- does the orbit's
    dispatcher thread take the future over.
    """

    def __init__(self, core: Any, handle: OrbitHandle) -> None:
        self._dispatched = True  # no hand-off while Future.__init__ runs
        super().__init__()
        self.set_running_or_notify_cancel()
        self._core = core
        self._handle = handle
        self._resolve_lock = threading.Lock()
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
                if e.code == _core.E_CANCELLED:
                    exc: BaseException = concurrent.futures.CancelledError(
                        "cancelled by a later call_async(..., cancel_queued=True)")
                else:
                    exc = self._handle._error(e)
                self.set_exception(exc)
                return
            try:
                value = self._handle._decode(ret, data)
            except BaseException as e:  # noqa: BLE001 - the orbit's exception
                self.set_exception(e)
            else:
                self.set_result(value)

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
            except _core.CoreError:
                return  # the call failed; result() tells why
            if not more:
                return
            yield _pickle.loads(data)


class OrbitHandle:
    """The orbit behind an orbit function: ``fn.orbit``."""

    def __init__(self, fn: Callable[..., Any], name: str, areas: tuple[Arena, ...],
                 timeout: float | None, restart: bool | int, nice: int | None,
                 memory_limit: int | None, cpus: Iterable[int] | None,
                 harden: bool = True) -> None:
        self._fn = fn
        self.name = name
        self._areas = list(areas)
        # core areas synced so far (for stats()['snapshot_mode'])
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet(a._area for a in areas)
        self._lock = threading.Lock()
        self._closed = False
        self._core: Any = None
        self._generation = _fork_generation
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._dispatcher: threading.Thread | None = None
        limit = 5 if restart is True else (int(restart) if restart else 0)
        cpu_mask = 0
        for c in cpus or ():
            cpu_mask |= 1 << c
        self._opts: dict[str, Any] = dict(
            timeout_ms=0 if timeout is None else max(1, int(timeout * 1000)),
            nice=nice or 0, cpu_mask=cpu_mask, memory_limit=memory_limit or 0,
            harden=bool(harden), restart=bool(restart), restart_limit=limit)
        _live_handles.add(self)

    # -- process

    def _orbit(self) -> Any:
        core = self._core
        if core is not None and self._generation != _fork_generation:
            # We are a process forked from the one that started the orbit
            # (multiprocessing, os.fork): that orbit is its, not ours.  Start
            # our own; the inherited handle is dropped without touching it.
            self._core = core = None
            self._queue = queue.SimpleQueue()
            self._dispatcher = None
        if core is None:
            with self._lock:
                if self._closed:
                    raise OrbitClosed(f"orbit {self.name!r} is closed")
                if self._core is None:
                    fn = self._fn
                    self._core = _core.Orbit(self.name,
                                             functools.partial(_run_in_orbit, fn),
                                             **self._opts)
                    self._generation = _fork_generation
                core = self._core
        return core

    @property
    def pid(self) -> int:
        """pid of the orbit process (0 before the first call or after a crash)."""
        return self._core.pid if self._core is not None else 0

    @property
    def closed(self) -> bool:
        return self._closed

    def restart(self) -> None:
        """Kill the orbit process now; calls in flight fail with OrbitCrashed and
        the next call starts a fresh process."""
        if self._closed:
            raise OrbitClosed(f"orbit {self.name!r} is closed")
        if self._core is not None:
            self._core.restart()

    def close(self) -> None:
        """Stop the orbit; pending calls fail with OrbitClosed.  Idempotent."""
        with self._lock:
            self._closed = True
            core, self._core = self._core, None
        if core is not None:
            core.close()
        if self._dispatcher is not None:
            self._queue.put(None)

    def stats(self) -> dict[str, Any]:
        """calls, pages_synced (= pages_copied + pages_reset), pages_copied,
        pages_reset, bytes_synced, restarts, crashes, full_syncs, snapshot_mode,
        pid."""
        if self._core is not None:
            st = self._core.stats()
        else:
            st = dict.fromkeys(("calls", "pages_copied", "pages_reset", "bytes_synced",
                                "restarts", "crashes", "full_syncs"), 0)
        st["pages_synced"] = st["pages_copied"] + st["pages_reset"]
        modes = {a.mode for a in self._seen if a.alive}
        st["snapshot_mode"] = modes.pop() if len(modes) == 1 else default_snapshot_mode()
        st["pid"] = self.pid
        return st

    # -- calls

    def _submit(self, args: tuple[Any, ...], kwargs: dict[str, Any], flags: int = 0) -> Any:
        if _core.in_orbit():
            raise OrbitError(f"orbit {self.name!r} cannot be called from inside an orbit")
        arenas = [a._area for a in self._areas]
        roots: dict[Any, list[Any]] | None = {} if _core.heap_in_use() else None
        prepare = None
        if args or kwargs:
            try:
                arg = _pickle.dumps_call(args, kwargs, arenas, roots)
            except Exception as e:
                raise TypeError(f"cannot send the arguments of {self.name!r} to its orbit: "
                                f"{type(e).__name__}: {e}") from e
            if roots:
                prepare = functools.partial(_objects.check_call, roots,
                                            self._arg_labels(args, kwargs))
        else:
            arg = b""
        if roots:
            # A call that passes arena objects maps every arena holding
            # objects: what the orbit reaches from them, and objects that
            # lived there when it was forked, must be readable.
            for h in _core.heap_areas():
                if h.area not in arenas:
                    arenas.append(h.area)
        live = [a for a in arenas if a.alive]
        for a in live:
            if a not in self._seen:
                self._seen.add(a)
        try:
            return self._orbit().call_async(arg, live, flags, prepare)
        except _core.CoreError as e:
            raise self._error(e) from None

    def _arg_labels(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[int, str]:
        """Names for the arguments in error messages: parameter names where
        the function's signature gives them."""
        code = getattr(self._fn, "__code__", None)
        names = code.co_varnames[:code.co_argcount] if code is not None else ()
        labels = {id(v): k for k, v in kwargs.items()}
        for i, a in enumerate(args):
            labels.setdefault(id(a), names[i] if i < len(names) else f"args[{i}]")
        return labels

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        core_future = self._submit(args, kwargs)
        try:
            ret, data = core_future.wait()
        except _core.CoreError as e:
            raise self._error(e) from None
        return self._decode(ret, data)

    def call_async(self, args: tuple[Any, ...], kwargs: dict[str, Any],
                   skip_if_busy: bool = False, cancel_queued: bool = False) -> OrbitFuture:
        flags = ((_core.CALL_SKIP_IF_BUSY if skip_if_busy else 0)
                 | (_core.CALL_CANCEL_QUEUED if cancel_queued else 0))
        core_future = self._submit(args, kwargs, flags)
        return OrbitFuture(core_future, self)

    def _dispatch(self, fut: OrbitFuture) -> None:
        """Have the dispatcher thread settle `fut` as soon as the orbit answers."""
        self._ensure_dispatcher()
        self._queue.put(fut)

    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is not None and self._dispatcher.is_alive():
            return
        with self._lock:
            if self._dispatcher is None or not self._dispatcher.is_alive():
                ref = weakref.ref(self)
                self._dispatcher = threading.Thread(
                    target=_dispatch, args=(self._queue, ref),
                    name=f"orbitpy-dispatch-{self.name}", daemon=True)
                self._dispatcher.start()

    def _after_crash(self) -> str:
        """What happens to the orbit now, for crash messages."""
        if not self._opts["restart"]:
            return "restart=False: it takes no more calls until fn.orbit.restart()"
        core = self._core
        in_row = core.stats()["crashes_in_row"] if core is not None and not core.closed else 0
        if in_row > self._opts["restart_limit"]:
            return (f"it crashed {in_row} times in a row, beyond its restart limit; "
                    f"call fn.orbit.restart() to revive it")
        return "the orbit restarts on the next call"

    def _decode(self, ret: int, data: bytes) -> Any:
        if ret == _STATUS_OK:
            return _pickle.loads(data) if data else None
        try:
            exc, tb = _pickle.loads(data)
        except Exception as e:
            raise OrbitError(f"orbit {self.name!r} raised an exception that cannot be "
                             f"rebuilt in main ({type(e).__name__}: {e})") from None
        exc.__cause__ = RemoteTraceback(tb)
        try:
            exc.orbit_traceback = tb
        except Exception:
            pass
        raise exc

    def _error(self, e: Any) -> OrbitError:
        code = e.code
        if code == _core.E_CRASHED:
            text, sig, exitcode = describe_status(e.status)
            pid = f" (pid {e.pid})" if e.pid else ""
            return OrbitCrashed(f"orbit {self.name!r}{pid} {text}; the call was lost "
                                f"({self._after_crash()})",
                                pid=e.pid, signal=sig, exitcode=exitcode)
        if code == _core.E_TIMEOUT:
            limit = self._opts["timeout_ms"] / 1000
            return OrbitTimeout(f"orbit {self.name!r} call overran its timeout of {limit:g} s; "
                                f"the orbit was killed and restarts on the next call")
        if code == _core.E_CLOSED:
            if self._closed:
                return OrbitClosed(f"orbit {self.name!r} is closed")
            return OrbitClosed(f"orbit {self.name!r} crashed and restart=False: it takes no "
                               f"more calls")
        if code == _core.E_RESTART_LIMIT:
            return OrbitCrashed(f"orbit {self.name!r} crashed "
                                f"{self._opts['restart_limit'] + 1} times in a row; not "
                                f"restarting it again (call fn.orbit.restart() to retry)")
        if code == errno.EXDEV:
            return OrbitError(f"an arena passed to orbit {self.name!r} was created in another "
                              f"process (this one was forked from it); arenas belong to the "
                              f"process that made them: create them after forking")
        if code == _core.E_SKIPPED:
            return OrbitBusy(f"orbit {self.name!r} is busy; call skipped")
        if code == _core.E_CANCELLED:
            return OrbitError(f"call to orbit {self.name!r} was cancelled before it ran")
        return OrbitError(f"orbit {self.name!r}: {e}")

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"pid={self.pid}"
        return f"<orbitpy.OrbitHandle {self.name!r} {state}>"


def _dispatch(q: queue.SimpleQueue[Any], ref: weakref.ref[OrbitHandle]) -> None:
    """Settle the futures handed over (callbacks or waiters attached), in
    order.  The C core drops the GIL while this thread waits."""
    while True:
        fut = q.get()
        if fut is None:
            return
        try:
            fut._resolve(None)
        except BaseException:  # noqa: BLE001 - never let the dispatcher die
            pass
        del fut


class OrbitFunction(Generic[P, R]):
    """A function that runs in its orbit.  Calling it runs it there and
    returns its result; ``call_async`` returns an :class:`OrbitFuture`;
    ``orbit`` is the :class:`OrbitHandle`."""

    def __init__(self, fn: Callable[P, R], **options: Any) -> None:
        functools.update_wrapper(self, fn)
        name = options.pop("name", None) or _name_of(fn)
        self.orbit = OrbitHandle(fn, name, **options)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.orbit.call(args, kwargs)  # type: ignore[no-any-return]

    def call_async(self, *args: P.args, **kwargs: P.kwargs) -> OrbitFuture[R]:
        """Issue the call and return at once; the call sees the arenas as they
        are now, whatever main writes afterwards."""
        return self.orbit.call_async(args, kwargs)

    def call_async_ex(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                      *, skip_if_busy: bool = False,
                      cancel_queued: bool = False) -> OrbitFuture[R]:
        """call_async with flags: `skip_if_busy` raises OrbitBusy instead of
        queueing behind a pending call; `cancel_queued` cancels pending calls
        that have not started (their futures raise CancelledError)."""
        return self.orbit.call_async(tuple(args), dict(kwargs or {}), skip_if_busy,
                                     cancel_queued)

    def __repr__(self) -> str:
        return f"<orbitpy.OrbitFunction {self.orbit.name!r}>"


@overload
def orbit(fn: Callable[P, R], /) -> OrbitFunction[P, R]: ...
@overload
def orbit(*, name: str | None = None, areas: Iterable[Arena] = (),
          timeout: float | None = None, restart: bool | int = True,
          nice: int | None = None, memory_limit: int | None = None,
          cpus: Iterable[int] | None = None, harden: bool = True
          ) -> Callable[[Callable[P, R]], OrbitFunction[P, R]]: ...


def orbit(fn: Any = None, /, *, name: str | None = None, areas: Iterable[Arena] = (),
          timeout: float | None = None, restart: bool | int = True,
          nice: int | None = None, memory_limit: int | None = None,
          cpus: Iterable[int] | None = None, harden: bool = True) -> Any:
    """Make a function run in an orbit: ``@orbitpy.orbit`` or
    ``@orbitpy.orbit(timeout=5, ...)``.

    name: the orbit's name (default: the function's qualified name).
    areas: arenas synchronised on every call (arenas holding buffers passed as
        arguments are synchronised automatically).
    timeout: seconds a call may run; an overrun kills and restarts the orbit
        and the call raises OrbitTimeout.
    restart: restart the orbit after a crash (True: up to 5 crashes in a row;
        an int: that many; False: never).
    nice: added to the orbit's nice value.  memory_limit: bytes the orbit may
        map beyond what it starts with (shared memory counts).  cpus: CPUs the
        orbit may run on.
    harden: the orbit may not ptrace main, write main's memory with
        process_vm_writev or signal main (they fail with EPERM).
    """
    areas = tuple(areas)
    for a in areas:
        if not isinstance(a, Arena):
            raise TypeError(f"areas must be orbitpy arenas, got {type(a).__name__}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    if memory_limit is not None and (not isinstance(memory_limit, int)
                                     or isinstance(memory_limit, bool) or memory_limit <= 0):
        raise ValueError(f"memory_limit must be a positive number of bytes, got {memory_limit}")
    if nice is not None and not isinstance(nice, int):
        raise TypeError(f"nice must be an int, got {type(nice).__name__}")
    if isinstance(restart, int) and not isinstance(restart, bool) and restart < 0:
        raise ValueError(f"restart must be a bool or a crash count >= 0, got {restart}")
    if cpus is not None:
        cpus = tuple(cpus)
        for c in cpus:
            if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < 64:
                raise ValueError(f"cpus must be CPU numbers 0..63, got {c!r}")
    if not isinstance(harden, bool):
        raise TypeError(f"harden must be a bool, got {type(harden).__name__}")
    options = dict(name=name, areas=areas, timeout=timeout, restart=restart, nice=nice,
                   memory_limit=memory_limit, cpus=cpus, harden=harden)

    def wrap(f: Any) -> OrbitFunction[Any, Any]:
        if not callable(f):
            raise TypeError(f"orbitpy.orbit needs a callable, got {type(f).__name__}")
        return OrbitFunction(f, **options)

    if fn is None:
        return wrap
    return wrap(fn)


def default_snapshot_mode() -> str:
    """The snapshot mode a new arena gets: ORBITPY_SNAPSHOT, else the best
    available ('uffd', then 'mprotect', then 'full')."""
    global _default_mode
    if _default_mode is None:
        probe = Arena(4096)
        _default_mode = probe.snapshot_mode
        probe.close()
    return _default_mode


_default_mode: str | None = None


@atexit.register
def _close_all() -> None:
    if _core.in_orbit():
        return
    for h in list(_live_handles):
        try:
            h.close()
        except Exception:
            pass
