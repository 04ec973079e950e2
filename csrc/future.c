/*
 * future.c - the result of an asynchronous call: its value or error, the
 * bytes attached to it, and the updates the orbit pushed for it.
 *
 * Futures are completed by whichever thread is pulling the orbit's messages
 * (see orbit_pump); waiters either pull themselves or sleep on the orbit's
 * condition variable.  All fields are guarded by the orbit's lock.
 */
#include <errno.h>
#include <stdlib.h>

#include "orbit_internal.h"

struct orbit_future *future_new(struct orbit *ob, uint64_t seq)
{
	struct orbit_future *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->ob = ob;
	f->seq = seq;
	f->refs = 2;
	return f;
}

void future_complete(struct orbit_future *f, int err, int status, long retval, void *data,
		     size_t len)
{
	if (f->done) {		/* cancelled earlier: the late result is dropped */
		free(data);
		return;
	}
	f->done = 1;
	free(f->arg);		/* never sent again */
	f->arg = NULL;
	if (err) {
		f->ob->stats.failed++;
		if (err == -ORBIT_E_TIMEOUT)
			f->ob->stats.timeouts++;
		else if (err == -ORBIT_E_CANCELLED)
			f->ob->stats.cancelled++;
	}
	f->err = err;
	f->status = status;
	f->retval = retval;
	f->data = data;
	f->len = len;
}

void future_add_update(struct orbit_future *f, void *data, size_t len)
{
	struct orbit_update *u = malloc(sizeof(*u));

	if (!u) {
		free(data);
		return;
	}
	u->next = NULL;
	u->data = data;
	u->len = len;
	if (f->upd_tail)
		f->upd_tail->next = u;
	else
		f->upd_head = u;
	f->upd_tail = u;
}

void future_put_locked(struct orbit_future *f)
{
	if (--f->refs)
		return;
	while (f->upd_head) {
		struct orbit_update *u = f->upd_head;

		f->upd_head = u->next;
		free(u->data);
		free(u);
	}
	free(f->arg);
	free(f->data);
	free(f);
}

int orbit_future_wait(struct orbit_future *f, int timeout_ms, long *ret)
{
	struct orbit *ob = f->ob;
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX
					   : orbit_now_ns() + (uint64_t)timeout_ms * 1000000ULL;
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

const void *orbit_future_data(struct orbit_future *f, size_t *len)
{
	*len = f->len;
	return f->data;
}

int orbit_future_status(struct orbit_future *f)
{
	return f->status;
}

pid_t orbit_future_pid(struct orbit_future *f)
{
	return f->pid;
}

uint64_t orbit_future_seq(struct orbit_future *f)
{
	return f->seq;
}

int orbit_future_cause(struct orbit_future *f)
{
	return f->cause;
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
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX
					   : orbit_now_ns() + (uint64_t)timeout_ms * 1000000ULL;
	int rc = 0;

	if (orbit_foreign(ob->owner))	/* inherited by fork: the updates are the owner's */
		return -ECHILD;
	pthread_mutex_lock(&ob->lock);
	for (;;) {
		if (f->upd_head) {
			struct orbit_update *u = f->upd_head;

			f->upd_head = u->next;
			if (!f->upd_head)
				f->upd_tail = NULL;
			*data = u->data;
			*len = u->len;
			free(u);
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
