"""The state the auxiliary tasks read, kept in an orbitpy arena.

    sessions   sid -> {"user", "created", "expires", "data": {...}}
    inflight   request id -> (handler, started (wall clock), worker pid)
    ring       request records (seq, route, status, seconds, ended), a ring
               of fixed size; ``head`` is the seq of the newest record

Every store into these tables happens inside ``with self.arena:`` in plain
synchronous methods, never across an ``await``: the arena's allocator hooks
are per thread, and the event loop's thread runs other requests' code at
every await, which would then allocate in the arena too.
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

import orbitpy

JSON = Any


def _in_arena(value: JSON) -> JSON:
    """A copy of a JSON value made of objects allocated where the caller is
    (call it inside ``with arena:``).  A dict or list built outside the arena
    and stored into it would make the next orbit call fail its check
    (ArenaEscapeError); strings and numbers would be copied by the check.
    (orbitpy is getting ``arena.copy()`` for this.)"""
    if isinstance(value, dict):
        return {str(k): _in_arena(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_in_arena(v) for v in value]
    if isinstance(value, str):
        return "".join(("", value))  # a new str object, allocated here
    if value is None or isinstance(value, bool | int | float):
        return value
    raise TypeError(f"not a JSON value: {type(value).__name__}")


class State:
    """The arena and the tables in it (one per worker process)."""

    def __init__(self, ring_size: int, arena_mb: int) -> None:
        self.arena = orbitpy.arena(arena_mb << 20)
        self.worker = os.getpid()
        self.ring_size = ring_size
        self.head = -1  # seq of the newest request record
        self._next_request = 0
        with self.arena:
            self.sessions: dict[str, dict[str, Any]] = {}
            self.inflight: dict[int, tuple[str, float, int]] = {}
            self.ring: list[tuple[int, str, int, float, float] | None] = [None] * ring_size

    # -- requests (the middleware)

    def request_started(self, handler: str) -> int:
        rid = self._next_request
        self._next_request += 1
        with self.arena:
            self.inflight[rid] = (handler, time.time(), self.worker)
        return rid

    def request_ended(self, rid: int, handler: str, status: int, seconds: float) -> None:
        self.inflight.pop(rid, None)
        seq = self.head + 1
        with self.arena:
            self.ring[seq % self.ring_size] = (seq, handler, status, seconds, time.time())
        self.head = seq

    # -- sessions

    def create_session(self, user: str, ttl: float, data: JSON) -> tuple[str, dict[str, Any]]:
        sid = secrets.token_hex(12)
        now = time.time()
        with self.arena:
            session = {"user": _in_arena(user), "created": now + 0.0,
                       "expires": now + ttl, "data": _in_arena(data)}
            self.sessions[_in_arena(sid)] = session
        return sid, session

    def get_session(self, sid: str) -> dict[str, Any] | None:
        session = self.sessions.get(sid)
        if session is None or session["expires"] < time.time():
            return None  # expired but not yet removed: gone all the same
        return session

    def update_session(self, sid: str, data: JSON, ttl: float | None) -> dict[str, Any] | None:
        session = self.get_session(sid)
        if session is None:
            return None
        with self.arena:
            for k, v in data.items():
                session["data"][_in_arena(k)] = _in_arena(v)
            if ttl is not None:
                session["expires"] = time.time() + ttl
        return session

    def expire_sessions(self, sids: list[str]) -> int:
        """Remove the sessions the expiry task found, if still expired (main
        may have extended one since the task's snapshot)."""
        now = time.time()
        removed = 0
        for sid in sids:
            session = self.sessions.get(sid)
            if session is not None and session["expires"] < now:
                del self.sessions[sid]
                removed += 1
        return removed

    def close(self) -> None:
        self.sessions.clear()
        self.inflight.clear()
        self.ring.clear()
        del self.sessions, self.inflight, self.ring
        try:
            self.arena.close()
        except RuntimeError:
            pass  # objects still referenced (a response being sent): unmapped at exit
