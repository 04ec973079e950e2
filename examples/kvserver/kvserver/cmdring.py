"""The command-timing ring: main writes one fixed-size slot per command into
an arena buffer; the slow-log task reads the slots written since its last run.

A slot holds the command's timing and its request as it came off the wire
(RESP, cut to the slot's size): copying a slice of the connection's input
buffer costs main a fraction of a microsecond, where rebuilding the
arguments would cost several, and main pays this for every command.  The
slow-log task parses the arguments back, for the few slow ones.

A buffer, not a list of tuples: writing a slot allocates nothing in the
arena (no ``with arena:`` block, no garbage for the arena's allocator, no
objects for an orbit call's check to look at), and it is one ``pack_into``.
An orbit reads its snapshot of the bytes.  A thread reads them live: a slot
is written by one C call, which no other thread interrupts while main holds
the GIL; readers still take a slot only if it holds the sequence number they
expect both before and after they copied it (a slot overwritten by a later
lap of the ring is skipped).

Slot layout (SLOT bytes, little endian): seq i64, start_us i64, dur_us i64,
argc u16 (the command's argument count), nbytes u16 (of the request kept),
then the request's first nbytes bytes (zero-padded).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import orbitpy

SLOT = 256
HEADER = struct.Struct("<qqqHH")
SEQ = struct.Struct("<q")
REQUEST = SLOT - HEADER.size
WHOLE = struct.Struct(f"<qqqHH{REQUEST}s")  # the header and the request, in one go
SLOWLOG_MAX_ARGS = 32       # as Redis: argv kept per entry ...
SLOWLOG_MAX_ARG_LEN = 128   # ... and bytes per argument


class CommandRing:
    def __init__(self, arena: orbitpy.Arena, slots: int) -> None:
        self.slots = slots
        self.buf = arena.buffer(slots * SLOT)
        self.seq = 0  # slots written so far

    def record(self, wire: bytearray, start: int, end: int, argc: int,
               start_us: int, dur_us: int) -> None:
        """Record the command wire[start:end] (its request bytes)."""
        n = min(end - start, REQUEST)
        WHOLE.pack_into(self.buf, (self.seq % self.slots) * SLOT, self.seq, start_us, dur_us,
                        min(argc, 0xFFFF), n, wire[start:start + n])
        self.seq += 1


def entries(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, list[bytes]]]:
    """(start_us, dur_us, argv) of the slots with sequence numbers start..end-1
    still in the ring (older ones were overwritten: skipped).  argv as Redis's
    slow log keeps it: at most 32 arguments of at most 128 bytes, with what
    was left out said in the last one."""
    slots = len(buf) // SLOT
    for seq in range(max(start, end - slots), end):
        off = (seq % slots) * SLOT
        got, start_us, dur_us, argc, nbytes = HEADER.unpack_from(buf, off)
        if got != seq:
            continue
        request = bytes(buf[off + HEADER.size:off + HEADER.size + nbytes])
        if SEQ.unpack_from(buf, off)[0] != seq:  # rewritten meanwhile (a thread's live view)
            continue
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
