"""How arguments, results and updates cross between main and an orbit.

Everything goes through cloudpickle (so lambdas and closures work), with one
exception: a buffer that lives in an arena -- a memoryview from
``Arena.buffer`` or a NumPy array over one -- crosses as its address, and the
orbit sees the bytes of its own snapshot of the arena, with no copy.
"""

from __future__ import annotations

import io
import pickle
import sys
from typing import Any

import cloudpickle

from . import _core

_ARENA_TAG = "orbitpy.arena-buffer"


def _arena_for(addr: int, nbytes: int) -> Any:
    from ._arena import arena_containing

    return arena_containing(addr, nbytes)


class _Pickler(cloudpickle.Pickler):
    def __init__(self, file: io.BytesIO, arenas: list[Any]) -> None:
        super().__init__(file, protocol=5)
        self.arenas = arenas

    def persistent_id(self, obj: Any) -> Any:
        t = type(obj)
        if t is memoryview:
            addr, nbytes, contiguous = _core.buffer_address(obj)
            arena = _arena_for(addr, nbytes)
            if arena is None:
                return None
            if not contiguous:
                raise TypeError("a non-contiguous memoryview of an arena cannot be passed; "
                                "pass the whole buffer or a contiguous slice")
            self._note(arena)
            return (_ARENA_TAG, "memoryview", addr, nbytes, obj.readonly, obj.format,
                    obj.shape)
        np = sys.modules.get("numpy")
        if np is not None and t is np.ndarray:
            iface = obj.__array_interface__
            addr = iface["data"][0]
            arena = _arena_for(addr, max(obj.nbytes, 1))
            if arena is None:
                return None
            lo, hi = _extent(addr, obj.shape, obj.strides, obj.itemsize)
            self._note(arena)
            return (_ARENA_TAG, "ndarray", lo, hi - lo, addr - lo, obj.shape, obj.strides,
                    obj.dtype.str, not obj.flags.writeable)
        return None

    def _note(self, arena: Any) -> None:
        if arena not in self.arenas:
            self.arenas.append(arena)


def _extent(addr: int, shape: tuple[int, ...], strides: tuple[int, ...],
            itemsize: int) -> tuple[int, int]:
    lo = hi = addr
    for n, s in zip(shape, strides, strict=True):
        if n == 0:
            return addr, addr
        if s > 0:
            hi += s * (n - 1)
        else:
            lo += s * (n - 1)
    return lo, hi + itemsize


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == _ARENA_TAG):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        if pid[1] == "memoryview":
            _, _, addr, nbytes, readonly, fmt, shape = pid
            mv = _core.memory_at(addr, nbytes, readonly)
            if fmt != "B" or len(shape) != 1:
                mv = mv.cast("B").cast(fmt, shape)
            return mv
        _, _, lo, span, offset, shape, strides, dtype, readonly = pid
        import numpy as np

        arr = np.ndarray(shape, dtype=np.dtype(dtype), buffer=_core.memory_at(lo, span),
                         offset=offset, strides=strides)
        if readonly:
            arr.flags.writeable = False
        return arr


def dumps(obj: Any, arenas: list[Any] | None = None) -> bytes:
    """Pickle obj; arenas that hold buffers in it are appended to `arenas`."""
    buf = io.BytesIO()
    _Pickler(buf, arenas if arenas is not None else []).dump(obj)
    return buf.getvalue()


def loads(data: bytes) -> Any:
    return _Unpickler(io.BytesIO(data)).load()
