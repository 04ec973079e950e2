/*
 * test_races.c - interleavings between main's threads, forced rather than
 * hoped for.
 *
 * Three tools pin a thread at an exact point of the library:
 *   - the orbit hooks (public API): block_begin runs in orbit_pump after the
 *     orbit's lock is dropped and before the backend is asked for a message;
 *     before_fork runs in the backend's spawn after the channel exists and
 *     before the fork;
 *   - this binary is linked with -Wl,--wrap=pthread_mutex_{lock,unlock,
 *     init,destroy} (see the Makefile): a thread can be paused right after it
 *     unlocks a given mutex, and locking a mutex that was destroyed (freed
 *     with its object) is counted;
 *   - and with -Wl,--wrap=us_send_call: a thread can be paused inside
 *     the backend's call operation, while it sends a call (both backends
 *     send calls with us_send_call, us/channel.c).
 * Each scenario runs in a forked child: a use-after-free there crashes (or
 * trips ASan) in the child and fails that one test.
 */
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <semaphore.h>
#include <stdint.h>

#include "check.h"
#include "orbit.h"
#include "orbit_internal.h"	/* only for &ob->submit_lock below */

#define PG orbit_page_size()

/* ------------------------------------------------- mutex instrumentation */

int __real_pthread_mutex_lock(pthread_mutex_t *m);
int __real_pthread_mutex_unlock(pthread_mutex_t *m);
int __real_pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a);
int __real_pthread_mutex_destroy(pthread_mutex_t *m);
int __wrap_pthread_mutex_lock(pthread_mutex_t *m);
int __wrap_pthread_mutex_unlock(pthread_mutex_t *m);
int __wrap_pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a);
int __wrap_pthread_mutex_destroy(pthread_mutex_t *m);

#define NDEAD 256
static void *dead[NDEAD];		/* destroyed mutexes (not re-initialised) */
static int dead_spin;
static int locks_of_dead;		/* lock calls on a destroyed mutex */

static __thread pthread_mutex_t *pause_after;	/* pause after unlocking this */
static __thread int pause_any;			/* ...or after any unlock */
static sem_t paused, resume;

static void dead_lock(void)
{
	while (__atomic_exchange_n(&dead_spin, 1, __ATOMIC_ACQUIRE))
		;
}

static void dead_unlock(void)
{
	__atomic_store_n(&dead_spin, 0, __ATOMIC_RELEASE);
}

static int dead_find(void *m)
{
	for (int i = 0; i < NDEAD; i++)
		if (dead[i] == m)
			return i;
	return -1;
}

int __wrap_pthread_mutex_destroy(pthread_mutex_t *m)
{
	int i;

	dead_lock();
	i = dead_find(NULL);
	if (i >= 0 && dead_find(m) < 0)
		dead[i] = m;
	dead_unlock();
	return __real_pthread_mutex_destroy(m);
}

int __wrap_pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a)
{
	int i;

	dead_lock();
	i = dead_find(m);
	if (i >= 0)
		dead[i] = NULL;
	dead_unlock();
	return __real_pthread_mutex_init(m, a);
}

int __wrap_pthread_mutex_lock(pthread_mutex_t *m)
{
	int hit;

	dead_lock();
	hit = dead_find(m) >= 0;
	dead_unlock();
	if (hit) {
		__atomic_fetch_add(&locks_of_dead, 1, __ATOMIC_SEQ_CST);
		fprintf(stderr, "lock of a destroyed mutex %p (use after free)\n", (void *)m);
	}
	return __real_pthread_mutex_lock(m);
}

int __wrap_pthread_mutex_unlock(pthread_mutex_t *m)
{
	int rc = __real_pthread_mutex_unlock(m);

	if (pause_any || (pause_after && pause_after == m)) {
		pause_any = 0;
		pause_after = NULL;
		sem_post(&paused);
		sem_wait(&resume);
	}
	return rc;
}

static int sem_wait_ms(sem_t *s, unsigned ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	while (sem_timedwait(s, &ts) < 0)
		if (errno != EINTR)
			return -1;
	return 0;
}

