/*
 * hooks.c - where the library calls the runtime's hooks (struct orbit_hooks):
 * around every wait in main (taking a lock, the submission lock among them,
 * or sleeping on the orbit's condition), so the caller's interpreter lock is
 * dropped meanwhile, and a call's check right before its snapshot.
 */
#include <stdatomic.h>
#include <time.h>

#include "orbit_internal.h"

/*
 * Which call's check is running in this thread: areas it scans (through
 * orbit_area_changed) need not be scanned again by the snapshot right after.
 */
static _Thread_local uint64_t prepare_scan;
static _Atomic uint64_t prepare_scans;

uint64_t orbit_prepare_scan(void)
{
	return prepare_scan;
}

/* The runtime's last look before a snapshot: the call's check (see
 * orbit_call_async_checked).  *scan identifies it for the snapshot (0: no
 * check ran).  Callers go straight from here to orbit_sys->call(), never
 * dropping the interpreter lock in between (no blk_begin, no lock waited
 * for): the check and the snapshot are then one step for every other thread
 * that holds it. */
int orbit_prepare(orbit_check_fn check, void *check_ctx, uint64_t *scan)
{
	int refused;

	*scan = 0;
	if (!check)
		return 0;
	prepare_scan = atomic_fetch_add(&prepare_scans, 1) + 1;
	refused = check(check_ctx);
	*scan = prepare_scan;
	prepare_scan = 0;
	return refused ? -ORBIT_E_REFUSED : 0;
}

void orbit_lock_blocking(struct orbit *ob, pthread_mutex_t *m)
{
	void *st;

	if (pthread_mutex_trylock(m) == 0)
		return;
	st = blk_begin(ob);
	pthread_mutex_lock(m);
	blk_end(ob, st);
}

/* Submissions (calls, restarts, resends, destroy) take ob->submit_lock
 * through these, so a thread knows whether it holds it: orbit_pump() and a
 * cancel leave the requeued calls to the submission under way. */
_Thread_local int orbit_in_submit;

void orbit_submit_begin(struct orbit *ob)
{
	orbit_lock_blocking(ob, &ob->submit_lock);
	orbit_in_submit = 1;
}

void orbit_submit_end(struct orbit *ob)
{
	orbit_in_submit = 0;
	pthread_mutex_unlock(&ob->submit_lock);
}

/* Sleep on ob->cond (ob->lock held on entry and exit) until woken or the
 * deadline, without the interpreter lock. */
void orbit_cond_wait(struct orbit *ob, uint64_t deadline_ns)
{
	uint64_t cap = orbit_now_ns() + 200000000ULL;	/* re-check now and then */
	struct timespec ts;
	void *st;

	if (deadline_ns > cap)
		deadline_ns = cap;
	pthread_mutex_unlock(&ob->lock);
	st = blk_begin(ob);
	pthread_mutex_lock(&ob->lock);
	clock_gettime(CLOCK_REALTIME, &ts);
	{
		uint64_t now = orbit_now_ns();
		uint64_t rel = deadline_ns > now ? deadline_ns - now : 0;
		uint64_t abs = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec + rel;

		ts.tv_sec = (time_t)(abs / 1000000000ULL);
		ts.tv_nsec = (long)(abs % 1000000000ULL);
	}
	/* Whoever changes what we wait for broadcasts under ob->lock; we held it
	 * from the caller's check until here except across blk_begin, so a
	 * wake-up can be missed only for the bounded wait above. */
	pthread_cond_timedwait(&ob->cond, &ob->lock, &ts);
	pthread_mutex_unlock(&ob->lock);
	blk_end(ob, st);
	pthread_mutex_lock(&ob->lock);
}
