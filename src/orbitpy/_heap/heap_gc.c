/*
 * heap_gc.c - arena objects and CPython's cyclic garbage collector.
 *
 * A full collection writes the GC header of every object it walks, so if
 * the collector walked arena objects, every collection of the oldest
 * generation would dirty every page of an object arena and make the next
 * orbit call copy and check all of it again.  So arena objects are kept out
 * of the collector's generations ("parked", pyver_gc.c): when a collection
 * of generation 1 or 2 starts, the arena objects in the generations it is
 * about to walk move to the parked list, which ordinary collections never
 * walk.  Objects are young when this happens (they reach generation 1 only
 * through a collection of generation 0, which wrote their headers anyway).
 *
 * Parked objects are still tracked and freed normally when their reference
 * counts drop to zero; only reference cycles among them wait for an arena
 * collection: a full collection that includes them (the parked list goes
 * back into the oldest generation when it starts, and the arena objects
 * that survive are parked again when it stops).  One happens
 *   - when asked for (orbitpy.collect_arenas(), Arena.collect(), and
 *     Arena.close() while objects remain),
 *   - at a full collection when the bytes in use in all object arenas grew
 *     by more than `growth` (and at least HEAP_GC_MIN_GROWTH) since the
 *     last arena collection, which bounds what uncollected cycles can take,
 *   - at every `every`-th full collection if `every` is set.
 * The call after an arena collection copies every page holding a tracked
 * arena object, once.
 *
 * In an orbit nothing is parked or put back: its view of the arenas is a
 * snapshot whose list links are main's.
 */
#include "heap.h"

#define HEAP_GC_MIN_GROWTH (256u << 10)

static double policy_growth = 0.25;
static unsigned long policy_every;

static int including;		/* the running full collection walks arena objects */
static int have_base;
static size_t base_used;	/* bytes in use after the last arena collection */
static unsigned long full_since;	/* full collections since then */
static struct heap_gc_stats st;

static int is_arena_object(const void *op)
{
	return heap_area_of(op) != NULL;
}

static int arena_collection_due(void)
{
	size_t used, step;

	if (policy_every && full_since + 1 >= policy_every)
		return 1;
	if (!have_base || policy_growth <= 0)
		return 0;
	used = heap_used_bytes();
	step = (size_t)((double)base_used * policy_growth);
	if (step < HEAP_GC_MIN_GROWTH)
		step = HEAP_GC_MIN_GROWTH;
	return used > base_used && used - base_used > step;
}

static void include_arenas(void)
{
	pyver_gc_unpark();
	including = 1;
}

static void after_full_collection(void)
{
	st.full_collections++;
	full_since++;
	if (including) {
		/* The survivors' headers were just written: park them now, so
		 * that only the next call pays for this collection. */
		including = 0;
		st.parked += (uint64_t)pyver_gc_park(PYVER_GC_OLDEST, is_arena_object);
		st.arena_collections++;
		full_since = 0;
		base_used = heap_used_bytes();
		have_base = 1;
	} else if (!have_base) {
		base_used = heap_used_bytes();
		have_base = 1;
	}
}

/*
 * A collection runs finalizers (__del__, weakref callbacks) of unrelated
 * garbage; run inside a `with arena:` block they would allocate in the arena
 * (a dropped subprocess.Popen appends itself to subprocess._active, a warning
 * creates a module's __warningregistry__), leaving interpreter-wide state
 * pointing into the arena, where an orbit whose call maps no arena faults.
 * So the thread's arena scope is off from a collection's start to its stop.
 * Collections do not nest; the scope is per thread, as this is.
 */
static __thread struct heap_area *scope_during_collection;
static __thread int scope_saved;

static void arena_scope_off_for_collection(int start)
{
	if (start) {
		scope_during_collection = heap_current();
		scope_saved = 1;
		if (scope_during_collection)
			heap_set_current(NULL);
	} else if (scope_saved) {
		scope_saved = 0;
		if (scope_during_collection)
			heap_set_current(scope_during_collection);
		scope_during_collection = NULL;
	}
}

void heap_gc_event(int start, int generation)
{
	arena_scope_off_for_collection(start);
	if (heap_in_orbit() || !heap_any_area())
		return;
	if (!start) {
		if (generation == PYVER_GC_OLDEST)
			after_full_collection();
		return;
	}
	if (including || generation < 1)
		return;
	if (generation == PYVER_GC_OLDEST && arena_collection_due()) {
		include_arenas();
		return;
	}
	for (int g = 0; g <= generation; g++)
		st.parked += (uint64_t)pyver_gc_park(g, is_arena_object);
}

void heap_gc_include_next(void)
{
	if (!heap_in_orbit())
		include_arenas();
}

void heap_gc_end_included(void)
{
	/* The collection ran without our "stop" callback (it was removed from
	 * gc.callbacks, or a collection was already running). */
	if (including)
		after_full_collection();
}

void heap_gc_set_policy(double growth, unsigned long every)
{
	policy_growth = growth;
	policy_every = every;
}

void heap_gc_get_stats(struct heap_gc_stats *out)
{
	*out = st;
	out->parked_now = (uint64_t)pyver_gc_parked();
	out->base_used = base_used;
}
