/*
 * dirty_track_mprotect.c - dirty pages from mprotect and SIGSEGV, for kernels
 * without userfaultfd write-protection.
 *
 * Tracked pages are read-only.  The first write to one faults; our handler
 * makes the page writable and records it in the area's bitmap.  Faults that
 * are not ours go to the handler that was installed before us, so main's own
 * SIGSEGV handling (faulthandler, crash reporters) keeps working.
 *
 * Limit: the kernel does not raise SIGSEGV for its own writes, so a system
 * call that writes into a still-protected page (read(2), recv_into) fails
 * with EFAULT in this mode.  orbit_area users who need that use the uffd or
 * full mode; the Python layer documents it.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../bitmap_runs.h"
#include "dirty_track.h"

#define MP_MAX_RANGES 1024
/*
 * Each page the handler makes writable on its own splits the mapping in up
 * to three, and a process may hold at most vm.max_map_count (65530 by
 * default) mappings: past that, mprotect fails with ENOMEM, here and in
 * every other mmap/mprotect of the process (malloc, thread stacks).  So the
 * handler splits at most MP_SPLIT_BUDGET times between two collects of all
 * areas; beyond that it makes a whole aligned chunk of MP_CHUNK_PAGES
 * writable (and marks every page of it), which merges the pieces inside it.
 * A collect re-protects whole spans and merges them again.
 */
#define MP_SPLIT_BUDGET 8192
#define MP_CHUNK_PAGES 512		/* 2 MiB */

struct mp_range {
	_Atomic uintptr_t start;	/* 0: slot free */
	uintptr_t end;
	_Atomic uint64_t *bits;
	size_t nwords;
	_Atomic size_t splits;		/* single pages made writable since collect */
};

static _Atomic size_t mp_splits;	/* sum of every range's splits */

static struct mp_range ranges[MP_MAX_RANGES];
static pthread_mutex_t mp_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction mp_prev;	/* handler to chain to */
static int mp_installed;

static __thread int mp_chaining;

static void mp_chain(int sig, siginfo_t *si, void *uc)
{
	/*
	 * A handler installed after ours (faulthandler) saved ours as its
	 * "previous" one, and we re-armed on top of it: the chain is a cycle.
	 * When the signal comes back to us while we are passing it on, end the
	 * cycle with the default action.
	 */
	if (mp_chaining) {
		signal(sig, SIG_DFL);
		return;
	}
	mp_chaining++;
	if (mp_prev.sa_flags & SA_SIGINFO) {
		mp_prev.sa_sigaction(sig, si, uc);
	} else if (mp_prev.sa_handler == SIG_DFL || mp_prev.sa_handler == SIG_IGN) {
		/* Restore the default action; returning re-executes the faulting
		 * instruction, which now kills the process as it would have. */
		signal(sig, SIG_DFL);
	} else {
		mp_prev.sa_handler(sig);
	}
	mp_chaining--;
}

/* Make pages [first, first + n) of r writable, then mark them (in that
 * order: collect marks-clean before it protects, so no write can slip
 * between the two).  Async-signal-safe. */
static int mp_open(struct mp_range *r, uintptr_t start, size_t first, size_t n)
{
	if (mprotect((void *)(start + (first << PM_PAGE_SHIFT)), n << PM_PAGE_SHIFT,
		     PROT_READ | PROT_WRITE) < 0)
		return -1;
	for (size_t pg = first; pg < first + n;) {
		size_t bit = pg % 64, take = 64 - bit < first + n - pg ? 64 - bit : first + n - pg;
		uint64_t mask = take == 64 ? ~0ULL : ((1ULL << take) - 1) << bit;

		atomic_fetch_or(&r->bits[pg / 64], mask);
		pg += take;
	}
	return 0;
}