/* ------------------------------------------------------------- entries */

static long entry_echo(void *arg, size_t argsize, void *store)
{
	(void)store;
	if (argsize == sizeof(long) && *(long *)arg > 0)
		check_sleep_ms((unsigned)*(long *)arg);
	return argsize == sizeof(long) ? *(long *)arg : 0;
}

/* ------------------------- the last two futures released at the same time */

static struct orbit_future *rel_f;

static void *release_paused(void *arg)
{
	(void)arg;
	pause_any = 1;		/* pause right after release drops ob->lock */
	orbit_future_release(rel_f);
	return NULL;
}

/*
 * orbit_future_release drops the orbit's lock, then maybe_free() takes it
 * again to see whether the orbit may be freed.  If another thread releases
 * the last future in between, it frees the orbit, and the first thread's
 * maybe_free() then locks and reads freed memory.
 */
static void scenario_release_release(void)
{
	struct orbit *ob = orbit_create("rel", entry_echo, NULL, NULL);
	struct orbit_future *fa, *fb;
	pthread_t t;
	long v = 0, ret;

	REQUIRE(ob != NULL);
	fa = orbit_call_async(ob, 0, 0, NULL, NULL, &v, sizeof(v));
	fb = orbit_call_async(ob, 0, 0, NULL, NULL, &v, sizeof(v));
	REQUIRE(fa && fb);
	CHECK_EQ(orbit_future_get(fa, &ret), 0);
	CHECK_EQ(orbit_future_get(fb, &ret), 0);
	CHECK_EQ(orbit_destroy(ob), 0);	/* the futures keep it alive */
	rel_f = fa;
	REQUIRE(pthread_create(&t, NULL, release_paused, NULL) == 0);
	REQUIRE(sem_wait_ms(&paused, 5000) == 0);
	orbit_future_release(fb);	/* the last one: frees the orbit */
	sem_post(&resume);
	pthread_join(t, NULL);
	CHECK_EQ(locks_of_dead, 0);
}

static void test_release_races_release(void)
{
	CHECK_CHILD(scenario_release_release, 20000);
}

/* ------------------------------ orbit_destroy racing the last release */

static struct orbit *des_ob;

static void *destroy_paused(void *arg)
{
	(void)arg;
	/* orbit_destroy unlocks submit_lock last, then calls maybe_free() */
	pause_after = &des_ob->submit_lock;
	orbit_destroy(des_ob);
	return NULL;
}

static void scenario_destroy_release(void)
{
	struct orbit_future *f;
	pthread_t t;
	long v = 0, ret;

	des_ob = orbit_create("des", entry_echo, NULL, NULL);
	REQUIRE(des_ob != NULL);
	f = orbit_call_async(des_ob, 0, 0, NULL, NULL, &v, sizeof(v));
	REQUIRE(f != NULL);
	CHECK_EQ(orbit_future_get(f, &ret), 0);
	REQUIRE(pthread_create(&t, NULL, destroy_paused, NULL) == 0);
	REQUIRE(sem_wait_ms(&paused, 5000) == 0);
	orbit_future_release(f);	/* handle gone, last future: frees */
	sem_post(&resume);
	pthread_join(t, NULL);
	CHECK_EQ(locks_of_dead, 0);
}

static void test_destroy_races_release(void)
{
	CHECK_CHILD(scenario_destroy_release, 20000);
}

/* ------------------ a dead orbit found by a submitter while a reader pulls */

static __thread int hook_armed;

static void *hook_block_begin(void *ctx)
{
	(void)ctx;
	if (hook_armed) {	/* in orbit_pump: reading, lock dropped */
		hook_armed = 0;
		sem_post(&paused);
		sem_wait(&resume);
	}
	return NULL;
}

static void hook_block_end(void *ctx, void *state)
{
	(void)ctx;
	(void)state;
}

static struct orbit *rd_ob;
static struct orbit_future *rd_f;
static int rd_rc;

static void *reader(void *arg)
{
	long ret;

	(void)arg;
	hook_armed = 1;
	rd_rc = orbit_future_get(rd_f, &ret);
	return NULL;
}

