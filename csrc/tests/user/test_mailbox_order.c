/*
 * test_mailbox_order.c - main takes the orbit's messages in the order they
 * were sent when one waits in the mailbox and the next in the socket.
 *
 * The orbit puts a message in the mailbox (us/mailbox.c) only when main has
 * taken every earlier one; the messages after it, sent before main takes
 * it, go through the socket.  Main must then take the mailbox's first even
 * if it looked at the mailbox (empty) before the message arrived and reads
 * the socket after the next one did.  That window is a few instructions
 * wide; this binary widens it: it is linked with -Wl,--wrap=recv (see the
 * Makefile), and main's non-blocking recv() calls on the socket wait a
 * while first, long enough for the orbit to send both.
 *
 * Backend-specific: the mailbox and the recv() are the userspace backend's.
 */
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "orbit.h"

ssize_t __real_recv(int fd, void *buf, size_t len, int flags);
ssize_t __wrap_recv(int fd, void *buf, size_t len, int flags);

static pid_t main_pid;
static int widen;		/* main's recv() waits this long first (us) */

static void sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

ssize_t __wrap_recv(int fd, void *buf, size_t len, int flags)
{
	if (widen && getpid() == main_pid && (flags & MSG_DONTWAIT))
		sleep_us(widen);
	return __real_recv(fd, buf, len, flags);
}

/* Its argument: how long to wait before answering, and how many updates to
 * push then, the i-th holding i (small: each fits the mailbox). */
struct job {
	uint32_t n;
	uint32_t delay_us;
	uint32_t pushes;
};

static long entry(void *arg, size_t argsize, void *store)
{
	const struct job *j = arg;

	(void)store;
	if (argsize != sizeof(*j))
		return -1;
	sleep_us(j->delay_us);
	for (uint32_t i = 0; i < j->pushes; i++) {
		uint32_t v[2] = { j->n, i };

		if (orbit_push(v, sizeof(v)) != 0)
			return -1;
	}
	return j->n;
}

static struct orbit_future *submit(struct orbit *ob, uint32_t n, uint32_t delay_us,
				   uint32_t pushes)
{
	struct job j = { n, delay_us, pushes };

	return orbit_call_async(ob, 0, 0, NULL, NULL, &j, sizeof(j));
}

/* Updates: the first waits in the mailbox, the others in the socket. */
static void updates_in_order(void)
{
	struct orbit *ob = orbit_create("mbox-updates", entry, NULL, NULL);

	REQUIRE(ob != NULL);
	for (uint32_t n = 1; n <= 10; n++) {
		struct orbit_future *f;
		long ret = -1;

		widen = 0;
		f = submit(ob, n, 300, 3);
		REQUIRE(f != NULL);
		widen = 3000;	/* main looks, the orbit sends two, main reads */
		for (uint32_t i = 0; i < 3; i++) {
			void *d = NULL;
			size_t len = 0;

			CHECK_EQ(orbit_pull(f, 10000, &d, &len), 1);
			CHECK_EQ(len, 2 * sizeof(uint32_t));
			if (d && len == 2 * sizeof(uint32_t)) {
				CHECK_EQ(((uint32_t *)d)[0], n);
				CHECK_EQ(((uint32_t *)d)[1], i);
			}
			free(d);
		}
		widen = 0;
		CHECK_EQ(orbit_future_get(f, &ret), 0);
		CHECK_EQ(ret, n);
		orbit_future_release(f);
	}
	orbit_destroy(ob);
}

/* Results: the first call's waits in the mailbox, the second's in the
 * socket (it was sent before main took the first). */
static void results_in_order(void)
{
	struct orbit *ob = orbit_create("mbox-results", entry, NULL, NULL);

	REQUIRE(ob != NULL);
	for (uint32_t n = 1; n <= 10; n++) {
		struct orbit_future *f1, *f2;
		long r1 = -1, r2 = -1;

		widen = 0;
		f1 = submit(ob, 2 * n, 300, 0);
		f2 = submit(ob, 2 * n + 1, 0, 0);
		REQUIRE(f1 != NULL && f2 != NULL);
		widen = 3000;
		CHECK_EQ(orbit_future_get(f1, &r1), 0);
		CHECK_EQ(r1, 2 * n);
		CHECK_EQ(orbit_future_get(f2, &r2), 0);
		CHECK_EQ(r2, 2 * n + 1);
		widen = 0;
		orbit_future_release(f1);
		orbit_future_release(f2);
	}
	orbit_destroy(ob);
}

int main(void)
{
	check_watchdog(55);
	main_pid = getpid();
	/* Main goes from the empty mailbox to the socket at once, without
	 * spinning for the message first (us_pull). */
	setenv("ORBITPY_SPIN_US", "0", 1);
	RUN(updates_in_order);
	RUN(results_in_order);
	return CHECK_DONE();
}
