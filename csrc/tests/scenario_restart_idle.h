/*
 * scenario_restart_idle.h - orbit_restart of an idle orbit: a no-op before
 * the first call, then the process ends and the next call starts a new one
 * that sees the area.  test_faults.c runs it with no hook;
 * user/test_copy_counts.c with one that asserts the userspace backend's
 * full syncs at the point below.
 */
#ifndef ORBIT_TESTS_SCENARIO_RESTART_IDLE_H
#define ORBIT_TESTS_SCENARIO_RESTART_IDLE_H

#include <unistd.h>

#include "check.h"
#include "orbit.h"
#include "scenario_hook.h"

#ifndef PG
#define PG orbit_page_size()
#endif

/* Where scenario_restart_idle() calls its hook. */
enum scenario_restart_idle_point {
	RESTART_IDLE_AFTER,	/* after the new process's first call */
};

static long entry_peek(void *arg, size_t argsize, void *store)
{
	(void)argsize;
	(void)store;
	return **(unsigned char **)arg;
}

static void scenario_restart_idle(const struct scenario_hook *h)
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
	scenario_at(h, RESTART_IDLE_AFTER, ob);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

#endif
