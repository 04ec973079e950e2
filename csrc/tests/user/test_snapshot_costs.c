/*
 * test_snapshot_costs.c - what a call's snapshot costs with the userspace
 * backend: exact incremental page counts in every snapshot mode, and its
 * staging ring running full.
 *
 * Backend-specific: page counts and the staging ring (ORBITPY_STAGING) are
 * how the userspace backend copies pages; test_snapshot.c has what any
 * backend's calls must see.
 *
 * main() sets ORBITPY_STAGING=65536 (16 pages) before any orbit exists, so
 * every orbit here has a small staging ring.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "orbit.h"
#include "snapshot_util.h"

#define STAGING_PAGES 16

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

int main(void)
{
	/* These count each call's copies: none between calls. */
	orbit_set_background_sync(0);
	check_watchdog(55);
	/* Before any orbit exists: every orbit here gets a 16-page ring. */
	setenv("ORBITPY_STAGING", "65536", 1);
	RUN_MODES(counts);
	RUN_MODES(staging_overflow);
	RUN_MODES(staging_second_waits);
	RUN_MODES(staging_ring_stress);
	return CHECK_DONE();
}
