/*
 * test_faults.c - an orbit that dies, hangs or eats memory: the error each
 * call gets, the wait status, the restart policy, timeouts, orbit_restart and
 * memory limits.  (An orbit's SIGSEGV with an area of the userspace backend's
 * mprotect mode, whose handler main installs: user/test_modes.c.)
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "check.h"
#include "orbit.h"
#include "scenario_restart_idle.h"

#define PG orbit_page_size()

enum { OK = 0, SEGV_RAISE, SEGV_REAL, ABORT, EXIT3, LOOP, SLEEP, MALLOC };

struct what {
	int how;
	long arg;
};

static long entry(void *arg, size_t argsize, void *store)
{
	const struct what *w = arg;

	(void)store;
	if (argsize != sizeof(*w))
		return -1;
	switch (w->how) {
	case SEGV_RAISE:
		raise(SIGSEGV);
		break;
	case SEGV_REAL: {
		volatile char *p = mmap(NULL, PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p != MAP_FAILED)
			p[0] = 1;
		break;
	}
	case ABORT:
		abort();
	case EXIT3:
		_exit(3);
	case LOOP:
		for (volatile unsigned long i = 0;; i++)
			;
	case SLEEP:
		check_sleep_ms((unsigned)w->arg);
		break;
	case MALLOC: {
		/* 1: allocation failed, 2: succeeded (and was touched) */
		char *p = malloc((size_t)w->arg);

		if (!p)
			return 1;
		memset(p, 1, (size_t)w->arg);
		free(p);
		return 2;
	}
	}
	return w->arg;
}

static int call(struct orbit *ob, int how, long arg, long *ret)
{
	struct what w = { how, arg };
	long r;

	return orbit_call(ob, 0, NULL, NULL, &w, sizeof(w), ret ? ret : &r);
}

/* Run `how` asynchronously; return the error and the wait status. */
static int call_status(struct orbit *ob, int how, int *status)
{
	struct what w = { how, 0 };
	struct orbit_future *f = orbit_call_async(ob, 0, 0, NULL, NULL, &w, sizeof(w));
	pid_t pid = orbit_pid(ob);
	long ret;
	int rc;

	if (!f)
		return -errno;
	CHECK_EQ(orbit_future_pid(f), pid);	/* the process it was sent to */
	rc = orbit_future_get(f, &ret);
	*status = orbit_future_status(f);
	CHECK_EQ(orbit_future_pid(f), pid);	/* still, after it died */
	orbit_future_release(f);
	return rc;
}

static struct orbit *mk(const char *name, const struct orbit_options *o)
{
	return orbit_create(name, entry, NULL, o);
}

/* -------------------------------------------------------------- crashes */

static void crash_case(int how, int want_sig, int want_exit)
{
	struct orbit *ob = mk("crash", NULL);
	struct orbit_stats st;
	int status = 0;
	long ret = -1;
	pid_t pid;

	REQUIRE(ob != NULL);
	CHECK_EQ(call(ob, OK, 1, &ret), 0);
	pid = orbit_pid(ob);
	CHECK(pid > 0);
	CHECK_EQ(call_status(ob, how, &status), -ORBIT_E_CRASHED);
	if (want_sig) {
		CHECK(WIFSIGNALED(status));
		CHECK_EQ(WTERMSIG(status), want_sig);
	} else {
		CHECK(WIFEXITED(status));
		CHECK_EQ(WEXITSTATUS(status), want_exit);
	}
	CHECK_EQ(orbit_pid(ob), 0);
	orbit_stats(ob, &st);
	CHECK_EQ(st.crashes, 1);
	CHECK_EQ(st.crashes_in_row, 1);
	CHECK_EQ(st.restarts, 0);
	/* The next call starts a new process. */
	CHECK_EQ(call(ob, OK, 5, &ret), 0);
	CHECK_EQ(ret, 5);
	CHECK(orbit_pid(ob) > 0 && orbit_pid(ob) != pid);
	orbit_stats(ob, &st);
	CHECK_EQ(st.restarts, 1);
	CHECK_EQ(st.calls, 2);
	CHECK_EQ(st.crashes_in_row, 0);	/* a success resets it */
	orbit_destroy(ob);
}

