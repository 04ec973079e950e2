"""Stale globals (issue 9.7): a module global an orbit function reads,
rebound in main after the orbit process was forked, is reported once with
OrbitStaleGlobalWarning; unchanged globals and in-place mutation are not."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest

import orbitpy
from orbitpy._stale import GlobalsWatch, global_names

MakeOrbit = Callable[..., Any]

LIMIT = 10
TABLE: list[int] = [1, 2]
UNUSED = "never read by an orbit function"


def _scaled(x: int) -> int:
    return x * LIMIT  # a helper of the same module: its globals count too


def _restore() -> None:
    global LIMIT, TABLE
    LIMIT, TABLE = 10, [1, 2]


@pytest.fixture(autouse=True)
def fresh_globals() -> Any:
    _restore()
    yield
    _restore()


def stale_warnings(record: list[warnings.WarningMessage]) -> list[Any]:
    return [w.message for w in record if issubclass(w.category, orbitpy.OrbitStaleGlobalWarning)]


def test_rebound_global_is_warned_once(make_orbit: MakeOrbit) -> None:
    global LIMIT

    @make_orbit
    def limit() -> int:
        return LIMIT

    assert limit() == 10  # the orbit process is forked here
    LIMIT = 20
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert limit() == 10  # stale: the orbit has the value of its fork
        assert limit() == 10
        limit.call_async().result(timeout=10)
    got = stale_warnings(rec)
    assert len(got) == 1
    w = got[0]
    assert (w.function, w.name) == ("test_rebound_global_is_warned_once.<locals>.limit", "LIMIT")
    text = str(w)
    assert "'LIMIT'" in text and "limit" in text and "argument" in text and "restart" in text
    assert [r.filename for r in rec if r.message is w] == [__file__]  # points at the caller
    assert limit.orbit.stats()["stale_globals"] == 1
    limit.orbit.restart()  # the fix the warning names: a new fork sees the new value
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert limit() == 20


def test_unchanged_globals_are_not_warned(make_orbit: MakeOrbit) -> None:
    @make_orbit
    def total(x: int) -> int:
        return x + LIMIT + sum(TABLE) + len(UNUSED) * 0

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [total(i) for i in range(5)] == [13 + i for i in range(5)]
        total.orbit.restart()
        assert total(0) == 13
    assert total.orbit.stats()["stale_globals"] == 0


def test_mutation_in_place_is_not_rebinding(make_orbit: MakeOrbit) -> None:
    """Only rebinding is detected: an object mutated in place keeps its
    identity, and the orbit (a fork) does not see the mutation either."""

    @make_orbit
    def table() -> list[int]:
        return TABLE

    assert table() == [1, 2]
    TABLE.append(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert table() == [1, 2]  # stale, and not reported (see README Limits)
    assert table.orbit.stats()["stale_globals"] == 0


def test_globals_read_in_nested_code_and_helpers(make_orbit: MakeOrbit) -> None:
    global LIMIT, TABLE

    @make_orbit
    def nested() -> list[int]:
        return [_scaled(t) for t in TABLE]

    assert nested() == [10, 20]
    LIMIT, TABLE = 100, [5]
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert nested() == [10, 20]
    assert sorted(w.name for w in stale_warnings(rec)) == ["LIMIT", "TABLE"]
    assert nested.orbit.stats()["stale_globals"] == 2


def test_deleted_global_is_warned(make_orbit: MakeOrbit) -> None:
    globals()["DOOMED"] = 1

    @make_orbit
    def doomed() -> int:
        return DOOMED  # type: ignore[name-defined]  # noqa: F821

    try:
        assert doomed() == 1
    finally:
        del globals()["DOOMED"]
    with pytest.warns(orbitpy.OrbitStaleGlobalWarning, match="'DOOMED', deleted"):
        assert doomed() == 1


def test_global_names_scan() -> None:
    def reader() -> Any:
        return (lambda: LIMIT)(), [len(t) for t in [UNUSED]], _scaled(1)

    names = global_names(reader)
    assert {"LIMIT", "UNUSED", "_scaled", "len"} <= set(names)
    assert "TABLE" not in names
    assert GlobalsWatch.of(len) is None and global_names(len) == ()


def test_modules_are_not_watched() -> None:
    def reads_a_module() -> Any:
        return warnings.filters, LIMIT

    watch = GlobalsWatch.of(reads_a_module)
    assert watch is not None
    watch.forked()
    assert [n for n, _ in watch.watched] == ["LIMIT"]
    assert not watch.changed()
