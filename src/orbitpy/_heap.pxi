# The heap (Python objects in arenas): the allocator hooks and the pre-call
# checks (C in _heap/, declared in includes/heap.pxd; the Python side is
# _heap/__init__.py).  Included by _core.pyx, so that one copy of the C core
# serves both.

cdef class HeapArea:
    """An arena's area as the allocator hooks know it."""
    cdef heap_area *ha
    cdef readonly Area area
    cdef object __weakref__

    def __cinit__(self, Area area):
        area._check()
        heap_install()
        self.ha = heap_register(area.a)
        self.area = area

    def unregister(self):
        if self.ha is not NULL:
            heap_unregister(self.ha)
            self.ha = NULL

    def contains(self, obj):
        return self.ha is not NULL and heap_area_of(<void *>obj) == self.ha


cdef class CallPlan:
    """The pre-call checks of one call: its arena objects (the roots), by
    area.  Orbit.call_async passes them to the core as the call's check,
    which runs them right before the snapshot (heap_precall); if they refuse
    the call, call_async raises self.error() once the GIL may change hands
    again."""
    cdef list heaps                 # [(HeapArea, [root, ...]), ...]
    cdef list dropped               # references the checks gave up
    # None, or why the checks refused the call: (HeapArea, roots, failures)
    # where failures is chk_prepare's list or the exception it raised
    cdef readonly object refusal
    # True when the refusal is only classes the orbit has in another state
    # than main (failures are then (owner, class, message, what changed)):
    # restarting the orbit mends it
    cdef readonly bint stale_classes

    def __init__(self, list heaps):
        for item in heaps:
            if (type(item) is not tuple or len(item) != 2 or type(item[0]) is not HeapArea
                    or type(item[1]) is not list):
                raise TypeError("a call plan is a list of (HeapArea, list) pairs")
        self.heaps = heaps
        self.dropped = []
        self.refusal = None
        self.stale_classes = False

    def reset(self):
        """Forget a refusal, to run the checks again."""
        self.refusal = None
        self.stale_classes = False

    def error(self):
        """The exception a refused call raises (subclasses explain failures)."""
        why = self.refusal[2] if self.refusal is not None else None
        if isinstance(why, BaseException):
            return why
        return RuntimeError(f"the call was refused by its pre-call check: {why!r}")


cdef int heap_precall(CallPlan plan, uint64_t epoch) noexcept:
    """Run a call's pre-call checks; 1 to refuse the call (plan.refusal says
    why).  The call's check (_check_call), GIL held, right before the snapshot.

    No other Python thread may run between the start of the checks and the
    end of the snapshot (else the snapshot would mix two states of the arena,
    and hold objects the checks never saw).  The interpreter switches threads
    only in Python code, so none runs here: the checks and the reachability
    walk are C, the collector (whose callbacks and finalizers are Python) is
    off, references the checks give up are released after the snapshot
    (plan.dropped), and nothing here waits."""
    cdef heap_area *prev = heap_current()
    cdef int gc_was_on = PyGC_Disable()
    cdef HeapArea h = None
    cdef list roots = None, failures
    cdef int refuse = 0
    heap_set_current(NULL)          # what the checks make for themselves is not arena state
    try:
        for item in plan.heaps:
            h = <HeapArea>(<tuple>item)[0]
            roots = <list>(<tuple>item)[1]
            if h.ha is NULL:
                raise ValueError("the area is closed")
            failures = []
            chk_prepare(h.ha, roots, epoch, failures, plan.dropped)
            # Failures the call cannot reach (objects elsewhere in the arena)
            # do not stop it.  Classes in another state than main's are
            # mended by a restart, the rest are errors: those first.
            escapes = [f for f in failures if len(<tuple>f) == 3]
            stale = [f for f in failures if len(<tuple>f) == 4]
            if escapes and chk_reaches(h.ha, roots, escapes):
                plan.refusal = (h, roots, escapes)
                plan.stale_classes = False
                refuse = 1
                break
            if stale and not refuse and chk_reaches(h.ha, roots, stale):
                plan.refusal = (h, roots, stale)
                plan.stale_classes = True
                refuse = 1
    except BaseException as e:
        plan.refusal = (h, roots, e)
        refuse = 1
    heap_set_current(prev)
    if gc_was_on:
        PyGC_Enable()
    return refuse