/*
 * Thread R waits for a call: it becomes the reader (ob->reading), drops the
 * lock and is about to pull from the backend (ob->sys).  The orbit process
 * dies.  Thread S submits a call: the backend reports -EPIPE and
 * orbit_call_async() calls orbit_lose(), which destroys ob->sys although R
 * is still using it (orbit_restart and orbit_destroy wait for the reader;
 * this path does not).  R then pulls from freed memory.
 */
static void *resume_later(void *arg)
{
	struct timespec ts = { 0, 200 * 1000 * 1000 };

	(void)arg;
	nanosleep(&ts, NULL);
	sem_post(&resume);
	return NULL;
}

static void scenario_lose_under_reader(void)
{
	struct orbit_hooks hooks = { .block_begin = hook_block_begin,
				     .block_end = hook_block_end };
	struct orbit_options o;
	struct orbit_future *f2;
	pthread_t t;
	long v = 0, ret;
	pid_t pid;

	orbit_options_init(&o);
	o.hooks = &hooks;
	o.restart = 0;		/* keep the freed backend's memory unused */
	rd_ob = orbit_create("reader", entry_echo, NULL, &o);
	REQUIRE(rd_ob != NULL);
	CHECK_EQ(orbit_call(rd_ob, 0, NULL, NULL, &v, sizeof(v), &ret), 0);
	pid = orbit_pid(rd_ob);
	v = 10000;
	rd_f = orbit_call_async(rd_ob, 0, 0, NULL, NULL, &v, sizeof(v));
	REQUIRE(rd_f != NULL);
	REQUIRE(pthread_create(&t, NULL, reader, NULL) == 0);
	REQUIRE(sem_wait_ms(&paused, 5000) == 0);

	kill(pid, SIGKILL);
	CHECK(check_wait_dead(pid, 3000));
	/* The submitter finds the process dead while the reader is between
	 * taking the reader role and pulling: it must wait for the reader to
	 * leave the backend object before that object is freed. */
	{
		pthread_t r;

		REQUIRE(pthread_create(&r, NULL, resume_later, NULL) == 0);
		v = 0;
		f2 = orbit_call_async(rd_ob, 0, 0, NULL, NULL, &v, sizeof(v));
		CHECK(f2 == NULL);
		CHECK_EQ(errno, ORBIT_E_CLOSED);	/* crashed, restart disabled */
		pthread_join(r, NULL);
	}
	pthread_join(t, NULL);
	CHECK_EQ(rd_rc, -ORBIT_E_CRASHED);
	orbit_future_release(rd_f);
	orbit_destroy(rd_ob);
}

static void test_dead_orbit_lost_under_reader(void)
{
	CHECK_CHILD(scenario_lose_under_reader, 20000);
}

/* ---------------------- an orbit forked while another one is being born */

static long entry_count_sockets(void *arg, size_t argsize, void *store)
{
	(void)arg;
	(void)argsize;
	(void)store;
	return check_count_fds_like("socket:");
}

static struct orbit *fw_other;

static void start_other(void *ctx)
{
	long ret = -1;

	(void)ctx;
	if (fw_other)
		return;
	/* Between the first orbit's socketpair() and its registration. */
	fw_other = orbit_create("other", entry_count_sockets, NULL, NULL);
	if (fw_other)
		CHECK_EQ(orbit_call(fw_other, 0, NULL, NULL, NULL, 0, &ret), 0);
}

/*
 * us_spawn() creates the orbit's socketpair before it takes the registry
 * lock, and us_create() registers the orbit only after fork() returned.  An
 * orbit forked by another thread in between inherits both ends of the new
 * orbit's channel and keeps them open: the new orbit then never sees its
 * channel close, so orbit_destroy() waits out its 2 s grace and SIGKILLs it.
 * (Threads that start orbits concurrently hit this by chance; before_fork,
 * which runs in that window, makes it certain.)
 */
