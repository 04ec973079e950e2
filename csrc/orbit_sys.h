/*
 * orbit_sys.h - the seam between the orbit library and the mechanism that
 * provides orbits.
 *
 * These operations are the orbit "system calls" of the paper.  The userspace
 * backend (us/) implements them on stock Linux with fork, shared memory and
 * dirty-page tracking; a kernel backend implements the same table with real
 * system calls.  Nothing outside a backend knows which one runs: the core
 * (the C files of csrc/, mapped in orbit_internal.h) and the Python layer
 * speak only through this table (and the "backend extras" of orbit.h, which
 * every backend answers).  Both backends are built in; the process picks
 * one before main() (sys_select.c: ORBITPY_BACKEND=kernel|user|auto; auto
 * is the kernel backend on a kernel with the orbit system calls, else the
 * userspace backend).
 *
 * All operations return 0 (or a count) on success and -errno on failure.
 * Blocking operations never call the orbit hooks themselves: the caller
 * (the core: hooks.c's brackets) brackets them.
 *
 * The contract beyond the signatures, as the layers above rely on it:
 *
 * Orbit processes are forks of main.  `create` starts a process whose memory
 * is a copy of main's as it is at that moment, at the same addresses (code,
 * heap, the interpreter's objects), as fork() makes; only the areas then
 * follow main, call by call.  orbitpy's heap layer (src/orbitpy/_heap/:
 * Python objects in areas) relies on this: an object in an area points at
 * its type and at other objects outside the areas, which the orbit must
 * find where main had them when the process was made.  A kernel backend
 * creates the orbit's address space as a copy-on-write copy
 * of main's, not as an empty one holding only the areas.
 *
 * Fork order.  In main, `create` calls spawn->hooks->before_fork, makes the
 * process, then after_fork_parent (also when making it failed).  In the new
 * process, after_fork_child runs first, before the backend does anything
 * there: the process still holds the fork's private copy of the areas as
 * they were at fork time (a runtime walks its objects in them, see
 * _after_fork_child in src/orbitpy/_core.pyx).  Only after the hook does the
 * backend replace that copy with the orbit's own view of the areas, which
 * holds nothing until the first call maps it; then child_main runs.
 *
 * Copy-based statistics.  The counters a backend reports (orbit_sync_stats,
 * orbit_msg.pages_reset) describe a backend that copies pages; they feed
 * orbit_stats() and nothing decides on them.  A backend that shares pages
 * copy-on-write reports the pages it made visible to the orbit anew as
 * pages_copied if it knows them, else 0, and 0 for full_syncs and
 * pages_reset.
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

/* Counters one call adds to the orbit's statistics (see "Copy-based
 * statistics" above). */
struct orbit_sync_stats {
	uint64_t pages_copied;	/* pages of main written into the orbit's copy */
	uint64_t full_syncs;	/* areas sent whole (a new orbit process) */
};

/* A message from the orbit to main. */
enum { ORBIT_MSG_RESULT = 1, ORBIT_MSG_UPDATE = 2 };
struct orbit_msg {
	int kind;
	uint64_t seq;
	long retval;
	void *data;		/* malloc'ed, owned by the receiver; NULL when len is 0 */
	size_t len;
	uint64_t pages_reset;	/* RESULT: orbit pages discarded before this call
				 * (copying backends; else 0) */
	int skipped;		/* RESULT: the call was cancelled before it ran */
};

/* A call as the orbit receives it; arg stays valid until the next recv. */
struct orbit_request {
	uint64_t seq;
	orbit_entry entry;
	void *arg;
	size_t argsize;
	uint64_t pages_reset;	/* handed back in the RESULT (the backend's own count) */
	int cancelled;		/* main cancelled it: sync the areas, skip the entry */
};

struct orbit_sys_ops {
	const char *name;
	/* The page size of areas, a power of two: orbit_page_size(). */
	size_t page_size;