cdef dict _heap_areas = {}      # address of heap_area -> HeapArea


cdef bint _runtime_outside = False


cdef _run_runtime_outside_arenas():
    # Once: first imports and the showing of warnings run outside the
    # thread's arena (see _heap/heap_outside.c).  Both entry points are
    # looked up where they are used each time they run.
    global _runtime_outside
    import sys
    bootstrap = sys.modules["_frozen_importlib"]
    warnings = sys.modules.get("warnings")
    if warnings is None:
        import warnings
    bootstrap._find_and_load = heap_outside_arenas(bootstrap._find_and_load)
    warnings._showwarnmsg = heap_outside_arenas(warnings._showwarnmsg)
    _runtime_outside = True


def heap_register_area(Area area):
    h = HeapArea(area)
    if not _runtime_outside:
        _run_runtime_outside_arenas()
    _heap_areas[<size_t>h.ha] = h
    return h


def heap_unregister_area(HeapArea h):
    if h.ha is not NULL:
        del _heap_areas[<size_t>h.ha]
        h.unregister()


def rescue_tables():
    heap_rescue()


def rescue_block_tables(dict globals):
    """At a block's end: the tables it most likely grew (see heap_rescue.c)."""
    heap_rescue_block_end(globals)


def after_collection():
    heap_after_collection()


def gc_event(bint start, int generation):
    """The collector's callback: a collection of `generation` starts or
    ended (see _heap/heap_gc.c)."""
    heap_gc_event(start, generation)


def gc_collect_arenas():
    """A full collection that walks arena objects too; gc.collect()'s result."""
    import gc
    heap_gc_include_next()
    try:
        return gc.collect()
    finally:
        heap_gc_end_included()


def gc_set_policy(double growth, unsigned long every):
    heap_gc_set_policy(growth, every)


def gc_stats():
    cdef heap_gc_stats st
    heap_gc_get_stats(&st)
    return {"full_collections": st.full_collections,
            "arena_collections": st.arena_collections, "parked": st.parked,
            "parked_now": st.parked_now, "base_used": st.base_used}


def heap_in_use():
    """Has any area been used for Python objects?"""
    return bool(_heap_areas)


def heap_areas():
    """Every area used for Python objects (as HeapAreas)."""
    return list(_heap_areas.values())


def heap_of(obj):
    """The HeapArea holding obj, or None."""
    cdef heap_area *ha = heap_area_of(<void *>obj)
    if ha is NULL:
        return None
    return _heap_areas.get(<size_t>ha)


def heap_set(HeapArea h):
    """Make h (or None) where this thread allocates Python objects."""
    heap_set_current(h.ha if h is not None else NULL)


def heap_take_refused():
    """Size of the last allocation an area refused in this thread (0: none),
    reset (which also ends the thread's falling back to the usual heap)."""
    return c_heap_take_refused(NULL)


def heap_restore_refused(HeapArea h, size_t n):
    """Set the thread's refusal back to n bytes refused by h (an outer
    block's, kept aside while an inner block ran)."""
    heap_put_refused(h.ha if h is not None else NULL, n)


def register_classes(list types):
    return chk_register_types(types)


def forget_class(size_t addr):
    chk_forget_type(addr)


def is_static(obj):
    return chk_is_static(<void *>obj) != 0


def object_at(size_t addr):
    """The object at addr (in an orbit: an arena object of the snapshot)."""
    return <object><PyObject *>addr


def check_stats():
    cdef chk_stats st
    chk_get_stats(&st)
    return {"checks": st.checks, "pages": st.pages, "objects": st.objects,
            "copies": st.copies, "moves": st.moves, "ns": st.ns}
