"""orbitpy: run auxiliary tasks in orbits.

An orbit is a process bound to your program that, on every call, sees a
consistent page snapshot of the memory you placed in arenas, runs a task there
(isolated: a crash or a runaway loop cannot hurt main) and hands results and
updates back.  Based on "Operating System Support for Safe and Efficient
Auxiliary Execution" (Jing & Huang, OSDI '22).
"""

from typing import TYPE_CHECKING, Any

from ._arena import Arena, arena
from ._collector import arena_collection_stats, collect_arenas, set_arena_collection
from ._core import Ring, ring_records
from ._future import OrbitFuture
from ._in_orbit import in_orbit, push
from ._orbit import (
    OrbitFunction,
    OrbitHandle,
    default_snapshot_mode,
    orbit,
    shutdown,
)
from .errors import (
    ArenaEscapeError,
    ArenaFull,
    OrbitAborted,
    OrbitBusy,
    OrbitClosed,
    OrbitCrashed,
    OrbitError,
    OrbitExit,
    OrbitStaleGlobalWarning,
    OrbitTimeout,
    RemoteTraceback,
)

__all__ = [
    "Arena", "ArenaEscapeError", "ArenaFull", "AsyncOrbitFuture", "OrbitAborted", "OrbitBusy",
    "OrbitClosed",
    "OrbitCrashed", "OrbitError", "OrbitExit",
    "OrbitFunction", "OrbitFuture", "OrbitHandle", "OrbitStaleGlobalWarning", "OrbitTimeout",
    "RemoteTraceback", "Ring",
    "arena", "arena_collection_stats", "collect_arenas", "default_snapshot_mode", "in_orbit",
    "orbit", "push", "ring_records", "set_arena_collection", "shutdown",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from ._aio import AsyncOrbitFuture


def __getattr__(name: str) -> Any:
    # asyncio (~0.1 s to import) is loaded only by programs that use it.
    if name == "AsyncOrbitFuture":
        from ._aio import AsyncOrbitFuture

        return AsyncOrbitFuture
    raise AttributeError(f"module 'orbitpy' has no attribute {name!r}")
