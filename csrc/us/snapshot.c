/*
 * snapshot.c - main's half of a call: fix the call's view of its areas.
 *
 * Each orbit keeps a copy (base) of every area it was called with.  For a
 * call, main collects the pages written since the area's previous collect
 * (for every orbit that has a copy: each keeps its own pending set), then
 * copies this orbit's pending pages either
 *   - straight into the base, when the orbit has finished all earlier calls
 *     (it does not look at the base between calls), or
 *   - into the staging ring, which the orbit copies into the base when it
 *     takes the call: the snapshot is fixed now, however long the queue.
 * A base that is new (first call, restart) receives every page main ever
 * wrote (the area's `ever` set, fed by every collect): the other pages are
 * still zero, as they are in a new base.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../bitmap_runs.h"
#include "us.h"

void us_area_put(struct orbit_sys_area *a)
{
	int last;

	pthread_mutex_lock(&a->lock);
	last = --a->refs == 0;
	pthread_mutex_unlock(&a->lock);
	if (last) {
		pthread_mutex_destroy(&a->lock);
		free(a->ever);
		free(a->changed);
		free(a->recent);
		free(a);
	}
}

/* Main's side of the orbit's copy: its descriptor, mapping and pending set. */
static void link_release(struct us_link *l)
{
	if (l->base)
		munmap(l->base, l->area->size);
	l->base = NULL;
	if (l->base_fd >= 0)
		close(l->base_fd);
	l->base_fd = -1;
	free(l->pending);
	l->pending = NULL;
	l->lo = l->hi = l->npending = 0;
}

static void link_free(struct us_link *l)
{
	link_release(l);
	free(l);
}

/*
 * The area is being destroyed (a->lock held): release every orbit's copy in
 * main now, however long the orbits live.  The links themselves stay on
 * their orbits' lists, which only those orbits' callers walk; the next call
 * to each orbit (links_sweep) frees them and tells the orbit to unmap its
 * view.
 */
void us_area_release_links(struct orbit_sys_area *a)
{
	while (a->links) {
		struct us_link *l = a->links;

		a->links = l->next_in_area;
		l->next_in_area = NULL;
		link_release(l);
		atomic_store_explicit(&l->dead, 1, memory_order_relaxed);
		/* The orbit is alive: us_links_free takes its links off this
		 * list, under a->lock, before the orbit is freed. */
		atomic_fetch_add_explicit(&l->orbit->dead_links, 1, memory_order_release);
	}
}