static void test_fork_window_leaks_channel(void)
{
	struct orbit_hooks hooks = { .before_fork = start_other };
	struct orbit_options o;
	struct orbit *ob;
	uint64_t t0;
	long v = 1, ret = -1;

	orbit_options_init(&o);
	o.hooks = &hooks;
	ob = orbit_create("first", entry_echo, NULL, &o);
	REQUIRE(ob != NULL);
	CHECK_EQ(orbit_call(ob, 0, NULL, NULL, &v, sizeof(v), &ret), 0);
	REQUIRE(fw_other != NULL);
	/* The other orbit holds only its own channel. */
	CHECK_EQ(orbit_call(fw_other, 0, NULL, NULL, NULL, 0, &ret), 0);
	CHECK_EQ(ret, 1);
	/* An idle orbit exits as soon as its channel closes. */
	t0 = check_now_ms();
	orbit_destroy(ob);
	CHECK(check_now_ms() - t0 < 1000);
	orbit_destroy(fw_other);
	fw_other = NULL;
}

/* ------------------------- orbit_destroy while a call waits to submit */

static struct orbit *sub_ob;
static sem_t sub_blocking, sub_go;
static __thread int sub_armed;
static int sub_errno;

/* In the submitting thread: it is about to wait for submit_lock. */
static void *sub_block_begin(void *ctx)
{
	(void)ctx;
	if (sub_armed) {
		sub_armed = 0;
		sem_post(&sub_blocking);
		sem_wait(&sub_go);
	}
	return NULL;
}

static void *submit_blocked(void *arg)
{
	long v = 0;
	struct orbit_future *f;

	(void)arg;
	sub_armed = 1;
	f = orbit_call_async(sub_ob, 0, 0, NULL, NULL, &v, sizeof(v));
	sub_errno = f ? 0 : errno;
	if (f)
		orbit_future_release(f);
	return NULL;
}

/*
 * A call has begun and waits for submit_lock (another submission holds it)
 * when orbit_destroy runs to the end: the orbit has no futures, but it must
 * not be freed under the waiting call, which then fails ORBIT_E_CLOSED.
 */
static void scenario_destroy_while_submitting(void)
{
	struct orbit_hooks h = { .block_begin = sub_block_begin };
	struct orbit_options o;
	pthread_t t;

	orbit_options_init(&o);
	o.hooks = &h;
	sub_ob = orbit_create("sub", entry_echo, NULL, &o);
	REQUIRE(sub_ob != NULL);
	sem_init(&sub_blocking, 0, 0);
	sem_init(&sub_go, 0, 0);
	pthread_mutex_lock(&sub_ob->submit_lock);	/* a submission under way */
	REQUIRE(pthread_create(&t, NULL, submit_blocked, NULL) == 0);
	REQUIRE(sem_wait_ms(&sub_blocking, 5000) == 0);
	pthread_mutex_unlock(&sub_ob->submit_lock);
	CHECK_EQ(orbit_destroy(sub_ob), 0);
	sem_post(&sub_go);
	pthread_join(t, NULL);
	CHECK_EQ(sub_errno, ORBIT_E_CLOSED);
	CHECK_EQ(locks_of_dead, 0);
}

static void test_destroy_while_submitting(void)
{
	CHECK_CHILD(scenario_destroy_while_submitting, 20000);
}

/* ------------------------ the process lost while a call is sent to it */

/*
 * This binary is also linked with -Wl,--wrap=us_send_call (us/channel.c,
 * which the call operation of either backend uses to send a call): a thread
 * can be paused inside orbit_sys->call(), after the library has read
 * ob->sys and dropped the orbit's lock, while the backend sends to its
 * process.
 */
int __real_us_send_call(struct orbit_sys *s, uint64_t seq, const void *body, size_t body_len,
			const void *arg, size_t argsize, const int *fds, int nfds);
int __wrap_us_send_call(struct orbit_sys *s, uint64_t seq, const void *body, size_t body_len,
			const void *arg, size_t argsize, const int *fds, int nfds);

static __thread int send_pause_at;	/* pause in this thread's Nth send (0: never) */

