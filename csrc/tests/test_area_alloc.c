/* test_area_alloc.c - areas and the allocator that lives inside them. */
#include <errno.h>
#include <stdint.h>

#include "check.h"
#include "orbit.h"

#define PG orbit_page_size()

static int aligned16(const void *p)
{
	return ((uintptr_t)p & 15) == 0;
}

static int inside(struct orbit_area *a, const void *p, size_t len)
{
	const char *b = orbit_area_base(a), *c = p;

	return c >= b && c + len <= b + orbit_area_size(a);
}

static void stats(struct orbit_area *a, size_t *used, size_t *count)
{
	struct orbit_area_stats st;

	orbit_area_stats(a, &st);
	CHECK_EQ(st.size, orbit_area_size(a));
	*used = st.used;
	*count = st.allocations;
}

/* ------------------------------------------------------------ areas */

static void test_area_create_args(void)
{
	struct orbit_area *a;

	errno = 0;
	CHECK(orbit_area_create(0, "auto") == NULL);
	CHECK_EQ(errno, EINVAL);
	errno = 0;
	CHECK(orbit_area_create(PG, "bogus") == NULL);
	CHECK_EQ(errno, EINVAL);
	errno = 0;
	CHECK(orbit_area_create(orbit_reservation_size() + PG, "auto") == NULL);
	CHECK_EQ(errno, ENOMEM);

	a = orbit_area_create(1, "auto");
	REQUIRE(a != NULL);
	CHECK_EQ(orbit_area_size(a), PG);
	CHECK(((uintptr_t)orbit_area_base(a) & (PG - 1)) == 0);
	CHECK(!check_mode_is(orbit_area_mode(a), "auto"));
	orbit_area_destroy(a);

	/* (A named mode, as the userspace backend reports it: user/test_modes.c.) */
	a = orbit_area_create(3 * PG + 1, NULL);
	REQUIRE(a != NULL);
	CHECK_EQ(orbit_area_size(a), 4 * PG);
	CHECK(!check_mode_is(orbit_area_mode(a), "auto"));
	orbit_area_destroy(a);
	orbit_area_destroy(NULL);	/* no-op */
}

static void test_area_addresses_distinct(void)
{
	struct orbit_area *a[8];

	for (int i = 0; i < 8; i++) {
		a[i] = orbit_area_create((size_t)(i + 1) * PG, "auto");
		REQUIRE(a[i] != NULL);
	}
	for (int i = 0; i < 8; i++)
		for (int j = 0; j < 8; j++) {
			char *bi = orbit_area_base(a[i]), *bj = orbit_area_base(a[j]);

			if (i != j)
				CHECK(bi + orbit_area_size(a[i]) <= bj ||
				      bj + orbit_area_size(a[j]) <= bi);
		}
	for (int i = 0; i < 8; i++)
		orbit_area_destroy(a[i]);
}

/* -------------------------------------------------------- allocator */

static void test_alloc_baseline(void)
{
	struct orbit_area *a = orbit_area_create(16 * PG, "auto");
	size_t used, count;

	REQUIRE(a != NULL);
	stats(a, &used, &count);
	CHECK_EQ(used, 0);
	CHECK_EQ(count, 0);
	orbit_area_destroy(a);
}

static void test_alloc_alignment(void)
{
	struct orbit_area *a = orbit_area_create(64 * PG, "auto");
	void *p[256];

	REQUIRE(a != NULL);
	for (int i = 0; i < 256; i++) {
		p[i] = orbit_alloc(a, (size_t)i + 1);
		CHECK(p[i] != NULL);
		CHECK(aligned16(p[i]));
		CHECK(inside(a, p[i], (size_t)i + 1));
		if (p[i])
			memset(p[i], i, (size_t)i + 1);
	}
	for (int i = 0; i < 256; i++) {
		unsigned char *c = p[i];

		for (int k = 0; c && k <= i; k++)
			if (c[k] != (unsigned char)i) {
				CHECK(!"allocation overwritten");
				break;
			}
	}
	for (int i = 0; i < 256; i++)
		orbit_free(a, p[i]);
	orbit_area_destroy(a);
}

