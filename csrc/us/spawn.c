/*
 * spawn.c - starting, binding and reaping an orbit process.
 *
 * The orbit is forked from main, so it starts with main's code, data and
 * address-space reservation.  It is bound to main for life: a watchdog
 * thread in the orbit polls a pidfd of main (or, on old kernels, its parent
 * pid) and ends the orbit when main is gone, however main died.  (The
 * parent-death signal cannot end the orbit: it fires when the forking
 * *thread* exits.  It only wakes a stopped orbit: see lifetime.c.)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "us.h"

static struct orbit_sys *registry;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

void us_registry_remove(struct orbit_sys *s)
{
	pthread_mutex_lock(&registry_lock);
	for (struct orbit_sys **pp = &registry; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	pthread_mutex_unlock(&registry_lock);
}

struct watchdog {
	pid_t main_pid;
	int pidfd;
};

static void *watchdog_main(void *arg)
{
	struct watchdog *w = arg;

	for (;;) {
		if (w->pidfd >= 0) {
			struct pollfd p = { .fd = w->pidfd, .events = POLLIN };

			if (poll(&p, 1, 1000) > 0)
				us_orbit_exit(0);
		} else {
			struct timespec ts = { 0, 50 * 1000 * 1000 };

			nanosleep(&ts, NULL);
		}
		if (getppid() != w->main_pid)
			us_orbit_exit(0);
	}
	return NULL;
}

/* Returns the watchdog's pidfd of main, or -1. */
static int start_watchdog(pid_t main_pid)
{
	static struct watchdog w;
	pthread_attr_t attr;
	pthread_t t;
	sigset_t all, old;

	w.main_pid = main_pid;
	w.pidfd = us_pidfd_open(main_pid);
	/* main may have died between fork and pidfd_open: then our parent is
	 * already someone else, and the pidfd (if any) names a stranger. */
	if (getppid() != main_pid)
		_exit(0);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);	/* signals go to the orbit's thread */
	if (pthread_create(&t, &attr, watchdog_main, &w) != 0)
		_exit(ORBIT_EXIT_NO_WATCHDOG);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return w.pidfd;
}

/* Runs in the new process, before anything else. */
static void child_setup(struct orbit_sys *s, const struct orbit_spawn *sp, int main_end)
{
	char comm[16];

	/* Close main's ends of every other orbit: an orbit must not keep
	 * another one's channel (or main's liveness) open. */
	close(main_end);
	for (struct orbit_sys *o = registry; o; o = o->next) {
		if (o == s)
			continue;
		if (o->sock >= 0)
			close(o->sock);
		if (o->pidfd >= 0)
			close(o->pidfd);
		us_shared_free(o);
	}
	/* Then main's own (other orbits' snapshots among them): see fds.c. */
	us_drop_inherited_fds(s->osock, sp->keep_fds, sp->nkeep_fds);
	pthread_mutex_init(&registry_lock, NULL);
	dirty_track_child_reset();
	us_reserve_child_reset();

	snprintf(comm, sizeof(comm), "orbit:%s", sp->name ? sp->name : "");
	prctl(PR_SET_NAME, comm, 0, 0, 0);
	us_lifetime_child();	/* before the watchdog: see lifetime.c */
	signal(SIGPIPE, SIG_IGN);
	if (sp->nice) {
		errno = 0;
		int cur = getpriority(PRIO_PROCESS, 0);

		if (errno == 0)
			setpriority(PRIO_PROCESS, 0, cur + sp->nice);
	}
	if (sp->cpu_mask) {
		cpu_set_t set;

		CPU_ZERO(&set);
		for (int i = 0; i < 64; i++)
			if (sp->cpu_mask & (1ULL << i))
				CPU_SET(i, &set);
		sched_setaffinity(0, sizeof(set), &set);
	}
	if (sp->memory_limit) {
		us_memory_limit_child(sp->memory_limit);
		s->memory_limit = sp->memory_limit;
	}
	{
		int main_pidfd = start_watchdog(s->main_pid);

		if (sp->harden)	/* best effort: see harden.c */
			us_harden_child(s->main_pid, main_pidfd);
	}
}

