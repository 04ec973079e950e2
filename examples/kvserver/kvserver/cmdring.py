"""The command-timing ring: main appends one record per command to an
``orbitpy.Ring`` (an arena buffer); the slow-log task reads the records
appended since its last run.

A record holds the command's start (µs since the epoch), its duration (µs),
its argument count, and its request as it came off the wire (RESP, cut to
REQUEST bytes): copying a slice of the connection's input buffer costs main
a fraction of a microsecond, where rebuilding the arguments would cost
several, and main pays this for every command.  The slow-log task parses the
arguments back, for the few slow ones.

A ring of records, not a list of tuples: appending allocates nothing in the
arena (no ``with arena:`` block, no garbage for the arena's allocator, no
objects for an orbit call's check to look at) and is one C call
(``Ring.append``, ~0.2 µs).  An orbit reads its snapshot of the ring; a
thread reads main's live ring while it holds the GIL, so it never sees a
record half written.
"""

from __future__ import annotations

from collections.abc import Iterator

import orbitpy

REQUEST = 224               # request bytes kept per command
SLOWLOG_MAX_ARGS = 32       # as Redis: argv kept per entry ...
SLOWLOG_MAX_ARG_LEN = 128   # ... and bytes per argument


def command_ring(arena: orbitpy.Arena, slots: int) -> orbitpy.Ring:
    """A ring of `slots` command records in `arena`; append one with
    ``ring.append(start_us, dur_us, argc, 0, wire, start, end)``."""
    return arena.ring(slots, fields=3, payload=REQUEST)


def ring_bytes(slots: int) -> int:
    """Arena bytes a command ring of `slots` records takes."""
    return orbitpy.Ring.size_for(slots, 3, REQUEST)


def entries(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, list[bytes]]]:
    """(start_us, dur_us, argv) of the records start..end-1 still in the ring
    (older ones were overwritten: skipped).  argv as Redis's slow log keeps
    it: at most 32 arguments of at most 128 bytes, with what was left out
    said in the last one."""
    for _seq, start_us, dur_us, argc, request in orbitpy.ring_records(buf, start, end):
        yield start_us, dur_us, _slowlog_argv(request, argc)


def _slowlog_argv(request: bytes, argc: int) -> list[bytes]:
    """The arguments of a request (RESP multibulk, or an inline command),
    as many as the bytes kept hold, trimmed as Redis's slow log does."""
    argv = _parse(request)
    kept = min(argc, SLOWLOG_MAX_ARGS)
    out = [a if size <= SLOWLOG_MAX_ARG_LEN
           else a[:SLOWLOG_MAX_ARG_LEN] + b"... (%d more bytes)" % (size - SLOWLOG_MAX_ARG_LEN)
           for a, size in argv[:kept]]
    if argc > len(out):
        if len(out) == kept and argc > SLOWLOG_MAX_ARGS:
            out[-1] = b"... (%d more arguments)" % (argc - kept + 1)
        else:
            out.append(b"... (%d more arguments)" % (argc - len(out)))
    return out


def _parse(request: bytes) -> list[tuple[bytes, int]]:
    """The arguments in a (possibly cut) request, with their full sizes (the
    last one may be cut)."""
    if not request.startswith(b"*"):
        return [(a, len(a)) for a in request.split(b"\r\n", 1)[0].split()]
    argv: list[tuple[bytes, int]] = []
    cur = request.find(b"\r\n") + 2
    while 0 < cur < len(request) and request[cur:cur + 1] == b"$":
        eol = request.find(b"\r\n", cur)
        if eol < 0:
            break
        size = int(request[cur + 1:eol])
        if eol + 2 + size > len(request):  # cut: keep what is there
            argv.append((request[eol + 2:], size))
            break
        argv.append((request[eol + 2:eol + 2 + size], size))
        cur = eol + 2 + size + 2
    return argv
