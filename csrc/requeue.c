/*
 * requeue.c - calls sent again: those queued behind a call the orbit was
 * killed for (a timeout, a cancel) did not run, and those without areas go
 * to the next process, in order, before any new call.
 */
#include <errno.h>
#include <stdlib.h>

#include "orbit_internal.h"

/* Queue f (its pending reference too) to be sent again.  ob->lock held. */
void orbit_requeue(struct orbit *ob, struct orbit_future *f)
{
	f->next = NULL;
	if (ob->requeue_tail)
		ob->requeue_tail->next = f;
	else
		ob->requeue = f;
	ob->requeue_tail = f;
}

/* Take f out of the requeue list; 0 if it was not there.  ob->lock held. */
int orbit_unrequeue(struct orbit *ob, struct orbit_future *f)
{
	for (struct orbit_future **pp = &ob->requeue, *prev = NULL; *pp;
	     prev = *pp, pp = &(*pp)->next)
		if (*pp == f) {
			*pp = f->next;
			if (ob->requeue_tail == f)
				ob->requeue_tail = prev;
			return 1;
		}
	return 0;
}

/* End every requeued call with err.  ob->lock held. */
void orbit_fail_requeued(struct orbit *ob, int err)
{
	while (ob->requeue) {
		struct orbit_future *f = ob->requeue;

		orbit_unrequeue(ob, f);
		future_complete(f, &ob->stats, err, 0, 0, NULL, 0);
		future_put_locked(f);
	}
	wake_all(ob);
}

/* Put f back first in the requeue list.  ob->lock held. */
static void requeue_first(struct orbit *ob, struct orbit_future *f)
{
	f->next = ob->requeue;
	ob->requeue = f;
	if (!ob->requeue_tail)
		ob->requeue_tail = f;
}

/*
 * Send the requeued calls, in order, to the process orbit_ensure_process() just
 * started (before any new call, so order is kept).  submit_lock held,
 * ob->lock not held.
 */
static void send_requeued(struct orbit *ob)
{
	pthread_mutex_lock(&ob->lock);
	while (ob->requeue && ob->sys) {
		struct orbit_future *f = ob->requeue;
		struct orbit_sync_stats sync = { 0 };
		struct orbit_sys *sys = ob->sys;
		int idle = !ob->pending, rc;

		orbit_unrequeue(ob, f);
		f->seq = ++ob->next_seq;
		f->pid = orbit_sys->pid(sys);
		send_begin(ob, sys);
		pthread_mutex_unlock(&ob->lock);
		/* f is in no list: nobody else touches it meanwhile. */
		rc = orbit_sys->call(sys, f->seq, idle, 0, NULL, f->entry, f->arg, f->argsize, 0,
				     &sync);
		pthread_mutex_lock(&ob->lock);
		send_end(ob);
		ob->stats.bytes_synced += f->argsize;
		if (ob->sys != sys) {
			/* The process was lost while f was sent (a waiter found it
			 * dead, a cancel or a timeout killed it): f is not among the
			 * calls it owed, and goes first to the next process. */
			requeue_first(ob, f);
			continue;
		}
		if (rc) {
			future_complete(f, &ob->stats, rc == -EPIPE ? -ORBIT_E_CRASHED : rc, 0, 0,
					NULL, 0);
			future_put_locked(f);
			continue;
		}
		orbit_pending_append(ob, f);
	}
	wake_all(ob);
	pthread_mutex_unlock(&ob->lock);
}

/*
 * Start a process if none runs and send it the requeued calls, before any new
 * call.  When no process can be started, the requeued calls fail with the
 * reason, which is returned.  submit_lock held, ob->lock not held.
 */
int orbit_start_and_resend(struct orbit *ob)
{
	int rc = orbit_ensure_process(ob);

	if (rc) {
		pthread_mutex_lock(&ob->lock);
		orbit_fail_requeued(ob, rc);
		pthread_mutex_unlock(&ob->lock);
		return rc;
	}
	send_requeued(ob);
	return 0;
}

/* Start a process for the requeued calls and send them.  Neither lock held. */
void orbit_resend_requeued(struct orbit *ob)
{
	orbit_submit_begin(ob);
	/* Twice at most: the process may be lost while the calls are sent
	 * (they are then requeued, see send_requeued). */
	for (int attempt = 0; attempt < 2; attempt++) {
		int more;

		if (orbit_start_and_resend(ob))
			break;
		pthread_mutex_lock(&ob->lock);
		more = ob->requeue != NULL;
		pthread_mutex_unlock(&ob->lock);
		if (!more)
			break;
	}
	orbit_submit_end(ob);
}
