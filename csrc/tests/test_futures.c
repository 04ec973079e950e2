/*
 * test_futures.c - futures: results, attached data, updates, waiting with a
 * timeout, skipping and cancelling calls, and futures that outlive their
 * orbit.
 */
#include <errno.h>
#include <stdint.h>

#include "check.h"
#include "orbit.h"

#define PG orbit_page_size()

/* ------------------------------------------------------------ entries */

struct job {
	long n;			/* updates to push / value to return */
	long sleep_ms;		/* before doing anything else */
	long sleep2_ms;		/* after pushing "started" */
	char tag;
	int signal_start;	/* push one "started" update first */
};

struct upd {
	char tag;
	long i;
	unsigned char payload[64];
};

static size_t upd_len(long i)
{
	return offsetof(struct upd, payload) + (size_t)(i % 64);
}

static long *counter;	/* in the orbit: calls that ran in this process */

static void *init_counter(void)
{
	counter = calloc(1, sizeof(*counter));
	return counter;
}

static void *init_slow(void)
{
	check_sleep_ms(300);
	return init_counter();
}

static long entry_job(void *arg, size_t argsize, void *store)
{
	const struct job *j = arg;

	if (argsize != sizeof(*j))
		return -1;
	if (store)
		++*(long *)store;
	if (j->sleep_ms)
		check_sleep_ms((unsigned)j->sleep_ms);
	if (j->signal_start)
		orbit_push("started", 7);
	if (j->sleep2_ms)
		check_sleep_ms((unsigned)j->sleep2_ms);
	return store ? *(long *)store * 1000 + j->n : j->n;
}

static long entry_push(void *arg, size_t argsize, void *store)
{
	const struct job *j = arg;

	(void)argsize;
	(void)store;
	if (j->sleep_ms)
		check_sleep_ms((unsigned)j->sleep_ms);
	for (long i = 0; i < j->n; i++) {
		struct upd u;

		u.tag = j->tag;
		u.i = i;
		memset(u.payload, (int)(i & 0xff), sizeof(u.payload));
		if (orbit_push(&u, upd_len(i)) != 0)
			return -2;
	}
	orbit_return_data("done", 4);
	return j->n;
}

static long entry_data(void *arg, size_t argsize, void *store)
{
	long how = *(long *)arg;

	(void)argsize;
	(void)store;
	switch (how) {
	case 0:		/* nothing attached */
		break;
	case 1:		/* attached twice: the last one counts */
		orbit_return_data("first", 5);
		orbit_return_data("second!", 7);
		break;
	case 2:		/* empty */
		orbit_return_data("", 0);
		break;
	case 3: {	/* big: more than the socket buffers hold */
		size_t len = 8u << 20;
		unsigned char *b = malloc(len);

		if (!b)
			return -1;
		for (size_t i = 0; i < len; i++)
			b[i] = (unsigned char)(i * 7 + (i >> 12));
		orbit_return_data(b, len);
		free(b);
		break;
	}
	}
	return orbit_in_orbit() ? how : -100;
}

/* Checksum of a (possibly big) argument. */
static long entry_argsum(void *arg, size_t argsize, void *store)
{
	const unsigned char *a = arg;
	uint64_t s = 0;

	(void)store;
	for (size_t i = 0; i < argsize; i++)
		s = s * 31 + a[i];
	return (long)((s + argsize) >> 1);
}

static struct orbit *mk(const char *name, orbit_entry e, orbit_init init)
{
	return orbit_create(name, e, init, NULL);
}

/* Wait for the "started" update of a job with signal_start. */
static void wait_started(struct orbit_future *f)
{
	void *d = NULL;
	size_t len = 0;

	CHECK_EQ(orbit_pull(f, 10000, &d, &len), 1);
	CHECK(len == 7 && d && !memcmp(d, "started", 7));
	free(d);
}

/* ------------------------------------------------------------ results */

