/*
 * test_checks.c - what the core offers runtimes that check their areas
 * before a call: orbit_area_changed (pages main wrote since it last asked,
 * independent of what orbits were sent), orbit_usable_size, and the
 * check a call may carry (orbit_call_async_checked) that can refuse it right
 * before its snapshot, and copy
 * filters (orbit_area_set_copy_filter) that rewrite what the orbit is sent.
 * Asserted here: what every backend does; what the userspace backend's
 * modes report exactly is in user/test_modes.c, what its copy filters do in
 * user/test_copy_filter.c.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "negate_filter.h"
#include "orbit.h"
#include "scenario_changed.h"

#define PG orbit_page_size()

static void changed_pages(const char *mode)
{
	scenario_changed_pages(mode, NULL);
}

static void changed_independent_of_calls(const char *mode)
{
	scenario_changed_independent_of_calls(mode, NULL);
}

static void usable_size(void)
{
	struct orbit_area *a = check_area(64 * PG, "auto");
	char *p, *q;

	REQUIRE(a != NULL);
	p = orbit_alloc(a, 10);
	q = orbit_alloc(a, 3 * PG + 1);
	REQUIRE(p && q);
	CHECK(orbit_usable_size(a, p) >= 10);
	CHECK(orbit_usable_size(a, p) < 64);
	CHECK(orbit_usable_size(a, q) >= 3 * PG + 1);
	CHECK_EQ(orbit_usable_size(a, p + 16), 0);	/* not a block */
	CHECK_EQ(orbit_usable_size(a, NULL), 0);
	memset(q, 1, orbit_usable_size(a, q));	/* all of it is ours */
	orbit_free(a, p);
	CHECK_EQ(orbit_usable_size(a, p), 0);
	orbit_free(a, q);
	orbit_area_destroy(a);
}

/* orbit_call with a check: the call's result, or its error. */
static int call_checked(struct orbit *ob, size_t narea, struct orbit_area *const *areas,
			const void *arg, size_t argsize, orbit_check_fn check, void *ctx,
			long *ret)
{
	struct orbit_future *f = orbit_call_async_checked(ob, 0, narea, areas, NULL, arg,
							  argsize, check, ctx);
	int rc;

	if (!f)
		return -errno;
	rc = orbit_future_get(f, ret);
	orbit_future_release(f);
	return rc;
}

struct verdict {
	int checks, refuse;
};

static int check_call(void *ctx)
{
	struct verdict *v = ctx;

	v->checks++;
	return v->refuse;
}

/* A call's check runs once per call, with the call's own context, and may
 * refuse it (nothing sent, the orbit still usable); calls without one are
 * not checked. */
static void call_check(void)
{
	struct verdict v = { 0 };
	struct orbit *ob;
	long x = 42, *p = &x, ret = 0;

	ob = orbit_create("check", read_first, NULL, NULL);
	REQUIRE(ob != NULL);
	CHECK_EQ(call_checked(ob, 0, NULL, &p, sizeof(p), check_call, &v, &ret), 0);
	CHECK_EQ(ret, 42);
	CHECK_EQ(v.checks, 1);
	v.refuse = 1;
	CHECK_EQ(call_checked(ob, 0, NULL, &p, sizeof(p), check_call, &v, &ret),
		 -ORBIT_E_REFUSED);
	CHECK_EQ(v.checks, 2);
	CHECK_EQ(orbit_call(ob, 0, NULL, NULL, &p, sizeof(p), &ret), 0);	/* unchecked */
	CHECK_EQ(v.checks, 2);
	v.refuse = 0;
	ret = 0;
	CHECK_EQ(call_checked(ob, 0, NULL, &p, sizeof(p), check_call, &v, &ret), 0);
	CHECK_EQ(ret, 42);	/* still usable */
	CHECK_EQ(v.checks, 3);
	CHECK(strstr(orbit_strerror(ORBIT_E_REFUSED), "refused") != NULL);
	orbit_destroy(ob);
}

/*
 * What every backend does with a copy filter: takes it (and its removal),
 * never lets it touch main's area, and shows the orbit either the filtered
 * copy or, a backend that copies nothing never calling it, main's bytes.
 * (What the userspace backend, which copies, does with it, staged copies
 * and pages left alone included: user/test_copy_filter.c.)
 */
