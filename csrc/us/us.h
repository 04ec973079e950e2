/*
 * us.h - the userspace orbit backend: shared definitions.
 *
 * Picture of one orbit on stock Linux:
 *
 *   main process                              orbit process (forked from main)
 *   area (private anon, tracked)              view: MAP_PRIVATE of the base memfd
 *        |  dirty pages                            ^ reads see the base; writes are
 *        v                                         | private copies, discarded later
 *   base memfd (MAP_SHARED in main) -------------->+
 *        or, while the orbit is busy, the staging ring (shared memory), which
 *        the orbit copies into the base when it takes the call
 *
 *   control: a stream socket (framed messages, fds for new bases) plus
 *   shared memory: counters that let either side spin briefly before
 *   sleeping, and a mailbox per direction that carries small messages
 *   without a system call when the reader is awake.
 *
 * The files:
 *   us_sys.c      the operation table (orbit_sys.h), and where to start
 *   snapshot.c    main's half of a call: the pages it copies, and where
 *   background_sync.c  the same copies into idle orbits' bases, between calls
 *   orbit_view.c  the orbit's half: its views of the areas, its messages
 *   channel.c     framed messages over the socket; mailbox.c the small
 *                 ones through shared memory
 *   dirty_track.c choosing a tracker; dirty_track_{uffd,mprotect,full}.c
 *                 one per snapshot mode; pagemap.c page-table queries
 *   reserve.c     the address range areas live in (ORBITPY_RESERVE)
 *   spawn.c       starting, binding and reaping an orbit process;
 *                 lifetime.c its end with main's, fds.c the descriptors it
 *                 keeps, harden.c and memlimit.c its limits
 */
#ifndef ORBIT_US_H
#define ORBIT_US_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "../orbit_sys.h"
#include "dirty_track.h"

/* ---- areas (main side) */

struct us_link;

struct orbit_sys_area {
	uint32_t id;
	char *addr;
	size_t size, npages;
	const struct dirty_track_ops *trk;
	void *trk_state;
	pthread_mutex_t lock;	/* tracker collect and the link list */
	struct us_link *links;	/* one per orbit that has a snapshot of it */
	uint64_t *ever;		/* pages written since the area was created */
	uint64_t *changed;	/* pages written since the last us_area_changed() */
	uint64_t scanned_by;	/* the call's check whose area_changed scanned last */
	orbit_copy_filter_fn filter;	/* rewrites the copies (under lock) */
	void *filter_ctx;
	uint64_t *recent;	/* pages written since background_sync last looked */
	_Atomic size_t write_limit;	/* main writes no byte at or above (bytes) */
	uint64_t last_collect_ns;	/* when a collect last ran */
	struct orbit_sys_area *next_sync;	/* background_sync's list (its lock) */
	int refs;		/* 1 for main + one per link */
	int dead;
};

/* One orbit's copy (base) of one area. */
struct us_link {
	struct us_link *next_in_area, *next_in_orbit;
	struct orbit_sys_area *area;
	struct orbit_sys *orbit;
	_Atomic int dead;	/* area destroyed: base released, the orbit to be told */
	int base_fd;
	char *base;		/* main's MAP_SHARED view of the orbit's copy */
	int fd_sent;
	int prefaulted;		/* us_prefault allocated the base's pages */
	int ever_queued;	/* a new base's pages are all in `pending` */
	_Atomic int bg_written;	/* background_sync wrote the base since the last call */
	uint64_t *pending;	/* pages to send this orbit, one bit each */
	size_t lo, hi;		/* pending words that may be non-zero: [lo, hi) */
	size_t npending;
};

/* ---- shared control page */

#define US_SKIP_SLOTS 64	/* single calls cancelled and not yet taken */

/* A message waiting in shared memory (mailbox.c). */
#define US_MBOX_BYTES (16u << 10)	/* header and payload: a small call or result */
enum { US_MBOX_EMPTY = 0, US_MBOX_FULL = 1, US_MBOX_SLEEP = 2 };

struct us_mbox {
	_Atomic uint32_t state;
	uint32_t len;			/* bytes of data: a struct us_hdr, then its payload */
	_Alignas(64) char data[US_MBOX_BYTES];
};

