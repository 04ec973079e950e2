/*
 * us_sys.c - the userspace backend's operation table (see orbit_sys.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "us.h"

static uint32_t next_area_id = 1;
static pthread_mutex_t area_id_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t staging_size(void)
{
	const char *v = getenv("ORBITPY_STAGING");
	size_t sz = v && *v ? strtoull(v, NULL, 0) : 0;

	if (!sz)
		sz = 64UL << 20;
	return (sz + PM_PAGE_SIZE - 1) & ~(PM_PAGE_SIZE - 1);
}

static int us_area_create(size_t size, const char *mode,
			  struct orbit_sys_area **out, void **base)
{
	const struct dirty_track_ops *t = dirty_track_select(mode);
	struct orbit_sys_area *a;
	char *addr;
	int err;

	if (!t)
		return -errno;
	size = (size + PM_PAGE_SIZE - 1) & ~(PM_PAGE_SIZE - 1);
	if (!size)
		return -EINVAL;
	if (size > us_reserve_size())
		return -E2BIG;
	a = calloc(1, sizeof(*a));
	if (a) {
		a->ever = calloc((size / PM_PAGE_SIZE + 63) / 64, sizeof(uint64_t));
		a->changed = calloc((size / PM_PAGE_SIZE + 63) / 64, sizeof(uint64_t));
		a->recent = calloc((size / PM_PAGE_SIZE + 63) / 64, sizeof(uint64_t));
	}
	if (!a || !a->ever || !a->changed || !a->recent) {
		if (a) {
			free(a->ever);
			free(a->changed);
			free(a->recent);
		}
		free(a);
		return -ENOMEM;
	}
	err = us_reserve_range(size, &addr);
	if (err) {
		free(a->ever);
		free(a->changed);
		free(a->recent);
		free(a);
		return err;
	}
	/* A writable reservation's piece is mapped already (and empty). */
	if (!us_reserve_writable() &&
	    mmap(addr, size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED) {
		err = -errno;
		goto fail;
	}
	a->addr = addr;
	a->size = size;
	a->npages = size >> PM_PAGE_SHIFT;
	a->write_limit = size;
	a->trk = t;
	a->refs = 1;
	pthread_mutex_init(&a->lock, NULL);
	err = t->attach(addr, size, &a->trk_state);
	if (err)
		goto fail;
	pthread_mutex_lock(&area_id_lock);
	a->id = next_area_id++;
	pthread_mutex_unlock(&area_id_lock);
	us_bgsync_area_add(a);
	*out = a;
	*base = addr;
	return 0;
fail:
	us_reserve_release(addr, size);
	free(a->ever);
	free(a->changed);
	free(a->recent);
	free(a);
	return err;
}

static void us_area_destroy(struct orbit_sys_area *a)
{
	us_bgsync_area_remove(a);
	pthread_mutex_lock(&a->lock);
	a->dead = 1;
	a->trk->detach(a->trk_state, a->addr, a->size);
	us_area_release_links(a);
	pthread_mutex_unlock(&a->lock);
	us_reserve_release(a->addr, a->size);
	us_area_put(a);
}

static const char *us_area_mode(const struct orbit_sys_area *a)
{
	return a->trk->name;
}

static int us_create(const struct orbit_spawn *sp, struct orbit_sys **out)
{
	struct orbit_sys *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return -ENOMEM;
	s->sock = s->osock = s->pidfd = -1;
	s->stage_size = staging_size();
	pthread_mutex_init(&s->send_lock, NULL);
	err = us_spawn(s, sp);
	if (err) {
		pthread_mutex_destroy(&s->send_lock);
		free(s);
		return err;
	}
	*out = s;
	return 0;
}

static pid_t us_pid(const struct orbit_sys *s)
{
	return s->pid;
}

/* The message waiting in the mailbox, into s->rx as if read from the socket. */
static int take_mailbox(struct orbit_sys *s)
{
	struct us_mbox *mb = &s->ctl->to_main;
	struct us_hdr h;

	if (mb->len < sizeof(h))
		return -EPROTO;
	memcpy(&h, mb->data, sizeof(h));
	if (h.magic != US_MAGIC || h.len != mb->len - sizeof(h))
		return -EPROTO;
	s->rx.payload = h.len ? malloc(h.len) : NULL;
	if (h.len && !s->rx.payload)
		return -ENOMEM;
	if (h.len)
		memcpy(s->rx.payload, mb->data + sizeof(h), h.len);
	s->rx.hdr = h;
	s->rx.hdr_got = sizeof(h);
	s->rx.got = h.len;
	us_mbox_release(mb);
	return 0;
}

