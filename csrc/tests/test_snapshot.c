/*
 * test_snapshot.c - what a call sees of its areas, and what it costs: exact
 * incremental page counts in every snapshot mode, areas created after the
 * orbit started, several orbits on one area, snapshots of queued calls, and
 * the staging ring running full.
 *
 * main() sets ORBITPY_STAGING=65536 (16 pages) before any orbit exists, so
 * every orbit here has a small staging ring.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "orbit.h"

#define PG orbit_page_size()
#define STAGING_PAGES 16

/* What an entry looks at: pages [first, first+n) of the area at base. */
struct span {
	unsigned char *base;
	long first, n;
	long sleep_ms;		/* before reading */
	long sleep2_ms;		/* between two reads (entry_sum_twice) */
};

/* Sum of (k+1) * first byte of page first+k: tells snapshots apart. */
static long weigh(const struct span *s)
{
	long sum = 0;

	for (long k = 0; k < s->n; k++)
		sum += (k + 1) * s->base[(s->first + k) * PG];
	return sum;
}

static long entry_sum(void *arg, size_t argsize, void *store)
{
	const struct span *s = arg;

	(void)store;
	if (argsize != sizeof(*s))
		return -1;
	if (s->sleep_ms)
		check_sleep_ms((unsigned)s->sleep_ms);
	return weigh(s);
}

/* Reads twice with a pause between: a running call's view must not move. */
static long entry_sum_twice(void *arg, size_t argsize, void *store)
{
	const struct span *s = arg;
	long a, b;

	(void)argsize;
	(void)store;
	a = weigh(s);
	check_sleep_ms((unsigned)s->sleep2_ms);
	b = weigh(s);
	return a == b ? a : -1000000 - b;
}

/* The orbit writes its view: private, discarded before a later call. */
static long entry_scribble(void *arg, size_t argsize, void *store)
{
	const struct span *s = arg;

	(void)argsize;
	(void)store;
	for (long k = 0; k < s->n; k++)
		s->base[(s->first + k) * PG] = 0xEE;
	return s->n;
}

static long entry_sleep(void *arg, size_t argsize, void *store)
{
	(void)argsize;
	(void)store;
	check_sleep_ms((unsigned)*(long *)arg);
	return 0;
}

/* Mappings of orbit base copies in this process. */
static long base_mappings(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	long n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, "orbit-base") != NULL;
	fclose(f);
	return n;
}

static long entry_base_mappings(void *arg, size_t argsize, void *store)
{
	(void)arg;
	(void)argsize;
	(void)store;
	return base_mappings();
}

static struct span span_of(struct orbit_area *a, long first, long n)
{
	struct span s = { orbit_area_base(a), first, n, 0, 0 };

	return s;
}

static long call_sum(struct orbit *ob, struct orbit_area *a, long first, long n)
{
	struct span s = span_of(a, first, n);
	long ret = -12345;
	int rc = orbit_call(ob, 1, &a, entry_sum, &s, sizeof(s), &ret);

	CHECK_EQ(rc, 0);
	return rc ? -12345 : ret;
}

static void stats(struct orbit *ob, struct orbit_stats *st)
{
	orbit_stats(ob, st);
}

/* ---------------------------------------------------- exact counts */

