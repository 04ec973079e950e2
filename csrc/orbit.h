/*
 * orbit.h - the orbit abstraction in C.
 *
 * An orbit is an auxiliary task bound to the main program.  It runs in its own
 * process (so its faults and its CPU and memory use are isolated), yet on every
 * call it sees a consistent snapshot of the memory areas the caller names: the
 * areas live at the same virtual address in main and in every orbit, and each
 * call transfers only the pages written since the previous one.  Results and
 * "updates" flow back as bytes; the orbit never writes main's memory.
 *
 * Semantics follow Table 1 of Jing & Huang, "Operating System Support for Safe
 * and Efficient Auxiliary Execution" (OSDI '22).  All functions return 0 or a
 * non-negative value on success and a negative error code (-errno or one of the
 * ORBIT_E* codes below) on failure, unless stated otherwise.
 *
 * Threads: every function may be called from any thread of main.  Blocking
 * functions call the orbit's hooks (struct orbit_hooks) around every wait, so a
 * language runtime can drop its interpreter lock there.
 */
#ifndef ORBIT_H
#define ORBIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes beyond errno, returned negated. */
enum {
	ORBIT_E_CRASHED = 4096,	/* the orbit process died; see orbit_future_status() */
	ORBIT_E_TIMEOUT,	/* the call overran the orbit's timeout; the orbit was killed */
	ORBIT_E_CLOSED,		/* the orbit was destroyed, or restarting it is disabled */
	ORBIT_E_RESTART_LIMIT,	/* the orbit crashed more often in a row than its policy allows */
	ORBIT_E_SKIPPED,	/* ORBIT_CALL_SKIP_IF_BUSY and the orbit was busy */
	ORBIT_E_CANCELLED,	/* cancelled by ORBIT_CALL_CANCEL_QUEUED */
	ORBIT_E_REFUSED,	/* the call's check refused it; nothing was sent */
	ORBIT_E_ABORTED,	/* queued behind a call that timed out or was cancelled by
				 * killing the orbit; it did not run (orbit_future_cause) */
};

/* Returns a static, human readable text for a (negative or positive) code. */
const char *orbit_strerror(int code);

/* ---------------------------------------------------------------- areas */

/*
 * The size of a page, in bytes: the unit of areas (their sizes are rounded up
 * to it), of the page indexes orbit_area_changed() and copy filters report,
 * and of pages_copied.  The backend's (see orbit_sys.h); constant for the
 * life of the process.
 */
size_t orbit_page_size(void);
/* The name of the backend this process runs ("userspace", "kernel"). */
const char *orbit_backend_name(void);
/* Non-zero when the running kernel has the orbit system calls of
 * kernel/patches, in the version this library was built for (the probe the
 * kernel backend is chosen by), whichever backend runs. */
int orbit_kernel_has_calls(void);

struct orbit_area;

/*
 * Create an area of `size` bytes (rounded up to pages) inside the address
 * space reserved for areas.  The area has the same address in main and in
 * every orbit, including orbits started before it.
 *
 * `mode` is a hint for how main finds the pages it wrote since the previous
 * snapshot: NULL, "" or "auto" lets the backend choose; other names are the
 * backend's own (the userspace backend's are listed under "Backend extras"
 * below).  A backend with one mechanism may ignore the hint.
 * orbit_area_mode() tells what the backend actually does.
 *
 * Returns NULL and sets errno on failure (EINVAL for size 0 or a mode the
 * backend does not know, ENOMEM when the reservation is exhausted, ENOTSUP
 * when a mode it knows is unavailable here).
 */
struct orbit_area *orbit_area_create(size_t size, const char *mode);
/*
 * Promise that main writes `area` only inside blocks orbit_alloc() returned
 * (and the allocator's own header): the pages above the highest block ever
 * handed out are then never written, and the backend may leave them out
 * when it looks for the pages main wrote (with the userspace backend, a
 * scan of the page tables, ~2.5 ns per page of the area at each call).
 * The orbitpy package makes this promise for its arenas.  0, or -errno.
 */
