/*
 * test_lifecycle.c - orbit processes come and go: lazy start, init per
 * process, options and hooks, many create/call/destroy cycles without
 * leaking descriptors or children, and orbits that end with their main.
 * (That an orbit inherits no other orbit's base memfd is the userspace
 * backend's: user/test_base_memfd.c.)
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "check.h"
#include "orbit.h"

#define PG orbit_page_size()

static long entry_echo(void *arg, size_t argsize, void *store)
{
	(void)store;
	return argsize == sizeof(long) ? *(long *)arg : -1;
}

static long entry_peek(void *arg, size_t argsize, void *store)
{
	(void)argsize;
	(void)store;
	return **(unsigned char **)arg;
}

static long entry_loop(void *arg, size_t argsize, void *store)
{
	(void)arg;
	(void)argsize;
	(void)store;
	for (volatile unsigned long i = 0;; i++)
		;
	return 0;
}

/* ------------------------------------------------------ start and init */

static void test_lazy_start(void)
{
	struct orbit *ob = orbit_create("lazy", entry_echo, NULL, NULL);
	long v = 3, ret = -1;

	REQUIRE(ob != NULL);
	CHECK_EQ(orbit_pid(ob), 0);
	CHECK_EQ(orbit_call(ob, 0, NULL, NULL, &v, sizeof(v), &ret), 0);
	CHECK_EQ(ret, 3);
	CHECK(orbit_pid(ob) > 0);
	CHECK(orbit_pid(ob) != getpid());
	orbit_destroy(ob);

	/* never started */
	ob = orbit_create(NULL, entry_echo, NULL, NULL);
	REQUIRE(ob != NULL);
	CHECK_EQ(orbit_destroy(ob), 0);
}

struct store {
	pid_t pid;
	long calls;
};

static void *init_store(void)
{
	struct store *s = calloc(1, sizeof(*s));

	if (s)
		s->pid = getpid();
	return s;
}

/* Returns the number of calls this process has run (store from init). */
static long entry_count(void *arg, size_t argsize, void *store)
{
	struct store *s = store;

	(void)arg;
	(void)argsize;
	if (!s || s->pid != getpid())
		return -1;
	return ++s->calls;
}

static void test_init_once_per_process(void)
{
	struct orbit *ob = orbit_create("init", entry_count, init_store, NULL);
	long ret = -1;

	REQUIRE(ob != NULL);
	for (long i = 1; i <= 3; i++) {
		CHECK_EQ(orbit_call(ob, 0, NULL, NULL, NULL, 0, &ret), 0);
		CHECK_EQ(ret, i);
	}
	CHECK_EQ(orbit_restart(ob), 0);
	CHECK_EQ(orbit_call(ob, 0, NULL, NULL, NULL, 0, &ret), 0);
	CHECK_EQ(ret, 1);	/* a new process ran init again */
	orbit_destroy(ob);
}

/* ---------------------------------------------------- options, hooks */

static long entry_env(void *arg, size_t argsize, void *store)
{
	int what = *(int *)arg;

	(void)argsize;
	(void)store;
	switch (what) {
	case 0:
		errno = 0;
		return getpriority(PRIO_PROCESS, 0);
	case 1: {
		cpu_set_t set;

		if (sched_getaffinity(0, sizeof(set), &set) < 0)
			return -1;
		return CPU_COUNT(&set) * 100 + (CPU_ISSET(0, &set) ? 1 : 0);
	}
	case 2: {
		char comm[32] = { 0 };

		prctl(PR_GET_NAME, comm, 0, 0, 0);
		return !strcmp(comm, "orbit:opts");
	}
	}
	return -1;
}

