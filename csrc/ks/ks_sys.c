/*
 * ks_sys.c - the kernel backend: orbits whose snapshots the kernel makes.
 *
 * With the orbit_update() system call (kernel/patches), a call's snapshot
 * is no copy: main asks the kernel to make the orbit's memory in each area
 * a copy-on-write snapshot of its own, then sends the call.  Everything
 * else -- starting and binding the orbit process, the channel that carries
 * calls, results and updates, finding main's writes for the pre-call checks
 * (area_changed) -- is the userspace backend's, used through its operation
 * table: this file replaces only the operations where the two differ.
 *
 *   main process                         orbit process (forked from main)
 *   reservation (one writable mapping)   the same range, one mapping
 *     area = a piece of it  --orbit_update-->  pages shared copy-on-write
 *
 * orbit_update shares pages only between mappings of one anon_vma tree, so
 * the areas are pieces of one writable reservation (us_reserve_set_writable)
 * rather than mappings of their own, and the orbit's copy of the
 * reservation is a fresh mapping that the first update joins to main's.
 *
 * The update changes what the orbit sees at once, so it may only run
 * between calls: a call made while the orbit is busy answers -EAGAIN and
 * the core waits for the orbit to finish (see `call` in orbit_sys.h).
 *
 * Nor may it run before a new orbit process has set itself up: until then
 * the process holds the fork's copy of the reservation, which its setup
 * replaces with a fresh mapping (us_reserve_child_reset), dropping whatever
 * an update had put there -- the call would then read zeros.  So the first
 * call to a new process waits for the process's word that it is set up
 * (ks_wait_started), in prefault, where the core lets it block.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../us/us.h"
#include "uapi_orbit.h"

static struct orbit_sys_ops ks_ops;
static int ks_usable;	/* the kernel answered the probe */

static int ks_probe(void)
{
#ifdef __NR_orbit_update
	return syscall(__NR_orbit_update, -1, 0UL, 0UL, ORBIT_UPDATE_PROBE) == ORBIT_ABI_VERSION;
#else
	return 0;
#endif
}

static long ks_update(int pidfd, void *addr, size_t len)
{
#ifdef __NR_orbit_update
	return syscall(__NR_orbit_update, pidfd, (unsigned long)addr, (unsigned long)len, 0U);
#else
	(void)pidfd, (void)addr, (void)len;
	errno = ENOSYS;
	return -1;
#endif
}

static int ks_area_create(size_t size, const char *mode, struct orbit_sys_area **out,
			  void **base)
{
	int err;

	if (!ks_usable)
		return -ENOSYS;
	err = orbit_sys_user.area_create(size, mode, out, base);
	/* mprotect mode makes main's pages read-only pieces: the orbit's
	 * mapping would no longer have main's permissions. */
	if (!err && (*out)->trk->mode == DIRTY_TRACK_MPROTECT) {
		orbit_sys_user.area_destroy(*out);
		return -ENOTSUP;
	}
	return err;
}

static int ks_create(const struct orbit_spawn *sp, struct orbit_sys **out)
{
	if (!ks_usable)
		return -ENOSYS;
	return orbit_sys_user.create(sp, out);
}

/*
 * Wait until the orbit process has set itself up (spawn.c sets `started`
 * right after child_setup); -EPIPE if it ended first.  A spin first (a
 * process that is up already answers at once), then 1 ms sleeps on the
 * process's pidfd, which wake early when it exits.
 */
static int ks_wait_started(struct orbit_sys *s)
{
	uint64_t until = us_now_ns() + us_spin_ns();
	unsigned n = 0;

	if (s->pidfd < 0)	/* no pidfd: orbit_update could not name it either */
		return -EBADF;
	while (!atomic_load_explicit(&s->ctl->started, memory_order_acquire)) {
		struct pollfd p = { .fd = s->pidfd, .events = POLLIN };

		if (us_now_ns() < until) {
			us_spin_step(&n);
			continue;
		}
		if (poll(&p, 1, 1) > 0)
			return -EPIPE;
	}
	return 0;
}

/* Before the first call that names areas to a new process (the core
 * brackets it with the block hooks): nothing to allocate, only the wait for
 * the process to be set up, so that `call` does not wait with the hooks'
 * lock held. */
static int ks_prefault(struct orbit_sys *s, size_t narea, struct orbit_sys_area *const *areas)
{
	(void)narea;
	(void)areas;
	return ks_wait_started(s);
}

static int ks_call(struct orbit_sys *s, uint64_t seq, int idle, size_t narea,
		   struct orbit_sys_area *const *areas, orbit_entry entry,
		   const void *arg, size_t argsize, uint64_t scan, struct orbit_sync_stats *st)
{
	struct us_call_body body = { .entry = (uintptr_t)entry };
	int err = 0;

	(void)scan;
	(void)st;	/* nothing is copied: no pages to count */
	if (!idle)
		return -EAGAIN;
	/* Set up already when prefault ran (it does for the first call to
	 * each process that names areas): then this is one load. */
	if (narea) {
		err = ks_wait_started(s);
		if (err)
			return err;
	}
	pthread_mutex_lock(&s->send_lock);
	for (size_t i = 0; i < narea && !err; i++) {
		struct orbit_sys_area *a = areas[i];

		pthread_mutex_lock(&a->lock);
		if (a->dead)
			err = -EINVAL;
		else if (ks_update(s->pidfd, a->addr, a->size) < 0)
			err = errno == ESRCH ? -EPIPE : -errno;	/* the orbit is gone */
		pthread_mutex_unlock(&a->lock);
	}
	if (!err)	/* a body with no areas: nothing for the orbit to map */
		err = us_send_call(s, seq, &body, sizeof(body), arg, argsize, NULL, 0);
	pthread_mutex_unlock(&s->send_lock);
	return err;
}

/* The kernel backend's table, or NULL when the kernel lacks the calls and
 * the backend was not forced (forced, its operations fail with ENOSYS). */
const struct orbit_sys_ops *orbit_sys_kernel(int forced)
{
	/* Too late once the reservation exists (areas were made already). */
	ks_usable = ks_probe() && us_reserve_set_writable() == 0;
	if (!ks_usable && !forced)
		return NULL;
	ks_ops = orbit_sys_user;
	ks_ops.name = "kernel";
	ks_ops.area_create = ks_area_create;
	ks_ops.area_set_copy_filter = NULL;	/* nothing is copied */
	ks_ops.set_background_sync = NULL;	/* no copying between calls */
	ks_ops.create = ks_create;
	ks_ops.call = ks_call;
	ks_ops.prefault = ks_prefault;
	return &ks_ops;
}
