/*
 * test_threads.c - main's threads share orbits, areas and futures: calls
 * from many threads, snapshots while other threads write, orbits created
 * while others run, the allocator, and futures released concurrently.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>

#include "check.h"
#include "orbit.h"

#define PG orbit_page_size()
#define NT 8

static long entry_mix(void *arg, size_t argsize, void *store)
{
	(void)store;
	if (argsize != sizeof(long))
		return -1;
	return *(long *)arg * 2 + 1;
}

/* Reads the 64-bit counter at the start of a page of an area. */
struct peek {
	const uint64_t *where;
	uint64_t pad;
};

static long entry_peek64(void *arg, size_t argsize, void *store)
{
	const struct peek *pk = arg;

	(void)store;
	if (argsize != sizeof(*pk))
		return -1;
	return (long)*pk->where;
}

/* ------------------------------------------- many threads, one orbit */

struct worker {
	pthread_t t;
	int id;
	struct orbit *ob;
	struct orbit_area *area;
	pthread_barrier_t *bar;
	int iters;
	int bad;
	int done;
};

static void *calls_worker(void *arg)
{
	struct worker *w = arg;

	pthread_barrier_wait(w->bar);
	for (int i = 0; i < w->iters; i++) {
		long v = (long)w->id * 1000000 + i, ret = -1;

		if (i % 3 == 2) {	/* sometimes a few at once, async */
			struct orbit_future *f[3];
			int n = 0;

			for (int k = 0; k < 3; k++) {
				long vk = v + k * 100000;

				f[k] = orbit_call_async(w->ob, 0, 0, NULL, NULL, &vk, sizeof(vk));
				n += f[k] != NULL;
			}
			if (n != 3)
				w->bad++;
			for (int k = 2; k >= 0; k--) {
				if (!f[k])
					continue;
				if (orbit_future_get(f[k], &ret) != 0 ||
				    ret != (v + k * 100000) * 2 + 1)
					w->bad++;
				orbit_future_release(f[k]);
			}
		} else if (orbit_call(w->ob, 0, NULL, NULL, &v, sizeof(v), &ret) != 0 ||
			   ret != v * 2 + 1) {
			w->bad++;
		}
	}
	return NULL;
}

static void test_threads_same_orbit(void)
{
	struct orbit *ob = orbit_create("mt", entry_mix, NULL, NULL);
	struct worker w[NT];
	pthread_barrier_t bar;
	struct orbit_stats st;
	int bad = 0;

	REQUIRE(ob != NULL);
	pthread_barrier_init(&bar, NULL, NT);
	for (int i = 0; i < NT; i++) {
		w[i] = (struct worker){ .id = i, .ob = ob, .bar = &bar, .iters = 300 };
		REQUIRE(pthread_create(&w[i].t, NULL, calls_worker, &w[i]) == 0);
	}
	for (int i = 0; i < NT; i++) {
		pthread_join(w[i].t, NULL);
		bad += w[i].bad;
	}
	CHECK_EQ(bad, 0);
	orbit_stats(ob, &st);
	CHECK_EQ(st.calls, NT * (200 + 100 * 3));
	CHECK_EQ(st.restarts, 0);
	pthread_barrier_destroy(&bar);
	orbit_destroy(ob);
}

/* Each thread writes its own page, then calls: the call must see that
 * write, whatever the other threads write and snapshot meanwhile. */
static void *own_page_worker(void *arg)
{
	struct worker *w = arg;
	uint64_t *mine = (uint64_t *)((char *)orbit_area_base(w->area) + (size_t)(w->id + 1) * PG);

	pthread_barrier_wait(w->bar);
	for (int i = 1; i <= w->iters; i++) {
		struct peek pk = { mine, 0 };
		long ret = -1;

		*mine = (uint64_t)i;
		if (orbit_call(w->ob, 1, &w->area, NULL, &pk, sizeof(pk), &ret) != 0 ||
		    ret != i)
			w->bad++;
	}
	return NULL;
}

