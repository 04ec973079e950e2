"""orbitpy.Ring: fixed-size records main appends to an arena buffer, and
orbitpy.ring_records, which reads them (in main or in an orbit)."""

from __future__ import annotations

import gc
from typing import Any

import pytest

import orbitpy


def test_records_read_back_in_order_with_their_fields_and_payload(new_arena: Any) -> None:
    ring = new_arena(1 << 20).ring(8, fields=3, payload=16)
    assert (ring.slots, ring.fields, ring.payload, ring.next) == (8, 3, 16, 0)
    assert ring.append(1, 2, 3, data=b"hello") == 0
    assert ring.append(-4, 5, 6, data=bytearray(b"x" * 40)) == 1   # cut to 16 bytes
    assert ring.append(7, 8, 9, 99, data=memoryview(b"abcdef"), start=2, end=4) == 2
    assert ring.append() == 3
    assert ring.next == 4
    assert orbitpy.ring_records(ring.buffer) == [
        (0, 1, 2, 3, b"hello"),
        (1, -4, 5, 6, b"x" * 16),
        (2, 7, 8, 9, b"cd"),          # a fourth value is dropped: 3 fields
        (3, 0, 0, 0, b""),
    ]
    assert orbitpy.ring_records(ring.buffer, 1, 3) == [
        (1, -4, 5, 6, b"x" * 16), (2, 7, 8, 9, b"cd")]
    assert orbitpy.ring_records(ring.buffer, 4) == []
    assert orbitpy.ring_records(ring.buffer, 2, 100)[-1][0] == 3


def test_a_full_ring_keeps_the_newest_records(new_arena: Any) -> None:
    ring = new_arena(1 << 20).ring(5, fields=1)
    for i in range(13):
        ring.append(i * 10)
    got = orbitpy.ring_records(ring.buffer, 0)
    assert [r[0] for r in got] == [8, 9, 10, 11, 12]
    assert [r[1] for r in got] == [80, 90, 100, 110, 120]
    assert all(r[2] == b"" for r in got)


def test_payload_edges(new_arena: Any) -> None:
    ring = new_arena(1 << 20).ring(4, fields=0, payload=8)
    ring.append(data=b"abc", start=-5, end=2)     # start clamped to 0
    ring.append(data=b"abc", start=2, end=1)      # empty
    ring.append(data=b"abcdefghijkl", start=3)    # to the end, cut to 8
    assert [r[1:] for r in orbitpy.ring_records(ring.buffer)] == [
        (b"ab",), (b"",), (b"defghijk",)]
    with pytest.raises(TypeError):
        ring.append(data=12345)
    with pytest.raises(OverflowError):
        ring.append(1 << 64)


def test_bad_arguments_say_what_is_wrong(new_arena: Any) -> None:
    a = new_arena(1 << 20)
    with pytest.raises(ValueError, match="at least 1 slot"):
        a.ring(0)
    with pytest.raises(ValueError, match="fields must be 0..4"):
        a.ring(4, fields=5)
    with pytest.raises(ValueError, match="payload"):
        a.ring(4, payload=-1)
    with pytest.raises(TypeError, match="slots must be an int"):
        a.ring(4.0)  # type: ignore[arg-type]
    small = a.buffer(64)
    with pytest.raises(ValueError, match="Ring.size_for"):
        orbitpy.Ring(small, 4, 3, 0)
    with pytest.raises(ValueError, match="not a ring"):
        orbitpy.ring_records(a.buffer(128))
    with pytest.raises(BufferError):  # not writable
        orbitpy.Ring(b"read-only bytes" * 10, 1, 0, 0)


def test_an_orbit_reads_the_records_added_since_its_last_call(make_orbit: Any,
                                                               new_arena: Any) -> None:
    ring = new_arena(4 << 20).ring(1000, fields=2, payload=32)

    @make_orbit
    def slow(buf: memoryview, since: int, threshold: int) -> tuple[int, list[Any]]:
        recs = orbitpy.ring_records(buf, since)
        return (recs[-1][0] + 1 if recs else since,
                [(r[2], r[3]) for r in recs if r[2] >= threshold])

    since, seen = 0, []
    for rnd in range(5):
        for i in range(300):
            ring.append(rnd, i, data=b"cmd-%d-%d" % (rnd, i))
        since, slow_ones = slow(ring.buffer, since, 295)
        seen += slow_ones
        assert since == ring.next
    assert seen == [(i, b"cmd-%d-%d" % (r, i)) for r in range(5) for i in range(295, 300)]


def test_the_buffer_outlives_a_dropped_ring(new_arena: Any) -> None:
    ring = new_arena(1 << 20).ring(4, fields=1)
    ring.append(5)
    buf = ring.buffer
    del ring
    gc.collect()
    assert orbitpy.ring_records(buf) == [(0, 5, b"")]
