"""Exceptions raised by orbitpy, the exit statuses of its processes, and the
table that turns the C core's errors and the orbit's exceptions into them."""

from __future__ import annotations

import errno
import signal
from collections.abc import Callable
from typing import Any, Literal, Protocol

from . import _core


class OrbitError(Exception):
    """Base class of orbit failures.

    ``orbit_traceback``: the orbit's traceback text where there is one (the
    orbit's exception, or faulthandler's dump of a crash or a timeout)."""

    orbit_traceback: str | None = None


class OrbitCrashed(OrbitError):
    """The orbit process died while a call was in flight or queued.

    ``signal`` is the number of the signal that killed it (or None),
    ``exitcode`` its exit status (or None), ``pid`` its process id.
    """

    def __init__(self, message: str, *, pid: int = 0, signal: int | None = None,
                 exitcode: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.signal = signal
        self.exitcode = exitcode


class OrbitTimeout(OrbitError):
    """A call ran longer than its timeout (the orbit's, or its own): the orbit
    was killed and restarts.

    Deliberately not a :class:`TimeoutError`: that one means a *wait* ended
    (``future.result(timeout=...)``) while the call still runs, as in
    :mod:`concurrent.futures`."""


class OrbitAborted(OrbitCrashed):
    """The call was queued behind one the orbit was killed for (that call
    timed out, or was cancelled), so it did not run: its arenas' snapshot went
    with the killed process.  (Queued calls without arenas run on the
    restarted orbit instead.)  ``reason`` is ``"timeout"`` or
    ``"cancelled"``."""

    def __init__(self, message: str, *, reason: str, pid: int = 0,
                 signal: int | None = None, exitcode: int | None = None) -> None:
        super().__init__(message, pid=pid, signal=signal, exitcode=exitcode)
        self.reason = reason


class OrbitClosed(OrbitError):
    """The orbit was closed (or may not restart), so it takes no calls."""


class OrbitBusy(OrbitError):
    """``call_async(..., skip_if_busy=True)`` found the orbit busy."""


class OrbitExit(OrbitError):
    """The orbit function raised ``SystemExit`` (``sys.exit()``, an argparse
    error), ``KeyboardInterrupt`` or ``GeneratorExit``.  These end a call,
    never main: ``code`` is the ``SystemExit`` code (None for the others),
    ``exc_type`` the name of the exception raised in the orbit."""

    def __init__(self, message: str, *, code: object = None, exc_type: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.exc_type = exc_type


class ArenaFull(MemoryError):
    """An arena has no room for an allocation."""


class ArenaEscapeError(OrbitError):
    """An orbit call would reach memory the orbit does not have.

    Raised in main before the call is sent.  ``path`` names the reference
    from the call's arguments (e.g. ``table['bob'].history[3]``), ``reason``
    says what is wrong with it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.reason))


class OrbitStaleGlobalWarning(RuntimeWarning):
    """A module global the orbit function reads was rebound (or deleted) in
    main after its orbit process started: the orbit still sees the value it
    had then.  Issued once per orbit and global, at the first call after the
    rebinding was noticed.  ``function`` and ``name`` say which."""

    def __init__(self, message: str, *, function: str = "", name: str = "") -> None:
        super().__init__(message)
        self.function = function
        self.name = name


class RemoteTraceback(Exception):
    """Carries the formatted traceback of an exception raised in an orbit; it is
    attached as ``__cause__`` of the re-raised exception."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return "\n\n" + self.tb.rstrip("\n")


# Exit statuses orbitpy's processes end with (all of them here).
EXIT_OK = 0
# python -m orbitpy with a command it does not know (as argparse's errors).
EXIT_USAGE = 2
# An orbit past its memory_limit: main reports it as such (describe_status).
EXIT_OUT_OF_MEMORY = 77


def describe_status(status: int) -> tuple[str, int | None, int | None]:
    """(text, signal, exitcode) for a wait status as returned by waitpid."""
    import os

    if status < 0:
        return "ended (status unknown)", None, None
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"was killed by signal {sig} ({name})", sig, None
    code = os.WEXITSTATUS(status)
    if code == EXIT_OUT_OF_MEMORY:
        return f"ran out of memory (its memory_limit) and exited with status {code}", None, code
    return f"exited with status {code}", None, code


# ------------------------------------------------------------ the error table


class _Orbit(Protocol):
    """What the error table reads of an OrbitHandle (errors.py cannot import
    _orbit.py: that imports this module)."""

    name: str
    _closed: bool
    _opts: dict[str, Any]

    def _closed_error(self) -> OrbitClosed: ...
    def _after_crash(self) -> str: ...
    def _fault_dump(self, pid: int, kind: Literal["fatal", "late"]) -> str | None: ...
    def _log_death(self, pid: int, msg: str, dump: str | None) -> None: ...


def core_error(orbit: _Orbit, e: Any, timeout: float | None = None) -> OrbitError:
    """The orbitpy error for a core error (a _core.CoreError) of a call to
    `orbit`; `timeout`: the call's own."""
    code = e.code
    if code == _core.E_CRASHED:
        text, sig, exitcode = describe_status(e.status)
        pid = f" (pid {e.pid})" if e.pid else ""
        msg = f"orbit {orbit.name!r}{pid} {text}; the call was lost ({orbit._after_crash()})"
        dump = orbit._fault_dump(e.pid, "fatal")
        err: OrbitError = OrbitCrashed(msg + (f"\n{dump}" if dump else ""),
                                       pid=e.pid, signal=sig, exitcode=exitcode)
        orbit._log_death(e.pid, msg, dump)
    elif code == _core.E_TIMEOUT:
        limit = timeout if timeout is not None else orbit._opts["timeout_ms"] / 1000
        msg = (f"orbit {orbit.name!r} call overran its timeout of {limit:g} s; "
               f"the orbit was killed and restarts on the next call")
        dump = orbit._fault_dump(e.pid, "late")
        if dump:
            dump = f"the call shortly before its timeout (faulthandler):\n{dump}"
        err = OrbitTimeout(msg + (f"\n{dump}" if dump else ""))
        orbit._log_death(e.pid, msg, dump)
    elif code == _core.E_ABORTED:
        reason = "timeout" if e.cause == _core.E_TIMEOUT else "cancelled"
        why = ("an earlier call overran its timeout" if reason == "timeout"
               else "an earlier call was cancelled")
        pid = f" (pid {e.pid})" if e.pid else ""
        return OrbitAborted(f"orbit {orbit.name!r}{pid} was killed because {why}; this "
                            f"call was queued behind it and did not run (the orbit "
                            f"restarts on the next call)",
                            reason=reason, pid=e.pid)
    else:
        return _other_core_error(orbit, e)
    err.orbit_traceback = dump
    return err


def _other_core_error(orbit: _Orbit, e: Any) -> OrbitError:
    code = e.code
    if code == _core.E_CLOSED:
        if orbit._closed:
            return orbit._closed_error()
        return OrbitClosed(f"orbit {orbit.name!r} crashed and restart=False: it takes no "
                           f"more calls")
    if code == _core.E_RESTART_LIMIT:
        return OrbitCrashed(f"orbit {orbit.name!r} crashed "
                            f"{orbit._opts['restart_limit'] + 1} times in a row; not "
                            f"restarting it again (call fn.orbit.restart() to retry)")
    if code == errno.ECHILD:
        return OrbitError(f"this call to orbit {orbit.name!r} was inherited through a fork: "
                          f"it belongs to the parent process, which gets its result; a "
                          f"forked process cannot wait for it (call the function again "
                          f"here: this process gets an orbit of its own)")
    if code == _core.E_SKIPPED:
        return OrbitBusy(f"orbit {orbit.name!r} is busy; call skipped")
    if code == _core.E_CANCELLED:
        return OrbitError(f"call to orbit {orbit.name!r} was cancelled before it ran")
    return OrbitError(f"orbit {orbit.name!r}: {e}")


def remote_exception(orbit_name: str, answer: tuple[bytes, str, str, str, str],
                     loads: Callable[[bytes], Any]) -> BaseException:
    """The exception to raise in main for one the orbit raised: `answer` is
    what the orbit sent of it (_in_orbit._describe_exception), `loads` the
    unpickler (passed in: _pickle imports this module)."""
    packed, tb, type_name, text, why = answer
    raised = f"{type_name}: {text}" if text else type_name
    exc: BaseException
    try:
        if not packed:
            raise OrbitError(why)
        exc = loads(packed)
    except Exception as e:
        # Keep what the orbit said: its type, message and traceback.
        why = why or f"{type(e).__name__}: {e}"
        exc = OrbitError(f"orbit {orbit_name!r} raised {raised} (the exception cannot be "
                         f"rebuilt in main: {why}; the orbit's traceback is attached)")
        exc.remote_type = type_name  # type: ignore[attr-defined]
    if not isinstance(exc, Exception):
        # SystemExit, KeyboardInterrupt, GeneratorExit: they end the call
        # in the orbit, never main.
        code = exc.code if isinstance(exc, SystemExit) else None
        exc = OrbitExit(f"orbit {orbit_name!r} raised {raised} (it ended the call, "
                        f"not main)", code=code, exc_type=type_name)
    exc.__cause__ = RemoteTraceback(tb)
    try:
        exc.orbit_traceback = tb  # type: ignore[attr-defined]
    except Exception:
        pass
    return exc