/* The channel and shared pages of a new orbit.  Registry lock held. */
static int shared_create(struct orbit_sys *s, int sv[2])
{
	int bufsz = 4 << 20;

	s->ctl = mmap(NULL, sizeof(*s->ctl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		      -1, 0);
	if (s->ctl == MAP_FAILED)
		goto fail;
	s->stage = mmap(NULL, s->stage_size, PROT_READ | PROT_WRITE,
			MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s->stage == MAP_FAILED)
		goto fail;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		goto fail;
	for (int i = 0; i < 2; i++) {
		setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz));
		setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof(bufsz));
	}
	return 0;
fail:
	{
		int err = -errno;

		us_shared_free(s);
		return err;
	}
}

void us_shared_free(struct orbit_sys *s)
{
	if (s->ctl && s->ctl != MAP_FAILED)
		munmap(s->ctl, sizeof(*s->ctl));
	if (s->stage && s->stage != MAP_FAILED)
		munmap(s->stage, s->stage_size);
	s->ctl = NULL;
	s->stage = NULL;
}

/*
 * Everything an orbit shares with main is created, and the orbit registered,
 * under the registry lock that every fork holds: an orbit forked by another
 * thread either predates these objects or finds them in the registry and
 * drops them (child_setup).
 */
int us_spawn(struct orbit_sys *s, const struct orbit_spawn *sp)
{
	int sv[2], err;
	pid_t pid;

	s->main_pid = getpid();
	/* The areas' address range must exist before the fork, even if main
	 * has no area yet: an area made later is mapped at its address in the
	 * orbit too, which must be free there (and inside the orbit's
	 * address-space limit, see memlimit.c). */
	us_reserve_size();
	if (sp->hooks && sp->hooks->before_fork)
		sp->hooks->before_fork(sp->hooks->ctx);
	pthread_mutex_lock(&registry_lock);
	err = shared_create(s, sv);
	if (err) {
		pthread_mutex_unlock(&registry_lock);
		if (sp->hooks && sp->hooks->after_fork_parent)
			sp->hooks->after_fork_parent(sp->hooks->ctx);
		return err;
	}
	pid = fork();
	if (pid == 0) {
		if (sp->hooks && sp->hooks->after_fork_child)
			sp->hooks->after_fork_child(sp->hooks->ctx);
		s->osock = sv[1];
		s->sock = -1;
		s->pidfd = -1;
		child_setup(s, sp, sv[0]);
		/* From here on nothing in this process replaces its
		 * mappings of the areas: the kernel backend waits for this
		 * before its first orbit_update (ks/ks_sys.c). */
		atomic_store_explicit(&s->ctl->started, 1, memory_order_release);
		sp->child_main(s, sp->child_arg);
		_exit(0);
	}
	err = pid < 0 ? -errno : 0;
	close(sv[1]);
	if (!err) {
		s->pid = pid;
		s->sock = sv[0];
		s->osock = -1;
		s->pidfd = us_pidfd_open(pid);
		s->next = registry;
		registry = s;
	} else {
		close(sv[0]);
		us_shared_free(s);
	}
	pthread_mutex_unlock(&registry_lock);
	if (sp->hooks && sp->hooks->after_fork_parent)
		sp->hooks->after_fork_parent(sp->hooks->ctx);
	return err;
}

/* Wait for the process to end, killing it after grace_ms (-1: wait forever). */
void us_reap(struct orbit_sys *s, int grace_ms, int *status)
{
	int st = -1;
	pid_t r;

	if (s->pid <= 0) {
		*status = -1;
		return;
	}
	if (grace_ms >= 0) {
		uint64_t deadline = us_now_ns() + (uint64_t)grace_ms * 1000000ULL;

		for (;;) {
			r = waitpid(s->pid, &st, WNOHANG);
			if (r == s->pid || (r < 0 && errno != EINTR))
				goto done;
			if (us_now_ns() >= deadline)
				break;
			if (s->pidfd >= 0) {
				struct pollfd p = { .fd = s->pidfd, .events = POLLIN };
				uint64_t left = (deadline - us_now_ns()) / 1000000ULL;

				poll(&p, 1, (int)left + 1);
			} else {
				struct timespec ts = { 0, 1000 * 1000 };

				nanosleep(&ts, NULL);
			}
		}
		us_kill_orbit(s);
	}
	do
		r = waitpid(s->pid, &st, 0);
	while (r < 0 && errno == EINTR);
done:
	if (r != s->pid)
		st = -1;	/* someone else reaped it (waitpid(-1) in main) */
	*status = st;
	s->pid = 0;
}
