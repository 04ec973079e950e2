/*
 * background_sync.c - keep idle orbits' copies of the areas current between
 * calls.
 *
 * A call copies into the orbit's base every page main wrote since that
 * orbit's previous call (snapshot.c), on the caller's thread with the GIL
 * held, at ~2 us a page.  An orbit called every few seconds (a snapshot
 * saver) while main writes steadily then stalls main for as long as a fork
 * would.  This thread does most of that copying between calls, while the
 * orbit has answered every call sent to it (it reads no base then):
 * every period it collects each area (unless a call or a check did so
 * lately) and copies into each idle orbit's base the pending pages that no
 * collect has reported since its previous pass; also into a base not yet
 * sent (orbit_warm, or a first call's prefault), which needs every page.  Pages main keeps writing
 * wait for the call: copied now, they would be copied again.  The call
 * still collects what was written since and copies what is pending, so its
 * snapshot is exactly as before; only where the copying happens moves.
 *
 * Locks: the list lock, then an area's lock, then an orbit's send_lock
 * (tried, never waited for: a call being sent makes the orbit busy anyway).
 * The thread holds run_lock while it holds an area's lock, and fork takes
 * run_lock and the list lock first, so no child inherits an area lock held
 * by a thread it does not have.  A child starts with an empty list: the
 * areas it inherits are main's.  Only uffd areas are synced: their collect
 * is safe against writers running meanwhile.
 *
 * ORBITPY_BGSYNC_MS sets the period (default 50; 0 stops the copying), and
 * orbit_set_background_sync() changes it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "us.h"

#define BGSYNC_DEFAULT_MS 50
#define BGSYNC_CHUNK_PAGES 256	/* per hold of an area's lock: ~0.5 ms */
#define BGSYNC_MAX_LINKS (ORBIT_MAX_CALL_AREAS / 2)	/* orbits with more are left alone */

static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t run_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t period_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t period_set = PTHREAD_COND_INITIALIZER;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static struct orbit_sys_area *list;	/* every area of this process */
static size_t nlist;
static uint64_t period;			/* ns; 0: stopped (period_lock) */
static int started;	/* the thread runs (or is being started) */
static _Atomic int in_pass;	/* the thread is copying */

static void atfork_prepare(void)
{
	pthread_mutex_lock(&period_lock);
	pthread_mutex_lock(&run_lock);
	pthread_mutex_lock(&list_lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&list_lock);
	pthread_mutex_unlock(&run_lock);
	pthread_mutex_unlock(&period_lock);
}

static void atfork_child(void)
{
	list = NULL;
	nlist = 0;
	started = 0;
	in_pass = 0;
	pthread_mutex_unlock(&list_lock);
	pthread_mutex_unlock(&run_lock);
	pthread_mutex_unlock(&period_lock);
}

