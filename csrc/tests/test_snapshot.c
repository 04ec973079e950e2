/*
 * test_snapshot.c - what a call sees of its areas: calls that name no area,
 * areas created after the orbit started, several orbits on one area, the
 * same area twice, snapshots of queued calls (also in a hardened orbit), and
 * a new process's first call (also while the process is still setting
 * itself up).
 * (What it costs with the userspace backend, exact page counts and its
 * staging ring, is in user/test_snapshot_costs.c; what that backend counts
 * in these scenarios, in user/test_copy_counts.c.)
 *
 * main() sets ORBITPY_STAGING=65536 (16 pages) before any orbit exists: with
 * the userspace backend, queued calls here then also overflow its staging
 * ring; other backends ignore the variable.
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

/* A call that names no area copies nothing (pages_copied: a backend that
 * copies nothing reports 0 throughout) and does not reset the views. */
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
	CHECK_EQ(call_sum(ob, a, 1, 1), 6);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* ------------------------------------------------- areas and orbits */

static void area_after_start(const char *mode)
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

	p[6 * PG] = 1;
	CHECK_EQ(call_sum(ob, b, 2, 5), 7 + 3 * 9 + 5 * 1);

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
	unsigned char *p;

	REQUIRE(a && o1 && o2);
	p = orbit_area_base(a);
	for (int i = 1; i <= 3; i++)
		p[i * PG] = 1;
	CHECK_EQ(call_sum(o1, a, 1, 8), 6);
	CHECK_EQ(call_sum(o2, a, 1, 8), 6);

	/* Each orbit gets every page written since its own previous call,
	 * whoever collected them. */
	p[5 * PG] = 1;
	CHECK_EQ(call_sum(o1, a, 1, 8), 6 + 5);
	p[6 * PG] = 1;
	CHECK_EQ(call_sum(o2, a, 1, 8), 6 + 5 + 6);
	CHECK_EQ(call_sum(o1, a, 1, 8), 6 + 5 + 6);

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
	struct span s;
	long ret = -1;

	REQUIRE(a && ob);
	twice[0] = twice[1] = a;
	((unsigned char *)orbit_area_base(a))[PG] = 3;
	s = span_of(a, 1, 1);
	CHECK_EQ(orbit_call(ob, 2, twice, entry_sum, &s, sizeof(s), &ret), 0);
	CHECK_EQ(ret, 3);
	orbit_destroy(ob);
	orbit_area_destroy(a);
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

/* The same through a hardened orbit (seccomp filter, see orbit_options):
 * whatever a backend does to queue a snapshot, the filter must allow it,
 * and whatever it started for it ends with the orbit (no process, no
 * descriptor left). */
static void hardened_queued_snapshots(const char *mode)
{
	enum { N = 3 };
	struct orbit_area *a = check_area(8 * PG, mode);
	struct orbit_options o;
	struct orbit *ob;
	struct orbit_future *f[N], *slow;
	long expect[N], ret, ms = 150;
	unsigned char *p;
	int fds0 = check_count_fds(), st;

	orbit_options_init(&o);
	o.harden = 1;
	ob = orbit_create("hardq", entry_sum, NULL, &o);
	REQUIRE(a && ob);
	p = orbit_area_base(a);
	CHECK_EQ(call_sum(ob, a, 1, 4), 0);
	slow = orbit_call_async(ob, 0, 0, NULL, entry_sleep, &ms, sizeof(ms));
	REQUIRE(slow != NULL);
	for (int i = 0; i < N; i++) {
		struct span s = span_of(a, 1, 4);

		p[(1 + i) * PG] = (unsigned char)(20 + i);
		expect[i] = weigh(&s);
		f[i] = orbit_call_async(ob, 0, 1, &a, entry_sum, &s, sizeof(s));
		CHECK(f[i] != NULL);
	}
	memset(p + PG, 0xAA, 4 * PG);	/* after every snapshot */
	CHECK_EQ(orbit_future_get(slow, &ret), 0);
	orbit_future_release(slow);
	for (int i = 0; i < N; i++) {
		if (!f[i])
			continue;
		ret = -1;
		CHECK_EQ(orbit_future_get(f[i], &ret), 0);
		CHECK_EQ(ret, expect[i]);
		orbit_future_release(f[i]);
	}
	orbit_destroy(ob);
	errno = 0;
	CHECK_EQ(waitpid(-1, &st, WNOHANG), -1);
	CHECK_EQ(errno, ECHILD);
	CHECK_EQ(check_count_fds(), fds0);
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
	CHECK_EQ(st.restarts, 1);

	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* A new process's setup (slowed here by its after_fork_child hook) replaces
 * the fork's copy of the areas with the orbit's own: a first call made
 * meanwhile must still see main's writes, on the first process and after a
 * restart. */
static void slow_setup(void *ctx)
{
	(void)ctx;
	check_sleep_ms(300);
}

static void first_call_during_setup(void)
{
	struct orbit_hooks h = { .after_fork_child = slow_setup };
	struct orbit_options o;
	struct orbit_area *a = check_area(16 * PG, "auto");
	struct orbit *ob;
	unsigned char *p;

	REQUIRE(a != NULL);
	orbit_options_init(&o);
	o.hooks = &h;
	ob = orbit_create("slowsetup", entry_sum, NULL, &o);
	REQUIRE(ob != NULL);
	p = orbit_area_base(a);
	p[PG] = 5;
	CHECK_EQ(call_sum(ob, a, 1, 1), 5);	/* starts the process */
	orbit_restart(ob);
	p[PG] = 6;
	CHECK_EQ(call_sum(ob, a, 1, 1), 6);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

int main(void)
{
	/* These count each call's copies: none between calls. */
	orbit_set_background_sync(0);
	check_watchdog(55);
	/* Before any orbit exists: with the userspace backend, every orbit
	 * here gets a 16-page staging ring. */
	setenv("ORBITPY_STAGING", "65536", 1);
	RUN_MODES(no_area_calls);
	RUN_MODES(area_after_start);
	RUN_MODES(two_orbits_one_area);
	RUN_MODES(duplicate_area_in_call);
	RUN_MODES(async_snapshot_fixed);
	RUN_MODES(hardened_queued_snapshots);
	RUN_MODES(running_call_isolated);
	RUN_MODES(prefault_first_call);
	RUN(first_call_during_setup);
	return CHECK_DONE();
}
