/*
 * future_wait.c - main waiting for a future: its answer, its updates, and
 * what must be read or set under the orbit's lock.  A waiter pumps the
 * orbit's messages itself if no other thread does (see pump.c).
 */
#include <errno.h>

#include "orbit_internal.h"

/* The clock time timeout_ms from now; UINT64_MAX (never) for a negative one. */
static uint64_t deadline_after_ms(int timeout_ms)
{
	return timeout_ms < 0 ? UINT64_MAX : orbit_now_ns() + (uint64_t)timeout_ms * 1000000ULL;
}

int orbit_future_wait(struct orbit_future *f, int timeout_ms, long *ret)
{
	struct orbit *ob = f->ob;
	uint64_t deadline = deadline_after_ms(timeout_ms);
	int rc = 0;

	if (orbit_foreign(ob->owner))	/* inherited by fork: the answer is the owner's */
		return -ECHILD;
	pthread_mutex_lock(&ob->lock);
	while (!f->done) {
		rc = orbit_pump(ob, deadline);
		if (rc == -EINTR)
			break;
		if (!f->done && orbit_now_ns() >= deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		rc = 0;
	}
	if (f->done) {
		rc = f->err;
		if (!rc && ret)
			*ret = f->retval;
	}
	pthread_mutex_unlock(&ob->lock);
	return rc;
}

int orbit_future_get(struct orbit_future *f, long *ret)
{
	return orbit_future_wait(f, -1, ret);
}

int orbit_future_done(struct orbit_future *f)
{
	int d;

	pthread_mutex_lock(&f->ob->lock);
	d = f->done;
	pthread_mutex_unlock(&f->ob->lock);
	return d;
}

int orbit_future_set_timeout(struct orbit_future *f, int timeout_ms)
{
	if (timeout_ms < 0)
		return -EINVAL;
	pthread_mutex_lock(&f->ob->lock);
	f->timeout_ms = timeout_ms;
	pthread_mutex_unlock(&f->ob->lock);
	return 0;
}

int orbit_pull(struct orbit_future *f, int timeout_ms, void **data, size_t *len)
{
	struct orbit *ob = f->ob;
	uint64_t deadline = deadline_after_ms(timeout_ms);
	int rc = 0;

	if (orbit_foreign(ob->owner))	/* inherited by fork: the updates are the owner's */
		return -ECHILD;
	pthread_mutex_lock(&ob->lock);
	for (;;) {
		if (future_take_update(f, data, len)) {
			rc = 1;
			break;
		}
		if (f->done) {
			rc = 0;
			break;
		}
		if (orbit_now_ns() >= deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		rc = orbit_pump(ob, deadline);
		if (rc == -EINTR)
			break;
	}
	pthread_mutex_unlock(&ob->lock);
	return rc;
}
