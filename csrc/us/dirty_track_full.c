/*
 * dirty_track_full.c - no tracking at all: every populated page counts as
 * written on every call.  The last resort for kernels with neither
 * userfaultfd write-protection nor a usable SIGSEGV path, and a reference the
 * other trackers are tested against.
 */
#include "dirty_track.h"

static int full_available(void)
{
	return 1;
}

static int full_attach(void *addr, size_t len, void **state)
{
	(void)addr;
	(void)len;
	*state = NULL;
	return 0;
}

static void full_detach(void *state, void *addr, size_t len)
{
	(void)state;
	(void)addr;
	(void)len;
}

static int full_collect(void *state, void *addr, size_t len, page_run_cb cb, void *ctx)
{
	(void)state;
	return pagemap_runs(addr, len, 0, cb, ctx);	/* present or swapped */
}

const struct dirty_track_ops dirty_track_full = {
	.mode = DIRTY_TRACK_FULL,
	.name = "full",
	.available = full_available,
	.attach = full_attach,
	.detach = full_detach,
	.collect = full_collect,
	.own_writes = NULL,	/* discard the whole view */
	.child_reset = NULL,
};
