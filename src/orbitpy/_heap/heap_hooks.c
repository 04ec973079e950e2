/*
 * heap_hooks.c - route Python allocations into orbit areas.
 *
 * The hooks wrap (never replace) the allocators CPython had for its MEM and
 * OBJ domains.  A thread inside `with arena:` gets its new blocks from that
 * area; every other allocation goes to the wrapped allocator.  A block is
 * freed or resized where it lives, found by its address, whichever thread or
 * domain lets go of it.  Both domains run with the GIL held, which also
 * guards the registry below.
 */
#include <string.h>

#include "heap.h"
#include "heap_marks.h"

static PyMemAllocatorEx orig_mem, orig_obj;
static int installed;
static int in_orbit;

static struct heap_area areas[HEAP_MAX_AREAS];
static int nareas;
static char *span_lo, *span_hi;	/* covers every registered area */

static _Thread_local struct heap_area *current;
static _Thread_local struct heap_area *refused_area;
static _Thread_local size_t refused_size;
static _Thread_local int strict;	/* no falling back (see falls_back) */

struct heap_area *heap_area_of(const void *p)
{
	const char *c = p;

	if (c < span_lo || c >= span_hi)
		return NULL;
	for (int i = 0; i < nareas; i++)
		if (areas[i].area && c >= areas[i].lo && c < areas[i].hi)
			return &areas[i];
	return NULL;
}

static void recompute_span(void)
{
	span_lo = span_hi = NULL;
	for (int i = 0; i < nareas; i++) {
		if (!areas[i].area)
			continue;
		if (!span_lo || areas[i].lo < span_lo)
			span_lo = areas[i].lo;
		if (areas[i].hi > span_hi)
			span_hi = areas[i].hi;
	}
}

struct heap_area *heap_register(struct orbit_area *area)
{
	struct heap_area *ha = NULL;

	for (int i = 0; i < nareas && !ha; i++)
		if (!areas[i].area)
			ha = &areas[i];
	if (!ha && nareas < HEAP_MAX_AREAS)
		ha = &areas[nareas++];
	if (!ha) {
		PyErr_Format(PyExc_RuntimeError, "at most %d arenas may be open at once",
			     HEAP_MAX_AREAS);
		return NULL;
	}
	pyver_freelists_off();	/* a full collection may have reopened them */
	ha->lo = orbit_area_base(area);
	ha->hi = ha->lo + orbit_area_size(area);
	ha->marks = NULL;
	if (marks_init(ha) < 0) {
		PyErr_NoMemory();
		return NULL;
	}
	ha->area = area;
	/* Also where counts cannot be made immortal (3.11): with a filter the
	 * snapshot compares pages main wrote with the orbit's copy, and a read
	 * sweep (counts up, then back down) copies nothing. */
	orbit_area_set_copy_filter(area, marks_copy_filter, ha);
	recompute_span();
	return ha;
}

void heap_unregister(struct heap_area *ha)
{
	if (current == ha)
		current = NULL;
	if (ha->area)
		orbit_area_set_copy_filter(ha->area, NULL, NULL);
	marks_free(ha);
	ha->area = NULL;
	recompute_span();
}

size_t heap_used_bytes(void)
{
	struct orbit_area_stats st;
	size_t used = 0;

	for (int i = 0; i < nareas; i++) {
		if (!areas[i].area)
			continue;
		orbit_area_stats(areas[i].area, &st);
		used += st.used;
	}
	return used;
}

int heap_any_area(void)
{
	return span_lo != NULL;
}

struct heap_area *heap_current(void)
{
	return current;
}

void heap_set_current(struct heap_area *ha)
{
	current = ha;
}

void heap_put_refused(struct heap_area *ha, size_t n)
{
	refused_area = n ? ha : NULL;
	refused_size = n;
}

int heap_strict(int on)
{
	int was = strict;

	strict = on;
	return was;
}

