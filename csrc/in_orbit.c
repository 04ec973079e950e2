/*
 * in_orbit.c - the loop an orbit process runs, and what its entry functions
 * may call there.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orbit_internal.h"

static struct orbit_sys *child_sys;
static const struct orbit_request *child_rq;
static void *child_ret;
static size_t child_ret_len;

int orbit_in_orbit(void)
{
	return child_sys != NULL;
}

int orbit_return_data(const void *data, size_t len)
{
	void *copy;

	if (!child_rq)
		return -EPERM;
	copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, data, len);
	free(child_ret);
	child_ret = copy;
	child_ret_len = len;
	return 0;
}

int orbit_push(const void *data, size_t len)
{
	if (!child_rq)
		return -EPERM;
	return orbit_sys->push(child_sys, child_rq->seq, data, len);
}

void orbit_child_main(struct orbit_sys *s, void *arg)
{
	struct orbit *ob = arg;
	void *store;

	child_sys = s;
	store = ob->init ? ob->init() : NULL;
	for (;;) {
		struct orbit_request rq;
		long r = 0;
		void *st = blk_begin(ob);
		int rc = orbit_sys->recv(s, &rq);

		blk_end(ob, st);
		if (rc)
			_exit(rc == -EPIPE ? 0 : ORBIT_EXIT_RECV_FAILED);
		if (!rq.cancelled) {
			child_rq = &rq;
			r = (rq.entry ? rq.entry : ob->entry)(rq.arg, rq.argsize, store);
			child_rq = NULL;
		}
		rc = orbit_sys->ret(s, &rq, r, child_ret, child_ret_len);
		free(child_ret);
		child_ret = NULL;
		child_ret_len = 0;
		if (rc)
			_exit(rc == -EPIPE ? 0 : ORBIT_EXIT_RET_FAILED);
	}
}
