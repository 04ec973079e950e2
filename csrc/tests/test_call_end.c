/*
 * test_call_end.c - how calls end when the orbit process goes away: answers
 * and updates that reached main are delivered whoever notices the loss, and
 * restarts racing calls never wedge the orbit.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>

#include "check.h"
#include "orbit.h"

struct job {
	long n;
	int crash;	/* raise(SIGSEGV) after pushing */
	int sleep_ms;
};

/* Push one update ("u" + n), then answer n, or crash. */
static long entry(void *arg, size_t argsize, void *store)
{
	const struct job *j = arg;
	char u[2] = { 'u', (char)j->n };

	(void)argsize;
	(void)store;
	if (j->sleep_ms)
		check_sleep_ms((unsigned)j->sleep_ms);
	orbit_push(u, sizeof(u));
	if (j->crash)
		raise(SIGSEGV);
	return j->n;
}

static struct orbit_future *submit(struct orbit *ob, long n, int crash)
{
	struct job j = { n, crash, 0 };

	return orbit_call_async(ob, 0, 0, NULL, NULL, &j, sizeof(j));
}

/* The call answered n and its one update arrived. */
static void check_answered(struct orbit_future *f, long n)
{
	void *d = NULL;
	size_t len = 0;
	long ret = -1;

	CHECK_EQ(orbit_pull(f, 5000, &d, &len), 1);
	CHECK(len == 2 && d && ((char *)d)[0] == 'u' && ((char *)d)[1] == (char)n);
	free(d);
	CHECK_EQ(orbit_future_get(f, &ret), 0);
	CHECK_EQ(ret, n);
}

/*
 * Calls 1-4 are answered, call 5 crashes; nobody waits until the process is
 * dead, then `notice` makes the next call (async or sync), which finds the
 * process gone.  The answers and updates of calls 1-4 are still delivered.
 */
static void answers_before_crash(int sync)
{
	struct orbit *ob = orbit_create("lost", entry, NULL, NULL);
	struct orbit_future *f[5];
	pid_t pid;
	long ret = -1;

	REQUIRE(ob != NULL);
	for (int i = 0; i < 5; i++) {
		f[i] = submit(ob, i + 1, i == 4);
		REQUIRE(f[i] != NULL);
	}
	pid = orbit_future_pid(f[0]);
	REQUIRE(pid > 0);
	CHECK(check_wait_dead(pid, 5000));
	if (sync) {
		struct job j = { 6, 0, 0 };

		CHECK_EQ(orbit_call(ob, 0, NULL, NULL, &j, sizeof(j), &ret), 0);
		CHECK_EQ(ret, 6);
	} else {
		struct orbit_future *f6 = submit(ob, 6, 0);

		REQUIRE(f6 != NULL);
		check_answered(f6, 6);
		orbit_future_release(f6);
	}
	for (int i = 0; i < 4; i++)
		check_answered(f[i], i + 1);
	CHECK_EQ(orbit_future_get(f[4], &ret), -ORBIT_E_CRASHED);
	CHECK(WIFSIGNALED(orbit_future_status(f[4])));
	for (int i = 0; i < 5; i++)
		orbit_future_release(f[i]);
	orbit_destroy(ob);
}

static void test_answers_survive_crash_noticed_by_async_call(void)
{
	answers_before_crash(0);
}

static void test_answers_survive_crash_noticed_by_sync_call(void)
{
	answers_before_crash(1);
}

/* orbit_restart() of a process whose answers already arrived: they count. */
static void test_answers_survive_restart(void)
{
	struct orbit *ob = orbit_create("lost2", entry, NULL, NULL);
	struct orbit_future *f1, *f2;
	struct job slow = { 2, 0, 10000 };
	long ret = -1;

	REQUIRE(ob != NULL);
	f1 = submit(ob, 1, 0);
	f2 = orbit_call_async(ob, 0, 0, NULL, NULL, &slow, sizeof(slow));
	REQUIRE(f1 && f2);
	check_sleep_ms(300);	/* call 1 answered, call 2 sleeping */
	CHECK_EQ(orbit_restart(ob), 0);
	check_answered(f1, 1);
	CHECK_EQ(orbit_future_get(f2, &ret), -ORBIT_E_CRASHED);
	orbit_future_release(f1);
	orbit_future_release(f2);
	orbit_destroy(ob);
}

/* ------------------------------------------------- restarts racing calls */

struct race {
	struct orbit *ob;
	_Atomic int stop;
	_Atomic long calls, restarts;
};

static void *race_caller(void *arg)
{
	struct race *r = arg;

	while (!r->stop) {
		struct job j = { 7, 0, 0 };
		long ret = -1;
		int rc = orbit_call(r->ob, 0, NULL, NULL, &j, sizeof(j), &ret);

		if (rc != 0 && rc != -ORBIT_E_CRASHED)
			fprintf(stderr, "unexpected call error %d\n", rc);
		CHECK(rc == 0 || rc == -ORBIT_E_CRASHED);
		CHECK(rc != 0 || ret == 7);
		r->calls++;
	}
	return NULL;
}

static void *race_restarter(void *arg)
{
	struct race *r = arg;

	while (!r->stop) {
		CHECK_EQ(orbit_restart(r->ob), 0);
		r->restarts++;
		check_sleep_ms(1);
	}
	return NULL;
}

/* Sync calls from two threads and a restart every millisecond, for 3 s:
 * every thread keeps making progress (a hang is killed by the child's
 * timeout and fails the test). */
static void restart_race(void)
{
	struct race r = { 0 };
	pthread_t c[2], s;
	long last_calls = -1, last_restarts = -1;

	r.ob = orbit_create("race", entry, NULL, NULL);
	REQUIRE(r.ob != NULL);
	pthread_create(&c[0], NULL, race_caller, &r);
	pthread_create(&c[1], NULL, race_caller, &r);
	pthread_create(&s, NULL, race_restarter, &r);
	for (int i = 0; i < 6; i++) {
		check_sleep_ms(500);
		CHECK(r.calls > last_calls);
		CHECK(r.restarts > last_restarts);
		if (r.calls == last_calls || r.restarts == last_restarts) {
			fprintf(stderr, "no progress: %ld calls, %ld restarts\n", r.calls,
				r.restarts);
			_exit(1);	/* threads are stuck: joining would hang */
		}
		last_calls = r.calls;
		last_restarts = r.restarts;
	}
	r.stop = 1;
	pthread_join(c[0], NULL);
	pthread_join(c[1], NULL);
	pthread_join(s, NULL);
	orbit_destroy(r.ob);
}

static void test_restart_races_calls(void)
{
	CHECK_CHILD(restart_race, 20000);
}

int main(void)
{
	check_watchdog(55);
	RUN(test_answers_survive_crash_noticed_by_async_call);
	RUN(test_answers_survive_crash_noticed_by_sync_call);
	RUN(test_answers_survive_restart);
	RUN(test_restart_races_calls);
	return CHECK_DONE();
}
