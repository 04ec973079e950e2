/*
 * test_write_limit.c - orbit_area_confine_writes: the userspace backend then
 * looks for written pages only below the allocator's high-water mark
 * (rounded up to 2 MiB), which rises as blocks are handed out.
 *
 * Backend-specific: a write above the mark breaks the promise on purpose,
 * to show where the scan stops.
 */
#include <string.h>

#include "check.h"
#include "orbit.h"

static void count_pages(void *ctx, size_t first, size_t n)
{
	(void)first;
	*(size_t *)ctx += n;
}

static size_t changed(struct orbit_area *a)
{
	size_t n = 0;

	CHECK_EQ(orbit_area_changed(a, count_pages, &n), 0);
	return n;
}

/* Without the promise every page counts; with it, those below the mark. */
static void scan_stops_at_the_mark(void)
{
	struct orbit_area *a = check_area(64 << 20, "uffd");
	char *base, *p;

	REQUIRE(a != NULL);
	base = orbit_area_base(a);
	changed(a);
	base[40 << 20] = 1;	/* no promise yet: found */
	CHECK_EQ(changed(a), 1);
	CHECK_EQ(orbit_area_confine_writes(a), 0);
	p = orbit_alloc(a, 4096);
	REQUIRE(p != NULL);
	changed(a);
	p[0] = 1;
	base[40 << 20] = 2;	/* above the mark: not looked at */
	CHECK_EQ(changed(a), 1);
	orbit_area_destroy(a);
}

/* Blocks handed out higher up raise the mark: writes there are found. */
static void mark_rises_with_allocations(void)
{
	struct orbit_area *a = check_area(64 << 20, "uffd");
	char *blocks[12];

	REQUIRE(a != NULL);
	CHECK_EQ(orbit_area_confine_writes(a), 0);
	for (int i = 0; i < 12; i++) {
		blocks[i] = orbit_alloc(a, 3 << 20);	/* 36 MiB in all */
		REQUIRE(blocks[i] != NULL);
	}
	changed(a);
	for (int i = 0; i < 12; i++)
		blocks[i][(3 << 20) - 1] = 1;	/* each block's last byte */
	CHECK_EQ(changed(a), 12);
	orbit_area_destroy(a);
}

int main(void)
{
	check_watchdog(55);
	RUN(scan_stops_at_the_mark);
	RUN(mark_rises_with_allocations);
	return CHECK_DONE();
}
