/*
 * backends.c - the micro benchmarks of one backend on work every backend
 * does: call latency, and what a dirty page costs.
 *
 * It measures the backend this process runs (ORBITPY_BACKEND picks it
 * before main(), see csrc/sys_select.c) through the public API only, so
 * that the same program run once per backend measures both on the same
 * work.  kernel/vm-init runs it in the VM with each backend when asked
 * (ORBITPY_VM_BENCH=1), and kernel/bench-report puts the two side by side.
 *
 * What it measures, each a median over rounds (the rounds stop at
 * MAX_ROUNDS or when a measurement has taken BUDGET_US, but never before
 * MIN_ROUNDS; WARMUP rounds first are not counted):
 *
 *   empty_call    orbit_call() naming no area, of an entry that returns
 *   call          orbit_call() naming an area of A pages, all resident,
 *                 after main wrote k of them (every (A/k)-th page: runs of
 *                 one page, the copier's hard case, unless k = A); the
 *                 orbit reads the last page written and the result is
 *                 checked, so every call is known to see main's writes
 *   write         main writing those k pages (one word each) right after
 *                 the previous call: the fault each first write takes
 *                 (the userspace backend's write-protect fault, the kernel
 *                 backend's copy-on-write break), which the call's time
 *                 does not include
 *   slope_call, slope_write, slope_total
 *                 per dirty page, (median(k) - median(0)) / k at the
 *                 largest k: the cost of a dirty page at the call, at the
 *                 write, and both
 *   async_issue   orbit_call_async() of such a call while the orbit is
 *                 busy (the call is queued: its snapshot is taken at the
 *                 call, the orbit takes it later), until it returns
 *
 * The userspace backend's background copying (orbit_set_background_sync)
 * is off, so that every dirty page is copied by the call measured.
 *
 * Output, one line per measurement, on stdout:
 *
 *   ORBIT-BENCH backend=<name> what=info mode=<area mode> page_size=<bytes> cpus=<n>
 *   ORBIT-BENCH backend=<name> what=<what> area_pages=<A> dirty=<k> rounds=<n> median_us=<t>
 *   ORBIT-BENCH backend=<name> what=slope_<x> area_pages=<A> dirty=<k> us_per_page=<t>
 *
 * (area_pages=0 for the empty call.)  Exit status 0, or 1 after an error
 * (said on stderr): a failed call, or an orbit that did not see main's
 * writes.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "orbit.h"

#define MAX_ROUNDS	60
#define MIN_ROUNDS	9
#define WARMUP		2
/* Per measurement: under TCG a call on a large area may take tens of ms,
 * and the whole program must stay well under a minute per backend. */
#define BUDGET_US	2.5e6
/* How long a busy call waits for main to release it: a bound, should a
 * queued call wait for the orbit instead of queueing (which would wait
 * for the busy call, which waits for main). */
#define BLOCK_MS	10000

static const size_t area_sizes[] = { 256, 16384 };	/* pages */
static const size_t dirty_counts[] = { 0, 1, 16, 256, 4096 };
static const size_t async_dirty[] = { 1, 256 };

static struct orbit_area *g_area;	/* the area measured */
static int g_release_fd = -1;		/* the orbit's end of the pipe busy calls wait on */
static const char *g_backend;
static long g_stamp = 1;		/* the value of main's latest writes */
static int g_errors;

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Whether to run round `done` (counted from 0, warm-up rounds included) of
 * a measurement that started at `start`. */
static int more_rounds(int done, double start)
{
	if (done < WARMUP + MIN_ROUNDS)
		return 1;
	return done < WARMUP + MAX_ROUNDS && now_us() - start < BUDGET_US;
}

static void fail(const char *what, int err)
{
	fprintf(stderr, "backends: %s: %s\n", what, orbit_strerror(err));
	g_errors++;
}