static void test_options_applied(void)
{
	struct orbit_options o;
	struct orbit *ob;
	cpu_set_t set;
	int what, mine;
	long ret = -1;

	errno = 0;
	mine = getpriority(PRIO_PROCESS, 0);
	orbit_options_init(&o);
	CHECK_EQ(o.restart, 1);
	CHECK_EQ(o.restart_limit, 5);
	CHECK_EQ(o.max_backoff_ms, 1000);
	CHECK_EQ(o.timeout_ms, 0);
	CHECK_EQ(o.memory_limit, 0);
	o.nice = 3;
	CHECK_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
	if (CPU_ISSET(0, &set))
		o.cpu_mask = 1;
	ob = orbit_create("opts", entry_env, NULL, &o);
	REQUIRE(ob != NULL);
	what = 0;
	CHECK_EQ(orbit_call(ob, 0, NULL, NULL, &what, sizeof(what), &ret), 0);
	CHECK_EQ(ret, mine + 3 > 19 ? 19 : mine + 3);
	what = 1;
	CHECK_EQ(orbit_call(ob, 0, NULL, NULL, &what, sizeof(what), &ret), 0);
	if (o.cpu_mask)
		CHECK_EQ(ret, 101);
	what = 2;
	CHECK_EQ(orbit_call(ob, 0, NULL, NULL, &what, sizeof(what), &ret), 0);
	CHECK_EQ(ret, 1);
	/* main is untouched */
	errno = 0;
	CHECK_EQ(getpriority(PRIO_PROCESS, 0), mine);
	orbit_destroy(ob);
}

struct hook_counts {
	int before_fork, after_parent, block_begin, block_end, depth, bad;
};

static void h_before_fork(void *ctx) { ((struct hook_counts *)ctx)->before_fork++; }
static void h_after_parent(void *ctx) { ((struct hook_counts *)ctx)->after_parent++; }
static void h_after_child(void *ctx) { (void)ctx; }

static void *h_block_begin(void *ctx)
{
	struct hook_counts *h = ctx;

	/* Only main's hooks are counted; the orbit has its own copy. */
	if (orbit_in_orbit())
		return NULL;
	__atomic_fetch_add(&h->block_begin, 1, __ATOMIC_SEQ_CST);
	return h;
}

static void h_block_end(void *ctx, void *state)
{
	struct hook_counts *h = ctx;

	if (orbit_in_orbit())
		return;
	if (state != h)
		__atomic_fetch_add(&h->bad, 1, __ATOMIC_SEQ_CST);
	__atomic_fetch_add(&h->block_end, 1, __ATOMIC_SEQ_CST);
}

static void test_hooks(void)
{
	struct hook_counts hc = { 0 };
	struct orbit_hooks hooks = {
		.before_fork = h_before_fork,
		.after_fork_parent = h_after_parent,
		.after_fork_child = h_after_child,
		.block_begin = h_block_begin,
		.block_end = h_block_end,
		.ctx = &hc,
	};
	struct orbit_options o;
	struct orbit *ob;
	long v = 1, ret;

	orbit_options_init(&o);
	o.hooks = &hooks;
	o.backoff_ms = 1;
	ob = orbit_create("hooks", entry_echo, NULL, &o);
	REQUIRE(ob != NULL);
	for (int i = 0; i < 20; i++)
		CHECK_EQ(orbit_call(ob, 0, NULL, NULL, &v, sizeof(v), &ret), 0);
	CHECK_EQ(hc.before_fork, 1);
	CHECK_EQ(hc.after_parent, 1);
	orbit_restart(ob);
	CHECK_EQ(orbit_call(ob, 0, NULL, NULL, &v, sizeof(v), &ret), 0);
	CHECK_EQ(hc.before_fork, 2);
	CHECK_EQ(hc.after_parent, 2);
	orbit_destroy(ob);
	CHECK_EQ(hc.block_begin, hc.block_end);
	CHECK_EQ(hc.bad, 0);
}

/* ---------------------------------------------------- inside an orbit */

static struct orbit *g_self;
static struct orbit_area *g_area;

static long entry_misuse(void *arg, size_t argsize, void *store)
{
	long bits = 0;

	(void)arg;
	(void)argsize;
	(void)store;
	if (orbit_in_orbit())
		bits |= 1;
	errno = 0;
	if (!orbit_call_async(g_self, 0, 0, NULL, NULL, NULL, 0) && errno == EPERM)
		bits |= 2;
	errno = 0;
	if (!orbit_area_create(PG, "auto") && errno == EPERM)
		bits |= 4;
	errno = 0;
	if (!orbit_alloc(g_area, 16) && errno == EPERM)
		bits |= 8;
	if (orbit_restart(g_self) == -EPERM)
		bits |= 16;
	if (orbit_destroy(g_self) == -EPERM)
		bits |= 32;
	return bits;
}

