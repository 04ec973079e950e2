/*
 * call.c - calls: sending one (its snapshot, its argument) to the orbit's
 * process, starting the process first if none runs, and cancelling one.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "orbit_internal.h"

struct orbit_future *orbit_call_async(struct orbit *ob, int flags, size_t narea,
				      struct orbit_area *const *areas, orbit_entry entry,
				      const void *arg, size_t argsize)
{
	return orbit_call_async_checked(ob, flags, narea, areas, entry, arg, argsize, NULL,
					NULL);
}

struct orbit_future *orbit_call_async_checked(struct orbit *ob, int flags, size_t narea,
					      struct orbit_area *const *areas,
					      orbit_entry entry, const void *arg,
					      size_t argsize, orbit_check_fn check,
					      void *check_ctx)
{
	struct orbit_sys_area *sa[ORBIT_MAX_CALL_AREAS];
	struct orbit_future *f = NULL;
	int rc = 0;

	if (!ob || (narea && !areas) || (argsize && !arg)) {
		errno = EINVAL;
		return NULL;
	}
	if (orbit_in_orbit()) {	/* main's orbits are main's to call */
		errno = EPERM;
		return NULL;
	}
	if (orbit_foreign(ob->owner)) {	/* inherited by fork from its owner */
		errno = ECHILD;
		return NULL;
	}
	if (narea > ORBIT_MAX_CALL_AREAS) {
		errno = E2BIG;
		return NULL;
	}
	for (size_t i = 0; i < narea; i++) {
		if (!areas[i]) {
			errno = EINVAL;
			return NULL;
		}
		if (orbit_foreign(orbit_area_owner(areas[i]))) {
			errno = EXDEV;	/* an area inherited from another process */
			return NULL;
		}
		sa[i] = orbit_area_sys(areas[i]);
	}
	orbit_enter(ob);
	orbit_submit_begin(ob);
	for (int attempt = 0;; attempt++) {
		struct orbit_sync_stats sync = { 0 };
		struct orbit_sys *sys;
		uint64_t seq, scan = 0, spawned;
		int idle;

		rc = orbit_start_and_resend(ob);
		if (rc)
			break;
		f = future_new(ob);
		if (!f) {
			rc = -ENOMEM;
			break;
		}
		if (!narea) {	/* see struct orbit_future */
			f->arg = malloc(argsize ? argsize : 1);
			if (f->arg && argsize)
				memcpy(f->arg, arg, argsize);
			f->entry = entry;
			f->argsize = argsize;
		}
		pthread_mutex_lock(&ob->lock);
		sys = ob->sys;
		if (!sys || ((flags & ORBIT_CALL_SKIP_IF_BUSY) && ob->pending)) {
			pthread_mutex_unlock(&ob->lock);
			free(f->arg);
			free(f);
			f = NULL;
			if (sys) {
				rc = -ORBIT_E_SKIPPED;
				break;
			}
			/* Lost since orbit_ensure_process() started it (a waiter found it
			 * dead, or it was lost while the requeued calls were sent). */
			if (attempt == 0)
				continue;
			rc = -ORBIT_E_CRASHED;
			break;
		}
		spawned = ob->spawned;
		seq = ++ob->next_seq;
		if (flags & ORBIT_CALL_CANCEL_QUEUED) {
			/* Calls behind the oldest are surely queued; the oldest is
			 * skipped by the orbit if it has not started it yet. */
			for (struct orbit_future *p = ob->pending ? ob->pending->next : NULL; p;
			     p = p->next)
				future_complete(p, &ob->stats, -ORBIT_E_CANCELLED, 0, 0, NULL, 0);
			orbit_sys->cancel(sys, seq);
			wake_all(ob);
		}
		idle = !ob->pending;
		f->seq = seq;
		f->pid = orbit_sys->pid(sys);
		send_begin(ob, sys);
		pthread_mutex_unlock(&ob->lock);

		if (narea && orbit_sys->prefault && ob->prefaulted != spawned) {
			/* A new process: its first snapshot copies every page
			 * main ever wrote into new bases.  Allocating those takes
			 * most of the time and needs no consistency: do it with
			 * the GIL released, so other threads (an event loop) run
			 * meanwhile; the snapshot below then only copies.  Best
			 * effort: the call reports what fails. */
			void *st = blk_begin(ob);

			orbit_sys->prefault(sys, narea, sa);
			blk_end(ob, st);
			ob->prefaulted = spawned;
		}
		rc = orbit_prepare(check, check_ctx, &scan);
		if (!rc)
			rc = orbit_sys->call(sys, seq, idle, narea, sa, entry, arg, argsize, scan,
					     &sync);
		if (rc == -EAGAIN) {
			/* No room to stage the snapshot: wait until the orbit has
			 * caught up, then write it straight into its view (the
			 * contract of `call` in orbit_sys.h).  (Not a sender
			 * meanwhile: the wait may lose the process itself.) */
			pthread_mutex_lock(&ob->lock);
			send_end(ob);
			while (ob->pending && ob->sys == sys)
				orbit_pump(ob, UINT64_MAX);
			rc = ob->sys == sys ? 0 : -EPIPE;
			if (!rc)
				send_begin(ob, sys);
			pthread_mutex_unlock(&ob->lock);
			if (!rc)	/* the wait let other threads run: check again */
				rc = orbit_prepare(check, check_ctx, &scan);
			if (!rc)
				rc = orbit_sys->call(sys, seq, 1, narea, sa, entry, arg, argsize,
						     scan, &sync);
		}
		pthread_mutex_lock(&ob->lock);
		send_end(ob);	/* (already, if the wait above lost the process) */
		ob->stats.pages_copied += sync.pages_copied;
		ob->stats.full_syncs += sync.full_syncs;
		ob->stats.bytes_synced += sync.pages_copied * orbit_page_size() + argsize;
		if (!rc && ob->sys != sys)
			rc = -EPIPE;	/* lost while we sent: not among the calls it owed */
		if (!rc) {
			orbit_pending_append(ob, f);
			ob->live_futures++;
			pthread_mutex_unlock(&ob->lock);
			break;
		}
		free(f->arg);
		free(f);
		f = NULL;
		if (rc == -EPIPE && attempt == 0) {
			/* The process died since the last call, or was lost by
			 * another thread while this call was sent: reap it if
			 * nobody has, fail what it owed, and try once more on a
			 * new one. */
			if (ob->sys == sys)
				orbit_lose(ob, -ORBIT_E_CRASHED, 0);
			pthread_mutex_unlock(&ob->lock);
			continue;
		}
		if (rc == -EPIPE)
			rc = -ORBIT_E_CRASHED;
		pthread_mutex_unlock(&ob->lock);
		break;
	}
	orbit_submit_end(ob);
	orbit_leave(ob);
	if (rc) {
		errno = -rc;
		return NULL;
	}
	return f;
}