/* A call's failure; for a crash, how the orbit process ended. */
static void fail_future(const char *what, struct orbit_future *f, int err)
{
	int st = orbit_future_status(f);

	if (err == -ORBIT_E_CRASHED || err == -ORBIT_E_TIMEOUT)
		fprintf(stderr, "backends: %s: %s (%s %d)\n", what, orbit_strerror(err),
			WIFSIGNALED(st) ? "signal" : "exit status",
			WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	else
		fprintf(stderr, "backends: %s: %s\n", what, orbit_strerror(err));
	g_errors++;
}

static long noop(void *arg, size_t argsize, void *store)
{
	(void)arg;
	(void)argsize;
	(void)store;
	return 0;
}

/* The word at *arg, an address in an area, as this call sees it (by
 * address: the orbit process is a fork of main from before the area). */
static long read_word(void *arg, size_t argsize, void *store)
{
	(void)argsize;
	(void)store;
	return **(const long *const *)arg;
}

/* Keeps the orbit busy until main writes a byte to the pipe. */
static long block(void *arg, size_t argsize, void *store)
{
	struct pollfd p = { .fd = g_release_fd, .events = POLLIN };
	char c;

	(void)arg;
	(void)argsize;
	(void)store;
	if (poll(&p, 1, BLOCK_MS) == 1 && read(g_release_fd, &c, 1) == 1)
		return 0;
	return -1;
}

static void report(const char *what, size_t area_pages, size_t dirty, double *v, int n)
{
	printf("ORBIT-BENCH backend=%s what=%s area_pages=%zu dirty=%zu rounds=%d median_us=%.1f\n",
	       g_backend, what, area_pages, dirty, n, median(v, n));
}

static void report_slope(const char *what, size_t area_pages, size_t dirty, double us)
{
	printf("ORBIT-BENCH backend=%s what=%s area_pages=%zu dirty=%zu us_per_page=%.3f\n",
	       g_backend, what, area_pages, dirty, us);
}

/* Main writes k of the area's pages, spread evenly; returns the address of
 * the last word written (page 0's when k is 0: its value is `*page0`). */
static long *write_pages(char *base, size_t area_pages, size_t k, long *page0)
{
	size_t stride = k ? area_pages / k : 0;
	size_t pg = orbit_page_size();

	g_stamp++;
	for (size_t i = 0; i < k; i++)
		*(long *)(base + i * stride * pg) = g_stamp;
	if (k)
		*page0 = g_stamp;
	return (long *)(base + (k ? (k - 1) * stride * pg : 0));
}

static void bench_empty_call(struct orbit *ob)
{
	double v[WARMUP + MAX_ROUNDS], start = now_us();
	int n = 0;

	while (more_rounds(n, start)) {
		double t0 = now_us();
		long ret;
		int err = orbit_call(ob, 0, NULL, noop, NULL, 0, &ret);

		if (err) {
			fail("empty call", err);
			return;
		}
		v[n++] = now_us() - t0;
	}
	report("empty_call", 0, 0, v + WARMUP, n - WARMUP);
}

/* Synchronous calls after k dirty pages; the medians of the call and of
 * the writes go to *call_us and *write_us.  0, or -1 after an error. */
static int bench_call(struct orbit *ob, size_t area_pages, size_t k, long *page0,
		      double *call_us, double *write_us)
{
	double vc[WARMUP + MAX_ROUNDS], vw[WARMUP + MAX_ROUNDS], start = now_us();
	char *base = orbit_area_base(g_area);
	int n = 0;

	while (more_rounds(n, start)) {
		double t0 = now_us(), t1, t2;
		long *last = write_pages(base, area_pages, k, page0);
		long ret = 0;
		int err;

		t1 = now_us();
		err = orbit_call(ob, 1, &g_area, read_word, &last, sizeof(last), &ret);
		t2 = now_us();
		if (err) {
			fail("call", err);
			return -1;
		}
		/* The page read holds *page0: page 0 when k is 0, else the
		 * last page written, as page 0 was, this round. */
		if (ret != *page0) {
			fprintf(stderr, "backends: the orbit read %ld at %p, main wrote %ld\n",
				ret, (void *)last, *page0);
			g_errors++;
			return -1;
		}
		vw[n] = t1 - t0;
		vc[n++] = t2 - t1;
	}
	if (k)
		report("write", area_pages, k, vw + WARMUP, n - WARMUP);
	report("call", area_pages, k, vc + WARMUP, n - WARMUP);
	*call_us = median(vc + WARMUP, n - WARMUP);
	*write_us = k ? median(vw + WARMUP, n - WARMUP) : 0;
	return 0;
}

/* orbit_call_async of a call after k dirty pages while a call that waits
 * for main keeps the orbit busy: the time until it returns. */
static void bench_async_issue(struct orbit *ob, int release_w, size_t area_pages, size_t k,
			      long *page0)
{
	double v[WARMUP + MAX_ROUNDS], start = now_us();
	char *base = orbit_area_base(g_area);
	int n = 0, waited = 0;

	while (more_rounds(n, start)) {
		struct orbit_future *busy, *f;
		long *last;
		long ret = 0;
		double t0;
		int err;

		busy = orbit_call_async(ob, 0, 0, NULL, block, NULL, 0);
		if (!busy) {
			fail("busy call", -errno);
			return;
		}
		last = write_pages(base, area_pages, k, page0);
		t0 = now_us();
		f = orbit_call_async(ob, 0, 1, &g_area, read_word, &last, sizeof(last));
		v[n] = now_us() - t0;
		/* Done already: the call waited for the orbit (the busy call
		 * gave up waiting) instead of queueing; not counted. */
		if (orbit_future_done(busy))
			waited++;
		else
			n++;
		if (write(release_w, "x", 1) != 1)
			fail("release", -errno);
		err = orbit_future_get(busy, &ret);
		if (err || ret) {
			fail_future("busy call", busy, err ? err : -ETIMEDOUT);
			orbit_future_release(busy);
			if (f)
				orbit_future_release(f);
			return;
		}
		orbit_future_release(busy);
		if (!f) {
			fail("queued call", -errno);
			return;
		}
		err = orbit_future_get(f, &ret);
		if (err) {
			fail_future("queued call", f, err);
			orbit_future_release(f);
			return;
		}
		orbit_future_release(f);
		if (ret != *page0) {
			fprintf(stderr, "backends: a queued call read %ld, main wrote %ld\n", ret,
				*page0);
			g_errors++;
			return;
		}
		if (waited > MIN_ROUNDS) {
			fprintf(stderr, "backends: calls made while the orbit is busy wait for it\n");
			g_errors++;
			return;
		}
	}
	report("async_issue", area_pages, k, v + WARMUP, n - WARMUP);
}

static void bench_area(struct orbit *ob, int release_w, size_t area_pages)
{
	size_t pg = orbit_page_size(), kmax = 0;
	double call0 = 0, write0 = 0, call_k = 0, write_k = 0;
	long page0 = 0;
	char *base;

	g_area = orbit_area_create(area_pages * pg, NULL);
	if (!g_area) {
		fail("area", -errno);
		return;
	}
	base = orbit_area_base(g_area);
	/* Every page resident: a call re-sharing the area (the kernel
	 * backend) pays for each, a copying one only for those written. */
	page0 = ++g_stamp;
	for (size_t i = 0; i < area_pages; i++)
		*(long *)(base + i * pg) = g_stamp;

	for (size_t i = 0; i < sizeof(dirty_counts) / sizeof(*dirty_counts); i++) {
		size_t k = dirty_counts[i];
		double c, w;

		if (k > area_pages)
			break;
		if (bench_call(ob, area_pages, k, &page0, &c, &w))
			goto out;
		if (!k) {
			call0 = c;
			write0 = w;
		} else {
			kmax = k;
			call_k = c;
			write_k = w;
		}
	}
	if (kmax) {
		double sc = (call_k - call0) / kmax, sw = (write_k - write0) / kmax;

		report_slope("slope_call", area_pages, kmax, sc);
		report_slope("slope_write", area_pages, kmax, sw);
		report_slope("slope_total", area_pages, kmax, sc + sw);
	}
	for (size_t i = 0; i < sizeof(async_dirty) / sizeof(*async_dirty); i++)
		if (async_dirty[i] <= area_pages)
			bench_async_issue(ob, release_w, area_pages, async_dirty[i], &page0);
out:
	orbit_area_destroy(g_area);
	g_area = NULL;
}

int main(void)
{
	struct orbit_options o;
	struct orbit_area *probe;
	struct orbit *ob;
	int fds[2];

	setvbuf(stdout, NULL, _IOLBF, 0);
	g_backend = orbit_backend_name();
	/* Every dirty page copied by the call measured (-ENOTSUP: the
	 * backend copies nothing between calls). */
	orbit_set_background_sync(0);
	if (pipe(fds)) {
		perror("backends: pipe");
		return 1;
	}
	g_release_fd = fds[0];
	orbit_options_init(&o);
	o.keep_fds = &g_release_fd;	/* a new orbit process drops main's pipes */
	o.nkeep_fds = 1;
	ob = orbit_create("bench", noop, NULL, &o);
	probe = orbit_area_create(orbit_page_size(), NULL);
	if (!ob || !probe) {
		fprintf(stderr, "backends: %s with the %s backend: %s\n",
			ob ? "orbit_area_create" : "orbit_create", g_backend, orbit_strerror(errno));
		return 1;
	}
	printf("ORBIT-BENCH backend=%s what=info mode=%s page_size=%zu cpus=%ld\n", g_backend,
	       orbit_area_mode(probe), orbit_page_size(), sysconf(_SC_NPROCESSORS_ONLN));
	orbit_area_destroy(probe);

	bench_empty_call(ob);
	for (size_t i = 0; i < sizeof(area_sizes) / sizeof(*area_sizes) && !g_errors; i++)
		bench_area(ob, fds[1], area_sizes[i]);
	orbit_destroy(ob);
	return g_errors ? 1 : 0;
}
