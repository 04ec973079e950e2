/*
 * lifecycle.c - an orbit's life: creating it, starting its process (and
 * restarting it after a crash), restarting it on request, destroying it, and
 * freeing its memory once nothing refers to it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orbit_internal.h"

void orbit_options_init(struct orbit_options *o)
{
	memset(o, 0, sizeof(*o));
	o->restart = 1;
	o->restart_limit = 5;
	o->backoff_ms = 10;
	o->max_backoff_ms = 1000;
}

static int last_reference(struct orbit *ob);
static void orbit_release_memory(struct orbit *ob);

struct orbit *orbit_create(const char *name, orbit_entry entry, orbit_init init,
			   const struct orbit_options *opts)
{
	struct orbit *ob;

	if (!entry) {
		errno = EINVAL;
		return NULL;
	}
	ob = calloc(1, sizeof(*ob));
	if (!ob)
		return NULL;
	snprintf(ob->name, sizeof(ob->name), "%s", name ? name : "orbit");
	ob->entry = entry;
	ob->init = init;
	ob->owner = orbit_self_pid();
	if (opts)
		ob->opt = *opts;
	else
		orbit_options_init(&ob->opt);
	if (ob->opt.hooks)
		ob->hooks = *ob->opt.hooks;
	ob->opt.hooks = NULL;
	if (ob->opt.nkeep_fds) {	/* the caller's array need not outlive this call */
		int *keep = malloc(ob->opt.nkeep_fds * sizeof(*keep));

		if (!keep) {
			free(ob);
			return NULL;
		}
		memcpy(keep, ob->opt.keep_fds, ob->opt.nkeep_fds * sizeof(*keep));
		ob->opt.keep_fds = keep;
	} else {
		ob->opt.keep_fds = NULL;
	}
	pthread_mutex_init(&ob->lock, NULL);
	pthread_mutex_init(&ob->submit_lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_cond_init(&ob->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	return ob;
}

/* Start a process if none runs.  submit_lock held, ob->lock not held. */
int orbit_ensure_process(struct orbit *ob)
{
	struct orbit_spawn sp = { 0 };
	struct orbit_sys *sys;
	uint64_t delay_ns = 0;
	int rc;

	pthread_mutex_lock(&ob->lock);
	if (ob->closed) {
		pthread_mutex_unlock(&ob->lock);
		return -ORBIT_E_CLOSED;
	}
	if (ob->sys) {
		pthread_mutex_unlock(&ob->lock);
		return 0;
	}
	if (ob->started && !ob->want_restart) {	/* after a crash */
		uint64_t backoff, since = orbit_now_ns() - ob->last_crash_ns;
		int n = ob->crashes_in_row;

		if (!ob->opt.restart) {
			pthread_mutex_unlock(&ob->lock);
			return -ORBIT_E_CLOSED;
		}
		if (n > ob->opt.restart_limit) {
			pthread_mutex_unlock(&ob->lock);
			return -ORBIT_E_RESTART_LIMIT;
		}
		backoff = (uint64_t)ob->opt.backoff_ms * 1000000ULL << (n > 1 ? (n - 1 > 20 ? 20 : n - 1) : 0);
		if (backoff > (uint64_t)ob->opt.max_backoff_ms * 1000000ULL)
			backoff = (uint64_t)ob->opt.max_backoff_ms * 1000000ULL;
		if (backoff > since)
			delay_ns = backoff - since;
	}
	pthread_mutex_unlock(&ob->lock);
	if (delay_ns) {
		struct timespec ts = { (time_t)(delay_ns / 1000000000ULL),
				       (long)(delay_ns % 1000000000ULL) };
		void *st = blk_begin(ob);

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		blk_end(ob, st);
	}
	sp.name = ob->name;
	sp.nice = ob->opt.nice;
	sp.cpu_mask = ob->opt.cpu_mask;
	sp.memory_limit = ob->opt.memory_limit;
	sp.keep_fds = ob->opt.keep_fds;
	sp.nkeep_fds = ob->opt.nkeep_fds;
	sp.harden = ob->opt.harden;
	sp.hooks = &ob->hooks;
	sp.child_main = orbit_child_main;
	sp.child_arg = ob;
	rc = orbit_sys->create(&sp, &sys);
	if (rc)
		return rc;
	pthread_mutex_lock(&ob->lock);
	ob->sys = sys;
	if (ob->started)
		ob->stats.restarts++;
	ob->started = 1;
	ob->spawned++;
	ob->want_restart = 0;
	pthread_mutex_unlock(&ob->lock);
	return 0;
}

pid_t orbit_pid(struct orbit *ob)
{
	pid_t pid;

	pthread_mutex_lock(&ob->lock);
	pid = ob->sys ? orbit_sys->pid(ob->sys) : 0;
	pthread_mutex_unlock(&ob->lock);
	return pid;
}

void orbit_stats(struct orbit *ob, struct orbit_stats *st)
{
	pthread_mutex_lock(&ob->lock);
	*st = ob->stats;
	st->crashes_in_row = (uint64_t)ob->crashes_in_row;
	pthread_mutex_unlock(&ob->lock);
}

/*
 * A thread that entered a call or a restart keeps the orbit's memory alive
 * until it leaves, so an orbit_destroy() from another thread (which takes
 * submit_lock first and may win it) cannot free the locks it waits on.  The
 * caller must enter before destroy begins (the binding does: it clears its
 * pointer to the orbit before destroying it, both under its interpreter
 * lock).
 */
void orbit_enter(struct orbit *ob)
{
	pthread_mutex_lock(&ob->lock);
	ob->entered++;
	pthread_mutex_unlock(&ob->lock);
}

void orbit_leave(struct orbit *ob)
{
	int gone;

	pthread_mutex_lock(&ob->lock);
	ob->entered--;
	gone = last_reference(ob);
	pthread_mutex_unlock(&ob->lock);
	if (gone)
		orbit_release_memory(ob);
}

int orbit_restart(struct orbit *ob)
{
	if (orbit_foreign(ob->owner))
		return -EPERM;
	orbit_enter(ob);
	orbit_submit_begin(ob);
	pthread_mutex_lock(&ob->lock);
	ob->crashes_in_row = 0;
	if (ob->started)
		ob->want_restart = 1;	/* no backoff, whatever the policy */
	/* orbit_lose() lets a thread pulling from the process leave first; that
	 * thread may route an answer and go without noticing the kill, so
	 * waiting for it to reap the process could wait forever. */
	orbit_lose(ob, -ORBIT_E_CRASHED, 1);
	pthread_mutex_unlock(&ob->lock);
	orbit_submit_end(ob);
	orbit_leave(ob);
	return 0;
}

int orbit_destroy(struct orbit *ob)
{
	int gone;

	if (!ob)
		return -EINVAL;
	if (orbit_foreign(ob->owner))	/* a copy made by fork: leave it */
		return -EPERM;
	orbit_submit_begin(ob);
	pthread_mutex_lock(&ob->lock);
	ob->closed = 1;
	while (ob->sys && ob->reading) {
		orbit_sys->kill(ob->sys);
		orbit_cond_wait(ob, UINT64_MAX);
	}
	/* An idle orbit exits by itself when its channel closes; a busy one is
	 * killed at once. */
	orbit_lose(ob, -ORBIT_E_CLOSED, ob->pending != NULL);
	orbit_fail_requeued(ob, -ORBIT_E_CLOSED);
	ob->handle_gone = 1;
	gone = last_reference(ob);
	pthread_mutex_unlock(&ob->lock);
	orbit_submit_end(ob);
	if (gone)
		orbit_release_memory(ob);
	return 0;
}

/* Decided under ob->lock, acted on after it is dropped, exactly once. */
static int last_reference(struct orbit *ob)
{
	if (!ob->handle_gone || ob->live_futures || ob->entered || ob->freeing)
		return 0;
	ob->freeing = 1;
	return 1;
}

static void orbit_release_memory(struct orbit *ob)
{
	pthread_mutex_destroy(&ob->lock);
	pthread_mutex_destroy(&ob->submit_lock);
	pthread_cond_destroy(&ob->cond);
	free((void *)ob->opt.keep_fds);
	free(ob);
}

void orbit_future_release(struct orbit_future *f)
{
	struct orbit *ob = f->ob;

	if (orbit_foreign(ob->owner))	/* a copy made by fork: leave it */
		return;
	int gone;

	pthread_mutex_lock(&ob->lock);
	ob->live_futures--;
	future_put_locked(f);
	gone = last_reference(ob);
	pthread_mutex_unlock(&ob->lock);
	if (gone)
		orbit_release_memory(ob);
}
