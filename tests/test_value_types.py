"""The values services store, in arenas: datetime, date, time, timedelta,
timezone, Decimal, UUID, Enum members, deque, OrderedDict, defaultdict,
Counter, dataclasses (plain, slots, frozen) and namedtuples.

Each lives in an arena (an Enum member is referred to: it is a singleton the
orbit has with its class) and crosses to the orbit by address; the orbit reads
it as main has it at call time.  C types are checked by their layout
(_heap/heap_types.c): a deque's blocks, an OrderedDict's nodes and a Decimal's
digits must be in the arena too, and a C type the checker does not know is
refused with advice.  arena.copy() brings objects made elsewhere in.
"""

from __future__ import annotations

import array
import collections
import dataclasses
import datetime
import decimal
import enum
import gc
import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import orbitpy
from orbitpy import _core

BIG = 1 << 40  # ints beyond the small-int cache: each one is a new object
# Counter.update's isinstance(x, Mapping) caches a weak reference to str in
# the ABC's caches; made inside a block, that global cache would hold arena
# memory (see the report: a general hazard of ABC checks inside `with`).
collections.Counter("warm").update("up")
UTC = datetime.UTC


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Perm(enum.IntFlag):
    R = 4
    W = 2


@dataclasses.dataclass
class Point:
    x: int
    tags: list[str]


@dataclasses.dataclass(slots=True)
class SlotPoint:
    x: int
    tags: list[str]


@dataclasses.dataclass(frozen=True)
class Frozen:
    name: str
    when: datetime.datetime


Pair = collections.namedtuple("Pair", "left right")


