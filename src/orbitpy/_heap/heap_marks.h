/*
 * heap_marks.h - what the pre-call check found good in an area: one bit per
 * 16-byte granule for checked objects (by address) and one for checked
 * tables (by block), main-only, plus the side tables that go with them.
 *
 * Kept apart from the check itself so that the allocator hooks, which must
 * forget the marks of a block they reuse, depend on nothing but these.
 */
#ifndef ORBITPY_HEAP_MARKS_H
#define ORBITPY_HEAP_MARKS_H

#include "heap.h"
#include "ptrmap.h"

#define MARKS_GRAN_SHIFT 4

struct heap_marks {
	char *base;
	size_t size, npages;
	unsigned int page_shift;	/* of orbit_page_size() */
	uint64_t *obj;		/* checked objects, by address */
	uint64_t *buf;		/* checked tables, by block */
	uint32_t *cover;	/* per page: 1 + granule of the checked object or
				 * table that starts before it and reaches into it */
	struct ptrmap owner;	/* table block -> object it belongs to */
	struct ptrmap invalid;	/* objects whose last check failed */
};

/* The heap layer's page is the seam's, orbit_page_size(): the unit of the
 * core's page runs (orbit_area_changed, the copy filter) and of `cover`. */

/* ---- for the allocator hooks (heap_hooks.c) */

/* Marks for ha (ha->marks); 0, or -1 when out of memory. */
int marks_init(struct heap_area *ha);
void marks_free(struct heap_area *ha);
/* The allocator is about to reuse [p, p+n): forget what was checked there. */
void marks_forget(struct heap_area *ha, void *p, size_t n);
/* Cheap: could the marks have anything to forget about the block at p? */
int marks_may_know(struct heap_area *ha, const void *p);
/* The copy filter (orbit_area_set_copy_filter) for ha's area, ctx = ha. */
void marks_copy_filter(void *ctx, size_t first_page, size_t npages, void *dst);

/* ---- for the check */

static inline int marks_in(const struct heap_marks *m, const void *p)
{
	return (const char *)p >= m->base && (const char *)p < m->base + m->size;
}

static inline size_t marks_gran(const struct heap_marks *m, const void *p)
{
	return (size_t)((const char *)p - m->base) >> MARKS_GRAN_SHIFT;
}

static inline int marks_bit(const uint64_t *bits, size_t g)
{
	return (int)((bits[g / 64] >> (g % 64)) & 1);
}

static inline void marks_bit_set(uint64_t *bits, size_t g)
{
	bits[g / 64] |= 1ULL << (g % 64);
}

static inline void marks_bit_clr(uint64_t *bits, size_t g)
{
	bits[g / 64] &= ~(1ULL << (g % 64));
}

/* Is op (in the area) marked as a checked object? */
static inline int marks_checked(const struct heap_marks *m, const void *op)
{
	return marks_bit(m->obj, marks_gran(m, op));
}

/* Does [start, start+len) (in the area) cross a page boundary? */
static inline int marks_crosses_page(const struct heap_marks *m, const char *start, size_t len)
{
	size_t page = (size_t)1 << m->page_shift;

	return (((size_t)(start - m->base)) & (page - 1)) + len > page;
}

/* The checked block of granule g spans [start, start+len): it covers the
 * pages after its first that it reaches into (see `cover`). */
void marks_cover_set(struct heap_marks *m, const char *start, size_t len, size_t g);

#endif
