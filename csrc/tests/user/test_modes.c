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

/* ----------------------------------- test_checks.c's changed pages, exact */

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

static void changed_pages(const char *mode)
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
	if (check_mode_is(mode, "full")) {	/* every populated page, every time */
		CHECK(r.n >= 3);
	} else {
		CHECK_EQ(r.n, 3);
		CHECK_EQ(r.pages[0], 3);
		CHECK_EQ(r.pages[1], 10);
		CHECK_EQ(r.pages[2], 11);
		/* Asked again with no write in between: nothing. */
		r = changed(a);
		CHECK_EQ(r.n, 0);
	}
	orbit_area_destroy(a);
}

/* A call's snapshot does not consume what the checks have not seen yet, and
 * the checks do not take pages away from the orbit's next snapshot. */
static void changed_independent_of_calls(const char *mode)
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
	r = changed(a);	/* both writes since the last check, reported once */
	CHECK(r.n >= 1);
	if (!check_mode_is(mode, "full")) {
		CHECK_EQ(r.n, 1);
		CHECK_EQ(r.pages[0], 5);
	}
	orbit_destroy(ob);
	orbit_area_destroy(a);
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