static void test_alloc_reuse_top(void)
{
	struct orbit_area *a = orbit_area_create(16 * PG, "auto");
	void *p, *q;

	REQUIRE(a != NULL);
	p = orbit_alloc(a, 100);
	CHECK(p != NULL);
	orbit_free(a, p);
	q = orbit_alloc(a, 100);
	CHECK(q == p);
	orbit_free(a, q);
	orbit_area_destroy(a);
}

static void test_alloc_reuse_middle(void)
{
	struct orbit_area *a = orbit_area_create(16 * PG, "auto");
	void *x, *y, *z, *w;

	REQUIRE(a != NULL);
	x = orbit_alloc(a, 100);
	y = orbit_alloc(a, 100);
	z = orbit_alloc(a, 100);
	REQUIRE(x && y && z);
	CHECK((char *)x < (char *)y && (char *)y < (char *)z);
	orbit_free(a, y);
	w = orbit_alloc(a, 100);
	CHECK(w == y);		/* the hole is reused, not fresh memory */
	orbit_free(a, w);
	/* A smaller request splits the hole. */
	w = orbit_alloc(a, 40);
	CHECK(w == y);
	orbit_free(a, w);
	orbit_free(a, x);
	orbit_free(a, z);
	orbit_area_destroy(a);
}

/* Free neighbours merge: a request as big as both fits where they were. */
static void coalesce_case(int order)
{
	struct orbit_area *a = orbit_area_create(16 * PG, "auto");
	void *p[5], *big;

	REQUIRE(a != NULL);
	for (int i = 0; i < 5; i++) {
		p[i] = orbit_alloc(a, 100);	/* 128-byte blocks */
		REQUIRE(p[i] != NULL);
	}
	switch (order) {
	case 0:	/* p[2] merges with the free block before it */
		orbit_free(a, p[1]);
		orbit_free(a, p[2]);
		big = orbit_alloc(a, 200);
		break;
	case 1:	/* p[1] merges with the free block after it */
		orbit_free(a, p[2]);
		orbit_free(a, p[1]);
		big = orbit_alloc(a, 200);
		break;
	default:	/* p[2] merges with both neighbours at once */
		orbit_free(a, p[1]);
		orbit_free(a, p[3]);
		orbit_free(a, p[2]);
		big = orbit_alloc(a, 350);
		break;
	}
	CHECK(big == p[1]);
	orbit_free(a, big);
	orbit_free(a, p[0]);
	orbit_free(a, p[4]);
	if (order == 0 || order == 1)
		orbit_free(a, p[3]);
	{
		size_t used, count;

		stats(a, &used, &count);
		CHECK_EQ(used, 0);
		CHECK_EQ(count, 0);
	}
	orbit_area_destroy(a);
}

static void test_alloc_coalesce_prev(void) { coalesce_case(0); }
static void test_alloc_coalesce_next(void) { coalesce_case(1); }
static void test_alloc_coalesce_both(void) { coalesce_case(2); }

