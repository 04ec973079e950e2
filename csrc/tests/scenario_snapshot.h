/*
 * scenario_snapshot.h - what a call sees of its areas, scenarios shared by
 * test_snapshot.c (no hook: what the orbit sees, for any backend) and
 * user/test_copy_counts.c (a hook at the points below that asserts the
 * userspace backend's copy counts): calls that name no area, areas created
 * after the orbit started, two orbits on one area, the same area twice in
 * a call, and a new process's first call.
 */
#ifndef ORBIT_TESTS_SCENARIO_SNAPSHOT_H
#define ORBIT_TESTS_SCENARIO_SNAPSHOT_H

#include <unistd.h>

#include "check.h"
#include "orbit.h"
#include "scenario_hook.h"
#include "snapshot_util.h"

/* Where the scenarios below call their hook. */
enum scenario_snapshot_point {
	NO_AREA_AFTER,		/* after a call that named no area */
	LATE_FIRST,		/* after the first call naming the late area */
	LATE_ONE_MORE,		/* after the next, one page written */
	LATE_SECOND_AREA,	/* after a call naming a second, newer area */
	TWO_FIRST_1,		/* each orbit's first call (orbit one, two) */
	TWO_FIRST_2,
	TWO_THEN_1,		/* after the calls of both since then */
	TWO_THEN_2,
	TWICE_AFTER,		/* after the call naming the area twice */
	PREFAULT_RESTARTED,	/* after the first call of a restarted orbit */
};

/* A call that names no area copies nothing (pages_copied: a backend that
 * copies nothing reports 0 throughout) and does not reset the views. */
static void scenario_no_area_calls(const char *mode,
				   const struct scenario_hook *h)
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
	scenario_at(h, NO_AREA_AFTER, ob);
	CHECK_EQ(call_sum(ob, a, 1, 1), 6);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* ------------------------------------------------- areas and orbits */

static void scenario_area_after_start(const char *mode,
				   const struct scenario_hook *h)
{
	struct orbit *ob = orbit_create("late", entry_sum, NULL, NULL);
	struct orbit_area *b;
	struct orbit_stats st;
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
	CHECK_EQ(st.restarts, 0);
	scenario_at(h, LATE_FIRST, ob);

	p[6 * PG] = 1;
	CHECK_EQ(call_sum(ob, b, 2, 5), 7 + 3 * 9 + 5 * 1);
	scenario_at(h, LATE_ONE_MORE, ob);

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
		CHECK_EQ(st.restarts, 0);
		scenario_at(h, LATE_SECOND_AREA, ob);
		CHECK_EQ(call_sum(ob, b, 2, 5), 7 + 3 * 9 + 5 * 1);
		orbit_area_destroy(c);
	}
	orbit_destroy(ob);
	orbit_area_destroy(b);
}

static void scenario_two_orbits_one_area(const char *mode,
				   const struct scenario_hook *h)
{
	struct orbit_area *a = check_area(32 * PG, mode);
	struct orbit *o1 = orbit_create("one", entry_sum, NULL, NULL);
	struct orbit *o2 = orbit_create("two", entry_sum, NULL, NULL);
	unsigned char *p;

	REQUIRE(a && o1 && o2);
	p = orbit_area_base(a);
	for (int i = 1; i <= 3; i++)
		p[i * PG] = 1;
	CHECK_EQ(call_sum(o1, a, 1, 8), 6);
	CHECK_EQ(call_sum(o2, a, 1, 8), 6);
	scenario_at(h, TWO_FIRST_1, o1);
	scenario_at(h, TWO_FIRST_2, o2);

	/* Each orbit gets every page written since its own previous call,
	 * whoever collected them. */
	p[5 * PG] = 1;
	CHECK_EQ(call_sum(o1, a, 1, 8), 6 + 5);
	p[6 * PG] = 1;
	CHECK_EQ(call_sum(o2, a, 1, 8), 6 + 5 + 6);
	CHECK_EQ(call_sum(o1, a, 1, 8), 6 + 5 + 6);
	scenario_at(h, TWO_THEN_1, o1);
	scenario_at(h, TWO_THEN_2, o2);

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
static void scenario_duplicate_area_in_call(const char *mode,
				   const struct scenario_hook *h)
{
	struct orbit_area *a = check_area(8 * PG, mode);
	struct orbit *ob = orbit_create("dup", entry_sum, NULL, NULL);
	struct orbit_area *twice[2];
	struct span s;
	long ret = -1;

	REQUIRE(a && ob);
	twice[0] = twice[1] = a;
	((unsigned char *)orbit_area_base(a))[PG] = 3;
	s = span_of(a, 1, 1);
	CHECK_EQ(orbit_call(ob, 2, twice, entry_sum, &s, sizeof(s), &ret), 0);
	CHECK_EQ(ret, 3);
	scenario_at(h, TWICE_AFTER, ob);
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
static void scenario_prefault_first_call(const char *mode,
					const struct scenario_hook *h)
{
	struct orbit_hooks bh = { .block_begin = pf_block_begin };
	struct orbit_stats st;
	struct orbit_area *a = check_area(64 * PG, mode);
	struct orbit *ob;

	REQUIRE(a != NULL);
	ob = orbit_with_hooks("prefault", &bh);
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
	CHECK_EQ(st.restarts, 1);
	scenario_at(h, PREFAULT_RESTARTED, ob);

	orbit_destroy(ob);
	orbit_area_destroy(a);
}

#endif