int orbit_area_confine_writes(struct orbit_area *area);
/* Unmap an area and release every orbit's copy of it: main's at once, an
 * orbit's (its memory, and the mapping at the area's address) when its next
 * call starts. */
void orbit_area_destroy(struct orbit_area *area);
void *orbit_area_base(const struct orbit_area *area);
size_t orbit_area_size(const struct orbit_area *area);
/* The backend's name for how it tracks the area's pages (never "auto"); a
 * static string. */
const char *orbit_area_mode(const struct orbit_area *area);

/*
 * Allocate from / free to an area.  The allocator keeps its metadata inside
 * the area, so every snapshot of the area is self-consistent.  Thread-safe.
 * orbit_alloc returns NULL (errno ENOMEM) when the area is full.
 */
void *orbit_alloc(struct orbit_area *area, size_t size);
void orbit_free(struct orbit_area *area, void *ptr);
struct orbit_area_stats {
	size_t size;		/* bytes in the area */
	size_t used;		/* bytes handed out by orbit_alloc (incl. headers) */
	size_t allocations;	/* live allocations */
};
void orbit_area_stats(struct orbit_area *area, struct orbit_area_stats *st);
/* Bytes usable at ptr, a live block from orbit_alloc (0 if it is not one). */
size_t orbit_usable_size(struct orbit_area *area, const void *ptr);
/*
 * Report the pages of the area main wrote since the previous
 * orbit_area_changed() (or since the area was created), as runs of page
 * indexes (first page, count), and forget them.  Independent of what orbits
 * have been sent: this is the feed for checks main runs before its calls.
 * Called from a call's check (orbit_call_async_checked), the same page-table
 * scan also serves the snapshot that follows the check, which then does not
 * scan the area again: a check that writes the area after its last
 * orbit_area_changed() must call it once more (or its writes reach this
 * orbit with the next call only).  Returns 0 or -errno.
 */
typedef void (*orbit_page_run_fn)(void *ctx, size_t first_page, size_t npages);
int orbit_area_changed(struct orbit_area *area, orbit_page_run_fn fn, void *ctx);
/*
 * A copy filter sees each run of pages a backend copies from the area into
 * an orbit's snapshot, right after the copy (dst: the copy of first_page), and
 * may rewrite the copy -- never the area -- into a form the orbit reads as the
 * same state but cheaper (a language runtime marks its objects there so that
 * reading them writes nothing).  It runs in main, in the thread taking the
 * call, after the call's check, under the area's lock: it must not call back
 * into the area.  Backends that do not copy pages (a kernel sharing them
 * copy-on-write) never call it, so the orbit must be correct without it.
 * A backend may run it on a scratch copy of a page and, when the result
 * equals what the orbit's copy holds already (main only wrote what the
 * filter rewrites: reference counts, for a runtime), leave the orbit's copy
 * alone: such a page is not counted in pages_copied (so a runtime may set
 * a filter that rewrites nothing to have pages compared).  The filter must give
 * the same output for the same page, marks and input whenever it runs.
 * NULL removes the filter.  Returns 0, or -EPERM inside an orbit.
 */
typedef void (*orbit_copy_filter_fn)(void *ctx, size_t first_page, size_t npages, void *dst);
int orbit_area_set_copy_filter(struct orbit_area *area, orbit_copy_filter_fn fn, void *ctx);

/* --------------------------------------------------------------- orbits */

/*
 * An entry function runs inside the orbit.  `arg` points to a private copy of
 * the caller's argument bytes; `store` is what the init function returned.
 * The long it returns is the call's result; orbit_return_data() may attach
 * bytes to it.
 */
typedef long (*orbit_entry)(void *arg, size_t argsize, void *store);
typedef void *(*orbit_init)(void);

struct orbit_hooks {
	/*
	 * Around the fork that starts an orbit process (language runtimes).
	 * after_fork_child runs first thing in the new process, while it still
	 * has the fork's copy of main's memory, areas included; the areas are
	 * then replaced by the orbit's (empty until its first call).  See
	 * "Orbit processes" in orbit_sys.h.
	 */
	void (*before_fork)(void *ctx);
	void (*after_fork_parent)(void *ctx);
	void (*after_fork_child)(void *ctx);
	/* Around every blocking wait in main; the value from begin goes to end. */
	void *(*block_begin)(void *ctx);
	void (*block_end)(void *ctx, void *state);
	/* A wait was interrupted by a signal; return non-zero to abandon it. */
	int (*interrupted)(void *ctx);
	void *ctx;
};