static int mp_fault(struct mp_range *r, uintptr_t start, uintptr_t a)
{
	size_t npages = (r->end - start) >> PM_PAGE_SHIFT;
	size_t pg = (a - start) >> PM_PAGE_SHIFT, first, n;

	if (atomic_load_explicit(&mp_splits, memory_order_relaxed) < MP_SPLIT_BUDGET) {
		atomic_fetch_add(&mp_splits, 1);
		atomic_fetch_add(&r->splits, 1);
		if (mp_open(r, start, pg, 1) == 0)
			return 0;
	}
	/* Out of budget (or the page alone failed): its chunk, then the
	 * whole area, which cannot need more mappings than it takes away. */
	first = pg - pg % MP_CHUNK_PAGES;
	n = npages - first < MP_CHUNK_PAGES ? npages - first : MP_CHUNK_PAGES;
	if (mp_open(r, start, first, n) == 0)
		return 0;
	return mp_open(r, start, 0, npages);
}

static void mp_on_segv(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr;
	int saved = errno;

	if (si->si_code == SEGV_ACCERR) {
		for (int i = 0; i < MP_MAX_RANGES; i++) {
			uintptr_t s = atomic_load_explicit(&ranges[i].start, memory_order_acquire);

			if (!s || a < s || a >= ranges[i].end)
				continue;
			if (mp_fault(&ranges[i], s, a) == 0) {
				errno = saved;
				return;
			}
			break;
		}
	}
	errno = saved;
	mp_chain(sig, si, uc);
}

