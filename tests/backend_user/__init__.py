"""Tests of the userspace backend (csrc/us/), not of orbitpy's semantics.

What belongs here: tests that assert the userspace backend's numbers or
mechanisms -- exact page counts (pages_copied, pages_reset, full_syncs as
costs), the staging ring (ORBITPY_STAGING), its memfds and their names and
mappings, the snapshot modes 'uffd', 'mprotect' and 'full' as mechanisms
(ORBITPY_SNAPSHOT, mprotect's SIGSEGV handling).  Everything else stays in
tests/: another backend (e.g. a kernel one) runs tests/ without this folder
(``python -m pytest tests --ignore=tests/backend_user``).  tests/conftest.py's
fixtures apply here too.
"""