struct orbit_options {
	int timeout_ms;		/* per call, from when the call starts running; 0 = none */
	int nice;		/* added to the orbit's nice value; 0 = inherit */
	uint64_t cpu_mask;	/* CPUs the orbit may run on (bit n = CPU n); 0 = inherit */
	size_t memory_limit;	/* bytes the orbit may allocate beyond its areas; 0 = none */
	int harden;		/* the orbit may not ptrace, write or signal main (default 0) */
	int restart;		/* restart automatically after a crash (default 1) */
	int restart_limit;	/* consecutive crashes tolerated before giving up (default 5) */
	int backoff_ms;		/* delay before the n-th consecutive restart: backoff*2^(n-1) */
	int max_backoff_ms;	/* ...capped at this (default 1000) */
	/* A new orbit process drops main's sockets, pipes, memfds and
	 * anonymous-inode descriptors (replaced by /dev/null) and keeps 0-2,
	 * regular files, directories and devices; these descriptors it keeps
	 * too (copied by orbit_create). */
	const int *keep_fds;
	size_t nkeep_fds;
	const struct orbit_hooks *hooks;	/* may be NULL */
};
/* Fill `o` with the defaults described above. */
void orbit_options_init(struct orbit_options *o);

struct orbit;

/*
 * Create an orbit named `name` running `entry` for calls that do not name
 * another entry.  `init` (may be NULL) runs once in each new orbit process.
 * The process is started lazily by the first call (and again after a crash).
 * Returns NULL and sets errno on failure.
 */
struct orbit *orbit_create(const char *name, orbit_entry entry, orbit_init init,
			   const struct orbit_options *opts);
/* Stop the orbit process (pending calls fail with ORBIT_E_CLOSED) and free it. */
int orbit_destroy(struct orbit *ob);
/* Kill the orbit process now; pending calls fail with ORBIT_E_CRASHED and the
 * next call starts a new process, whatever the restart policy says (this also
 * revives an orbit that crashed with restarts disabled or too often). */
int orbit_restart(struct orbit *ob);
/* pid of the current orbit process, or 0 when none is running. */
pid_t orbit_pid(struct orbit *ob);

struct orbit_stats {
	uint64_t calls;		/* calls completed with a result */
	/* The next three count what a copying backend does (see struct
	 * orbit_sync_stats in orbit_sys.h); a backend that shares pages
	 * copy-on-write may leave them 0. */
	uint64_t pages_copied;	/* main pages copied into the orbit's snapshot */
	uint64_t pages_reset;	/* pages the orbit wrote, discarded before a later call */
	uint64_t bytes_synced;	/* pages_copied * orbit_page_size() + argument bytes */
	uint64_t restarts;	/* processes started after the first one */
	uint64_t crashes;	/* processes that died without being asked to */
	uint64_t full_syncs;	/* area snapshots sent in full (first call, restarts; copying
				 * backends) */
	uint64_t crashes_in_row;	/* crashes since the last successful call */
	uint64_t failed;	/* calls that ended with an error instead of a result */
	uint64_t timeouts;	/* ...of which overran their timeout */
	uint64_t cancelled;	/* ...of which were cancelled */
};
void orbit_stats(struct orbit *ob, struct orbit_stats *st);

/* ---------------------------------------------------------------- calls */

#define ORBIT_CALL_SKIP_IF_BUSY	 0x1	/* fail with ORBIT_E_SKIPPED if a call is pending */
#define ORBIT_CALL_CANCEL_QUEUED 0x2	/* cancel calls not yet started */

struct orbit_future;

/* The most areas one call may name (more: E2BIG). */
#define ORBIT_MAX_CALL_AREAS 64