int __wrap_us_send_call(struct orbit_sys *s, uint64_t seq, const void *body, size_t body_len,
			const void *arg, size_t argsize, const int *fds, int nfds)
{
	if (send_pause_at && --send_pause_at == 0) {
		sem_post(&paused);
		sem_wait(&resume);
	}
	return __real_us_send_call(s, seq, body, body_len, arg, argsize, fds, nfds);
}

/*
 * Run fn in a thread until it pauses inside a send (fn sets send_pause_at),
 * cancel victim with a kill meanwhile (the sender resumes 200 ms later, so
 * the loss must wait for it), and wait for both.
 */
static void kill_while_sending(void *(*fn)(void *), struct orbit_future *victim)
{
	pthread_t t, r;

	REQUIRE(pthread_create(&t, NULL, fn, NULL) == 0);
	REQUIRE(sem_wait_ms(&paused, 5000) == 0);
	REQUIRE(pthread_create(&r, NULL, resume_later, NULL) == 0);
	CHECK_EQ(orbit_future_cancel(victim, ORBIT_CANCEL_KILL), 1);
	pthread_join(r, NULL);
	pthread_join(t, NULL);
}

static struct orbit *ls_ob;
static struct orbit_future *ls_f;

static void *submit_paused(void *arg)
{
	long v = 7;

	(void)arg;
	send_pause_at = 1;
	ls_f = orbit_call_async(ls_ob, 0, 0, NULL, NULL, &v, sizeof(v));
	return NULL;
}

/*
 * Thread S submits a call and is inside the backend's call() on the orbit's
 * process when main cancels the running call with ORBIT_CANCEL_KILL:
 * orbit_lose() kills the process and frees its backend object.  It must wait
 * for S to leave call() first (else S sends through freed memory), and S's
 * call, not among those the lost process owed, must run on the next process
 * (else it waits forever, pending on no process).
 */
static void scenario_lose_under_submitter(void)
{
	struct orbit_future *running;
	long v = 10000, ret = -1;

	ls_ob = orbit_create("lose-submit", entry_echo, NULL, NULL);
	REQUIRE(ls_ob != NULL);
	running = orbit_call_async(ls_ob, 0, 0, NULL, NULL, &v, sizeof(v));
	REQUIRE(running != NULL);
	kill_while_sending(submit_paused, running);
	REQUIRE(ls_f != NULL);
	CHECK_EQ(orbit_future_wait(ls_f, 5000, &ret), 0);
	CHECK_EQ(ret, 7);
	CHECK_EQ(orbit_future_get(running, &ret), -ORBIT_E_CANCELLED);
	orbit_future_release(ls_f);
	orbit_future_release(running);
	orbit_destroy(ls_ob);
}

static void test_lose_under_submitter(void)
{
	CHECK_CHILD(scenario_lose_under_submitter, 20000);
}

static struct orbit_future *rs_first;
static int rs_cancel_rc;

static void *cancel_paused(void *arg)
{
	(void)arg;
	send_pause_at = 2;	/* in the second requeued call it sends again */
	rs_cancel_rc = orbit_future_cancel(rs_first, ORBIT_CANCEL_KILL);
	return NULL;
}

/*
 * Calls queued behind a cancelled one are sent again to the next process
 * (send_requeued), here by the cancelling thread C.  C has sent the first
 * of them and is inside call() with the second when main cancels the first
 * (running on the new process) with a kill: that process is lost while C
 * sends to it.  The loss must wait for C, and C's call must go to the
 * process after.
 */
static void scenario_lose_under_resend(void)
{
	struct orbit_future *f2, *f3;
	struct orbit *ob;
	long v = 10000, ret = -1;

	ob = orbit_create("lose-resend", entry_echo, NULL, NULL);
	REQUIRE(ob != NULL);
	rs_first = orbit_call_async(ob, 0, 0, NULL, NULL, &v, sizeof(v));
	f2 = orbit_call_async(ob, 0, 0, NULL, NULL, &v, sizeof(v));
	v = 5;
	f3 = orbit_call_async(ob, 0, 0, NULL, NULL, &v, sizeof(v));
	REQUIRE(rs_first && f2 && f3);
	kill_while_sending(cancel_paused, f2);	/* C paused: f2 sent, f3 being sent */
	CHECK_EQ(rs_cancel_rc, 1);
	CHECK_EQ(orbit_future_wait(f3, 5000, &ret), 0);
	CHECK_EQ(ret, 5);
	CHECK_EQ(orbit_future_get(rs_first, &ret), -ORBIT_E_CANCELLED);
	CHECK_EQ(orbit_future_get(f2, &ret), -ORBIT_E_CANCELLED);
	orbit_future_release(rs_first);
	orbit_future_release(f2);
	orbit_future_release(f3);
	orbit_destroy(ob);
}

