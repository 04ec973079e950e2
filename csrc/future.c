/*
 * future.c - the result of an asynchronous call: its value or error, the
 * bytes attached to it, and the updates the orbit pushed for it.
 *
 * Futures are completed by whichever thread is pulling the orbit's messages
 * (see orbit_pump); waiting for one is in future_wait.c.  All fields are
 * guarded by the orbit's lock, which the callers of these functions hold.
 * The functions here know nothing of the orbit: what they need is passed in.
 */
#include <stdlib.h>

#include "future.h"

struct orbit_future *future_new(struct orbit *ob)
{
	struct orbit_future *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->ob = ob;
	f->refs = 2;
	return f;
}

void future_complete(struct orbit_future *f, struct orbit_stats *stats, int err, int status,
		     long retval, void *data, size_t len)
{
	if (f->done) {		/* cancelled earlier: the late result is dropped */
		free(data);
		return;
	}
	f->done = 1;
	free(f->arg);		/* never sent again */
	f->arg = NULL;
	if (err) {
		stats->failed++;
		if (err == -ORBIT_E_TIMEOUT)
			stats->timeouts++;
		else if (err == -ORBIT_E_CANCELLED)
			stats->cancelled++;
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

int future_take_update(struct orbit_future *f, void **data, size_t *len)
{
	struct orbit_update *u = f->upd_head;

	if (!u)
		return 0;
	f->upd_head = u->next;
	if (!f->upd_head)
		f->upd_tail = NULL;
	*data = u->data;
	*len = u->len;
	free(u);
	return 1;
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

