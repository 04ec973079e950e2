/*
 * scenario_calls.h - calls, snapshots and incremental transfer in one
 * mode: what the orbit sees.  test_calls.c runs it in each mode;
 * user/test_copy_counts.c runs it again with a hook that asserts the
 * userspace backend's copy counts at the points below.
 */
#ifndef ORBIT_TESTS_SCENARIO_CALLS_H
#define ORBIT_TESTS_SCENARIO_CALLS_H

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "orbit.h"
#include "scenario_hook.h"

#ifndef PG
#define PG orbit_page_size()
#endif

/* Where scenario_calls() calls its hook. */
enum scenario_calls_point {
	CALLS_FIRST,		/* after the first call (a new process) */
	CALLS_BEFORE_THREE,	/* three pages written, before the call */
	CALLS_AFTER_THREE,	/* after the call that sent them */
	CALLS_BEFORE_RESET,	/* after a call that wrote four pages */
	CALLS_AFTER_RESET,	/* after the next call, which reset them */
	CALLS_RESTARTED,	/* after a crash and the call that restarted */
};

static struct orbit_area *g_area;

/* Sum of the first byte of each of the area's first n pages. */
static long sum_pages(void *arg, size_t argsize, void *store)
{
	long n = *(long *)arg, s = 0;
	unsigned char *p = orbit_area_base(g_area);

	(void)argsize;
	(void)store;
	for (long i = 0; i < n; i++)
		s += p[i * PG];
	return s;
}

/* Writes to its view: must never reach main nor a later call. */
static long scribble(void *arg, size_t argsize, void *store)
{
	long n = *(long *)arg;
	unsigned char *p = orbit_area_base(g_area);

	(void)argsize;
	(void)store;
	for (long i = 0; i < n; i++)
		p[i * PG] = 200;
	return 0;
}

static long crash(void *arg, size_t argsize, void *store)
{
	(void)arg;
	(void)argsize;
	(void)store;
	raise(SIGSEGV);
	return 0;
}

static long spin(void *arg, size_t argsize, void *store)
{
	(void)arg;
	(void)argsize;
	(void)store;
	for (;;)
		pause();
	return 0;
}

static long pusher(void *arg, size_t argsize, void *store)
{
	long n = *(long *)arg;

	(void)argsize;
	(void)store;
	for (long i = 0; i < n; i++)
		orbit_push(&i, sizeof(i));
	orbit_return_data("done", 4);
	return n;
}

static void scenario_calls(const char *mode, const struct scenario_hook *h)
{
	struct orbit_options o;
	struct orbit *ob;
	struct orbit_stats st;
	unsigned char *p;
	long n = 16, ret = -1;
	struct orbit_future *f1, *f2;

	g_area = orbit_area_create(64 * PG, mode);
	CHECK(g_area != NULL);
	if (!g_area)
		return;
	p = orbit_area_base(g_area);
	for (int i = 0; i < 16; i++)
		p[i * PG] = 1;
	orbit_options_init(&o);
	ob = orbit_create("t", sum_pages, NULL, &o);
	CHECK(ob != NULL);

	CHECK_EQ(orbit_call(ob, 1, &g_area, NULL, &n, sizeof(n), &ret), 0);
	CHECK_EQ(ret, 16);
	scenario_at(h, CALLS_FIRST, ob);

	/* Incremental: three pages written, seen by the next call. */
	p[0] = 2;
	p[5 * PG] = 2;
	p[9 * PG] = 2;
	scenario_at(h, CALLS_BEFORE_THREE, ob);
	CHECK_EQ(orbit_call(ob, 1, &g_area, NULL, &n, sizeof(n), &ret), 0);
	CHECK_EQ(ret, 19);
	scenario_at(h, CALLS_AFTER_THREE, ob);

	/* The orbit's own writes: gone before the next call, never seen. */
	long four = 4;
	CHECK_EQ(orbit_call(ob, 1, &g_area, scribble, &four, sizeof(four), &ret), 0);
	CHECK_EQ(p[0], 2);
	scenario_at(h, CALLS_BEFORE_RESET, ob);
	CHECK_EQ(orbit_call(ob, 1, &g_area, NULL, &n, sizeof(n), &ret), 0);
	CHECK_EQ(ret, 19);
	scenario_at(h, CALLS_AFTER_RESET, ob);

	/* Async snapshots are fixed when call_async returns. */
	f1 = orbit_call_async(ob, 0, 1, &g_area, NULL, &n, sizeof(n));
	p[1 * PG] = 50;
	f2 = orbit_call_async(ob, 0, 1, &g_area, NULL, &n, sizeof(n));
	p[2 * PG] = 50;
	CHECK(f1 && f2);
	CHECK_EQ(orbit_future_get(f1, &ret), 0);
	CHECK_EQ(ret, 19);
	CHECK_EQ(orbit_future_get(f2, &ret), 0);
	CHECK_EQ(ret, 19 + 49);
	orbit_future_release(f1);
	orbit_future_release(f2);

	/* Updates and attached data. */
	long three = 3;
	f1 = orbit_call_async(ob, 0, 0, NULL, pusher, &three, sizeof(three));
	CHECK(f1 != NULL);
	for (long i = 0; i < 3; i++) {
		void *d = NULL;
		size_t len = 0;

		CHECK_EQ(orbit_pull(f1, 5000, &d, &len), 1);
		CHECK_EQ(len, sizeof(long));
		if (d)
			CHECK_EQ(*(long *)d, i);
		free(d);
	}
	{
		void *d;
		size_t len;

		CHECK_EQ(orbit_pull(f1, 5000, &d, &len), 0);
		CHECK_EQ(orbit_future_get(f1, &ret), 0);
		CHECK_EQ(ret, 3);
		const void *data = orbit_future_data(f1, &len);
		CHECK_EQ(len, 4);
		CHECK(data && !memcmp(data, "done", 4));
	}
	orbit_future_release(f1);

	/* A crash fails the call, and the next call restarts with the area
	 * as main has it. */
	pid_t pid = orbit_pid(ob);
	CHECK_EQ(orbit_call(ob, 0, NULL, crash, NULL, 0, &ret), -ORBIT_E_CRASHED);
	CHECK_EQ(orbit_call(ob, 1, &g_area, NULL, &n, sizeof(n), &ret), 0);
	CHECK_EQ(ret, 19 + 49 + 49);
	CHECK(orbit_pid(ob) != pid);
	orbit_stats(ob, &st);
	CHECK_EQ(st.restarts, 1);
	CHECK_EQ(st.crashes, 1);
	scenario_at(h, CALLS_RESTARTED, ob);

	orbit_destroy(ob);

	/* Timeouts kill the orbit and fail the call. */
	o.timeout_ms = 200;
	ob = orbit_create("t2", spin, NULL, &o);
	CHECK_EQ(orbit_call(ob, 0, NULL, NULL, NULL, 0, &ret), -ORBIT_E_TIMEOUT);
	CHECK_EQ(orbit_call(ob, 1, &g_area, sum_pages, &n, sizeof(n), &ret), 0);
	CHECK_EQ(ret, 19 + 49 + 49);
	orbit_destroy(ob);
	orbit_area_destroy(g_area);
}

#endif