static void test_seq_and_status(void)
{
	struct orbit *ob = mk("seq", entry_job, NULL);
	struct job j = { .n = 5 };
	struct orbit_future *f[3];
	long ret;

	REQUIRE(ob != NULL);
	for (int i = 0; i < 3; i++) {
		f[i] = orbit_call_async(ob, 0, 0, NULL, NULL, &j, sizeof(j));
		REQUIRE(f[i] != NULL);
		CHECK_EQ(orbit_future_seq(f[i]), (uint64_t)i + 1);
	}
	for (int i = 0; i < 3; i++) {
		ret = -1;
		CHECK_EQ(orbit_future_get(f[i], &ret), 0);
		CHECK_EQ(ret, 5);
		CHECK(orbit_future_done(f[i]));
		CHECK_EQ(orbit_future_status(f[i]), 0);
		CHECK_EQ(orbit_future_get(f[i], NULL), 0);	/* again, no ret */
		orbit_future_release(f[i]);
	}
	orbit_destroy(ob);
}

static void test_arg_validation(void)
{
	struct orbit *ob = mk("args", entry_job, NULL);
	struct orbit_area *many[65];
	struct job j = { 0 };

	REQUIRE(ob != NULL);
	errno = 0;
	CHECK(orbit_create("x", NULL, NULL, NULL) == NULL);
	CHECK_EQ(errno, EINVAL);
	errno = 0;
	CHECK(orbit_call_async(NULL, 0, 0, NULL, NULL, NULL, 0) == NULL);
	CHECK_EQ(errno, EINVAL);
	errno = 0;
	CHECK(orbit_call_async(ob, 0, 1, NULL, NULL, NULL, 0) == NULL);
	CHECK_EQ(errno, EINVAL);
	errno = 0;
	CHECK(orbit_call_async(ob, 0, 0, NULL, NULL, NULL, 8) == NULL);
	CHECK_EQ(errno, EINVAL);
	for (int i = 0; i < 65; i++)
		many[i] = NULL;
	errno = 0;
	CHECK(orbit_call_async(ob, 0, 1, many, NULL, &j, sizeof(j)) == NULL);
	CHECK_EQ(errno, EINVAL);
	errno = 0;
	CHECK(orbit_call_async(ob, 0, 65, many, NULL, &j, sizeof(j)) == NULL);
	CHECK_EQ(errno, E2BIG);
	CHECK_EQ(orbit_pid(ob), 0);	/* nothing started for bad calls */
	CHECK_EQ(orbit_destroy(NULL), -EINVAL);
	orbit_destroy(ob);
}

static void test_strerror(void)
{
	static const int codes[] = { ORBIT_E_CRASHED, ORBIT_E_TIMEOUT, ORBIT_E_CLOSED,
				     ORBIT_E_RESTART_LIMIT, ORBIT_E_SKIPPED,
				     ORBIT_E_CANCELLED };

	for (int i = 0; i < 6; i++) {
		const char *s = orbit_strerror(-codes[i]);

		CHECK(s && *s);
		CHECK(s == orbit_strerror(codes[i]));
		for (int k = 0; k < i; k++)
			CHECK(strcmp(s, orbit_strerror(codes[k])) != 0);
	}
	CHECK(!strcmp(orbit_strerror(-ENOMEM), strerror(ENOMEM)));
}

/* ------------------------------------------------------- attached data */

static void test_return_data(void)
{
	struct orbit *ob = mk("data", entry_data, NULL);
	struct orbit_future *f;
	const void *d;
	size_t len;
	long how, ret;

	REQUIRE(ob != NULL);
	/* Outside an orbit there is no call to attach to. */
	CHECK_EQ(orbit_return_data("x", 1), -EPERM);
	CHECK_EQ(orbit_push("x", 1), -EPERM);
	CHECK(!orbit_in_orbit());

	for (how = 0; how <= 3; how++) {
		f = orbit_call_async(ob, 0, 0, NULL, NULL, &how, sizeof(how));
		REQUIRE(f != NULL);
		ret = -1;
		CHECK_EQ(orbit_future_get(f, &ret), 0);
		CHECK_EQ(ret, how);
		len = 12345;
		d = orbit_future_data(f, &len);
		switch (how) {
		case 0:
		case 2:
			CHECK_EQ(len, 0);
			CHECK(d == NULL);
			break;
		case 1:
			CHECK_EQ(len, 7);
			CHECK(d && !memcmp(d, "second!", 7));
			break;
		case 3: {
			const unsigned char *b = d;
			size_t bad = 0;

			CHECK_EQ(len, 8u << 20);
			for (size_t i = 0; b && i < len; i++)
				bad += b[i] != (unsigned char)(i * 7 + (i >> 12));
			CHECK(b != NULL);
			CHECK_EQ(bad, 0);
			break;
		}
		}
		orbit_future_release(f);
	}
	/* Data of one call does not leak into the next. */
	how = 0;
	f = orbit_call_async(ob, 0, 0, NULL, NULL, &how, sizeof(how));
	REQUIRE(f != NULL);
	CHECK_EQ(orbit_future_get(f, &ret), 0);
	d = orbit_future_data(f, &len);
	CHECK_EQ(len, 0);
	orbit_future_release(f);
	orbit_destroy(ob);
}