struct us_ctl {
	_Atomic uint64_t req_count;	/* calls main has sent */
	_Atomic uint64_t req_taken;	/* calls the orbit has read */
	_Atomic uint64_t calls_done;	/* calls the orbit has answered */
	_Atomic uint64_t resp_count;	/* messages the orbit has sent in full */
	_Atomic uint64_t resp_taken;	/* messages main has read */
	_Atomic uint64_t stage_tail;	/* staging bytes the orbit has released */
	_Atomic uint64_t cancel_below;	/* calls below this seq are cancelled */
	_Atomic uint64_t skip[US_SKIP_SLOTS];	/* call seq is cancelled if skip[seq % N] == seq */
	struct us_mbox to_orbit;	/* calls */
	struct us_mbox to_main;		/* results and updates */
	_Atomic uint32_t started;	/* the orbit has set itself up (spawn.c's
					 * child_setup): its areas are its own */
};

/* ---- wire format */

/* A message passes at most this many descriptors: a call, one per area. */
#define US_MAX_FDS ORBIT_MAX_CALL_AREAS
_Static_assert(US_MAX_FDS <= 253, "the kernel passes at most 253 descriptors (SCM_MAX_FD)");
#define US_BASE_NAME "orbit-base"	/* memfd name of an orbit's area copy */
#define US_SKIPPED (1ULL << 63)	/* in a RESULT's aux: the call did not run */
#define US_MAGIC 0x4f524254u	/* "ORBT" */
enum { US_MSG_CALL = 1 };	/* plus ORBIT_MSG_RESULT / _UPDATE */

struct us_hdr {
	uint32_t magic;
	uint32_t kind;
	uint64_t seq;
	uint64_t len;		/* bytes after the header */
	int64_t retval;
	uint64_t aux;		/* CALL: argument offset in payload; RESULT: pages reset */
};

struct us_call_body {
	uint64_t entry;
	uint64_t stage_end;	/* release staging up to here when copied; 0: none */
	uint32_t narea;
	uint32_t nforget;	/* ids (uint32_t) of destroyed areas follow, then the areas */
};
/* Bytes of the forget list: padded so that what follows stays 8-aligned (the
 * call's argument comes last, and entries read it in place). */
#define US_FORGET_BYTES(n) (((size_t)(n) * sizeof(uint32_t) + 7) & ~(size_t)7)

struct us_area_rec {
	uint32_t id;
	uint32_t mode;
	uint64_t addr;
	uint64_t size;
	uint32_t new_fd;	/* a base descriptor for this area rides along */
	uint32_t nranges;	/* staged runs that follow */
	uint64_t stage_off;	/* position of the first staged page */
};

struct us_range {
	uint64_t first;
	uint64_t npages;
};

/* ---- orbit (both sides) */

struct us_view;
struct us_outq;
struct ks_holders;

struct us_rx {			/* a message being received, possibly in pieces */
	struct us_hdr hdr;
	size_t hdr_got;
	char *payload;
	size_t got;
};

struct orbit_sys {
	/* main side */
	pid_t pid;
	int sock;
	int pidfd;
	struct us_link *links;
	uint64_t stage_head;
	uint64_t resp_seen;
	struct us_rx rx;
	char *scratch;
	size_t scratch_cap;
	struct orbit_sys *next;	/* registry of live orbits */
	_Atomic uint64_t dead_links;	/* links whose area was destroyed, not swept yet */
	_Atomic size_t nlinks;	/* on the links list */
	uint32_t *forget;	/* destroyed areas the orbit has a view of, to tell it */
	size_t nforget, forget_cap;
	int killed;		/* us_kill_orbit ended its tree */
	struct ks_holders *ks;	/* the kernel backend's (csrc/ks/), else NULL */
	/* Held while a call is made and sent (until req_count counts it),
	 * and by background_sync while it writes this orbit's bases: the
	 * orbit reads no base while every call sent is answered. */
	pthread_mutex_t send_lock;

	/* shared */
	struct us_ctl *ctl;
	char *stage;
	size_t stage_size;

	/* orbit side */
	int osock;
	pid_t main_pid;
	uint64_t req_seen;
	struct us_view *views;
	struct us_outq *outq, *outq_tail;
	char *inbuf;
	size_t inbuf_cap;
	size_t memory_limit;
};

/* reserve.c */
int us_reserve_range(size_t size, char **addr);
void us_reserve_release(char *addr, size_t size);
size_t us_reserve_size(void);
void us_reserve_child_reset(void);
int us_reserve_set_writable(void);
int us_reserve_writable(void);

/* spawn.c */
int us_spawn(struct orbit_sys *s, const struct orbit_spawn *sp);
void us_reap(struct orbit_sys *s, int grace_ms, int *status);
void us_shared_free(struct orbit_sys *s);
void us_registry_remove(struct orbit_sys *s);

/* memlimit.c */
void us_memory_limit_child(size_t limit);
int us_raise_memory_limit(size_t extra);

/* harden.c */
int us_harden_child(pid_t main_pid, int main_pidfd);

