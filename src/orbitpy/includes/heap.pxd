# The heap (Python objects in arenas): the allocator hooks and the pre-call
# checks (C in src/orbitpy/_heap/; its headers, named below, are the reference).

from libc.stdint cimport uint64_t

from .orbit cimport orbit_area

cdef extern from "heap.h":
    struct heap_area:
        pass
    int heap_install() except -1
    heap_area *heap_register(orbit_area *area) except NULL
    void heap_unregister(heap_area *ha)
    heap_area *heap_area_of(const void *p)
    heap_area *heap_current()
    void heap_set_current(heap_area *ha)
    size_t c_heap_take_refused "heap_take_refused"(heap_area **ha)
    void heap_put_refused(heap_area *ha, size_t n)
    void heap_after_fork_orbit() nogil
    void heap_after_collection()
    int heap_rescue() except -1
    int heap_rescue_block_end(object globals) except -1
    void heap_fork_scrub()
    object heap_outside_arenas(object fn)
    void heap_gc_event(int start, int generation)
    void heap_gc_include_next()
    void heap_gc_end_included()
    void heap_gc_set_policy(double growth, unsigned long every)
    struct heap_gc_stats:
        uint64_t full_collections
        uint64_t arena_collections
        uint64_t parked
        uint64_t parked_now
        uint64_t base_used
    void heap_gc_get_stats(heap_gc_stats *out)

cdef extern from "heap_check.h":
    struct chk_stats:
        uint64_t checks
        uint64_t pages
        uint64_t objects
        uint64_t copies
        uint64_t moves
        uint64_t ns
    int chk_prepare(heap_area *ha, list roots, uint64_t epoch, list failures,
                    list dropped) except -1
    int chk_reaches(heap_area *ha, list roots, list failures) except -1
    void chk_get_stats(chk_stats *st)

cdef extern from "class_registry.h":
    uint64_t chk_register_types(object types)
    void chk_forget_type(size_t addr)

cdef extern from "static_image.h":
    int chk_is_static(const void *op)
