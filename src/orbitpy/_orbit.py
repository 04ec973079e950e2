"""Orbit functions: the decorator (`orbit`, `OrbitFunction`) and the orbit
behind one (`OrbitHandle`).

The future of a call and its dispatcher are in _future.py, what runs in the
orbit process in _in_orbit.py, the error table in errors.py."""

from __future__ import annotations

import atexit
import errno
import functools
import inspect
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

from . import _core, _heap, _pickle
from ._arena import Arena, foreign_arena_error
from ._future import Dispatcher, OnInterrupt, OrbitFuture
from ._in_orbit import FATAL_MARK, LATE_MARK, STATUS_OK, _name_of, _run_in_orbit, read_fault_dump
from ._latency import CallLatency
from ._stale import GlobalsWatch
from .errors import (
    ArenaEscapeError,
    OrbitBusy,
    OrbitClosed,
    OrbitError,
    core_error,
    remote_exception,
)

if TYPE_CHECKING:  # asyncio is imported on the first acall(), not with orbitpy
    from . import _aio

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger("orbitpy")
_live_handles: weakref.WeakSet[OrbitHandle] = weakref.WeakSet()

# Class refreshes: an orbit restarts (after its pending calls) when a call
# reaches a class main changed, or made, since the orbit started.  At most
# CLASS_REFRESH_LIMIT[0] of them per orbit in any CLASS_REFRESH_LIMIT[1]
# seconds; past that the call raises ArenaEscapeError (a program that changes
# a class before every call would otherwise fork an orbit per call).
CLASS_REFRESH_LIMIT: tuple[int, float] = (10, 60.0)
# Classes whose first refresh was logged.
_logged_classes: weakref.WeakSet[type] = weakref.WeakSet()

# Bumped in every child forked from this process (no getpid() per call).
_fork_generation = 0


def _forked() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_forked)


