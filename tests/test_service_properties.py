"""Property test: what service code does in main between calls never makes
a call fail or read stale state (issue 9, item 8).

Main keeps arena state (a dict of instances of module-level classes and of
classes it makes as it goes) and, between calls, at random: pickles,
deep-copies and ``copy.copy``s arena objects (copyreg caches __slotnames__
on their classes), defines new classes (subclasses of the others) and stores
instances of them, rebinds class attributes and methods, and changes
instance attributes -- every store made inside ``with arena:``.  Calls are
sync, or ``call_async`` resolved later.  Every call must return what main
computes from its state when the call is issued, and none may raise.
"""

from __future__ import annotations

import copy
import gc
import itertools
import pickle
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import orbitpy
from orbitpy import _orbit


class Record:
    tag: Any = 0

    def __init__(self, val: Any) -> None:
        self.val = val

    def speak(self) -> Any:
        return "record"


class Slim:
    __slots__ = ("val",)
    tag: Any = 0

    def __init__(self, val: Any) -> None:
        self.val = val

    def speak(self) -> Any:
        return "slim"


def summary(state: dict[str, Any]) -> list[tuple[str, Any, Any, Any]]:
    """What a call computes (and main, to compare): per entry, its class,
    the class attribute, the instance attribute and a method's answer."""
    return [(type(v).__name__, type(v).tag, v.val, v.speak())
            for k, v in sorted(state.items())]


def speaker(answer: Any) -> Any:
    def speak(self: Any) -> Any:
        return answer
    return speak


_names = itertools.count()
_module = sys.modules[__name__]

values = st.one_of(st.integers(-3, 3), st.integers(-(2 ** 70), 2 ** 70), st.text(max_size=6))
steps = st.lists(st.one_of(
    st.tuples(st.just("pickle"), st.integers(0, 50)),
    st.tuples(st.just("deepcopy"), st.integers(0, 50)),
    st.tuples(st.just("copy"), st.integers(0, 50)),
    st.tuples(st.just("new_class"), st.integers(0, 50), values),
    st.tuples(st.just("class_attr"), st.integers(0, 50), values),
    st.tuples(st.just("method"), st.integers(0, 50), values),
    st.tuples(st.just("instance_attr"), st.integers(0, 50), values),
    st.tuples(st.just("call")),
    st.tuples(st.just("call_async")),
), min_size=1, max_size=14)


@pytest.fixture
def no_refresh_limit() -> Iterator[None]:
    saved = _orbit.CLASS_REFRESH_LIMIT
    _orbit.CLASS_REFRESH_LIMIT = (1_000_000, 60.0)
    yield
    _orbit.CLASS_REFRESH_LIMIT = saved


def reset_module_classes() -> None:
    """Module-level classes outlive an example: give them back their state."""
    for cls in (Record, Slim):
        cls.tag = 0
        for name in ("speak", "__slotnames__"):
            if name in cls.__dict__ and name != "speak":
                delattr(cls, name)
    Record.speak = lambda self: "record"  # type: ignore[method-assign]
    Slim.speak = lambda self: "slim"  # type: ignore[method-assign]


def run_plan(arena: orbitpy.Arena, fn: Any, plan: list[tuple[Any, ...]],
             made: list[str]) -> None:
    classes: list[type] = [Record, Slim]
    with arena:
        state: dict[str, Any] = {"r": Record(1), "s": Slim("one")}
    assert fn(state) == summary(state)
    pending: list[tuple[Any, Any]] = []
    for step in plan:
        kind = step[0]
        objs = [state[k] for k in sorted(state)]
        if kind == "pickle":
            obj = objs[step[1] % len(objs)]
            assert summary({"x": pickle.loads(pickle.dumps(obj))}) == summary({"x": obj})
        elif kind == "deepcopy":
            copy.deepcopy(objs[step[1] % len(objs)])
        elif kind == "copy":
            copy.copy(objs[step[1] % len(objs)])
        elif kind == "new_class":
            base = classes[step[1] % len(classes)]
            name = f"Made{next(_names)}"
            cls = type(name, (base,), {"tag": step[2], "__module__": __name__})
            setattr(_module, name, cls)  # so that pickle finds it
            made.append(name)
            classes.append(cls)
            with arena:
                state[name] = cls(step[2])
        elif kind == "class_attr":
            # (class dicts are not arena state: their values are made outside)
            classes[step[1] % len(classes)].tag = step[2]
        elif kind == "method":
            classes[step[1] % len(classes)].speak = speaker(step[2])
        elif kind == "instance_attr":
            with arena:
                objs[step[1] % len(objs)].val = step[2]
        elif kind == "call":
            assert fn(state) == summary(state)
        else:
            fut = fn.call_async(state)
            pending.append((fut, summary(state)))
    assert fn(state) == summary(state)
    for fut, want in pending:
        assert fut.result(timeout=60) == want
    if not any(step[0] in ("new_class", "class_attr", "method") for step in plan):
        # pickles and copies cache __slotnames__ only: no restart
        assert fn.orbit.stats()["class_refreshes"] == 0


@pytest.mark.timeout(300)
@settings(max_examples=30, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=steps)
def test_calls_see_what_main_has_whatever_main_does_with_classes(
        no_refresh_limit: None, plan: list[tuple[Any, ...]]) -> None:
    reset_module_classes()
    arena = orbitpy.arena(8 << 20)
    fn = orbitpy.orbit(timeout=60)(summary)
    made: list[str] = []  # module globals naming the classes made here
    try:
        run_plan(arena, fn, plan, made)
    finally:
        fn.orbit.close()
        for name in made:
            delattr(_module, name)
        gc.collect()
        arena.close()