	/* main: areas */
	/*
	 * Map a new area of `size` bytes (a multiple of page_size) at an
	 * address valid in main and in every orbit.  `mode`: NULL (the
	 * backend's choice: area.c passes NULL for "" and "auto" too) or a hint
	 * (see orbit_area_create).  -EINVAL for a mode the backend does not know,
	 * -ENOTSUP for one it cannot provide here, -E2BIG when size exceeds what
	 * areas may ever have, -ENOMEM when there is no room now.
	 */
	int (*area_create)(size_t size, const char *mode,
			   struct orbit_sys_area **out, void **base);
	void (*area_destroy)(struct orbit_sys_area *a);
	/* What the area does, as a static name (orbit_area_mode). */
	const char *(*area_mode)(const struct orbit_sys_area *a);
	/* Main writes no byte of the area at or above `bytes` (a multiple of
	 * page_size) until a higher limit is set; limits only grow.  May be
	 * called from any thread that allocates.  NULL: the backend finds
	 * written pages without looking at every page. */
	void (*area_set_write_limit)(struct orbit_sys_area *a, size_t bytes);
	/*
	 * Pages main wrote since the previous area_changed (see
	 * orbit_area_changed in orbit.h), as runs, then forgotten.
	 *
	 * `scan` is the token of the call's check running in this thread (0:
	 * none, see orbit_prepare_scan); `call` gets the token of the check that
	 * ran right before it.  When they match, the two run back to back for
	 * one call, with no other thread of the runtime running in between, so a
	 * backend may let the call take this scan of the page tables as its own
	 * instead of scanning again (the userspace backend does).  A backend
	 * may ignore both tokens.
	 */
	int (*area_changed)(struct orbit_sys_area *a, orbit_page_run_fn fn, void *ctx,
			    uint64_t scan);
	/* Filter for the pages `call` copies (see orbit_area_set_copy_filter);
	 * NULL in backends that copy nothing. */
	void (*area_set_copy_filter)(struct orbit_sys_area *a, orbit_copy_filter_fn fn, void *ctx);

	/* Backend extras (see orbit.h): each may be NULL, meaning "none". */
	size_t (*reservation_size)(void);	/* NULL: no limit (SIZE_MAX) */
	int (*rearm_fault_handler)(void);	/* NULL: no handler to keep on top */
	long (*set_background_sync)(unsigned ms);	/* NULL: no copying between calls */

	/* main: orbit processes */
	int (*create)(const struct orbit_spawn *sp, struct orbit_sys **out);
	pid_t (*pid)(const struct orbit_sys *s);
	/*
	 * Snapshot `areas` for call `seq` and queue it (-EPIPE: the process is
	 * gone).  Runs right after the call's check whose token is `scan` (see
	 * area_changed), with the hooks' lock held: it must not wait long.
	 * Adds what it copied to *st.
	 *
	 * `idle` promises that the orbit has finished every earlier call.  A
	 * backend that cannot queue a snapshot behind running calls right now
	 * (the userspace backend stages it in a ring of shared memory, which
	 * may be full) returns -EAGAIN, having sent nothing; only when idle is
	 * 0.  The caller then waits until the orbit has finished every earlier
	 * call, runs the call's check again and calls again with idle set,
	 * which must not fail with -EAGAIN (the userspace backend then writes
	 * the snapshot straight into the orbit's view).  A backend that always
	 * has room (a kernel marking pages copy-on-write) ignores idle and
	 * never returns -EAGAIN.
	 */
	int (*call)(struct orbit_sys *s, uint64_t seq, int idle, size_t narea,
		    struct orbit_sys_area *const *areas, orbit_entry entry,
		    const void *arg, size_t argsize, uint64_t scan,
		    struct orbit_sync_stats *st);
	/*
	 * Before the first call that sends `areas` to a new orbit process,
	 * or from orbit_warm() long before it: make room for their copies
	 * (allocate the pages `call` will write), changing nothing the orbit
	 * sees, so that `call` -- run with the hooks' lock held -- only
	 * copies.  A backend that copies between calls may start filling the
	 * copies from here.  May block: the caller brackets it with the block
	 * hooks.  May be NULL (nothing to prepare).
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

/* The backends (both are built in), and the one this process uses: chosen
 * before main() runs (sys_select.c), never changed after. */
extern const struct orbit_sys_ops orbit_sys_user;	/* us/: any Linux */
const struct orbit_sys_ops *orbit_sys_kernel(int forced);	/* ks/: kernel/patches */
extern const struct orbit_sys_ops *orbit_sys;

#endif /* ORBIT_SYS_H */