static void test_alloc_full_enomem(void)
{
	struct orbit_area *a = orbit_area_create(16 * PG, "auto");
	void *p[256];
	int n = 0, n2 = 0;
	size_t used, count;

	REQUIRE(a != NULL);
	errno = 0;
	CHECK(orbit_alloc(a, orbit_area_size(a)) == NULL);
	CHECK_EQ(errno, ENOMEM);
	errno = 0;
	CHECK(orbit_alloc(a, (size_t)-1 / 2) == NULL);
	CHECK_EQ(errno, ENOMEM);

	while (n < 256 && (p[n] = orbit_alloc(a, 1000)))
		n++;
	CHECK_EQ(errno, ENOMEM);
	CHECK(n > 50 && n < 256);	/* 64 KiB of ~1 KiB blocks */
	stats(a, &used, &count);
	CHECK_EQ(count, (size_t)n);
	CHECK(used <= orbit_area_size(a));
	CHECK(used >= (size_t)n * 1000);

	/* One freed block makes room for exactly one more. */
	orbit_free(a, p[n / 2]);
	p[n / 2] = orbit_alloc(a, 1000);
	CHECK(p[n / 2] != NULL);
	CHECK(orbit_alloc(a, 1000) == NULL);

	for (int i = 0; i < n; i++)
		orbit_free(a, p[i]);
	stats(a, &used, &count);
	CHECK_EQ(used, 0);
	CHECK_EQ(count, 0);

	/* Nothing was lost: the same requests fit again, as does one big one. */
	while (n2 < 256 && (p[n2] = orbit_alloc(a, 1000)))
		n2++;
	CHECK_EQ(n2, n);
	for (int i = 0; i < n2; i++)
		orbit_free(a, p[i]);
	p[0] = orbit_alloc(a, orbit_area_size(a) - PG);
	CHECK(p[0] != NULL);
	orbit_free(a, p[0]);
	orbit_area_destroy(a);
}

static void test_alloc_accounting(void)
{
	struct orbit_area *a = orbit_area_create(64 * PG, "auto");
	static const size_t sizes[] = { 1, 15, 16, 17, 31, 32, 33, 100, 1000, 4096, 5000 };
	const int ns = (int)(sizeof(sizes) / sizeof(sizes[0]));
	void *p[11];
	size_t used, count, prev = 0;

	REQUIRE(a != NULL);
	for (int i = 0; i < ns; i++) {
		p[i] = orbit_alloc(a, sizes[i]);
		REQUIRE(p[i] != NULL);
		stats(a, &used, &count);
		CHECK_EQ(count, (size_t)i + 1);
		/* each block costs its size, a header, rounding to 16 */
		CHECK(used - prev >= sizes[i] + 16);
		CHECK(used - prev < sizes[i] + 16 + 32);
		CHECK_EQ((used - prev) % 16, 0);
		prev = used;
	}
	/* Free in an interleaved order: coalescing must not skew counters. */
	for (int i = 0; i < ns; i += 2)
		orbit_free(a, p[i]);
	stats(a, &used, &count);
	CHECK_EQ(count, (size_t)(ns / 2));
	for (int i = 1; i < ns; i += 2)
		orbit_free(a, p[i]);
	stats(a, &used, &count);
	CHECK_EQ(used, 0);
	CHECK_EQ(count, 0);
	orbit_area_destroy(a);
}

static void test_alloc_free_ignored(void)
{
	struct orbit_area *a = orbit_area_create(16 * PG, "auto");
	struct orbit_area *b = orbit_area_create(16 * PG, "auto");
	size_t used, count;
	int local;
	void *p, *q;

	REQUIRE(a && b);
	p = orbit_alloc(a, 64);
	q = orbit_alloc(b, 64);
	REQUIRE(p && q);
	orbit_free(a, NULL);
	orbit_free(a, &local);	/* not from an area */
	orbit_free(a, q);	/* another area's block */
	stats(a, &used, &count);
	CHECK_EQ(count, 1);
	stats(b, &used, &count);
	CHECK_EQ(count, 1);
	orbit_free(a, p);
	orbit_free(b, q);
	stats(a, &used, &count);
	CHECK_EQ(count, 0);
	orbit_area_destroy(a);
	orbit_area_destroy(b);
}

/* ---------------------------------------------------- random stress */

