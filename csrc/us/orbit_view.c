/*
 * orbit_view.c - the orbit's half: its views of the areas, and its messages
 * to main.
 *
 * A view is the orbit's base copy of an area mapped MAP_PRIVATE at the
 * area's address.  Reads see the base; a write makes a private copy of the
 * page, which never reaches main.  Before each call the orbit finds the
 * pages it wrote (the tracker's own_writes query) and drops them
 * (MADV_DONTNEED), so the call sees the base, which main keeps current.
 * Main writes the base through its own mapping, so the orbit's page table
 * entries for base pages stay valid across calls: a new view is prefaulted
 * once (the pages the base holds), and reading it costs no fault after that.
 *
 * Messages to main go through a queue flushed without blocking: the orbit
 * never waits for main to read, so a main that is busy (or blocked sending
 * the next call) cannot deadlock with an orbit pushing updates.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "us.h"

struct us_view {
	struct us_view *next;
	uint32_t id;
	enum dirty_track_mode mode;
	char *addr;
	size_t size;
	char *base;		/* MAP_SHARED view of the base, for staged copies */
	int armed;		/* the tracker follows our writes to the view */
};

struct us_outq {
	struct us_outq *next;
	size_t len, off;
	char data[];
};

int us_out_flush(struct orbit_sys *s)
{
	while (s->outq) {
		struct us_outq *q = s->outq;
		ssize_t n = send(s->osock, q->data + q->off, q->len - q->off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return -errno;	/* main is gone */
		}
		q->off += (size_t)n;
		if (q->off < q->len)
			continue;
		s->outq = q->next;
		if (!s->outq)
			s->outq_tail = NULL;
		free(q);
		atomic_fetch_add(&s->ctl->resp_count, 1);
	}
	return 0;
}

int us_out_send(struct orbit_sys *s, uint32_t kind, uint64_t seq, long retval, uint64_t aux,
		const void *data, size_t len)
{
	struct us_hdr h = { .magic = US_MAGIC, .kind = kind, .seq = seq, .len = len,
			    .retval = retval, .aux = aux };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)data, len } };
	struct us_outq *q;

	/* Nothing queued and main has read every earlier message: the
	 * mailbox, if it fits (mailbox.c). */
	if (!s->outq &&
	    atomic_load_explicit(&s->ctl->resp_taken, memory_order_acquire) ==
		    atomic_load_explicit(&s->ctl->resp_count, memory_order_relaxed) &&
	    us_mbox_put(&s->ctl->to_main, iov, 2)) {
		atomic_fetch_add(&s->ctl->resp_count, 1);
		return 0;
	}
	q = malloc(sizeof(*q) + sizeof(struct us_hdr) + len);
	if (!q)
		return -ENOMEM;
	q->next = NULL;
	q->len = sizeof(h) + len;
	q->off = 0;
	memcpy(q->data, &h, sizeof(h));
	if (len)
		memcpy(q->data + sizeof(h), data, len);
	if (s->outq_tail)
		s->outq_tail->next = q;
	else
		s->outq = q;
	s->outq_tail = q;
	return us_out_flush(s);
}

static struct us_view *view_find(struct orbit_sys *s, uint32_t id)
{
	for (struct us_view *v = s->views; v; v = v->next)
		if (v->id == id)
			return v;
	return NULL;
}

