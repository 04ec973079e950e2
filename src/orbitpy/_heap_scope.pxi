# Arena scopes: the per-thread stack of open `with arena:` scopes (and of the
# steps of coroutines decorated with arena.allocating), and what entering and
# leaving one does to the allocator hooks.  Included by _core.pyx.
#
# This is on a service's request path (a key-value server enters a scope per
# write command), so it is here rather than in Python: a scope costs a few
# hundred nanoseconds, not microseconds.

import threading as _threading


cdef class ScopeStack:
    """One thread's open scopes, innermost last."""
    # HeapArea, or None for "outside every arena" (e.g. bookkeeping inside a block)
    cdef readonly list heaps
    # Per open scope: the refusal its enclosing scope had when it was entered
    # (a thread has one refusal at a time, see heap_hooks.c)
    cdef list outer

    def __cinit__(self):
        self.heaps = []
        self.outer = []

    def innermost(self):
        return self.heaps[-1] if self.heaps else None


cdef object _scope_tls = _threading.local()


cdef inline ScopeStack _scopes():
    cdef object st
    try:
        st = _scope_tls.s
    except AttributeError:
        st = _scope_tls.s = ScopeStack()
    return <ScopeStack>st


def scope_stack():
    """This thread's ScopeStack."""
    return _scopes()


cdef inline void _set_current(object h):
    heap_set_current((<HeapArea>h).ha if h is not None else NULL)


def scope_enter(HeapArea h):
    """Enter a scope where this thread's new objects live in h (None:
    outside every arena)."""
    cdef ScopeStack st
    if orbit_in_orbit():
        from .errors import OrbitError
        raise OrbitError("an orbit cannot allocate in an arena: its view of the arena is "
                         "a snapshot, and what it writes there is thrown away")
    # The bookkeeping is no arena state (and an enclosing arena may be full).
    heap_set_current(NULL)
    st = _scopes()
    st.heaps.append(h)
    # The scope starts with no refusal (so allocating in its arena); the
    # enclosing scope's is set back when this one ends.
    st.outer.append(c_heap_take_refused(NULL))
    _set_current(h)


def scope_leave(HeapArea h, bint out_of_order=False):
    """Leave the innermost scope of h; returns the size of an allocation the
    arena refused inside it (0: none).  `out_of_order`: leave the innermost
    scope of h even if others were entered after it (tasks of an event loop
    that interleaved their blocks).

    Once an arena refused an allocation in a scope, the thread's allocations
    fall back to the usual heap until the scope ends (so that CPython can
    unwind the MemoryError, see heap_hooks.c); leaving takes the refusal,
    which ends that."""
    cdef ScopeStack st
    cdef Py_ssize_t i, n
    cdef size_t outer, refused
    # Out of the arena's scope first: what follows allocates, and a full
    # arena would refuse it and leave the thread inside the scope for good.
    heap_set_current(NULL)
    st = _scopes()
    n = len(st.heaps)
    i = n - 1
    if n and st.heaps[i] is h:
        pass
    elif out_of_order:
        while i >= 0 and st.heaps[i] is not h:
            i -= 1
    else:
        i = -1
    if i < 0:
        _set_current(st.heaps[n - 1] if n else None)
        raise RuntimeError("arena blocks must be left in the order they were entered")
    del st.heaps[i]
    outer = st.outer.pop(i)
    n -= 1
    if i == n:
        refused = c_heap_take_refused(NULL)
        if outer:
            heap_put_refused((<HeapArea>st.heaps[n - 1]).ha
                             if n and st.heaps[n - 1] is not None else NULL, outer)
    else:
        # A scope entered after this one is still open (another task's): its
        # outer refusal was this scope's, and becomes this scope's outer one.
        refused = st.outer[i]
        st.outer[i] = outer
    _set_current(st.heaps[n - 1] if n else None)
    if not n:
        heap_after_collection()  # empties the key-table free list (3.11/3.12)
    return refused
