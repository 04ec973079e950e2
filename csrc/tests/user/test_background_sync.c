/*
 * test_background_sync.c - the userspace backend's copying between calls
 * (us/background_sync.c): pages main wrote, then left alone, reach an idle
 * orbit's copy before its next call, which copies only what is left; a
 * stopped thread copies nothing; a page main keeps writing waits for the
 * call; a child forked meanwhile makes orbits of its own.
 *
 * Backend-specific: the counts are the userspace backend's (pages_copied
 * counts a call's copies, not the thread's).
 */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "orbit.h"
#include "snapshot_util.h"

#define PERIOD_MS 20
#define SETTLE_MS (15 * PERIOD_MS)	/* quiet for a period, then a pass; generous */

/* Pages from 1 on: page 0 holds the area allocator's header. */
static void write_pages(struct orbit_area *a, long first, long n, unsigned char v)
{
	unsigned char *p = orbit_area_base(a);

	for (long k = first; k < first + n; k++)
		p[k * PG] = v;
}

/* waitpid with a deadline: pid, or -1 (the child is killed) */
static pid_t wait_child(pid_t pid, int *status, unsigned ms)
{
	for (unsigned waited = 0; waited < ms; waited += 5) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r)
			return r;
		check_sleep_ms(5);
	}
	kill(pid, SIGKILL);
	waitpid(pid, status, 0);
	return -1;
}

/* Pages written and then left alone are copied before the call. */
static void copied_between_calls(void)
{
	struct orbit_area *a = check_area(256 * PG, "uffd");
	struct orbit *ob = orbit_create("bgsync", entry_sum, NULL, NULL);
	struct orbit_stats s0, s1;
	long want;

	REQUIRE(a && ob);
	write_pages(a, 1, 200, 1);
	CHECK_EQ(call_sum(ob, a, 1, 200), 200 * 201 / 2);
	for (unsigned char v = 2; v < 5; v++) {
		stats(ob, &s0);
		write_pages(a, 1, 200, v);
		check_sleep_ms(SETTLE_MS);
		want = (long)v * 200 * 201 / 2;
		CHECK_EQ(call_sum(ob, a, 1, 200), want);
		stats(ob, &s1);
		CHECK(s1.pages_copied - s0.pages_copied < 20);	/* all 200, on an idle machine */
	}
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* Stopped, the thread copies nothing: the call copies every page. */
static void stopped(void)
{
	struct orbit_area *a = check_area(256 * PG, "uffd");
	struct orbit *ob = orbit_create("bgsync-off", entry_sum, NULL, NULL);
	struct orbit_stats s0, s1;

	REQUIRE(a && ob);
	CHECK_EQ(call_sum(ob, a, 1, 100), 0);
	CHECK_EQ(orbit_set_background_sync(0), PERIOD_MS);
	stats(ob, &s0);
	write_pages(a, 1, 100, 3);
	check_sleep_ms(SETTLE_MS);
	CHECK_EQ(call_sum(ob, a, 1, 100), 3 * 100 * 101 / 2);
	stats(ob, &s1);
	CHECK_EQ(s1.pages_copied - s0.pages_copied, 100);
	CHECK_EQ(orbit_set_background_sync(PERIOD_MS), 0);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* A page written in every period is never quiet: the call copies it. */
static void hot_page_waits_for_the_call(void)
{
	struct orbit_area *a = check_area(64 * PG, "uffd");
	struct orbit *ob = orbit_create("bgsync-hot", entry_sum, NULL, NULL);
	struct orbit_stats s0, s1;

	REQUIRE(a && ob);
	CHECK_EQ(call_sum(ob, a, 1, 32), 0);
	stats(ob, &s0);
	write_pages(a, 1, 32, 1);
	for (int i = 0; i < SETTLE_MS / 2; i++) {	/* page 0, every 2 ms */
		write_pages(a, 1, 1, 1);
		check_sleep_ms(2);
	}
	CHECK_EQ(call_sum(ob, a, 1, 32), 32 * 33 / 2);
	stats(ob, &s1);
	CHECK(s1.pages_copied - s0.pages_copied >= 1);
	CHECK(s1.pages_copied - s0.pages_copied < 16);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* Children forked while the thread runs have none, and orbits of their own. */
static void fork_while_copying(void)
{
	struct orbit_area *a = check_area(4100 * PG, "uffd");
	struct orbit *ob = orbit_create("bgsync-fork", entry_sum, NULL, NULL);

	REQUIRE(a && ob);
	CHECK_EQ(call_sum(ob, a, 1, 1), 0);
	for (int i = 0; i < 10; i++) {
		int status = -1;
		pid_t pid;

		write_pages(a, 1, 4000, (unsigned char)(i + 1));
		check_sleep_ms(PERIOD_MS + (unsigned)(i % 4) * 3);
		pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0) {
			struct orbit_area *ca = orbit_area_create(16 * PG, "uffd");
			struct orbit *co = orbit_create("child", entry_sum, NULL, NULL);
			struct span s;
			long ret = -1;

			if (!ca || !co)
				_exit(2);
			write_pages(ca, 1, 4, 5);
			s = span_of(ca, 1, 4);
			if (orbit_call(co, 1, &ca, entry_sum, &s, sizeof(s), &ret) || ret != 50)
				_exit(3);
			orbit_destroy(co);
			orbit_area_destroy(ca);
			_exit(0);
		}
		CHECK_EQ(wait_child(pid, &status, 30000), pid);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	CHECK_EQ(call_sum(ob, a, 1, 4000), 10L * 4000 * 4001 / 2);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* orbit_warm: a copy made before the area is filled is filled between
 * calls; the first call copies little and sees every page. */
static void warm_before_filling(void)
{
	struct orbit_area *a = check_area(2100 * PG, "uffd");
	struct orbit *ob = orbit_create("bgsync-warm", entry_sum, NULL, NULL);
	struct orbit_stats st;

	REQUIRE(a && ob);
	CHECK_EQ(orbit_warm(ob, 1, &a), 0);
	CHECK(orbit_pid(ob) > 0);
	write_pages(a, 1, 2000, 2);
	check_sleep_ms(SETTLE_MS);
	CHECK_EQ(call_sum(ob, a, 1, 2000), 2L * 2000 * 2001 / 2);
	stats(ob, &st);
	CHECK_EQ(st.full_syncs, 1);
	CHECK(st.pages_copied < 200);	/* of 2,000 written */
	CHECK_EQ(orbit_warm(NULL, 0, NULL), -EINVAL);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

int main(void)
{
	check_watchdog(55);
	CHECK(orbit_set_background_sync(PERIOD_MS) >= 0);
	RUN(copied_between_calls);
	RUN(stopped);
	RUN(hot_page_waits_for_the_call);
	RUN(fork_while_copying);
	RUN(warm_before_filling);
	return CHECK_DONE();
}
