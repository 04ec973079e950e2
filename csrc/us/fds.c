/*
 * fds.c - which of main's descriptors a new orbit keeps.
 *
 * An orbit is forked from main, so it starts with every descriptor main had.
 * Holding them is not harmless: a pipe main closes never reaches end-of-file
 * while an orbit lives, a listening socket main closed keeps accepting
 * connections nobody serves, a memfd keeps its memory.  Like subprocess's
 * close_fds, an orbit drops them, except
 *   - 0, 1 and 2, and the descriptors the caller asks to keep (pass_fds);
 *   - regular files, directories and devices: they hold no peer waiting for
 *     an end-of-file, and stdlib code a task commonly runs writes to them
 *     (logging.FileHandler, faulthandler's file), so they keep working.
 * Sockets, pipes, memfds and anonymous-inode descriptors (eventfd, epoll,
 * timerfd, signalfd, pidfd, userfaultfd, ...) are dropped.
 *
 * "Dropped" means replaced by /dev/null, not closed: the orbit runs main's
 * Python objects, and a socket object main had still thinks it owns its
 * number.  Closed, that number would be handed to the next descriptor the
 * orbit opens, and the object's eventual close() (or send()) would hit it.
 * Over /dev/null the number stays taken, the object's calls fail (a socket
 * call raises ENOTSOCK) or do nothing, and the original file is released.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "us.h"

/* A memfd (memory: other orbits' snapshots among them), told by its /proc
 * link; without /proc, kept. */
static int is_memfd(int fd)
{
	char path[64], target[16];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target));
	return n >= (ssize_t)strlen("/memfd:") && !memcmp(target, "/memfd:", strlen("/memfd:"));
}

/* Does the orbit keep main's descriptor `fd`? */
static int keep_inherited(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return 1;	/* not open (or unknowable): nothing to drop */
	switch (st.st_mode & S_IFMT) {
	case S_IFREG:		/* memfds have no name: only unlinked files can be */
		return st.st_nlink > 0 || !is_memfd(fd);
	case S_IFDIR:
	case S_IFCHR:
	case S_IFBLK:
		return 1;
	default:		/* sockets, pipes, anonymous inodes (type 0) */
		return 0;
	}
}

static int in_list(int fd, const int *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (list[i] == fd)
			return 1;
	return 0;
}

static void drop(int fd, int devnull)
{
	if (devnull < 0 || dup3(devnull, fd, O_CLOEXEC) < 0)
		close(fd);
}

/* No /proc: every number up to the descriptor limit (capped). */
static void drop_scan_all(int own, const int *keep, size_t nkeep, int devnull)
{
	struct rlimit rl;
	int max = 65536;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < (rlim_t)max)
		max = (int)rl.rlim_cur;
	for (int fd = 3; fd < max; fd++)
		if (fd != own && fd != devnull && !in_list(fd, keep, nkeep) && !keep_inherited(fd))
			drop(fd, devnull);
}

/*
 * The open descriptors, from /proc/self/fd read with getdents64 into a
 * buffer on the stack: this runs in every new orbit, where opendir()'s
 * 32 KiB buffer alone costs page faults (~70 us measured).
 */
void us_drop_inherited_fds(int own, const int *keep, size_t nkeep)
{
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char buf[2048] __attribute__((aligned(8)));
	long n;

	if (dir < 0) {
		drop_scan_all(own, keep, nkeep, devnull);
		goto out;
	}
	while ((n = syscall(SYS_getdents64, dir, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < n;) {
			struct dirent64 *e = (struct dirent64 *)(buf + off);
			int fd = atoi(e->d_name);

			off += e->d_reclen;
			if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd <= 2 || fd == dir ||
			    fd == own || fd == devnull || in_list(fd, keep, nkeep))
				continue;
			if (!keep_inherited(fd))
				drop(fd, devnull);
		}
	}
	close(dir);
out:
	if (devnull >= 0)
		close(devnull);
}