static void test_big_argument(void)
{
	struct orbit *ob = mk("bigarg", entry_argsum, NULL);
	size_t len = 8u << 20;
	unsigned char *a = malloc(len);
	long ret = 0, expect;

	REQUIRE(ob && a);
	for (size_t i = 0; i < len; i++)
		a[i] = (unsigned char)(i ^ (i >> 9));
	expect = entry_argsum(a, len, NULL);
	CHECK_EQ(orbit_call(ob, 0, NULL, NULL, a, len, &ret), 0);
	CHECK_EQ(ret, expect);
	/* and a zero-length one */
	CHECK_EQ(orbit_call(ob, 0, NULL, NULL, NULL, 0, &ret), 0);
	CHECK_EQ(ret, 0);
	free(a);
	orbit_destroy(ob);
}

/* ------------------------------------------------------------ updates */

static void check_updates(struct orbit_future *f, char tag, long n)
{
	long bad = 0;

	for (long i = 0; i < n; i++) {
		void *d = NULL;
		size_t len = 0;
		const struct upd *u;

		if (orbit_pull(f, 10000, &d, &len) != 1) {
			CHECK(!"update missing");
			return;
		}
		u = d;
		if (len != upd_len(i) || u->tag != tag || u->i != i)
			bad++;
		else
			for (size_t k = 0; k < (size_t)(i % 64); k++)
				bad += u->payload[k] != (unsigned char)(i & 0xff);
		free(d);
	}
	CHECK_EQ(bad, 0);
}

static void test_pull_order(void)
{
	struct orbit *ob = mk("pull", entry_push, NULL);
	struct job j = { .n = 500, .tag = 'a' };
	struct orbit_future *f;
	void *d = (void *)1;
	size_t len = 1;
	long ret = -1;

	REQUIRE(ob != NULL);
	f = orbit_call_async(ob, 0, 0, NULL, NULL, &j, sizeof(j));
	REQUIRE(f != NULL);
	check_updates(f, 'a', j.n);
	CHECK_EQ(orbit_pull(f, 10000, &d, &len), 0);	/* the call has ended */
	CHECK_EQ(orbit_pull(f, 0, &d, &len), 0);	/* and stays ended */
	CHECK_EQ(orbit_future_get(f, &ret), 0);
	CHECK_EQ(ret, j.n);
	{
		const void *data = orbit_future_data(f, &len);

		CHECK_EQ(len, 4);
		CHECK(data && !memcmp(data, "done", 4));
	}
	orbit_future_release(f);
	orbit_destroy(ob);
}

/* Updates wait in the future until pulled, also after the result. */
static void test_pull_after_get(void)
{
	struct orbit *ob = mk("pull2", entry_push, NULL);
	struct job j = { .n = 100, .tag = 'b' };
	struct orbit_future *f;
	void *d;
	size_t len;
	long ret = -1;

	REQUIRE(ob != NULL);
	f = orbit_call_async(ob, 0, 0, NULL, NULL, &j, sizeof(j));
	REQUIRE(f != NULL);
	CHECK_EQ(orbit_future_get(f, &ret), 0);
	CHECK_EQ(ret, 100);
	check_updates(f, 'b', j.n);
	CHECK_EQ(orbit_pull(f, 0, &d, &len), 0);
	orbit_future_release(f);
	orbit_destroy(ob);
}