static void init(void)
{
	const char *v = getenv("ORBITPY_BGSYNC_MS");
	char *end;
	unsigned long ms;

	period = BGSYNC_DEFAULT_MS * 1000000ULL;
	if (v && *v) {
		errno = 0;
		ms = strtoul(v, &end, 10);
		if (!errno && !*end && ms <= 3600000)
			period = ms * 1000000ULL;
	}
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

void us_bgsync_area_add(struct orbit_sys_area *a)
{
	pthread_once(&init_once, init);
	pthread_mutex_lock(&list_lock);
	a->next_sync = list;
	list = a;
	nlist++;
	pthread_mutex_unlock(&list_lock);
}

/* Off the list (a no-op for an area a child inherited); the thread may
 * still hold a reference, and finds the area dead. */
void us_bgsync_area_remove(struct orbit_sys_area *a)
{
	pthread_mutex_lock(&list_lock);
	for (struct orbit_sys_area **pp = &list; *pp; pp = &(*pp)->next_sync)
		if (*pp == a) {
			*pp = a->next_sync;
			nlist--;
			break;
		}
	pthread_mutex_unlock(&list_lock);
}

/* Every call sent to the orbit has been answered; s->send_lock held. */
static int orbit_idle(struct orbit_sys *s)
{
	return atomic_load_explicit(&s->ctl->calls_done, memory_order_acquire) ==
	       atomic_load_explicit(&s->ctl->req_count, memory_order_relaxed);
}

/*
 * One hold of a->lock: collect if no collect ran within the period (first
 * round only), then copy up to a chunk of quiet pending pages into idle
 * orbits' bases.  Returns 1 if pages may be left for another round.
 */
static int area_round(struct orbit_sys_area *a, uint64_t period, int first)
{
	size_t budget = BGSYNC_CHUNK_PAGES, used = 0;
	uint64_t same = 0;
	int more = 0;

	pthread_mutex_lock(&run_lock);
	pthread_mutex_lock(&a->lock);
	if (a->dead || a->trk->mode != DIRTY_TRACK_UFFD || !a->links)
		goto out;
	if (first && us_now_ns() - a->last_collect_ns >= period && us_area_collect(a))
		goto out;
	for (struct us_link *l = a->links; l && used < budget; l = l->next_in_area) {
		struct orbit_sys *s = l->orbit;

		/* The orbit's next call takes every base written here: keep
		 * that within a call's limit whatever the call names. */
		if (atomic_load_explicit(&l->dead, memory_order_relaxed) ||
		    (!l->fd_sent && !l->ever_queued) || !l->npending ||
		    atomic_load_explicit(&s->nlinks, memory_order_relaxed) > BGSYNC_MAX_LINKS)
			continue;
		if (pthread_mutex_trylock(&s->send_lock))
			continue;
		if (orbit_idle(s))
			used += us_link_sync_quiet(l, budget - used, &same);
		pthread_mutex_unlock(&s->send_lock);
	}
	more = used >= budget;
	if (!more)	/* a pass is over: what was written lately is quiet next time */
		memset(a->recent, 0, (a->npages + 63) / 64 * sizeof(uint64_t));
out:
	pthread_mutex_unlock(&a->lock);
	pthread_mutex_unlock(&run_lock);
	return more;
}

static void pass(uint64_t period)
{
	struct orbit_sys_area **batch;
	size_t n = 0;

	pthread_mutex_lock(&list_lock);
	batch = nlist ? malloc(nlist * sizeof(*batch)) : NULL;
	for (struct orbit_sys_area *a = batch ? list : NULL; a; a = a->next_sync) {
		pthread_mutex_lock(&a->lock);
		a->refs++;
		pthread_mutex_unlock(&a->lock);
		batch[n++] = a;
	}
	pthread_mutex_unlock(&list_lock);
	for (size_t i = 0; i < n; i++) {
		for (int first = 1; area_round(batch[i], period, first); first = 0)
			;
		us_area_put(batch[i]);
	}
	free(batch);
}

static void *bgsync_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct timespec ts;
		uint64_t p;

		pthread_mutex_lock(&period_lock);
		while (!period)
			pthread_cond_wait(&period_set, &period_lock);
		p = period;
		pthread_mutex_unlock(&period_lock);
		ts.tv_sec = (time_t)(p / 1000000000ULL);
		ts.tv_nsec = (long)(p % 1000000000ULL);
		while (nanosleep(&ts, &ts) && errno == EINTR)
			;
		in_pass = 1;
		pthread_mutex_lock(&period_lock);
		p = period;
		pthread_mutex_unlock(&period_lock);
		if (p)
			pass(p);
		in_pass = 0;
	}
	return NULL;
}

long us_bgsync_set_period(unsigned ms)
{
	uint64_t prev;

	pthread_once(&init_once, init);
	pthread_mutex_lock(&period_lock);
	prev = period;
	period = (uint64_t)ms * 1000000ULL;
	pthread_cond_signal(&period_set);
	pthread_mutex_unlock(&period_lock);
	/* Stopped means stopped: no pass is left running. */
	while (!ms && in_pass) {
		struct timespec ts = { 0, 1000000 };

		nanosleep(&ts, NULL);
	}
	return (long)(prev / 1000000ULL);
}

/* An orbit has a copy of a uffd area: start the thread if it is not running
 * (best effort: without it, calls copy everything, as they always could).
 * Called with an area's lock held, so it takes no lock: the first caller to
 * claim `started` starts the thread.  A thread whose period is 0 waits. */
void us_bgsync_wanted(void)
{
	sigset_t all, old;
	pthread_t t;
	int no = 0, ok;

	if (__atomic_load_n(&started, __ATOMIC_ACQUIRE))
		return;
	pthread_once(&init_once, init);
	if (!__atomic_compare_exchange_n(&started, &no, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return;
	/* Signals are for Python's main thread, and the mprotect tracker's
	 * faults for the thread that wrote. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ok = pthread_create(&t, NULL, bgsync_main, NULL) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ok)
		pthread_detach(t);
	else	/* the next new copy tries again */
		__atomic_store_n(&started, 0, __ATOMIC_RELEASE);
}
