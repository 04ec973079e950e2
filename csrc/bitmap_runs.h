/*
 * bitmap_runs.h - the runs of set bits in a bitmap of 64-bit words (bit b
 * of word w is bit w * 64 + b), handed over as (first, n) in ascending order,
 * a run that continues into the next word as one.
 *
 * Header-only (static inline) so that the core, its backend and the heap
 * layer, which build as separate libraries, share one walk: the bitmaps of
 * pages (written, pending, to allocate) are walked a word at a time, a full
 * or empty word in one step, never a bit at a time.
 */
#ifndef ORBIT_BITMAP_RUNS_H
#define ORBIT_BITMAP_RUNS_H

#include <stddef.h>
#include <stdint.h>

typedef void (*bitmap_run_fn)(void *ctx, size_t first, size_t n);

/* A walk in progress: the run found last, not yet handed over (it may go on
 * in the next word). */
struct bitmap_runs {
	bitmap_run_fn fn;
	void *ctx;
	size_t first, n;
};

static inline void bitmap_runs_start(struct bitmap_runs *r, bitmap_run_fn fn, void *ctx)
{
	r->fn = fn;
	r->ctx = ctx;
	r->first = r->n = 0;
}

/* Add the set bits of word x, word w of the bitmap; words come in ascending
 * order of w (not necessarily every word). */
static inline void bitmap_runs_word(struct bitmap_runs *r, size_t w, uint64_t x)
{
	while (x) {
		unsigned int b = (unsigned int)__builtin_ctzll(x);
		uint64_t rest = ~(x >> b);	/* 0 where the run goes on */
		unsigned int len = rest ? (unsigned int)__builtin_ctzll(rest) : 64 - b;
		size_t first = w * 64 + b;

		if (r->n && r->first + r->n == first) {
			r->n += len;
		} else {
			if (r->n)
				r->fn(r->ctx, r->first, r->n);
			r->first = first;
			r->n = len;
		}
		x = b + len >= 64 ? 0 : x & (~0ULL << (b + len));
	}
}

/* Hand over the last run. */
static inline void bitmap_runs_end(struct bitmap_runs *r)
{
	if (r->n)
		r->fn(r->ctx, r->first, r->n);
	r->n = 0;
}

/* fn(ctx, first, n) for each run of set bits in words [w0, w1) of `words`;
 * with `clear`, each word is cleared as it is read. */
static inline void bitmap_for_each_run(uint64_t *words, size_t w0, size_t w1, int clear,
				       bitmap_run_fn fn, void *ctx)
{
	struct bitmap_runs r;

	bitmap_runs_start(&r, fn, ctx);
	for (size_t w = w0; w < w1; w++) {
		uint64_t x = words[w];

		if (!x)
			continue;
		if (clear)
			words[w] = 0;
		bitmap_runs_word(&r, w, x);
	}
	bitmap_runs_end(&r);
}

#endif
