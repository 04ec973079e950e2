/*
 * heap.h - Python objects in orbit areas: the allocator hooks that place
 * them (heap_hooks.c), the collector's handling of them (heap_gc.c), the
 * rescue of interpreter tables (heap_rescue.c), the interpreter's own
 * work run outside arenas (heap_outside.c) and the scrub of a new orbit's
 * interpreter (heap_fork_scrub.c).  The checks that keep
 * orbits from reading memory they do not have are in heap_check.h.
 */
#ifndef ORBITPY_HEAP_H
#define ORBITPY_HEAP_H

#include "pyver.h"
#include "orbit.h"

struct heap_marks;

/* An area registered for Python objects. */
struct heap_area {
	struct orbit_area *area;
	char *lo, *hi;
	struct heap_marks *marks;	/* what the check found good in it (main
					 * only): heap_marks.h */
};

/* ---- heap_hooks.c */

/* Install the allocator hooks (once; they stay). 0 or -1 with an exception. */
int heap_install(void);
/* Register / unregister an area; at most HEAP_MAX_AREAS at once. */
#define HEAP_MAX_AREAS 64
struct heap_area *heap_register(struct orbit_area *area);
void heap_unregister(struct heap_area *ha);
/* The registered area holding p, or NULL. */
struct heap_area *heap_area_of(const void *p);
/* The area this thread allocates Python objects in (NULL: the usual heap). */
struct heap_area *heap_current(void);
void heap_set_current(struct heap_area *ha);
/* Size of the last allocation an area refused in this thread (0: none), reset. */
size_t heap_take_refused(struct heap_area **ha);
/* Set it back (an outer block's refusal, kept while an inner block ran). */
void heap_put_refused(struct heap_area *ha, size_t n);
/* While on, allocations in the current area never fall back to the usual
 * heap after a refusal (see heap_hooks.c); returns the previous setting. */
int heap_strict(int on);
/* Raw allocation in an area, outside any Python domain (for moved tables). */
void *heap_alloc_in(struct heap_area *ha, size_t n);
/* In a new orbit process: no current area, arena blocks are never freed. */
void heap_after_fork_orbit(void);
int heap_in_orbit(void);
/* After a full collection (which reopens CPython's free lists). */
void heap_after_collection(void);

/* Bytes in use in all registered areas; is any area registered? */
size_t heap_used_bytes(void);
int heap_any_area(void);

/* ---- heap_gc.c */

/* A collection of `generation` starts (start=1) or ended (start=0): the
 * collector's callback, with the GIL held. */
void heap_gc_event(int start, int generation);
/* The next full collection walks arena objects too; call
 * heap_gc_end_included() after it. */
void heap_gc_include_next(void);
void heap_gc_end_included(void);
/* When full collections walk arena objects (see heap_gc.c). */
void heap_gc_set_policy(double growth, unsigned long every);
struct heap_gc_stats {
	uint64_t full_collections;	/* seen while an arena was registered */
	uint64_t arena_collections;	/* of those, the ones that walked arena objects */
	uint64_t parked;		/* objects moved out of the generations so far */
	uint64_t parked_now;		/* objects held out now */
	uint64_t base_used;		/* arena bytes in use after the last arena collection */
};
void heap_gc_get_stats(struct heap_gc_stats *out);

/* ---- heap_rescue.c */

/* Move the key tables of module, builtins and interned-string dicts that
 * grew inside an arena block back to the heap (every module's: before an
 * orbit fork or an arena's close).  0, or -1 with an exception. */
int heap_rescue(void);
/* The same for the tables a block most likely grew, at its end: `globals`
 * (the block's code's), builtins, sys.modules and the interned strings.
 * Constant time.  0, or -1 with an exception. */
int heap_rescue_block_end(PyObject *globals);
/* Move the key table of d (a dict outside the arenas, not split) out of
 * the arenas if it is in one.  0, or -1 with an exception. */
int heap_rescue_dict(PyObject *d);

/* ---- heap_outside.c */

/* A builtin calling fn (its __self__) with the calling thread's arena
 * scope off; a new reference, or NULL with an exception. */
PyObject *heap_outside_arenas(PyObject *fn);

/* ---- heap_fork_scrub.c */

/* In a new orbit, before anything else runs there and while it still has
 * the fork's private copy of the arenas: cut the links from interpreter-wide
 * state (ABC and type caches, module globals' tables and caches, the
 * collector's lists) into the arenas.  GIL held, collector off; best effort,
 * never fails. */
void heap_fork_scrub(void);

#endif
