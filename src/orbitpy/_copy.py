"""arena.copy(): a deep copy, built inside an arena, of objects made elsewhere.

An object made outside ``with arena:`` (a parsed request body, a value from a
library) cannot be stored into arena state by reference: the orbit would not
have it.  The copy is made with the arena current, so every object of it lives
in the arena.  It is deep and keeps aliasing within the copied object (an
object reached twice is copied once, cycles included), as copy.deepcopy does.

What is not copied, because orbits have it already or it is no value:
classes, functions, modules, Enum members (singletons made with their class),
and the interpreter's static objects (None, True, small ints, ...).  Other
objects are rebuilt by type (builtin containers, deque, defaultdict,
OrderedDict, Decimal) or through the pickle protocol (``__reduce_ex__``), as
copy.deepcopy does for instances of classes: dataclasses, namedtuples,
datetime values, UUID, Counter.  The reduce step itself runs outside the
arena, so its temporaries and whatever it caches (copyreg's ``__slotnames__``)
do not land there.
"""

from __future__ import annotations

import decimal
import enum
import types
from collections import OrderedDict, defaultdict, deque
from operator import neg
from typing import Any

from . import _core, _heap

# Kept by reference: the orbit has them (or the check refuses them).
_SHARED = (type, types.FunctionType, types.BuiltinFunctionType, types.ModuleType,
           types.MethodType, enum.Enum)


class ArenaCopier:
    """One arena.copy(): the memo maps id(original) -> copy."""

    def __init__(self) -> None:
        self.memo: dict[int, Any] = {}
        self.keep: list[Any] = []  # originals stay alive: their ids must not be reused

    def copy(self, x: Any) -> Any:
        if _core.is_static(x) or isinstance(x, _SHARED):
            return x
        i = id(x)
        if i in self.memo:
            return self.memo[i]
        y = self._copy(x)
        self.memo[i] = y
        self.keep.append(x)
        return y

    def _copy(self, x: Any) -> Any:
        cls = type(x)
        if cls in (int, float, complex):
            return neg(neg(x))  # a new object (negation is exact, NaNs and -0.0 too)
        if cls is str:
            return x.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")
        if cls is bytes:
            return bytes(memoryview(x))
        if cls is tuple:
            items = tuple(self.copy(v) for v in x)
            # A cycle through a mutable may have copied x already.
            return self.memo.get(id(x), items)
        if cls is frozenset:
            return frozenset(self.copy(v) for v in x)
        if cls is bytearray:
            return bytearray(x)
        if cls is decimal.Decimal:
            return x.copy_sign(x)  # exact, and a new object (its digits too)
        y: Any
        if cls is list:
            y = self.memo[id(x)] = []
            self.keep.append(x)
            y.extend(self.copy(v) for v in x)
            return y
        if cls is set:
            y = self.memo[id(x)] = set()
            self.keep.append(x)
            y.update(self.copy(v) for v in x)
            return y
        if cls is deque:
            y = self.memo[id(x)] = deque(maxlen=x.maxlen)
            self.keep.append(x)
            y.extend(self.copy(v) for v in x)
            return y
        if cls in (dict, OrderedDict, defaultdict):
            y = self.memo[id(x)] = (defaultdict(self.copy(x.default_factory))
                                    if cls is defaultdict else cls())
            self.keep.append(x)
            for k, v in list(x.items()):
                y[self.copy(k)] = self.copy(v)
            return y
        return self._reduce(x)

    def _reduce(self, x: Any) -> Any:
        _heap.enter(None)  # the protocol's temporaries and caches: outside
        try:
            try:
                rv = x.__reduce_ex__(4)
            except TypeError as e:
                raise TypeError(f"arena.copy cannot copy a {type(x).__name__}: {e}") from None
        finally:
            _heap.leave(None)
        if isinstance(rv, str):  # a global the object is known by: no copy
            return x
        func, args, state, listiter, dictiter = (*rv, None, None, None)[:5]
        y = func(*[self.copy(a) for a in args])
        self.memo[id(x)] = y
        self.keep.append(x)
        if state is not None:
            state = self.copy(state)
            if hasattr(y, "__setstate__"):
                y.__setstate__(state)
            else:
                slotstate = None
                if isinstance(state, tuple) and len(state) == 2:
                    state, slotstate = state
                if state:
                    y.__dict__.update(state)
                for k, v in (slotstate or {}).items():
                    setattr(y, k, v)
        for item in listiter or ():
            y.append(self.copy(item))
        for k, v in dictiter or ():
            y[self.copy(k)] = self.copy(v)
        return y