/* Queue area `id` for the orbit to forget; -ENOMEM leaves the link in place. */
static int forget_add(struct orbit_sys *s, uint32_t id)
{
	if (s->nforget == s->forget_cap) {
		size_t cap = s->forget_cap ? 2 * s->forget_cap : 16;
		uint32_t *n = realloc(s->forget, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		s->forget = n;
		s->forget_cap = cap;
	}
	s->forget[s->nforget++] = id;
	return 0;
}

/* Free the links of destroyed areas; the orbit unmaps those it has views of
 * when this call's message reaches it. */
static int links_sweep(struct orbit_sys *s)
{
	uint64_t swept = 0;
	int err = 0;

	if (!atomic_load_explicit(&s->dead_links, memory_order_acquire))
		return 0;
	for (struct us_link **pp = &s->links; *pp;) {
		struct us_link *l = *pp;

		if (!atomic_load_explicit(&l->dead, memory_order_relaxed)) {
			pp = &l->next_in_orbit;
			continue;
		}
		if (l->fd_sent) {
			err = forget_add(s, l->area->id);
			if (err)
				break;
		}
		*pp = l->next_in_orbit;
		us_area_put(l->area);
		free(l);	/* released by us_area_release_links */
		atomic_fetch_sub_explicit(&s->nlinks, 1, memory_order_relaxed);
		swept++;
	}
	atomic_fetch_sub_explicit(&s->dead_links, swept, memory_order_relaxed);
	return err;
}

void us_links_free(struct orbit_sys *s)
{
	while (s->links) {
		struct us_link *l = s->links;
		struct orbit_sys_area *a = l->area;

		s->links = l->next_in_orbit;
		atomic_fetch_sub_explicit(&s->nlinks, 1, memory_order_relaxed);
		pthread_mutex_lock(&a->lock);
		for (struct us_link **pp = &a->links; *pp; pp = &(*pp)->next_in_area)
			if (*pp == l) {
				*pp = l->next_in_area;
				break;
			}
		pthread_mutex_unlock(&a->lock);
		link_free(l);
		us_area_put(a);
	}
}

static struct us_link *link_find(struct orbit_sys *s, struct orbit_sys_area *a)
{
	for (struct us_link *l = s->links; l; l = l->next_in_orbit)
		if (l->area == a)
			return l;
	return NULL;
}

/* A new, empty base for `a` in orbit `s`; linked under a->lock by caller. */
static int link_new(struct orbit_sys *s, struct orbit_sys_area *a, struct us_link **out)
{
	size_t nwords = (a->npages + 63) / 64;
	struct us_link *l = calloc(1, sizeof(*l));
	int err;

	if (!l)
		return -ENOMEM;
	l->area = a;
	l->orbit = s;
	l->base_fd = memfd_create(US_BASE_NAME, MFD_CLOEXEC);
	l->pending = calloc(nwords ? nwords : 1, sizeof(uint64_t));
	if (l->base_fd < 0 || !l->pending)
		goto fail;
	if (ftruncate(l->base_fd, (off_t)a->size) < 0)
		goto fail;
	l->base = mmap(NULL, a->size, PROT_READ | PROT_WRITE, MAP_SHARED, l->base_fd, 0);
	if (l->base == MAP_FAILED) {
		l->base = NULL;
		goto fail;
	}
	/* Main's writable view of an orbit's snapshot must not reach orbits
	 * forked later (nor any child of main). */
	madvise(l->base, a->size, MADV_DONTFORK);
	*out = l;
	return 0;
fail:
	err = errno ? -errno : -ENOMEM;
	link_free(l);
	return err;
}

static void pending_set(struct us_link *l, size_t first, size_t n)
{
	for (size_t pg = first; pg < first + n; pg++) {
		uint64_t bit = 1ULL << (pg % 64);
		size_t w = pg / 64;

		if (!(l->pending[w] & bit)) {
			l->pending[w] |= bit;
			l->npending++;
		}
	}
	if (l->lo == l->hi) {
		l->lo = first / 64;
		l->hi = (first + n - 1) / 64 + 1;
	} else {
		if (first / 64 < l->lo)
			l->lo = first / 64;
		if ((first + n - 1) / 64 + 1 > l->hi)
			l->hi = (first + n - 1) / 64 + 1;
	}
}

/* collect callback: pages main wrote go to every orbit's pending set. */
static void collect_cb(void *ctx, size_t first, size_t n)
{
	struct orbit_sys_area *a = ctx;

	for (size_t pg = first; pg < first + n; pg++) {
		a->ever[pg / 64] |= 1ULL << (pg % 64);
		a->changed[pg / 64] |= 1ULL << (pg % 64);
		a->recent[pg / 64] |= 1ULL << (pg % 64);
	}
	for (struct us_link *l = a->links; l; l = l->next_in_area)
		pending_set(l, first, n);
}

/*
 * Collect the pages written since the previous collect; a->lock held.  A
 * uffd scan costs ~2.5 ns per page looked at, written or not: it stops at
 * the write limit.  (A limit raised meanwhile by another thread is seen by
 * the next collect; the pages written above the old one stay marked
 * written until then.)
 */
int us_area_collect(struct orbit_sys_area *a)
{
	size_t len = a->trk->mode == DIRTY_TRACK_UFFD ?
		     atomic_load_explicit(&a->write_limit, memory_order_acquire) : a->size;
	int err = len ? a->trk->collect(a->trk_state, a->addr, len, collect_cb, a) : 0;

	a->last_collect_ns = us_now_ns();
	return err;
}

/*
 * The checks main runs before its calls want the pages written since they
 * last asked: collect (which also feeds every orbit's pending set, so nothing
 * is lost for them) and hand over the `changed` runs.
 */
int us_area_changed(struct orbit_sys_area *a, orbit_page_run_fn fn, void *ctx, uint64_t scan)
{
	int err;

	pthread_mutex_lock(&a->lock);
	err = a->dead ? -EINVAL : us_area_collect(a);
	a->scanned_by = err ? 0 : scan;
	if (!err)
		bitmap_for_each_run(a->changed, 0, (a->npages + 63) / 64, 1, fn, ctx);
	pthread_mutex_unlock(&a->lock);
	return err;
}

void us_area_set_write_limit(struct orbit_sys_area *a, size_t bytes)
{
	if (bytes > a->size)
		bytes = a->size;
	atomic_store_explicit(&a->write_limit, bytes, memory_order_release);
}

void us_area_set_copy_filter(struct orbit_sys_area *a, orbit_copy_filter_fn fn, void *ctx)
{
	pthread_mutex_lock(&a->lock);
	a->filter = fn;
	a->filter_ctx = ctx;
	pthread_mutex_unlock(&a->lock);
}

/* A new base needs every page main ever wrote. */
static void pending_set_ever(struct us_link *l, const struct orbit_sys_area *a)
{
	for (size_t w = 0; w < (a->npages + 63) / 64; w++) {
		uint64_t x = a->ever[w];

		if (!x)
			continue;
		l->npending += (size_t)__builtin_popcountll(x & ~l->pending[w]);
		l->pending[w] |= x;
		if (l->lo == l->hi) {
			l->lo = w;
			l->hi = w + 1;
		} else {
			if (w < l->lo)
				l->lo = w;
			if (w + 1 > l->hi)
				l->hi = w + 1;
		}
	}
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23	/* Linux >= 5.14 */
#endif

/* The link for area `a` in orbit `s`, making it (a new, empty base)
 * if there is none; a->lock held. */
static int link_get(struct orbit_sys *s, struct orbit_sys_area *a, struct us_link **out)
{
	struct us_link *l = link_find(s, a);
	int err;

	if (!l) {
		err = link_new(s, a, &l);
		if (err)
			return err;
		l->next_in_area = a->links;
		a->links = l;
		l->next_in_orbit = s->links;
		s->links = l;
		atomic_fetch_add_explicit(&s->nlinks, 1, memory_order_relaxed);
		a->refs++;
		if (a->trk->mode == DIRTY_TRACK_UFFD)
			us_bgsync_wanted();
	}
	*out = l;
	return 0;
}

/* Allocate pages [first, first + n) of `l`'s base; best effort (without
 * MADV_POPULATE_WRITE, or short of memory, the copy faults them in). */
static void base_allocate_run(void *ctx, size_t first, size_t n)
{
	struct us_link *l = ctx;

	if (n && fallocate(l->base_fd, 0, (off_t)(first << PM_PAGE_SHIFT),
			   (off_t)(n << PM_PAGE_SHIFT)) == 0)
		madvise(l->base + (first << PM_PAGE_SHIFT), n << PM_PAGE_SHIFT,
			MADV_POPULATE_WRITE);
}

/* Allocate the pages of a new base that its first call will write: the
 * runs of the area's `ever` set. */
static void base_allocate(struct us_link *l, const struct orbit_sys_area *a)
{
	struct bitmap_runs runs;

	bitmap_runs_start(&runs, base_allocate_run, l);
	for (size_t w = 0; w < (a->npages + 63) / 64; w++)
		bitmap_runs_word(&runs, w, a->ever[w]);
	bitmap_runs_end(&runs);
}

/*
 * A new orbit's first call copies every page main ever wrote into bases
 * that are new: most of that time goes to allocating the memfd pages, not
 * to copying.  Done here, before the call and without the GIL, the call's
 * snapshot (GIL held) only copies.  No content changes: the pages stay
 * zero until the call copies main's into them.
 */
int us_prefault(struct orbit_sys *s, size_t narea, struct orbit_sys_area *const *areas)
{
	int err = 0;

	for (size_t i = 0; i < narea && !err; i++) {
		struct orbit_sys_area *a = areas[i];
		struct us_link *l;

		pthread_mutex_lock(&a->lock);
		if (!a->dead) {
			err = link_get(s, a, &l);
			/* Pages written since the last collect are not in `ever`
			 * yet (all of them, before an area's first call).  Only a
			 * uffd scan is safe against writers running meanwhile (it
			 * write-protects and reports each page atomically); what
			 * this misses is faulted in by the copy. */
			if (!err && !l->fd_sent && !l->prefaulted &&
			    a->trk->mode == DIRTY_TRACK_UFFD)
				err = us_area_collect(a);
			if (!err && !l->fd_sent && !l->prefaulted) {
				base_allocate(l, a);
				l->prefaulted = 1;
			}
			/* From now on the pending set holds every page the new
			 * base lacks (collects add later writes to it), so
			 * background_sync can fill the base before the first
			 * call, which then copies only what is left. */
			if (!err && !l->fd_sent && !l->ever_queued) {
				pending_set_ever(l, a);
				l->ever_queued = 1;
			}
		}
		pthread_mutex_unlock(&a->lock);
	}
	return err;
}

/* Walk the pending runs of `l`, clearing them. */
typedef void (*run_fn)(void *ctx, struct us_link *l, size_t first, size_t n);

struct drain {
	run_fn fn;
	void *ctx;
	struct us_link *l;
};

static void drain_run(void *ctx, size_t first, size_t n)
{
	struct drain *d = ctx;

	d->fn(d->ctx, d->l, first, n);
}

static void pending_drain(struct us_link *l, run_fn fn, void *ctx)
{
	struct drain d = { fn, ctx, l };

	bitmap_for_each_run(l->pending, l->lo, l->hi, 1, drain_run, &d);
	l->lo = l->hi = 0;
	l->npending = 0;
}

struct direct_ctx {
	uint64_t same;		/* pages left alone: the base had them already */
	_Alignas(64) char page[1 << PM_PAGE_SHIFT];
};

/*
 * Into the base, which holds exactly what the orbit reads (the orbit has
 * finished every earlier call and applied every staged copy).  With a
 * filter, a page main wrote may filter to what the base holds already:
 * main only read objects there, and the runtime's filter rewrites the
 * reference counts that reading writes.  Such a page is compared, not
 * written: the orbit's copy stays as it is, and the page is not counted
 * as copied.  (Filtering into a scratch page first costs a copy and a
 * compare more for pages that did change: few, in a call after ordinary
 * writes.)  A new base is zero: nothing to compare with.
 */
static void copy_direct(void *ctx, struct us_link *l, size_t first, size_t n)
{
	struct direct_ctx *c = ctx;
	struct orbit_sys_area *a = l->area;
	char *dst = l->base + (first << PM_PAGE_SHIFT);
	const char *src = a->addr + (first << PM_PAGE_SHIFT);

	if (!a->filter || !l->fd_sent) {
		memcpy(dst, src, n << PM_PAGE_SHIFT);
		if (a->filter)
			a->filter(a->filter_ctx, first, n, dst);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		size_t off = i << PM_PAGE_SHIFT;

		memcpy(c->page, src + off, sizeof(c->page));
		a->filter(a->filter_ctx, first + i, 1, c->page);
		if (memcmp(c->page, dst + off, sizeof(c->page)) == 0)
			c->same++;
		else
			memcpy(dst + off, c->page, sizeof(c->page));
	}
}

struct quiet_ctx {
	struct us_link *l;
	struct direct_ctx *dc;
};

static void quiet_run(void *ctx, size_t first, size_t n)
{
	struct quiet_ctx *q = ctx;

	copy_direct(q->dc, q->l, first, n);
}

/*
 * Between calls (background_sync): copy into the base the pending pages
 * that no collect since the area's `recent` was cleared has reported, about
 * max_pages of them at most.  Pages main keeps writing stay pending for the
 * next call: copied now, they would be copied again.  The orbit has
 * answered every call sent to it, so it reads no base, and none can be sent
 * meanwhile (a->lock and the orbit's send_lock held); its next call, named
 * or not, takes the area (bg_written).  Returns the pages copied; *same
 * counts those the base had already.
 */
size_t us_link_sync_quiet(struct us_link *l, size_t max_pages, uint64_t *same)
{
	struct orbit_sys_area *a = l->area;
	struct direct_ctx *dc = aligned_alloc(64, sizeof(*dc));
	struct quiet_ctx q = { l, dc };
	struct bitmap_runs runs;
	size_t done = 0;

	if (!dc)
		return 0;
	dc->same = 0;
	bitmap_runs_start(&runs, quiet_run, &q);
	for (size_t w = l->lo; w < l->hi && done < max_pages; w++) {
		uint64_t x = l->pending[w] & ~a->recent[w];

		if (!x)
			continue;
		bitmap_runs_word(&runs, w, x);
		l->pending[w] &= ~x;
		done += (size_t)__builtin_popcountll(x);
	}
	bitmap_runs_end(&runs);
	if (done)
		atomic_store_explicit(&l->bg_written, 1, memory_order_relaxed);
	l->npending -= done;
	while (l->lo < l->hi && !l->pending[l->lo])
		l->lo++;
	while (l->hi > l->lo && !l->pending[l->hi - 1])
		l->hi--;
	if (l->lo == l->hi)
		l->lo = l->hi = 0;
	*same += dc->same;
	free(dc);
	return done;
}

struct stage_ctx {
	struct orbit_sys *s;
	uint64_t pos;		/* next staging position */
	char *out;		/* where the next us_range goes */
};

static void copy_staged(void *ctx, struct us_link *l, size_t first, size_t n)
{
	struct stage_ctx *c = ctx;
	struct us_range r = { first, n };
	char *dst = c->s->stage + (c->pos % c->s->stage_size);

	memcpy(dst, l->area->addr + (first << PM_PAGE_SHIFT), n << PM_PAGE_SHIFT);
	if (l->area->filter)
		l->area->filter(l->area->filter_ctx, first, n, dst);
	c->pos += n << PM_PAGE_SHIFT;
	memcpy(c->out, &r, sizeof(r));
	c->out += sizeof(r);
}

static int scratch_reserve(struct orbit_sys *s, size_t need)
{
	if (need > s->scratch_cap) {
		char *n = realloc(s->scratch, need);

		if (!n)
			return -ENOMEM;
		s->scratch = n;
		s->scratch_cap = need;
	}
	return 0;
}

/* Sort areas by id so that concurrent calls lock them in one order. */
static int area_cmp(const void *x, const void *y)
{
	const struct orbit_sys_area *a = *(struct orbit_sys_area *const *)x;
	const struct orbit_sys_area *b = *(struct orbit_sys_area *const *)y;

	return a->id < b->id ? -1 : a->id > b->id;
}

int us_snapshot_call(struct orbit_sys *s, uint64_t seq, int idle, size_t narea,
		     struct orbit_sys_area *const *areas_in, orbit_entry entry,
		     const void *arg, size_t argsize, uint64_t scan, struct orbit_sync_stats *st)
{
	struct orbit_sys_area *areas[ORBIT_MAX_CALL_AREAS];
	struct us_link *links[ORBIT_MAX_CALL_AREAS];
	int fds[ORBIT_MAX_CALL_AREAS], nfds = 0, err = 0;
	size_t n = 0, need_pages = 0, body_len, locked = 0;
	uint64_t stage_start = s->stage_head;
	struct us_call_body *body;
	struct stage_ctx sc = { .s = s };
	struct direct_ctx dc;

	if (narea > ORBIT_MAX_CALL_AREAS)
		return -E2BIG;

	/* Deduplicate and order. */
	for (size_t i = 0; i < narea; i++) {
		size_t j;

		for (j = 0; j < n && areas[j] != areas_in[i]; j++)
			;
		if (j == n)
			areas[n++] = areas_in[i];
	}
	/* From here to the send, background_sync leaves this orbit's bases
	 * alone; the areas whose bases it wrote since their last call join
	 * this one, whether named or not: a base it wrote holds pages of
	 * different moments, and only a call makes it one snapshot again. */
	pthread_mutex_lock(&s->send_lock);
	err = links_sweep(s);
	if (err)
		goto unlock_send;
	for (struct us_link *l = s->links; l; l = l->next_in_orbit) {
		size_t j;

		if (!atomic_load_explicit(&l->bg_written, memory_order_relaxed) ||
		    atomic_load_explicit(&l->dead, memory_order_relaxed))
			continue;
		for (j = 0; j < n && areas[j] != l->area; j++)
			;
		if (j < n)
			continue;
		if (n == ORBIT_MAX_CALL_AREAS) {
			err = -E2BIG;
			goto unlock_send;
		}
		areas[n++] = l->area;
	}
	qsort(areas, n, sizeof(areas[0]), area_cmp);

	for (size_t i = 0; i < n; i++) {
		struct orbit_sys_area *a = areas[i];

		pthread_mutex_lock(&a->lock);
		locked++;
		if (a->dead) {
			err = -EINVAL;
			goto out;
		}
		err = link_get(s, a, &links[i]);
		if (err)
			goto out;
		/* The check of this call scanned it last, and nothing
		 * wrote it since (the check's promise): the pending sets are
		 * current.  A scan is ~2 ns per page of the area. */
		if (!scan || a->scanned_by != scan)
			err = us_area_collect(a);
		a->scanned_by = 0;
		if (err)
			goto out;
		if (!links[i]->fd_sent && !links[i]->ever_queued)
			pending_set_ever(links[i], a);
		need_pages += links[i]->npending;
	}

	if (!idle && need_pages) {
		uint64_t used = s->stage_head - atomic_load(&s->ctl->stage_tail);
		uint64_t off = s->stage_head % s->stage_size;
		uint64_t need = need_pages << PM_PAGE_SHIFT, pad = 0;

		/* Each area's pages must be contiguous in the ring: simplest is
		 * to keep the whole call contiguous, skipping the ring's tail.
		 * An empty ring starts over at its beginning, on pages that are
		 * populated and cache-warm, rather than touch new ones. */
		if (used == 0)
			pad = off ? s->stage_size - off : 0;
		else if (off + need > s->stage_size)
			pad = s->stage_size - off;
		if (need > s->stage_size || (used && used + pad + need > s->stage_size)) {
			err = -EAGAIN;
			goto out;
		}
		sc.pos = s->stage_head + pad;
	}

	body_len = sizeof(*body) + US_FORGET_BYTES(s->nforget) + n * sizeof(struct us_area_rec) +
		   (idle ? 0 : need_pages * sizeof(struct us_range));
	err = scratch_reserve(s, body_len);
	if (err)
		goto out;
	body = (struct us_call_body *)s->scratch;
	memset(body, 0, sizeof(*body));
	body->entry = (uintptr_t)entry;
	body->narea = (uint32_t)n;
	body->nforget = (uint32_t)s->nforget;
	sc.out = s->scratch + sizeof(*body);
	if (s->nforget) {	/* before the areas: a new one may take a forgotten address */
		memset(sc.out, 0, US_FORGET_BYTES(s->nforget));
		memcpy(sc.out, s->forget, s->nforget * sizeof(uint32_t));
		sc.out += US_FORGET_BYTES(s->nforget);
	}
	for (size_t i = 0; i < n; i++) {
		struct us_area_rec rec = { 0 };
		struct us_link *l = links[i];
		char *recp = sc.out;

		rec.id = areas[i]->id;
		rec.mode = (uint32_t)areas[i]->trk->mode;
		rec.addr = (uintptr_t)areas[i]->addr;
		rec.size = areas[i]->size;
		rec.new_fd = !l->fd_sent;
		if (rec.new_fd) {
			fds[nfds++] = l->base_fd;
			st->full_syncs++;
		}
		sc.out += sizeof(rec);
		if (idle) {
			dc.same = 0;
			st->pages_copied += l->npending;
			pending_drain(l, copy_direct, &dc);
			st->pages_copied -= dc.same;
		} else {
			st->pages_copied += l->npending;
			rec.stage_off = sc.pos;
			char *before = sc.out;

			pending_drain(l, copy_staged, &sc);
			rec.nranges = (uint32_t)((size_t)(sc.out - before) / sizeof(struct us_range));
		}
		memcpy(recp, &rec, sizeof(rec));
	}
	body_len = (size_t)(sc.out - s->scratch);
	if (!idle && sc.pos > stage_start) {
		s->stage_head = sc.pos;
		body->stage_end = sc.pos;
	}
	err = us_send_call(s, seq, s->scratch, body_len, arg, argsize, fds, nfds);
	if (!err) {
		for (size_t i = 0; i < n; i++) {
			links[i]->fd_sent = 1;
			atomic_store_explicit(&links[i]->bg_written, 0, memory_order_relaxed);
		}
		s->nforget = 0;
	}
out:
	for (size_t i = 0; i < locked; i++)
		pthread_mutex_unlock(&areas[i]->lock);
unlock_send:
	pthread_mutex_unlock(&s->send_lock);
	return err;
}