static void test_lose_under_resend(void)
{
	CHECK_CHILD(scenario_lose_under_resend, 20000);
}

/* ---------------- a kill for a call whose answer a reader already holds */

static __thread int end_armed;

/* In orbit_pump, right after pull() returned and before the orbit's lock is
 * taken again: the reader holds a message nobody else has seen. */
static void hook_block_end_pause(void *ctx, void *state)
{
	(void)ctx;
	(void)state;
	if (end_armed) {
		end_armed = 0;
		sem_post(&paused);
		sem_wait(&resume);
	}
}

static struct orbit_future *ka_first;
static int ka_rc;
static long ka_ret;

static void *wait_first_paused(void *arg)
{
	(void)arg;
	end_armed = 1;
	ka_rc = orbit_future_get(ka_first, &ka_ret);
	return NULL;
}

/*
 * Thread R waits for the first call and has just pulled its answer when main
 * cancels that call with ORBIT_CANCEL_KILL: orbit_lose() kills the process
 * and waits for R, which then delivers the answer (the first call
 * succeeded, the cancel did nothing).  The kill's reason is the first
 * call's: the call behind it, running or queued on the killed process, must
 * not take it (it was reported cancelled without running); as any call
 * queued behind a call the orbit was killed for, it runs on the next
 * process.
 */
static void scenario_cancel_kill_after_answer(void)
{
	struct orbit_hooks hooks = { .block_end = hook_block_end_pause };
	struct orbit_options o;
	struct orbit_future *second;
	struct orbit *ob;
	pthread_t t, r;
	long v = 50, ret = -1;

	orbit_options_init(&o);
	o.hooks = &hooks;
	ob = orbit_create("kill-answered", entry_echo, NULL, &o);
	REQUIRE(ob != NULL);
	ka_first = orbit_call_async(ob, 0, 0, NULL, NULL, &v, sizeof(v));
	v = 1000;
	second = orbit_call_async(ob, 0, 0, NULL, NULL, &v, sizeof(v));
	REQUIRE(ka_first && second);
	REQUIRE(pthread_create(&t, NULL, wait_first_paused, NULL) == 0);
	REQUIRE(sem_wait_ms(&paused, 5000) == 0);	/* R holds the first answer */
	REQUIRE(pthread_create(&r, NULL, resume_later, NULL) == 0);
	CHECK_EQ(orbit_future_cancel(ka_first, ORBIT_CANCEL_KILL), 0);	/* it had ended */
	pthread_join(r, NULL);
	pthread_join(t, NULL);
	CHECK_EQ(ka_rc, 0);
	CHECK_EQ(ka_ret, 50);
	CHECK_EQ(orbit_future_wait(second, 10000, &ret), 0);
	CHECK_EQ(ret, 1000);
	orbit_future_release(ka_first);
	orbit_future_release(second);
	orbit_destroy(ob);
}

static void test_cancel_kill_after_answer_arrived(void)
{
	CHECK_CHILD(scenario_cancel_kill_after_answer, 20000);
}

int main(void)
{
	check_watchdog(55);
	sem_init(&paused, 0, 0);
	sem_init(&resume, 0, 0);
	RUN(test_release_races_release);
	RUN(test_destroy_races_release);
	RUN(test_dead_orbit_lost_under_reader);
	RUN(test_fork_window_leaks_channel);
	RUN(test_destroy_while_submitting);
	RUN(test_lose_under_submitter);
	RUN(test_lose_under_resend);
	RUN(test_cancel_kill_after_answer_arrived);
	return CHECK_DONE();
}
