/*
 * dirty_track.h - how main learns which pages of an area it wrote since the
 * previous snapshot, and how an orbit learns which pages of its private view
 * it wrote itself.  One implementation per mechanism:
 *
 *   dirty_track_uffd.c      userfaultfd async write-protect + PAGEMAP_SCAN
 *   dirty_track_mprotect.c  mprotect + SIGSEGV (any Linux)
 *   dirty_track_full.c      no tracking: every populated page, every time
 */
#ifndef ORBIT_DIRTY_TRACK_H
#define ORBIT_DIRTY_TRACK_H

#include "../orbit.h"
#include "pagemap.h"

/* Which tracker an area uses, as its views in the orbits learn it (the
 * wire format's us_area_rec.mode). */
enum dirty_track_mode {
	DIRTY_TRACK_UFFD = 1,
	DIRTY_TRACK_MPROTECT,
	DIRTY_TRACK_FULL,
};

struct dirty_track_ops {
	enum dirty_track_mode mode;
	const char *name;	/* the mode's name: orbit_area_mode() */
	/* Can this mechanism work in this process? */
	int (*available)(void);
	/* Start tracking [addr, addr+len): from now on every page is clean. */
	int (*attach)(void *addr, size_t len, void **state);
	void (*detach)(void *state, void *addr, size_t len);
	/* Report the pages written since attach or the previous collect, and
	 * make them clean again.  A page written while collect runs is reported
	 * now or by the next collect, never lost. */
	int (*collect)(void *state, void *addr, size_t len, page_run_cb cb, void *ctx);
	/* Orbit side: track the orbit's own writes to a new private file view
	 * (NULL, or nonzero: own_writes gets armed = 0 and must find them
	 * without help). */
	int (*own_attach)(void *addr, size_t len);
	/* Orbit side: report the pages of a private file view that the orbit
	 * wrote (its copy-on-write copies), to be discarded before a call.
	 * `armed`: own_attach succeeded on the view.  NULL means "discard the
	 * whole view". */
	int (*own_writes)(void *addr, size_t len, int armed, page_run_cb cb, void *ctx);
	/* In a new orbit process: forget main's tracking state. */
	void (*child_reset)(void);
};

extern const struct dirty_track_ops dirty_track_uffd;
extern const struct dirty_track_ops dirty_track_mprotect;
extern const struct dirty_track_ops dirty_track_full;

/* The tracker named `mode` (a tracker's name); NULL picks the best
 * available, honouring the ORBITPY_SNAPSHOT environment variable.  NULL and
 * errno EINVAL for an unknown name, ENOTSUP if unavailable. */
const struct dirty_track_ops *dirty_track_select(const char *mode);
/* The tracker for a known mode, available or not (orbit side). */
const struct dirty_track_ops *dirty_track_for_mode(enum dirty_track_mode mode);
void dirty_track_child_reset(void);
/* mprotect tracker: put our SIGSEGV handler back on top if it is in use. */
int dirty_track_mprotect_rearm(void);

/* Helpers the trackers share. */
int dirty_track_own_writes_pagemap(void *addr, size_t len, int armed, page_run_cb cb, void *ctx);

#endif
