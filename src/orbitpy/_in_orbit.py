"""The orbit side of a call: what runs in the orbit process.

`_run_in_orbit` is the function the C core calls in the orbit for each call:
it decodes the arguments, runs the orbit function and answers with a status
(STATUS_OK, STATUS_RAISED) and the pickled result or exception.  The orbit's
faulthandler writes to a file main reads when the orbit dies (see
`read_fault_dump`, used by main)."""

from __future__ import annotations

import errno
import faulthandler
import gc
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import _core, _pickle
from .errors import EXIT_OUT_OF_MEMORY, OrbitError

# How a call ended, as main reads the orbit's answer.
STATUS_OK, STATUS_RAISED = 0, 1

def in_orbit() -> bool:
    """True when running inside an orbit process."""
    return _core.in_orbit()


def push(obj: Any) -> None:
    """Inside an orbit: hand `obj` to main as an update of the current call
    (read with ``OrbitFuture.updates()``)."""
    if not _core.in_orbit():
        raise OrbitError("orbitpy.push() can only be called inside an orbit")
    _core.push(_pickle.dumps(obj))


# In an orbit: the file its faulthandler writes to (-1 until its first call),
# and when the running call started (0: none).
_fault_fd = -1
_call_started = 0.0
_FAULT_MARK = "orbitpy: faulthandler of orbit pid "
# What begins a dump: a fatal signal's, and that of a call near its timeout.
FATAL_MARK = "Fatal Python error"
LATE_MARK = "orbitpy: the call is about to overrun its timeout; where it is:"


def _arm_faulthandler(fd: int, timeout: float) -> None:
    """In a new orbit process: send faulthandler's dumps (a fatal signal's
    traceback) to `fd`, a file main reads when the orbit dies, after a line
    naming this process.  With a timeout, a watcher thread also writes there
    where a call is shortly before its timeout kills the orbit."""
    global _fault_fd
    _fault_fd = fd
    try:
        os.lseek(fd, 0, os.SEEK_END)
        os.write(fd, f"\n{_FAULT_MARK}{os.getpid()}\n".encode())
        faulthandler.enable(file=fd, all_threads=True)
    except (OSError, ValueError, RuntimeError):
        return  # no traceback on crashes; calls work all the same
    if timeout > 0:
        margin = min(0.2 * timeout, 1.0)
        try:
            threading.Thread(target=_watch_for_timeout,
                             args=(fd, timeout - margin, margin / 3),
                             name="orbitpy-timeout-watch", daemon=True).start()
        except RuntimeError:
            pass  # e.g. no memory for a thread under memory_limit: no dump


def _watch_for_timeout(fd: int, dump_after: float, period: float) -> None:
    """In an orbit with a timeout: dump the call's traceback once it has run
    `dump_after` seconds (the kill itself, SIGKILL, leaves no trace).  Needs
    the GIL: a call stuck in C code that holds it is not dumped."""
    dumped = 0.0
    while True:
        time.sleep(max(period, 0.005))
        started = _call_started
        if started and started != dumped and time.monotonic() - started >= dump_after:
            dumped = started
            try:
                os.write(fd, f"\n{LATE_MARK}\n".encode())
                faulthandler.dump_traceback(file=fd, all_threads=True)
            except (OSError, ValueError):
                return


def _without_fork_frames(dump: str) -> str:
    """A faulthandler dump without the frames below _run_in_orbit (those are
    main's, as they were when it forked the orbit, not the task's) and
    without orbitpy's timeout watcher thread."""
    parts = []
    for part in dump.split("\n\n"):  # a thread each, or a message
        if part.rstrip().endswith(" in _bootstrap") and " in _watch_for_timeout" in part:
            continue
        lines = part.split("\n")
        for i, line in enumerate(lines):
            if line.startswith("  File ") and line.endswith(" in _run_in_orbit"):
                del lines[i + 1:]
                break
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def read_fault_dump(fd: int, pid: int, kind: str) -> str | None:
    """In main: the last traceback of `kind` (FATAL_MARK: a fatal signal;
    LATE_MARK: a call near its timeout) orbit process `pid` wrote to the
    faulthandler file `fd`."""
    if fd < 0 or not pid:
        return None
    try:
        text = os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")
    except OSError:
        return None
    head = f"{_FAULT_MARK}{pid}\n"
    at = text.rfind(head)
    if at < 0:
        return None
    section = text[at + len(head):].split(f"\n{_FAULT_MARK}", 1)[0]
    at = section.rfind(kind)
    if at < 0:
        return None
    return _without_fork_frames(section[at:].strip("\n")) or None


def _run_in_orbit(fn: Callable[..., Any], fault_fd: int, timeout: float,
                  arg: bytes) -> tuple[int, bytes]:
    """The orbit side of a call: runs in the orbit process."""
    global _call_started
    if _fault_fd != fault_fd:
        _arm_faulthandler(fault_fd, timeout)
    _call_started = time.monotonic()
    try:
        if arg:
            args, kwargs = _pickle.loads_call(arg)
        else:
            args, kwargs = (), {}
        result = fn(*args, **kwargs)
        del args, kwargs
        try:
            return STATUS_OK, (b"" if result is None else _pickle.dumps(result))
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
        return STATUS_RAISED, _describe_exception(e)
    finally:
        # What the call leaves behind may point into this call's view of the
        # arenas (e.g. a __dict__ made for an arena object), which the next
        # call replaces: the collector must never walk it again.
        _call_started = 0.0
        gc.freeze()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass


def _describe_exception(e: BaseException) -> bytes:
    """What main gets of an exception raised in the orbit: the exception
    pickled on its own (main may fail to rebuild it), and, always, its type's
    name, its str() and the formatted traceback."""
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    cls = type(e)
    name = cls.__qualname__ if cls.__module__ == "builtins" else \
        f"{cls.__module__}.{cls.__qualname__}"
    try:
        text = str(e)
    except Exception as se:
        text = f"<str() failed: {type(se).__name__}>"
    try:
        exc, why = _pickle.dumps(e), ""
    except Exception as pe:
        exc, why = b"", f"it cannot be pickled: {type(pe).__name__}: {pe}"
    return _pickle.dumps((exc, tb, name, text, why))


def _name_of(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
