/*
 * orbit.c - orbits above the seam: calls, the message pump, crashes,
 * timeouts and restarts, and the loop an orbit process runs.
 *
 * Locking.  ob->lock guards the orbit's state and is held only briefly.
 * ob->submit_lock orders submissions (sequence numbers follow send order).
 * Waits drop the caller's interpreter lock through the hooks; to stay free of
 * deadlocks, nothing reacquires the interpreter lock while holding ob->lock,
 * and submit_lock is only waited for with the interpreter lock dropped.
 *
 * The pump.  The orbit answers calls in order.  A thread that needs progress
 * (a waiter on a future, a puller of updates, a submitter waiting for room)
 * becomes the reader if nobody is, pulls one message and routes it; everyone
 * else sleeps on ob->cond.  So a synchronous caller reads its own answer with
 * no hand-off between threads.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "orbit_internal.h"

uint64_t orbit_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* getpid() without a system call on the call path: cached, and forgotten in
 * every forked child. */
static pid_t self_pid;
static pthread_once_t self_pid_once = PTHREAD_ONCE_INIT;

static void self_pid_forget(void)
{
	self_pid = 0;
}

static void self_pid_register(void)
{
	pthread_atfork(NULL, NULL, self_pid_forget);
}

pid_t orbit_self_pid(void)
{
	pid_t pid = __atomic_load_n(&self_pid, __ATOMIC_RELAXED);

	if (pid)
		return pid;
	pthread_once(&self_pid_once, self_pid_register);
	pid = getpid();
	__atomic_store_n(&self_pid, pid, __ATOMIC_RELAXED);
	return pid;
}

const char *orbit_strerror(int code)
{
	if (code < 0)
		code = -code;
	switch (code) {
	case ORBIT_E_CRASHED: return "the orbit process died";
	case ORBIT_E_TIMEOUT: return "the call overran the orbit's timeout";
	case ORBIT_E_CLOSED: return "the orbit is closed";
	case ORBIT_E_RESTART_LIMIT: return "the orbit crashed too often in a row";
	case ORBIT_E_SKIPPED: return "the orbit was busy and the call was skipped";
	case ORBIT_E_CANCELLED: return "the call was cancelled before it ran";
	case ORBIT_E_REFUSED: return "the call was refused before it was sent";
	case ORBIT_E_ABORTED: return "the orbit was killed for an earlier call before this one ran";
	default: return strerror(code);
	}
}

void orbit_options_init(struct orbit_options *o)
{
	memset(o, 0, sizeof(*o));
	o->restart = 1;
	o->restart_limit = 5;
	o->backoff_ms = 10;
	o->max_backoff_ms = 1000;
}

static void *blk_begin(struct orbit *ob)
{
	return ob->hooks.block_begin ? ob->hooks.block_begin(ob->hooks.ctx) : NULL;
}

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
static int prepare(orbit_check_fn check, void *check_ctx, uint64_t *scan)
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

static void blk_end(struct orbit *ob, void *st)
{
	if (ob->hooks.block_end)
		ob->hooks.block_end(ob->hooks.ctx, st);
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

static void wake_all(struct orbit *ob)
{
	pthread_cond_broadcast(&ob->cond);
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

static int last_reference(struct orbit *ob);
static void orbit_release_memory(struct orbit *ob);

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
		future_complete(f, -ORBIT_E_CANCELLED, 0, 0, m->data, m->len);
	} else {
		ob->stats.calls++;
		ob->crashes_in_row = 0;
		future_complete(f, 0, 0, m->retval, m->data, m->len);
	}
	future_put_locked(f);
	return 0;
}

/* Queue f (its pending reference too) to be sent again.  ob->lock held. */
static void requeue(struct orbit *ob, struct orbit_future *f)
{
	f->next = NULL;
	if (ob->requeue_tail)
		ob->requeue_tail->next = f;
	else
		ob->requeue = f;
	ob->requeue_tail = f;
}