static void test_crash_raise_segv(void) { crash_case(SEGV_RAISE, SIGSEGV, 0); }
static void test_crash_real_segv(void) { crash_case(SEGV_REAL, SIGSEGV, 0); }
static void test_crash_abort(void) { crash_case(ABORT, SIGABRT, 0); }
static void test_crash_exit(void) { crash_case(EXIT3, 0, 3); }

/* Calls queued behind the one that crashed fail too. */
static void test_crash_fails_queued(void)
{
	struct orbit *ob = mk("crashq", NULL);
	struct what bad = { ABORT, 0 }, good = { OK, 4 };
	struct orbit_future *f1, *f2, *f3;
	long ret;

	REQUIRE(ob != NULL);
	f1 = orbit_call_async(ob, 0, 0, NULL, NULL, &bad, sizeof(bad));
	f2 = orbit_call_async(ob, 0, 0, NULL, NULL, &good, sizeof(good));
	f3 = orbit_call_async(ob, 0, 0, NULL, NULL, &good, sizeof(good));
	REQUIRE(f1 && f2 && f3);
	CHECK_EQ(orbit_future_get(f3, &ret), -ORBIT_E_CRASHED);
	CHECK_EQ(orbit_future_get(f1, &ret), -ORBIT_E_CRASHED);
	CHECK_EQ(orbit_future_get(f2, &ret), -ORBIT_E_CRASHED);
	CHECK_EQ(WTERMSIG(orbit_future_status(f1)), SIGABRT);
	orbit_future_release(f1);
	orbit_future_release(f2);
	orbit_future_release(f3);
	CHECK_EQ(call(ob, OK, 6, &ret), 0);
	CHECK_EQ(ret, 6);
	orbit_destroy(ob);
}

/* Killed from outside while idle: the next call restarts it silently. */
static void test_killed_while_idle(void)
{
	struct orbit *ob = mk("killed", NULL);
	struct orbit_stats st;
	long ret = -1;
	pid_t pid;

	REQUIRE(ob != NULL);
	CHECK_EQ(call(ob, OK, 1, &ret), 0);
	pid = orbit_pid(ob);
	REQUIRE(pid > 0);
	kill(pid, SIGKILL);
	CHECK(check_wait_dead(pid, 3000));
	CHECK_EQ(call(ob, OK, 2, &ret), 0);
	CHECK_EQ(ret, 2);
	CHECK(orbit_pid(ob) != pid);
	orbit_stats(ob, &st);
	CHECK_EQ(st.crashes, 1);
	CHECK_EQ(st.restarts, 1);
	orbit_destroy(ob);
}

/* ------------------------------------------------------ restart policy */

static void test_no_restart(void)
{
	struct orbit_options o;
	struct orbit *ob;
	long ret;

	orbit_options_init(&o);
	o.restart = 0;
	ob = mk("norestart", &o);
	REQUIRE(ob != NULL);
	CHECK_EQ(call(ob, OK, 1, &ret), 0);
	CHECK_EQ(call(ob, SEGV_RAISE, 0, &ret), -ORBIT_E_CRASHED);
	CHECK_EQ(call(ob, OK, 1, &ret), -ORBIT_E_CLOSED);
	errno = 0;
	CHECK(orbit_call_async(ob, 0, 0, NULL, NULL, NULL, 0) == NULL);
	CHECK_EQ(errno, ORBIT_E_CLOSED);
	CHECK_EQ(orbit_pid(ob), 0);
	orbit_destroy(ob);
}

/*
 * orbit.h: orbit_restart "... and the next call starts a new process
 * (whatever the restart policy says)".  So it revives an orbit whose policy
 * said no more restarts.
 */
static void test_restart_overrides_policy(void)
{
	struct orbit_options o;
	struct orbit *ob;
	long ret = -1;

	orbit_options_init(&o);
	o.restart = 0;
	ob = mk("revive", &o);
	REQUIRE(ob != NULL);
	CHECK_EQ(call(ob, ABORT, 0, &ret), -ORBIT_E_CRASHED);
	CHECK_EQ(call(ob, OK, 1, &ret), -ORBIT_E_CLOSED);
	CHECK_EQ(orbit_restart(ob), 0);
	CHECK_EQ(call(ob, OK, 8, &ret), 0);
	CHECK_EQ(ret, 8);
	orbit_destroy(ob);

	orbit_options_init(&o);
	o.restart_limit = 0;
	o.backoff_ms = 1;
	ob = mk("revive2", &o);
	REQUIRE(ob != NULL);
	CHECK_EQ(call(ob, ABORT, 0, &ret), -ORBIT_E_CRASHED);
	CHECK_EQ(call(ob, OK, 1, &ret), -ORBIT_E_RESTART_LIMIT);
	CHECK_EQ(orbit_restart(ob), 0);
	CHECK_EQ(call(ob, OK, 9, &ret), 0);
	CHECK_EQ(ret, 9);
	orbit_destroy(ob);
}

