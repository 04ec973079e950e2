"""What the Python layer knows of the kernel backend (csrc/ks/).

The kernel backend (ORBITPY_BACKEND=kernel, or 'auto' on a kernel with the
orbit system calls) makes each call's snapshot with the orbit_update system
call of kernel/patches: the orbit's memory in an area becomes a copy-on-write
share of main's, and nothing is copied.  Everything else it takes from the userspace backend:

- the snapshot modes, which here only say how main finds the pages it
  wrote for orbit_area_changed() ('uffd', 'full'; 'mprotect' is refused:
  its read-only pieces would not match the orbit's mapping), and
  ORBITPY_SNAPSHOT, which picks one for arenas that ask for none;
- the address-space reservation shared by every arena (ORBITPY_RESERVE),
  writable in this backend.

Forced on a kernel without the system call, the C core's operations fail
with ENOSYS; importing orbitpy then fails at once, saying so (see
_require_orbit_calls), rather than at the first arena or call.

_arena.py uses only the names below (NAME, check_size, snapshot_mode,
area_error, area_created), as for the userspace backend's module.
"""

from __future__ import annotations

import errno
import platform
from typing import Any

from . import _backend_user, _core

# orbit_backend_name() of the C core this module describes.
NAME = "kernel"
# The mode hints the backend knows ('auto': its choice); 'mprotect' is
# known and refused (ENOTSUP, see area_error).
MODES = _backend_user.MODES


def kernel_has_orbit_calls() -> bool:
    """Does this kernel answer orbit_update's probe (the C core's, which
    decides whether the kernel backend may run)?"""
    return _core.kernel_has_calls()


def _no_orbit_calls() -> OSError:
    return OSError(errno.ENOSYS,
                   f"ORBITPY_BACKEND=kernel asks for the kernel backend, but this kernel "
                   f"({platform.release()}) has no orbit system calls (orbit_update: a "
                   f"kernel built with kernel/patches, see kernel/README.md); unset "
                   f"ORBITPY_BACKEND (or set it to 'user' or 'auto') to use the "
                   f"userspace backend")


def _require_orbit_calls() -> None:
    """When the C core runs this backend: raise if the kernel cannot."""
    if _core.BACKEND == NAME and not kernel_has_orbit_calls():
        raise _no_orbit_calls()


def check_size(size: int) -> int:
    """Before an arena of `size` bytes is made: raise if the reservation
    cannot hold it.  Returns the reservation's size."""
    return _backend_user.check_size(size)


def snapshot_mode(requested: str | None) -> str:
    """The mode hint to create an arena with: `requested`, else
    ORBITPY_SNAPSHOT, else 'auto'.  ValueError for a mode the backend does
    not know."""
    return _backend_user.snapshot_mode(requested)


def area_error(e: OSError, size: int, mode: str, reserve: int) -> Exception | None:
    """The error to raise for creating an arena failing with `e`, or None to
    raise `e` itself."""
    if e.errno == errno.ENOSYS:
        return _no_orbit_calls()
    if e.errno == errno.ENOTSUP:
        return OSError(e.errno, f"snapshot mode {mode!r} is not available with the kernel "
                                f"backend (orbit_update shares pages only between mappings "
                                f"with main's permissions); use 'uffd', 'full' or 'auto'")
    return _backend_user.area_error(e, size, mode, reserve)


def area_created(area: Any) -> None:
    """After a core area is made: nothing (no mode here installs a handler)."""


# Importing orbitpy with the kernel backend forced on a kernel without the
# calls fails here, with the reason.
_require_orbit_calls()
