"""The asyncio server: connections, command dispatch, server-level commands."""

from __future__ import annotations

import asyncio
import fnmatch
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import orbitpy

from .dumpfile import FILENAME, read_dump
from .faults import KINDS, TASKS
from .keyspace import COMMANDS, CommandError, Keyspace, to_int
from .resp import OK, Error, ProtocolError, Status, encode, parse_command
from .tasks import Tasks

# Commands that may need more memory: refused when the arena is nearly full
# (Redis's "denyoom" flag; DEL, LPOP, FLUSHALL... still run then).
DENYOOM = frozenset(b"set incr decr incrby decrby lpush rpush hset sadd expire pexpire".split())
OOM = Error("OOM command not allowed when used memory > 'maxmemory'.")
ServerCommand = Callable[["Server", list[bytes]], Any]
SERVER_COMMANDS: dict[bytes, tuple[ServerCommand, int]] = {}


def server_command(name: str, arity: int) -> Callable[[ServerCommand], ServerCommand]:
    def register(fn: ServerCommand) -> ServerCommand:
        SERVER_COMMANDS[name.encode()] = (fn, arity)
        return fn
    return register


def arity_error(name: bytes) -> Error:
    return Error(f"ERR wrong number of arguments for '{name.decode(errors='replace')}' command")


def unknown_command(argv: list[bytes]) -> Error:
    args = "".join(f"'{a[:128].decode(errors='replace')}' " for a in argv[1:])
    return Error(f"ERR unknown command '{argv[0][:128].decode(errors='replace')}', "
                 f"with args beginning with: {args}")