static void test_restart_limit(void)
{
	struct orbit_options o;
	struct orbit_stats st;
	struct orbit *ob;
	long ret;

	orbit_options_init(&o);
	o.restart_limit = 2;
	o.backoff_ms = 1;
	ob = mk("limit", &o);
	REQUIRE(ob != NULL);
	/* 2 crashes in a row are tolerated... */
	CHECK_EQ(call(ob, ABORT, 0, &ret), -ORBIT_E_CRASHED);
	CHECK_EQ(call(ob, ABORT, 0, &ret), -ORBIT_E_CRASHED);
	/* ...a success resets the count... */
	CHECK_EQ(call(ob, OK, 1, &ret), 0);
	CHECK_EQ(call(ob, ABORT, 0, &ret), -ORBIT_E_CRASHED);
	CHECK_EQ(call(ob, ABORT, 0, &ret), -ORBIT_E_CRASHED);
	/* ...the third in a row is not. */
	CHECK_EQ(call(ob, ABORT, 0, &ret), -ORBIT_E_CRASHED);
	orbit_stats(ob, &st);
	CHECK_EQ(st.crashes_in_row, 3);
	CHECK_EQ(call(ob, OK, 1, &ret), -ORBIT_E_RESTART_LIMIT);
	errno = 0;
	CHECK(orbit_call_async(ob, 0, 0, NULL, NULL, NULL, 0) == NULL);
	CHECK_EQ(errno, ORBIT_E_RESTART_LIMIT);
	orbit_stats(ob, &st);
	CHECK_EQ(st.crashes, 5);
	CHECK_EQ(st.restarts, 4);
	CHECK_EQ(st.calls, 1);
	orbit_destroy(ob);
}

static void test_restart_backoff(void)
{
	struct orbit_options o;
	struct orbit *ob;
	uint64_t t0, dt;
	long ret;

	orbit_options_init(&o);
	o.backoff_ms = 100;
	o.max_backoff_ms = 150;
	ob = mk("backoff", &o);
	REQUIRE(ob != NULL);
	/* 1st restart after 100 ms, 2nd after 200 -> capped at 150. */
	CHECK_EQ(call(ob, EXIT3, 0, &ret), -ORBIT_E_CRASHED);
	t0 = check_now_ms();
	CHECK_EQ(call(ob, EXIT3, 0, &ret), -ORBIT_E_CRASHED);
	dt = check_now_ms() - t0;
	CHECK(dt >= 90 && dt < 1000);
	t0 = check_now_ms();
	CHECK_EQ(call(ob, OK, 3, &ret), 0);
	dt = check_now_ms() - t0;
	CHECK(dt >= 140 && dt < 190 + 1000);
	/* After a success, no delay. */
	t0 = check_now_ms();
	CHECK_EQ(call(ob, OK, 3, &ret), 0);
	CHECK(check_now_ms() - t0 < 90);
	orbit_destroy(ob);
}

/* -------------------------------------------------------------- timeouts */

static void test_timeout_kills_loop(void)
{
	struct orbit_options o;
	struct orbit_stats st;
	struct orbit *ob;
	uint64_t t0, dt;
	int status = 0;
	long ret = -1;
	pid_t pid;

	orbit_options_init(&o);
	o.timeout_ms = 200;
	ob = mk("timeout", &o);
	REQUIRE(ob != NULL);
	CHECK_EQ(call(ob, OK, 1, &ret), 0);
	pid = orbit_pid(ob);
	t0 = check_now_ms();
	CHECK_EQ(call_status(ob, LOOP, &status), -ORBIT_E_TIMEOUT);
	dt = check_now_ms() - t0;
	CHECK(dt >= 190 && dt < 1500);
	CHECK(WIFSIGNALED(status));
	CHECK_EQ(WTERMSIG(status), SIGKILL);
	CHECK(check_proc_dead(pid));
	/* Not a crash; the next call gets a new process. */
	CHECK_EQ(call(ob, OK, 2, &ret), 0);
	CHECK_EQ(ret, 2);
	orbit_stats(ob, &st);
	CHECK_EQ(st.crashes, 0);
	CHECK_EQ(st.restarts, 1);
	orbit_destroy(ob);
}