class OrbitHandle:
    """The orbit behind an orbit function: ``fn.orbit``."""

    def __init__(self, fn: Callable[..., Any], name: str, arenas: tuple[Arena, ...],
                 timeout: float | None, restart: bool | int, nice: int | None,
                 memory_limit: int | None, cpus: Iterable[int] | None,
                 on_interrupt: OnInterrupt = "kill",
                 pass_fds: tuple[int, ...] = (),
                 harden: bool = True) -> None:
        self._fn = fn
        self._on_interrupt: OnInterrupt = on_interrupt
        self.name = name
        self._arenas = list(arenas)
        # core areas synced so far (for stats()['snapshot_mode'])
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet(a._area for a in arenas)
        self._lock = threading.Lock()
        # Held while a call is issued, and while the orbit is drained and
        # restarted for a class change, so that no call is issued meanwhile.
        self._submit_lock = threading.Lock()
        self._class_refreshes = 0
        self._class_refresh_times: deque[float] = deque()
        self._closed = False
        self._closed_why = ""
        self._core: Any = None
        self._last: Any = None  # the last call issued (calls run in order)
        self._fault_fd = -1     # where the orbit's faulthandler writes (a memfd)
        self._logged_pid = 0    # the last dead orbit process logged
        self._generation = _fork_generation
        self._dispatcher = Dispatcher(name)
        # The globals fn reads, as each orbit process was forked with them.
        self._globals_watch = GlobalsWatch.of(fn)
        # Durations of the calls, from issue to main taking the answer.
        self.latency = CallLatency()
        limit = 5 if restart is True else (int(restart) if restart else 0)
        cpu_mask = 0
        for c in cpus or ():
            cpu_mask |= 1 << c
        self._opts: dict[str, Any] = dict(
            timeout_ms=0 if timeout is None else max(1, int(timeout * 1000)),
            nice=nice or 0, cpu_mask=cpu_mask, memory_limit=memory_limit or 0,
            restart=bool(restart), restart_limit=limit, keep_fds=pass_fds,
            harden=bool(harden))
        _live_handles.add(self)

    # -- process

    def _orbit(self) -> Any:
        if self._closed:
            raise self._closed_error()
        core = self._core
        if core is not None and self._generation != _fork_generation:
            # We are a process forked from the one that started the orbit
            # (multiprocessing, os.fork): that orbit is its, not ours.  Start
            # our own; the inherited handle is dropped without touching it.
            self._core = core = None
            self._last = None
            if self._fault_fd >= 0:
                os.close(self._fault_fd)  # our copy of the parent's file
                self._fault_fd = -1
            self._dispatcher = Dispatcher(self.name)
            self.latency = CallLatency()  # the parent's lock may be held
        if core is None:
            with self._lock:
                if self._closed:
                    raise self._closed_error()
                if self._core is None:
                    fn = self._fn
                    if self._fault_fd < 0:
                        self._fault_fd = os.memfd_create("orbitpy-faulthandler",
                                                         os.MFD_CLOEXEC)
                    # The orbit drops main's memfds but must keep its own
                    # faulthandler file.
                    opts = dict(self._opts,
                                keep_fds=(*self._opts["keep_fds"], self._fault_fd))
                    self._core = _core.Orbit(self.name,
                                             functools.partial(_run_in_orbit, fn,
                                                               self._fault_fd,
                                                               self._opts["timeout_ms"] / 1000),
                                             **opts)
                    if self._globals_watch is not None:
                        self._core.on_fork = self._globals_watch.forked
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

    def warm(self, *arenas: Arena) -> None:
        """Start the orbit's process now, if none runs, and give it its copies
        of `arenas` (by default its `areas=` and every open arena holding
        objects), which orbitpy keeps current between calls: a first call
        made later copies only what main wrote lately, instead of every page
        of those arenas on the caller's thread (seconds for a GiB).  For an
        orbit called rarely or first called long after its arenas were
        filled (a snapshot saver), and again after a restart: a new process
        starts with no copies."""
        for a in arenas:
            if not isinstance(a, Arena):
                raise TypeError(f"warm() takes orbitpy arenas, got {type(a).__name__}")
        if arenas:
            areas = [a._live_area() for a in arenas]
        else:
            areas = [a._area for a in self._arenas] + [h.area for h in _core.heap_areas()]
        live: list[Any] = []
        for a in areas:
            if a.alive and a not in live:
                live.append(a)
        if len(live) > _core.MAX_CALL_AREAS:
            raise ValueError(f"orbit {self.name!r}: at most {_core.MAX_CALL_AREAS} arenas "
                             f"can be warmed at once, got {len(live)}")
        if self._inherited():
            self._submit_lock = threading.Lock()  # perhaps held by a thread of the parent
        with self._submit_lock:
            try:
                self._orbit().warm(live)
            except _core.CoreError as e:
                if e.code == errno.EXDEV:
                    raise foreign_arena_error(self.name, live) from None
                raise self._error(e) from None
        self._seen.update(live)

    def restart(self) -> None:
        """Kill the orbit process now; calls in flight fail with OrbitCrashed and
        the next call starts a fresh process."""
        core = self._core
        if self._closed:
            raise OrbitClosed(f"orbit {self.name!r} is closed")
        if core is not None:
            try:
                core.restart()
            except _core.CoreError as e:  # closed by another thread meanwhile
                raise self._error(e) from None

    def close(self) -> None:
        """Stop the orbit; pending calls fail with OrbitClosed.  Idempotent."""
        self._close("")

    def _close(self, why: str) -> None:
        with self._lock:
            if not self._closed:
                self._closed_why = why
            self._closed = True
            core, self._core = self._core, None
            self._last = None
            fault_fd, self._fault_fd = self._fault_fd, -1
        if core is not None:
            core.close()
        if fault_fd >= 0:
            os.close(fault_fd)
        self._dispatcher.stop()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more calls, then close the orbit, like
        ``concurrent.futures.Executor.shutdown``.  ``wait=True``: return once
        every pending call has finished (their futures hold their results);
        ``cancel_futures=True``: pending calls, the running one included, fail
        with OrbitClosed at once (an orbit runs one call at a time, and a
        running call is stopped only by stopping the orbit).  Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed_why = "shut down"
            self._closed = True  # new calls raise OrbitClosed from here on
            last = self._last
        if wait and not cancel_futures and last is not None:
            try:
                last.wait(None)  # calls run in order: the last one ends last
            except _core.CoreError:
                pass  # its future tells why
        self._close("shut down")

    def _pending(self) -> bool:
        """True while a call issued to the orbit has not ended."""
        last = self._last
        if last is None:
            return False
        try:
            last.wait(0)
        except TimeoutError:
            return True
        except Exception:
            pass
        return False

    def _fault_dump(self, pid: int, kind: Literal["fatal", "late"]) -> str | None:
        """The last traceback of `kind` ("fatal": a fatal signal; "late": a
        call near its timeout) orbit process `pid` wrote."""
        return read_fault_dump(self._fault_fd, pid, FATAL_MARK if kind == "fatal" else LATE_MARK)

    def _inherited(self) -> bool:
        """True in a process forked from the one that started the orbit."""
        return self._generation != _fork_generation

    def _closed_error(self) -> OrbitClosed:
        why = f" ({self._closed_why})" if self._closed_why else ""
        return OrbitClosed(f"orbit {self.name!r} is closed{why}")

    def __enter__(self) -> OrbitHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True)

    def stats(self) -> dict[str, Any]:
        """calls (answered), failed (ended with an orbitpy error instead:
        crashed, timed out, cancelled, aborted, closed), timeouts and
        cancelled (of the failed), pages_synced (= pages_copied + pages_reset),
        pages_copied, pages_reset, bytes_synced, restarts, crashes, full_syncs,
        class_refreshes (restarts made because a call reached a class main
        changed or made after the orbit started; counted in restarts too),
        snapshot_mode, pid, stale_globals (globals the function reads that
        main rebound after the orbit process started, warned about with
        OrbitStaleGlobalWarning)."""
        if self._core is not None:
            st = self._core.stats()
        else:
            st = dict.fromkeys(("calls", "pages_copied", "pages_reset", "bytes_synced",
                                "restarts", "crashes", "full_syncs", "failed", "timeouts",
                                "cancelled"), 0)
        st["pages_synced"] = st["pages_copied"] + st["pages_reset"]
        watch = self._globals_watch
        st["stale_globals"] = len(watch.warned) if watch is not None else 0
        st["class_refreshes"] = self._class_refreshes
        modes = {a.mode for a in self._seen if a.alive}
        st["snapshot_mode"] = modes.pop() if len(modes) == 1 else default_snapshot_mode()
        st["pid"] = self.pid
        return st

    # -- calls

    def _submit(self, args: tuple[Any, ...], kwargs: dict[str, Any], flags: int = 0) -> Any:
        if _core.in_orbit():
            raise OrbitError(f"orbit {self.name!r} cannot be called from inside an orbit")
        areas = [a._area for a in self._arenas]
        roots: dict[Any, list[Any]] = {}
        check = None
        if args or kwargs:
            try:
                arg, found, roots = _pickle.dumps_call(args, kwargs, _core.heap_in_use())
            except Exception as e:
                raise TypeError(f"cannot send the arguments of {self.name!r} to its orbit: "
                                f"{type(e).__name__}: {e}") from e
            for a in found:
                if a not in areas:
                    areas.append(a)
            if roots:
                check = _heap.CallCheck(roots, self._arg_labels(args, kwargs))
        else:
            arg = b""
        if roots:
            # A call that passes arena objects maps every arena holding
            # objects: what the orbit reaches from them, and objects that
            # lived there when it was forked, must be readable.
            for h in _core.heap_areas():
                if h.area not in areas:
                    areas.append(h.area)
        live = [a for a in areas if a.alive]
        if len(live) > _core.MAX_CALL_AREAS:
            raise ValueError(f"a call to orbit {self.name!r} uses {len(live)} arenas, at most "
                             f"{_core.MAX_CALL_AREAS} are allowed (the orbit's `areas`, those "
                             f"holding buffers passed, and with arena objects passed every "
                             f"arena holding objects)")
        self._seen.update(live)
        if self._inherited():
            self._submit_lock = threading.Lock()  # perhaps held by a thread of the parent
        for attempt in range(10):
            with self._submit_lock:
                try:
                    self._last = f = self._orbit().call_async(arg, live, flags, check)
                    break
                except _heap.StaleClasses as e:
                    if attempt == 9:  # changed again by other threads every time
                        raise e.error() from None
                    self._refresh_classes(e, flags)
                    assert check is not None
                    check.reset()
                except _core.CoreError as e:
                    if e.code == errno.EXDEV:
                        raise foreign_arena_error(self.name, live) from None
                    raise self._error(e) from None
        else:
            raise AssertionError("unreachable")
        # After the call is issued: a process forked by this very call sees
        # the current globals (checked before, it would be a false alarm).
        watch = self._globals_watch
        if watch is not None and watch.changed():
            watch.report(_name_of(self._fn))
        return f

    def _refresh_classes(self, stale: _heap.StaleClasses, flags: int) -> None:
        """The call reaches classes the orbit has in another state than main
        (changed or made since it started): let the calls issued so far
        finish, then restart the orbit, whose next process is forked with the
        classes as they are now.  Rate-limited (CLASS_REFRESH_LIMIT).  Called
        with the submit lock held: no call is issued meanwhile."""
        limit, window = CLASS_REFRESH_LIMIT
        now = time.monotonic()
        times = self._class_refresh_times
        while times and now - times[0] > window:
            times.popleft()
        if len(times) >= limit:
            err = stale.error()
            raise ArenaEscapeError(
                err.path,
                f"{err.reason}; orbit {self.name!r} was already restarted {len(times)} "
                f"times in {window:g} s to follow class changes, its limit "
                f"(orbitpy._orbit.CLASS_REFRESH_LIMIT = {CLASS_REFRESH_LIMIT}): each class "
                f"change makes the orbit restart and copy its arenas again. Do not change "
                f"classes between calls (class attributes as counters or caches, classes made "
                f"per call); keep changing state in instances or in arena dicts") from None
        if flags & _core.CALL_SKIP_IF_BUSY and self._pending():
            raise OrbitBusy(f"orbit {self.name!r} is busy (it must finish its calls and "
                            f"restart to follow a class change); call skipped")
        last = self._last
        if last is not None:
            try:
                last.wait(None)  # calls run in order: when it ends, all have
            except _core.CoreError:
                pass  # its own future reports it
        core = self._core
        if core is not None:
            try:
                core.restart()
            except _core.CoreError as e:  # closed by another thread meanwhile
                raise self._error(e) from None
        times.append(now)
        self._class_refreshes += 1
        for cls, what in stale.classes:
            if cls not in _logged_classes:
                _logged_classes.add(cls)
                log.info("orbit %r restarts to see class %s.%s as main has it now: %s "
                         "(later refreshes for this class are not logged)", self.name,
                         getattr(cls, "__module__", "?"), getattr(cls, "__qualname__", cls),
                         what)

    def _arg_labels(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[int, str]:
        """Names for the arguments in error messages: parameter names where
        the function's signature gives them."""
        code = getattr(self._fn, "__code__", None)
        names = code.co_varnames[:code.co_argcount] if code is not None else ()
        labels = {id(v): k for k, v in kwargs.items()}
        for i, a in enumerate(args):
            labels.setdefault(id(a), names[i] if i < len(names) else f"args[{i}]")
        return labels

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any],
             timeout: float | None = None, on_interrupt: OnInterrupt | None = None) -> Any:
        issued = time.perf_counter()
        core_future = self._submit(args, kwargs)
        if timeout is not None:
            core_future.set_timeout(timeout)
        try:
            ret, data = core_future.wait()
        except _core.CoreError as e:
            self.latency.observe(time.perf_counter() - issued)
            raise self._error(e, timeout) from None
        except BaseException:
            # Interrupted while waiting (KeyboardInterrupt, or an exception
            # raised by another signal handler): the caller is gone, so the
            # call must not hold up the orbit's later calls.
            if (on_interrupt or self._on_interrupt) == "kill":
                core_future.cancel(True)
            raise
        self.latency.observe(time.perf_counter() - issued)
        return self._decode(ret, data)

    def call_async(self, args: tuple[Any, ...], kwargs: dict[str, Any],
                   skip_if_busy: bool = False, cancel_queued: bool = False,
                   timeout: float | None = None,
                   on_interrupt: OnInterrupt | None = None) -> OrbitFuture:
        flags = ((_core.CALL_SKIP_IF_BUSY if skip_if_busy else 0)
                 | (_core.CALL_CANCEL_QUEUED if cancel_queued else 0))
        issued = time.perf_counter()
        core_future = self._submit(args, kwargs, flags)
        if timeout is not None:
            core_future.set_timeout(timeout)
        fut: OrbitFuture = OrbitFuture(core_future, self, timeout,
                                       on_interrupt or self._on_interrupt)
        fut._issued = issued  # the latency includes sending the call
        return fut

    def _dispatch(self, fut: OrbitFuture | _aio.AsyncOrbitFuture[Any]) -> None:
        """Have the dispatcher thread settle `fut` as soon as the orbit answers."""
        self._dispatcher.put(fut)

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
        """The call's result, from the orbit's answer; raises what it raised."""
        if ret == STATUS_OK:
            return _pickle.loads(data) if data else None
        raise remote_exception(self.name, _pickle.loads(data), _pickle.loads)

    def _error(self, e: Any, timeout: float | None = None) -> OrbitError:
        """The orbitpy error for a core error; `timeout`: the call's own."""
        return core_error(self, e, timeout)

    def _log_death(self, pid: int, msg: str, dump: str | None) -> None:
        """Log a crash or timeout once (every call it failed reports it)."""
        if pid and pid == self._logged_pid:
            return
        self._logged_pid = pid
        log.error("%s%s", msg, f"\n{dump}" if dump else "")

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"pid={self.pid}"
        return f"<orbitpy.OrbitHandle {self.name!r} {state}>"


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

    def acall(self, *args: P.args, **kwargs: P.kwargs) -> _aio.AsyncOrbitFuture[R]:
        """For asyncio: issue the call and return an awaitable
        :class:`AsyncOrbitFuture` (``result = await fn.acall(x)``), from a
        coroutine running in an event loop.  The loop is never blocked
        waiting for the orbit; cancelling the awaiting task cancels the call
        (a queued call is skipped; a running one is killed or, with
        ``on_interrupt="finish"``, finishes and its result is discarded)."""
        from . import _aio

        return _aio.acall(self.orbit, args, kwargs)

    def call_async_ex(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                      *, skip_if_busy: bool = False, cancel_queued: bool = False,
                      timeout: float | None = None,
                      on_interrupt: OnInterrupt | None = None) -> OrbitFuture[R]:
        """call_async with flags: `skip_if_busy` raises OrbitBusy instead of
        queueing behind a pending call; `cancel_queued` cancels pending calls
        that have not started (their futures are cancelled()); `timeout`:
        seconds this call may run (from when it starts), instead of the
        orbit's; `on_interrupt`: what ``future.cancel()`` does while the call
        may be running ("kill" the orbit, or let it "finish")."""
        _check_call_options(timeout, on_interrupt)
        return self.orbit.call_async(tuple(args), dict(kwargs or {}), skip_if_busy,
                                     cancel_queued, timeout, on_interrupt)

    def with_options(self, *, timeout: float | None = None,
                     on_interrupt: OnInterrupt | None = None) -> OrbitCall[P, R]:
        """This function with per-call options (they do not collide with its
        own keyword arguments): ``fn.with_options(timeout=2)(x)`` or
        ``fn.with_options(timeout=2).call_async(x)``.  `timeout` and
        `on_interrupt` as for :meth:`call_async_ex`."""
        _check_call_options(timeout, on_interrupt)
        return OrbitCall(self.orbit, timeout, on_interrupt)

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        # Defined in a class body and looked up on an instance: the orbit
        # would be called without `self`.
        if instance is None or isinstance(self.__wrapped__, staticmethod):  # type: ignore[attr-defined]
            return self
        raise TypeError(
            f"{self.orbit.name} is an orbit function defined in a class body: called on an "
            f"instance it would not get `self`. Decorate a bound method instead "
            f"(fn = orbitpy.orbit(obj.method): the orbit gets obj as it was when the orbit "
            f"started), or make it a staticmethod (@orbitpy.orbit above @staticmethod) and "
            f"pass what it needs as arguments")

    def __enter__(self) -> OrbitFunction[P, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        """Leaving ``with fn:`` waits for pending calls, then closes the orbit."""
        self.orbit.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"<orbitpy.OrbitFunction {self.orbit.name!r}>"


class OrbitCall(Generic[P, R]):
    """An orbit function with per-call options (``fn.with_options(...)``)."""

    def __init__(self, handle: OrbitHandle, timeout: float | None,
                 on_interrupt: OnInterrupt | None) -> None:
        self._handle = handle
        self._timeout = timeout
        self._on_interrupt = on_interrupt

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._handle.call(args, kwargs, self._timeout,  # type: ignore[no-any-return]
                                 self._on_interrupt)

    def call_async(self, *args: P.args, **kwargs: P.kwargs) -> OrbitFuture[R]:
        return self._handle.call_async(args, kwargs, timeout=self._timeout,
                                       on_interrupt=self._on_interrupt)

    def acall(self, *args: P.args, **kwargs: P.kwargs) -> _aio.AsyncOrbitFuture[R]:
        from . import _aio

        return _aio.acall(self._handle, args, kwargs, self._timeout, self._on_interrupt)


def _check_call_options(timeout: float | None, on_interrupt: str | None) -> None:
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    if on_interrupt not in (None, "kill", "finish"):
        raise ValueError(f"on_interrupt must be 'kill' or 'finish', got {on_interrupt!r}")


@overload
def orbit(fn: Callable[P, R], /) -> OrbitFunction[P, R]: ...
@overload
def orbit(*, name: str | None = None, areas: Iterable[Arena] = (),
          timeout: float | None = None, restart: bool | int = True,
          nice: int | None = None, memory_limit: int | None = None,
          cpus: Iterable[int] | None = None, on_interrupt: OnInterrupt = "kill",
          pass_fds: Iterable[Any] = (), harden: bool = True
          ) -> Callable[[Callable[P, R]], OrbitFunction[P, R]]: ...


def orbit(fn: Any = None, /, *, name: str | None = None, areas: Iterable[Arena] = (),
          timeout: float | None = None, restart: bool | int = True,
          nice: int | None = None, memory_limit: int | None = None,
          cpus: Iterable[int] | None = None, on_interrupt: OnInterrupt = "kill",
          pass_fds: Iterable[Any] = (), harden: bool = True) -> Any:
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
    on_interrupt: what happens to a call whose caller gave up while it may be
        running (Ctrl-C in a sync call, ``future.cancel()``, a cancelled
        ``asyncio.wrap_future``): "kill" the orbit (it restarts; the default)
        or let it "finish" (later calls wait behind it).
    pass_fds: descriptors (ints, or objects with fileno()) of main's that the
        orbit keeps open.  Of the others it keeps 0-2 and regular files,
        directories and devices; main's sockets, pipes, memfds and event
        descriptors are closed in the orbit (replaced by /dev/null).
    harden: the orbit may not ptrace main, write main's memory with
        process_vm_writev or signal main (they fail with EPERM).
    """
    arenas = tuple(areas)
    for a in arenas:
        if not isinstance(a, Arena):
            raise TypeError(f"areas must be orbitpy arenas, got {type(a).__name__}")
    _check_call_options(timeout, on_interrupt)
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
    options = dict(name=name, arenas=arenas, timeout=timeout, restart=restart, nice=nice,
                   memory_limit=memory_limit, cpus=cpus, on_interrupt=on_interrupt,
                   pass_fds=_descriptors(pass_fds), harden=harden)

    def wrap(f: Any) -> OrbitFunction[Any, Any]:
        if not callable(f):
            raise TypeError(f"orbitpy.orbit needs a callable, got {type(f).__name__}")
        if inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f):
            raise TypeError(
                f"orbitpy.orbit cannot run {_name_of(f)}: it is an async function, and an "
                f"orbit runs plain calls; wrap it: @orbitpy.orbit def task(*args): return "
                f"asyncio.run({getattr(f, '__name__', 'fn')}(*args)) (await the result in "
                f"main with `await task.acall(...)`)")
        return OrbitFunction(f, **options)

    if fn is None:
        return wrap
    return wrap(fn)


def _descriptors(objs: Iterable[Any]) -> tuple[int, ...]:
    """pass_fds as descriptor numbers."""
    if isinstance(objs, (str, bytes)) or not isinstance(objs, Iterable):
        raise TypeError(f"pass_fds must be an iterable of descriptors, got {objs!r}")
    fds = []
    for o in objs:
        fd = o.fileno() if hasattr(o, "fileno") else o
        if isinstance(fd, bool) or not isinstance(fd, int):
            raise TypeError(f"pass_fds must hold ints or objects with fileno(), got {o!r}")
        if fd < 0:
            raise ValueError(f"pass_fds must hold open descriptors (>= 0), got {o!r}")
        fds.append(fd)
    if len(fds) > 256:
        raise ValueError(f"pass_fds may hold at most 256 descriptors, got {len(fds)}")
    return tuple(fds)


def default_snapshot_mode() -> str:
    """The snapshot mode a new arena gets: the backend's name for its
    choice (the userspace backend: ORBITPY_SNAPSHOT, else the best available
    of 'uffd', 'mprotect' and 'full')."""
    global _default_mode
    if _default_mode is None:
        probe = Arena(_core.PAGE_SIZE)
        _default_mode = probe.snapshot_mode
        probe.close()
    return _default_mode


_default_mode: str | None = None


def shutdown(wait: bool = True, *, cancel_futures: bool = False) -> None:
    """Shut down every orbit of this process (``OrbitHandle.shutdown`` on
    each): with ``wait=True``, return once their pending calls have finished.
    Call it before exiting to let pending calls finish: at interpreter exit,
    calls still pending are cancelled and their orbits killed."""
    for h in list(_live_handles):
        h.shutdown(wait, cancel_futures=cancel_futures)


def _close_all(only_busy: bool = False) -> None:
    """At interpreter exit: stop the orbits (`only_busy`: those with calls
    pending), cancelling what is pending, so that exit never waits for an
    orbit: threads blocked in their calls get OrbitClosed and end."""
    if _core.in_orbit():
        return
    why = ("closed at interpreter exit; call orbitpy.shutdown(wait=True) before "
           "exiting to let pending calls finish")
    for h in list(_live_handles):
        try:
            busy = h._generation == _fork_generation and h._pending()
            if busy:
                log.warning("orbit %r: pending calls cancelled at interpreter exit (call "
                            "orbitpy.shutdown(wait=True) before exiting to wait for them)",
                            h.name)
            if busy or not only_busy:
                h._close(why)
        except Exception:
            pass


try:
    # Runs before threading._shutdown joins non-daemon threads: one blocked
    # in a call would otherwise keep the interpreter waiting for the orbit.
    # Idle orbits stay usable by atexit handlers until the atexit hook below.
    threading._register_atexit(_close_all, only_busy=True)  # type: ignore[attr-defined]
except (AttributeError, RuntimeError):  # pragma: no cover - no such hook
    pass
atexit.register(_close_all)