/* Each call's updates go to its own future, whoever pulls first. */
static void test_pull_routes_per_future(void)
{
	struct orbit *ob = mk("pull3", entry_push, NULL);
	struct job j1 = { .n = 50, .tag = 'x' }, j2 = { .n = 70, .tag = 'y' };
	struct orbit_future *f1, *f2;
	void *d;
	size_t len;

	REQUIRE(ob != NULL);
	f1 = orbit_call_async(ob, 0, 0, NULL, NULL, &j1, sizeof(j1));
	f2 = orbit_call_async(ob, 0, 0, NULL, NULL, &j2, sizeof(j2));
	REQUIRE(f1 && f2);
	check_updates(f2, 'y', j2.n);
	CHECK_EQ(orbit_pull(f2, 10000, &d, &len), 0);
	CHECK(orbit_future_done(f1));
	check_updates(f1, 'x', j1.n);
	CHECK_EQ(orbit_pull(f1, 10000, &d, &len), 0);
	orbit_future_release(f1);
	orbit_future_release(f2);
	orbit_destroy(ob);
}

static void test_pull_timeout(void)
{
	struct orbit *ob = mk("pull4", entry_push, NULL);
	struct job j = { .n = 1, .tag = 't', .sleep_ms = 300 };
	struct orbit_future *f;
	void *d = NULL;
	size_t len;
	uint64_t t0;

	REQUIRE(ob != NULL);
	f = orbit_call_async(ob, 0, 0, NULL, NULL, &j, sizeof(j));
	REQUIRE(f != NULL);
	t0 = check_now_ms();
	CHECK_EQ(orbit_pull(f, 50, &d, &len), -ETIMEDOUT);
	CHECK(check_now_ms() - t0 >= 45);
	CHECK(check_now_ms() - t0 < 250);
	CHECK_EQ(orbit_pull(f, 0, &d, &len), -ETIMEDOUT);
	check_updates(f, 't', 1);
	CHECK_EQ(orbit_pull(f, 10000, &d, &len), 0);
	orbit_future_release(f);
	orbit_destroy(ob);
}

/* A future released before its updates were pulled frees them (LSan). */
static void test_released_future_drops_updates(void)
{
	struct orbit *ob = mk("pull5", entry_push, NULL);
	struct job j = { .n = 200, .tag = 'r' };
	struct orbit_future *f;
	long ret;

	REQUIRE(ob != NULL);
	f = orbit_call_async(ob, 0, 0, NULL, NULL, &j, sizeof(j));
	REQUIRE(f != NULL);
	orbit_future_release(f);	/* still pending */
	j.n = 3;
	CHECK_EQ(orbit_call(ob, 0, NULL, NULL, &j, sizeof(j), &ret), 0);
	CHECK_EQ(ret, 3);
	/* and one released after completion, updates unread */
	f = orbit_call_async(ob, 0, 0, NULL, NULL, &j, sizeof(j));
	REQUIRE(f != NULL);
	CHECK_EQ(orbit_future_get(f, &ret), 0);
	orbit_future_release(f);
	orbit_destroy(ob);
}

/* -------------------------------------------------------------- waits */

static void test_wait_timeout(void)
{
	struct orbit *ob = mk("wait", entry_job, NULL);
	struct job j = { .n = 7, .sleep_ms = 400 };
	struct orbit_future *f;
	long ret = -1;
	uint64_t t0;

	REQUIRE(ob != NULL);
	f = orbit_call_async(ob, 0, 0, NULL, NULL, &j, sizeof(j));
	REQUIRE(f != NULL);
	t0 = check_now_ms();
	CHECK_EQ(orbit_future_wait(f, 0, &ret), -ETIMEDOUT);
	CHECK_EQ(orbit_future_wait(f, 100, &ret), -ETIMEDOUT);
	CHECK(check_now_ms() - t0 >= 95);
	CHECK(check_now_ms() - t0 < 350);
	CHECK(!orbit_future_done(f));
	CHECK_EQ(ret, -1);
	CHECK_EQ(orbit_future_wait(f, 10000, &ret), 0);
	CHECK_EQ(ret, 7);
	CHECK(check_now_ms() - t0 >= 300);
	ret = -1;
	CHECK_EQ(orbit_future_wait(f, 0, &ret), 0);	/* done: no wait */
	CHECK_EQ(ret, 7);
	orbit_future_release(f);
	/* The orbit is fine afterwards. */
	j.sleep_ms = 0;
	CHECK_EQ(orbit_call(ob, 0, NULL, NULL, &j, sizeof(j), &ret), 0);
	CHECK_EQ(ret, 7);
	orbit_destroy(ob);
}

