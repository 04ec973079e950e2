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
 * The update changes what the orbit sees at once, so main makes it in the
 * orbit only while the orbit is idle.  A call made while the orbit is busy
 * is queued with its snapshot in a holder process (ks_holders.c), which the
 * orbit takes into its own memory when it takes the call; with no holder
 * free, the call answers -EAGAIN and the core waits for the orbit to
 * finish (see `call` in orbit_sys.h).  Calls without areas need no
 * snapshot and are always queued.
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

#include "ks.h"
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

int orbit_kernel_has_calls(void)
{
	return ks_probe();
}

long ks_update(int pidfd, void *addr, size_t len, unsigned int flags)
{
#ifdef __NR_orbit_update
	return syscall(__NR_orbit_update, pidfd, (unsigned long)addr, (unsigned long)len, flags);
#else
	(void)pidfd, (void)addr, (void)len, (void)flags;
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
	struct ks_holders *h;
	int err;

	if (!ks_usable)
		return -ENOSYS;
	h = ks_holders_new();	/* before the fork: the orbit shares its flags */
	if (!h)
		return -ENOMEM;
	err = orbit_sys_user.create(sp, out);
	if (err) {
		ks_holders_free(h);
		return err;
	}
	ks_holders_bind(h, (*out)->pid);
	(*out)->ks = h;
	return 0;
}

static void ks_destroy(struct orbit_sys *s, int grace_ms, int *status)
{
	struct ks_holders *h = s->ks;

	orbit_sys_user.destroy(s, grace_ms, status);
	ks_holders_free(h);	/* after the orbit: it may be taking a snapshot */
}

/*
 * Wait until the orbit process has set itself up (spawn.c sets `started`
 * right after child_setup); -EPIPE if it ended first.  A spin first (a
 * process that is up already answers at once), then 1 ms sleeps on the
 * process's pidfd, which wake early when it exits.
 */
static int ks_wait_started(struct orbit_sys *s)
{
	uint64_t until;
	unsigned n = 0;

	if (s->pidfd < 0)	/* no pidfd: orbit_update could not name it either */
		return -EBADF;
	if (atomic_load_explicit(&s->ctl->started, memory_order_acquire))
		return 0;	/* every call but a new process's first: one load */
	until = us_now_ns() + us_spin_ns();
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
	struct {
		struct us_call_body us;	/* narea 0: the userspace half maps nothing */
		struct ks_call_tail q;
		struct ks_span span[ORBIT_MAX_CALL_AREAS];
	} body = { .us.entry = (uintptr_t)entry };
	size_t len = sizeof(body.us) + sizeof(body.q);
	int pidfd = s->pidfd, err = 0, lost = 0;
	pid_t holder = 0;
	uint64_t done = 0;

	(void)scan;
	(void)st;	/* nothing is copied: no pages to count */
	/* Set up already when prefault ran (it does for the first call to
	 * each process that names areas): then this is one load. */
	if (narea) {
		err = ks_wait_started(s);
		if (err)
			return err;
	}
	if (!idle && narea) {
		/* The orbit is busy: the snapshot goes to a holder, which the
		 * orbit takes it from when it takes the call.  None free: wait
		 * for the orbit (before any lock: this may fork a holder). */
		pidfd = ks_holder_take(s->ks, &holder, &done);
		if (pidfd < 0)
			return -EAGAIN;
	}
	pthread_mutex_lock(&s->send_lock);
	for (size_t i = 0; i < narea && !err; i++) {
		struct orbit_sys_area *a = areas[i];

		pthread_mutex_lock(&a->lock);
		if (a->dead)
			err = -EINVAL;
		else if (ks_update(pidfd, a->addr, a->size, 0) < 0)
			err = errno == ESRCH ? -EPIPE : -errno;	/* the process is gone */
		lost = holder && err == -EPIPE;
		pthread_mutex_unlock(&a->lock);
		body.span[i].addr = (uintptr_t)a->addr;
		body.span[i].size = a->size;
	}
	if (holder) {
		body.q.done = done;
		body.q.holder = holder;
		body.q.narea = (uint32_t)narea;
		len += narea * sizeof(body.span[0]);
	}
	if (!err)
		err = us_send_call(s, seq, &body, len, arg, argsize, NULL, 0);
	pthread_mutex_unlock(&s->send_lock);
	if (err && holder) {
		/* Not sent: the holder is free again.  One that is gone (killed
		 * by someone else) is reaped, replaced later; meanwhile the call
		 * waits for the orbit, as the seam allows. */
		ks_holder_put(s->ks, holder, lost);
		if (lost || err == -ENOMEM)
			err = -EAGAIN;
	}
	return err;
}

/* The orbit's side of a call: a queued call's snapshot waits in a holder. */
static int ks_recv(struct orbit_sys *s, struct orbit_request *rq)
{
	int rc = orbit_sys_user.recv(s, rq);	/* which ends the children on failure */

	if (rc)
		return rc;
	rc = ks_holders_take_snapshot(s->inbuf, (size_t)((char *)rq->arg - s->inbuf));
	if (rc)
		us_orbit_end_children();
	return rc;
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
	ks_ops.destroy = ks_destroy;
	ks_ops.call = ks_call;
	ks_ops.recv = ks_recv;
	ks_ops.prefault = ks_prefault;
	return &ks_ops;
}
