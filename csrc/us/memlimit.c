/*
 * memlimit.c - an orbit's memory_limit.
 *
 * The limit is on the orbit's address space (RLIMIT_AS): every mapping
 * counts, private or shared, anonymous or of a file, so memory taken
 * through mmap(MAP_SHARED|MAP_ANONYMOUS) or a memfd is counted as well as
 * malloc's (RLIMIT_DATA, which counts private writable memory only, let a
 * shared mapping through).  It works unprivileged on every kernel.  What it
 * counts is address space, not memory touched: a reservation counts in full
 * (a thread's stack, a malloc arena), and the orbit gets
 *   what it has mapped when it starts (main's heap, the areas' reservation)
 *   + memory_limit
 * and each area view it maps later on top, because those views are main's
 * memory, not the orbit's allocation.  Past the limit mmap and brk fail:
 * Python raises MemoryError (or OSError ENOMEM from mmap.mmap), and the
 * orbit exits with EXIT_OUT_OF_MEMORY (see _orbit.py).
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <sys/resource.h>

#include "us.h"

/* Bytes of address space the process has mapped (VmSize). */
static size_t vm_size_bytes(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	size_t kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %zu kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

static int set_as_limit(size_t bytes)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_AS, &rl) < 0)
		return -errno;
	rl.rlim_cur = bytes;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max)
		rl.rlim_cur = rl.rlim_max;
	return setrlimit(RLIMIT_AS, &rl) < 0 ? -errno : 0;
}

/* In a new orbit, before it runs anything of the caller's. */
void us_memory_limit_child(size_t limit)
{
	/* Threads share malloc's main arena: another arena would reserve
	 * 64 MiB of address space per thread, a good part of a small limit. */
	mallopt(M_ARENA_MAX, 1);
	set_as_limit(vm_size_bytes() + limit);
}

/* An area view of `extra` bytes is about to be mapped: not the orbit's. */
int us_raise_memory_limit(size_t extra)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_AS, &rl) < 0)
		return -errno;
	if (rl.rlim_cur == RLIM_INFINITY)
		return 0;
	return set_as_limit(rl.rlim_cur + extra);
}