static void own_pages(const char *mode)
{
	struct orbit_area *a = check_area((NT + 2) * PG, mode);
	struct orbit *ob = orbit_create("mt-pages", entry_peek64, NULL, NULL);
	struct worker w[NT];
	pthread_barrier_t bar;
	int bad = 0;

	REQUIRE(a && ob);
	pthread_barrier_init(&bar, NULL, NT);
	for (int i = 0; i < NT; i++) {
		w[i] = (struct worker){ .id = i, .ob = ob, .area = a, .bar = &bar, .iters = 200 };
		REQUIRE(pthread_create(&w[i].t, NULL, own_page_worker, &w[i]) == 0);
	}
	for (int i = 0; i < NT; i++) {
		pthread_join(w[i].t, NULL);
		bad += w[i].bad;
	}
	CHECK_EQ(bad, 0);
	pthread_barrier_destroy(&bar);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

static long entry_zero(void *arg, size_t argsize, void *store)
{
	(void)arg;
	(void)argsize;
	(void)store;
	return 0;
}

/*
 * Threads with an orbit each, all on one area: collects race each other.
 * The orbits are started from this thread first: forking from several
 * threads at once is test_create_while_threads_run's subject, and under
 * AddressSanitizer (whose allocator this libasan does not lock around fork)
 * it can hang a child in malloc.
 */
static void *own_orbit_worker(void *arg)
{
	own_page_worker(arg);
	return NULL;
}

static void own_orbits_one_area(const char *mode)
{
	struct orbit_area *a = check_area((NT + 2) * PG, mode);
	struct worker w[NT];
	pthread_barrier_t bar;
	int bad = 0;

	REQUIRE(a != NULL);
	pthread_barrier_init(&bar, NULL, NT);
	for (int i = 0; i < NT; i++) {
		long ret;

		w[i] = (struct worker){ .id = i, .area = a, .bar = &bar, .iters = 150 };
		w[i].ob = orbit_create("mt-own", entry_peek64, NULL, NULL);
		REQUIRE(w[i].ob != NULL);
		/* start the process now (a call naming no area) */
		REQUIRE(orbit_call(w[i].ob, 0, NULL, entry_zero, NULL, 0, &ret) == 0);
	}
	for (int i = 0; i < NT; i++)
		REQUIRE(pthread_create(&w[i].t, NULL, own_orbit_worker, &w[i]) == 0);
	for (int i = 0; i < NT; i++) {
		pthread_join(w[i].t, NULL);
		bad += w[i].bad;
		orbit_destroy(w[i].ob);
	}
	CHECK_EQ(bad, 0);
	pthread_barrier_destroy(&bar);
	orbit_area_destroy(a);
}

/* -------------------------------------- orbits created while others run */

static void *hammer_worker(void *arg)
{
	struct worker *w = arg;

	pthread_barrier_wait(w->bar);
	while (!__atomic_load_n(&w->done, __ATOMIC_ACQUIRE)) {
		long v = w->id + w->iters++, ret = -1;

		if (orbit_call(w->ob, 0, NULL, NULL, &v, sizeof(v), &ret) != 0 || ret != v * 2 + 1)
			w->bad++;
	}
	return NULL;
}

static long entry_peek8(void *arg, size_t argsize, void *store)
{
	(void)argsize;
	(void)store;
	return **(unsigned char **)arg;
}

static void test_create_while_threads_run(void)
{
	struct orbit *a = orbit_create("hammered", entry_mix, NULL, NULL);
	struct worker w[4];
	pthread_barrier_t bar;
	int bad = 0, calls = 0;

	REQUIRE(a != NULL);
	pthread_barrier_init(&bar, NULL, 5);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ .id = i * 1000000, .ob = a, .bar = &bar };
		REQUIRE(pthread_create(&w[i].t, NULL, hammer_worker, &w[i]) == 0);
	}
	pthread_barrier_wait(&bar);
	for (int n = 0; n < 60; n++) {
		struct orbit_area *ar = orbit_area_create(4 * PG, check_mode(n % CHECK_NMODES));
		struct orbit *b = orbit_create("newcomer", entry_peek8, NULL, NULL);
		unsigned char *p;
		long ret = -1;

		if (!ar) {	/* a mode this backend lacks: its own choice */
			ar = orbit_area_create(4 * PG, "auto");
		}
		if (!ar || !b) {
			bad++;
			break;
		}
		p = (unsigned char *)orbit_area_base(ar) + PG;
		*p = (unsigned char)(n + 1);
		if (orbit_call(b, 1, &ar, NULL, &p, sizeof(p), &ret) != 0 || ret != n + 1)
			bad++;
		orbit_destroy(b);
		orbit_area_destroy(ar);
	}
	for (int i = 0; i < 4; i++)
		__atomic_store_n(&w[i].done, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 4; i++) {
		pthread_join(w[i].t, NULL);
		bad += w[i].bad;
		calls += w[i].iters;
	}
	CHECK_EQ(bad, 0);
	CHECK(calls > 0);
	pthread_barrier_destroy(&bar);
	orbit_destroy(a);
}