static void copy_filter_any_backend(const char *mode)
{
	struct orbit_area *a = check_area(16 * PG, mode);
	struct orbit *ob;
	long *p, ret = 0;

	REQUIRE(a != NULL);
	ob = orbit_create("filter", read_first, NULL, NULL);
	REQUIRE(ob != NULL);
	p = (long *)((char *)orbit_area_base(a) + 5 * PG);
	CHECK_EQ(orbit_area_set_copy_filter(a, negate_first, NULL), 0);
	filtered = 0;
	*p = 7;
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, &p, sizeof(p), &ret), 0);
	CHECK(filtered ? ret == -7 : ret == 7);
	CHECK_EQ(*p, 7);
	CHECK_EQ(orbit_area_set_copy_filter(a, NULL, NULL), 0);
	*p = 11;
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, &p, sizeof(p), &ret), 0);
	CHECK_EQ(ret, 11);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* A call's check that scans the area (as a runtime's check does). */
static struct orbit_area *scan_area;
static long *scan_p;
static long scan_write;	/* nonzero: the hook writes it after its scan */
static int scan_again;	/* ... and then scans again */

static int scanning_check(void *ctx)
{
	struct runs r = { 0 };

	(void)ctx;
	CHECK_EQ(orbit_area_changed(scan_area, note, &r), 0);
	if (scan_write) {
		*scan_p = scan_write;
		if (scan_again)
			CHECK_EQ(orbit_area_changed(scan_area, note, &r), 0);
	}
	return 0;
}

/* The snapshot after a call's check may use the check's scan of an area; no
 * write is lost for it, and a scan outside a check is never taken for one. */
static void check_scan_serves_the_snapshot(const char *mode)
{
	struct orbit *ob;
	long ret = 0;
	struct runs r;

	scan_area = check_area(16 * PG, mode);
	REQUIRE(scan_area != NULL);
	ob = orbit_create("scan", read_first, NULL, NULL);
	REQUIRE(ob != NULL);
	scan_p = (long *)((char *)orbit_area_base(scan_area) + 7 * PG);
	*scan_p = 1;
	CHECK_EQ(call_checked(ob, 1, &scan_area, &scan_p, sizeof(scan_p), scanning_check, NULL,
			      &ret), 0);
	CHECK_EQ(ret, 1);
	*scan_p = 2;	/* before the check's scan: in the call */
	CHECK_EQ(call_checked(ob, 1, &scan_area, &scan_p, sizeof(scan_p), scanning_check, NULL,
			      &ret), 0);
	CHECK_EQ(ret, 2);

	/* Written after the check's scan and scanned again: in the call. */
	scan_write = 3;
	scan_again = 1;
	CHECK_EQ(call_checked(ob, 1, &scan_area, &scan_p, sizeof(scan_p), scanning_check, NULL,
			      &ret), 0);
	CHECK_EQ(ret, 3);

	/* Written after the check's last scan: in this call or the next, never lost. */
	scan_write = 4;
	scan_again = 0;
	CHECK_EQ(call_checked(ob, 1, &scan_area, &scan_p, sizeof(scan_p), scanning_check, NULL,
			      &ret), 0);
	CHECK(ret == 3 || ret == 4);
	scan_write = 0;
	CHECK_EQ(call_checked(ob, 1, &scan_area, &scan_p, sizeof(scan_p), scanning_check, NULL,
			      &ret), 0);
	CHECK_EQ(ret, 4);

	/* A scan outside any check: the snapshot scans for itself. */
	orbit_destroy(ob);
	ob = orbit_create("scan", read_first, NULL, NULL);
	REQUIRE(ob != NULL);
	CHECK_EQ(orbit_call(ob, 1, &scan_area, NULL, &scan_p, sizeof(scan_p), &ret), 0);
	CHECK_EQ(ret, 4);
	r = changed(scan_area);
	CHECK_EQ(r.overflow, 0);
	*scan_p = 5;
	CHECK_EQ(orbit_call(ob, 1, &scan_area, NULL, &scan_p, sizeof(scan_p), &ret), 0);
	CHECK_EQ(ret, 5);
	orbit_destroy(ob);
	orbit_area_destroy(scan_area);
}

int main(void)
{
	/* These count each call's copies: none between calls. */
	orbit_set_background_sync(0);
	check_watchdog(55);
	RUN_MODES(changed_pages);
	RUN_MODES(changed_independent_of_calls);
	RUN(usable_size);
	RUN(call_check);
	RUN_MODES(copy_filter_any_backend);
	RUN_MODES(check_scan_serves_the_snapshot);
	return CHECK_DONE();
}
