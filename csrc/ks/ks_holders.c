/*
 * ks_holders.c - where the snapshots of queued calls wait for the orbit.
 *
 * orbit_update() changes what the orbit sees at once, so main may use it on
 * the orbit only while the orbit is idle.  A call made while the orbit is
 * busy is queued, and its snapshot must be taken now (main goes on writing)
 * and applied when the orbit takes the call.  Main keeps it in a holder: a
 * child of its own that only sleeps, whose copy of the areas' range main
 * makes the snapshot with orbit_update(), copy-on-write, as it would the
 * orbit's.  When the orbit takes the call it makes its own range the
 * holder's with orbit_update(ORBIT_UPDATE_FROM_PIDFD) and clears the
 * holder's busy flag in a page both share: the holder is free for the next
 * queued call.
 *
 *   main --orbit_update--> holder k --orbit_update(FROM_PIDFD)--> orbit
 *        (at the call)                (by the orbit, when it takes the call)
 *
 * The orbit takes the snapshot itself rather than asking main to move it:
 * main may be busy (or hold its interpreter lock for long), and a round
 * trip to a thread of main would add two wake-ups to every queued call.
 * The price is that the orbit must be allowed to ptrace its holders (the
 * kernel's condition for taking pages from another process): they are
 * main's children, the orbit's siblings, so each names the orbit as its
 * ptracer for Yama (PR_SET_PTRACER), and a main that is not dumpable (or
 * Yama mode 2 and up) gets no holders: its calls wait for the orbit
 * instead.  The orbit's seccomp filter (us/harden.c) denies nothing the
 * orbit does here (pidfd_open of a holder, orbit_update of its own memory).
 *
 * Holders start when a queued call first needs one, not with the orbit: a
 * program that never queues calls with areas pays for none.  Each is a fork
 * of main (the page-table copy fork() costs) that replaces its copy of the
 * areas' reservation with an empty mapping at once, before main uses it,
 * and then sleeps until main is gone.  main kills and reaps them when the
 * orbit process ends (ks_holders_free), so none outlives its orbit or main.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ks.h"
#include "uapi_orbit.h"

/*
 * Holders per orbit process: how many calls with areas may wait behind the
 * running one with their snapshots taken; one more waits until the orbit
 * has caught up (as the userspace backend's call waits when its staging
 * ring is full).  Each holder is a process and a fork of main, so a few:
 * pipelines of calls rarely run more than a few ahead of the orbit.
 */
#define KS_HOLDERS 4

struct ks_holders_shared {
	_Atomic uint32_t busy[KS_HOLDERS];	/* main sets, the orbit clears */
};

struct ks_holders {
	struct ks_holders_shared *sh;	/* MAP_SHARED, inherited by the orbit */
	pid_t orbit;
	pid_t pid[KS_HOLDERS];		/* 0: not started */
	int pidfd[KS_HOLDERS];
};

