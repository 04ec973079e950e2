/*
 * dirty_track.c - choosing a dirty-page tracker, and the pagemap-based
 * queries the fallbacks share.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dirty_track.h"

int dirty_track_own_writes_pagemap(void *addr, size_t len, int armed, page_run_cb cb, void *ctx)
{
	(void)armed;
	return pagemap_runs(addr, len, 1, cb, ctx);
}

static const struct dirty_track_ops *const all_trackers[] = {
	&dirty_track_uffd, &dirty_track_mprotect, &dirty_track_full,
};

const struct dirty_track_ops *dirty_track_for_mode(enum dirty_track_mode mode)
{
	for (size_t i = 0; i < sizeof(all_trackers) / sizeof(all_trackers[0]); i++)
		if (all_trackers[i]->mode == mode)
			return all_trackers[i];
	return NULL;
}

const struct dirty_track_ops *dirty_track_select(const char *mode)
{
	const struct dirty_track_ops *t = NULL;

	if (!mode)
		mode = getenv("ORBITPY_SNAPSHOT");
	if (mode && (!*mode || !strcmp(mode, "auto")))
		mode = NULL;
	if (mode) {
		for (size_t i = 0; i < sizeof(all_trackers) / sizeof(all_trackers[0]); i++)
			if (!strcmp(all_trackers[i]->name, mode))
				t = all_trackers[i];
		if (!t) {
			errno = EINVAL;
			return NULL;
		}
		if (!t->available()) {
			errno = ENOTSUP;
			return NULL;
		}
		return t;
	}
	for (size_t i = 0; i < sizeof(all_trackers) / sizeof(all_trackers[0]); i++)
		if (all_trackers[i]->available())
			return all_trackers[i];
	errno = ENOTSUP;
	return NULL;
}

void dirty_track_child_reset(void)
{
	for (size_t i = 0; i < sizeof(all_trackers) / sizeof(all_trackers[0]); i++)
		if (all_trackers[i]->child_reset)
			all_trackers[i]->child_reset();
}