static int us_pull(struct orbit_sys *s, int timeout_ms, struct orbit_msg *m)
{
	struct us_mbox *mb = &s->ctl->to_main;
	int rc;

	if (s->rx.hdr_got == 0 && timeout_ms != 0) {
		uint64_t until = us_now_ns() + us_spin_ns();
		unsigned n = 0;

		while (!us_msg_waiting(mb, &s->ctl->resp_count, s->resp_seen)) {
			if (us_now_ns() >= until)
				break;
			us_spin_step(&n);
		}
	}
	rc = us_rx_poll(s->sock, &s->rx, mb, &s->ctl->resp_count, s->resp_seen, timeout_ms);
	if (rc == 2)
		rc = take_mailbox(s);
	if (rc < 0)
		return rc;
	m->kind = (int)s->rx.hdr.kind;
	m->seq = s->rx.hdr.seq;
	m->retval = (long)s->rx.hdr.retval;
	m->data = s->rx.payload;
	m->len = s->rx.hdr.len;
	m->pages_reset = m->kind == ORBIT_MSG_RESULT ? s->rx.hdr.aux & ~US_SKIPPED : 0;
	m->skipped = m->kind == ORBIT_MSG_RESULT && (s->rx.hdr.aux & US_SKIPPED);
	memset(&s->rx, 0, sizeof(s->rx));
	s->resp_seen++;
	atomic_store_explicit(&s->ctl->resp_taken, s->resp_seen, memory_order_release);
	return 0;
}

static void us_kill(struct orbit_sys *s)
{
	us_kill_orbit(s);
}

static void us_destroy(struct orbit_sys *s, int grace_ms, int *status)
{
	us_registry_remove(s);
	if (s->sock >= 0)
		close(s->sock);	/* the orbit reads end-of-stream and exits */
	s->sock = -1;
	us_reap(s, grace_ms, status);
	if (s->pidfd >= 0)
		close(s->pidfd);
	us_links_free(s);
	free(s->forget);
	free(s->rx.payload);
	free(s->scratch);
	us_shared_free(s);
	pthread_mutex_destroy(&s->send_lock);
	free(s);
}

/* A failed recv or ret ends the orbit (main closed it, or is gone): so do
 * the processes it started. */
static int us_recv(struct orbit_sys *s, struct orbit_request *rq)
{
	int rc = us_view_recv(s, rq);

	if (rc)
		us_orbit_end_children();
	return rc;
}

static int us_ret(struct orbit_sys *s, const struct orbit_request *rq, long retval,
		  const void *data, size_t len)
{
	int rc = us_out_send(s, ORBIT_MSG_RESULT, rq->seq, retval,
			     rq->pages_reset | (rq->cancelled ? US_SKIPPED : 0), data, len);

	/* Done with the views until the next call (background_sync's cue). */
	atomic_fetch_add_explicit(&s->ctl->calls_done, 1, memory_order_release);
	if (rc)
		us_orbit_end_children();
	return rc;
}

static void us_cancel(struct orbit_sys *s, uint64_t below)
{
	atomic_store(&s->ctl->cancel_below, below);
}

/* A slot still holding an earlier cancelled seq is overwritten: that call
 * then runs, and main drops its result. */
static void us_cancel_one(struct orbit_sys *s, uint64_t seq)
{
	atomic_store(&s->ctl->skip[seq % US_SKIP_SLOTS], seq);
}

static int us_push(struct orbit_sys *s, uint64_t seq, const void *data, size_t len)
{
	return us_out_send(s, ORBIT_MSG_UPDATE, seq, 0, 0, data, len);
}

const struct orbit_sys_ops orbit_sys_user = {
	.name = "userspace",
	.page_size = PM_PAGE_SIZE,
	.area_create = us_area_create,
	.area_destroy = us_area_destroy,
	.area_mode = us_area_mode,
	.area_set_write_limit = us_area_set_write_limit,
	.area_changed = us_area_changed,
	.area_set_copy_filter = us_area_set_copy_filter,
	.reservation_size = us_reserve_size,
	.rearm_fault_handler = dirty_track_mprotect_rearm,
	.set_background_sync = us_bgsync_set_period,
	.create = us_create,
	.pid = us_pid,
	.call = us_snapshot_call,
	.prefault = us_prefault,
	.pull = us_pull,
	.cancel = us_cancel,
	.cancel_one = us_cancel_one,
	.kill = us_kill,
	.destroy = us_destroy,
	.recv = us_recv,
	.ret = us_ret,
	.push = us_push,
};