class Server:
    def __init__(self, arena: orbitpy.Arena, ks: Keyspace, tasks: Tasks, dump_path: str) -> None:
        self.arena, self.ks, self.tasks, self.dump_path = arena, ks, tasks, dump_path
        self.commands_processed = 0
        size = arena.stats()["size"]
        self.reserve = max(64 << 10, size // 64)
        self.maxmemory = size - self.reserve
        self.connections = 0
        self.started = time.time()
        self.config: dict[str, str] = {
            "save": "3600 1 300 100 60 10000",  # what redis-benchmark asks for
            "appendonly": "no",
            "maxmemory": str(self.maxmemory),
            "maxmemory-policy": "noeviction",
            "databases": "1",
            "dir": os.path.dirname(os.path.abspath(dump_path)),
            "dbfilename": os.path.basename(dump_path),
        }

    def execute(self, argv: list[bytes], wire: bytearray, start: int, end: int) -> Any:
        """Run one command and return its reply (never raises for the client's
        errors).  argv came as wire[start:end] (the slow log keeps those bytes)."""
        name = argv[0].lower()
        self.commands_processed += 1
        entry = COMMANDS.get(name)
        if entry is None:
            special = SERVER_COMMANDS.get(name)
            if special is None:
                return unknown_command(argv)
            fn, arity = special
            if (len(argv) != arity) if arity > 0 else (len(argv) < -arity):
                return arity_error(name)
            try:
                return fn(self, argv)
            except CommandError as e:
                return Error(str(e))
        kfn, arity, write = entry
        if (len(argv) != arity) if arity > 0 else (len(argv) < -arity):
            return arity_error(name)
        start_us = time.time_ns() // 1000
        t0 = time.perf_counter_ns()
        if not write:  # reads store nothing: they run outside the arena
            try:
                reply = kfn(self.ks, argv)
            except CommandError as e:
                reply = Error(str(e))
            dur_us = (time.perf_counter_ns() - t0) // 1000
            self.tasks.record(argv, wire, start, end, start_us, dur_us)
            return reply
        # As Redis with maxmemory: refuse a write once the arena is nearly full,
        # before running it, so a command is not left half done.
        if name in DENYOOM and (self.arena.used + 2 * sum(map(len, argv))
                                > self.maxmemory):
            return OOM
        try:
            reply = _write_in_arena(self, kfn, argv)
        except MemoryError:  # the arena is full (orbitpy.ArenaFull, or MemoryError inside it)
            return OOM
        dur_us = (time.perf_counter_ns() - t0) // 1000
        self.tasks.record(argv, wire, start, end, start_us, dur_us)
        return reply


def _write_in_arena(srv: Server, kfn: Any, argv: list[bytes]) -> Any:
    """Run a write command with its allocations in the arena (a full arena
    ends the block with orbitpy.ArenaFull, a MemoryError).  The block never
    spans an await: commands are synchronous."""
    with srv.arena:
        try:
            return kfn(srv.ks, argv)
        except CommandError as e:
            return Error(str(e))


class Connection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections -= 1

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        self.buf += data
        out: list[bytes] = []
        pos = 0
        close = False
        try:
            while True:
                start = pos
                argv, pos = parse_command(self.buf, pos)
                if argv is None:
                    break
                if not argv:
                    continue
                if argv[0].lower() == b"quit":
                    out.append(b"+OK\r\n")
                    close = True
                    break
                encode(self.server.execute(argv, self.buf, start, pos), out)
        except ProtocolError as e:
            encode(Error(f"ERR {e}"), out)
            close = True
        del self.buf[:pos]
        if out:
            transport.write(b"".join(out))
        if close:
            transport.close()


# -- server-level commands -------------------------------------------------------
@server_command("config", -2)
def config(srv: Server, argv: list[bytes]) -> Any:
    sub = argv[1].lower()
    if sub == b"get" and len(argv) >= 3:
        out: list[str] = []
        for pat in argv[2:]:
            for k, v in srv.config.items():
                if fnmatch.fnmatchcase(k, pat.decode().lower()) and k not in out[::2]:
                    out += [k, v]
        if any(fnmatch.fnmatchcase("slowlog-log-slower-than", p.decode().lower())
               for p in argv[2:]):
            out += ["slowlog-log-slower-than", str(srv.tasks.slowlog_threshold_us)]
        if any(fnmatch.fnmatchcase("kvserver-bgsave-timeout", p.decode().lower())
               for p in argv[2:]):
            out += ["kvserver-bgsave-timeout", str(srv.tasks.bgsave_timeout)]
        return out
    if sub == b"set" and len(argv) >= 4 and len(argv) % 2 == 0:
        for i in range(2, len(argv), 2):
            k = argv[i].decode().lower()
            if k == "slowlog-log-slower-than":
                srv.tasks.slowlog_threshold_us = to_int(argv[i + 1])
            elif k == "kvserver-bgsave-timeout":  # whole seconds a BGSAVE orbit may run
                srv.tasks.bgsave_timeout = max(1, to_int(argv[i + 1]))
            elif k == "slowlog-max-len":
                import collections
                srv.tasks.slowlog = collections.deque(srv.tasks.slowlog,
                                                      maxlen=max(0, to_int(argv[i + 1])))
            elif k in srv.config:
                srv.config[k] = argv[i + 1].decode()
            else:
                return Error(f"ERR Unknown option or number of arguments for CONFIG SET - '{k}'")
        return OK
    if sub == b"resetstat":
        return OK
    return Error(f"ERR unknown subcommand '{argv[1].decode(errors='replace')}'. "
                 "Try CONFIG HELP.")


@server_command("info", -1)
def info(srv: Server, argv: list[bytes]) -> Any:
    t, st = srv.tasks, srv.arena.stats()
    sections = {
        "Server": [("redis_version", "7.0.0"), ("kvserver_tasks", t.mode),
                   ("process_id", os.getpid()),
                   ("uptime_in_seconds", int(time.time() - srv.started))],
        "Clients": [("connected_clients", srv.connections)],
        "Memory": [("used_memory", st["used"]), ("used_memory_rss", _rss()),
                   ("maxmemory", srv.maxmemory),
                   ("maxmemory_policy", "noeviction")],
        "Persistence": [("rdb_changes_since_last_save", 0),
                        ("rdb_bgsave_in_progress", int(t.bgsave_in_progress)),
                        ("rdb_last_save_time", t.lastsave),
                        ("rdb_last_bgsave_status", "ok" if t.last_bgsave_ok else "err"),
                        ("rdb_saves", t.saves)],
        "Stats": [("total_commands_processed", srv.commands_processed),
                  ("expired_keys", srv.ks.expired_keys),
                  ("active_expired_keys", t.active_expired),
                  ("task_failures", t.failures),
                  # main's stall starting the last BGSAVE: fork() or the orbit
                  # call (its pre-call check, and the pages its snapshot copied)
                  ("latest_fork_usec", t.latest_fork_usec),
                  ("latest_bgsave_check_usec", t.latest_bgsave_check_usec),
                  ("latest_bgsave_pages_copied", t.latest_bgsave_pages_copied)],
        # What each task cost the event loop: runs started and main's time
        # starting them (the orbit call's issue, or fork), in microseconds.
        "Tasks": [(f"{k}_{task}", v) for task in t.runs
                  for k, v in (("runs", t.runs[task]),
                               ("main_usec", t.main_ns[task] // 1000))],
        "Keyspace": [("db0", f"keys={len(srv.ks.data)},expires={len(srv.ks.expires)},"
                             "avg_ttl=0")],
    }
    lines = []
    for title, fields in sections.items():
        lines.append(f"# {title}")
        lines += [f"{k}:{v}" for k, v in fields]
        lines.append("")
    return "\r\n".join(lines).encode()


def _rss() -> int:
    """This process's resident set size in bytes (Redis's used_memory_rss)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@server_command("save", 1)
def save(srv: Server, argv: list[bytes]) -> Any:
    if srv.tasks.bgsave_in_progress:
        return Error("ERR Background save already in progress")
    srv.tasks.save()
    return OK


@server_command("bgsave", -1)
def bgsave(srv: Server, argv: list[bytes]) -> Any:
    err = srv.tasks.start_bgsave()
    return Error(err) if err else Status("Background saving started")


@server_command("lastsave", 1)
def lastsave(srv: Server, argv: list[bytes]) -> Any:
    return srv.tasks.lastsave


@server_command("slowlog", -2)
def slowlog(srv: Server, argv: list[bytes]) -> Any:
    sub = argv[1].lower()
    log = srv.tasks.slowlog
    if sub == b"get":
        count = to_int(argv[2]) if len(argv) > 2 else 10
        return list(log)[:count if count >= 0 else len(log)]
    if sub == b"len":
        return len(log)
    if sub == b"reset":
        log.clear()
        return OK
    return Error(f"ERR unknown subcommand '{argv[1].decode(errors='replace')}'. "
                 "Try SLOWLOG HELP.")


@server_command("client", -2)
def client(srv: Server, argv: list[bytes]) -> Any:
    return None if argv[1].lower() == b"getname" else OK


@server_command("debug", -2)
def debug(srv: Server, argv: list[bytes]) -> Any:
    """DEBUG TASKFAULT <expiry|slowlog|bgsave> <segfault|abort|exception|exit|hang|memory>,
    DEBUG POPULATE count [prefix] [size] (Redis's: fill the dataset quickly)"""
    if argv[1].lower() == b"populate" and 3 <= len(argv) <= 5:
        count = to_int(argv[2])
        prefix = argv[3] if len(argv) > 3 else b"key"
        size = to_int(argv[4]) if len(argv) > 4 else 0
        if count < 0 or size < 0:
            return Error("ERR count and size must be positive")
        try:
            with srv.arena:  # the keys and values are made in the arena, as SET's
                srv.ks.populate(count, prefix, size)
        except MemoryError:  # the arena filled up: what was added stays
            return OOM
        return OK
    if argv[1].lower() == b"taskfault" and len(argv) == 4:
        task, kind = argv[2].decode().lower(), argv[3].decode().lower()
        if task in TASKS and kind in KINDS:
            srv.tasks.faults[task] = kind
            return OK
    return Error(f"ERR DEBUG TASKFAULT <{'|'.join(TASKS)}> <{'|'.join(KINDS)}>")


@server_command("command", -1)
def command_(srv: Server, argv: list[bytes]) -> Any:
    return []  # redis-cli asks COMMAND DOCS for hints; none here


# -- running -------------------------------------------------------------------------
async def serve(host: str, port: int, directory: str, mode: str, arena_size: int,
                load: bool) -> None:
    os.makedirs(directory, exist_ok=True)
    dump_path = os.path.join(directory, FILENAME)
    loaded = read_dump(dump_path) if load else None
    if loaded is not None and arena_size <= 0:
        arena_size = max(256 << 20, 8 * os.path.getsize(dump_path))
    arena = orbitpy.arena(arena_size if arena_size > 0 else 256 << 20)
    with arena:
        ks = Keyspace({}, {})
        ks.data, ks.expires = {}, {}  # the dicts themselves in the arena
        if loaded is not None:
            ks.load(*loaded)
    loaded = None
    tasks = Tasks(mode, arena, ks, dump_path)
    srv = Server(arena, ks, tasks, dump_path)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    listener = await loop.create_server(lambda: Connection(srv), host, port, reuse_address=True)
    tasks.start(loop)
    bound = listener.sockets[0].getsockname()
    print(f"kvserver ready on {bound[0]}:{bound[1]} tasks={mode} keys={len(ks.data)}",
          flush=True)
    await stop.wait()
    listener.close()
    tasks.shutdown()
    print("kvserver: shut down", flush=True)
