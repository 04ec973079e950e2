/*
 * heap_marks.c - the marks of checked objects and tables in each area (see
 * heap_marks.h), what the allocator must forget of them when it reuses a
 * block, the heap layer's page size, and the copy filter that the marks
 * make possible.
 */
#include <stdlib.h>

#include "heap_marks.h"

int marks_init(struct heap_area *ha)
{
	struct heap_marks *m = calloc(1, sizeof(*m));
	size_t size = (size_t)(ha->hi - ha->lo), ngran = size >> MARKS_GRAN_SHIFT;

	if (!m)
		return -1;
	m->base = ha->lo;
	m->size = size;
	m->page_shift = (unsigned int)__builtin_ctzl(orbit_page_size());
	m->npages = size >> m->page_shift;
	m->obj = calloc(ngran / 64 + 1, sizeof(uint64_t));
	m->buf = calloc(ngran / 64 + 1, sizeof(uint64_t));
	m->cover = calloc(m->npages + 1, sizeof(uint32_t));
	if (!m->obj || !m->buf || !m->cover) {
		free(m->obj);
		free(m->buf);
		free(m->cover);
		free(m);
		return -1;
	}
	ha->marks = m;
	return 0;
}

void marks_free(struct heap_area *ha)
{
	struct heap_marks *m = ha->marks;

	if (!m)
		return;
	free(m->obj);
	free(m->buf);
	free(m->cover);
	ptrmap_free(&m->owner);
	ptrmap_free(&m->invalid);
	free(m);
	ha->marks = NULL;
}

/*
 * cover[pg] names the one checked block (object or table) that starts before
 * page pg and reaches into it (granule + 1; 0: none): a page's recheck then
 * looks at the blocks starting in the page and at most one more, instead of
 * scanning back a page for blocks that might reach it.  Pages after the
 * block's first page whose first byte is inside it: [first, end).
 */
static void cover_range(const struct heap_marks *m, const char *start, size_t len,
			size_t *first, size_t *end)
{
	size_t off = (size_t)(start - m->base), page = (size_t)1 << m->page_shift;

	*first = (off >> m->page_shift) + 1;
	*end = (off + len + page - 1) >> m->page_shift;
	if (*end > m->npages)
		*end = m->npages;
}

void marks_cover_set(struct heap_marks *m, const char *start, size_t len, size_t g)
{
	size_t first, end;

	cover_range(m, start, len, &first, &end);
	for (size_t pg = first; pg < end; pg++)
		m->cover[pg] = (uint32_t)(g + 1);
}

static void cover_clear(struct heap_marks *m, const char *start, size_t len, size_t g)
{
	size_t first, end;

	cover_range(m, start, len, &first, &end);
	for (size_t pg = first; pg < end; pg++)
		if (m->cover[pg] == g + 1)
			m->cover[pg] = 0;
}

void marks_forget(struct heap_area *ha, void *p, size_t n)
{
	struct heap_marks *m = ha->marks;
	size_t g, ng;

	if (!m || !n)
		return;
	/* An object sits at most 32 bytes (its pre-header) into its block. */
	g = marks_gran(m, p);
	ng = (n < 48 ? n : 48) >> MARKS_GRAN_SHIFT;
	if (marks_bit(m->buf, g)) {
		marks_bit_clr(m->buf, g);
		ptrmap_del(&m->owner, (uintptr_t)p);
	}
	for (size_t i = 0; i < ng; i++) {
		if (marks_bit(m->obj, g + i))
			marks_bit_clr(m->obj, g + i);
		if (m->invalid.len)
			ptrmap_del(&m->invalid,
				   (uintptr_t)((char *)p + (i << MARKS_GRAN_SHIFT)));
	}
	if (marks_crosses_page(m, p, n))
		for (size_t i = 0; i <= ng; i++)
			cover_clear(m, p, n, g + i);
}

int marks_may_know(struct heap_area *ha, const void *p)
{
	struct heap_marks *m = ha->marks;
	size_t g;

	if (!m)
		return 0;
	if (m->invalid.len)
		return 1;
	g = marks_gran(m, p);	/* an object sits at most 32 bytes into its block */
	return marks_bit(m->buf, g) | marks_bit(m->obj, g) | marks_bit(m->obj, g + 1) |
	       marks_bit(m->obj, g + 2);
}

/*
 * The copy filter: in an orbit's copy of the pages main changed, every
 * checked live object gets an immortal reference count.  Reading an arena
 * object in the orbit then writes nothing (Py_INCREF/Py_DECREF skip immortal
 * objects), so the orbit takes no copy-on-write fault per page it reads and
 * has nothing to drop before its next call.  Objects the checker has not
 * marked keep their counts there: reading them costs a fault, as before.
 * Runs in main right after the call's check (GIL held), so the marks are
 * those the call was checked with.  Before 3.12 it rewrites nothing: it is
 * there for the comparison the snapshot makes (orbit_area_set_copy_filter).
 * It lives with the marks because it is one more reading of them: the hooks
 * install it without depending on the check.
 */
void marks_copy_filter(void *ctx, size_t first, size_t npages, void *dst)
{
	struct heap_area *ha = ctx;
	struct heap_marks *m = ha->marks;
	char *P;
	size_t w0, w1;

	if (!PYVER_HAS_IMMORTAL || !m || first + npages > m->npages)
		return;
	P = m->base + (first << m->page_shift);
	w0 = (first << m->page_shift) >> MARKS_GRAN_SHIFT >> 6;
	w1 = ((first + npages) << m->page_shift) >> MARKS_GRAN_SHIFT >> 6;
	for (size_t w = w0; w < w1; w++) {
		for (uint64_t x = m->obj[w]; x; x &= x - 1) {
			size_t g = w * 64 + (size_t)__builtin_ctzll(x);
			char *op = m->base + (g << MARKS_GRAN_SHIFT);

			if (Py_REFCNT((PyObject *)op) > 0)
				pyver_make_immortal((PyObject *)((char *)dst + (op - P)));
		}
	}
}
