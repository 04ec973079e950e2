/*
 * sys_select.c - which backend provides orbits in this process.
 *
 * Both backends are built in: the userspace backend (us/) runs on any Linux,
 * the kernel backend (ks/) needs the orbit system calls of kernel/patches.
 * ORBITPY_BACKEND=user or =kernel forces one.  Unset or "auto" means the
 * kernel backend where the running kernel answers its probe (an
 * orbit_update() that returns the ABI version it was built for; ENOSYS, or a
 * kernel using the number for something else, means no), else the userspace
 * backend.  The choice is made once, before main() runs, so that every area
 * and orbit of the process belongs to one backend; a process forked from
 * main inherits it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orbit_sys.h"

const struct orbit_sys_ops *orbit_sys = &orbit_sys_user;

__attribute__((constructor)) static void orbit_sys_select(void)
{
	const char *v = getenv("ORBITPY_BACKEND");

	if (v && !strcmp(v, "user"))
		return;
	if (v && !strcmp(v, "kernel")) {
		/* Forced: on a kernel without the calls its operations fail
		 * with ENOSYS rather than quietly running the other backend. */
		orbit_sys = orbit_sys_kernel(1);
		return;
	}
	if (v && *v && strcmp(v, "auto"))
		fprintf(stderr, "orbitpy: ORBITPY_BACKEND=%s is not a backend (kernel, user or "
			"auto); choosing as for auto\n", v);
	/* auto */
	{
		const struct orbit_sys_ops *k = orbit_sys_kernel(0);

		if (k)
			orbit_sys = k;
	}
}
