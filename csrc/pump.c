/*
 * pump.c - the message pump: routing the orbit's answers and updates to
 * their futures, and losing a process (a crash, a timeout, a kill).
 *
 * The pump.  The orbit answers calls in order.  A thread that needs progress
 * (a waiter on a future, a puller of updates, a submitter waiting for room)
 * becomes the reader if nobody is, pulls one message and routes it; everyone
 * else sleeps on ob->cond.  So a synchronous caller reads its own answer with
 * no hand-off between threads.
 */
#include <errno.h>
#include <stdlib.h>

#include "orbit_internal.h"

/* f was sent: it is owed an answer, after the calls sent before it.  The
 * oldest call's timeout counts from when it becomes the oldest.
 * ob->lock held. */
void orbit_pending_append(struct orbit *ob, struct orbit_future *f)
{
	if (!ob->pending)
		ob->head_start_ns = orbit_now_ns();
	f->next = NULL;
	if (ob->pending_tail)
		ob->pending_tail->next = f;
	else
		ob->pending = f;
	ob->pending_tail = f;
}

/*
 * Hand message m to its call in the list *head..*tail (calls in send order).
 * An update goes to its call; a result ends the oldest call.  Returns -1
 * (and frees m's data) when the result is not the oldest call's: the orbit
 * broke the protocol.  ob->lock held.
 */
static int deliver(struct orbit *ob, struct orbit_future **head, struct orbit_future **tail,
		   struct orbit_msg *m)
{
	struct orbit_future *f;

	if (m->kind == ORBIT_MSG_UPDATE) {
		for (f = *head; f && f->seq != m->seq; f = f->next)
			;
		if (f && !f->done)
			future_add_update(f, m->data, m->len);
		else
			free(m->data);
		return 0;
	}
	f = *head;
	if (!f || f->seq != m->seq) {	/* cannot happen with a sane orbit */
		free(m->data);
		return -1;
	}
	*head = f->next;
	if (!*head)
		*tail = NULL;
	ob->stats.pages_reset += m->pages_reset;
	if (m->skipped) {
		future_complete(f, &ob->stats, -ORBIT_E_CANCELLED, 0, 0, m->data, m->len);
	} else {
		ob->stats.calls++;
		ob->crashes_in_row = 0;
		future_complete(f, &ob->stats, 0, 0, m->retval, m->data, m->len);
	}
	future_put_locked(f);
	return 0;
}

/* How long a lost process gets to close its channel once it is dead or
 * killed: normally microseconds; longer only if a process it forked keeps
 * the channel open. */
#define DRAIN_MS 1000

/*
 * The process is gone (or must go): detach it, deliver what it had already
 * sent, fail the calls it still owed, reap it.  Answers and updates that
 * reached main are never discarded, whoever notices the loss (a waiter, a
 * new call finding the channel closed, a restart, a timeout).
 * ob->lock held on entry and exit; dropped while draining and reaping.
 */
