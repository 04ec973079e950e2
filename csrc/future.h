/*
 * future.h - the result of a call as main keeps it (see future.c).  A leaf:
 * it knows nothing of the orbit beyond a pointer to it.
 */
#ifndef ORBIT_FUTURE_H
#define ORBIT_FUTURE_H

#include <sys/types.h>

#include "orbit.h"

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

/* All below with the orbit's lock held (the caller's business). */
struct orbit_future *future_new(struct orbit *ob);
/* End f (unless it has ended: then data is freed); a failure is counted
 * in *stats. */
void future_complete(struct orbit_future *f, struct orbit_stats *stats, int err, int status,
		     long retval, void *data, size_t len);
void future_add_update(struct orbit_future *f, void *data, size_t len);
/* Take the oldest update: 1 and *data (the caller frees it), *len; 0 if none. */
int future_take_update(struct orbit_future *f, void **data, size_t *len);
void future_put_locked(struct orbit_future *f);

#endif
