/*
 * mailbox.c - one message at a time through shared memory, next to the
 * socket.
 *
 * A call and its result each cross the orbit's socket otherwise: a send and
 * two reads per message, ~1.5-2.5 us of system calls each on a VM, most of a
 * small call's round trip when both sides spin instead of sleeping.  The
 * channel's counters already tell each side when a message is complete, so
 * a small message can just as well wait in shared memory: one mailbox per
 * direction (in struct us_ctl), holding one whole message (header and
 * payload).
 *
 * Order.  The writer uses the mailbox only when the reader has taken every
 * earlier message (its `taken` count equals the writer's `count`), and
 * sends nothing more until the message is counted: so a FULL mailbox holds
 * the reader's next message, and nothing of this writer was left in the
 * socket when it was filled.  Messages carrying descriptors, and those that
 * do not fit, go through the socket.  The messages sent after a mailbox's
 * one, before the reader took it, go through the socket too; so the reader
 * must look at the mailbox *after* it learnt that the socket holds a
 * message (its count ahead, poll() or a peek), never before: it could
 * otherwise find the mailbox empty, then read the socket's message once
 * the writer had filled the mailbox and sent the next one (channel.c's
 * next_message, orbit_view.c's wait_readable).
 *
 * Wake-ups.  A reader that sleeps does so in poll() on the socket, and only
 * the socket wakes it.  So before sleeping the reader marks the mailbox
 * SLEEP, and a writer only ever fills an EMPTY one: both are one
 * compare-and-swap on `state`, so either the message lands first (the
 * reader's mark fails and it takes the message) or the mark does (the
 * writer's put fails and the message goes through the socket, waking the
 * reader).  Only the reader turns SLEEP back into EMPTY.
 *
 *   EMPTY --put (writer)--> FULL --release (reader)--> EMPTY
 *   EMPTY --sleep (reader)--> SLEEP --wake (reader)--> EMPTY
 */
#include <string.h>

#include "us.h"

int us_mbox_put(struct us_mbox *mb, const struct iovec *iov, int n)
{
	uint32_t expect = US_MBOX_EMPTY;
	size_t len = 0;

	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	if (len > sizeof(mb->data) ||
	    atomic_load_explicit(&mb->state, memory_order_relaxed) != US_MBOX_EMPTY)
		return 0;
	/* The reader released the mailbox before counting the message taken
	 * (the caller's condition), so nobody reads these bytes now. */
	len = 0;
	for (int i = 0; i < n; i++) {
		if (!iov[i].iov_len)	/* its base may be NULL */
			continue;
		memcpy(mb->data + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	mb->len = (uint32_t)len;
	return atomic_compare_exchange_strong_explicit(&mb->state, &expect, US_MBOX_FULL,
						       memory_order_acq_rel,
						       memory_order_relaxed);
}

int us_mbox_full(struct us_mbox *mb)
{
	return atomic_load_explicit(&mb->state, memory_order_acquire) == US_MBOX_FULL;
}

void us_mbox_release(struct us_mbox *mb)
{
	atomic_store_explicit(&mb->state, US_MBOX_EMPTY, memory_order_release);
}

int us_mbox_sleep(struct us_mbox *mb)
{
	uint32_t expect = US_MBOX_EMPTY;

	return atomic_compare_exchange_strong_explicit(&mb->state, &expect, US_MBOX_SLEEP,
						       memory_order_acq_rel,
						       memory_order_acquire) ? 0 : -1;
}

void us_mbox_wake(struct us_mbox *mb)
{
	uint32_t expect = US_MBOX_SLEEP;

	atomic_compare_exchange_strong_explicit(&mb->state, &expect, US_MBOX_EMPTY,
						memory_order_acq_rel, memory_order_relaxed);
}