int orbit_call(struct orbit *ob, size_t narea, struct orbit_area *const *areas,
	       orbit_entry entry, const void *arg, size_t argsize, long *ret)
{
	struct orbit_future *f = orbit_call_async(ob, 0, narea, areas, entry, arg, argsize);
	int rc;

	if (!f)
		return -errno;
	rc = orbit_future_get(f, ret);
	orbit_future_release(f);
	return rc;
}

int orbit_future_cancel(struct orbit_future *f, int flags)
{
	struct orbit *ob = f->ob;
	int rc = 0, resend;

	if (orbit_foreign(ob->owner))
		return -EPERM;
	pthread_mutex_lock(&ob->lock);
	if (!f->done && orbit_unrequeue(ob, f)) {
		future_complete(f, &ob->stats, -ORBIT_E_CANCELLED, 0, 0, NULL, 0);
		future_put_locked(f);
		wake_all(ob);
		rc = 1;
	} else if (f->done || !ob->sys) {
		/* Finished, or its process is being reaped by another thread:
		 * it ends by itself in a moment. */
	} else if (ob->pending != f) {
		/* Behind the oldest call: surely not started (calls run in order). */
		for (struct orbit_future *p = ob->pending; p; p = p->next)
			if (p == f) {
				future_complete(f, &ob->stats, -ORBIT_E_CANCELLED, 0, 0, NULL, 0);
				orbit_sys->cancel_one(ob->sys, f->seq);
				wake_all(ob);
				rc = 1;
				break;
			}
	} else if (flags & ORBIT_CANCEL_KILL) {
		/* Perhaps running: only killing the process ends it for sure.  An
		 * answer that arrived meanwhile is delivered, and wins. */
		orbit_lose(ob, -ORBIT_E_CANCELLED, 1);
		rc = f->err == -ORBIT_E_CANCELLED;
	}
	resend = ob->requeue && !orbit_in_submit;
	pthread_mutex_unlock(&ob->lock);
	if (resend)	/* the calls behind it start now, waited for or not */
		orbit_resend_requeued(ob);
	return rc;
}

/*
 * Start the process if none runs and give it copies of `areas` now, before
 * any call needs them: the backend keeps them current between calls (its
 * prefault, which the first call would otherwise run), so a first call made
 * later copies only what main wrote lately, not every page of the areas.
 * Called with the interpreter lock held, like a call: starting the process
 * runs the fork hooks; the copies are set up without it (blk_begin).
 */
int orbit_warm(struct orbit *ob, size_t narea, struct orbit_area *const *areas)
{
	struct orbit_sys_area *sa[ORBIT_MAX_CALL_AREAS];
	struct orbit_sys *sys;
	uint64_t spawned;
	int rc;

	if (!ob || (narea && !areas))
		return -EINVAL;
	if (orbit_in_orbit())
		return -EPERM;
	if (orbit_foreign(ob->owner))
		return -ECHILD;
	if (narea > ORBIT_MAX_CALL_AREAS)
		return -E2BIG;
	for (size_t i = 0; i < narea; i++) {
		if (!areas[i])
			return -EINVAL;
		if (orbit_foreign(orbit_area_owner(areas[i])))
			return -EXDEV;
		sa[i] = orbit_area_sys(areas[i]);
	}
	orbit_enter(ob);
	orbit_submit_begin(ob);
	rc = orbit_start_and_resend(ob);
	if (!rc) {
		pthread_mutex_lock(&ob->lock);
		sys = ob->sys;
		spawned = ob->spawned;
		if (sys)
			send_begin(ob, sys);
		pthread_mutex_unlock(&ob->lock);
		if (!sys) {
			rc = -ORBIT_E_CRASHED;
		} else if (orbit_sys->prefault && narea) {
			void *st = blk_begin(ob);

			rc = orbit_sys->prefault(sys, narea, sa);
			blk_end(ob, st);
		}
		if (sys) {
			pthread_mutex_lock(&ob->lock);
			send_end(ob);
			if (!rc && ob->sys == sys)
				ob->prefaulted = spawned;
			pthread_mutex_unlock(&ob->lock);
		}
	}
	orbit_submit_end(ob);
	orbit_leave(ob);
	return rc;
}
