/*
 * lifetime.c - everything an orbit starts ends with it, and with main.
 *
 * An orbit is bound to main by its watchdog thread (spawn.c), which ends the
 * orbit when main is gone.  That is not enough on its own:
 *
 *  - processes the orbit started (a subprocess, a daemon that double-forked,
 *    one in a session of its own) would outlive it.  The orbit is a child
 *    subreaper, so every descendant stays in its process tree, however it
 *    was started; the orbit kills that tree whenever it ends (main gone, or
 *    main closed it), and main kills it before it kills the orbit
 *    (restart, timeout).
 *  - a stopped orbit (SIGSTOP) cannot run its watchdog.  Its parent-death
 *    signal is SIGCONT: when main dies, the kernel continues the orbit and
 *    the watchdog does the rest.  The parent-death signal fires when the
 *    thread of main that forked the orbit exits, often a worker thread while
 *    main lives on: SIGCONT is harmless then (a stopped orbit continues).
 *
 * Not covered: an orbit that dies on its own (a crash, os._exit, a SIGKILL
 * from elsewhere) leaves the processes it started to init, as any process
 * does; nothing of the orbit is left to end them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "us.h"

struct proc {
	pid_t pid, ppid;
	int mark;
};

/* Every live process on the system (zombies left out), or NULL. */
static struct proc *proc_list(size_t *n)
{
	DIR *d = opendir("/proc");
	struct proc *v = NULL;
	size_t cap = 0;
	struct dirent *e;

	*n = 0;
	if (!d)
		return NULL;
	while ((e = readdir(d))) {
		char path[64], buf[512], *rp, state;
		int pid = atoi(e->d_name), ppid, fd;
		ssize_t len;

		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "%d/stat", pid);
		fd = openat(dirfd(d), path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len <= 0)
			continue;
		buf[len] = 0;
		/* "pid (comm) state ppid ...": comm may hold spaces and ')' */
		rp = strrchr(buf, ')');
		if (!rp || sscanf(rp + 1, " %c %d", &state, &ppid) != 2)
			continue;
		if (state == 'Z' || state == 'X')
			continue;
		if (*n == cap) {
			struct proc *nv = realloc(v, (cap = cap ? 2 * cap : 256) * sizeof(*v));

			if (!nv)
				break;
			v = nv;
		}
		v[*n].pid = pid;
		v[*n].ppid = ppid;
		v[*n].mark = 0;
		(*n)++;
	}
	closedir(d);
	return v;
}

/* SIGKILL every live descendant of `root` once; how many there were. */
static size_t kill_descendants_once(pid_t root)
{
	size_t n, found = 0;
	struct proc *v = proc_list(&n);
	int more = 1;

	while (more) {		/* mark the tree, a generation per pass */
		more = 0;
		for (size_t i = 0; i < n; i++) {
			if (v[i].mark)
				continue;
			if (v[i].ppid == root)
				v[i].mark = more = 1;
			else
				for (size_t j = 0; j < n; j++)
					if (v[j].mark && v[j].pid == v[i].ppid) {
						v[i].mark = more = 1;
						break;
					}
		}
	}
	for (size_t i = 0; i < n; i++)
		if (v[i].mark) {
			kill(v[i].pid, SIGKILL);
			found++;
		}
	free(v);
	return found;
}

/*
 * Kill the tree under `root` until none of it is left.  `root` must not
 * fork meanwhile (it is stopped, or it is us) and must be a subreaper, so
 * that a process whose parent was killed is adopted by `root` and found in
 * the next round.  Bounded: a tree that keeps growing faster than it dies
 * is given up on after a while.
 */
void us_kill_descendants(pid_t root)
{
	for (int round = 0; round < 200; round++) {
		struct timespec ts = { 0, 1000 * 1000 };

		if (!kill_descendants_once(root))
			return;
		nanosleep(&ts, NULL);
	}
}

/*
 * The orbit, as it ends: kill what it started.  Cheap when it started
 * nothing: a subreaper with no child (zombies count) has no descendant.
 * Another thread of the orbit may fork in the moment between the last walk
 * and the exit; that child is not caught.
 */
void us_orbit_end_children(void)
{
	siginfo_t si;

	if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0)
		us_kill_descendants(getpid());
}

void us_orbit_exit(int code)
{
	us_orbit_end_children();
	_exit(code);
}

static void shutdown_signal(int sig)
{
	(void)sig;
}

void us_lifetime_child(void)
{
	struct sigaction sa;

	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	prctl(PR_SET_PDEATHSIG, SIGCONT, 0, 0, 0);
	/*
	 * Ctrl-C (SIGINT) and `systemctl stop`/`docker stop` (SIGTERM) reach the
	 * whole process group: main decides what happens to its orbits, and
	 * ends them with SIGKILL.  A handler that does nothing, rather than
	 * SIG_IGN, so that programs the orbit runs get the default action back
	 * at exec (an ignored signal stays ignored across exec).  It also
	 * replaces a Python handler main may have had when it forked.
	 */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = shutdown_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

int us_pidfd_open(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}

/* Signal a child through its pidfd where there is one: if someone else
 * reaped it (waitpid(-1) in main), its pid may be a stranger's by now. */
int us_pidfd_signal(int pidfd, pid_t pid, int sig)
{
#ifdef SYS_pidfd_send_signal
	if (pidfd >= 0)
		return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
#endif
	return kill(pid, sig);
}

static int signal_orbit(const struct orbit_sys *s, int sig)
{
	return us_pidfd_signal(s->pidfd, s->pid, sig);
}

/* main: end the orbit and everything it started (the tree once). */
void us_kill_orbit(struct orbit_sys *s)
{
	if (s->pid <= 0)
		return;
	if (!s->killed) {
		s->killed = 1;
		/* stopped, it starts nothing more while its tree dies */
		if (signal_orbit(s, SIGSTOP) == 0)
			us_kill_descendants(s->pid);
	}
	signal_orbit(s, SIGKILL);
}