size_t heap_take_refused(struct heap_area **ha)
{
	size_t n = refused_size;

	if (ha)
		*ha = refused_area;
	refused_size = 0;
	refused_area = NULL;
	return n;
}

void *heap_alloc_in(struct heap_area *ha, size_t n)
{
	void *p = orbit_alloc(ha->area, n ? n : 1);

	if (!p) {
		refused_area = ha;
		refused_size = n ? n : 1;
	}
	return p;
}

void heap_after_fork_orbit(void)
{
	current = NULL;
	in_orbit = 1;
}

int heap_in_orbit(void)
{
	return in_orbit;
}

void heap_after_collection(void)
{
	if (installed)
		pyver_freelists_off();
}

/*
 * Once the current area refused an allocation, this thread's new blocks come
 * from the usual heap until the refusal is taken (the `with arena:` block
 * ends, see leave() in __init__.py): CPython allocates while it unwinds the
 * MemoryError (the int of a handler's instruction offset), and had that
 * failed too, the unwinder would go back to the same handler forever.  The
 * block still ends with ArenaFull; what it made after the refusal lives
 * outside the arena, and the pre-call check refuses it in arena state.
 * Strict (the check's own copies into an area): never, a copy must be in it.
 */
static int falls_back(void)
{
	return current == refused_area && !strict;
}

static void *hook_malloc(void *ctx, size_t n)
{
	PyMemAllocatorEx *o = ctx;

	if (current && !falls_back())
		return heap_alloc_in(current, n);
	return o->malloc(o->ctx, n);
}

static void *hook_calloc(void *ctx, size_t nelem, size_t elsize)
{
	PyMemAllocatorEx *o = ctx;
	void *p;

	if (!current || falls_back())
		return o->calloc(o->ctx, nelem, elsize);
	if (elsize && nelem > SIZE_MAX / elsize)
		return NULL;
	p = heap_alloc_in(current, nelem * elsize);
	if (p)
		memset(p, 0, nelem * elsize);
	return p;
}

static void release(struct heap_area *ha, void *p)
{
	if (in_orbit)	/* the orbit's view is thrown away before its next call */
		return;
	/* Only marked blocks need their size (which takes the area's lock). */
	if (marks_may_know(ha, p))
		marks_forget(ha, p, orbit_usable_size(ha->area, p));
	orbit_free(ha->area, p);
}

static void *hook_realloc(void *ctx, void *p, size_t n)
{
	PyMemAllocatorEx *o = ctx;
	struct heap_area *ha = p ? heap_area_of(p) : NULL;
	size_t old;
	void *q;

	if (!p)
		return hook_malloc(ctx, n);
	if (!ha)	/* a block stays in the heap it came from */
		return o->realloc(o->ctx, p, n);
	old = orbit_usable_size(ha->area, p);
	if (n <= old && !in_orbit)
		return p;
	/* An arena block grows within its arena; in an orbit (which cannot
	 * allocate there) it moves to the orbit's own heap. */
	q = in_orbit ? o->malloc(o->ctx, n) : heap_alloc_in(ha, n);
	if (!q)
		return NULL;
	memcpy(q, p, old < n ? old : n);
	release(ha, p);
	return q;
}

static void hook_free(void *ctx, void *p)
{
	PyMemAllocatorEx *o = ctx;
	struct heap_area *ha = heap_area_of(p);

	if (ha)
		release(ha, p);
	else
		o->free(o->ctx, p);
}

int heap_install(void)
{
	PyMemAllocatorEx mem, obj;

	if (installed)
		return 0;
	pyver_freelists_off();
	PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &orig_mem);
	PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &orig_obj);
	mem = (PyMemAllocatorEx){ &orig_mem, hook_malloc, hook_calloc, hook_realloc, hook_free };
	obj = (PyMemAllocatorEx){ &orig_obj, hook_malloc, hook_calloc, hook_realloc, hook_free };
	PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &mem);
	PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &obj);
	installed = 1;
	return 0;
}
