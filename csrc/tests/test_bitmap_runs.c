/*
 * test_bitmap_runs.c - the runs of set bits bitmap_runs.h hands over: in
 * order, one per run even across words, and the same runs as a walk bit by
 * bit finds.
 */
#include "check.h"
#include "bitmap_runs.h"

#define MAXRUNS 4096

struct runs {
	size_t n;
	size_t first[MAXRUNS], len[MAXRUNS];
};

static void note(void *ctx, size_t first, size_t n)
{
	struct runs *r = ctx;

	if (r->n < MAXRUNS) {
		r->first[r->n] = first;
		r->len[r->n] = n;
	}
	r->n++;
}

/* The runs of words[0, nwords) found a bit at a time. */
static void slow_runs(const uint64_t *words, size_t nwords, struct runs *r)
{
	size_t len = 0;

	r->n = 0;
	for (size_t i = 0; i <= nwords * 64; i++) {
		int set = i < nwords * 64 && (words[i / 64] >> (i % 64) & 1);

		if (set) {
			len++;
		} else if (len) {
			note(r, i - len, len);
			len = 0;
		}
	}
}

static void check_same(const uint64_t *words, size_t nwords)
{
	uint64_t copy[16];
	struct runs fast = { 0 }, slow;

	memcpy(copy, words, nwords * sizeof(*words));
	slow_runs(words, nwords, &slow);
	bitmap_for_each_run(copy, 0, nwords, 1, note, &fast);
	CHECK_EQ(fast.n, slow.n);
	for (size_t i = 0; i < fast.n && i < slow.n && i < MAXRUNS; i++) {
		CHECK_EQ(fast.first[i], slow.first[i]);
		CHECK_EQ(fast.len[i], slow.len[i]);
	}
	for (size_t w = 0; w < nwords; w++)
		CHECK_EQ(copy[w], 0);	/* cleared as read */
}

static void test_runs_simple(void)
{
	uint64_t none[3] = { 0 }, full[3] = { ~0ULL, ~0ULL, ~0ULL };
	uint64_t edges[3] = { 1ULL << 63, 1, 1ULL << 63 | 1 };
	uint64_t mixed[2] = { 0xF0F0ULL | 1ULL << 63, 0x8000000000000003ULL };
	struct runs r = { 0 };

	check_same(none, 3);
	check_same(full, 3);
	check_same(edges, 3);
	check_same(mixed, 2);
	bitmap_for_each_run(full, 0, 3, 0, note, &r);
	CHECK_EQ(r.n, 1);	/* one run over three words */
	CHECK_EQ(r.first[0], 0);
	CHECK_EQ(r.len[0], 192);
	CHECK_EQ(full[1], ~0ULL);	/* not cleared */
	r.n = 0;
	bitmap_for_each_run(edges, 1, 3, 0, note, &r);	/* words [1, 3) only */
	CHECK_EQ(r.n, 3);
	CHECK_EQ(r.first[0], 64);
	CHECK_EQ(r.first[1], 128);
	CHECK_EQ(r.first[2], 191);
	CHECK_EQ(r.len[2], 1);
}

static void test_runs_random(void)
{
	uint64_t words[16];
	uint64_t s = 88172645463325252ULL;

	for (int round = 0; round < 2000; round++) {
		for (size_t w = 0; w < 16; w++) {
			/* xorshift; sparse, dense, empty and full words */
			s ^= s << 13, s ^= s >> 7, s ^= s << 17;
			switch (s % 5) {
			case 0: words[w] = 0; break;
			case 1: words[w] = ~0ULL; break;
			case 2: words[w] = s & (s >> 3); break;
			case 3: words[w] = s | (s << 5); break;
			default: words[w] = s; break;
			}
		}
		check_same(words, 1 + (size_t)round % 16);
	}
}

/* Words handed over one by one, with gaps: a run goes on only into the next
 * word. */
static void test_runs_sparse_words(void)
{
	struct bitmap_runs br;
	struct runs r = { 0 };

	bitmap_runs_start(&br, note, &r);
	bitmap_runs_word(&br, 2, 1ULL << 63);
	bitmap_runs_word(&br, 3, 3);
	bitmap_runs_word(&br, 5, 1);
	bitmap_runs_end(&br);
	CHECK_EQ(r.n, 2);
	CHECK_EQ(r.first[0], 2 * 64 + 63);
	CHECK_EQ(r.len[0], 3);
	CHECK_EQ(r.first[1], 5 * 64);
	CHECK_EQ(r.len[1], 1);
}

int main(void)
{
	check_watchdog(55);
	RUN(test_runs_simple);
	RUN(test_runs_random);
	RUN(test_runs_sparse_words);
	return CHECK_DONE();
}
