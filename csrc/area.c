/*
 * area.c - areas as the library's users see them: a backend area plus the
 * allocator that lives inside it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "area_alloc.h"
#include "orbit_internal.h"

struct orbit_area {
	struct orbit_sys_area *sys;
	void *base;
	size_t size;
	pthread_mutex_t lock;	/* the allocator */
	pid_t owner;
	int confined;		/* orbit_area_confine_writes */
	size_t write_limit;	/* told the backend: no write at or above (lock) */
};

pid_t orbit_area_owner(const struct orbit_area *a)
{
	return a->owner;
}

struct orbit_sys_area *orbit_area_sys(const struct orbit_area *a)
{
	return a->sys;
}

size_t orbit_page_size(void)
{
	return orbit_sys->page_size;
}

const char *orbit_backend_name(void)
{
	return orbit_sys->name;
}

struct orbit_area *orbit_area_create(size_t size, const char *mode)
{
	size_t page = orbit_sys->page_size;
	struct orbit_area *a;
	int rc;

	if (!size || size > SIZE_MAX - page) {
		errno = EINVAL;
		return NULL;
	}
	if (mode && (!*mode || !strcmp(mode, "auto")))
		mode = NULL;	/* the backend's choice */
	if (orbit_in_orbit()) {
		errno = EPERM;
		return NULL;
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	rc = orbit_sys->area_create(size, mode, &a->sys, &a->base);
	if (rc) {
		free(a);
		errno = rc == -E2BIG ? ENOMEM : -rc;
		return NULL;
	}
	a->size = (size + page - 1) & ~(page - 1);
	a->owner = orbit_self_pid();
	pthread_mutex_init(&a->lock, NULL);
	area_alloc_init(a->base, a->size);
	return a;
}

/*
 * In an orbit process, areas are main's: the orbit sees them only through its
 * views, and their locks were copied at fork time in whatever state they were.
 * So the calls below do nothing there (allocating fails with EPERM).
 */
void orbit_area_destroy(struct orbit_area *a)
{
	if (!a || orbit_foreign(a->owner))
		return;
	orbit_sys->area_destroy(a->sys);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

void *orbit_area_base(const struct orbit_area *a)
{
	return a->base;
}

size_t orbit_area_size(const struct orbit_area *a)
{
	return a->size;
}

const char *orbit_area_mode(const struct orbit_area *a)
{
	return orbit_sys->area_mode(a->sys);
}

/* Backend extras (see orbit.h): "none" where the backend has none. */
int orbit_rearm_fault_handler(void)
{
	return orbit_sys->rearm_fault_handler ? orbit_sys->rearm_fault_handler() : 0;
}

size_t orbit_reservation_size(void)
{
	return orbit_sys->reservation_size ? orbit_sys->reservation_size() : SIZE_MAX;
}

long orbit_set_background_sync(unsigned ms)
{
	return orbit_sys->set_background_sync ? orbit_sys->set_background_sync(ms) : -ENOTSUP;
}

/*
 * Raise the backend's write limit past the allocator's top (a->lock held).
 * In steps of WRITE_LIMIT_STEP, so that a growing heap tells the backend
 * once per step, not once per block.
 */
#define WRITE_LIMIT_STEP (2UL << 20)

static void write_limit_raise(struct orbit_area *a)
{
	size_t top = area_alloc_top(a->base), lim;

	if (top <= a->write_limit)
		return;
	lim = (top + WRITE_LIMIT_STEP - 1) & ~(WRITE_LIMIT_STEP - 1);
	if (lim > a->size)
		lim = a->size;
	a->write_limit = lim;
	orbit_sys->area_set_write_limit(a->sys, lim);
}

int orbit_area_confine_writes(struct orbit_area *a)
{
	if (!a)
		return -EINVAL;
	if (orbit_in_orbit() || orbit_foreign(a->owner))
		return -EPERM;
	if (!orbit_sys->area_set_write_limit)
		return 0;
	pthread_mutex_lock(&a->lock);
	a->confined = 1;
	write_limit_raise(a);
	pthread_mutex_unlock(&a->lock);
	return 0;
}

void *orbit_alloc(struct orbit_area *a, size_t size)
{
	void *p;

	if (orbit_in_orbit()) {
		errno = EPERM;
		return NULL;
	}
	pthread_mutex_lock(&a->lock);
	p = area_alloc(a->base, size);
	if (p && a->confined)
		write_limit_raise(a);
	pthread_mutex_unlock(&a->lock);
	if (!p)
		errno = ENOMEM;
	return p;
}

void orbit_free(struct orbit_area *a, void *ptr)
{
	if (!ptr || orbit_in_orbit())
		return;
	pthread_mutex_lock(&a->lock);
	if (area_alloc_owns(a->base, ptr))
		area_free(a->base, ptr);
	pthread_mutex_unlock(&a->lock);
}

void orbit_area_stats(struct orbit_area *a, struct orbit_area_stats *st)
{
	if (orbit_in_orbit()) {	/* the orbit's snapshot, no lock */
		st->size = a->size;
		area_alloc_usage(a->base, &st->used, &st->allocations);
		return;
	}
	pthread_mutex_lock(&a->lock);
	st->size = a->size;
	area_alloc_usage(a->base, &st->used, &st->allocations);
	pthread_mutex_unlock(&a->lock);
}

size_t orbit_usable_size(struct orbit_area *a, const void *ptr)
{
	size_t n = 0;

	if (!ptr)
		return 0;
	if (orbit_in_orbit())
		return area_alloc_usable(a->base, ptr);
	pthread_mutex_lock(&a->lock);
	n = area_alloc_usable(a->base, ptr);
	pthread_mutex_unlock(&a->lock);
	return n;
}

int orbit_area_changed(struct orbit_area *a, orbit_page_run_fn fn, void *ctx)
{
	if (orbit_in_orbit())
		return -EPERM;
	return orbit_sys->area_changed(a->sys, fn, ctx, orbit_prepare_scan());
}

int orbit_area_set_copy_filter(struct orbit_area *a, orbit_copy_filter_fn fn, void *ctx)
{
	if (orbit_in_orbit())
		return -EPERM;
	if (orbit_sys->area_set_copy_filter)
		orbit_sys->area_set_copy_filter(a->sys, fn, ctx);
	return 0;
}