struct ks_holders *ks_holders_new(void)
{
	struct ks_holders *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->sh = mmap(NULL, sizeof(*h->sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		     -1, 0);
	if (h->sh == MAP_FAILED) {
		free(h);
		return NULL;
	}
	for (int k = 0; k < KS_HOLDERS; k++)
		h->pidfd[k] = -1;
	return h;
}

void ks_holders_bind(struct ks_holders *h, pid_t orbit)
{
	h->orbit = orbit;
}

/* Close descriptors lo..hi. */
static void close_span(unsigned lo, unsigned hi)
{
	if (lo > hi)
		return;
#ifdef SYS_close_range
	if (syscall(SYS_close_range, lo, hi, 0U) == 0)
		return;
#endif
	for (unsigned fd = lo; fd <= hi && fd < 65536; fd++)
		close((int)fd);
}

/* Close every descriptor from 3 up but `a` and `b` (-1: none). */
static void close_all_but(int a, int b)
{
	int keep[2] = { a < b ? a : b, a < b ? b : a };
	unsigned from = 3;

	for (int i = 0; i < 2; i++) {
		if (keep[i] < (int)from)
			continue;
		close_span(from, (unsigned)keep[i] - 1);
		from = (unsigned)keep[i] + 1;
	}
	close_span(from, ~0U);
}

/*
 * The holder: a fork of main that only sleeps.  Only system calls here (the
 * fork of a threaded process may hold any lock of main's).  Its signals are
 * blocked: a Ctrl-C or SIGTERM to the process group is main's to decide
 * on, and only SIGKILL (from main) ends it, or main's end.
 */
static void __attribute__((noreturn)) holder_main(pid_t main_pid, pid_t orbit, int ready)
{
	char comm[16] = "orbit-holder";
	sigset_t all;
	int mfd;

	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	/* As for the orbit (us/lifetime.c): a stopped holder continues when
	 * main dies, and its poll below sees it. */
	prctl(PR_SET_PDEATHSIG, SIGCONT, 0, 0, 0);
	if (getppid() != main_pid)
		_exit(0);
	/* Drop the fork's share of main's areas before main puts a snapshot
	 * here: an empty mapping, which the first update joins to main's. */
	us_reserve_child_reset();
	prctl(PR_SET_NAME, comm, 0, 0, 0);
	prctl(PR_SET_PTRACER, orbit, 0, 0, 0);	/* EINVAL without Yama */
	mfd = us_pidfd_open(main_pid);
	/* main's descriptors: a socket or pipe held here would never see its
	 * end (the orbit's channel among them). */
	close_all_but(ready, mfd);
	if (write(ready, "r", 1) != 1)
		_exit(1);
	close(ready);
	for (;;) {
		if (mfd >= 0) {
			struct pollfd p = { .fd = mfd, .events = POLLIN };

			if (poll(&p, 1, 1000) > 0)
				_exit(0);
		} else {
			struct timespec ts = { 0, 50 * 1000 * 1000 };

			nanosleep(&ts, NULL);
		}
		if (getppid() != main_pid)
			_exit(0);
	}
}

/* May the orbit ptrace a holder?  Not with a main that is not dumpable
 * (it would need CAP_SYS_PTRACE), nor under Yama's admin-only modes. */
static int holders_allowed(void)
{
	static int yama = -1;

	if (yama < 0) {
		int fd = open("/proc/sys/kernel/yama/ptrace_scope", O_RDONLY | O_CLOEXEC);
		char c = '0';

		if (fd >= 0) {
			if (read(fd, &c, 1) != 1)
				c = '0';
			close(fd);
		}
		yama = c - '0';
	}
	return yama < 2 && prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1;
}

static int holder_start(struct ks_holders *h, int k)
{
	pid_t main_pid = getpid(), pid;
	int p[2], pidfd = -1, st;
	ssize_t n;
	char c;

	if (!holders_allowed() || pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid == 0)
		holder_main(main_pid, h->orbit, p[1]);
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		return -1;
	}
	/* Ready once its reservation is its own: main must not update it
	 * before (the holder would drop the snapshot). */
	do
		n = read(p[0], &c, 1);
	while (n < 0 && errno == EINTR);
	close(p[0]);
	if (n == 1)
		pidfd = us_pidfd_open(pid);
	if (pidfd < 0) {
		kill(pid, SIGKILL);
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		return -1;
	}
	h->pid[k] = pid;
	h->pidfd[k] = pidfd;
	return 0;
}

int ks_holder_take(struct ks_holders *h, pid_t *pid, uint64_t *done)
{
	int k, fresh = -1;

	for (k = 0; k < KS_HOLDERS; k++) {
		if (!h->pid[k]) {
			if (fresh < 0)
				fresh = k;
			continue;
		}
		if (!atomic_load_explicit(&h->sh->busy[k], memory_order_acquire))
			break;
	}
	if (k == KS_HOLDERS) {
		if (fresh < 0 || holder_start(h, fresh))
			return -1;
		k = fresh;
	}
	atomic_store_explicit(&h->sh->busy[k], 1, memory_order_relaxed);
	*pid = h->pid[k];
	*done = (uint64_t)(uintptr_t)&h->sh->busy[k];
	return h->pidfd[k];
}