/* The timeout is per call: queued calls do not add up. */
static void test_timeout_per_call(void)
{
	struct orbit_options o;
	struct orbit *ob;
	struct orbit_future *f[3];
	struct what w = { SLEEP, 150 };
	long ret;

	orbit_options_init(&o);
	o.timeout_ms = 400;
	ob = mk("timeout2", &o);
	REQUIRE(ob != NULL);
	for (int i = 0; i < 3; i++) {
		f[i] = orbit_call_async(ob, 0, 0, NULL, NULL, &w, sizeof(w));
		REQUIRE(f[i] != NULL);
	}
	for (int i = 0; i < 3; i++) {
		ret = -1;
		CHECK_EQ(orbit_future_get(f[i], &ret), 0);
		CHECK_EQ(ret, 150);
		orbit_future_release(f[i]);
	}
	orbit_destroy(ob);
}

/* Calls behind one that timed out: with an area (its snapshot went with the
 * process) they fail, saying so; without, they run on the next process. */
static void test_timeout_fails_queued(void)
{
	struct orbit_area *a = check_area(PG, "auto");
	struct orbit_options o;
	struct orbit *ob;
	struct what loop = { LOOP, 0 }, ok = { OK, 3 };
	struct orbit_future *f1, *f2, *f3;
	long ret;

	orbit_options_init(&o);
	o.timeout_ms = 150;
	ob = mk("timeout3", &o);
	REQUIRE(a && ob);
	f1 = orbit_call_async(ob, 0, 0, NULL, NULL, &loop, sizeof(loop));
	f2 = orbit_call_async(ob, 0, 1, &a, NULL, &ok, sizeof(ok));
	f3 = orbit_call_async(ob, 0, 0, NULL, NULL, &ok, sizeof(ok));
	REQUIRE(f1 && f2 && f3);
	CHECK_EQ(orbit_future_get(f2, &ret), -ORBIT_E_ABORTED);
	CHECK_EQ(orbit_future_cause(f2), -ORBIT_E_TIMEOUT);
	CHECK_EQ(orbit_future_get(f1, &ret), -ORBIT_E_TIMEOUT);
	ret = -1;
	CHECK_EQ(orbit_future_get(f3, &ret), 0);
	CHECK_EQ(ret, 3);
	orbit_future_release(f1);
	orbit_future_release(f2);
	orbit_future_release(f3);
	orbit_area_destroy(a);
	CHECK_EQ(call(ob, OK, 3, &ret), 0);
	CHECK_EQ(ret, 3);
	orbit_destroy(ob);
}

/* ---------------------------------------------------------- orbit_restart */

static void test_restart_idle(void)
{
	scenario_restart_idle(NULL);
}

static void test_restart_pending(void)
{
	struct orbit *ob = mk("restart2", NULL);
	struct what slow = { SLEEP, 5000 };
	struct orbit_future *f1, *f2;
	long ret;

	REQUIRE(ob != NULL);
	f1 = orbit_call_async(ob, 0, 0, NULL, NULL, &slow, sizeof(slow));
	f2 = orbit_call_async(ob, 0, 0, NULL, NULL, &slow, sizeof(slow));
	REQUIRE(f1 && f2);
	CHECK_EQ(orbit_restart(ob), 0);
	CHECK(orbit_future_done(f1));
	CHECK_EQ(orbit_future_get(f1, &ret), -ORBIT_E_CRASHED);
	CHECK_EQ(orbit_future_get(f2, &ret), -ORBIT_E_CRASHED);
	CHECK_EQ(WTERMSIG(orbit_future_status(f1)), SIGKILL);
	orbit_future_release(f1);
	orbit_future_release(f2);
	CHECK_EQ(call(ob, OK, 4, &ret), 0);
	CHECK_EQ(ret, 4);
	orbit_destroy(ob);
}