static void test_api_inside_orbit(void)
{
	long ret = 0;

	g_area = orbit_area_create(4 * PG, "auto");
	g_self = orbit_create("misuse", entry_misuse, NULL, NULL);
	REQUIRE(g_area && g_self);
	CHECK_EQ(orbit_call(g_self, 0, NULL, NULL, NULL, 0, &ret), 0);
	CHECK_EQ(ret, 63);
	/* and main's orbit is unharmed */
	CHECK_EQ(orbit_call(g_self, 0, NULL, NULL, NULL, 0, &ret), 0);
	CHECK_EQ(ret, 63);
	orbit_destroy(g_self);
	orbit_area_destroy(g_area);
}

/* ------------------------------------------------------- destroy speed */

static void test_destroy_busy_and_idle(void)
{
	struct orbit *ob = orbit_create("busy", entry_loop, NULL, NULL);
	struct orbit_future *f;
	uint64_t t0;
	long v = 1, ret;
	pid_t pid;

	REQUIRE(ob != NULL);
	f = orbit_call_async(ob, 0, 0, NULL, NULL, NULL, 0);
	REQUIRE(f != NULL);
	check_sleep_ms(20);
	pid = orbit_pid(ob);
	t0 = check_now_ms();
	CHECK_EQ(orbit_destroy(ob), 0);
	CHECK(check_now_ms() - t0 < 1000);
	CHECK(check_proc_dead(pid));
	CHECK_EQ(orbit_future_get(f, &ret), -ORBIT_E_CLOSED);
	orbit_future_release(f);

	ob = orbit_create("idle", entry_echo, NULL, NULL);
	REQUIRE(ob != NULL);
	CHECK_EQ(orbit_call(ob, 0, NULL, NULL, &v, sizeof(v), &ret), 0);
	pid = orbit_pid(ob);
	t0 = check_now_ms();
	CHECK_EQ(orbit_destroy(ob), 0);
	CHECK(check_now_ms() - t0 < 1000);
	CHECK(check_proc_dead(pid));
}

/* ------------------------------------------------------------ cycles */

static void test_cycles_no_fd_growth(void)
{
	struct orbit_area *a = orbit_area_create(16 * PG, "auto");
	int fds0, fds1, bad = 0;
	unsigned char *p;
	uint64_t t0 = check_now_ms();
	int n = 0;

	REQUIRE(a != NULL);
	p = (unsigned char *)orbit_area_base(a) + PG;
	fds0 = check_count_fds();
	for (n = 0; n < 1000; n++) {
		struct orbit *ob = orbit_create("cycle", entry_peek, NULL, NULL);
		long ret = -1;

		if (!ob) {
			bad++;
			break;
		}
		*p = (unsigned char)n;
		if (orbit_call(ob, 1, &a, NULL, &p, sizeof(p), &ret) != 0 ||
		    ret != (unsigned char)n)
			bad++;
		orbit_destroy(ob);
		if (check_now_ms() - t0 > 40000) {	/* stay inside the watchdog */
			fprintf(stderr, "cycles: only %d in 40 s\n", n);
			break;
		}
	}
	fds1 = check_count_fds();
	CHECK_EQ(bad, 0);
	CHECK_EQ(n, 1000);
	CHECK_EQ(fds1, fds0);
	orbit_area_destroy(a);
	CHECK_EQ(check_count_fds(), fds0);
}

/* Crashes, restarts and areas that come and go leak nothing either. */
static long entry_crashy(void *arg, size_t argsize, void *store)
{
	(void)argsize;
	(void)store;
	if (*(long *)arg % 3 == 0)
		_exit(9);
	return *(long *)arg;
}

static void test_crash_cycles_no_fd_growth(void)
{
	struct orbit_options o;
	struct orbit *ob;
	int fds0, bad = 0;

	orbit_options_init(&o);
	o.backoff_ms = 0;
	o.restart_limit = 1000;
	fds0 = check_count_fds();
	ob = orbit_create("crashy", entry_crashy, NULL, &o);
	REQUIRE(ob != NULL);
	for (long i = 1; i <= 150; i++) {
		struct orbit_area *a = orbit_area_create(4 * PG, "auto");
		long ret = -1;
		int rc;

		if (!a) {
			bad++;
			break;
		}
		rc = orbit_call(ob, 1, &a, NULL, &i, sizeof(i), &ret);
		if (i % 3 == 0 ? rc != -ORBIT_E_CRASHED : (rc != 0 || ret != i))
			bad++;
		orbit_area_destroy(a);
	}
	CHECK_EQ(bad, 0);
	orbit_destroy(ob);
	CHECK_EQ(check_count_fds(), fds0);
}

