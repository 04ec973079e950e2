/*
 * orbit_internal.h - state shared by the files above the seam:
 *
 *   proc.c        the clock, this process's pid, error texts
 *   hooks.c       waits that drop the interpreter lock, the submission
 *                 lock, the call's check
 *   lifecycle.c   creating, starting, restarting, destroying, freeing an orbit
 *   call.c        sending a call, cancelling one
 *   requeue.c     calls sent again to the next process
 *   pump.c        routing the orbit's messages, losing its process
 *   future_wait.c waiting for a future, pulling its updates
 *   future.c      the future itself (a leaf: future.h)
 *   area.c        areas and their allocator (area_alloc.c)
 *   in_orbit.c    the loop an orbit process runs
 */
#ifndef ORBIT_INTERNAL_H
#define ORBIT_INTERNAL_H

#include <pthread.h>
#include <unistd.h>

#include "orbit.h"
#include "orbit_sys.h"
#include "future.h"

/*
 * Locking.  ob->lock guards the orbit's state and is held only briefly.
 * ob->submit_lock orders submissions (sequence numbers follow send order).
 * Waits drop the caller's interpreter lock through the hooks; to stay free of
 * deadlocks, nothing reacquires the interpreter lock while holding ob->lock,
 * and submit_lock is only waited for with the interpreter lock dropped.
 */
struct orbit {
	char name[64];
	orbit_entry entry;
	orbit_init init;
	struct orbit_options opt;
	struct orbit_hooks hooks;

	pthread_mutex_t submit_lock;	/* one submission at a time: seq order */
	pthread_mutex_t lock;		/* everything below */
	pthread_cond_t cond;		/* a future finished or the reader left */
	struct orbit_sys *sys;		/* NULL when no process runs */
	uint64_t spawned;		/* processes started (ob->lock) */
	uint64_t prefaulted;		/* `spawned` when prefault last ran (submit_lock) */
	int closed;
	int started;			/* a process was started once */
	int want_restart;		/* restart requested, no backoff */
	int reading;			/* a thread is pulling messages */
	/* The process a call is being sent to with ob->lock dropped (from
	 * reading ob->sys to the end of orbit_sys->call), NULL when none is:
	 * orbit_lose() frees a process's backend object only once no call is
	 * being sent to it.  One sender at a time: senders hold submit_lock. */
	struct orbit_sys *sending;
	int kill_err;			/* why main killed the running process (0: it did not) */
	uint64_t kill_seq;		/* the call it was killed for (kill_err is its error) */
	uint64_t next_seq;
	struct orbit_future *pending, *pending_tail;
	/* Calls queued behind one the process was killed for, to be sent again
	 * to the next process before any new call. */
	struct orbit_future *requeue, *requeue_tail;
	uint64_t head_start_ns;		/* when the oldest pending call began */
	int crashes_in_row;
	uint64_t last_crash_ns;
	struct orbit_stats stats;
	int live_futures;		/* futures the caller still holds */
	int entered;			/* threads inside orbit_call_async/_restart */
	int handle_gone;		/* orbit_destroy was called */
	int freeing;
	pid_t owner;			/* the process that created the orbit */
};

/* area.c */
struct orbit_sys_area *orbit_area_sys(const struct orbit_area *a);
pid_t orbit_area_owner(const struct orbit_area *a);

/* proc.c */
uint64_t orbit_now_ns(void);	/* CLOCK_MONOTONIC */
pid_t orbit_self_pid(void);	/* getpid(), cached */

/*
 * Orbits and areas belong to the process that created them.  In an orbit
 * process, or in any process forked from main (multiprocessing, os.fork),
 * they are copies: their descriptors and processes are main's, their locks
 * may have been held at fork time.  Such a process leaves them alone.
 */
static inline int orbit_foreign(pid_t owner)
{
	return orbit_in_orbit() || orbit_self_pid() != owner;
}

/* hooks.c */
/* Nonzero, unique to the call's check this thread is running (else 0). */
uint64_t orbit_prepare_scan(void);
/* Run the call's check right before a snapshot: 0 or -ORBIT_E_REFUSED. */
int orbit_prepare(orbit_check_fn check, void *check_ctx, uint64_t *scan);
/* Lock m, dropping the interpreter lock if it must be waited for. */
void orbit_lock_blocking(struct orbit *ob, pthread_mutex_t *m);
/* Sleep on ob->cond (ob->lock held) until woken or the deadline. */
void orbit_cond_wait(struct orbit *ob, uint64_t deadline_ns);
/* Take / drop ob->submit_lock; orbit_in_submit is set while this thread
 * holds it. */
extern _Thread_local int orbit_in_submit;
void orbit_submit_begin(struct orbit *ob);
void orbit_submit_end(struct orbit *ob);

/* Around a wait in main: the runtime drops its interpreter lock. */
static inline void *blk_begin(struct orbit *ob)
{
	return ob->hooks.block_begin ? ob->hooks.block_begin(ob->hooks.ctx) : NULL;
}

static inline void blk_end(struct orbit *ob, void *st)
{
	if (ob->hooks.block_end)
		ob->hooks.block_end(ob->hooks.ctx, st);
}

/* What a thread sleeping in orbit_cond_wait() waits for changed. */
static inline void wake_all(struct orbit *ob)
{
	pthread_cond_broadcast(&ob->cond);
}

/* This thread (holding submit_lock) is about to send a call to sys with
 * ob->lock dropped (see ob->sending).  ob->lock held. */
static inline void send_begin(struct orbit *ob, struct orbit_sys *sys)
{
	ob->sending = sys;
}

/* The send is over; an orbit_lose() waiting to free the process may go on.
 * ob->lock held. */
static inline void send_end(struct orbit *ob)
{
	ob->sending = NULL;
	wake_all(ob);
}

/* lifecycle.c */
/* Start a process if none runs.  submit_lock held, ob->lock not held. */
int orbit_ensure_process(struct orbit *ob);
/* Keep the orbit's memory while this thread is inside a call or restart. */
void orbit_enter(struct orbit *ob);
void orbit_leave(struct orbit *ob);

/* requeue.c (ob->lock held, except for the last two) */
void orbit_requeue(struct orbit *ob, struct orbit_future *f);
int orbit_unrequeue(struct orbit *ob, struct orbit_future *f);
void orbit_fail_requeued(struct orbit *ob, int err);
/* Start a process and send it the requeued calls.  submit_lock held. */
int orbit_start_and_resend(struct orbit *ob);
/* The same, taking submit_lock.  Neither lock held. */
void orbit_resend_requeued(struct orbit *ob);

/* pump.c (ob->lock held) */
/* Make progress: pull and route one message, or wait for the thread that
 * does.  -EINTR when the interrupted hook abandons the wait. */
int orbit_pump(struct orbit *ob, uint64_t deadline_ns);
/* The process is gone or must go: deliver what it sent, fail what it owed. */
void orbit_lose(struct orbit *ob, int head_err, int kill_first);
/* f was sent: it is owed an answer after the calls sent before it. */
void orbit_pending_append(struct orbit *ob, struct orbit_future *f);

/* in_orbit.c */
/* The loop an orbit process runs (struct orbit_spawn's child_main). */
void orbit_child_main(struct orbit_sys *s, void *arg);

#endif