static void *restart_later(void *arg)
{
	check_sleep_ms(100);
	orbit_restart(arg);
	return NULL;
}

/* Another thread restarts the orbit while main waits for its call. */
static void test_restart_from_other_thread(void)
{
	struct orbit *ob = mk("restart3", NULL);
	pthread_t t;
	uint64_t t0;
	long ret;

	REQUIRE(ob != NULL);
	CHECK_EQ(call(ob, OK, 1, &ret), 0);
	REQUIRE(pthread_create(&t, NULL, restart_later, ob) == 0);
	t0 = check_now_ms();
	CHECK_EQ(call(ob, SLEEP, 5000, &ret), -ORBIT_E_CRASHED);
	CHECK(check_now_ms() - t0 < 3000);
	pthread_join(t, NULL);
	CHECK_EQ(call(ob, OK, 2, &ret), 0);
	CHECK_EQ(ret, 2);
	orbit_destroy(ob);
}

/* ---------------------------------------------------------- memory limit */

static void test_memory_limit(void)
{
	struct orbit_options o;
	struct orbit *ob;
	long ret = -1;

	orbit_options_init(&o);
	o.memory_limit = 64 << 20;
	ob = mk("memlimit", &o);
	REQUIRE(ob != NULL);
	CHECK_EQ(call(ob, MALLOC, 1 << 20, &ret), 0);
	CHECK_EQ(ret, 2);
	CHECK_EQ(call(ob, MALLOC, 256 << 20, &ret), 0);
	CHECK_EQ(ret, 1);
	CHECK_EQ(call(ob, MALLOC, 32 << 20, &ret), 0);
	CHECK_EQ(ret, 2);
	orbit_destroy(ob);

	/* Without a limit the same allocation works. */
	ob = mk("nolimit", NULL);
	REQUIRE(ob != NULL);
	CHECK_EQ(call(ob, MALLOC, 256 << 20, &ret), 0);
	CHECK_EQ(ret, 2);
	orbit_destroy(ob);
}

static long entry_touch_area(void *arg, size_t argsize, void *store)
{
	const unsigned char *p = *(unsigned char *const *)arg;
	size_t len = argsize == 2 * sizeof(void *) ? ((size_t *)arg)[1] : 0;
	long s = 0;

	(void)store;
	for (size_t off = 0; off < len; off += PG)
		s += p[off];
	return s;
}

/* The orbit's views of its areas do not count against the limit. */
static void test_memory_limit_excludes_areas(void)
{
	struct orbit_options o;
	struct orbit_area *a = orbit_area_create(128 << 20, "auto");
	struct orbit *ob;
	unsigned char *p;
	void *arg[2];
	long ret = -1;

	REQUIRE(a != NULL);
	orbit_options_init(&o);
	o.memory_limit = 16 << 20;
	ob = orbit_create("memlimit2", entry_touch_area, NULL, &o);
	REQUIRE(ob != NULL);
	p = orbit_area_base(a);
	for (size_t off = PG; off < orbit_area_size(a); off += 1 << 20)
		p[off] = 1;
	arg[0] = p + PG;
	arg[1] = (void *)(uintptr_t)(orbit_area_size(a) - PG);
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, arg, sizeof(arg), &ret), 0);
	CHECK_EQ(ret, 128);
	{
		struct what w = { MALLOC, 64 << 20 };

		CHECK_EQ(orbit_call(ob, 0, NULL, entry, &w, sizeof(w), &ret), 0);
		CHECK_EQ(ret, 1);
	}
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

int main(void)
{
	check_watchdog(55);
	RUN(test_crash_raise_segv);
	RUN(test_crash_real_segv);
	RUN(test_crash_abort);
	RUN(test_crash_exit);
	RUN(test_crash_fails_queued);
	RUN(test_killed_while_idle);
	RUN(test_no_restart);
	RUN(test_restart_limit);
	RUN(test_restart_backoff);
	RUN(test_timeout_kills_loop);
	RUN(test_timeout_per_call);
	RUN(test_timeout_fails_queued);
	RUN(test_restart_idle);
	RUN(test_restart_pending);
	RUN(test_restart_from_other_thread);
	RUN(test_memory_limit);
	RUN(test_memory_limit_excludes_areas);
	RUN(test_restart_overrides_policy);
	return CHECK_DONE();
}