/* ------------------------------------------------ bound to main's life */

static int read_full(int fd, void *buf, size_t n, int timeout_ms)
{
	char *p = buf;

	while (n) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&pfd, 1, timeout_ms) <= 0)
			return -1;
		r = read(fd, p, n);
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

enum { MAIN_KILLED_IDLE, MAIN_KILLED_BUSY, MAIN_EXITS };

static int subreaper;

/*
 * Fork a "main" that creates an orbit, starts it, reports its pid and then
 * is SIGKILLed (or exits without destroying it).  We are the subreaper, so
 * the orphaned orbit becomes our child: it must exit within 3 s.
 */
static void orbit_dies_with_main(int how)
{
	int pfd[2], status = -1;
	pid_t mainpid, opid = 0, r = 0;
	uint64_t t0;

	REQUIRE(pipe(pfd) == 0);
	mainpid = fork();
	REQUIRE(mainpid >= 0);
	if (mainpid == 0) {
		struct orbit *ob;
		long v = 5, ret = 0;

		close(pfd[0]);
		alarm(20);	/* never outlive the test by much */
		ob = orbit_create("bound", how == MAIN_KILLED_BUSY ? entry_loop : entry_echo,
				  NULL, NULL);
		if (!ob)
			_exit(1);
		if (how == MAIN_KILLED_BUSY) {
			if (!orbit_call_async(ob, 0, 0, NULL, NULL, NULL, 0))
				_exit(2);
		} else if (orbit_call(ob, 0, NULL, NULL, &v, sizeof(v), &ret) != 0 || ret != 5) {
			_exit(3);
		}
		opid = orbit_pid(ob);
		if (write(pfd[1], &opid, sizeof(opid)) != sizeof(opid))
			_exit(4);
		if (how == MAIN_EXITS)
			_exit(0);
		for (;;)
			pause();
	}
	close(pfd[1]);
	if (read_full(pfd[0], &opid, sizeof(opid), 10000) < 0)
		opid = 0;
	close(pfd[0]);
	CHECK(opid > 0);
	if (how != MAIN_EXITS)
		kill(mainpid, SIGKILL);
	CHECK_EQ(waitpid(mainpid, &status, 0), mainpid);
	if (how == MAIN_EXITS)
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	else
		CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	if (opid <= 0)
		return;
	t0 = check_now_ms();
	while (check_now_ms() - t0 < 3000) {
		r = waitpid(opid, &status, WNOHANG);
		if (r == opid || (r < 0 && errno == ECHILD))
			break;
		check_sleep_ms(5);
	}
	if (r != opid && !(r < 0 && errno == ECHILD)) {
		CHECK(!"orbit outlived its main by 3 s");
		kill(opid, SIGKILL);
		waitpid(opid, &status, 0);
		return;
	}
	if (subreaper)	/* we got it: it exited by itself, not by a signal */
		CHECK(r == opid && WIFEXITED(status));
	CHECK(check_proc_dead(opid));
}

static void test_orbit_dies_when_main_killed(void) { orbit_dies_with_main(MAIN_KILLED_IDLE); }
static void test_busy_orbit_dies_when_main_killed(void) { orbit_dies_with_main(MAIN_KILLED_BUSY); }
static void test_orbit_dies_when_main_exits(void) { orbit_dies_with_main(MAIN_EXITS); }

/* Last: every orbit process started above was reaped. */
static void test_no_zombies(void)
{
	int status;

	errno = 0;
	CHECK_EQ(waitpid(-1, &status, WNOHANG), -1);
	CHECK_EQ(errno, ECHILD);
}

/* A process forked from main (not an orbit) inherits copies of main's
 * orbits and areas: it must not use them, and leaving them must not disturb
 * main's orbit. */