/*
 * Snapshot `areas` and queue a call of `entry` (NULL: the orbit's entry) with a
 * copy of `arg`.  When this returns, the call's view of the areas is fixed:
 * later writes by main are not seen by it.  Returns NULL and sets errno
 * (positive ORBIT_E_* codes included) on failure.
 */
struct orbit_future *orbit_call_async(struct orbit *ob, int flags, size_t narea,
				      struct orbit_area *const *areas, orbit_entry entry,
				      const void *arg, size_t argsize);
/*
 * A call's check: what a runtime verifies about the areas right before the
 * call's snapshot, e.g. that everything the orbit will read from `arg` is in
 * them.  Non-zero refuses the call.
 */
typedef int (*orbit_check_fn)(void *ctx);
/*
 * orbit_call_async with a check: check(ctx) runs in the calling thread right
 * before the snapshot is taken (again if the call had to wait for room to
 * stage it), with no wait (no block hook) between it and the snapshot.  A
 * refusal fails the call with ORBIT_E_REFUSED, nothing sent.  The check must
 * not let other threads of the runtime run either (a Python runtime: no
 * Python code, no dropped GIL), or they could write the areas between the
 * check and the snapshot.  See orbit_area_changed() for areas it scans.
 * check NULL: the same as orbit_call_async.
 */
struct orbit_future *orbit_call_async_checked(struct orbit *ob, int flags, size_t narea,
					      struct orbit_area *const *areas,
					      orbit_entry entry, const void *arg,
					      size_t argsize, orbit_check_fn check,
					      void *check_ctx);
/*
 * Start the orbit's process if none runs and give it its copies of `areas`
 * now: the backend then keeps them current between calls, and the first
 * call naming them copies only what main wrote lately instead of every page
 * main ever wrote (seconds for a GiB).  For an orbit called rarely, or
 * first called long after its areas were filled.  After a restart the new
 * process has no copies until its first call or the next orbit_warm().
 * 0, or -errno (-ECHILD for an orbit inherited by fork, -EXDEV for an area
 * inherited by fork).
 */
int orbit_warm(struct orbit *ob, size_t narea, struct orbit_area *const *areas);
/* Synchronous call; stores the entry's return value in *ret. */
int orbit_call(struct orbit *ob, size_t narea, struct orbit_area *const *areas,
	       orbit_entry entry, const void *arg, size_t argsize, long *ret);

/* Wait for the call; 0 and *ret on success, a negative code on failure
 * (-ECHILD in a process that inherited the future by fork: it is the owner's). */
int orbit_future_get(struct orbit_future *f, long *ret);
/* Like get, but waits at most timeout_ms (-1 = forever); -ETIMEDOUT if pending. */
int orbit_future_wait(struct orbit_future *f, int timeout_ms, long *ret);
/* Non-zero once the call has a result or an error. */
int orbit_future_done(struct orbit_future *f);
/* Bytes attached by orbit_return_data(), valid until the future is released. */
const void *orbit_future_data(struct orbit_future *f, size_t *len);
/* Wait status of the dead orbit process for ORBIT_E_CRASHED / _TIMEOUT. */
int orbit_future_status(struct orbit_future *f);
/* pid of the orbit process the call was sent to (0 if it never was). */
pid_t orbit_future_pid(struct orbit_future *f);
/* Sequence number of the call (1, 2, ... per orbit). */
uint64_t orbit_future_seq(struct orbit_future *f);
/* For ORBIT_E_ABORTED: why the orbit was killed (-ORBIT_E_TIMEOUT or
 * -ORBIT_E_CANCELLED, the earlier call's error); 0 otherwise. */
int orbit_future_cause(struct orbit_future *f);

/*
 * Limit this call to timeout_ms (> 0) from when it starts running, instead of
 * the orbit's timeout (0: the orbit's again).  An overrun kills the orbit and
 * fails the call with ORBIT_E_TIMEOUT, as the orbit's timeout does.  Call it
 * right after orbit_call_async(); it may already be running.
 */
int orbit_future_set_timeout(struct orbit_future *f, int timeout_ms);

#define ORBIT_CANCEL_KILL 0x1	/* a call that may be running: kill the orbit */