/* lifetime.c */
void us_lifetime_child(void);
void us_orbit_end_children(void);
void us_orbit_exit(int code) __attribute__((noreturn));
void us_kill_descendants(pid_t root);
void us_kill_orbit(struct orbit_sys *s);
/* pidfd_open(pid, 0), or -1 with errno ENOSYS where the headers lack it;
 * also the kernel backend's (ks_holders.c) */
int us_pidfd_open(pid_t pid);
/* Signal child `pid` through `pidfd` where there is one (-1: none), else by
 * its pid; also the kernel backend's */
int us_pidfd_signal(int pidfd, pid_t pid, int sig);

/* fds.c (orbit, at its start): drop main's descriptors but 0-2, `own`,
 * `keep` and files */
void us_drop_inherited_fds(int own, const int *keep, size_t nkeep);

/* mailbox.c: put returns 1 when the message is in the mailbox (the caller
 * then counts it), 0 when it must go through the socket; only when the
 * reader has taken every earlier message.  sleep returns -1 when a message
 * is waiting instead. */
int us_mbox_put(struct us_mbox *mb, const struct iovec *iov, int n);
int us_mbox_full(struct us_mbox *mb);
void us_mbox_release(struct us_mbox *mb);
int us_mbox_sleep(struct us_mbox *mb);
void us_mbox_wake(struct us_mbox *mb);

/* The writer's count of messages sent is ahead of the reader's `seen`:
 * message seen+1 is complete (acquire: pairs with the writer's increment
 * after it filled the mailbox or sent the whole message).  Signed: a
 * message taken from the mailbox is counted a moment after it is put
 * there, so `seen` may be ahead. */
static inline int us_count_ahead(_Atomic uint64_t *count, uint64_t seen)
{
	return (int64_t)(atomic_load_explicit(count, memory_order_acquire) - seen) > 0;
}

/* The reader's next message is complete: in the mailbox, or counted. */
static inline int us_msg_waiting(struct us_mbox *mb, _Atomic uint64_t *count, uint64_t seen)
{
	return us_mbox_full(mb) || us_count_ahead(count, seen);
}

/* channel.c */
int us_send_all(int fd, const struct iovec *iov, int iovcnt, const int *fds, int nfds);
int us_send_call(struct orbit_sys *s, uint64_t seq, const void *body, size_t body_len,
		 const void *arg, size_t argsize, const int *fds, int nfds);
int us_rx_poll(int fd, struct us_rx *rx, struct us_mbox *mb, _Atomic uint64_t *count,
	       uint64_t seen, int timeout_ms);
int us_read_msg(int fd, struct us_hdr *h, char **buf, size_t *cap, int *fds, int *nfds, int maxfds);
unsigned us_spin_ns(void);
void us_cpu_relax(void);
void us_spin_step(unsigned *n);
uint64_t us_now_ns(void);

/* snapshot.c (main) */
int us_snapshot_call(struct orbit_sys *s, uint64_t seq, int idle, size_t narea,
		     struct orbit_sys_area *const *areas, orbit_entry entry,
		     const void *arg, size_t argsize, uint64_t scan, struct orbit_sync_stats *st);
int us_prefault(struct orbit_sys *s, size_t narea, struct orbit_sys_area *const *areas);
void us_links_free(struct orbit_sys *s);
void us_area_release_links(struct orbit_sys_area *a);
void us_area_put(struct orbit_sys_area *a);
int us_area_changed(struct orbit_sys_area *a, orbit_page_run_fn fn, void *ctx, uint64_t scan);
void us_area_set_copy_filter(struct orbit_sys_area *a, orbit_copy_filter_fn fn, void *ctx);
int us_area_collect(struct orbit_sys_area *a);
void us_area_set_write_limit(struct orbit_sys_area *a, size_t bytes);
size_t us_link_sync_quiet(struct us_link *l, size_t max_pages, uint64_t *same);

/* background_sync.c (main): copy the pages main wrote into idle orbits'
 * bases between calls, so that a call copies only what was written lately */
void us_bgsync_area_add(struct orbit_sys_area *a);
void us_bgsync_area_remove(struct orbit_sys_area *a);
void us_bgsync_wanted(void);
long us_bgsync_set_period(unsigned ms);

/* orbit_view.c (orbit) */
int us_view_recv(struct orbit_sys *s, struct orbit_request *rq);
int us_out_send(struct orbit_sys *s, uint32_t kind, uint64_t seq, long retval,
		uint64_t aux, const void *data, size_t len);
int us_out_flush(struct orbit_sys *s);

#endif
