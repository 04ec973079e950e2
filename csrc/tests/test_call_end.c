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

/* ------------------------------------------------------------ cancelling */

static struct orbit_future *submit_slow(struct orbit *ob, long n, int sleep_ms)
{
	struct job j = { n, 0, sleep_ms };

	return orbit_call_async(ob, 0, 0, NULL, NULL, &j, sizeof(j));
}

/* A queued call is cancelled at once and never runs, so it holds up nobody. */
static void test_cancel_queued_call(void)
{
	struct orbit *ob = orbit_create("cq", entry, NULL, NULL);
	struct orbit_future *f1, *f2, *f3;
	struct orbit_stats st;
	void *d = NULL;
	size_t len = 0;
	uint64_t t0;
	long ret = -1;

	REQUIRE(ob != NULL);
	f1 = submit_slow(ob, 1, 300);
	f2 = submit_slow(ob, 2, 30000);
	f3 = submit(ob, 3, 0);
	REQUIRE(f1 && f2 && f3);
	t0 = check_now_ms();
	CHECK_EQ(orbit_future_cancel(f2, 0), 1);
	CHECK(orbit_future_done(f2));
	CHECK_EQ(orbit_future_get(f2, &ret), -ORBIT_E_CANCELLED);
	CHECK_EQ(orbit_pull(f2, 0, &d, &len), 0);	/* ended, nothing pushed */
	CHECK_EQ(orbit_future_cancel(f2, 0), 0);	/* already ended */
	check_answered(f1, 1);
	check_answered(f3, 3);
	CHECK(check_now_ms() - t0 < 15000);		/* call 2 never ran */
	orbit_stats(ob, &st);
	CHECK_EQ(st.calls, 2);
	CHECK_EQ(st.cancelled, 1);
	CHECK_EQ(st.failed, 1);
	CHECK_EQ(st.restarts, 0);
	orbit_future_release(f1);
	orbit_future_release(f2);
	orbit_future_release(f3);
	orbit_destroy(ob);
}

/* The oldest call may be running: left alone unless killing is asked. */
static void test_cancel_running_call_needs_kill(void)
{
	struct orbit *ob = orbit_create("cr", entry, NULL, NULL);
	struct orbit_future *f1;
	long ret = -1;

	REQUIRE(ob != NULL);
	f1 = submit_slow(ob, 1, 200);
	REQUIRE(f1 != NULL);
	CHECK_EQ(orbit_future_cancel(f1, 0), 0);
	check_answered(f1, 1);
	CHECK_EQ(orbit_future_cancel(f1, ORBIT_CANCEL_KILL), 0);	/* finished */
	CHECK_EQ(orbit_future_get(f1, &ret), 0);
	orbit_future_release(f1);
	orbit_destroy(ob);
}

/* A call with an area, queued behind the given future. */
static struct orbit_future *submit_area(struct orbit *ob, struct orbit_area *a, long n)
{
	struct job j = { n, 0, 0 };

	return orbit_call_async(ob, 0, 1, &a, NULL, &j, sizeof(j));
}

/* Killing for a cancel: the call fails CANCELLED and the orbit restarts at
 * once.  Calls queued behind it without areas run on the new process, in
 * order, unwaited-for; a call with an area (its snapshot went with the
 * process) fails ABORTED, saying why. */