static int view_map(struct orbit_sys *s, const struct us_area_rec *rec, int fd)
{
	struct us_view *v = view_find(s, rec->id);
	void *p;

	if (!v) {
		v = calloc(1, sizeof(*v));
		if (!v)
			return -ENOMEM;
		v->next = s->views;
		s->views = v;
		if (s->memory_limit)	/* the view is not the orbit's allocation */
			us_raise_memory_limit(rec->size);
	} else if (v->base) {
		munmap(v->base, v->size);	/* a new base replaces the old one */
	}
	v->id = rec->id;
	v->mode = (enum dirty_track_mode)rec->mode;
	v->addr = (char *)(uintptr_t)rec->addr;
	v->size = rec->size;
	v->base = mmap(NULL, v->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (v->base == MAP_FAILED) {
		v->base = NULL;
		return -errno;
	}
	p = mmap(v->addr, v->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	{
		const struct dirty_track_ops *t = dirty_track_for_mode(v->mode);

		v->armed = t && t->own_attach && t->own_attach(v->addr, v->size) == 0;
	}
	return 0;
}

/* Main destroyed the area: unmap our copy (its memory goes with it) and give
 * the address back to the reservation, as it was before the view. */
static void view_forget(struct orbit_sys *s, uint32_t id)
{
	for (struct us_view **pp = &s->views; *pp; pp = &(*pp)->next) {
		struct us_view *v = *pp;

		if (v->id != id)
			continue;
		*pp = v->next;
		if (v->base)
			munmap(v->base, v->size);
		mmap(v->addr, v->size, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
		free(v);
		return;
	}
}

/*
 * Map every page the base holds into a new view, readable: random reads of a
 * large structure (a dict of a million records) otherwise take a page fault
 * per page first touched, call after call, and reading would cost several
 * times what it does in main.  Holes stay holes (a read there would allocate
 * the page).  Best effort: without MADV_POPULATE_READ (Linux < 5.14) pages
 * fault in as they are read.
 */
static void view_populate(struct us_view *v, int fd)
{
	off_t pos = 0, end = (off_t)v->size;

	while (pos < end) {
		off_t data = lseek(fd, pos, SEEK_DATA), hole;

		if (data < 0 || data >= end)
			break;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0 || hole > end)
			hole = end;
		if (madvise(v->addr + data, (size_t)(hole - data), MADV_POPULATE_READ) < 0 &&
		    errno != EINTR)
			break;
		pos = hole;
	}
}

/*
 * Dropping the pages goes through process_madvise() in batches where the
 * kernel allows MADV_DONTNEED there (newer kernels, for the calling process):
 * one call and one TLB flush for many scattered pages, ~0.5 us a page against
 * ~1.5 us for an madvise() each (measured: 1,100 single pages of a 512 MiB
 * view).  Otherwise, and for what a batch could not drop, madvise() each.
 */
#define DISCARD_BATCH 512

struct discard_ctx {
	char *addr;
	uint64_t pages;
	struct iovec iov[DISCARD_BATCH];
	int n;
};

static int self_pidfd = -2;	/* -2: not tried yet, -1: no batching */

static int batch_madvise(const struct iovec *iov, int n)
{
#if defined(SYS_pidfd_open) && defined(SYS_process_madvise)
	size_t want = 0;
	long done;

	if (self_pidfd == -2)	/* pidfds are always close-on-exec */
		self_pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	if (self_pidfd < 0)
		return 0;
	for (int i = 0; i < n; i++)
		want += iov[i].iov_len;
	done = syscall(SYS_process_madvise, self_pidfd, iov, (size_t)n, MADV_DONTNEED, 0U);
	if (done < 0 && (errno == EINVAL || errno == ENOSYS || errno == EPERM)) {
		close(self_pidfd);	/* not for DONTNEED here: stop trying */
		self_pidfd = -1;
	}
	return done == (long)want;
#else
	(void)iov;
	(void)n;
	return 0;
#endif
}

static void discard_flush(struct discard_ctx *d)
{
	if (d->n && !batch_madvise(d->iov, d->n))
		for (int i = 0; i < d->n; i++)	/* dropping twice is harmless */
			madvise(d->iov[i].iov_base, d->iov[i].iov_len, MADV_DONTNEED);
	d->n = 0;
}

static void discard_cb(void *ctx, size_t first, size_t n)
{
	struct discard_ctx *d = ctx;

	d->iov[d->n].iov_base = d->addr + (first << PM_PAGE_SHIFT);
	d->iov[d->n].iov_len = n << PM_PAGE_SHIFT;
	if (++d->n == DISCARD_BATCH)
		discard_flush(d);
	d->pages += n;
}

/* Drop the orbit's own writes to a view; returns pages dropped or -errno. */
static int64_t view_discard(struct us_view *v)
{
	const struct dirty_track_ops *t = dirty_track_for_mode(v->mode);
	struct discard_ctx d = { .addr = v->addr };
	int err;

	if (!t || !t->own_writes) {
		/* No way to tell: drop every private page. */
		if (madvise(v->addr, v->size, MADV_DONTNEED) < 0)
			return -errno;
		return 0;
	}
	err = t->own_writes(v->addr, v->size, v->armed, discard_cb, &d);
	discard_flush(&d);
	return err ? err : (int64_t)d.pages;
}

/* Main's next call is complete: in the mailbox, or counted (in the socket).
 * Callers look at the mailbox again after this: a count ahead of ours with
 * the mailbox not FULL then means the call is in the socket (mailbox.c). */
static int call_waiting(struct orbit_sys *s)
{
	return us_msg_waiting(&s->ctl->to_orbit, &s->ctl->req_count, s->req_seen);
}

/*
 * Wait for the next message from main, flushing our queue meanwhile: 1 when
 * it is in the mailbox, 0 when it is (or is coming) in the socket, or the
 * socket ended.  (A call taken from the mailbox is counted a moment after
 * it is put there, hence the signed comparison in us_count_ahead.)
 */
static int wait_readable(struct orbit_sys *s)
{
	uint64_t spin_until = us_now_ns() + us_spin_ns();
	struct us_mbox *mb = &s->ctl->to_orbit;
	unsigned n = 0;

	/* A hot caller: answer without a scheduler round trip. */
	while (!s->outq) {
		if (call_waiting(s))
			return us_mbox_full(mb);
		if (us_now_ns() >= spin_until)
			break;
		us_spin_step(&n);
	}
	for (;;) {
		struct pollfd p = { .fd = s->osock, .events = POLLIN };
		int err, rc;

		if (call_waiting(s))
			return us_mbox_full(mb);
		/* From here main sends through the socket, which wakes us. */
		if (us_mbox_sleep(mb))
			return 1;
		if (call_waiting(s)) {
			us_mbox_wake(mb);
			return 0;
		}
		if (s->outq)
			p.events |= POLLOUT;
		rc = poll(&p, 1, -1);
		err = errno;
		us_mbox_wake(mb);
		if (rc < 0) {
			if (err == EINTR)
				continue;
			return -err;
		}
		if (p.revents & POLLOUT) {
			err = us_out_flush(s);
			if (err)
				return err;
		}
		/* The mailbox looked at after the socket's bytes were seen
		 * (mailbox.c, "Order"): a call main put there before sending
		 * those is FULL by now. */
		if (p.revents & (POLLIN | POLLHUP | POLLERR))
			return us_mbox_full(mb);
	}
}

/* The call waiting in the mailbox, copied out (its argument must outlive
 * the mailbox's next message). */
static int take_mailbox(struct orbit_sys *s, struct us_hdr *h)
{
	struct us_mbox *mb = &s->ctl->to_orbit;
	size_t len = mb->len;

	if (len < sizeof(*h))
		return -EPROTO;
	memcpy(h, mb->data, sizeof(*h));
	if (h->magic != US_MAGIC || h->len != len - sizeof(*h))
		return -EPROTO;
	if (h->len > s->inbuf_cap) {
		char *nb = realloc(s->inbuf, h->len);

		if (!nb)
			return -ENOMEM;
		s->inbuf = nb;
		s->inbuf_cap = h->len;
	}
	if (h->len)
		memcpy(s->inbuf, mb->data + sizeof(*h), h->len);
	us_mbox_release(mb);
	return 0;
}

int us_view_recv(struct orbit_sys *s, struct orbit_request *rq)
{
	int fds[US_MAX_FDS], nfds = 0, fdi = 0, err;
	struct us_call_body body;
	struct us_hdr h;
	const char *p;
	int64_t reset = 0;

	err = wait_readable(s);
	if (err < 0)
		return err;
	if (err)
		err = take_mailbox(s, &h);
	else
		err = us_read_msg(s->osock, &h, &s->inbuf, &s->inbuf_cap, fds, &nfds,
				  US_MAX_FDS);
	if (err)
		return err;
	s->req_seen++;
	atomic_store_explicit(&s->ctl->req_taken, s->req_seen, memory_order_release);
	if (h.kind != US_MSG_CALL || h.aux > h.len || h.aux < sizeof(body))
		return -EPROTO;
	memcpy(&body, s->inbuf, sizeof(body));
	p = s->inbuf + sizeof(body);
	if (body.nforget > (h.aux - sizeof(body)) / sizeof(uint32_t) ||
	    US_FORGET_BYTES(body.nforget) > h.aux - sizeof(body))
		return -EPROTO;
	for (uint32_t i = 0; i < body.nforget; i++) {	/* before any new view */
		uint32_t id;

		memcpy(&id, p + i * sizeof(id), sizeof(id));
		view_forget(s, id);
	}
	p += US_FORGET_BYTES(body.nforget);
	for (uint32_t i = 0; i < body.narea; i++) {
		struct us_area_rec rec;
		struct us_view *v;
		uint64_t pos;
		int new_fd = -1;

		memcpy(&rec, p, sizeof(rec));
		p += sizeof(rec);
		if (rec.new_fd) {
			if (fdi >= nfds)
				return -EPROTO;
			new_fd = fds[fdi++];
			err = view_map(s, &rec, new_fd);
			if (err) {
				close(new_fd);
				return err;
			}
			v = view_find(s, rec.id);
		} else {
			int64_t r;

			v = view_find(s, rec.id);
			if (!v)
				return -EPROTO;
			r = view_discard(v);
			if (r < 0)
				return (int)r;
			reset += r;
		}
		pos = rec.stage_off;
		for (uint32_t k = 0; k < rec.nranges; k++) {
			struct us_range r;

			memcpy(&r, p, sizeof(r));
			p += sizeof(r);
			memcpy(v->base + (r.first << PM_PAGE_SHIFT), s->stage + (pos % s->stage_size),
			       r.npages << PM_PAGE_SHIFT);
			pos += r.npages << PM_PAGE_SHIFT;
		}
		if (new_fd >= 0) {	/* the base is complete now */
			view_populate(v, new_fd);
			close(new_fd);
		}
	}
	if (body.stage_end)
		atomic_store_explicit(&s->ctl->stage_tail, body.stage_end, memory_order_release);
	rq->seq = h.seq;
	rq->entry = (orbit_entry)(uintptr_t)body.entry;
	rq->arg = s->inbuf + h.aux;
	rq->argsize = h.len - h.aux;
	rq->pages_reset = (uint64_t)reset;
	rq->cancelled = h.seq < atomic_load(&s->ctl->cancel_below) ||
			atomic_load(&s->ctl->skip[h.seq % US_SKIP_SLOTS]) == h.seq;
	return 0;
}
