/*
 * test_copy_filter.c - copy filters (orbit_area_set_copy_filter) with the
 * userspace backend, which copies pages: the orbit reads the filtered copy,
 * for calls written straight into its view and for staged ones, and a page
 * the filter turns into what the orbit holds already is not copied.
 * (What any backend does with a filter: test_checks.c.)
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "negate_filter.h"
#include "orbit.h"

#define PG orbit_page_size()

struct slow_arg {
	long *p;
	int sleep_ms;
};

/* In the orbit: the call's slow_arg, after sleeping as it asks. */
static struct slow_arg take_slowly(const void *arg, size_t argsize)
{
	struct slow_arg a;

	CHECK_EQ(argsize, sizeof(a));
	memcpy(&a, arg, sizeof(a));
	if (a.sleep_ms)
		usleep((useconds_t)a.sleep_ms * 1000);
	return a;
}

static long read_slowly(void *arg, size_t argsize, void *store)
{
	(void)store;
	return *take_slowly(arg, argsize).p;
}

/* An orbit of entry's for a test of filter, set on area a; arg->p: where
 * the test writes, page 5.  NULL if the orbit could not be made. */
static struct orbit *filtered_orbit(struct orbit_area *a, const char *name, orbit_entry entry,
				    orbit_copy_filter_fn filter, struct slow_arg *arg)
{
	struct orbit *ob = orbit_create(name, entry, NULL, NULL);

	if (!ob)
		return NULL;
	arg->p = (long *)((char *)orbit_area_base(a) + 5 * PG);
	CHECK_EQ(orbit_area_set_copy_filter(a, filter, NULL), 0);
	return ob;
}

/* The orbit reads the filtered copy, for calls written straight into its
 * view and for staged ones; main's area keeps what main wrote. */
static void copy_filter(const char *mode)
{
	struct orbit_area *a = check_area(16 * PG, mode);
	struct orbit_future *busy, *staged;
	struct slow_arg arg = { 0 };
	struct orbit *ob;
	long ret = 0;

	REQUIRE(a != NULL);
	ob = filtered_orbit(a, "filter", read_slowly, negate_first, &arg);
	REQUIRE(ob != NULL);
	filtered = 0;
	*arg.p = 7;
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, &arg, sizeof(arg), &ret), 0);
	CHECK_EQ(ret, -7);
	CHECK_EQ(*arg.p, 7);
	CHECK(filtered >= 1);

	/* Staged: the orbit is busy with the first call when the second is taken. */
	*arg.p = 8;
	arg.sleep_ms = 300;
	busy = orbit_call_async(ob, 0, 1, &a, NULL, &arg, sizeof(arg));
	REQUIRE(busy != NULL);
	*arg.p = 9;
	arg.sleep_ms = 0;
	staged = orbit_call_async(ob, 0, 1, &a, NULL, &arg, sizeof(arg));
	REQUIRE(staged != NULL);
	*arg.p = 10;	/* after the snapshot: seen by neither */
	CHECK_FUTURE(busy, -8);
	CHECK_FUTURE(staged, -9);

	/* Removed: plain copies again. */
	CHECK_EQ(orbit_area_set_copy_filter(a, NULL, NULL), 0);
	*arg.p = 11;
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, &arg, sizeof(arg), &ret), 0);
	CHECK_EQ(ret, 11);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

/* The filter zeroes the first long of every page copied, as a runtime
 * rewrites the reference counts that reading objects writes. */
static void zero_first(void *ctx, size_t first, size_t npages, void *dst)
{
	(void)ctx;
	(void)first;
	for (size_t i = 0; i < npages; i++)
		*(long *)((char *)dst + i * PG) = 0;
}

static long read_two_slowly(void *arg, size_t argsize, void *store)
{
	struct slow_arg a = take_slowly(arg, argsize);

	(void)store;
	return a.p[0] * 1000 + a.p[1];
}

static uint64_t copied_by(struct orbit *ob)
{
	struct orbit_stats st;

	orbit_stats(ob, &st);
	return st.pages_copied;
}

/*
 * A page main wrote that the filter turns into what the orbit holds
 * already is not copied (nor counted); any other change is, and so is
 * every page staged for a busy orbit.  Without a filter every page written
 * is copied, even one written with the bytes it had.
 */
static void filtered_equal_pages_not_copied(const char *mode)
{
	struct orbit_area *a = check_area(16 * PG, mode);
	struct orbit_future *busy, *staged;
	struct slow_arg arg = { 0 };
	struct orbit *ob;
	uint64_t c0;
	long ret = 0;

	REQUIRE(a != NULL);
	ob = filtered_orbit(a, "same", read_two_slowly, zero_first, &arg);
	REQUIRE(ob != NULL);
	arg.p[0] = 3;
	arg.p[1] = 4;
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, &arg, sizeof(arg), &ret), 0);
	CHECK_EQ(ret, 4);
	CHECK(copied_by(ob) >= 1);	/* a new copy: every page */

	c0 = copied_by(ob);
	arg.p[0] = 9;	/* only the word the filter rewrites */
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, &arg, sizeof(arg), &ret), 0);
	CHECK_EQ(ret, 4);
	CHECK_EQ(copied_by(ob) - c0, 0);

	c0 = copied_by(ob);
	arg.p[0] = 1;
	arg.p[1] = 5;
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, &arg, sizeof(arg), &ret), 0);
	CHECK_EQ(ret, 5);
	CHECK_EQ(copied_by(ob) - c0, 1);

	/* Staged behind a busy call: copied as they are, in order. */
	arg.p[1] = 6;
	arg.sleep_ms = 300;
	busy = orbit_call_async(ob, 0, 1, &a, NULL, &arg, sizeof(arg));
	REQUIRE(busy != NULL);
	arg.sleep_ms = 0;
	arg.p[0] = 2;
	arg.p[1] = 5;	/* back to what the orbit's copy held before `busy` */
	staged = orbit_call_async(ob, 0, 1, &a, NULL, &arg, sizeof(arg));
	REQUIRE(staged != NULL);
	CHECK_FUTURE(busy, 6);
	CHECK_FUTURE(staged, 5);

	/* Idle again: the comparison is with what the staged copies left. */
	arg.p[0] = 7;
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, &arg, sizeof(arg), &ret), 0);
	CHECK_EQ(ret, 5);
	arg.p[1] = 6;
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, &arg, sizeof(arg), &ret), 0);
	CHECK_EQ(ret, 6);

	/* No filter: a page written is a page copied. */
	CHECK_EQ(orbit_area_set_copy_filter(a, NULL, NULL), 0);
	c0 = copied_by(ob);
	arg.p[1] = 6;	/* the bytes it had */
	CHECK_EQ(orbit_call(ob, 1, &a, NULL, &arg, sizeof(arg), &ret), 0);
	CHECK_EQ(ret, 7006);
	CHECK(copied_by(ob) - c0 >= 1);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

int main(void)
{
	/* These count each call's copies: none between calls. */
	orbit_set_background_sync(0);
	check_watchdog(55);
	RUN_MODES(copy_filter);
	RUN_MODES(filtered_equal_pages_not_copied);
	return CHECK_DONE();
}