/* ------------------------------------------------- skipping, cancelling */

static void test_skip_if_busy(void)
{
	struct orbit *ob = mk("skip", entry_job, NULL);
	struct job slow = { .n = 1, .sleep_ms = 200 }, quick = { .n = 2 };
	struct orbit_future *f, *g;
	struct orbit_stats st;
	long ret = -1;

	REQUIRE(ob != NULL);
	/* Idle orbit: not skipped. */
	g = orbit_call_async(ob, ORBIT_CALL_SKIP_IF_BUSY, 0, NULL, NULL, &quick, sizeof(quick));
	REQUIRE(g != NULL);
	CHECK_EQ(orbit_future_get(g, &ret), 0);
	CHECK_EQ(ret, 2);
	orbit_future_release(g);

	f = orbit_call_async(ob, 0, 0, NULL, NULL, &slow, sizeof(slow));
	REQUIRE(f != NULL);
	for (int i = 0; i < 3; i++) {
		errno = 0;
		g = orbit_call_async(ob, ORBIT_CALL_SKIP_IF_BUSY, 0, NULL, NULL, &quick,
				     sizeof(quick));
		CHECK(g == NULL);
		CHECK_EQ(errno, ORBIT_E_SKIPPED);
		if (g)
			orbit_future_release(g);
	}
	CHECK_EQ(orbit_future_get(f, &ret), 0);
	CHECK_EQ(ret, 1);
	orbit_future_release(f);

	/* Idle again: accepted, and skipped calls took no sequence number. */
	g = orbit_call_async(ob, ORBIT_CALL_SKIP_IF_BUSY, 0, NULL, NULL, &quick, sizeof(quick));
	REQUIRE(g != NULL);
	CHECK_EQ(orbit_future_seq(g), 3);
	CHECK_EQ(orbit_future_get(g, &ret), 0);
	CHECK_EQ(ret, 2);
	orbit_future_release(g);
	orbit_stats(ob, &st);
	CHECK_EQ(st.calls, 3);
	orbit_destroy(ob);
}

/* The running call finishes; the queued ones are cancelled at once. */
static void test_cancel_queued(void)
{
	struct orbit *ob = mk("cancel", entry_job, init_counter);
	struct job run = { .n = 1, .signal_start = 1, .sleep2_ms = 200 };
	struct job q = { .n = 2 }, last = { .n = 4 };
	struct orbit_future *f1, *f2, *f3, *f4;
	struct orbit_stats st;
	long ret = -1;

	REQUIRE(ob != NULL);
	f1 = orbit_call_async(ob, 0, 0, NULL, NULL, &run, sizeof(run));
	REQUIRE(f1 != NULL);
	wait_started(f1);
	f2 = orbit_call_async(ob, 0, 0, NULL, NULL, &q, sizeof(q));
	f3 = orbit_call_async(ob, 0, 0, NULL, NULL, &q, sizeof(q));
	REQUIRE(f2 && f3);
	CHECK(!orbit_future_done(f2));
	f4 = orbit_call_async(ob, ORBIT_CALL_CANCEL_QUEUED, 0, NULL, NULL, &last, sizeof(last));
	REQUIRE(f4 != NULL);
	CHECK(orbit_future_done(f2));
	CHECK(orbit_future_done(f3));
	CHECK(!orbit_future_done(f1));
	CHECK_EQ(orbit_future_wait(f2, 0, &ret), -ORBIT_E_CANCELLED);
	CHECK_EQ(orbit_future_get(f3, &ret), -ORBIT_E_CANCELLED);
	ret = -1;
	CHECK_EQ(orbit_future_get(f1, &ret), 0);
	CHECK_EQ(ret, 1001);	/* first call in this process */
	ret = -1;
	CHECK_EQ(orbit_future_get(f4, &ret), 0);
	CHECK_EQ(ret, 2004);	/* the cancelled calls never ran */
	CHECK_EQ(orbit_future_get(f2, &ret), -ORBIT_E_CANCELLED);
	orbit_future_release(f1);
	orbit_future_release(f2);
	orbit_future_release(f3);
	orbit_future_release(f4);
	orbit_stats(ob, &st);
	CHECK_EQ(st.calls, 2);
	CHECK_EQ(orbit_call(ob, 0, NULL, NULL, &q, sizeof(q), &ret), 0);
	CHECK_EQ(ret, 3002);
	orbit_destroy(ob);
}

