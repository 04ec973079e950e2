/*
 * area_alloc.c - boundary-tag allocator with segregated free lists.
 *
 * Layout: a heap header at the start of the area, then blocks.  Each block
 * starts with a 16-byte header: its size (multiple of 16) with two flag bits,
 * and the size of the previous block (meaningful when that one is free, for
 * coalescing).  Free blocks keep their bin links in their payload.  Bins
 * hold one exact size each below 1 KiB (Python's objects: taking the head is
 * a fit) and a power-of-two range above (first fit within the range); a
 * bitmap of non-empty bins finds the next one with room in O(1).  Fresh
 * memory is taken from `top` upwards, so untouched pages stay unpopulated and
 * cost nothing to snapshot.  All links are offsets from the area base.
 */
#include <stdint.h>
#include <string.h>

#include "area_alloc.h"

#define HEAP_MAGIC 0x6f726268656170ULL	/* "orbheap" */
#define ALIGN 16
#define HDR 16
#define MIN_BLOCK 32
#define EXACT_LIMIT 1024	/* block sizes below this have a bin each */
#define NEXACT (EXACT_LIMIT / ALIGN)
#define NBINS (NEXACT + 48)
#define F_USED 1ULL
#define F_PREV_USED 2ULL
#define SIZE_MASK (~(uint64_t)15)

struct heap {
	uint64_t magic;
	uint64_t size;		/* bytes of the area */
	uint64_t top;		/* offset of the first never-used byte */
	uint64_t used;
	uint64_t count;
	uint64_t bins[NBINS];	/* offsets of free-list heads, 0 = empty */
	uint64_t nonempty[(NBINS + 63) / 64];
};

struct block {
	uint64_t size_flags;
	uint64_t prev_size;
	/* free blocks only: */
	uint64_t next, prev;
};

#define HEAP_START ((sizeof(struct heap) + ALIGN - 1) & ~(size_t)(ALIGN - 1))

static inline struct block *blk(void *base, uint64_t off)
{
	return (struct block *)((char *)base + off);
}

static inline uint64_t bsize(const struct block *b)
{
	return b->size_flags & SIZE_MASK;
}

static int bin_of(uint64_t size)
{
	int b;

	if (size < EXACT_LIMIT)
		return (int)(size / ALIGN);
	b = NEXACT + (63 - __builtin_clzll(size)) - 10;	/* 2^10 = EXACT_LIMIT */
	return b < NBINS ? b : NBINS - 1;
}

static void bin_mark(struct heap *h, int i)
{
	if (h->bins[i])
		h->nonempty[i / 64] |= 1ULL << (i % 64);
	else
		h->nonempty[i / 64] &= ~(1ULL << (i % 64));
}

/* The first non-empty bin at or after i, or -1. */
static int bin_next(const struct heap *h, int i)
{
	for (int w = i / 64; w < (NBINS + 63) / 64; w++) {
		uint64_t x = h->nonempty[w];

		if (w == i / 64)
			x &= ~0ULL << (i % 64);
		if (x)
			return w * 64 + __builtin_ctzll(x);
	}
	return -1;
}

static void bin_insert(struct heap *h, void *base, uint64_t off)
{
	struct block *b = blk(base, off);
	int i = bin_of(bsize(b));

	b->prev = 0;
	b->next = h->bins[i];
	if (b->next)
		blk(base, b->next)->prev = off;
	h->bins[i] = off;
	bin_mark(h, i);
}

static void bin_remove(struct heap *h, void *base, uint64_t off)
{
	struct block *b = blk(base, off);

	if (b->prev) {
		blk(base, b->prev)->next = b->next;
	} else {
		int i = bin_of(bsize(b));

		h->bins[i] = b->next;
		bin_mark(h, i);
	}
	if (b->next)
		blk(base, b->next)->prev = b->prev;
}

size_t area_alloc_top(const void *base)
{
	return (size_t)((const struct heap *)base)->top;
}

void area_alloc_init(void *base, size_t size)
{
	struct heap *h = base;

	memset(h, 0, sizeof(*h));
	h->magic = HEAP_MAGIC;
	h->size = size;
	h->top = HEAP_START;
}

