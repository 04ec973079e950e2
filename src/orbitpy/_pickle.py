"""How arguments, results and updates cross between main and an orbit.

Everything may go through cloudpickle (so lambdas and closures work), with
one exception: a buffer that lives in an arena -- a memoryview from
``Arena.buffer`` or a NumPy array over one -- crosses as its address, and the
orbit sees the bytes of its own snapshot of the arena, with no copy.

Values made only of plain builtins and arena buffers (the common case for a
call's arguments) take the C pickler: same bytes on the wire, a fraction of
cloudpickle's per-object cost.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import sys
from collections import ChainMap
from typing import Any

import cloudpickle

from . import _core
from ._arena import area_containing
from ._heap import SCALARS

# What pickling a value made, and what it found on the way: (data, areas,
# roots).  areas: the core areas the data refers to by address (arena
# buffers, and with objects_by_address the areas of arena objects), which the
# call must map.  roots: with objects_by_address, the arena objects pickled by
# address, by HeapArea (the roots of the call's pre-call check); else empty.
# (A plain tuple: a NamedTuple costs ~0.4 us more per call.)
Pickled = tuple[bytes, list[Any], dict[Any, list[Any]]]


def _reduce_memoryview(mv: memoryview, areas: list[Any] | None = None) -> Any:
    addr, nbytes, contiguous = _core.buffer_address(mv)
    area = area_containing(addr, nbytes)
    if area is None:
        raise TypeError("cannot pickle a memoryview that is not in an orbitpy arena "
                        "(pass bytes(view) to send a copy)")
    if not contiguous:
        raise TypeError("a non-contiguous memoryview of an arena cannot be passed; "
                        "pass the whole buffer or a contiguous slice")
    if areas is not None and area not in areas:
        areas.append(area)
    return _arena_memoryview, (addr, nbytes, mv.readonly, mv.format, mv.shape)


def _reduce_ndarray(arr: Any, areas: list[Any] | None = None) -> Any:
    addr = arr.__array_interface__["data"][0]
    lo, hi = _extent(addr, arr.shape, arr.strides, arr.itemsize)
    area = area_containing(lo, max(hi - lo, 1)) if addr else None
    if area is None:
        return arr.__reduce_ex__(5)
    if areas is not None and area not in areas:
        areas.append(area)
    return _arena_ndarray, (lo, hi - lo, addr - lo, arr.shape, arr.strides, arr.dtype.str,
                            not arr.flags.writeable)


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


def _arena_memoryview(addr: int, nbytes: int, readonly: bool, fmt: str,
                      shape: tuple[int, ...]) -> memoryview:
    mv = _core.memory_at(addr, nbytes, readonly)
    if fmt != "B" or len(shape) != 1:
        mv = mv.cast("B").cast(fmt, shape)  # type: ignore[call-overload]
    return mv


def _arena_ndarray(lo: int, span: int, offset: int, shape: tuple[int, ...],
                   strides: tuple[int, ...], dtype: str, readonly: bool) -> Any:
    import numpy as np

    arr = np.ndarray(shape, dtype=np.dtype(dtype), buffer=_core.memory_at(lo, span),
                     offset=offset, strides=strides)
    if readonly:
        arr.flags.writeable = False
    return arr


class _FastPickler(pickle.Pickler):
    """Values of plain builtins (arena buffers by address, not noted)."""
    dispatch_table: Any = ChainMap({memoryview: _reduce_memoryview}, copyreg.dispatch_table)


class _CloudPickler(cloudpickle.Pickler):
    """Any value (arena buffers by address, not noted)."""
    dispatch_table: Any = ChainMap({memoryview: _reduce_memoryview},
                                   cloudpickle.Pickler.dispatch_table)


_numpy_type: Any = None     # numpy.ndarray, once NumPy is imported


class _Reducers(dict[type, Any]):
    """A pickler's own dispatch table: its reducers of arena buffers, then
    the shared table `base` (cheaper to make per pickler than a ChainMap)."""

    __slots__ = ("base",)
    base: Any

    def __missing__(self, cls: type) -> Any:
        return self.base[cls]


class _Finder:
    """A pickler that notes the core areas its data refers to (self.areas).
    Its dispatch table is its own: the reducers of arena buffers note there."""

    areas: list[Any]
    roots: dict[Any, list[Any]]

    def _own_reducers(self, base: Any) -> _Reducers:
        areas: list[Any] = []
        self.areas = areas
        self.roots = {}
        table = _Reducers()
        table.base = base
        table[memoryview] = lambda mv: _reduce_memoryview(mv, areas)
        if _numpy_type is not None:
            table[_numpy_type] = lambda arr: _reduce_ndarray(arr, areas)
        return table


class _FastFinder(_Finder, pickle.Pickler):
    def __init__(self, file: io.BytesIO) -> None:
        self.dispatch_table = self._own_reducers(copyreg.dispatch_table)
        super().__init__(file, protocol=5)


class _CloudFinder(_Finder, cloudpickle.Pickler):
    def __init__(self, file: io.BytesIO) -> None:
        self.dispatch_table = self._own_reducers(cloudpickle.Pickler.dispatch_table)
        super().__init__(file, protocol=5)


def _arena_object_id(pickler: _Finder, obj: Any) -> Any:
    """Arena objects (but scalars) cross by address; the orbit reads them
    from its snapshot.  Each is a root of the call's pre-call check."""
    if type(obj) in SCALARS:
        return None
    heap = _core.heap_of(obj)
    if heap is None:
        return None
    roots = pickler.roots
    if heap not in roots:
        roots[heap] = []
        if heap.area not in pickler.areas:
            pickler.areas.append(heap.area)
    roots[heap].append(obj)
    return ("A", id(obj))