static void test_forked_child_leaves_inherited_orbits(void)
{
	struct orbit *ob = orbit_create("fk", entry_echo, NULL, NULL);
	struct orbit_area *a = orbit_area_create(1 << 16, "auto");
	long v = 5, ret = 0;
	pid_t main_orbit, child;
	int st = 0;

	REQUIRE(ob && a);
	CHECK_EQ(orbit_call(ob, 0, NULL, NULL, &v, sizeof(v), &ret), 0);
	main_orbit = orbit_pid(ob);
	child = fork();
	if (child == 0) {
		struct orbit *mine = orbit_create("fk2", entry_echo, NULL, NULL);
		int ok = 1;

		/* main's orbit: refused, and destroying the copy is a no-op */
		ok &= orbit_call_async(ob, 0, 0, NULL, NULL, &v, sizeof(v)) == NULL &&
		      errno == ECHILD;
		ok &= orbit_destroy(ob) == -EPERM;
		/* an area of main's, passed to an orbit of our own: refused */
		ok &= orbit_call_async(mine, 0, 1, &a, NULL, &v, sizeof(v)) == NULL &&
		      errno == EXDEV;
		/* our own orbit works */
		ok &= orbit_call(mine, 0, NULL, NULL, &v, sizeof(v), &ret) == 0 && ret == 5;
		orbit_destroy(mine);
		_exit(ok ? 0 : 1);
	}
	REQUIRE(child > 0);
	waitpid(child, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	v = 7;
	CHECK_EQ(orbit_call(ob, 0, NULL, NULL, &v, sizeof(v), &ret), 0);
	CHECK_EQ(ret, 7);
	CHECK_EQ(orbit_pid(ob), main_orbit);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* A future inherited by a forked child is the owner's: waiting on it or
 * pulling its updates in the child must fail at once (ECHILD), never read
 * the owner's channel, which would steal main's answer. */
static long entry_slow_echo(void *arg, size_t argsize, void *store)
{
	usleep(200 * 1000);
	return entry_echo(arg, argsize, store);
}

static void test_forked_child_cannot_wait_inherited_future(void)
{
	struct orbit *ob = orbit_create("fkf", entry_slow_echo, NULL, NULL);
	struct orbit_future *f;
	long v = 9, ret = 0;
	pid_t child;
	int st = 0;

	REQUIRE(ob);
	f = orbit_call_async(ob, 0, 0, NULL, NULL, &v, sizeof(v));
	REQUIRE(f);
	child = fork();
	if (child == 0) {
		void *data = NULL;
		size_t len = 0;
		int ok = 1;

		alarm(20);
		ok &= orbit_future_wait(f, 5000, &ret) == -ECHILD;
		ok &= orbit_pull(f, 5000, &data, &len) == -ECHILD;
		orbit_future_release(f);	/* a no-op in the child */
		_exit(ok ? 0 : 1);
	}
	REQUIRE(child > 0);
	waitpid(child, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* main still gets its own answer, and its orbit was not disturbed */
	CHECK_EQ(orbit_future_get(f, &ret), 0);
	CHECK_EQ(ret, 9);
	orbit_future_release(f);
	v = 3;
	CHECK_EQ(orbit_call(ob, 0, NULL, NULL, &v, sizeof(v), &ret), 0);
	CHECK_EQ(ret, 3);
	orbit_destroy(ob);
}

int main(void)
{
	check_watchdog(55);
	/* Orphaned orbits of the forked "mains" below become our children. */
	subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0;
	RUN(test_lazy_start);
	RUN(test_init_once_per_process);
	RUN(test_options_applied);
	RUN(test_hooks);
	RUN(test_api_inside_orbit);
	RUN(test_forked_child_leaves_inherited_orbits);
	RUN(test_forked_child_cannot_wait_inherited_future);
	RUN(test_destroy_busy_and_idle);
	RUN(test_cycles_no_fd_growth);
	RUN(test_crash_cycles_no_fd_growth);
	RUN(test_orbit_dies_when_main_killed);
	RUN(test_busy_orbit_dies_when_main_killed);
	RUN(test_orbit_dies_when_main_exits);
	RUN(test_no_zombies);
	return CHECK_DONE();
}
