/*
 * test_modes.c - the userspace backend's snapshot modes ("uffd", "mprotect",
 * "full"; see "Backend extras" in orbit.h) as that backend does them: a mode
 * asked for is the mode reported, what each reports as changed
 * (orbit_area_changed: exactly the pages written, or every populated page
 * for "full"), and an orbit's own SIGSEGV with an "mprotect" area, whose
 * SIGSEGV handler main installs.  The shared tests (test_area_alloc.c,
 * test_calls.c, test_checks.c, test_faults.c) assert what any backend does.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "orbit.h"
#include "scenario_changed.h"

#define PG orbit_page_size()

/* From test_area_alloc.c's test_area_create_args and test_calls.c's
 * run_mode: the size is rounded up to pages, the mode is the one asked for,
 * and a size beyond the reservation fails in a named mode too. */
static void named_mode_reported(const char *mode)
{
	struct orbit_area *a = orbit_area_create(3 * PG + 1, mode);

	REQUIRE(a != NULL);
	CHECK_EQ(orbit_area_size(a), 4 * PG);
	CHECK_STREQ(orbit_area_mode(a), mode);
	orbit_area_destroy(a);
	errno = 0;
	CHECK(orbit_area_create(orbit_reservation_size() + PG, mode) == NULL);
	CHECK_EQ(errno, ENOMEM);
}

/* ------------------ test_checks.c's changed pages (scenario_changed.h) */

/* What the userspace backend's modes report exactly: the pages written,
 * once; "full" every populated page, every time. */
static void changed_exactly_at(void *ctx, int point, struct orbit *ob,
			       const void *seen)
{
	const char *mode = ctx;
	const struct runs *r = seen;

	(void)ob;
	if (check_mode_is(mode, "full")) {
		CHECK(r->n >= (point == CHANGED_AFTER_CALLS ? 1 : 3));
		return;
	}
	switch (point) {
	case CHANGED_WRITTEN:
		CHECK_EQ(r->n, 3);
		CHECK_EQ(r->pages[0], 3);
		CHECK_EQ(r->pages[1], 10);
		CHECK_EQ(r->pages[2], 11);
		break;
	case CHANGED_AGAIN:
		CHECK_EQ(r->n, 0);
		break;
	case CHANGED_AFTER_CALLS:	/* both writes, reported once */
		CHECK(r->n >= 1);
		CHECK_EQ(r->n, 1);
		CHECK_EQ(r->pages[0], 5);
		break;
	}
}

static void changed_pages(const char *mode)
{
	struct scenario_hook h = { .at = changed_exactly_at, .ctx = (void *)mode };

	scenario_changed_pages(mode, &h);
}

static void changed_independent_of_calls(const char *mode)
{
	struct scenario_hook h = { .at = changed_exactly_at, .ctx = (void *)mode };

	scenario_changed_independent_of_calls(mode, &h);
}

/* --------------------------------------------- test_faults.c's crash */

static long segv_real(void *arg, size_t argsize, void *store)
{
	volatile char *p = mmap(NULL, PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	(void)arg;
	(void)argsize;
	(void)store;
	if (p != MAP_FAILED)
		p[0] = 1;
	return 0;
}

/* An mprotect-mode area makes main install a SIGSEGV handler; an orbit
 * must still die of a SIGSEGV of its own (it restores the old handler). */
static void test_crash_segv_with_mprotect_area(void)
{
	struct orbit_area *a = orbit_area_create(4 * PG, "mprotect");
	struct orbit *ob = orbit_create("crash-mp", segv_real, NULL, NULL);
	struct orbit_future *f;
	long ret;

	REQUIRE(a && ob);
	((char *)orbit_area_base(a))[PG] = 1;
	f = orbit_call_async(ob, 0, 1, &a, NULL, NULL, 0);
	REQUIRE(f != NULL);
	CHECK_EQ(orbit_future_get(f, &ret), -ORBIT_E_CRASHED);
	CHECK(WIFSIGNALED(orbit_future_status(f)));
	CHECK_EQ(WTERMSIG(orbit_future_status(f)), SIGSEGV);
	orbit_future_release(f);
	orbit_destroy(ob);
	orbit_area_destroy(a);
}

int main(void)
{
	/* As in test_checks.c: none of the backend's copying between calls. */
	orbit_set_background_sync(0);
	check_watchdog(55);
	RUN_MODES(named_mode_reported);
	RUN_MODES(changed_pages);
	RUN_MODES(changed_independent_of_calls);
	RUN(test_crash_segv_with_mprotect_area);
	return CHECK_DONE();
}
