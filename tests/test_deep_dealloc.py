"""Freeing deeply nested containers must not overflow main's C stack.

CPython frees a chain of nested lists or dicts through its "trashcan", which
defers deallocations past a fixed depth.  Once an arena has held objects,
orbitpy replaces the list and dict deallocators on 3.11/3.12 (see
_heap/pyver_freelists.c); the replacements must keep that protection, for
structures on the ordinary heap as well as in arenas.  Each case runs in a
subprocess: a crash must fail the test, not kill pytest.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

DEPTH = 1_000_000

SCRIPT = textwrap.dedent("""
    import sys
    import orbitpy

    kind, where, depth = sys.argv[1], sys.argv[2], int(sys.argv[3])
    arena = orbitpy.arena(1 << 30)
    with arena:  # installs the allocator hooks (and the replaced deallocators)
        pass

    def build():
        x = [] if kind == "list" else {}
        for _ in range(depth):
            x = [x] if kind == "list" else {0: x}
        return x

    if where == "arena":
        with arena:
            x = build()
        assert arena.contains(x)
    else:
        x = build()
        assert not arena.contains(x)
    del x  # frees the whole chain
    print("freed")
""")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("where", ["heap", "arena"])
@pytest.mark.parametrize("kind", ["list", "dict"])
def test_deep_structure_frees_without_crash(kind: str, where: str) -> None:
    p = subprocess.run([sys.executable, "-c", SCRIPT, kind, where, str(DEPTH)],
                       capture_output=True, text=True, timeout=280)
    assert p.returncode == 0 and p.stdout.strip() == "freed", (
        f"freeing a {DEPTH}-deep {kind} ({where}) failed: exit status {p.returncode}\n"
        f"{p.stderr[-2000:]}")
