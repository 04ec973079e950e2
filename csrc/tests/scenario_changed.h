/*
 * scenario_changed.h - orbit_area_changed: the pages main wrote since it
 * last asked, and that calls' snapshots do not consume them (nor they the
 * calls').  test_checks.c runs these with no hook (at least the pages
 * written: what any backend reports); user/test_modes.c with a hook that
 * asserts the userspace backend's modes' exact answers at the points below
 * (seen: the struct runs just reported).
 */
#ifndef ORBIT_TESTS_SCENARIO_CHANGED_H
#define ORBIT_TESTS_SCENARIO_CHANGED_H

#include "check.h"
#include "orbit.h"
#include "scenario_hook.h"

#ifndef PG
#define PG orbit_page_size()
#endif

/* Where the scenarios below call their hook. */
enum scenario_changed_point {
	CHANGED_WRITTEN,	/* pages 3, 10 and 11 written */
	CHANGED_AGAIN,		/* asked again, nothing written since */
	CHANGED_AFTER_CALLS,	/* page 5 written twice, two calls since */
};

/* The pages orbit_area_changed reported, in order (up to 64). */
struct runs {
	size_t pages[64];
	size_t n;
	int overflow;
};

static void note(void *ctx, size_t first, size_t npages)
{
	struct runs *r = ctx;

	for (size_t i = 0; i < npages; i++) {
		if (r->n == 64) {
			r->overflow = 1;
			return;
		}
		r->pages[r->n++] = first + i;
	}
}

static int has_page(const struct runs *r, size_t page)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->pages[i] == page)
			return 1;
	return 0;
}

static struct runs changed(struct orbit_area *a)
{
	struct runs r = { 0 };

	CHECK_EQ(orbit_area_changed(a, note, &r), 0);
	return r;
}

static long read_first(void *arg, size_t argsize, void *store)
{
	(void)argsize;
	(void)store;
	return **(long **)arg;
}

static void scenario_changed_pages(const char *mode, const struct scenario_hook *h)
{
	struct orbit_area *a = check_area(64 * PG, mode);
	char *b;
	struct runs r;

	REQUIRE(a != NULL);
	b = orbit_area_base(a);
	r = changed(a);	/* whatever setup wrote */
	b[3 * PG] = 1;
	b[10 * PG + 5] = 2;
	b[11 * PG] = 3;
	r = changed(a);
	/* At least the pages written (a mode without tracking reports every
	 * populated page, every time: the exact answers of the userspace
	 * backend's modes are user/test_modes.c's hook). */
	CHECK(has_page(&r, 3));
	CHECK(has_page(&r, 10));
	CHECK(has_page(&r, 11));
	scenario_seen(h, CHANGED_WRITTEN, &r);
	/* Asked again with no write in between: what comes back is the
	 * backend's (nothing, for a mode that tracks writes). */
	r = changed(a);
	scenario_seen(h, CHANGED_AGAIN, &r);
	orbit_area_destroy(a);
}

/* A call's snapshot does not consume what the checks have not seen yet, and
 * the checks do not take pages away from the orbit's next snapshot. */
static void scenario_changed_independent_of_calls(const char *mode,
						 const struct scenario_hook *h)
{
	struct orbit_area *a = check_area(16 * PG, mode);
	struct orbit *ob;
	long *p, ret = 0;
	struct runs r;

	REQUIRE(a != NULL);
	ob = orbit_create("checks", read_first, NULL, NULL);
	REQUIRE(ob != NULL);
	p = (long *)((char *)orbit_area_base(a) + 5 * PG);
	*p = 7;
	r = changed(a);
	CHECK(r.n >= 1);
	*p = 8;
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, &p, sizeof(p), &ret), 0);
	CHECK_EQ(ret, 8);	/* the check took page 5 first: the orbit still got it */
	*p = 9;
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, &p, sizeof(p), &ret), 0);
	CHECK_EQ(ret, 9);
	r = changed(a);	/* both writes since the last check, reported */
	CHECK(has_page(&r, 5));
	scenario_seen(h, CHANGED_AFTER_CALLS, &r);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

#endif
