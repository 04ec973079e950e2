/*
 * ks.h - the kernel backend's shared definitions (see ks_sys.c).
 *
 * The files:
 *   ks_sys.c      the operation table: the userspace backend's, with the
 *                 snapshot made by orbit_update() instead of copies
 *   ks_holders.c  processes that keep the snapshots of queued calls until
 *                 the orbit takes them
 */
#ifndef ORBIT_KS_H
#define ORBIT_KS_H

#include <stdint.h>

#include "../us/us.h"

/* orbit_update(): 0 or -1 with errno (ENOSYS without the call). */
long ks_update(int pidfd, void *addr, size_t len, unsigned int flags);

/*
 * What a call carries after the userspace backend's body (whose narea is
 * 0: it maps nothing).  A call made while the orbit is idle has its areas
 * updated in the orbit already and carries no holder; a queued one names
 * the holder its snapshot waits in, and the areas to take from it.
 */
struct ks_call_tail {
	uint64_t done;		/* queued: the holder's busy flag (shared) to clear, else 0 */
	int32_t holder;		/* queued: the holder's pid, else 0 */
	uint32_t narea;		/* queued: struct ks_span records follow */
};

struct ks_span {
	uint64_t addr;
	uint64_t size;
};

/* ks_holders.c, main */
struct ks_holders;
/* Before the orbit is forked (it inherits the flags it clears): NULL when
 * out of memory. */
struct ks_holders *ks_holders_new(void);
/* The orbit process the holders serve (may ptrace them), once forked. */
void ks_holders_bind(struct ks_holders *h, pid_t orbit);
/* A free holder for a queued call, started if need be: its pidfd, and in
 * *done the address of its busy flag (set now, cleared by the orbit once it
 * has taken the snapshot); -1 when none is free (the call waits). */
int ks_holder_take(struct ks_holders *h, pid_t *pid, uint64_t *done);
/* The call was not sent after all: the holder is free again; `gone` when
 * it no longer exists (it is reaped and its slot started again later). */
void ks_holder_put(struct ks_holders *h, pid_t pid, int gone);
/* Kill and reap every holder, free everything (NULL: nothing). */
void ks_holders_free(struct ks_holders *h);

/* ks_holders.c, orbit: take a queued call's snapshot from its holder
 * (`body` is the call's body, `len` bytes); 0 for a call without one. */
int ks_holders_take_snapshot(const char *body, size_t len);

#endif