static void counts(const char *mode)
{
	struct orbit_area *a = check_area(64 * PG, mode);
	struct orbit *ob;
	struct orbit_stats st, st0;
	unsigned char *p;
	int full = check_mode_is(mode, "full");
	uint64_t args = 0;
	long populated;

	REQUIRE(a != NULL);
	p = orbit_area_base(a);
	for (int i = 1; i <= 10; i++)
		p[i * PG] = 1;
	ob = orbit_create("counts", entry_sum, NULL, NULL);
	REQUIRE(ob != NULL);

	/* First call: every page main wrote, the allocator's header page (0)
	 * included, in one full sync. */
	CHECK_EQ(call_sum(ob, a, 1, 10), 55);
	args += sizeof(struct span);
	stats(ob, &st);
	CHECK_EQ(st.calls, 1);
	CHECK_EQ(st.full_syncs, 1);
	CHECK_EQ(st.pages_copied, 11);
	CHECK_EQ(st.pages_reset, 0);
	populated = 11;

	/* Nothing written: nothing copied (full mode copies all it finds). */
	st0 = st;
	CHECK_EQ(call_sum(ob, a, 1, 10), 55);
	args += sizeof(struct span);
	stats(ob, &st);
	CHECK_EQ(st.pages_copied - st0.pages_copied, full ? populated : 0);
	CHECK_EQ(st.full_syncs, 1);

	/* Two pages written (one of them twice). */
	st0 = st;
	p[3 * PG] = 2;
	p[3 * PG + 100] = 2;
	p[7 * PG] = 2;
	CHECK_EQ(call_sum(ob, a, 1, 10), 55 + 3 + 7);
	args += sizeof(struct span);
	stats(ob, &st);
	CHECK_EQ(st.pages_copied - st0.pages_copied, full ? populated : 2);

	/* A page never touched before. */
	st0 = st;
	p[20 * PG] = 1;
	populated++;
	CHECK_EQ(call_sum(ob, a, 20, 1), 1);
	args += sizeof(struct span);
	stats(ob, &st);
	CHECK_EQ(st.pages_copied - st0.pages_copied, full ? populated : 1);

	/* Reading is not writing (full mode: a read populates a zero page, so
	 * only the tracking modes are exact here). */
	st0 = st;
	CHECK_EQ(*(volatile unsigned char *)&p[30 * PG], 0);
	CHECK_EQ(call_sum(ob, a, 30, 1), 0);
	args += sizeof(struct span);
	stats(ob, &st);
	if (!full)
		CHECK_EQ(st.pages_copied - st0.pages_copied, 0);

	/* The orbit writes four pages: none of them reaches main, and all
	 * four are discarded before the next call that names the area. */
	{
		struct span s = span_of(a, 5, 4);
		long ret = 0;

		st0 = st;
		CHECK_EQ(orbit_call(ob, 1, &a, entry_scribble, &s, sizeof(s), &ret), 0);
		args += sizeof(s);
		CHECK_EQ(ret, 4);
		for (int i = 5; i < 9; i++)
			CHECK_EQ(p[i * PG], i == 7 ? 2 : 1);
		stats(ob, &st);
		CHECK_EQ(st.pages_reset, 0);
		if (!full)
			CHECK_EQ(st.pages_copied - st0.pages_copied, 0);
	}
	st0 = st;
	CHECK_EQ(call_sum(ob, a, 1, 10), 55 + 3 + 7);
	args += sizeof(struct span);
	stats(ob, &st);
	/* full mode drops the whole view without counting */
	CHECK_EQ(st.pages_reset - st0.pages_reset, full ? 0 : 4);
	st0 = st;
	CHECK_EQ(call_sum(ob, a, 1, 10), 55 + 3 + 7);
	args += sizeof(struct span);
	stats(ob, &st);
	CHECK_EQ(st.pages_reset - st0.pages_reset, 0);

	CHECK_EQ(st.calls, 8);
	CHECK_EQ(st.bytes_synced, st.pages_copied * PG + args);
	CHECK_EQ(st.restarts, 0);
	CHECK_EQ(st.crashes, 0);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* A call that names no area copies nothing and does not reset the views. */
static void no_area_calls(const char *mode)
{
	struct orbit_area *a = check_area(16 * PG, mode);
	struct orbit *ob = orbit_create("noarea", entry_sum, NULL, NULL);
	struct orbit_stats st, st0;
	unsigned char *p;
	long ret = -1, ms = 0;

	REQUIRE(a && ob);
	p = orbit_area_base(a);
	p[PG] = 5;
	CHECK_EQ(call_sum(ob, a, 1, 1), 5);
	stats(ob, &st0);
	p[PG] = 6;	/* not sent: the next call does not name the area */
	CHECK_EQ(orbit_call(ob, 0, NULL, entry_sleep, &ms, sizeof(ms), &ret), 0);
	stats(ob, &st);
	CHECK_EQ(st.pages_copied, st0.pages_copied);
	CHECK_EQ(st.full_syncs, 1);
	CHECK_EQ(call_sum(ob, a, 1, 1), 6);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* ------------------------------------------------- areas and orbits */

static void area_after_start(const char *mode)
{
	struct orbit *ob = orbit_create("late", entry_sum, NULL, NULL);
	struct orbit_area *b;
	struct orbit_stats st, st0;
	unsigned char *p;
	long ms = 0, ret = -1;

	REQUIRE(ob != NULL);
	/* Start the process with no area at all. */
	CHECK_EQ(orbit_call(ob, 0, NULL, entry_sleep, &ms, sizeof(ms), &ret), 0);
	CHECK(orbit_pid(ob) > 0);

	b = check_area(32 * PG, mode);
	REQUIRE(b != NULL);
	p = orbit_area_base(b);
	p[2 * PG] = 7;
	p[4 * PG] = 9;
	/* The orbit learns the address from the argument: it was forked
	 * before the area existed. */
	CHECK_EQ(call_sum(ob, b, 0 + 2, 3), 7 + 3 * 9);
	stats(ob, &st);
	CHECK_EQ(st.full_syncs, 1);
	CHECK_EQ(st.pages_copied, 3);	/* header page + 2 */
	CHECK_EQ(st.restarts, 0);

	st0 = st;
	p[6 * PG] = 1;
	CHECK_EQ(call_sum(ob, b, 2, 5), 7 + 3 * 9 + 5 * 1);
	stats(ob, &st);
	CHECK_EQ(st.pages_copied - st0.pages_copied,
		 check_mode_is(mode, "full") ? 4 : 1);

	/* An area created (and written) while the orbit holds another one. */
	{
		struct orbit_area *c = check_area(8 * PG, mode);
		struct orbit_area *both[2];
		unsigned char *q;

		REQUIRE(c != NULL);
		both[0] = b;
		both[1] = c;
		q = orbit_area_base(c);
		q[PG] = 11;
		{
			struct span s = span_of(c, 1, 1);

			CHECK_EQ(orbit_call(ob, 2, both, entry_sum, &s, sizeof(s), &ret), 0);
			CHECK_EQ(ret, 11);
		}
		stats(ob, &st);
		CHECK_EQ(st.full_syncs, 2);
		CHECK_EQ(call_sum(ob, b, 2, 5), 7 + 3 * 9 + 5 * 1);
		orbit_area_destroy(c);
	}
	orbit_destroy(ob);
	orbit_area_destroy(b);
}

static void two_orbits_one_area(const char *mode)
{
	struct orbit_area *a = check_area(32 * PG, mode);
	struct orbit *o1 = orbit_create("one", entry_sum, NULL, NULL);
	struct orbit *o2 = orbit_create("two", entry_sum, NULL, NULL);
	struct orbit_stats s1, s2, s1b, s2b;
	int full = check_mode_is(mode, "full");
	unsigned char *p;

	REQUIRE(a && o1 && o2);
	p = orbit_area_base(a);
	for (int i = 1; i <= 3; i++)
		p[i * PG] = 1;
	CHECK_EQ(call_sum(o1, a, 1, 8), 6);
	CHECK_EQ(call_sum(o2, a, 1, 8), 6);
	stats(o1, &s1);
	stats(o2, &s2);
	CHECK_EQ(s1.pages_copied, 4);
	CHECK_EQ(s2.pages_copied, 4);
	CHECK_EQ(s1.full_syncs, 1);
	CHECK_EQ(s2.full_syncs, 1);

	/* Each orbit gets every page written since its own previous call,
	 * whoever collected them. */
	p[5 * PG] = 1;
	CHECK_EQ(call_sum(o1, a, 1, 8), 6 + 5);
	p[6 * PG] = 1;
	CHECK_EQ(call_sum(o2, a, 1, 8), 6 + 5 + 6);
	CHECK_EQ(call_sum(o1, a, 1, 8), 6 + 5 + 6);
	stats(o1, &s1b);
	stats(o2, &s2b);
	CHECK_EQ(s1b.pages_copied - s1.pages_copied, full ? 5 + 6 : 1 + 1);
	CHECK_EQ(s2b.pages_copied - s2.pages_copied, full ? 6 : 2);

	/* One orbit's writes are invisible to the other and to main. */
	{
		struct span s = span_of(a, 1, 3);
		long ret;

		CHECK_EQ(orbit_call(o1, 1, &a, entry_scribble, &s, sizeof(s), &ret), 0);
		CHECK_EQ(call_sum(o2, a, 1, 8), 6 + 5 + 6);
		CHECK_EQ(p[PG], 1);
		CHECK_EQ(call_sum(o1, a, 1, 8), 6 + 5 + 6);
	}
	/* Destroying one orbit leaves the other's copy working. */
	orbit_destroy(o1);
	p[8 * PG] = 1;
	CHECK_EQ(call_sum(o2, a, 1, 8), 6 + 5 + 6 + 8);
	orbit_destroy(o2);
	orbit_area_destroy(a);
}

/* The same area twice in one call is one area. */
static void duplicate_area_in_call(const char *mode)
{
	struct orbit_area *a = check_area(8 * PG, mode);
	struct orbit *ob = orbit_create("dup", entry_sum, NULL, NULL);
	struct orbit_area *twice[2];
	struct orbit_stats st;
	struct span s;
	long ret = -1;

	REQUIRE(a && ob);
	twice[0] = twice[1] = a;
	((unsigned char *)orbit_area_base(a))[PG] = 3;
	s = span_of(a, 1, 1);
	CHECK_EQ(orbit_call(ob, 2, twice, entry_sum, &s, sizeof(s), &ret), 0);
	CHECK_EQ(ret, 3);
	stats(ob, &st);
	CHECK_EQ(st.full_syncs, 1);
	CHECK_EQ(st.pages_copied, 2);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* Destroying an area releases every orbit's copy: main's at once, the
 * orbit's when its next call starts.  Reading it there faults, as in main. */
static void destroyed_area_released(const char *mode)
{
	struct orbit_area *a = check_area(8 * PG, mode);
	struct orbit *ob = orbit_create("released", entry_sum, NULL, NULL);
	long main_before = base_mappings(), ret = -1;
	struct span s;

	REQUIRE(a && ob);
	((unsigned char *)orbit_area_base(a))[2 * PG] = 42;
	CHECK_EQ(call_sum(ob, a, 2, 1), 42);
	CHECK_EQ(base_mappings(), main_before + 1);	/* main's view of the copy */
	CHECK_EQ(orbit_call(ob, 0, NULL, entry_base_mappings, NULL, 0, &ret), 0);
	CHECK(ret >= 1);
	s = span_of(a, 2, 1);
	orbit_area_destroy(a);
	CHECK_EQ(base_mappings(), main_before);
	CHECK_EQ(orbit_call(ob, 0, NULL, entry_base_mappings, NULL, 0, &ret), 0);
	CHECK_EQ(ret, 0);
	CHECK_EQ(orbit_call(ob, 0, NULL, entry_sum, &s, sizeof(s), &ret), -ORBIT_E_CRASHED);
	orbit_destroy(ob);
}

/* -------------------------------------------------- queued snapshots */

/* Each queued call sees the area as it was when call_async returned. */
static void async_snapshot_fixed(const char *mode)
{
	enum { N = 12 };
	struct orbit_area *a = check_area(16 * PG, mode);
	struct orbit *ob = orbit_create("async", entry_sum, NULL, NULL);
	struct orbit_future *f[N], *slow;
	long expect[N], ret, ms = 150;
	unsigned char *p;

	REQUIRE(a && ob);
	p = orbit_area_base(a);
	CHECK_EQ(call_sum(ob, a, 1, 6), 0);	/* process up, area synced */
	slow = orbit_call_async(ob, 0, 0, NULL, entry_sleep, &ms, sizeof(ms));
	REQUIRE(slow != NULL);
	for (int i = 0; i < N; i++) {
		struct span s = span_of(a, 1, 6);

		p[PG] = (unsigned char)i;
		p[(2 + i % 5) * PG] = (unsigned char)(10 + i);
		expect[i] = weigh(&s);
		f[i] = orbit_call_async(ob, 0, 1, &a, entry_sum, &s, sizeof(s));
		CHECK(f[i] != NULL);
	}
	/* Scribble over everything: no queued call may see it. */
	for (int i = 1; i <= 6; i++)
		p[i * PG] = 0xAA;
	CHECK_EQ(orbit_future_get(slow, &ret), 0);
	orbit_future_release(slow);
	for (int i = 0; i < N; i++) {
		if (!f[i])
			continue;
		ret = -1;
		CHECK_EQ(orbit_future_get(f[i], &ret), 0);
		CHECK_EQ(ret, expect[i]);
		CHECK_EQ(orbit_future_seq(f[i]), 3 + (uint64_t)i);
		orbit_future_release(f[i]);
	}
	{
		struct span s = span_of(a, 1, 6);

		CHECK_EQ(call_sum(ob, a, 1, 6), weigh(&s));
	}
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* A running call's view does not move while main writes and queues more. */
static void running_call_isolated(const char *mode)
{
	struct orbit_area *a = check_area(8 * PG, mode);
	struct orbit *ob = orbit_create("iso", entry_sum, NULL, NULL);
	struct orbit_future *f, *g;
	unsigned char *p;
	long ret = -1;

	REQUIRE(a && ob);
	p = orbit_area_base(a);
	p[PG] = 1;
	CHECK_EQ(call_sum(ob, a, 1, 1), 1);
	{
		struct span s = span_of(a, 1, 1);

		s.sleep2_ms = 200;
		f = orbit_call_async(ob, 0, 1, &a, entry_sum_twice, &s, sizeof(s));
		REQUIRE(f != NULL);
	}
	check_sleep_ms(50);	/* let it take its first look */
	p[PG] = 99;
	{
		struct span s = span_of(a, 1, 1);

		g = orbit_call_async(ob, 0, 1, &a, entry_sum, &s, sizeof(s));
		REQUIRE(g != NULL);
	}
	CHECK_EQ(orbit_future_get(f, &ret), 0);
	CHECK_EQ(ret, 1);
	CHECK_EQ(orbit_future_get(g, &ret), 0);
	CHECK_EQ(ret, 99);
	orbit_future_release(f);
	orbit_future_release(g);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* ------------------------------------------------------------ staging */

/*
 * The staging ring holds 16 pages.  A queued call whose pages fit is staged
 * at once; one that does not fit waits until the orbit caught up, then
 * writes straight into the orbit's copy.  Either way it sees its snapshot.
 */
static void staging_overflow(const char *mode)
{
	struct orbit_area *a = check_area(64 * PG, mode);
	struct orbit *ob = orbit_create("stage", entry_sum, NULL, NULL);
	struct orbit_future *f1, *f2, *f3;
	struct orbit_stats st;
	unsigned char *p;
	long ms = 400, ret;
	uint64_t t0, t1;

	REQUIRE(a && ob);
	p = orbit_area_base(a);
	t0 = check_now_ms();
	f1 = orbit_call_async(ob, 0, 0, NULL, entry_sleep, &ms, sizeof(ms));
	REQUIRE(f1 != NULL);

	/* 11 pages (header + 10): fits, no waiting. */
	for (int i = 1; i <= 10; i++)
		p[i * PG] = 2;
	{
		struct span s = span_of(a, 1, 20);

		f2 = orbit_call_async(ob, 0, 1, &a, entry_sum, &s, sizeof(s));
		REQUIRE(f2 != NULL);
	}
	t1 = check_now_ms();
	CHECK(t1 - t0 < 300);
	CHECK(!orbit_future_done(f1));
	CHECK(!orbit_future_done(f2));

	/* 20 pages: more than the whole ring; waits for f1 and f2. */
	for (int i = 1; i <= 20; i++)
		p[i * PG] = 3;
	{
		struct span s = span_of(a, 1, 20);

		f3 = orbit_call_async(ob, 0, 1, &a, entry_sum, &s, sizeof(s));
		REQUIRE(f3 != NULL);
	}
	t1 = check_now_ms();
	CHECK(t1 - t0 >= 350);
	CHECK(orbit_future_done(f1));
	CHECK(orbit_future_done(f2));
	for (int i = 1; i <= 20; i++)
		p[i * PG] = 4;

	CHECK_EQ(orbit_future_get(f1, &ret), 0);
	ret = -1;
	CHECK_EQ(orbit_future_get(f2, &ret), 0);
	CHECK_EQ(ret, 2 * 55);
	ret = -1;
	CHECK_EQ(orbit_future_get(f3, &ret), 0);
	CHECK_EQ(ret, 3 * 210);
	orbit_future_release(f1);
	orbit_future_release(f2);
	orbit_future_release(f3);
	CHECK_EQ(call_sum(ob, a, 1, 20), 4 * 210);
	stats(ob, &st);
	CHECK_EQ(st.calls, 4);
	CHECK_EQ(st.full_syncs, 1);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* Two queued calls that together overflow the ring: the second waits. */
static void staging_second_waits(const char *mode)
{
	struct orbit_area *a = check_area(64 * PG, mode);
	struct orbit *ob = orbit_create("stage2", entry_sum, NULL, NULL);
	struct orbit_future *slow, *f2, *f3;
	unsigned char *p;
	long ms = 300, ret;

	REQUIRE(a && ob);
	p = orbit_area_base(a);
	for (int i = 1; i <= 9; i++)
		p[i * PG] = 1;
	CHECK_EQ(call_sum(ob, a, 1, 9), 45);	/* synced, idle */
	slow = orbit_call_async(ob, 0, 0, NULL, entry_sleep, &ms, sizeof(ms));
	REQUIRE(slow != NULL);
	/* 9 pages (full mode: all 10 populated) staged... */
	for (int i = 1; i <= 9; i++)
		p[i * PG] = 2;
	{
		struct span s = span_of(a, 1, 9);

		f2 = orbit_call_async(ob, 0, 1, &a, entry_sum, &s, sizeof(s));
		REQUIRE(f2 != NULL);
	}
	CHECK(!orbit_future_done(slow));
	/* ...then 9 more, which do not fit beside them. */
	for (int i = 1; i <= 9; i++)
		p[i * PG] = 3;
	{
		struct span s = span_of(a, 1, 9);

		f3 = orbit_call_async(ob, 0, 1, &a, entry_sum, &s, sizeof(s));
		REQUIRE(f3 != NULL);
	}
	CHECK(orbit_future_done(slow));
	CHECK(orbit_future_done(f2));
	CHECK_EQ(orbit_future_get(f2, &ret), 0);
	CHECK_EQ(ret, 2 * 45);
	CHECK_EQ(orbit_future_get(f3, &ret), 0);
	CHECK_EQ(ret, 3 * 45);
	orbit_future_release(slow);
	orbit_future_release(f2);
	orbit_future_release(f3);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

static uint64_t rng = 88172645463325252ULL;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Many queued calls of varying size through the small ring (it wraps,
 * pads and overflows); every result matches its snapshot. */
static void staging_ring_stress(const char *mode)
{
	enum { N = 150, DEPTH = 4, PAGES = 12 };
	struct orbit_area *a = check_area(32 * PG, mode);
	struct orbit *ob = orbit_create("ring", entry_sum, NULL, NULL);
	struct orbit_future *q[DEPTH] = { 0 };
	long expect[DEPTH] = { 0 };
	unsigned char *p;
	int bad = 0;

	REQUIRE(a && ob);
	p = orbit_area_base(a);
	for (int i = 0; i < N; i++) {
		int slot = i % DEPTH;
		int nw = (int)(rnd() % 7);
		struct span s = span_of(a, 1, PAGES);

		if (q[slot]) {
			long ret = -1;

			if (orbit_future_get(q[slot], &ret) != 0 || ret != expect[slot])
				bad++;
			orbit_future_release(q[slot]);
		}
		for (int k = 0; k < nw; k++)
			p[(1 + rnd() % PAGES) * PG] = (unsigned char)rnd();
		s.sleep_ms = rnd() % 8 == 0 ? 3 : 0;
		expect[slot] = weigh(&s);
		q[slot] = orbit_call_async(ob, 0, 1, &a, entry_sum, &s, sizeof(s));
		CHECK(q[slot] != NULL);
	}
	for (int slot = 0; slot < DEPTH; slot++) {
		long ret = -1;

		if (!q[slot])
			continue;
		if (orbit_future_get(q[slot], &ret) != 0 || ret != expect[slot])
			bad++;
		orbit_future_release(q[slot]);
	}
	CHECK_EQ(bad, 0);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* ------------------------------------ a new process's first call */

/* Armed around a call: the block hook writes the area, as another thread
 * would while the caller has the GIL released. */
static unsigned char *pf_area;
static int pf_armed, pf_blocks;
static pid_t pf_main;

static void *pf_block_begin(void *ctx)
{
	(void)ctx;
	if (pf_armed && getpid() == pf_main) {	/* not in the orbit, a fork */
		pf_blocks++;
		pf_area[3 * PG] = (unsigned char)(pf_area[3 * PG] + 10);
	}
	return NULL;
}

/* A call whose submission (not its wait) runs with the hook armed. */
static long pf_call_sum(struct orbit *ob, struct orbit_area *a, long first, long n)
{
	struct span s = span_of(a, first, n);
	struct orbit_future *f;
	long ret = -12345;

	pf_blocks = 0;
	pf_armed = 1;
	f = orbit_call_async(ob, 0, 1, &a, entry_sum, &s, sizeof(s));
	pf_armed = 0;
	CHECK(f != NULL);
	if (!f)
		return -12345;
	CHECK_EQ(orbit_future_get(f, &ret), 0);
	orbit_future_release(f);
	return ret;
}

/*
 * The first call to a new process (first start, restart) allocates the
 * pages of the orbit's new copy with the caller's lock (the GIL) released:
 * the block hooks bracket that work.  Writes made meanwhile are in the
 * call's snapshot.
 */
static void prefault_first_call(const char *mode)
{
	struct orbit_hooks h = { .block_begin = pf_block_begin };
	struct orbit_options o;
	struct orbit_stats st;
	struct orbit_area *a = check_area(64 * PG, mode);
	struct orbit *ob;

	REQUIRE(a != NULL);
	orbit_options_init(&o);
	o.hooks = &h;
	ob = orbit_create("prefault", entry_sum, NULL, &o);
	REQUIRE(ob != NULL);
	pf_area = orbit_area_base(a);
	pf_main = getpid();
	for (int k = 0; k < 40; k++)
		pf_area[k * PG] = 1;

	CHECK_EQ(pf_call_sum(ob, a, 3, 1), 11);	/* 1, plus the write made meanwhile */
	CHECK_EQ(pf_blocks, 1);
	/* A later call to the same process: nothing to allocate, no release. */
	CHECK_EQ(pf_call_sum(ob, a, 3, 1), 11);
	CHECK_EQ(pf_blocks, 0);

	/* After a restart the new copy is allocated again, unlocked. */
	orbit_restart(ob);
	CHECK_EQ(pf_call_sum(ob, a, 3, 2), 21 + 2 * 1);
	CHECK_EQ(pf_blocks, 1);
	stats(ob, &st);
	CHECK_EQ(st.full_syncs, 2);
	CHECK_EQ(st.restarts, 1);

	orbit_destroy(ob);
	orbit_area_destroy(a);
}

int main(void)
{
	check_watchdog(55);
	/* Before any orbit exists: every orbit here gets a 16-page ring. */
	setenv("ORBITPY_STAGING", "65536", 1);
	RUN_MODES(counts);
	RUN_MODES(no_area_calls);
	RUN_MODES(area_after_start);
	RUN_MODES(two_orbits_one_area);
	RUN_MODES(duplicate_area_in_call);
	RUN_MODES(destroyed_area_released);
	RUN_MODES(async_snapshot_fixed);
	RUN_MODES(running_call_isolated);
	RUN_MODES(staging_overflow);
	RUN_MODES(staging_second_waits);
	RUN_MODES(staging_ring_stress);
	RUN_MODES(prefault_first_call);
	return CHECK_DONE();
}
