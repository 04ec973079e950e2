"""Helpers of the snapshot tests (test_snapshot.py and
backend_user/test_snapshot_costs.py): pages of arena buffers, digests, stats
deltas."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from orbitpy import _core

PAGE = 4096
TRACKED_MODES = ["uffd", "mprotect"]


def addr_of(buf: Any) -> int:
    return int(_core.buffer_address(buf)[0])


def page_starts(buf: Any, n: int, step: int = 1) -> list[int]:
    """Offsets in `buf` of the starts of n distinct whole pages (every
    `step`-th page) that lie entirely inside buf."""
    first = (-addr_of(buf)) % PAGE
    offs = [first + i * step * PAGE for i in range(n)]
    assert not offs or offs[-1] + PAGE <= len(buf), "buffer too small for the pages asked"
    return offs


def populated_pages(addr: int, size: int) -> int:
    """Pages of [addr, addr+size) that are present or swapped (pagemap)."""
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(addr // PAGE * 8)
        data = f.read(size // PAGE * 8)
    ent = np.frombuffer(data, dtype=np.uint64)
    return int(np.count_nonzero(ent & np.uint64((1 << 63) | (1 << 62))))


def digest(b: Any) -> str:
    return hashlib.sha256(b).hexdigest()


def delta(after: dict[str, Any], before: dict[str, Any], key: str) -> int:
    return int(after[key]) - int(before[key])