void orbit_lose(struct orbit *ob, int head_err, int kill_first)
{
	struct orbit_sys *sys = ob->sys;
	struct orbit_future *list, *tail;
	uint64_t until, head_seq;
	int status = -1, crashed, broken = 0, deliberate;
	void *st;

	if (!sys)
		return;
	/* head_err is for the oldest call now, and for no other: the one a
	 * cancel or a timeout is about, or the one running when the process
	 * died.  (The thread below may deliver its answer first: then the
	 * calls behind it did not fail by themselves and must not take its
	 * error.) */
	head_seq = ob->pending ? ob->pending->seq : 0;
	/* Another thread may be inside pull() on this process: make it return
	 * (a dead or killed process ends its channel) and let it leave first.
	 * If it finds the channel closed it reaps the process itself: kill_err
	 * tells it why the process died (a cancel, a timeout, a restart) and
	 * kill_seq for which call, so that call fails for that reason and not
	 * as a crash. */
	while (ob->reading && ob->sys == sys) {
		if (!ob->kill_err) {
			ob->kill_err = head_err;
			ob->kill_seq = head_seq;
		}
		orbit_sys->kill(sys);
		orbit_cond_wait(ob, UINT64_MAX);
	}
	if (ob->sys != sys)
		return;		/* that thread took care of it */
	if (ob->kill_err) {
		head_err = ob->kill_err;
		head_seq = ob->kill_seq;
		kill_first = 1;
		ob->kill_err = 0;
		ob->kill_seq = 0;
	}
	list = ob->pending;
	tail = ob->pending_tail;
	ob->sys = NULL;
	ob->pending = ob->pending_tail = NULL;
	ob->reading++;		/* nobody pulls from a process being reaped */
	pthread_mutex_unlock(&ob->lock);
	if (kill_first)
		orbit_sys->kill(sys);
	st = blk_begin(ob);
	/* Read what the process sent before it ended, up to the end of its
	 * channel.  Without calls owed there is nothing to deliver (and an idle
	 * orbit being closed has not been told to exit yet). */
	until = orbit_now_ns() + DRAIN_MS * 1000000ULL;
	while (list && !broken) {
		struct orbit_msg m;
		uint64_t now = orbit_now_ns();
		int rc = now >= until ? -ETIMEDOUT
				      : orbit_sys->pull(sys, (int)((until - now) / 1000000ULL), &m);

		if (rc == -EINTR)
			continue;
		if (rc)
			break;
		pthread_mutex_lock(&ob->lock);
		broken = deliver(ob, &list, &tail, &m);
		wake_all(ob);
		pthread_mutex_unlock(&ob->lock);
	}
	/* The thread sending a call may still be inside call() on this
	 * process (it read ob->sys before it was detached): the backend object
	 * must outlive that.  The sender needs nothing this thread holds (the
	 * interpreter lock is dropped here, and the process is dead or killed,
	 * or its channel is closed, so the send ends at once); it broadcasts
	 * when it is done. */
	pthread_mutex_lock(&ob->lock);
	while (ob->sending == sys)
		pthread_cond_wait(&ob->cond, &ob->lock);
	pthread_mutex_unlock(&ob->lock);
	orbit_sys->destroy(sys, kill_first ? 0 : 2000, &status);
	blk_end(ob, st);
	pthread_mutex_lock(&ob->lock);
	ob->reading--;

	crashed = head_err == -ORBIT_E_CRASHED && !ob->want_restart && !ob->closed;
	if (ob->closed)
		head_err = -ORBIT_E_CLOSED;
	if (crashed) {
		ob->crashes_in_row++;
		ob->stats.crashes++;
		ob->last_crash_ns = orbit_now_ns();
	} else {
		ob->want_restart = 1;
	}
	/* Calls queued behind one the orbit was killed for (a timeout, a
	 * cancel) did not fail by themselves: those without areas run on the
	 * next process (see requeue); the others' snapshots went with the
	 * process, and they fail saying why. */
	deliberate = head_err == -ORBIT_E_TIMEOUT || head_err == -ORBIT_E_CANCELLED;
	for (struct orbit_future *f = list, *next; f; f = next) {
		int err = ob->closed ? -ORBIT_E_CLOSED
				     : deliberate ? -ORBIT_E_ABORTED : -ORBIT_E_CRASHED;

		next = f->next;
		if (f->seq == head_seq) {
			err = head_err;
		} else if (err == -ORBIT_E_ABORTED && !f->done && f->arg) {
			orbit_requeue(ob, f);
			continue;
		} else if (err == -ORBIT_E_ABORTED && !f->done) {
			f->cause = head_err;
		}
		future_complete(f, &ob->stats, err, status, 0, NULL, 0);
		future_put_locked(f);
	}
	wake_all(ob);
}

static void route(struct orbit *ob, struct orbit_msg *m)
{
	int result = m->kind != ORBIT_MSG_UPDATE;

	if (deliver(ob, &ob->pending, &ob->pending_tail, m)) {
		orbit_lose(ob, -ORBIT_E_CRASHED, 1);
		return;
	}
	if (result)
		ob->head_start_ns = orbit_now_ns();
}

int orbit_pump(struct orbit *ob, uint64_t deadline_ns)
{
	uint64_t call_deadline = UINT64_MAX, until, now;
	struct orbit_sys *sys = ob->sys;
	struct orbit_msg m;
	int rc, tmo, timeout_ms, intr = 0, ret = 0;
	void *st;

	if (ob->requeue && !ob->reading && !orbit_in_submit) {
		/* Calls wait to be sent again and this thread is not the
		 * submission that would send them first thing: send them now
		 * (a process may have been started meanwhile by a new call). */
		pthread_mutex_unlock(&ob->lock);
		orbit_resend_requeued(ob);
		pthread_mutex_lock(&ob->lock);
		return 0;
	}
	if (ob->reading || !ob->pending || !sys) {
		orbit_cond_wait(ob, deadline_ns);
		return 0;
	}
	ob->reading++;
	timeout_ms = ob->pending->timeout_ms ? ob->pending->timeout_ms : ob->opt.timeout_ms;
	if (timeout_ms > 0)
		call_deadline = ob->head_start_ns + (uint64_t)timeout_ms * 1000000ULL;
	until = deadline_ns < call_deadline ? deadline_ns : call_deadline;
	now = orbit_now_ns();
	if (until == UINT64_MAX)
		tmo = -1;
	else if (until <= now)
		tmo = 0;
	else
		tmo = (until - now) / 1000000ULL > 1000 ? 1000
							: (int)((until - now + 999999) / 1000000ULL);
	pthread_mutex_unlock(&ob->lock);
	st = blk_begin(ob);
	rc = orbit_sys->pull(sys, tmo, &m);
	if (rc == -EINTR && ob->hooks.interrupted)
		intr = ob->hooks.interrupted(ob->hooks.ctx);
	blk_end(ob, st);
	pthread_mutex_lock(&ob->lock);
	ob->reading--;
	if (rc == 0)
		route(ob, &m);
	else if (rc == -ETIMEDOUT) {
		if (orbit_now_ns() >= call_deadline && ob->sys == sys)
			orbit_lose(ob, -ORBIT_E_TIMEOUT, 1);
	} else if (rc == -EINTR) {
		if (intr)
			ret = -EINTR;
	} else if (ob->sys == sys) {
		orbit_lose(ob, -ORBIT_E_CRASHED, 0);
	}
	wake_all(ob);
	return ret;
}