/* The oldest call is cancelled too when the orbit has not started it. */
static void test_cancel_queued_head_not_started(void)
{
	struct orbit *ob = mk("cancel2", entry_job, init_slow);
	struct job a = { .n = 1 }, b = { .n = 2 };
	struct orbit_future *f1, *f2;
	long ret = -1;

	REQUIRE(ob != NULL);
	f1 = orbit_call_async(ob, 0, 0, NULL, NULL, &a, sizeof(a));	/* orbit in init */
	REQUIRE(f1 != NULL);
	f2 = orbit_call_async(ob, ORBIT_CALL_CANCEL_QUEUED, 0, NULL, NULL, &b, sizeof(b));
	REQUIRE(f2 != NULL);
	CHECK_EQ(orbit_future_get(f1, &ret), -ORBIT_E_CANCELLED);
	ret = -1;
	CHECK_EQ(orbit_future_get(f2, &ret), 0);
	CHECK_EQ(ret, 1002);
	orbit_future_release(f1);
	orbit_future_release(f2);
	orbit_destroy(ob);
}

static long entry_area_sum(void *arg, size_t argsize, void *store)
{
	const unsigned char *p = *(unsigned char *const *)arg;
	long s = 0;

	(void)argsize;
	(void)store;
	for (int i = 1; i <= 3; i++)
		s = s * 100 + p[i * PG];
	return s;
}

/* Cancelled calls skip their entry but still bring the area up to date:
 * the call that cancelled them carries only its own new pages. */
static void cancelled_calls_still_sync(const char *mode)
{
	struct orbit_area *a = check_area(8 * PG, mode);
	struct orbit *ob = mk("cancel3", entry_area_sum, NULL);
	struct job slow = { .n = 0, .signal_start = 1, .sleep2_ms = 200 };
	struct orbit_future *f1, *f2, *f3, *f4;
	unsigned char *p;
	long ret = -1;

	REQUIRE(a && ob);
	p = orbit_area_base(a);
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, &p, sizeof(p), &ret), 0);
	CHECK_EQ(ret, 0);
	f1 = orbit_call_async(ob, 0, 0, NULL, entry_job, &slow, sizeof(slow));
	REQUIRE(f1 != NULL);
	wait_started(f1);
	p[1 * PG] = 2;
	f2 = orbit_call_async(ob, 0, 1, &a, NULL, &p, sizeof(p));
	p[2 * PG] = 3;
	f3 = orbit_call_async(ob, 0, 1, &a, NULL, &p, sizeof(p));
	p[3 * PG] = 4;
	f4 = orbit_call_async(ob, ORBIT_CALL_CANCEL_QUEUED, 1, &a, NULL, &p, sizeof(p));
	REQUIRE(f1 && f2 && f3 && f4);
	CHECK_EQ(orbit_future_get(f2, &ret), -ORBIT_E_CANCELLED);
	CHECK_EQ(orbit_future_get(f3, &ret), -ORBIT_E_CANCELLED);
	CHECK_EQ(orbit_future_get(f1, &ret), 0);
	ret = -1;
	CHECK_EQ(orbit_future_get(f4, &ret), 0);
	CHECK_EQ(ret, 20304);
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, &p, sizeof(p), &ret), 0);
	CHECK_EQ(ret, 20304);
	orbit_future_release(f1);
	orbit_future_release(f2);
	orbit_future_release(f3);
	orbit_future_release(f4);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* ------------------------------------------- futures outliving an orbit */

