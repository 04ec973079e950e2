/*
 * orbit_sys.h - the seam between the orbit library and the mechanism that
 * provides orbits.
 *
 * These operations are the orbit "system calls" of the paper.  The userspace
 * backend (us/) implements them on stock Linux with fork, shared memory and
 * dirty-page tracking; a kernel backend implements the same table with real
 * system calls.  Nothing outside a backend knows which one runs: orbit.c,
 * future.c and the Python layer speak only through this table.
 *
 * All operations return 0 (or a count) on success and -errno on failure.
 * Blocking operations never call the orbit hooks themselves: the caller
 * (orbit.c) brackets them.
 */
#ifndef ORBIT_SYS_H
#define ORBIT_SYS_H

#include "orbit.h"

struct orbit_sys;	/* one orbit process, as the backend sees it */
struct orbit_sys_area;	/* one area, as the backend sees it */

/* What a new orbit process is and what it runs. */
struct orbit_spawn {
	const char *name;
	int nice;
	uint64_t cpu_mask;
	size_t memory_limit;
	const int *keep_fds;	/* main's descriptors the orbit keeps (see orbit_options) */
	size_t nkeep_fds;
	int harden;		/* may not ptrace, write or signal main */
	const struct orbit_hooks *hooks;
	void (*child_main)(struct orbit_sys *self, void *arg);	/* never returns */
	void *child_arg;
};

/* Counters one call adds to the orbit's statistics. */
struct orbit_sync_stats {
	uint64_t pages_copied;
	uint64_t full_syncs;
};

/* A message from the orbit to main. */
enum { ORBIT_MSG_RESULT = 1, ORBIT_MSG_UPDATE = 2 };
struct orbit_msg {
	int kind;
	uint64_t seq;
	long retval;
	void *data;		/* malloc'ed, owned by the receiver; NULL when len is 0 */
	size_t len;
	uint64_t pages_reset;	/* RESULT: orbit pages discarded before this call */
	int skipped;		/* RESULT: the call was cancelled before it ran */
};

/* A call as the orbit receives it; arg stays valid until the next recv. */
struct orbit_request {
	uint64_t seq;
	orbit_entry entry;
	void *arg;
	size_t argsize;
	uint64_t pages_reset;
	int cancelled;		/* main cancelled it: sync the areas, skip the entry */
};

struct orbit_sys_ops {
	const char *name;

	/* main: areas */
	int (*area_create)(size_t size, enum orbit_snapshot_mode mode,
			   struct orbit_sys_area **out, void **base);
	void (*area_destroy)(struct orbit_sys_area *a);
	enum orbit_snapshot_mode (*area_mode)(const struct orbit_sys_area *a);
	/* Pages main wrote since the previous area_changed (see
	 * orbit_area_changed in orbit.h), as runs, then forgotten.  `scan`: the
	 * call's check running (0: none); a `call` passing the same value may
	 * take this scan as its own (backends may ignore both). */
	int (*area_changed)(struct orbit_sys_area *a, orbit_page_run_fn fn, void *ctx,
			    uint64_t scan);
	/* Filter for the pages `call` copies (see orbit_area_set_copy_filter);
	 * NULL in backends that copy nothing. */
	void (*area_set_copy_filter)(struct orbit_sys_area *a, orbit_copy_filter_fn fn, void *ctx);
	size_t (*reservation_size)(void);
	int (*rearm_fault_handler)(void);	/* may be NULL */

	/* main: orbit processes */
	int (*create)(const struct orbit_spawn *sp, struct orbit_sys **out);
	pid_t (*pid)(const struct orbit_sys *s);
	/*
	 * Snapshot `areas` for call `seq` and queue it (-EPIPE: the process is gone).  `idle` promises that the
	 * orbit has finished every earlier call, so the snapshot may be written
	 * straight into the orbit's view; otherwise it is staged and -EAGAIN means
	 * the staging space is full (retry once idle).
	 */
	int (*call)(struct orbit_sys *s, uint64_t seq, int idle, size_t narea,
		    struct orbit_sys_area *const *areas, orbit_entry entry,
		    const void *arg, size_t argsize, uint64_t scan,
		    struct orbit_sync_stats *st);
	/*
	 * Before the first call that sends `areas` to a new orbit process:
	 * make room for their copies (allocate the pages `call` will write),
	 * changing no content, so that `call` -- run with the hooks' lock
	 * held -- only copies.  May block: the caller brackets it with the
	 * block hooks.  May be NULL (nothing to prepare).
	 */
	int (*prefault)(struct orbit_sys *s, size_t narea, struct orbit_sys_area *const *areas);
	/* Next message from the orbit, waiting up to timeout_ms (-1 forever):
	 * -ETIMEDOUT, -EINTR, or -EPIPE once the orbit process is gone. */
	int (*pull)(struct orbit_sys *s, int timeout_ms, struct orbit_msg *m);
	/* Calls with seq < below that have not started are to be skipped. */
	void (*cancel)(struct orbit_sys *s, uint64_t below);
	/* Call seq is to be skipped if it has not started (best effort: it may
	 * still run, e.g. when many cancels are outstanding). */
	void (*cancel_one)(struct orbit_sys *s, uint64_t seq);
	/* SIGKILL the process (it is reaped by destroy). */
	void (*kill)(struct orbit_sys *s);
	/* Close the orbit, reap the process (killing it if it does not exit in
	 * grace_ms) and free everything.  *status gets the wait status, or -1. */
	void (*destroy)(struct orbit_sys *s, int grace_ms, int *status);

	/* orbit side */
	int (*recv)(struct orbit_sys *s, struct orbit_request *rq);
	int (*ret)(struct orbit_sys *s, const struct orbit_request *rq, long retval,
		   const void *data, size_t len);
	int (*push)(struct orbit_sys *s, uint64_t seq, const void *data, size_t len);
};

/* The backend this build uses. */
extern const struct orbit_sys_ops *const orbit_sys;

#endif /* ORBIT_SYS_H */