class _FastArenaPickler(_FastFinder):
    def persistent_id(self, obj: Any) -> Any:
        return _arena_object_id(self, obj)


class _CloudArenaPickler(_CloudFinder):
    def persistent_id(self, obj: Any) -> Any:
        return _arena_object_id(self, obj)


class _ArenaUnpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        return _core.object_at(pid[1])


_numpy_seen: Any = None


def _learn_numpy() -> None:
    """Once NumPy is imported, arrays over arena memory cross by address too."""
    global _numpy_seen, _numpy_type
    np = sys.modules.get("numpy")
    if np is not _numpy_seen and np is not None:
        for cls in (_FastPickler, _CloudPickler):
            cls.dispatch_table.maps[0][np.ndarray] = _reduce_ndarray
        _numpy_type = np.ndarray
        _numpy_seen = np


# Pickled by value by the C pickler with no dispatch table.
_SCALARS = frozenset({int, float, str, bytes, bool, type(None), complex})
_PLAIN = _SCALARS | {memoryview}


def _is_plain(obj: Any, depth: int = 0) -> bool:
    """Made only of builtins (and arena buffers) the C pickler handles by value?"""
    t = type(obj)
    if t in _PLAIN:
        return True
    if depth > 3:
        return False
    if t is tuple or t is list:
        if len(obj) > 64:
            return False
        for x in obj:
            if type(x) not in _PLAIN and not _is_plain(x, depth + 1):
                return False
        return True
    if t is dict:
        if len(obj) > 64:
            return False
        for k, v in obj.items():
            if type(k) is not str or (type(v) not in _PLAIN and not _is_plain(v, depth + 1)):
                return False
        return True
    np = sys.modules.get("numpy")
    return np is not None and t is np.ndarray and obj.dtype.hasobject is False


def pickle_found(obj: Any, objects_by_address: bool = False) -> Pickled:
    """Pickle obj, with what the pickler found: the core areas its arena
    buffers are in, and with `objects_by_address` the arena objects it
    pickled by address (by HeapArea; otherwise they are pickled by value)."""
    buf = io.BytesIO()
    if _numpy_seen is None or _numpy_seen is not sys.modules.get("numpy"):
        _learn_numpy()
    cls: type[_FastFinder] | type[_CloudFinder]
    if not objects_by_address:
        cls = _FastFinder if _is_plain(obj) else _CloudFinder
    else:
        cls = _FastArenaPickler if _is_plain(obj) else _CloudArenaPickler
    p = cls(buf)
    p.dump(obj)
    return buf.getvalue(), p.areas, p.roots


def dumps(obj: Any) -> bytes:
    """Pickle obj (arena objects by value, arena buffers by address): what
    needs no findings (results, updates), with shared dispatch tables."""
    if type(obj) in _SCALARS:  # most results: no Pickler object (~3 us less)
        return pickle.dumps(obj, protocol=5)
    buf = io.BytesIO()
    if _numpy_seen is None or _numpy_seen is not sys.modules.get("numpy"):
        _learn_numpy()
    (_FastPickler if _is_plain(obj) else _CloudPickler)(buf, protocol=5).dump(obj)
    return buf.getvalue()


def loads(data: bytes) -> Any:
    return pickle.loads(data)


def dumps_call(args: tuple[Any, ...], kwargs: dict[str, Any],
               objects_by_address: bool = False) -> Pickled:
    """Encode a call's arguments, with the core areas (and arena objects, see
    pickle_found) they refer to by address.  Flat positional arguments that
    are scalars, strings or arena memoryviews (the common case: a few numbers
    and a buffer) skip the Pickler machinery: one C-level dumps of plain
    tuples."""
    if not kwargs and len(args) <= 16:
        areas: list[Any] = []
        enc: list[Any] = []
        bufs: list[int] = []
        for i, a in enumerate(args):
            t = type(a)
            if t is memoryview:
                addr, nbytes, contiguous = _core.buffer_address(a)
                area = area_containing(addr, nbytes)
                if area is None or not contiguous:
                    break  # the general path says what is wrong
                if area not in areas:
                    areas.append(area)
                enc.append((addr, nbytes, a.readonly, a.format, a.shape))
                bufs.append(i)
            elif t in _PLAIN:
                enc.append(a)
            else:
                break
        else:
            return b"F" + pickle.dumps((tuple(enc), tuple(bufs)), protocol=5), areas, {}
    data, areas, roots = pickle_found((args, kwargs), objects_by_address)
    return (b"A" if roots else b"P") + data, areas, roots


def loads_call(data: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if data[:1] == b"F":
        enc, bufs = pickle.loads(memoryview(data)[1:])
        if not bufs:
            return enc, {}
        args = list(enc)
        for i in bufs:
            args[i] = _arena_memoryview(*args[i])
        return tuple(args), {}
    if data[:1] == b"A":
        return _ArenaUnpickler(io.BytesIO(memoryview(data)[1:])).load()  # type: ignore[no-any-return]
    return pickle.loads(memoryview(data)[1:])  # type: ignore[no-any-return]
