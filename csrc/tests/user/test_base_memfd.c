/*
 * test_base_memfd.c - who maps the userspace backend's copies of an area
 * (its "orbit-base" memfds): destroying an area releases main's and every
 * orbit's mapping, and an orbit holds nothing of another orbit's base.
 *
 * Backend-specific: these count the userspace backend's memfd descriptors
 * and mappings in /proc/self/{fd,maps}.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "orbit.h"
#include "snapshot_util.h"

/* Mappings of orbit base copies in this process. */
static long base_mappings(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	long n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, "orbit-base") != NULL;
	fclose(f);
	return n;
}

static long entry_base_mappings(void *arg, size_t argsize, void *store)
{
	(void)arg;
	(void)argsize;
	(void)store;
	return base_mappings();
}

/* Destroying an area releases every orbit's copy: main's at once, the
 * orbit's when its next call starts.  Reading it there faults, as in main. */
static void destroyed_area_released(const char *mode)
{
	struct orbit_area *a = check_area(8 * PG, mode);
	struct orbit *ob = orbit_create("released", entry_sum, NULL, NULL);
	long main_before = base_mappings(), ret = -1;
	struct span s;

	REQUIRE(a && ob);
	((unsigned char *)orbit_area_base(a))[2 * PG] = 42;
	CHECK_EQ(call_sum(ob, a, 2, 1), 42);
	CHECK_EQ(base_mappings(), main_before + 1);	/* main's view of the copy */
	CHECK_EQ(orbit_call(ob, 0, NULL, entry_base_mappings, NULL, 0, &ret), 0);
	CHECK(ret >= 1);
	s = span_of(a, 2, 1);
	orbit_area_destroy(a);
	CHECK_EQ(base_mappings(), main_before);
	CHECK_EQ(orbit_call(ob, 0, NULL, entry_base_mappings, NULL, 0, &ret), 0);
	CHECK_EQ(ret, 0);
	CHECK_EQ(orbit_call(ob, 0, NULL, entry_sum, &s, sizeof(s), &ret), -ORBIT_E_CRASHED);
	orbit_destroy(ob);
}

static long entry_peek(void *arg, size_t argsize, void *store)
{
	(void)argsize;
	(void)store;
	return **(unsigned char **)arg;
}

/* ------------------------------------- what a new orbit process inherits */

/* 0: how many descriptors and mappings of orbit bases this process has
 *    (fds * 1000 + mappings);
 * 1: a wild write: the first byte of every page of every shared, writable
 *    base mapping (returns the number of mappings hit). */
static long entry_scan(void *arg, size_t argsize, void *store)
{
	int what = *(int *)arg;
	char line[512];
	long fds = 0, maps = 0;
	FILE *f;

	(void)argsize;
	(void)store;
	if (what == 0)
		fds = check_count_fds_like("memfd:orbit-base");
	f = fopen("/proc/self/maps", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char perms[8];

		if (!strstr(line, "memfd:orbit-base"))
			continue;
		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3)
			continue;
		maps++;
		if (what == 1 && perms[1] == 'w' && perms[3] == 's')
			for (unsigned long a = lo; a < hi; a += PG)
				*(volatile unsigned char *)a = 0x5A;
	}
	fclose(f);
	return what == 0 ? fds * 1000 + maps : maps;
}

/*
 * An orbit must hold nothing of another orbit: an orbit started after
 * another one got an area inherits main's descriptor of that orbit's base
 * memfd and main's shared, writable mapping of it (also of its staging ring
 * and control page), so a wild write in one orbit changes what another one
 * sees.  (child_setup() closes the other orbits' sockets and pidfds only.)
 */
static void test_orbit_inherits_no_other_orbit(void)
{
	struct orbit_area *a = orbit_area_create(16 * PG, "auto");
	struct orbit *y = orbit_create("victim", entry_peek, NULL, NULL);
	struct orbit *x = orbit_create("stray", entry_scan, NULL, NULL);
	unsigned char *p;
	long ret = -1;
	int what;

	REQUIRE(a && x && y);
	p = (unsigned char *)orbit_area_base(a) + PG;
	*p = 7;
	CHECK_EQ(orbit_call(y, 1, &a, NULL, &p, sizeof(p), &ret), 0);
	CHECK_EQ(ret, 7);
	/* x starts now, names no area: it has no base of its own */
	what = 0;
	CHECK_EQ(orbit_call(x, 0, NULL, NULL, &what, sizeof(what), &ret), 0);
	CHECK_EQ(ret, 0);
	what = 1;
	CHECK_EQ(orbit_call(x, 0, NULL, NULL, &what, sizeof(what), &ret), 0);
	CHECK_EQ(ret, 0);
	/* y's snapshot is main's, whatever x did */
	CHECK_EQ(orbit_call(y, 1, &a, NULL, &p, sizeof(p), &ret), 0);
	CHECK_EQ(ret, 7);
	orbit_destroy(x);
	orbit_destroy(y);
	orbit_area_destroy(a);
}

int main(void)
{
	check_watchdog(55);
	RUN_MODES(destroyed_area_released);
	RUN(test_orbit_inherits_no_other_orbit);
	return CHECK_DONE();
}