static void test_cancel_running_call_kills(void)
{
	struct orbit_area *a = check_area(orbit_page_size(), "auto");
	struct orbit *ob = orbit_create("ck", entry, NULL, NULL);
	struct orbit_future *f1, *f2, *f3, *f4;
	struct orbit_stats st;
	pid_t pid;
	long ret = -1;

	REQUIRE(a && ob);
	f1 = submit_slow(ob, 1, 30000);
	f2 = submit(ob, 2, 0);
	f3 = submit_area(ob, a, 3);
	f4 = submit(ob, 4, 0);
	REQUIRE(f1 && f2 && f3 && f4);
	pid = orbit_future_pid(f1);
	CHECK_EQ(orbit_future_cancel(f1, ORBIT_CANCEL_KILL), 1);
	CHECK(check_wait_dead(pid, 5000));
	CHECK_EQ(orbit_future_get(f1, &ret), -ORBIT_E_CANCELLED);
	CHECK_EQ(orbit_future_cause(f1), 0);
	CHECK_EQ(orbit_future_get(f3, &ret), -ORBIT_E_ABORTED);
	CHECK_EQ(orbit_future_cause(f3), -ORBIT_E_CANCELLED);
	check_answered(f4, 4);
	check_answered(f2, 2);
	CHECK(orbit_future_pid(f2) != pid && orbit_future_pid(f2) == orbit_pid(ob));
	CHECK(orbit_future_seq(f4) > orbit_future_seq(f2));
	orbit_future_release(f1);
	orbit_future_release(f2);
	orbit_future_release(f3);
	orbit_future_release(f4);
	f1 = submit(ob, 5, 0);
	REQUIRE(f1 != NULL);
	check_answered(f1, 5);
	orbit_future_release(f1);
	orbit_stats(ob, &st);
	CHECK_EQ(st.crashes, 0);
	CHECK_EQ(st.crashes_in_row, 0);
	CHECK_EQ(st.restarts, 1);
	CHECK_EQ(st.cancelled, 1);
	CHECK_EQ(st.failed, 2);
	CHECK_EQ(st.calls, 3);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* A requeued call can be cancelled before it is sent again; closing the
 * orbit fails requeued calls as closed. */
static void test_cancel_requeued_call(void)
{
	struct orbit *ob = orbit_create("ck2", entry, NULL, NULL);
	struct orbit_future *f1, *f2;
	long ret = -1;

	REQUIRE(ob != NULL);
	f1 = submit_slow(ob, 1, 30000);
	f2 = submit_slow(ob, 2, 30000);
	REQUIRE(f1 && f2);
	CHECK_EQ(orbit_future_cancel(f1, ORBIT_CANCEL_KILL), 1);
	/* f2 was sent again, and now runs (or is about to) */
	CHECK_EQ(orbit_future_cancel(f2, ORBIT_CANCEL_KILL), 1);
	CHECK_EQ(orbit_future_get(f2, &ret), -ORBIT_E_CANCELLED);
	orbit_future_release(f1);
	orbit_future_release(f2);
	orbit_destroy(ob);
}

struct waiter {
	struct orbit_future *f;
	int rc;
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;
	long ret;

	w->rc = orbit_future_get(w->f, &ret);
	return NULL;
}

/* Another thread is reading the orbit's channel when the call is cancelled:
 * it finds the channel closed, and the call still fails as cancelled (not as
 * a crash). */
static void test_cancel_while_another_thread_waits(void)
{
	struct orbit *ob = orbit_create("cw", entry, NULL, NULL);
	struct waiter w = { 0 };
	struct orbit_stats st;
	pthread_t t;

	REQUIRE(ob != NULL);
	w.f = submit_slow(ob, 1, 30000);
	REQUIRE(w.f != NULL);
	REQUIRE(pthread_create(&t, NULL, wait_thread, &w) == 0);
	check_sleep_ms(200);	/* the thread is inside pull() */
	CHECK_EQ(orbit_future_cancel(w.f, ORBIT_CANCEL_KILL), 1);
	pthread_join(t, NULL);
	CHECK_EQ(w.rc, -ORBIT_E_CANCELLED);
	orbit_stats(ob, &st);
	CHECK_EQ(st.crashes, 0);
	CHECK_EQ(st.cancelled, 1);
	orbit_future_release(w.f);
	orbit_destroy(ob);
}

/* ------------------------------------------------------ per-call timeout */

/* A call's own timeout kills it; a call queued behind it with an area says
 * why it did not run, one without runs; calls without a timeout are not
 * limited. */
static void test_per_call_timeout(void)
{
	struct orbit_area *a = check_area(orbit_page_size(), "auto");
	struct orbit *ob = orbit_create("pt", entry, NULL, NULL);
	struct orbit_future *f0, *f1, *f2, *f3;
	struct orbit_stats st;
	uint64_t t0;
	long ret = -1;

	REQUIRE(a && ob);
	f0 = submit_slow(ob, 0, 300);	/* no timeout: runs 300 ms */
	REQUIRE(f0 != NULL);
	check_answered(f0, 0);
	orbit_future_release(f0);
	t0 = check_now_ms();
	f1 = submit_slow(ob, 1, 30000);
	f2 = submit_area(ob, a, 2);
	f3 = submit(ob, 3, 0);
	REQUIRE(f1 && f2 && f3);
	CHECK_EQ(orbit_future_set_timeout(f1, 200), 0);
	CHECK_EQ(orbit_future_set_timeout(f1, -1), -EINVAL);
	check_answered(f3, 3);
	CHECK_EQ(orbit_future_get(f2, &ret), -ORBIT_E_ABORTED);
	CHECK_EQ(orbit_future_cause(f2), -ORBIT_E_TIMEOUT);
	CHECK_EQ(orbit_future_get(f1, &ret), -ORBIT_E_TIMEOUT);
	CHECK(check_now_ms() - t0 < 15000);
	orbit_future_release(f1);
	orbit_future_release(f2);
	orbit_future_release(f3);
	orbit_stats(ob, &st);
	CHECK_EQ(st.timeouts, 1);
	CHECK_EQ(st.failed, 2);
	CHECK_EQ(st.crashes, 0);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* A per-call timeout overrides the orbit's, longer or shorter. */
static void test_per_call_timeout_overrides_orbit(void)
{
	struct orbit_options o;
	struct orbit *ob;
	struct orbit_future *f;
	long ret = -1;

	orbit_options_init(&o);
	o.timeout_ms = 100;
	ob = orbit_create("pt2", entry, NULL, &o);
	REQUIRE(ob != NULL);
	f = submit_slow(ob, 1, 400);
	REQUIRE(f != NULL);
	CHECK_EQ(orbit_future_set_timeout(f, 20000), 0);
	check_answered(f, 1);
	orbit_future_release(f);
	f = submit_slow(ob, 2, 400);
	REQUIRE(f != NULL);
	CHECK_EQ(orbit_future_get(f, &ret), -ORBIT_E_TIMEOUT);
	orbit_future_release(f);
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
	RUN(test_cancel_queued_call);
	RUN(test_cancel_running_call_needs_kill);
	RUN(test_cancel_running_call_kills);
	RUN(test_cancel_requeued_call);
	RUN(test_cancel_while_another_thread_waits);
	RUN(test_per_call_timeout);
	RUN(test_per_call_timeout_overrides_orbit);
	RUN(test_restart_races_calls);
	return CHECK_DONE();
}
