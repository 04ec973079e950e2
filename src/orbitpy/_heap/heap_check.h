/*
 * heap_check.h - before a call, make sure everything the orbit can reach
 * from its arena arguments is memory it has: arena objects (in its page
 * snapshot), static interpreter objects (static_image.h), and classes it got
 * from its fork (class_registry.h).
 *
 * The work is incremental.  Objects found good are marked (heap_marks.h);
 * the pages main wrote since the previous check say which marked objects and
 * tables to look at again.  An object whose check fails is unmarked and kept
 * on the area's `invalid` list: the caller decides whether the call can
 * reach it.
 *
 * The pass (heap_check.c) drives the checks of single objects
 * (object_checks.c), which copy values in (copy_in.c) and walk the C types
 * of heap_types.c.
 */
#ifndef ORBITPY_HEAP_CHECK_H
#define ORBITPY_HEAP_CHECK_H

#include "heap.h"

/*
 * Check what changed in `ha` and everything reachable from `roots` (a list
 * of objects in ha) for an orbit forked at `epoch`.  Problems are appended to
 * `failures` as (owner, target, message) tuples: owner is the arena object
 * holding the bad reference (None for a class problem), target what it
 * refers to.  A class the orbit has in another state than main (changed or
 * created since its fork; restarting the orbit mends it) is a 4-tuple
 * (owner, class, message, what changed).  References the check gives up (values it replaced by arena
 * copies) are appended to the list `dropped` instead of released: releasing
 * them could run Python code.  Returns 0, or -1 with an exception set (e.g.
 * MemoryError when the arena has no room for a copy).
 *
 * Runs no Python code when called with the collector disabled, so that a
 * call's check and snapshot are one step for every other thread.
 */
int chk_prepare(struct heap_area *ha, PyObject *roots, uint64_t epoch, PyObject *failures,
		PyObject *dropped);

/*
 * Can the orbit reach one of `failures` (as chk_prepare left them) from
 * `roots`: an object holding a bad reference, or an instance of a class in a
 * class problem?  Follows references within ha as the collector sees them
 * (tp_traverse).  1, 0, or -1 with an exception set.  Runs no Python code.
 */
int chk_reaches(struct heap_area *ha, PyObject *roots, PyObject *failures);

struct chk_stats {
	uint64_t checks;	/* chk_prepare calls */
	uint64_t pages;		/* changed pages looked at */
	uint64_t objects;	/* objects and tables checked */
	uint64_t copies;	/* immutable values copied into an arena */
	uint64_t moves;		/* tables moved into an arena */
	uint64_t ns;		/* time spent in chk_prepare */
};
void chk_get_stats(struct chk_stats *st);

#endif
