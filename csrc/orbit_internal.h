/*
 * orbit_internal.h - state shared by the files above the seam.
 */
#ifndef ORBIT_INTERNAL_H
#define ORBIT_INTERNAL_H

#include <pthread.h>
#include <unistd.h>

#include "orbit.h"
#include "orbit_sys.h"

struct orbit_update {
	struct orbit_update *next;
	void *data;
	size_t len;
};

struct orbit_future {
	struct orbit *ob;
	uint64_t seq;
	int refs;		/* the caller's, plus one while pending */
	int done;
	int err;		/* 0 or a negative code */
	int status;		/* wait status for CRASHED / TIMEOUT */
	pid_t pid;		/* the process the call was sent to */
	int timeout_ms;		/* 0: the orbit's */
	int cause;		/* ORBIT_E_ABORTED: the error of the call it was behind */
	/* A call without areas can be sent again, unchanged, to a new process
	 * (its argument is all it sees): kept until it ends. */
	orbit_entry entry;
	void *arg;
	size_t argsize;
	long retval;
	void *data;
	size_t len;
	struct orbit_update *upd_head, *upd_tail;
	struct orbit_future *next;	/* in the orbit's pending list */
};

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
	int last_status;
	uint64_t last_crash_ns;
	uint64_t cancel_below;
	struct orbit_stats stats;
	int live_futures;		/* futures the caller still holds */
	int entered;			/* threads inside orbit_call_async/_restart */
	int handle_gone;		/* orbit_destroy was called */
	int freeing;
	pid_t owner;			/* the process that created the orbit */
};

/* future.c */
struct orbit_future *future_new(struct orbit *ob, uint64_t seq);
void future_complete(struct orbit_future *f, int err, int status, long retval, void *data,
		     size_t len);
void future_add_update(struct orbit_future *f, void *data, size_t len);
void future_put_locked(struct orbit_future *f);

/* area.c */
struct orbit_sys_area *orbit_area_sys(const struct orbit_area *a);
pid_t orbit_area_owner(const struct orbit_area *a);

/*
 * Orbits and areas belong to the process that created them.  In an orbit
 * process, or in any process forked from main (multiprocessing, os.fork),
 * they are copies: their descriptors and processes are main's, their locks
 * may have been held at fork time.  Such a process leaves them alone.
 */
pid_t orbit_self_pid(void);

static inline int orbit_foreign(pid_t owner)
{
	return orbit_in_orbit() || orbit_self_pid() != owner;
}

/* orbit.c */
/* Nonzero, unique to the call's check this thread is running (else 0). */
uint64_t orbit_prepare_scan(void);
void orbit_lock_blocking(struct orbit *ob, pthread_mutex_t *m);
void orbit_cond_wait(struct orbit *ob, uint64_t deadline_ns);
int orbit_pump(struct orbit *ob, uint64_t deadline_ns);
uint64_t orbit_now_ns(void);

#endif
