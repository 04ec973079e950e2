/*
 * negate_filter.h - the copy filter (orbit_area_set_copy_filter) the filter
 * tests install, test_checks.c (any backend) and user/test_copy_filter.c:
 * it negates the first long of every page copied and counts the pages in
 * `filtered`, so that a test sees both that the orbit got the filtered copy
 * and whether the filter ran at all.
 */
#ifndef ORBIT_TESTS_NEGATE_FILTER_H
#define ORBIT_TESTS_NEGATE_FILTER_H

#include <stddef.h>

#include "orbit.h"

#ifndef PG
#define PG orbit_page_size()
#endif

static size_t filtered;

static void negate_first(void *ctx, size_t first, size_t npages, void *dst)
{
	(void)ctx;
	(void)first;
	for (size_t i = 0; i < npages; i++) {
		long *x = (long *)((char *)dst + i * PG);

		*x = -*x;
	}
	filtered += npages;
}

#endif
