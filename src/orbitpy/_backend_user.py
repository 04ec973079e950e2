"""What the Python layer knows of the userspace backend (csrc/us/).

The C core hides its backend behind csrc/orbit_sys.h; a few of the userspace
backend's facts still reach Python users, and they are gathered here:

- its snapshot modes ('uffd', 'mprotect', 'full') and the environment
  variable ORBITPY_SNAPSHOT that picks one for arenas that ask for none;
- its address-space reservation, shared by every arena (ORBITPY_RESERVE);
- its 'mprotect' mode's SIGSEGV handler, which must stay on top of those
  that faulthandler or signal.signal install later.

_arena.py uses only the names below (NAME, check_size, snapshot_mode,
area_error, area_created); a module for another backend provides the same.
"""

from __future__ import annotations

import errno
import functools
import os
from typing import Any

from . import _core

# orbit_backend_name() of the C core this module describes.
NAME = "userspace"
# The mode hints the backend knows ('auto': its choice).
MODES = ("auto", "uffd", "mprotect", "full")

_SIZE_SUFFIX = {"k": 10, "m": 20, "g": 30, "t": 40}


def _reserve_request() -> int:
    """Bytes ORBITPY_RESERVE asks for (64 GiB if unset), as the C core reads
    it; ValueError if it is not a size."""
    text = os.environ.get("ORBITPY_RESERVE", "")
    if not text:
        return 64 << 30
    digits, shift = text, 0
    if text[-1].lower() in _SIZE_SUFFIX:
        digits, shift = text[:-1], _SIZE_SUFFIX[text[-1].lower()]
    try:
        n = int(digits, 0) << shift if digits.strip() == digits else 0
    except ValueError:
        n = 0
    if n <= 0:
        raise ValueError(f"ORBITPY_RESERVE={text!r} is not a size: give a positive number "
                         f"of bytes, optionally with a suffix K, M, G or T (e.g. 16G)")
    return n


def _reservation_failed() -> Exception:
    """Why the C core has no reservation: a bad ORBITPY_RESERVE, or too
    little address space for it."""
    want = _reserve_request()  # raises ValueError for a bad value
    import resource

    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    limit = (f"the address-space limit (ulimit -v) is {soft} bytes"
             if soft != resource.RLIM_INFINITY else "the address space is too small")
    return MemoryError(f"could not reserve {want} bytes of address space for arenas: {limit}; "
                       f"set ORBITPY_RESERVE to reserve less (e.g. ORBITPY_RESERVE=1G, enough "
                       f"for the arenas you need) before the first arena is made")


def check_size(size: int) -> int:
    """Before an arena of `size` bytes is made: raise if the reservation
    cannot hold it.  Returns the reservation's size."""
    reserve = int(_core.reservation_size())
    if reserve == 0:
        raise _reservation_failed()
    if size > reserve:
        raise ValueError(
            f"arena size {size} exceeds the {reserve}-byte address range reserved for "
            f"arenas (raise it with ORBITPY_RESERVE before importing orbitpy)")
    return reserve


def snapshot_mode(requested: str | None) -> str:
    """The mode hint to create an arena with: `requested`, else
    ORBITPY_SNAPSHOT, else 'auto'.  ValueError for a mode the backend does
    not know."""
    mode = requested or os.environ.get("ORBITPY_SNAPSHOT", "auto") or "auto"
    if mode not in MODES:
        raise ValueError(f"snapshot mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def area_error(e: OSError, size: int, mode: str, reserve: int) -> Exception | None:
    """The error to raise for creating an arena failing with `e`, or None to
    raise `e` itself."""
    if e.errno == errno.ENOTSUP:
        return OSError(e.errno, f"snapshot mode {mode!r} is not available on this kernel")
    if e.errno == errno.ENOMEM:
        return MemoryError(f"no room for a {size}-byte arena in the {reserve}-byte reservation "
                           f"(set ORBITPY_RESERVE to reserve more)")
    return None


def area_created(area: Any) -> None:
    """After a core area is made: what its mode needs from the process."""
    if area.mode == "mprotect":
        _keep_fault_handler_on_top()


_guards_installed = False


def _keep_fault_handler_on_top() -> None:
    """mprotect mode tracks writes with a SIGSEGV handler that must run first.
    faulthandler.enable() or signal.signal(SIGSEGV, ...) called later would
    put theirs on top and take tracking faults for crashes; re-arm ours after
    them (it chains to theirs for real faults)."""
    global _guards_installed
    if _guards_installed:
        return
    import faulthandler
    import signal

    def rearming(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                _core.rearm_fault_handler()
        return wrapper

    set_signal = signal.signal

    @functools.wraps(set_signal)
    def signal_signal(signalnum: Any, handler: Any) -> Any:
        try:
            return set_signal(signalnum, handler)
        finally:
            if signalnum == signal.SIGSEGV:
                _core.rearm_fault_handler()

    faulthandler.enable = rearming(faulthandler.enable)
    faulthandler.disable = rearming(faulthandler.disable)
    signal.signal = signal_signal
    _guards_installed = True