def _set(key: str, make: Callable[[Any], Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(state: dict[str, Any]) -> None:
        state[key] = make(state[key])
    return mutate


# kind -> (make the value, change it: in place for mutable ones, else replace it)
VALUES: dict[str, tuple[Callable[[], Any], Callable[[dict[str, Any]], None]]] = {
    "datetime": (lambda: datetime.datetime(2024, 5, 17, 12, 30, 1, 250),
                 _set("v", lambda v: v + datetime.timedelta(hours=1))),
    "datetime_utc": (lambda: datetime.datetime(2024, 5, 17, 12, 30, tzinfo=UTC),
                     _set("v", lambda v: v.replace(minute=31))),
    "datetime_own_tz": (
        lambda: datetime.datetime(2024, 5, 17, tzinfo=datetime.timezone(
            datetime.timedelta(hours=-5), "EST" * 2)),
        _set("v", lambda v: v.replace(tzinfo=datetime.timezone(
            datetime.timedelta(hours=3), "X" * 3)))),
    "date": (lambda: datetime.date(2024, 5, 17),
             _set("v", lambda v: v + datetime.timedelta(days=40))),
    "time": (lambda: datetime.time(12, 30, 5, tzinfo=UTC),
             _set("v", lambda v: v.replace(hour=13))),
    "timedelta": (lambda: datetime.timedelta(days=3, seconds=7, microseconds=11),
                  _set("v", lambda v: v * 3)),
    "Decimal": (lambda: decimal.Decimal("12.50"),
                _set("v", lambda v: v + decimal.Decimal("0.25"))),
    "Decimal_long": (lambda: decimal.Decimal("1." + "31415926535" * 12),  # digits outside
                     _set("v", lambda v: v.copy_negate())),
    "UUID": (lambda: uuid.UUID(int=BIG * 12345),
             _set("v", lambda v: uuid.UUID(int=v.int + 1))),
    "Enum": (lambda: Color.RED, _set("v", lambda v: Color.GREEN)),
    "IntFlag": (lambda: Perm.R, _set("v", lambda v: Perm.W)),
    "deque": (lambda: collections.deque([BIG, "a" * 3, [1]], maxlen=500),
              lambda s: (s["v"].append(BIG + 1), s["v"].appendleft("b" * 2),
                         next(x for x in s["v"] if isinstance(x, list)).append(2))),
    "deque_long": (lambda: collections.deque(range(BIG, BIG + 1000)),
                   lambda s: (s["v"].rotate(77), s["v"].extend(range(300)),
                              s["v"].__setitem__(500, "x" * 5))),
    "OrderedDict": (lambda: collections.OrderedDict((f"k{i}", [i]) for i in range(50)),
                    lambda s: (s["v"].move_to_end("k3"), s["v"].pop("k7", None),
                               s["v"].__setitem__("new" * 2, [BIG]), s["v"]["k1"].append(1))),
    "defaultdict": (lambda: collections.defaultdict(list, {"a" * 2: [1]}),
                    lambda s: (s["v"]["b" * 2].append(BIG), s["v"]["a" * 2].append(2))),
    "Counter": (lambda: collections.Counter("mississippi" * 3),
                lambda s: s["v"].update("ppp" + "q" * 2)),
    "dataclass": (lambda: Point(BIG, ["a" * 2]),
                  lambda s: (s["v"].tags.append("b" * 2), setattr(s["v"], "x", BIG + 5))),
    "dataclass_slots": (lambda: SlotPoint(BIG, ["a" * 2]),
                        lambda s: (s["v"].tags.append("b" * 2),
                                   setattr(s["v"], "x", BIG + 5))),
    "dataclass_frozen": (lambda: Frozen("n" * 3, datetime.datetime(2020, 1, 2, tzinfo=UTC)),
                         _set("v", lambda v: dataclasses.replace(v, name="m" * 3))),
    "namedtuple": (lambda: Pair(BIG, [datetime.date(2020, 1, 1)]),
                   lambda s: s["v"].right.append(datetime.date(2021, 2, 2))),
}


def look(state: dict[str, Any]) -> tuple[int, str, bool]:
    v = state["v"]
    return id(v), repr(v), v == state["v"]


@pytest.mark.parametrize("kind", list(VALUES))
def test_value_made_in_arena_crosses_by_address_and_follows_changes(
        kind: str, make_orbit: Any, new_arena: Any) -> None:
    arena = new_arena(16 << 20)
    make, change = VALUES[kind]
    with arena:
        state = {"v": make()}
    f = make_orbit(look, timeout=10)
    assert f(state) == (id(state["v"]), repr(state["v"]), True)
    with arena:
        change(state)
    assert f(state) == (id(state["v"]), repr(state["v"]), True)
    # And again (the checker's incremental pass over what changed).
    with arena:
        change(state)
    assert f(state) == (id(state["v"]), repr(state["v"]), True)


def test_enum_members_are_the_orbits_own_singletons(make_orbit: Any, new_arena: Any) -> None:
    arena = new_arena(1 << 20)
    with arena:
        state = {"colors": [Color.RED, Color.GREEN, Color.RED], "perm": Perm.R}

    def same(state: dict[str, Any]) -> tuple[bool, bool, int]:
        return state["colors"][0] is Color.RED, state["perm"] is Perm.R, state["colors"][1].value

    f = make_orbit(same, timeout=10)
    assert f(state) == (True, True, 2)
    # A combination is no declared member: made (and cached) on first use,
    # maybe after the orbit started.  Made outside the arena, it is refused.
    combo = Perm.R | Perm.W
    with arena:
        state["perm"] = combo
    with pytest.raises(orbitpy.ArenaEscapeError) as ei:
        f(state)
    assert ei.value.path == "state['perm']" and "Perm" in ei.value.reason
    with arena:
        state["perm"] = Perm.R
    assert f(state) == (True, True, 2)


def test_deque_and_ordereddict_grown_outside_a_block_have_their_memory_moved_in(
        make_orbit: Any, new_arena: Any) -> None:
    """Blocks, nodes and node tables allocated outside `with` (main changing
    arena state in ordinary code) are moved into the arena, like list tables."""
    arena = new_arena(16 << 20)
    with arena:
        state = {"q": collections.deque(), "od": collections.OrderedDict()}

    def read(state: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        return list(state["q"]), list(state["od"].items())

    f = make_orbit(read, timeout=10)
    assert f(state) == ([], [])
    for i in range(300):  # several deque blocks, a node per key, a bigger node table
        state["q"].append(BIG + i)
        state["od"][f"key{i}"] = BIG + i
    state["od"].move_to_end("key5", last=False)
    moves = arena.stats()["checks"]["moves"]
    assert f(state) == (list(state["q"]), list(state["od"].items()))
    assert arena.stats()["checks"]["moves"] > moves
    state["q"].popleft()
    del state["od"]["key9"]
    assert f(state) == (list(state["q"]), list(state["od"].items()))


# ------------------------------------------------------------ soundness

def test_trap_deque_holding_an_outside_object_is_refused_with_its_path(
        make_orbit: Any, new_arena: Any) -> None:
    """A deque's items are checked (on 3.12 and 3.13 deque is a C heap type,
    once taken for a Python class: its blocks were never looked at)."""
    arena = new_arena(1 << 20)
    with arena:
        state = {"q": collections.deque([[1], [2], [3]])}

    def total(state: dict[str, Any]) -> int:
        return sum(len(x) for x in state["q"])

    f = make_orbit(total, timeout=10)
    assert f(state) == 3
    state["q"][1] = [5, 6]  # a store into a block only: the deque's header is unchanged
    with pytest.raises(orbitpy.ArenaEscapeError) as ei:
        f(state)
    assert ei.value.path == "state['q'][1]"
    assert "list" in ei.value.reason and "arena.copy" in ei.value.reason
    with arena:
        state["q"][1] = [5, 6]
    assert f(state) == 4
    state["q"].append([7])
    with pytest.raises(orbitpy.ArenaEscapeError) as ei:
        f(state)
    assert ei.value.path == "state['q'][3]"


def test_trap_defaultdict_and_ordereddict_holding_outside_objects_are_refused(
        make_orbit: Any, new_arena: Any) -> None:
    arena = new_arena(1 << 20)
    with arena:
        state = {"dd": collections.defaultdict(list), "od": collections.OrderedDict()}
    f = make_orbit(lambda state: (dict(state["dd"]), dict(state["od"])), timeout=10)
    assert f(state) == ({}, {})
    state["dd"]["k"].append(1)  # the default list was made outside the block
    with pytest.raises(orbitpy.ArenaEscapeError) as ei:
        f(state)
    assert ei.value.path == "state['dd']['k']"
    del state["dd"]["k"]
    state["od"]["x"] = {"made": "outside"}
    with pytest.raises(orbitpy.ArenaEscapeError) as ei:
        f(state)
    assert ei.value.path == "state['od']['x']"
    del state["od"]["x"]
    state["dd"].default_factory = lambda: [0]  # a function made outside the arena
    with pytest.raises(orbitpy.ArenaEscapeError) as ei:
        f(state)
    assert ei.value.path == "state['dd'].default_factory"
    state["dd"].default_factory = set
    assert f(state) == ({}, {})


def test_values_made_outside_are_refused_pointing_at_arena_copy(
        make_orbit: Any, new_arena: Any) -> None:
    arena = new_arena(1 << 20)
    with arena:
        state: dict[str, Any] = {}
    f = make_orbit(lambda state: repr(state), timeout=10)
    outside = {
        "when": datetime.datetime.now(),
        "price": decimal.Decimal("9.99"),
        "q": collections.deque([1]),
    }
    for key, value in outside.items():
        state[key] = value
        with pytest.raises(orbitpy.ArenaEscapeError) as ei:
            f(state)
        assert ei.value.path == f"state[{key!r}]"
        assert type(value).__name__ in ei.value.reason and "arena.copy" in ei.value.reason
        state[key] = arena.copy(value)
        assert f(state) == repr(state)


def test_datetime_with_a_timezone_made_outside_is_refused(make_orbit: Any,
                                                          new_arena: Any) -> None:
    arena = new_arena(1 << 20)
    tz = datetime.timezone(datetime.timedelta(hours=2))
    with arena:
        state = {"when": datetime.datetime(2024, 1, 1, tzinfo=tz)}
    f = make_orbit(lambda state: state["when"].isoformat(), timeout=10)
    with pytest.raises(orbitpy.ArenaEscapeError) as ei:
        f(state)
    assert ei.value.path == "state['when'].tzinfo"
    assert "timezone.utc" in ei.value.reason
    with arena:
        state["when"] = state["when"].astimezone(UTC)
    assert f(state) == "2023-12-31T22:00:00+00:00"


def test_trap_timezone_in_the_arena_with_an_offset_made_outside_is_refused(
        make_orbit: Any, new_arena: Any) -> None:
    """datetime and timezone are no collected objects: the check that a
    failure is reachable must still follow datetime -> tzinfo -> offset."""
    arena = new_arena(1 << 20)
    offset = datetime.timedelta(hours=2)  # made outside the arena
    with arena:
        tz = datetime.timezone(offset)
        state = {"when": datetime.datetime(2024, 1, 1, tzinfo=tz)}
    assert arena.contains(tz) and not arena.contains(offset)
    f = make_orbit(lambda state: state["when"].isoformat(), timeout=10)
    with pytest.raises(orbitpy.ArenaEscapeError) as ei:
        f(state)
    assert ei.value.path.startswith("state['when'].tzinfo")
    assert "timedelta" in ei.value.reason


class Samples(array.array):  # type: ignore[type-arg]
    pass


@pytest.mark.parametrize("make", [lambda: array.array("i", [1, 2]), lambda: Samples("d")],
                         ids=["array", "array_subclass"])
def test_types_the_checker_does_not_know_are_refused_with_advice(
        make: Callable[[], Any], make_orbit: Any, new_arena: Any) -> None:
    arena = new_arena(1 << 20)
    with arena:
        state = {"samples": make()}
    f = make_orbit(lambda state: len(state["samples"]), timeout=10)
    with pytest.raises(orbitpy.ArenaEscapeError) as ei:
        f(state)
    assert ei.value.path == "state['samples']"
    assert "array.array" in ei.value.reason and "arena.buffer()" in ei.value.reason


# ------------------------------------------------------------ arena.copy

def in_arena_everywhere(arena: orbitpy.Arena, root: Any) -> list[str]:
    """Objects reachable from root (what the collector and a few attributes
    show) that are neither in the arena nor shared by design."""
    bad, seen, todo = [], set(), [root]
    while todo:
        x = todo.pop()
        if (id(x) in seen or _core.is_static(x) or isinstance(x, (type, enum.Enum))
                or x is UTC):  # a singleton of the datetime module
            continue
        seen.add(id(x))
        if not arena.contains(x):
            bad.append(f"{type(x).__name__} {x!r:.40}")
        todo.extend(gc.get_referents(x))
        if isinstance(x, (datetime.datetime, datetime.time)):
            todo.append(x.tzinfo)
    return bad


def test_copy_is_deep_keeps_aliasing_and_lives_in_the_arena(make_orbit: Any,
                                                            new_arena: Any) -> None:
    arena = new_arena(16 << 20)
    body = json.loads('{"user": "ann", "tags": ["a", "b"], "score": 2.5, "n": 1099511627776}')
    shared = [BIG, "shared" * 2]
    body.update(
        one=shared, two=shared, point=Point(BIG, shared), pair=Pair(shared, (shared, 1.5)),
        slots=SlotPoint(3, shared), frozen=Frozen("f" * 2, datetime.datetime.now(UTC)),
        when=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone(
            datetime.timedelta(hours=1), "CET")),
        day=datetime.date.today(), span=datetime.timedelta(seconds=BIG),
        price=decimal.Decimal("19.99"), pi=decimal.Decimal("3." + "14159265358979" * 8),
        id=uuid.uuid4(), color=Color.GREEN, q=collections.deque([shared, 1], maxlen=9),
        dd=collections.defaultdict(list, {"x": shared}), od=collections.OrderedDict(z=shared),
        counts=collections.Counter("abracadabra"), fs=frozenset({"x" * 2, BIG}),
        raw=b"bytes" * 3, buf=bytearray(b"ba"), cplx=complex(1.5, BIG))
    body["self"] = body

    c = arena.copy(body)
    assert c is not body and c["self"] is c
    assert {k: v for k, v in c.items() if k != "self"} == \
           {k: v for k, v in body.items() if k != "self"}
    assert c["one"] is c["two"] is c["point"].tags is c["pair"].left is c["pair"].right[0] \
        is c["slots"].tags is c["q"][0] is c["dd"]["x"] is c["od"]["z"]
    assert c["one"] is not shared
    assert c["color"] is Color.GREEN and c["q"].maxlen == 9 and c["dd"].default_factory is list
    assert in_arena_everywhere(arena, c) == []

    def read(state: dict[str, Any]) -> tuple[int, str, bool]:
        c = state["body"]
        return id(c), repr({k: v for k, v in c.items() if k != "self"}), c["self"] is c

    with arena:
        state = {"body": c}
    f = make_orbit(read, timeout=10)
    expect = repr({k: v for k, v in c.items() if k != "self"})
    assert f(state) == (id(c), expect, True)


def test_copy_of_a_request_body_can_be_stored_where_the_original_cannot(
        make_orbit: Any, new_arena: Any) -> None:
    arena = new_arena(1 << 20)
    with arena:
        sessions: dict[str, Any] = {}
    f = make_orbit(lambda sessions: sorted((k, v["items"]) for k, v in sessions.items()),
                   timeout=10)
    body = json.loads('{"id": "s1", "items": [1, 2, 3]}')
    sessions[body["id"]] = body
    with pytest.raises(orbitpy.ArenaEscapeError) as ei:
        f(sessions)
    assert ei.value.path == "sessions['s1']" and "arena.copy" in ei.value.reason
    sessions[body["id"]] = arena.copy(body)
    assert f(sessions) == [("s1", [1, 2, 3])]


def test_copy_refuses_what_cannot_be_pickled_naming_it(new_arena: Any) -> None:
    arena = new_arena(1 << 20)
    with pytest.raises(TypeError, match="cannot copy a lock"):
        arena.copy({"lock": threading.Lock()})


def test_copy_runs_the_pickle_protocol_outside_the_arena(new_arena: Any) -> None:
    """copyreg caches a class's __slotnames__ the first time one of its
    instances is copied: that cache must not be an arena object."""
    class Slotted:
        __slots__ = ("a", "b")

        def __init__(self, a: Any, b: Any) -> None:
            self.a, self.b = a, b

    arena = new_arena(1 << 20)
    c = arena.copy(Slotted([1], "x" * 3))
    assert (c.a, c.b) == ([1], "xxx") and arena.contains(c) and arena.contains(c.a)
    assert not arena.contains(Slotted.__dict__["__slotnames__"])
