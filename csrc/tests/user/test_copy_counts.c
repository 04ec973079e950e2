/*
 * test_copy_counts.c - what the userspace backend counts (full_syncs,
 * pages_copied, pages_reset: see "Copy-based statistics" in orbit_sys.h) in
 * the scenarios of the shared tests, which assert only what the orbit sees
 * and so hold for any backend: test_calls.c (calls in each mode),
 * test_snapshot.c (calls without areas, areas made after the orbit started,
 * two orbits on one area, an area named twice, a new process's first call)
 * and test_faults.c (orbit_restart of an idle orbit).  Each runs the shared
 * scenario (tests/scenario_*.h) with a hook that asserts the counts.
 *
 * main() sets ORBITPY_STAGING=65536 (16 pages) before any orbit exists, as
 * test_snapshot.c does.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "orbit.h"
#include "scenario_calls.h"
#include "snapshot_util.h"

/* ------------------------------------- test_calls.c's scenario_calls */

/* What the userspace backend counts at scenario_calls()'s points. */
struct calls_counts {
	const char *mode;
	uint64_t before;
};

static void calls_counts_at(void *ctx, int point, struct orbit *ob)
{
	struct calls_counts *c = ctx;
	int full = check_mode_is(c->mode, "full");
	struct orbit_stats st;

	orbit_stats(ob, &st);
	switch (point) {
	case CALLS_FIRST:
		CHECK_EQ(st.full_syncs, 1);
		break;
	case CALLS_BEFORE_THREE:
		c->before = st.pages_copied;
		break;
	case CALLS_AFTER_THREE:	/* three pages written -> three copied */
		if (!full)
			CHECK_EQ(st.pages_copied - c->before, 3);
		break;
	case CALLS_BEFORE_RESET:
		c->before = st.pages_reset;
		break;
	case CALLS_AFTER_RESET:	/* the orbit's four writes, reset */
		if (!full)
			CHECK_EQ(st.pages_reset - c->before, 4);
		break;
	case CALLS_RESTARTED:	/* the new process got the whole area */
		CHECK_EQ(st.full_syncs, 2);
		break;
	}
}

static void calls_counts(const char *mode)
{
	struct calls_counts c = { .mode = mode };
	struct scenario_hook h = { .at = calls_counts_at, .ctx = &c };

	scenario_calls(mode, &h);
}

/* ---------------------------------------- test_snapshot.c's scenarios */

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

/* ------------------------------------ test_faults.c's test_restart_idle */

static long entry_peek(void *arg, size_t argsize, void *store)
{
	(void)argsize;
	(void)store;
	return **(unsigned char **)arg;
}

static void test_restart_idle(void)
{
	struct orbit_area *a = check_area(4 * PG, "auto");
	struct orbit *ob = orbit_create("restart", entry_peek, NULL, NULL);
	struct orbit_stats st;
	unsigned char *p;
	long ret = -1;
	pid_t pid;

	REQUIRE(a && ob);
	CHECK_EQ(orbit_restart(ob), 0);	/* nothing running: no-op */
	CHECK_EQ(orbit_pid(ob), 0);
	p = (unsigned char *)orbit_area_base(a) + PG;
	*p = 17;
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, &p, sizeof(p), &ret), 0);
	CHECK_EQ(ret, 17);
	pid = orbit_pid(ob);
	CHECK_EQ(orbit_restart(ob), 0);
	CHECK(check_wait_dead(pid, 3000));
	CHECK_EQ(orbit_pid(ob), 0);
	/* A new process gets the whole area again. */
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, &p, sizeof(p), &ret), 0);
	CHECK_EQ(ret, 17);
	CHECK(orbit_pid(ob) > 0 && orbit_pid(ob) != pid);
	orbit_stats(ob, &st);
	CHECK_EQ(st.restarts, 1);
	CHECK_EQ(st.crashes, 0);
	CHECK_EQ(st.full_syncs, 2);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

int main(void)
{
	/* These count each call's copies: none between calls. */
	orbit_set_background_sync(0);
	check_watchdog(55);
	/* Before any orbit exists: every orbit here gets a 16-page staging
	 * ring, as in test_snapshot.c. */
	setenv("ORBITPY_STAGING", "65536", 1);
	RUN_MODES(calls_counts);
	RUN_MODES(no_area_calls);
	RUN_MODES(area_after_start);
	RUN_MODES(two_orbits_one_area);
	RUN_MODES(duplicate_area_in_call);
	RUN_MODES(prefault_first_call);
	RUN(test_restart_idle);
	return CHECK_DONE();
}