struct live {
	unsigned char *p;
	size_t len;
	unsigned char fill;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static int intact(const struct live *l)
{
	for (size_t k = 0; k < l->len; k++)
		if (l->p[k] != l->fill)
			return 0;
	return 1;
}

static void stress(const char *mode)
{
	enum { MAXLIVE = 512, OPS = 20000 };
	static struct live live[MAXLIVE];
	struct orbit_area *a = orbit_area_create(256 * PG, mode);
	int nlive = 0, fails = 0, overlaps = 0, corrupt = 0, badcount = 0;
	size_t used, count;

	REQUIRE(a != NULL);
	for (int op = 0; op < OPS; op++) {
		int do_alloc = nlive == 0 || (nlive < MAXLIVE && rnd() % 100 < 55);

		if (do_alloc) {
			size_t len = rnd() % 4 ? 1 + rnd() % 256 : 1 + rnd() % 8192;
			unsigned char *p = orbit_alloc(a, len);

			if (!p) {
				CHECK_EQ(errno, ENOMEM);
				fails++;
				continue;
			}
			if (!aligned16(p) || !inside(a, p, len)) {
				CHECK(!"misplaced allocation");
				break;
			}
			for (int i = 0; i < nlive; i++)
				if (p < live[i].p + live[i].len && live[i].p < p + len)
					overlaps++;
			live[nlive].p = p;
			live[nlive].len = len;
			live[nlive].fill = (unsigned char)(rnd() | 1);
			memset(p, live[nlive].fill, len);
			nlive++;
		} else {
			int i = (int)(rnd() % (uint64_t)nlive);

			if (!intact(&live[i]))
				corrupt++;
			orbit_free(a, live[i].p);
			live[i] = live[--nlive];
		}
		if (op % 64 == 0) {
			stats(a, &used, &count);
			if (count != (size_t)nlive)
				badcount++;
		}
	}
	CHECK_EQ(overlaps, 0);
	CHECK_EQ(corrupt, 0);
	CHECK_EQ(badcount, 0);
	CHECK(fails < OPS / 4);
	while (nlive) {
		if (!intact(&live[nlive - 1]))
			corrupt++;
		orbit_free(a, live[--nlive].p);
	}
	CHECK_EQ(corrupt, 0);
	stats(a, &used, &count);
	CHECK_EQ(used, 0);
	CHECK_EQ(count, 0);
	orbit_area_destroy(a);
}

/* ------------------------------------------- allocations in an orbit */

struct node {
	struct node *next;
	long value;
};

/* Walks a list main built in the area: same addresses in the orbit. */
static long sum_list(void *arg, size_t argsize, void *store)
{
	long s = 0;

	(void)argsize;
	(void)store;
	for (struct node *n = *(struct node **)arg; n; n = n->next)
		s += n->value;
	return s;
}

static void test_alloc_visible_in_orbit(void)
{
	struct orbit_area *a = orbit_area_create(64 * PG, "auto");
	struct orbit *ob = orbit_create("alloc", sum_list, NULL, NULL);
	struct node *head = NULL;
	long ret = -1, expect = 0;

	REQUIRE(a && ob);
	for (long i = 1; i <= 500; i++) {
		struct node *n = orbit_alloc(a, sizeof(*n) + (size_t)(i % 7) * 24);

		REQUIRE(n != NULL);
		n->value = i;
		n->next = head;
		head = n;
		expect += i;
	}
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, &head, sizeof(head), &ret), 0);
	CHECK_EQ(ret, expect);
	/* Unlink and free every other node; the orbit sees the new list. */
	for (struct node *n = head; n && n->next; n = n->next) {
		struct node *dead = n->next;

		n->next = dead->next;
		expect -= dead->value;
		orbit_free(a, dead);
	}
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, &head, sizeof(head), &ret), 0);
	CHECK_EQ(ret, expect);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

int main(void)
{
	check_watchdog(55);
	RUN(test_area_create_args);
	RUN(test_area_addresses_distinct);
	RUN(test_alloc_baseline);
	RUN(test_alloc_alignment);
	RUN(test_alloc_reuse_top);
	RUN(test_alloc_reuse_middle);
	RUN(test_alloc_coalesce_next);
	RUN(test_alloc_coalesce_prev);
	RUN(test_alloc_coalesce_both);
	RUN(test_alloc_full_enomem);
	RUN(test_alloc_accounting);
	RUN(test_alloc_free_ignored);
	RUN_MODES(stress);
	RUN(test_alloc_visible_in_orbit);
	return CHECK_DONE();
}