/* Mark the block after `off` (if any) as having a used/free predecessor. */
static void set_next_prev(struct heap *h, void *base, uint64_t off, int used, uint64_t size)
{
	uint64_t n = off + size;

	if (n >= h->top)
		return;
	if (used) {
		blk(base, n)->size_flags |= F_PREV_USED;
	} else {
		blk(base, n)->size_flags &= ~F_PREV_USED;
		blk(base, n)->prev_size = size;
	}
}

void *area_alloc(void *base, size_t req)
{
	struct heap *h = base;
	uint64_t need, off = 0;

	if (req > h->size)
		return NULL;
	need = (req + HDR + ALIGN - 1) & ~(uint64_t)(ALIGN - 1);
	if (need < MIN_BLOCK)
		need = MIN_BLOCK;
	{
		int i = bin_of(need);

		if (i >= NEXACT)	/* a range: first fit within it */
			for (uint64_t o = h->bins[i]; o; o = blk(base, o)->next)
				if (bsize(blk(base, o)) >= need) {
					off = o;
					break;
				}
		if (!off) {	/* any block of a later bin (or this exact one) fits */
			i = bin_next(h, i < NEXACT ? i : i + 1);
			if (i >= 0)
				off = h->bins[i];
		}
	}
	if (off) {
		struct block *b = blk(base, off);
		uint64_t have = bsize(b);

		bin_remove(h, base, off);
		if (have - need >= MIN_BLOCK) {
			uint64_t rest = off + need;

			blk(base, rest)->size_flags = (have - need) | F_PREV_USED;
			set_next_prev(h, base, rest, 0, have - need);
			bin_insert(h, base, rest);
		} else {
			need = have;
			set_next_prev(h, base, off, 1, need);
		}
		b->size_flags = need | F_USED | (b->size_flags & F_PREV_USED);
	} else {
		if (h->top + need > h->size)
			return NULL;
		off = h->top;
		h->top += need;
		/* The block below top is used unless it was freed into a bin, in
		 * which case free() would have folded it into top already. */
		blk(base, off)->size_flags = need | F_USED | F_PREV_USED;
	}
	h->used += need;
	h->count++;
	return (char *)base + off + HDR;
}

void area_free(void *base, void *ptr)
{
	struct heap *h = base;
	uint64_t off, size;
	struct block *b;

	if (!ptr)
		return;
	off = (uint64_t)((char *)ptr - (char *)base) - HDR;
	b = blk(base, off);
	size = bsize(b);
	h->used -= size;
	h->count--;
	/* Coalesce with the next block, then the previous one. */
	if (off + size < h->top) {
		struct block *n = blk(base, off + size);

		if (!(n->size_flags & F_USED)) {
			bin_remove(h, base, off + size);
			size += bsize(n);
		}
	}
	if (!(b->size_flags & F_PREV_USED) && off > HEAP_START) {
		uint64_t poff = off - b->prev_size;

		bin_remove(h, base, poff);
		size += b->prev_size;
		off = poff;
		b = blk(base, off);
	}
	if (off + size == h->top) {	/* give it back to the untouched region */
		h->top = off;
		return;
	}
	b->size_flags = size | F_PREV_USED;	/* neighbours of a free block are used */
	set_next_prev(h, base, off, 0, size);
	bin_insert(h, base, off);
}

void area_alloc_usage(void *base, size_t *used, size_t *count)
{
	struct heap *h = base;

	*used = h->used;
	*count = h->count;
}

int area_alloc_owns(void *base, const void *ptr)
{
	struct heap *h = base;
	uint64_t off = (uint64_t)((const char *)ptr - (const char *)base);

	if ((const char *)ptr < (const char *)base || off < HEAP_START + HDR || off >= h->top)
		return 0;
	return (blk(base, off - HDR)->size_flags & F_USED) != 0;
}

size_t area_alloc_usable(void *base, const void *ptr)
{
	if (!area_alloc_owns(base, ptr))
		return 0;
	return bsize(blk(base, (uint64_t)((const char *)ptr - (const char *)base) - HDR)) - HDR;
}