/* ---------------------------------------------------------- allocator */

static void *alloc_worker(void *arg)
{
	struct worker *w = arg;
	unsigned char *mine[64] = { 0 };
	size_t len[64] = { 0 };
	uint64_t x = 0x2545F4914F6CDD1DULL * (uint64_t)(w->id + 1);

	pthread_barrier_wait(w->bar);
	for (int i = 0; i < w->iters; i++) {
		int k;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		k = (int)(x % 64);
		if (mine[k]) {
			for (size_t j = 0; j < len[k]; j++)
				if (mine[k][j] != (unsigned char)(w->id + k)) {
					w->bad++;
					break;
				}
			orbit_free(w->area, mine[k]);
			mine[k] = NULL;
		} else {
			len[k] = 1 + (size_t)(x >> 40) % 700;
			mine[k] = orbit_alloc(w->area, len[k]);
			if (mine[k])
				memset(mine[k], w->id + k, len[k]);
			else
				w->bad++;
		}
	}
	for (int k = 0; k < 64; k++)
		orbit_free(w->area, mine[k]);
	return NULL;
}

static void test_alloc_from_threads(void)
{
	struct orbit_area *a = orbit_area_create(1024 * PG, "auto");
	struct orbit_area_stats st;
	struct worker w[NT];
	pthread_barrier_t bar;
	int bad = 0;

	REQUIRE(a != NULL);
	pthread_barrier_init(&bar, NULL, NT);
	for (int i = 0; i < NT; i++) {
		w[i] = (struct worker){ .id = i, .area = a, .bar = &bar, .iters = 20000 };
		REQUIRE(pthread_create(&w[i].t, NULL, alloc_worker, &w[i]) == 0);
	}
	for (int i = 0; i < NT; i++) {
		pthread_join(w[i].t, NULL);
		bad += w[i].bad;
	}
	CHECK_EQ(bad, 0);
	orbit_area_stats(a, &st);
	CHECK_EQ(st.used, 0);
	CHECK_EQ(st.allocations, 0);
	pthread_barrier_destroy(&bar);
	orbit_area_destroy(a);
}

/* ---------------------------------------------------- futures, threads */

struct waiter {
	pthread_t t;
	struct orbit_future *f;
	long expect;
	int rc;
	long ret;
};

static void *wait_worker(void *arg)
{
	struct waiter *w = arg;

	w->rc = orbit_future_get(w->f, &w->ret);
	return NULL;
}

static long entry_slow_mix(void *arg, size_t argsize, void *store)
{
	check_sleep_ms(5);
	return entry_mix(arg, argsize, store);
}

/* Main submits; each thread waits for a different future of one orbit. */
static void test_waiters_on_one_orbit(void)
{
	struct orbit *ob = orbit_create("waiters", entry_slow_mix, NULL, NULL);
	struct waiter w[NT];
	int bad = 0;

	REQUIRE(ob != NULL);
	for (int i = 0; i < NT; i++) {
		long v = 40 + i;

		w[i].f = orbit_call_async(ob, 0, 0, NULL, NULL, &v, sizeof(v));
		w[i].expect = v * 2 + 1;
		REQUIRE(w[i].f != NULL);
	}
	/* the last futures are waited for first */
	for (int i = NT - 1; i >= 0; i--)
		REQUIRE(pthread_create(&w[i].t, NULL, wait_worker, &w[i]) == 0);
	for (int i = 0; i < NT; i++) {
		pthread_join(w[i].t, NULL);
		if (w[i].rc != 0 || w[i].ret != w[i].expect)
			bad++;
		orbit_future_release(w[i].f);
	}
	CHECK_EQ(bad, 0);
	orbit_destroy(ob);
}

