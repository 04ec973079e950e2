"""The snapshot file BGSAVE and SAVE write and --load reads (a format of our own).

    b"KVSNAP1\\n"
    per key: type (b"S" string, b"L" list, b"H" hash, b"T" set),
             key, expiry in unix ms (-1: none), value
             (a string; or a count then the items; a hash: count then field, value pairs)
    b"E", then the CRC-32 of everything before it (u32)

Strings are a u32 length then the bytes; counts are u32; expiry is i64, little endian.
The file is written to a temporary name and renamed into place, so a reader
never sees half of one (as Redis does with temp-<pid>.rdb).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Mapping
from typing import Any, BinaryIO

MAGIC = b"KVSNAP1\n"
FILENAME = "dump.kvs"
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")


class _CrcWriter:
    def __init__(self, f: BinaryIO) -> None:
        self.f, self.crc, self.parts, self.size = f, 0, [], 0

    def write(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)
        if self.size >= 1 << 16:
            self.flush()

    def flush(self) -> None:
        chunk = b"".join(self.parts)
        self.crc = zlib.crc32(chunk, self.crc)
        self.f.write(chunk)
        self.parts, self.size = [], 0


def _string(w: _CrcWriter, s: bytes) -> None:
    w.write(_U32.pack(len(s)))
    w.write(s)


def write_dump(data: Mapping[bytes, Any], expires: Mapping[bytes, int], path: str) -> int:
    """Write data (with its expiries) to path atomically; returns the number of keys."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        w = _CrcWriter(f)
        w.write(MAGIC)
        for key, value in data.items():
            if isinstance(value, bytes):
                kind, items = b"S", None
            elif isinstance(value, list):
                kind, items = b"L", value
            elif isinstance(value, dict):
                kind, items = b"H", [x for kv in value.items() for x in kv]
            else:
                kind, items = b"T", list(value)
            w.write(kind)
            _string(w, key)
            w.write(_I64.pack(expires.get(key, -1)))
            if items is None:
                _string(w, value)
            else:
                w.write(_U32.pack(len(items) // 2 if kind == b"H" else len(items)))
                for item in items:
                    _string(w, item)
        w.write(b"E")
        w.flush()
        f.write(_U32.pack(w.crc))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(data)


def read_dump(path: str) -> tuple[dict[bytes, Any], dict[bytes, int]]:
    """The dataset and expiries stored in path (ValueError if the file is damaged)."""
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.startswith(MAGIC) or len(raw) < len(MAGIC) + 5:
        raise ValueError(f"{path}: not a kvserver dump")
    body, (crc,) = raw[:-4], _U32.unpack(raw[-4:])
    if zlib.crc32(body) != crc:
        raise ValueError(f"{path}: checksum mismatch")
    pos = len(MAGIC)
    data: dict[bytes, Any] = {}
    expires: dict[bytes, int] = {}

    def string() -> bytes:
        nonlocal pos
        (n,) = _U32.unpack_from(body, pos)
        pos += 4 + n
        return body[pos - n:pos]

    while True:
        kind = body[pos:pos + 1]
        pos += 1
        if kind == b"E":
            break
        key = string()
        (exp,) = _I64.unpack_from(body, pos)
        pos += 8
        if kind == b"S":
            value: Any = string()
        else:
            (count,) = _U32.unpack_from(body, pos)
            pos += 4
            if kind == b"L":
                value = [string() for _ in range(count)]
            elif kind == b"H":
                value = {}
                for _ in range(count):
                    field = string()
                    value[field] = string()
            elif kind == b"T":
                value = {string() for _ in range(count)}
            else:
                raise ValueError(f"{path}: unknown record type {kind!r}")
        data[key] = value
        if exp >= 0:
            expires[key] = exp
    return data, expires
