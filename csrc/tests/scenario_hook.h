/*
 * scenario_hook.h - how a backend's own test watches a shared scenario.
 *
 * A shared scenario (tests/scenario_*.h) asserts only what the orbit sees,
 * which holds for any backend; the shared test (tests/test_*.c) runs it with
 * no hook.  A backend's own test (tests/user/test_*.c) runs the same code
 * with a hook, called at the scenario's named points (an enum next to the
 * scenario) with the orbit there (or NULL) and what the scenario just read
 * there (or NULL; the enum says what), to assert what that backend counts
 * or reports exactly.  One scenario, written once, for both.
 */
#ifndef ORBIT_TESTS_SCENARIO_HOOK_H
#define ORBIT_TESTS_SCENARIO_HOOK_H

#include "orbit.h"

struct scenario_hook {
	void (*at)(void *ctx, int point, struct orbit *ob, const void *seen);
	void *ctx;
};

static inline void scenario_at(const struct scenario_hook *h, int point,
			       struct orbit *ob)
{
	if (h && h->at)
		h->at(h->ctx, point, ob, NULL);
}

static inline void scenario_seen(const struct scenario_hook *h, int point,
				 const void *seen)
{
	if (h && h->at)
		h->at(h->ctx, point, NULL, seen);
}

#endif
