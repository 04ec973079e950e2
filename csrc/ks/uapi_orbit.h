/*
 * uapi_orbit.h - the orbit system calls' ABI, as kernel/patches adds it
 * (include/uapi/linux/orbit.h there), for userspace built against headers
 * that lack it: every definition is guarded.
 *
 * The numbers are far above those Linux has given out (463 in 6.13), and a
 * call with ORBIT_UPDATE_PROBE answers ORBIT_ABI_VERSION only on a kernel
 * with these patches: a future kernel that gives the number to another call
 * fails the probe instead of being mistaken for an orbit kernel.
 */
#ifndef ORBITPY_UAPI_ORBIT_H
#define ORBITPY_UAPI_ORBIT_H

#if defined(__x86_64__) && !defined(__ILP32__)
#ifndef __NR_orbit_update
#define __NR_orbit_update 600
#endif
#endif

#ifndef ORBIT_UPDATE_PROBE
/* orbit_update(-1, 0, 0, ORBIT_UPDATE_PROBE) returns ORBIT_ABI_VERSION. */
#define ORBIT_UPDATE_PROBE	(1U << 31)
/* 2: ORBIT_UPDATE_FROM_PIDFD (version 1 had no flags). */
#define ORBIT_ABI_VERSION	0x0b170002L
#endif

#ifndef ORBIT_UPDATE_FROM_PIDFD
/* The caller's range becomes a snapshot of pidfd's process's (one the
 * caller may ptrace), instead of pidfd's (the caller's child) of the
 * caller's: how an orbit takes a queued call's snapshot from its holder. */
#define ORBIT_UPDATE_FROM_PIDFD	(1U << 0)
#endif

#endif
