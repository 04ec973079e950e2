"""The dataset and the commands that read and change it.

``data`` (key -> value) and ``expires`` (key -> unix time in ms) are dicts in
an orbitpy arena; the server runs every command inside ``with arena:``, so the
objects a command stores are created there.  Keys and values parsed from the
network are made outside it and are copied in with ``own()`` before they are
stored.  Value types: bytes (string), list (a Redis list, kept *reversed*: the
head is the Python list's end, so LPUSH/LPOP are O(1) appends and pops), dict
(hash), set.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from typing import Any

from .resp import NIL_ARRAY, OK, Error, Status

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
NOT_INTEGER = "ERR value is not an integer or out of range"
SYNTAX = "ERR syntax error"


class CommandError(Exception):
    """A command failed: its message is the error reply (without the dash)."""


def own(b: bytes) -> bytes:
    """A copy of b made where objects are being allocated (the arena, inside a
    command).  bytes(b) and b[:] return b itself for an exact bytes object."""
    return bytes(memoryview(b))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def to_int(b: bytes) -> int:
    try:
        if len(b) > 20 or b != b.strip():
            raise ValueError
        return int(b)
    except ValueError:
        raise CommandError(NOT_INTEGER) from None


class Keyspace:
    def __init__(self, data: dict[bytes, Any], expires: dict[bytes, int]) -> None:
        self.data = data
        self.expires = expires
        self.expired_keys = 0  # lazily or actively expired, as Redis's INFO counts

    # -- lookup with lazy expiry -------------------------------------------
    def lookup(self, key: bytes) -> Any:
        exp = self.expires.get(key)
        if exp is not None and exp <= now_ms():
            self.delete(key)
            self.expired_keys += 1
            return None
        return self.data.get(key)

    def lookup_typed(self, key: bytes, kind: type) -> Any:
        value = self.lookup(key)
        if value is not None and type(value) is not kind:
            raise CommandError(WRONGTYPE)
        return value

    def delete(self, key: bytes) -> bool:
        self.expires.pop(key, None)
        return self.data.pop(key, None) is not None

    def expire_if_due(self, key: bytes, when: int) -> bool:
        """Delete key if it is still due to expire (at or before `when` ms):
        what main does with a deletion an expiry task proposes."""
        exp = self.expires.get(key)
        if exp is not None and exp <= when:
            self.delete(key)
            self.expired_keys += 1
            return True
        return False

    def set_value(self, key: bytes, value: Any, keep_ttl: bool = False) -> None:
        if key not in self.data:
            key = own(key)
        self.data[key] = value
        if not keep_ttl:
            self.expires.pop(key, None)

    def set_expiry(self, key: bytes, when_ms: int) -> None:
        self.expires[key if key in self.expires else own(key)] = when_ms

    def load(self, data: dict[bytes, Any], expires: dict[bytes, int]) -> None:
        """Copy a loaded dump into the arena (call inside ``with arena:``)."""
        for key, value in data.items():
            if isinstance(value, bytes):
                v: Any = own(value)
            elif isinstance(value, list):
                v = [own(x) for x in reversed(value)]
            elif isinstance(value, dict):
                v = {own(f): own(x) for f, x in value.items()}
            else:
                v = {own(x) for x in value}
            k = own(key)
            self.data[k] = v
            if key in expires:
                self.expires[k] = int(expires[key])

    def populate(self, count: int, prefix: bytes, size: int) -> int:
        """DEBUG POPULATE, as Redis: keys prefix:0 .. prefix:count-1 that do
        not exist yet get the value b"value:N" (zero-padded or cut to `size`
        bytes when size > 0).  Call inside ``with arena:``; returns the number
        of keys added."""
        data, added = self.data, 0
        for j in range(count):
            key = b"%s:%d" % (prefix, j)
            if key in data:
                continue
            value = b"value:%d" % j
            data[key] = value if size <= 0 else value[:size].ljust(size, b"\0")
            added += 1
        return added

    def logical(self) -> tuple[dict[bytes, Any], dict[bytes, int]]:
        """The dataset with lists in their Redis order (for dump files)."""
        return ({k: (v[::-1] if type(v) is list else v) for k, v in self.data.items()},
                dict(self.expires))


# -- commands ----------------------------------------------------------------
Command = Callable[[Keyspace, list[bytes]], Any]
COMMANDS: dict[bytes, tuple[Command, int, bool]] = {}


def command(name: str, arity: int, write: bool = False) -> Callable[[Command], Command]:
    """Register a command; arity as in Redis (n: exactly n words, -n: at least n)."""
    def register(fn: Command) -> Command:
        COMMANDS[name.encode()] = (fn, arity, write)
        return fn
    return register


@command("ping", -1)
def ping(ks: Keyspace, argv: list[bytes]) -> Any:
    if len(argv) > 2:
        raise CommandError("ERR wrong number of arguments for 'ping' command")
    return argv[1] if len(argv) == 2 else Status("PONG")


@command("echo", 2)
def echo(ks: Keyspace, argv: list[bytes]) -> Any:
    return argv[1]


@command("get", 2)
def get(ks: Keyspace, argv: list[bytes]) -> Any:
    return ks.lookup_typed(argv[1], bytes)


@command("set", -3, write=True)
def set_(ks: Keyspace, argv: list[bytes]) -> Any:
    key, value = argv[1], argv[2]
    nx = xx = keep_ttl = False
    expire_at: int | None = None
    i = 3
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"NX" and not xx:
            nx = True
        elif opt == b"XX" and not nx:
            xx = True
        elif opt == b"KEEPTTL" and expire_at is None:
            keep_ttl = True
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and expire_at is None and not keep_ttl \
                and i + 1 < len(argv):
            n = to_int(argv[i + 1])
            if n <= 0:
                raise CommandError("ERR invalid expire time in 'set' command")
            expire_at = {b"EX": now_ms() + n * 1000, b"PX": now_ms() + n,
                         b"EXAT": n * 1000, b"PXAT": n}[opt]
            i += 1
        else:
            raise CommandError(SYNTAX)
        i += 1
    exists = ks.lookup(key) is not None
    if (nx and exists) or (xx and not exists):
        return None
    ks.set_value(key, own(value), keep_ttl)
    if expire_at is not None:
        ks.set_expiry(key, expire_at)
    return OK


@command("del", -2, write=True)
def del_(ks: Keyspace, argv: list[bytes]) -> Any:
    return sum(1 for key in argv[1:] if ks.lookup(key) is not None and ks.delete(key))


@command("exists", -2)
def exists(ks: Keyspace, argv: list[bytes]) -> Any:
    return sum(1 for key in argv[1:] if ks.lookup(key) is not None)


def _incr_by(ks: Keyspace, key: bytes, delta: int) -> int:
    value = ks.lookup_typed(key, bytes)
    n = to_int(value) + delta if value is not None else delta
    if not -(1 << 63) <= n < (1 << 63):
        raise CommandError("ERR increment or decrement would overflow")
    ks.set_value(key, b"%d" % n, keep_ttl=True)
    return n


@command("incr", 2, write=True)
def incr(ks: Keyspace, argv: list[bytes]) -> Any:
    return _incr_by(ks, argv[1], 1)


@command("decr", 2, write=True)
def decr(ks: Keyspace, argv: list[bytes]) -> Any:
    return _incr_by(ks, argv[1], -1)


@command("incrby", 3, write=True)
def incrby(ks: Keyspace, argv: list[bytes]) -> Any:
    return _incr_by(ks, argv[1], to_int(argv[2]))


@command("decrby", 3, write=True)
def decrby(ks: Keyspace, argv: list[bytes]) -> Any:
    return _incr_by(ks, argv[1], -to_int(argv[2]))


def _expire(ks: Keyspace, argv: list[bytes], unit_ms: int) -> int:
    if len(argv) > 3:
        raise CommandError(SYNTAX)  # NX/XX/GT/LT: not supported
    n = to_int(argv[2])
    if ks.lookup(argv[1]) is None:
        return 0
    if n <= 0:
        ks.delete(argv[1])
        return 1
    ks.set_expiry(argv[1], now_ms() + n * unit_ms)
    return 1


@command("expire", -3, write=True)
def expire(ks: Keyspace, argv: list[bytes]) -> Any:
    return _expire(ks, argv, 1000)


@command("pexpire", -3, write=True)
def pexpire(ks: Keyspace, argv: list[bytes]) -> Any:
    return _expire(ks, argv, 1)


@command("persist", 2, write=True)
def persist(ks: Keyspace, argv: list[bytes]) -> Any:
    if ks.lookup(argv[1]) is None:
        return 0
    return 1 if ks.expires.pop(argv[1], None) is not None else 0


def _ttl(ks: Keyspace, key: bytes) -> int | None:
    if ks.lookup(key) is None:
        return None
    exp = ks.expires.get(key)
    return -1 if exp is None else max(0, exp - now_ms())


@command("ttl", 2)
def ttl(ks: Keyspace, argv: list[bytes]) -> Any:
    t = _ttl(ks, argv[1])
    return -2 if t is None else t if t < 0 else (t + 500) // 1000


@command("pttl", 2)
def pttl(ks: Keyspace, argv: list[bytes]) -> Any:
    t = _ttl(ks, argv[1])
    return -2 if t is None else t


def _push(ks: Keyspace, argv: list[bytes], head: bool) -> int:
    lst = ks.lookup_typed(argv[1], list)
    if lst is None:
        lst = []
        ks.set_value(argv[1], lst)
    for value in argv[2:]:
        if head:
            lst.append(own(value))
        else:
            lst.insert(0, own(value))
    return len(lst)


@command("lpush", -3, write=True)
def lpush(ks: Keyspace, argv: list[bytes]) -> Any:
    return _push(ks, argv, head=True)


@command("rpush", -3, write=True)
def rpush(ks: Keyspace, argv: list[bytes]) -> Any:
    return _push(ks, argv, head=False)


def _pop(ks: Keyspace, argv: list[bytes], head: bool) -> Any:
    if len(argv) > 3:
        raise CommandError(SYNTAX)
    count = to_int(argv[2]) if len(argv) == 3 else None
    if count is not None and count < 0:
        raise CommandError("ERR value is out of range, must be positive")
    lst = ks.lookup_typed(argv[1], list)
    if lst is None:
        return None if count is None else NIL_ARRAY
    out = [lst.pop() if head else lst.pop(0) for _ in range(min(count or 1, len(lst)))]
    if not lst:
        ks.delete(argv[1])
    return out[0] if count is None else out


@command("lpop", -2, write=True)
def lpop(ks: Keyspace, argv: list[bytes]) -> Any:
    return _pop(ks, argv, head=True)


@command("rpop", -2, write=True)
def rpop(ks: Keyspace, argv: list[bytes]) -> Any:
    return _pop(ks, argv, head=False)


@command("llen", 2)
def llen(ks: Keyspace, argv: list[bytes]) -> Any:
    lst = ks.lookup_typed(argv[1], list)
    return 0 if lst is None else len(lst)


@command("lrange", 4)
def lrange(ks: Keyspace, argv: list[bytes]) -> Any:
    start, stop = to_int(argv[2]), to_int(argv[3])
    lst = ks.lookup_typed(argv[1], list)
    if lst is None:
        return []
    n = len(lst)
    start = max(0, start + n if start < 0 else start)
    stop = min(n - 1, stop + n if stop < 0 else stop)
    if start > stop:
        return []
    return lst[n - 1 - stop:n - start][::-1]  # the list is stored reversed


@command("hset", -4, write=True)
def hset(ks: Keyspace, argv: list[bytes]) -> Any:
    if len(argv) % 2:
        raise CommandError("ERR wrong number of arguments for 'hset' command")
    h = ks.lookup_typed(argv[1], dict)
    if h is None:
        h = {}
        ks.set_value(argv[1], h)
    added = 0
    for i in range(2, len(argv), 2):
        if argv[i] in h:
            h[argv[i]] = own(argv[i + 1])
        else:
            h[own(argv[i])] = own(argv[i + 1])
            added += 1
    return added


@command("hget", 3)
def hget(ks: Keyspace, argv: list[bytes]) -> Any:
    h = ks.lookup_typed(argv[1], dict)
    return None if h is None else h.get(argv[2])


@command("hgetall", 2)
def hgetall(ks: Keyspace, argv: list[bytes]) -> Any:
    h = ks.lookup_typed(argv[1], dict)
    return [] if h is None else [x for kv in h.items() for x in kv]


@command("sadd", -3, write=True)
def sadd(ks: Keyspace, argv: list[bytes]) -> Any:
    s = ks.lookup_typed(argv[1], set)
    if s is None:
        s = set()
        ks.set_value(argv[1], s)
    before = len(s)
    for m in argv[2:]:
        if m not in s:
            s.add(own(m))
    return len(s) - before


@command("smembers", 2)
def smembers(ks: Keyspace, argv: list[bytes]) -> Any:
    s = ks.lookup_typed(argv[1], set)
    return [] if s is None else list(s)


@command("type", 2)
def type_(ks: Keyspace, argv: list[bytes]) -> Any:
    value = ks.lookup(argv[1])
    names = {bytes: "string", list: "list", dict: "hash", set: "set"}
    return Status("none" if value is None else names[type(value)])


@command("keys", 2)
def keys(ks: Keyspace, argv: list[bytes]) -> Any:
    pattern = argv[1].decode("latin-1").replace("[^", "[!")
    now = now_ms()
    return [k for k in list(ks.data)
            if (ks.expires.get(k, now + 1) > now)
            and fnmatch.fnmatchcase(k.decode("latin-1"), pattern)]


@command("dbsize", 1)
def dbsize(ks: Keyspace, argv: list[bytes]) -> Any:
    return len(ks.data)


@command("flushall", -1, write=True)
def flushall(ks: Keyspace, argv: list[bytes]) -> Any:
    ks.data.clear()
    ks.expires.clear()
    return OK


@command("flushdb", -1, write=True)
def flushdb(ks: Keyspace, argv: list[bytes]) -> Any:
    return flushall(ks, argv)


@command("select", 2)
def select(ks: Keyspace, argv: list[bytes]) -> Any:
    if to_int(argv[1]) != 0:
        return Error("ERR DB index is out of range")
    return OK