/*
 * Cancel a call.  A call queued behind another is cancelled at once: it
 * fails with ORBIT_E_CANCELLED and the orbit skips it (it may still run if
 * the orbit takes it first, its result is dropped).  The oldest pending call
 * may be running: without ORBIT_CANCEL_KILL it is left alone (returns 0);
 * with it the orbit process is killed (restarted on the next call, with no
 * backoff): the call fails with ORBIT_E_CANCELLED and the calls queued
 * behind it with ORBIT_E_ABORTED.  Returns 1 when the call was cancelled,
 * 0 when it had finished (or may be running and was left alone), or a
 * negative code.
 */
int orbit_future_cancel(struct orbit_future *f, int flags);
/*
 * Take the next update the orbit pushed for this call.  Returns 1 and a
 * malloc'ed buffer (free it) in *data, 0 when the call has ended and every
 * update was taken, or a negative code.  timeout_ms -1 waits forever.
 */
int orbit_pull(struct orbit_future *f, int timeout_ms, void **data, size_t *len);
void orbit_future_release(struct orbit_future *f);

/* ----------------------------------------------------- inside an orbit */

/*
 * Exit codes of an orbit process that ends by itself on an error, as
 * orbit_future_status() shows them (a process whose channel to main closed
 * exits with 0).  Each says one failure.
 */
enum {
	ORBIT_EXIT_RECV_FAILED = 70,	/* reading the next call from main failed */
	ORBIT_EXIT_RET_FAILED = 71,	/* sending a call's result to main failed */
	ORBIT_EXIT_RUNNER_RAISED = 72,	/* a language runtime's call runner raised
					 * instead of returning (the Python binding) */
	ORBIT_EXIT_NO_WATCHDOG = 125,	/* the thread that ends the orbit with main
					 * could not be started */
};

/* Non-zero when running inside an orbit process. */
int orbit_in_orbit(void);
/* Attach bytes to the current call's result (copied). */
int orbit_return_data(const void *data, size_t len);
/* Hand an update to main for the current call (copied). */
int orbit_push(const void *data, size_t len);

/* ------------------------------------------------------ backend extras */

/*
 * What one backend needs from its users and another may not have.  Every
 * function here works with every backend, doing nothing (or reporting
 * "none") where the backend has no such thing; code that names a backend's
 * modes or environment variables knows which backend it runs on
 * (orbit_backend_name()).
 *
 * The userspace backend ("userspace", csrc/us/):
 *  - modes: "uffd" (userfaultfd async write-protect + PAGEMAP_SCAN, Linux
 *    >= 6.7), "mprotect" (read-only pages + a SIGSEGV handler, any Linux),
 *    "full" (no tracking: every populated page is copied on every call).
 *    "auto" takes the environment variable ORBITPY_SNAPSHOT
 *    (auto|uffd|mprotect|full) into account, then picks the first available
 *    in that order.
 *  - all areas share one address-space reservation, ORBITPY_RESERVE bytes
 *    (default 64 GiB), made on first use.
 *  - "mprotect" areas need the library's SIGSEGV handler to run first.
 */

/*
 * Put the backend's fault handler back on top.  Call it after installing a
 * SIGSEGV handler of your own once areas exist whose mode tracks writes with
 * one (the userspace backend's "mprotect": its handler chains to the one it
 * found).  0, or -errno; 0 and nothing done when the backend has none.
 */
int orbit_rearm_fault_handler(void);
/*
 * Size of the address-space reservation that all areas share; 0 if it could
 * not be made (the userspace backend: an invalid ORBITPY_RESERVE, or an
 * address-space limit below it); SIZE_MAX when the backend has no such limit.
 */
size_t orbit_reservation_size(void);
/*
 * Copying between calls: every `ms` milliseconds the backend copies the
 * pages main wrote, and has not written again since, into the copies of
 * the orbits that are between calls, so that a call copies only what was
 * written lately (its snapshot is the same).  0 stops it.  The default is
 * ORBITPY_BGSYNC_MS, else 50.  Returns the previous period, or -ENOTSUP
 * when the backend does no such copying.
 */
long orbit_set_background_sync(unsigned ms);

#ifdef __cplusplus
}
#endif
#endif /* ORBIT_H */
