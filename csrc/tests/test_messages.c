/*
 * test_messages.c - calls, results and updates of every size arrive whole and
 * in order, whichever way each travels.
 *
 * The userspace backend sends small messages through a mailbox in shared
 * memory and the others (descriptors, or too big for it) through the
 * socket; a message may take the mailbox only when everything before it has
 * been read (us/mailbox.c).  These tests mix sizes around the mailbox's
 * limit (16 KiB) with far bigger ones, queue calls behind each other, and
 * make each side sleep while the other writes, so that every order of the
 * two ways, and both sleeping sides, occur.  Any backend must pass them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "orbit.h"

struct job {
	uint32_t n;
	uint32_t sleep_us;	/* before answering: main sleeps meanwhile */
	uint32_t push_len;	/* one update of this size */
	uint32_t ret_len;	/* result data of this size */
};

static unsigned char pat(uint32_t n, uint32_t salt, size_t i)
{
	return (unsigned char)(n * salt + i * 7 + (i >> 8));
}

static int pattern_ok(const unsigned char *p, size_t len, uint32_t n, uint32_t salt)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != pat(n, salt, i))
			return 0;
	return 1;
}

static unsigned char *pattern(size_t len, uint32_t n, uint32_t salt)
{
	unsigned char *p = malloc(len ? len : 1);

	for (size_t i = 0; p && i < len; i++)
		p[i] = pat(n, salt, i);
	return p;
}

/* Checks its argument; pushes one update and attaches result data, both
 * patterned after the call's number; returns the number, or -1. */
static long entry(void *arg, size_t argsize, void *store)
{
	const struct job *j = arg;
	unsigned char *buf;

	(void)store;
	if (argsize < sizeof(*j) ||
	    !pattern_ok((const unsigned char *)arg + sizeof(*j), argsize - sizeof(*j), j->n, 3))
		return -1;
	if (j->sleep_us) {
		struct timespec ts = { 0, (long)j->sleep_us * 1000L };

		nanosleep(&ts, NULL);
	}
	buf = pattern(j->push_len > j->ret_len ? j->push_len : j->ret_len, j->n, 5);
	if (!buf || orbit_push(buf, j->push_len) != 0)
		return -1;
	free(buf);
	buf = pattern(j->ret_len, j->n, 11);
	if (!buf || orbit_return_data(buf, j->ret_len) != 0)
		return -1;
	free(buf);
	return j->n;
}

/* Sizes straddling the mailbox's limit, and far beyond it. */
static size_t size_for(uint32_t n)
{
	static const size_t sizes[] = { 0, 1, 100, 4000, 16 * 1024 - 200, 16 * 1024 - 64,
					16 * 1024 - 40, 16 * 1024, 16 * 1024 + 1, 70000,
					1 << 20 };

	return sizes[n % (sizeof(sizes) / sizeof(sizes[0]))];
}

static struct orbit_future *submit(struct orbit *ob, uint32_t n, uint32_t sleep_us)
{
	size_t argn = size_for(n * 7 + 3);
	struct job *j = malloc(sizeof(*j) + argn);
	struct orbit_future *f;

	if (!j)
		return NULL;
	j->n = n;
	j->sleep_us = sleep_us;
	j->push_len = (uint32_t)size_for(n);
	j->ret_len = (uint32_t)size_for(n * 5 + 1);
	for (size_t i = 0; i < argn; i++)
		((unsigned char *)(j + 1))[i] = pat(n, 3, i);
	f = orbit_call_async(ob, 0, 0, NULL, NULL, j, sizeof(*j) + argn);
	free(j);
	return f;
}

/* The call's update, result and result data are its own, whole. */
static void check_answer(struct orbit_future *f, uint32_t n)
{
	void *d = NULL;
	size_t len = 0;
	const void *rd;
	long ret = -2;

	CHECK_EQ(orbit_pull(f, 10000, &d, &len), 1);
	CHECK_EQ(len, size_for(n));
	CHECK(len == 0 || (d && pattern_ok(d, len, n, 5)));
	free(d);
	CHECK_EQ(orbit_future_get(f, &ret), 0);
	CHECK_EQ(ret, n);
	rd = orbit_future_data(f, &len);
	CHECK_EQ(len, size_for(n * 5 + 1));
	CHECK(len == 0 || (rd && pattern_ok(rd, len, n, 11)));
	CHECK_EQ(orbit_pull(f, 0, &d, &len), 0);	/* no other update */
	orbit_future_release(f);
}

/* One call at a time: every size each way, hot and after pauses. */
static void test_sync_sizes(void)
{
	struct orbit *ob = orbit_create("msg-sync", entry, NULL, NULL);

	REQUIRE(ob != NULL);
	for (uint32_t n = 1; n <= 120; n++) {
		/* Some calls answer after main went to sleep waiting; some come
		 * after the orbit went to sleep waiting (a pause past the spin). */
		struct orbit_future *f = submit(ob, n, n % 4 == 0 ? 2000 : 0);

		REQUIRE(f != NULL);
		check_answer(f, n);
		if (n % 5 == 0)
			check_sleep_ms(2);
	}
	orbit_destroy(ob);
}

/* Calls queued behind each other, answered in order, read late. */
static void test_queued_sizes(void)
{
	struct orbit *ob = orbit_create("msg-queue", entry, NULL, NULL);
	struct orbit_future *f[64];

	REQUIRE(ob != NULL);
	for (int round = 0; round < 4; round++) {
		uint32_t base = (uint32_t)round * 64;

		for (uint32_t i = 0; i < 64; i++) {
			f[i] = submit(ob, base + i + 1, i % 9 == 0 ? 1000 : 0);
			REQUIRE(f[i] != NULL);
		}
		if (round % 2)	/* let the answers pile up before reading */
			check_sleep_ms(50);
		for (uint32_t i = 0; i < 64; i++)
			check_answer(f[i], base + i + 1);
	}
	orbit_destroy(ob);
}

int main(void)
{
	check_watchdog(240);
	RUN(test_sync_sizes);
	RUN(test_queued_sizes);
	return CHECK_DONE();
}
