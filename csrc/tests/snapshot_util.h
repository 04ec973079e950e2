/*
 * snapshot_util.h - what the snapshot tests' entries look at and how they
 * call them: spans of an area's pages, weighed so that snapshots can be told
 * apart.  Shared by test_snapshot.c, scenario_snapshot.h and the userspace
 * backend's user/test_snapshot_costs.c, user/test_copy_counts.c and
 * user/test_base_memfd.c.
 */
#ifndef ORBIT_SNAPSHOT_UTIL_H
#define ORBIT_SNAPSHOT_UTIL_H

#include "check.h"
#include "orbit.h"

#define PG orbit_page_size()

/* What an entry looks at: pages [first, first+n) of the area at base. */
struct span {
	unsigned char *base;
	long first, n;
	long sleep_ms;		/* before reading */
	long sleep2_ms;		/* between two reads (entry_sum_twice) */
};

/* Sum of (k+1) * first byte of page first+k: tells snapshots apart. */
static inline long weigh(const struct span *s)
{
	long sum = 0;

	for (long k = 0; k < s->n; k++)
		sum += (k + 1) * s->base[(s->first + k) * PG];
	return sum;
}

static inline long entry_sum(void *arg, size_t argsize, void *store)
{
	const struct span *s = arg;

	(void)store;
	if (argsize != sizeof(*s))
		return -1;
	if (s->sleep_ms)
		check_sleep_ms((unsigned)s->sleep_ms);
	return weigh(s);
}

/* Reads twice with a pause between: a running call's view must not move. */
static inline long entry_sum_twice(void *arg, size_t argsize, void *store)
{
	const struct span *s = arg;
	long a, b;

	(void)argsize;
	(void)store;
	a = weigh(s);
	check_sleep_ms((unsigned)s->sleep2_ms);
	b = weigh(s);
	return a == b ? a : -1000000 - b;
}

/* The orbit writes its view: private, discarded before a later call. */
static inline long entry_scribble(void *arg, size_t argsize, void *store)
{
	const struct span *s = arg;

	(void)argsize;
	(void)store;
	for (long k = 0; k < s->n; k++)
		s->base[(s->first + k) * PG] = 0xEE;
	return s->n;
}

static inline long entry_sleep(void *arg, size_t argsize, void *store)
{
	(void)argsize;
	(void)store;
	check_sleep_ms((unsigned)*(long *)arg);
	return 0;
}

static inline struct span span_of(struct orbit_area *a, long first, long n)
{
	struct span s = { orbit_area_base(a), first, n, 0, 0 };

	return s;
}

static inline long call_sum(struct orbit *ob, struct orbit_area *a, long first, long n)
{
	struct span s = span_of(a, first, n);
	long ret = -12345;
	int rc = orbit_call(ob, 1, &a, entry_sum, &s, sizeof(s), &ret);

	CHECK_EQ(rc, 0);
	return rc ? -12345 : ret;
}

/* An orbit of entry_sum's with these hooks (orbit_options.hooks). */
static inline struct orbit *orbit_with_hooks(const char *name, struct orbit_hooks *h)
{
	struct orbit_options o;

	orbit_options_init(&o);
	o.hooks = h;
	return orbit_create(name, entry_sum, NULL, &o);
}

static inline void stats(struct orbit *ob, struct orbit_stats *st)
{
	orbit_stats(ob, st);
}

#endif