static void holder_end(struct ks_holders *h, int k)
{
	int st;

	if (!h->pid[k])
		return;
	us_pidfd_signal(h->pidfd[k], h->pid[k], SIGKILL);
	while (waitpid(h->pid[k], &st, 0) < 0 && errno == EINTR)
		;
	close(h->pidfd[k]);
	h->pid[k] = 0;
	h->pidfd[k] = -1;
	atomic_store(&h->sh->busy[k], 0);
}

void ks_holder_put(struct ks_holders *h, pid_t pid, int gone)
{
	for (int k = 0; k < KS_HOLDERS; k++) {
		if (h->pid[k] != pid)
			continue;
		if (gone)
			holder_end(h, k);
		else
			atomic_store_explicit(&h->sh->busy[k], 0, memory_order_release);
	}
}

void ks_holders_free(struct ks_holders *h)
{
	if (!h)
		return;
	for (int k = 0; k < KS_HOLDERS; k++)
		holder_end(h, k);
	munmap(h->sh, sizeof(*h->sh));
	free(h);
}

/* ---- orbit side */

/* The orbit's pidfds of the holders it has taken snapshots from. */
static struct {
	pid_t pid;
	int fd;
} orbit_fds[KS_HOLDERS];

/* A pidfd of holder `pid`, opened on first use (again if `fresh`: the
 * one we had may name an earlier holder that had the same pid). */
static int orbit_holder_fd(pid_t pid, int fresh)
{
	int slot = -1;

	for (int k = 0; k < KS_HOLDERS; k++)
		if (orbit_fds[k].pid == pid) {
			if (!fresh)
				return orbit_fds[k].fd;
			slot = k;
			break;
		}
	for (int k = 0; slot < 0 && k < KS_HOLDERS; k++)
		if (!orbit_fds[k].pid)
			slot = k;
	if (slot < 0)
		slot = (int)((unsigned)pid % KS_HOLDERS);
	if (orbit_fds[slot].pid)
		close(orbit_fds[slot].fd);
	orbit_fds[slot].pid = 0;
	/* main reaps a holder only once it is dead and no call names it, or
	 * after this process: the pid is still the holder's (unless someone
	 * else in main reaped it, as it might the orbit itself). */
	orbit_fds[slot].fd = us_pidfd_open(pid);
	if (orbit_fds[slot].fd < 0)
		return -1;
	orbit_fds[slot].pid = pid;
	return orbit_fds[slot].fd;
}

int ks_holders_take_snapshot(const char *body, size_t len)
{
	struct ks_call_tail q;
	const char *p = body + sizeof(struct us_call_body);
	int fd;

	if (len < sizeof(struct us_call_body) + sizeof(q))
		return -EPROTO;
	memcpy(&q, p, sizeof(q));
	p += sizeof(q);
	if (!q.holder)
		return 0;
	if (q.narea > (len - sizeof(struct us_call_body) - sizeof(q)) / sizeof(struct ks_span))
		return -EPROTO;
	for (uint32_t i = 0; i < q.narea; i++) {
		void *addr;
		struct ks_span sp;
		long r;

		memcpy(&sp, p + i * sizeof(sp), sizeof(sp));
		addr = (void *)(uintptr_t)sp.addr;
		fd = orbit_holder_fd(q.holder, 0);
		r = fd < 0 ? -1 : ks_update(fd, addr, sp.size, ORBIT_UPDATE_FROM_PIDFD);
		if (r < 0 && errno == ESRCH) {
			fd = orbit_holder_fd(q.holder, 1);
			r = fd < 0 ? -1 : ks_update(fd, addr, sp.size, ORBIT_UPDATE_FROM_PIDFD);
		}
		if (r < 0)
			return -errno;
	}
	/* Taken: main may put the next snapshot there. */
	atomic_store_explicit((_Atomic uint32_t *)(uintptr_t)q.done, 0, memory_order_release);
	return 0;
}