/* (Re)install our handler on top of whatever is there now. */
static int mp_install_locked(void)
{
	struct sigaction sa, cur;

	if (sigaction(SIGSEGV, NULL, &cur) < 0)
		return -errno;
	if (mp_installed && (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == mp_on_segv)
		return 0;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = mp_on_segv;
	/* SA_NODEFER: a handler we chain to may raise() the signal again (as
	 * faulthandler does); it must reach us at once, nested, to end the
	 * chain (see mp_chain), not after we return. */
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	mp_prev = cur;
	if (sigaction(SIGSEGV, &sa, NULL) < 0)
		return -errno;
	mp_installed = 1;
	return 0;
}

int dirty_track_mprotect_rearm(void)
{
	int err = 0;

	pthread_mutex_lock(&mp_lock);
	if (mp_installed)
		err = mp_install_locked();
	pthread_mutex_unlock(&mp_lock);
	return err;
}

static int mp_available(void)
{
	return 1;
}

static int mp_attach(void *addr, size_t len, void **state)
{
	size_t nwords = ((len >> PM_PAGE_SHIFT) + 63) / 64;
	_Atomic uint64_t *bits = calloc(nwords ? nwords : 1, sizeof(*bits));
	int slot = -1, err;

	if (!bits)
		return -ENOMEM;
	pthread_mutex_lock(&mp_lock);
	err = mp_install_locked();
	for (int i = 0; !err && i < MP_MAX_RANGES; i++)
		if (!atomic_load(&ranges[i].start)) {
			slot = i;
			break;
		}
	if (!err && slot < 0)
		err = -ENOSPC;
	if (!err) {
		ranges[slot].end = (uintptr_t)addr + len;
		ranges[slot].bits = bits;
		ranges[slot].nwords = nwords;
		atomic_store_explicit(&ranges[slot].start, (uintptr_t)addr, memory_order_release);
		/*
		 * Give the mapping its anon_vma now, while it is one piece: a
		 * page first written after a split gets an anon_vma of its own
		 * when its neighbours have none, and pieces with different
		 * anon_vmas never merge again (Linux 6.12: every page written
		 * stayed a mapping after collect re-protected it).
		 */
		*(volatile char *)addr = 0;
		madvise(addr, PM_PAGE_SIZE, MADV_DONTNEED);
		if (mprotect(addr, len, PROT_READ) < 0) {
			err = -errno;
			atomic_store(&ranges[slot].start, 0);
		}
	}
	pthread_mutex_unlock(&mp_lock);
	if (err) {
		free(bits);
		return err;
	}
	*state = &ranges[slot];
	return 0;
}

static void mp_detach(void *state, void *addr, size_t len)
{
	struct mp_range *r = state;

	pthread_mutex_lock(&mp_lock);
	mprotect(addr, len, PROT_READ | PROT_WRITE);
	atomic_fetch_sub(&mp_splits, atomic_exchange(&r->splits, 0));
	atomic_store(&r->start, 0);
	free(r->bits);
	r->bits = NULL;
	pthread_mutex_unlock(&mp_lock);
}

/*
 * Report the pages of the words in `batch` (already cleared), after one
 * mprotect over their whole span: re-protecting pages that are read-only
 * already is harmless, and one call instead of one per run avoids splitting
 * and re-merging the mapping once per dirty page.
 */
struct mp_word {
	size_t w;
	uint64_t x;
};

static int mp_flush(uintptr_t base, size_t npages, const struct mp_word *batch, size_t n,
		    page_run_cb cb, void *ctx)
{
	struct bitmap_runs runs;
	size_t first, last;

	if (!n)
		return 0;
	first = batch[0].w * 64 + (size_t)__builtin_ctzll(batch[0].x);
	last = batch[n - 1].w * 64 + 63 - (size_t)__builtin_clzll(batch[n - 1].x);
	if (last >= npages)
		last = npages - 1;
	if (mprotect((void *)(base + (first << PM_PAGE_SHIFT)), (last - first + 1) << PM_PAGE_SHIFT,
		     PROT_READ) < 0)
		return -errno;
	bitmap_runs_start(&runs, cb, ctx);
	for (size_t i = 0; i < n && batch[i].w * 64 < npages; i++) {
		uint64_t x = batch[i].x;
		size_t past = npages - batch[i].w * 64;	/* bits of the word in range */

		if (past < 64)
			x &= (1ULL << past) - 1;
		bitmap_runs_word(&runs, batch[i].w, x);
	}
	bitmap_runs_end(&runs);
	return 0;
}

#define MP_BATCH 256

static int mp_collect(void *state, void *addr, size_t len, page_run_cb cb, void *ctx)
{
	struct mp_range *r = state;
	struct mp_word batch[MP_BATCH];
	size_t n = 0, npages = len >> PM_PAGE_SHIFT;
	int err;

	/* Someone may have installed a SIGSEGV handler over ours since. */
	pthread_mutex_lock(&mp_lock);
	err = mp_install_locked();
	pthread_mutex_unlock(&mp_lock);
	if (err)
		return err;
	/* Every page split off since the last collect is marked, and the
	 * flushes below re-protect spans covering them all. */
	atomic_fetch_sub(&mp_splits, atomic_exchange(&r->splits, 0));
	for (size_t w = 0; w < r->nwords; w++) {
		if (!atomic_load_explicit(&r->bits[w], memory_order_relaxed))
			continue;
		/* Clear, then protect, then report (the caller copies after):
		 * a write after the clear either lands before the protect and is
		 * copied, or faults and is marked again. */
		batch[n].w = w;
		batch[n].x = atomic_exchange(&r->bits[w], 0);
		if (batch[n].x && ++n == MP_BATCH) {
			err = mp_flush((uintptr_t)addr, npages, batch, n, cb, ctx);
			if (err)
				return err;
			n = 0;
		}
	}
	return mp_flush((uintptr_t)addr, npages, batch, n, cb, ctx);
}

static void mp_child_reset(void)
{
	/* An orbit maps its own views over the areas; it must not treat faults
	 * in its reservation as main's tracking faults. */
	for (int i = 0; i < MP_MAX_RANGES; i++) {
		atomic_store(&ranges[i].start, 0);
		atomic_store(&ranges[i].splits, 0);
	}
	atomic_store(&mp_splits, 0);
	if (mp_installed)
		sigaction(SIGSEGV, &mp_prev, NULL);
	mp_installed = 0;
	pthread_mutex_init(&mp_lock, NULL);
}

const struct dirty_track_ops dirty_track_mprotect = {
	.mode = DIRTY_TRACK_MPROTECT,
	.name = "mprotect",
	.available = mp_available,
	.attach = mp_attach,
	.detach = mp_detach,
	.collect = mp_collect,
	.own_writes = dirty_track_own_writes_pagemap,
	.child_reset = mp_child_reset,
};