static long entry_sleep(void *arg, size_t argsize, void *store)
{
	(void)argsize;
	(void)store;
	check_sleep_ms((unsigned)*(long *)arg);
	return 0;
}

/* Threads blocked on calls when the orbit is destroyed get CLOSED. */
static void test_destroy_while_threads_wait(void)
{
	struct orbit *ob = orbit_create("closing", entry_sleep, NULL, NULL);
	struct waiter w[4];
	uint64_t t0;
	int bad = 0;

	REQUIRE(ob != NULL);
	for (int i = 0; i < 4; i++) {
		long ms = 10000;

		w[i].f = orbit_call_async(ob, 0, 0, NULL, NULL, &ms, sizeof(ms));
		REQUIRE(w[i].f != NULL);
		REQUIRE(pthread_create(&w[i].t, NULL, wait_worker, &w[i]) == 0);
	}
	check_sleep_ms(100);
	t0 = check_now_ms();
	CHECK_EQ(orbit_destroy(ob), 0);
	for (int i = 0; i < 4; i++) {
		pthread_join(w[i].t, NULL);
		if (w[i].rc != -ORBIT_E_CLOSED)
			bad++;
	}
	CHECK(check_now_ms() - t0 < 3000);
	CHECK_EQ(bad, 0);
	for (int i = 0; i < 4; i++)
		orbit_future_release(w[i].f);
}

/*
 * After orbit_destroy, the last future released frees the orbit.  Release
 * the futures from several threads at once, and race orbit_destroy against
 * a release: exactly one of them may free it, and nobody may touch it after.
 * (Use-after-free shows under `make asan`.)
 */
struct releaser {
	pthread_t t;
	pthread_barrier_t *bar;
	struct orbit_future *f[4];
	int n;
};

static void *release_worker(void *arg)
{
	struct releaser *r = arg;

	pthread_barrier_wait(r->bar);
	for (int i = 0; i < r->n; i++)
		orbit_future_release(r->f[i]);
	return NULL;
}

static void test_concurrent_release_after_destroy(void)
{
	enum { ROUNDS = 150, NR = 4 };
	int bad = 0;

	for (int round = 0; round < ROUNDS; round++) {
		struct orbit *ob = orbit_create("release", entry_mix, NULL, NULL);
		struct releaser r[NR];
		pthread_barrier_t bar;
		long v = round, ret;

		if (!ob) {
			bad++;
			break;
		}
		pthread_barrier_init(&bar, NULL, NR + 1);
		for (int i = 0; i < NR; i++) {
			r[i].bar = &bar;
			r[i].n = 1;
			r[i].f[0] = orbit_call_async(ob, 0, 0, NULL, NULL, &v, sizeof(v));
			if (!r[i].f[0] || orbit_future_get(r[i].f[0], &ret) != 0 || ret != v * 2 + 1)
				bad++;
		}
		for (int i = 0; i < NR; i++)
			pthread_create(&r[i].t, NULL, release_worker, &r[i]);
		if (round % 2)
			orbit_destroy(ob);	/* before the releases */
		pthread_barrier_wait(&bar);
		if (round % 2 == 0)
			orbit_destroy(ob);	/* racing the releases */
		for (int i = 0; i < NR; i++)
			pthread_join(r[i].t, NULL);
		pthread_barrier_destroy(&bar);
	}
	CHECK_EQ(bad, 0);
}

int main(void)
{
	check_watchdog(55);
	RUN(test_threads_same_orbit);
	RUN_MODES(own_pages);
	RUN_MODES(own_orbits_one_area);
	RUN(test_create_while_threads_run);
	RUN(test_alloc_from_threads);
	RUN(test_waiters_on_one_orbit);
	RUN(test_destroy_while_threads_wait);
	RUN(test_concurrent_release_after_destroy);
	return CHECK_DONE();
}
