"""Exceptions raised by orbitpy."""

from __future__ import annotations

import signal


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
