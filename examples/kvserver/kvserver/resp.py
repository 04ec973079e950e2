"""RESP2: parsing client requests and encoding replies."""

from __future__ import annotations

from typing import Any


class ProtocolError(Exception):
    """The client sent something that is not RESP: Redis answers it and closes."""


class Status(str):
    """A simple string reply (``+OK``)."""


class Error(str):
    """An error reply (``-ERR ...``): the text after the dash."""


class NilArray:
    """The null array reply (``*-1``)."""


NIL_ARRAY = NilArray()
OK = Status("OK")
MAX_BULK = 512 * 1024 * 1024
MAX_MULTIBULK = 1024 * 1024


def parse_command(buf: bytearray, pos: int) -> tuple[list[bytes] | None, int]:
    """The command starting at buf[pos], and where the next one starts.

    (None, pos) when the command is not complete yet.  Accepts RESP arrays of
    bulk strings (what clients send) and inline commands (telnet)."""
    n_buf = len(buf)
    if pos >= n_buf:
        return None, pos
    if buf[pos] != 42:  # not '*': an inline command, one line of words
        end = buf.find(b"\n", pos)
        if end < 0:
            if n_buf - pos > 64 * 1024:
                raise ProtocolError("Protocol error: too big inline request")
            return None, pos
        line = bytes(buf[pos:end]).rstrip(b"\r")
        return line.split(), end + 1
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None, pos
    try:
        count = int(buf[pos + 1:end])
    except ValueError:
        raise ProtocolError("Protocol error: invalid multibulk length") from None
    if count > MAX_MULTIBULK:
        raise ProtocolError("Protocol error: invalid multibulk length")
    cur = end + 2
    argv: list[bytes] = []
    for _ in range(count):
        if cur >= n_buf:
            return None, pos
        if buf[cur] != 36:  # '$'
            raise ProtocolError(f"Protocol error: expected '$', got '{chr(buf[cur])}'")
        end = buf.find(b"\r\n", cur)
        if end < 0:
            return None, pos
        try:
            size = int(buf[cur + 1:end])
        except ValueError:
            raise ProtocolError("Protocol error: invalid bulk length") from None
        if size < 0 or size > MAX_BULK:
            raise ProtocolError("Protocol error: invalid bulk length")
        start = end + 2
        if start + size + 2 > n_buf:
            return None, pos
        argv.append(bytes(buf[start:start + size]))
        cur = start + size + 2
    return argv, cur


def encode(reply: Any, out: list[bytes]) -> None:
    """Append the RESP2 encoding of reply to out."""
    if isinstance(reply, bytes):
        out.append(b"$%d\r\n%b\r\n" % (len(reply), reply))
    elif isinstance(reply, Status):
        out.append(b"+%b\r\n" % reply.encode())
    elif isinstance(reply, Error):
        out.append(b"-%b\r\n" % reply.encode())
    elif isinstance(reply, bool):
        out.append(b":1\r\n" if reply else b":0\r\n")
    elif isinstance(reply, int):
        out.append(b":%d\r\n" % reply)
    elif reply is None:
        out.append(b"$-1\r\n")
    elif isinstance(reply, NilArray):
        out.append(b"*-1\r\n")
    elif isinstance(reply, str):
        data = reply.encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    elif isinstance(reply, (list, tuple)):
        out.append(b"*%d\r\n" % len(reply))
        for item in reply:
            encode(item, out)
    else:
        raise TypeError(f"cannot encode {type(reply).__name__} as RESP")