/* Take f out of the requeue list; 0 if it was not there.  ob->lock held. */
static int unrequeue(struct orbit *ob, struct orbit_future *f)
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
static void fail_requeued(struct orbit *ob, int err)
{
	while (ob->requeue) {
		struct orbit_future *f = ob->requeue;

		unrequeue(ob, f);
		future_complete(f, err, 0, 0, NULL, 0);
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

/* This thread (holding submit_lock) is about to send a call to sys with
 * ob->lock dropped (see ob->sending).  ob->lock held. */
static void send_begin(struct orbit *ob, struct orbit_sys *sys)
{
	ob->sending = sys;
}

/* The send is over; an orbit_lose() waiting to free the process may go on.
 * ob->lock held. */
static void send_end(struct orbit *ob)
{
	ob->sending = NULL;
	wake_all(ob);
}

/* Set while this thread holds submit_lock. */
static _Thread_local int in_submit;

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
static void orbit_lose(struct orbit *ob, int head_err, int kill_first)
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
	ob->last_status = status;
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
			requeue(ob, f);
			continue;
		} else if (err == -ORBIT_E_ABORTED && !f->done) {
			f->cause = head_err;
		}
		future_complete(f, err, status, 0, NULL, 0);
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

static void resend_requeued(struct orbit *ob);

int orbit_pump(struct orbit *ob, uint64_t deadline_ns)
{
	uint64_t call_deadline = UINT64_MAX, until, now;
	struct orbit_sys *sys = ob->sys;
	struct orbit_msg m;
	int rc, tmo, timeout_ms, intr = 0, ret = 0;
	void *st;

	if (ob->requeue && !ob->reading && !in_submit) {
		/* Calls wait to be sent again and this thread is not the
		 * submission that would send them first thing: send them now
		 * (a process may have been started meanwhile by a new call). */
		pthread_mutex_unlock(&ob->lock);
		resend_requeued(ob);
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

/* ------------------------------------------------------------ lifecycle */

static struct orbit *child_ob;
static struct orbit_sys *child_sys;
static const struct orbit_request *child_rq;
static void *child_ret;
static size_t child_ret_len;

int orbit_in_orbit(void)
{
	return child_sys != NULL;
}

int orbit_return_data(const void *data, size_t len)
{
	void *copy;

	if (!child_rq)
		return -EPERM;
	copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, data, len);
	free(child_ret);
	child_ret = copy;
	child_ret_len = len;
	return 0;
}

int orbit_push(const void *data, size_t len)
{
	if (!child_rq)
		return -EPERM;
	return orbit_sys->push(child_sys, child_rq->seq, data, len);
}

static void child_main(struct orbit_sys *s, void *arg)
{
	struct orbit *ob = arg;
	void *store;

	child_ob = ob;
	child_sys = s;
	store = ob->init ? ob->init() : NULL;
	for (;;) {
		struct orbit_request rq;
		long r = 0;
		void *st = blk_begin(ob);
		int rc = orbit_sys->recv(s, &rq);

		blk_end(ob, st);
		if (rc)
			_exit(rc == -EPIPE ? 0 : 70);
		if (!rq.cancelled) {
			child_rq = &rq;
			r = (rq.entry ? rq.entry : ob->entry)(rq.arg, rq.argsize, store);
			child_rq = NULL;
		}
		rc = orbit_sys->ret(s, &rq, r, child_ret, child_ret_len);
		free(child_ret);
		child_ret = NULL;
		child_ret_len = 0;
		if (rc)
			_exit(rc == -EPIPE ? 0 : 71);
	}
}

struct orbit *orbit_create(const char *name, orbit_entry entry, orbit_init init,
			   const struct orbit_options *opts)
{
	struct orbit *ob;

	if (!entry) {
		errno = EINVAL;
		return NULL;
	}
	ob = calloc(1, sizeof(*ob));
	if (!ob)
		return NULL;
	snprintf(ob->name, sizeof(ob->name), "%s", name ? name : "orbit");
	ob->entry = entry;
	ob->init = init;
	ob->owner = orbit_self_pid();
	if (opts)
		ob->opt = *opts;
	else
		orbit_options_init(&ob->opt);
	if (ob->opt.hooks)
		ob->hooks = *ob->opt.hooks;
	ob->opt.hooks = NULL;
	if (ob->opt.nkeep_fds) {	/* the caller's array need not outlive this call */
		int *keep = malloc(ob->opt.nkeep_fds * sizeof(*keep));

		if (!keep) {
			free(ob);
			return NULL;
		}
		memcpy(keep, ob->opt.keep_fds, ob->opt.nkeep_fds * sizeof(*keep));
		ob->opt.keep_fds = keep;
	} else {
		ob->opt.keep_fds = NULL;
	}
	pthread_mutex_init(&ob->lock, NULL);
	pthread_mutex_init(&ob->submit_lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_cond_init(&ob->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	return ob;
}

/* Start a process if none runs.  submit_lock held, ob->lock not held. */
static int ensure_process(struct orbit *ob)
{
	struct orbit_spawn sp = { 0 };
	struct orbit_sys *sys;
	uint64_t delay_ns = 0;
	int rc;

	pthread_mutex_lock(&ob->lock);
	if (ob->closed) {
		pthread_mutex_unlock(&ob->lock);
		return -ORBIT_E_CLOSED;
	}
	if (ob->sys) {
		pthread_mutex_unlock(&ob->lock);
		return 0;
	}
	if (ob->started && !ob->want_restart) {	/* after a crash */
		uint64_t backoff, since = orbit_now_ns() - ob->last_crash_ns;
		int n = ob->crashes_in_row;

		if (!ob->opt.restart) {
			pthread_mutex_unlock(&ob->lock);
			return -ORBIT_E_CLOSED;
		}
		if (n > ob->opt.restart_limit) {
			pthread_mutex_unlock(&ob->lock);
			return -ORBIT_E_RESTART_LIMIT;
		}
		backoff = (uint64_t)ob->opt.backoff_ms * 1000000ULL << (n > 1 ? (n - 1 > 20 ? 20 : n - 1) : 0);
		if (backoff > (uint64_t)ob->opt.max_backoff_ms * 1000000ULL)
			backoff = (uint64_t)ob->opt.max_backoff_ms * 1000000ULL;
		if (backoff > since)
			delay_ns = backoff - since;
	}
	pthread_mutex_unlock(&ob->lock);
	if (delay_ns) {
		struct timespec ts = { (time_t)(delay_ns / 1000000000ULL),
				       (long)(delay_ns % 1000000000ULL) };
		void *st = blk_begin(ob);

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		blk_end(ob, st);
	}
	sp.name = ob->name;
	sp.nice = ob->opt.nice;
	sp.cpu_mask = ob->opt.cpu_mask;
	sp.memory_limit = ob->opt.memory_limit;
	sp.keep_fds = ob->opt.keep_fds;
	sp.nkeep_fds = ob->opt.nkeep_fds;
	sp.harden = ob->opt.harden;
	sp.hooks = &ob->hooks;
	sp.child_main = child_main;
	sp.child_arg = ob;
	rc = orbit_sys->create(&sp, &sys);
	if (rc)
		return rc;
	pthread_mutex_lock(&ob->lock);
	ob->sys = sys;
	if (ob->started)
		ob->stats.restarts++;
	ob->started = 1;
	ob->spawned++;
	ob->want_restart = 0;
	pthread_mutex_unlock(&ob->lock);
	return 0;
}

/*
 * Send the requeued calls, in order, to the process ensure_process() just
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

		unrequeue(ob, f);
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
			future_complete(f, rc == -EPIPE ? -ORBIT_E_CRASHED : rc, 0, 0, NULL, 0);
			future_put_locked(f);
			continue;
		}
		if (!ob->pending)
			ob->head_start_ns = orbit_now_ns();
		f->next = NULL;
		if (ob->pending_tail)
			ob->pending_tail->next = f;
		else
			ob->pending = f;
		ob->pending_tail = f;
	}
	wake_all(ob);
	pthread_mutex_unlock(&ob->lock);
}

/* Start a process for the requeued calls and send them.  Neither lock held. */
static void resend_requeued(struct orbit *ob)
{
	int rc;

	orbit_lock_blocking(ob, &ob->submit_lock);
	in_submit = 1;
	/* Twice at most: the process may be lost while the calls are sent
	 * (they are then requeued, see send_requeued). */
	for (int attempt = 0; attempt < 2; attempt++) {
		int more;

		rc = ensure_process(ob);
		if (rc) {
			pthread_mutex_lock(&ob->lock);
			fail_requeued(ob, rc);
			pthread_mutex_unlock(&ob->lock);
			break;
		}
		send_requeued(ob);
		pthread_mutex_lock(&ob->lock);
		more = ob->requeue != NULL;
		pthread_mutex_unlock(&ob->lock);
		if (!more)
			break;
	}
	in_submit = 0;
	pthread_mutex_unlock(&ob->submit_lock);
}

pid_t orbit_pid(struct orbit *ob)
{
	pid_t pid;

	pthread_mutex_lock(&ob->lock);
	pid = ob->sys ? orbit_sys->pid(ob->sys) : 0;
	pthread_mutex_unlock(&ob->lock);
	return pid;
}

void orbit_stats(struct orbit *ob, struct orbit_stats *st)
{
	pthread_mutex_lock(&ob->lock);
	*st = ob->stats;
	st->crashes_in_row = (uint64_t)ob->crashes_in_row;
	pthread_mutex_unlock(&ob->lock);
}

/*
 * A thread that entered a call or a restart keeps the orbit's memory alive
 * until it leaves, so an orbit_destroy() from another thread (which takes
 * submit_lock first and may win it) cannot free the locks it waits on.  The
 * caller must enter before destroy begins (the binding does: it clears its
 * pointer to the orbit before destroying it, both under its interpreter
 * lock).
 */
static void orbit_enter(struct orbit *ob)
{
	pthread_mutex_lock(&ob->lock);
	ob->entered++;
	pthread_mutex_unlock(&ob->lock);
}

static void orbit_leave(struct orbit *ob)
{
	int gone;

	pthread_mutex_lock(&ob->lock);
	ob->entered--;
	gone = last_reference(ob);
	pthread_mutex_unlock(&ob->lock);
	if (gone)
		orbit_release_memory(ob);
}

int orbit_restart(struct orbit *ob)
{
	if (orbit_foreign(ob->owner))
		return -EPERM;
	orbit_enter(ob);
	orbit_lock_blocking(ob, &ob->submit_lock);
	in_submit = 1;
	pthread_mutex_lock(&ob->lock);
	ob->crashes_in_row = 0;
	if (ob->started)
		ob->want_restart = 1;	/* no backoff, whatever the policy */
	/* orbit_lose() lets a thread pulling from the process leave first; that
	 * thread may route an answer and go without noticing the kill, so
	 * waiting for it to reap the process could wait forever. */
	orbit_lose(ob, -ORBIT_E_CRASHED, 1);
	pthread_mutex_unlock(&ob->lock);
	in_submit = 0;
	pthread_mutex_unlock(&ob->submit_lock);
	orbit_leave(ob);
	return 0;
}

/* ---------------------------------------------------------------- calls */

#define MAX_CALL_AREAS 64

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
	struct orbit_sys_area *sa[MAX_CALL_AREAS];
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
	if (narea > MAX_CALL_AREAS) {
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
	orbit_lock_blocking(ob, &ob->submit_lock);
	in_submit = 1;
	for (int attempt = 0;; attempt++) {
		struct orbit_sync_stats sync = { 0 };
		struct orbit_sys *sys;
		uint64_t seq, scan = 0, spawned;
		int idle;

		rc = ensure_process(ob);
		if (rc) {
			pthread_mutex_lock(&ob->lock);
			fail_requeued(ob, rc);
			pthread_mutex_unlock(&ob->lock);
			break;
		}
		send_requeued(ob);
		f = future_new(ob, 0);
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
			/* Lost since ensure_process() started it (a waiter found it
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
				future_complete(p, -ORBIT_E_CANCELLED, 0, 0, NULL, 0);
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
		rc = prepare(check, check_ctx, &scan);
		if (!rc)
			rc = orbit_sys->call(sys, seq, idle, narea, sa, entry, arg, argsize, scan,
					     &sync);
		if (rc == -EAGAIN) {
			/* No room to stage the snapshot: wait until the orbit has
			 * caught up, then write it straight into its view.  (Not a
			 * sender meanwhile: the wait may lose the process itself.) */
			pthread_mutex_lock(&ob->lock);
			send_end(ob);
			while (ob->pending && ob->sys == sys)
				orbit_pump(ob, UINT64_MAX);
			rc = ob->sys == sys ? 0 : -EPIPE;
			if (!rc)
				send_begin(ob, sys);
			pthread_mutex_unlock(&ob->lock);
			if (!rc)	/* the wait let other threads run: check again */
				rc = prepare(check, check_ctx, &scan);
			if (!rc)
				rc = orbit_sys->call(sys, seq, 1, narea, sa, entry, arg, argsize,
						     scan, &sync);
		}
		pthread_mutex_lock(&ob->lock);
		send_end(ob);	/* (already, if the wait above lost the process) */
		ob->stats.pages_copied += sync.pages_copied;
		ob->stats.full_syncs += sync.full_syncs;
		ob->stats.bytes_synced += (sync.pages_copied << 12) + argsize;
		if (!rc && ob->sys != sys)
			rc = -EPIPE;	/* lost while we sent: not among the calls it owed */
		if (!rc) {
			if (!ob->pending)
				ob->head_start_ns = orbit_now_ns();
			if (ob->pending_tail)
				ob->pending_tail->next = f;
			else
				ob->pending = f;
			ob->pending_tail = f;
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
	in_submit = 0;
	pthread_mutex_unlock(&ob->submit_lock);
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

int orbit_destroy(struct orbit *ob)
{
	int gone;

	if (!ob)
		return -EINVAL;
	if (orbit_foreign(ob->owner))	/* a copy made by fork: leave it */
		return -EPERM;
	orbit_lock_blocking(ob, &ob->submit_lock);
	in_submit = 1;
	pthread_mutex_lock(&ob->lock);
	ob->closed = 1;
	while (ob->sys && ob->reading) {
		orbit_sys->kill(ob->sys);
		orbit_cond_wait(ob, UINT64_MAX);
	}
	/* An idle orbit exits by itself when its channel closes; a busy one is
	 * killed at once. */
	orbit_lose(ob, -ORBIT_E_CLOSED, ob->pending != NULL);
	fail_requeued(ob, -ORBIT_E_CLOSED);
	ob->handle_gone = 1;
	gone = last_reference(ob);
	pthread_mutex_unlock(&ob->lock);
	in_submit = 0;
	pthread_mutex_unlock(&ob->submit_lock);
	if (gone)
		orbit_release_memory(ob);
	return 0;
}

/* Decided under ob->lock, acted on after it is dropped, exactly once. */
static int last_reference(struct orbit *ob)
{
	if (!ob->handle_gone || ob->live_futures || ob->entered || ob->freeing)
		return 0;
	ob->freeing = 1;
	return 1;
}

static void orbit_release_memory(struct orbit *ob)
{
	pthread_mutex_destroy(&ob->lock);
	pthread_mutex_destroy(&ob->submit_lock);
	pthread_cond_destroy(&ob->cond);
	free((void *)ob->opt.keep_fds);
	free(ob);
}

void orbit_future_release(struct orbit_future *f)
{
	struct orbit *ob = f->ob;

	if (orbit_foreign(ob->owner))	/* a copy made by fork: leave it */
		return;
	int gone;

	pthread_mutex_lock(&ob->lock);
	ob->live_futures--;
	future_put_locked(f);
	gone = last_reference(ob);
	pthread_mutex_unlock(&ob->lock);
	if (gone)
		orbit_release_memory(ob);
}

int orbit_future_cancel(struct orbit_future *f, int flags)
{
	struct orbit *ob = f->ob;
	int rc = 0, resend;

	if (orbit_foreign(ob->owner))
		return -EPERM;
	pthread_mutex_lock(&ob->lock);
	if (!f->done && unrequeue(ob, f)) {
		future_complete(f, -ORBIT_E_CANCELLED, 0, 0, NULL, 0);
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
				future_complete(f, -ORBIT_E_CANCELLED, 0, 0, NULL, 0);
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
	resend = ob->requeue && !in_submit;
	pthread_mutex_unlock(&ob->lock);
	if (resend)	/* the calls behind it start now, waited for or not */
		resend_requeued(ob);
	return rc;
}