static void test_future_outlives_destroy(void)
{
	struct orbit *ob = mk("outlive", entry_push, NULL);
	struct job slow = { .n = 2, .tag = 'o', .sleep_ms = 5000 };
	struct job quick = { .n = 2, .tag = 'q' };
	struct orbit_future *done, *pend[3];
	const void *d;
	void *u;
	size_t len;
	long ret = -1;
	uint64_t t0;

	REQUIRE(ob != NULL);
	done = orbit_call_async(ob, 0, 0, NULL, NULL, &quick, sizeof(quick));
	REQUIRE(done != NULL);
	CHECK_EQ(orbit_future_get(done, &ret), 0);
	for (int i = 0; i < 3; i++) {
		pend[i] = orbit_call_async(ob, 0, 0, NULL, NULL, &slow, sizeof(slow));
		REQUIRE(pend[i] != NULL);
	}
	t0 = check_now_ms();
	CHECK_EQ(orbit_destroy(ob), 0);	/* a busy orbit is killed at once */
	CHECK(check_now_ms() - t0 < 2000);

	/* The finished future keeps its result, data and updates. */
	ret = -1;
	CHECK_EQ(orbit_future_get(done, &ret), 0);
	CHECK_EQ(ret, 2);
	d = orbit_future_data(done, &len);
	CHECK(len == 4 && d && !memcmp(d, "done", 4));
	check_updates(done, 'q', 2);
	CHECK_EQ(orbit_pull(done, 0, &u, &len), 0);

	/* The pending ones failed with CLOSED. */
	for (int i = 0; i < 3; i++) {
		CHECK(orbit_future_done(pend[i]));
		CHECK_EQ(orbit_future_get(pend[i], &ret), -ORBIT_E_CLOSED);
		CHECK_EQ(orbit_future_wait(pend[i], 0, &ret), -ORBIT_E_CLOSED);
		CHECK_EQ(orbit_pull(pend[i], 1000, &u, &len), 0);
	}
	/* Released in any order, after the orbit; the last frees the orbit. */
	orbit_future_release(pend[1]);
	orbit_future_release(done);
	orbit_future_release(pend[2]);
	orbit_future_release(pend[0]);
}

/* An idle orbit destroyed with an unread result: that future is closed too,
 * or has its result; either way it is released without leaks. */
static void test_destroy_idle_with_live_future(void)
{
	struct orbit *ob = mk("outlive2", entry_job, NULL);
	struct job j = { .n = 9 };
	struct orbit_future *f;
	long ret = -1;
	int rc;

	REQUIRE(ob != NULL);
	f = orbit_call_async(ob, 0, 0, NULL, NULL, &j, sizeof(j));
	REQUIRE(f != NULL);
	check_sleep_ms(50);	/* the orbit answered; nobody read it */
	CHECK_EQ(orbit_destroy(ob), 0);
	rc = orbit_future_get(f, &ret);
	CHECK(rc == 0 || rc == -ORBIT_E_CLOSED);
	if (rc == 0)
		CHECK_EQ(ret, 9);
	orbit_future_release(f);
}

int main(void)
{
	check_watchdog(55);
	RUN(test_seq_and_status);
	RUN(test_arg_validation);
	RUN(test_strerror);
	RUN(test_return_data);
	RUN(test_big_argument);
	RUN(test_pull_order);
	RUN(test_pull_after_get);
	RUN(test_pull_routes_per_future);
	RUN(test_pull_timeout);
	RUN(test_released_future_drops_updates);
	RUN(test_wait_timeout);
	RUN(test_skip_if_busy);
	RUN(test_cancel_queued);
	RUN(test_cancel_queued_head_not_started);
	RUN_MODES(cancelled_calls_still_sync);
	RUN(test_future_outlives_destroy);
	RUN(test_destroy_idle_with_live_future);
	return CHECK_DONE();
}
