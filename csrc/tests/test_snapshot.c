/*
 * test_snapshot.c - what a call sees of its areas: calls that name no area,
 * areas created after the orbit started, several orbits on one area, the
 * same area twice, snapshots of queued calls (also in a hardened orbit), and
 * a new process's first call (also while the process is still setting
 * itself up).
 * The scenarios user/test_copy_counts.c also runs, to assert what the
 * userspace backend counts in them, are in scenario_snapshot.h.
 * (What it costs with the userspace backend, exact page counts and its
 * staging ring, is in user/test_snapshot_costs.c.)
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
#include "scenario_snapshot.h"
#include "snapshot_util.h"

static void no_area_calls(const char *mode)
{
	scenario_no_area_calls(mode, NULL);
}

static void area_after_start(const char *mode)
{
	scenario_area_after_start(mode, NULL);
}

static void two_orbits_one_area(const char *mode)
{
	scenario_two_orbits_one_area(mode, NULL);
}

static void duplicate_area_in_call(const char *mode)
{
	scenario_duplicate_area_in_call(mode, NULL);
}

/* -------------------------------------------------- queued snapshots */

/* Waits for the slow call the others queued behind, then checks each
 * queued call's result against what main expected when it queued it (and
 * its sequence number, counting from first_seq, unless that is 0);
 * releases them all. */
static void check_queued(struct orbit_future *slow, struct orbit_future **f,
			 const long *expect, int n, uint64_t first_seq)
{
	long ret = -1;

	CHECK_EQ(orbit_future_get(slow, &ret), 0);
	orbit_future_release(slow);
	for (int i = 0; i < n; i++) {
		if (!f[i])
			continue;
		ret = -1;
		CHECK_EQ(orbit_future_get(f[i], &ret), 0);
		CHECK_EQ(ret, expect[i]);
		if (first_seq)
			CHECK_EQ(orbit_future_seq(f[i]), first_seq + (uint64_t)i);
		orbit_future_release(f[i]);
	}
}

/* Each queued call sees the area as it was when call_async returned. */
static void async_snapshot_fixed(const char *mode)
{
	enum { N = 12 };
	struct orbit_area *a = check_area(16 * PG, mode);
	struct orbit *ob = orbit_create("async", entry_sum, NULL, NULL);
	struct orbit_future *f[N], *slow;
	long expect[N], ms = 150;
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
	check_queued(slow, f, expect, N, 3);
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
	long expect[N], ms = 150;
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
	check_queued(slow, f, expect, N, 0);
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
	CHECK_FUTURE(f, 1);
	CHECK_FUTURE(g, 99);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

static void prefault_first_call(const char *mode)
{
	scenario_prefault_first_call(mode, NULL);
}

/* ------------------------------------ a new process's setup */

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
	struct orbit_area *a = check_area(16 * PG, "auto");
	struct orbit *ob;
	unsigned char *p;

	REQUIRE(a != NULL);
	ob = orbit_with_hooks("slowsetup", &h);
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
