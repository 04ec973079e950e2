/*
 * test_mprotect_splits.c - the mprotect mode under writes scattered over more
 * pages than the process may have mappings.
 *
 * Each page the fault handler makes writable on its own splits the area's
 * mapping; past vm.max_map_count (65530) mappings mprotect fails and, before
 * the split budget, the handler could not open the page: main died of
 * SIGSEGV at the ~32,000th scattered write.  Now it opens whole chunks once
 * its budget is spent; every written page is still reported, and a collect
 * merges the mapping again.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "orbit.h"

#define PAGE 4096UL
#define WRITES 70000UL	/* more than max_map_count / 2 */
#define STRIDE 2UL	/* pages: never adjacent */

struct seen {
	unsigned char *page;	/* a byte per page of the area */
	size_t runs;
};

static void note(void *ctx, size_t first, size_t n)
{
	struct seen *s = ctx;

	memset(s->page + first, 1, n);
	s->runs++;
}

static size_t mappings(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	size_t n = 0;
	int c;

	if (!f)
		return SIZE_MAX;	/* fails the checks below */
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static void scattered_writes_are_all_reported(void)
{
	size_t size = (WRITES * STRIDE + 1024) * PAGE;
	struct orbit_area *a = check_area(size, "mprotect");
	struct seen s = { 0 };
	char *base;
	size_t before, after;

	REQUIRE(a != NULL);
	base = orbit_area_base(a);
	s.page = calloc(size / PAGE, 1);
	REQUIRE(s.page != NULL);
	before = mappings();
	for (int round = 1; round <= 2; round++) {
		size_t missing = 0;

		CHECK_EQ(orbit_area_changed(a, note, &s), 0);
		memset(s.page, 0, size / PAGE);
		for (size_t i = 0; i < WRITES; i++)
			base[i * STRIDE * PAGE] = (char)round;	/* faults, every one */
		CHECK(mappings() < 40000);
		CHECK_EQ(orbit_area_changed(a, note, &s), 0);
		for (size_t i = 0; i < WRITES; i++)
			missing += !s.page[i * STRIDE];
		CHECK_EQ(missing, 0);
		/* Collect re-protected whole spans: the pieces merged again. */
		after = mappings();
		if (after >= before + 64)
			printf("mappings: %zu before the writes, %zu after the collect\n", before, after);
		CHECK(after < before + 64);
		for (size_t i = 0; i < WRITES; i += 997)
			CHECK_EQ(base[i * STRIDE * PAGE], (char)round);
	}
	free(s.page);
	orbit_area_destroy(a);
}

int main(void)
{
	check_watchdog(55);
	RUN(scattered_writes_are_all_reported);
	return CHECK_DONE();
}
