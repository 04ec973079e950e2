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
#include "scenario_restart_idle.h"
#include "scenario_snapshot.h"
#include "snapshot_util.h"

/* ------------------------------------- test_calls.c's scenario_calls */

/* What the userspace backend counts at scenario_calls()'s points. */
struct calls_counts {
	const char *mode;
	uint64_t before;
};

static void calls_counts_at(void *ctx, int point, struct orbit *ob,
				const void *seen)
{
	struct calls_counts *c = ctx;
	int full = check_mode_is(c->mode, "full");
	struct orbit_stats st;

	(void)seen;
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

/* What the userspace backend counts at scenario_snapshot.h's points. */
struct snapshot_counts {
	const char *mode;
	struct orbit_stats st0[2];	/* per orbit, at an earlier point */
};

static void snapshot_counts_at(void *ctx, int point, struct orbit *ob,
				const void *seen)
{
	struct snapshot_counts *c = ctx;
	int full = check_mode_is(c->mode, "full");
	struct orbit_stats st;

	(void)seen;
	stats(ob, &st);
	switch (point) {
	case NO_AREA_AFTER:	/* the first call's sync only */
		CHECK_EQ(st.full_syncs, 1);
		break;
	case LATE_FIRST:
		CHECK_EQ(st.full_syncs, 1);
		CHECK_EQ(st.pages_copied, 3);	/* header page + 2 */
		c->st0[0] = st;
		break;
	case LATE_ONE_MORE:
		CHECK_EQ(st.pages_copied - c->st0[0].pages_copied, full ? 4 : 1);
		break;
	case LATE_SECOND_AREA:
		CHECK_EQ(st.full_syncs, 2);
		break;
	case TWO_FIRST_1:
	case TWO_FIRST_2:
		CHECK_EQ(st.pages_copied, 4);
		CHECK_EQ(st.full_syncs, 1);
		c->st0[point - TWO_FIRST_1] = st;
		break;
	case TWO_THEN_1:	/* pages 5 and 6, each collected by one orbit */
		CHECK_EQ(st.pages_copied - c->st0[0].pages_copied, full ? 5 + 6 : 1 + 1);
		break;
	case TWO_THEN_2:
		CHECK_EQ(st.pages_copied - c->st0[1].pages_copied, full ? 6 : 2);
		break;
	case TWICE_AFTER:	/* one sync of header page + 1 */
		CHECK_EQ(st.full_syncs, 1);
		CHECK_EQ(st.pages_copied, 2);
		break;
	case PREFAULT_RESTARTED:
		CHECK_EQ(st.full_syncs, 2);
		break;
	}
}

typedef void snapshot_scenario(const char *mode, const struct scenario_hook *h);

static void snapshot_counted(snapshot_scenario *run, const char *mode)
{
	struct snapshot_counts c = { .mode = mode };
	struct scenario_hook h = { .at = snapshot_counts_at, .ctx = &c };

	run(mode, &h);
}

static void no_area_calls(const char *mode)
{
	snapshot_counted(scenario_no_area_calls, mode);
}

static void area_after_start(const char *mode)
{
	snapshot_counted(scenario_area_after_start, mode);
}

static void two_orbits_one_area(const char *mode)
{
	snapshot_counted(scenario_two_orbits_one_area, mode);
}

static void duplicate_area_in_call(const char *mode)
{
	snapshot_counted(scenario_duplicate_area_in_call, mode);
}

static void prefault_first_call(const char *mode)
{
	snapshot_counted(scenario_prefault_first_call, mode);
}

/* ------------------------------------ test_faults.c's test_restart_idle */

/* A new process after orbit_restart: the whole area again. */
static void restart_idle_counts_at(void *ctx, int point, struct orbit *ob,
				const void *seen)
{
	struct orbit_stats st;

	(void)ctx;
	(void)seen;
	stats(ob, &st);
	if (point == RESTART_IDLE_AFTER)
		CHECK_EQ(st.full_syncs, 2);
}

static void test_restart_idle(void)
{
	struct scenario_hook h = { .at = restart_idle_counts_at };

	scenario_restart_idle(&h);
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
