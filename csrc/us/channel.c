/*
 * channel.c - framed messages over the orbit's stream socket.
 *
 * Every message is a struct us_hdr and hdr.len payload bytes; descriptors
 * (a new base for an area) ride on the first byte of a call.  Main reads
 * incrementally so that a wait with a deadline can stop in the middle of a
 * message and resume later; the orbit reads whole messages.
 */
#include <errno.h>
#include <sched.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "us.h"

uint64_t us_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/*
 * One step of a spin-wait.  Yield now and then: when the process we wait for
 * was woken on our CPU, a pure spin would keep it off the CPU until our spin
 * ends (every call after an idle period would pay the whole spin); a yield
 * lets it run at once, and costs ~0.3 us when nobody else is runnable.
 */
void us_spin_step(unsigned *n)
{
	if (++*n % 16 == 0)
		sched_yield();
	else
		us_cpu_relax();
}

void us_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* How long a side spins for the other's answer before sleeping.  A hot
 * caller then gets an answer in microseconds instead of two scheduler
 * wake-ups; ORBITPY_SPIN_US=0 turns it off. */
unsigned us_spin_ns(void)
{
	static int spin = -1;

	if (spin < 0) {
		const char *v = getenv("ORBITPY_SPIN_US");

		spin = v && *v ? atoi(v) : 100;
		if (spin < 0)
			spin = 0;
	}
	return (unsigned)spin * 1000u;
}

int us_send_all(int fd, const struct iovec *iov_in, int iovcnt, const int *fds, int nfds)
{
	struct iovec iov[8];
	union {
		char buf[CMSG_SPACE(sizeof(int) * US_MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { 0 };

	if (iovcnt > 8 || nfds > US_MAX_FDS)
		return -EINVAL;
	memcpy(iov, iov_in, sizeof(*iov) * (size_t)iovcnt);
	mh.msg_iov = iov;
	mh.msg_iovlen = (size_t)iovcnt;
	if (nfds) {
		struct cmsghdr *c;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	while (mh.msg_iovlen) {
		ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd p = { .fd = fd, .events = POLLOUT };

				poll(&p, 1, 100);
				continue;
			}
			return -errno;
		}
		mh.msg_control = NULL;	/* descriptors go with the first byte only */
		mh.msg_controllen = 0;
		while (mh.msg_iovlen && (size_t)n >= mh.msg_iov->iov_len) {
			n -= (ssize_t)mh.msg_iov->iov_len;
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
		if (mh.msg_iovlen) {
			mh.msg_iov->iov_base = (char *)mh.msg_iov->iov_base + n;
			mh.msg_iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

/*
 * The orbit process is gone (its end of the socket is closed), as a send
 * would find: a call put in the mailbox must fail the same way, so that the
 * core starts a new process for it instead of waiting for an answer that
 * cannot come.  One poll() costs a fraction of a send.
 */
static int peer_gone(int fd)
{
	struct pollfd p = { .fd = fd, .events = 0 };

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

/*
 * Send call `seq`: a header, the backend's body (body_len bytes, first) and
 * the call's argument, with `fds` on its first byte; then count it in
 * ctl->req_count.  Counted only once all of it is in the socket (or the
 * mailbox, see mailbox.c): the orbit, spinning on the count, then reads a
 * whole message without polling first.
 */
int us_send_call(struct orbit_sys *s, uint64_t seq, const void *body, size_t body_len,
		 const void *arg, size_t argsize, const int *fds, int nfds)
{
	struct us_hdr h = {
		.magic = US_MAGIC, .kind = US_MSG_CALL, .seq = seq,
		.len = body_len + argsize, .aux = body_len,
	};
	struct iovec iov[3] = {
		{ &h, sizeof(h) }, { (void *)body, body_len }, { (void *)arg, argsize },
	};
	int err = 0;

	if (nfds || atomic_load_explicit(&s->ctl->req_taken, memory_order_acquire) !=
		    atomic_load_explicit(&s->ctl->req_count, memory_order_relaxed))
		err = us_send_all(s->sock, iov, argsize ? 3 : 2, fds, nfds);
	else if (peer_gone(s->sock))
		err = -EPIPE;
	else if (!us_mbox_put(&s->ctl->to_orbit, iov, 3))
		err = us_send_all(s->sock, iov, argsize ? 3 : 2, fds, nfds);
	if (!err)
		atomic_fetch_add(&s->ctl->req_count, 1);
	return err;
}

/* Read what is available without blocking; 1 when the message is complete,
 * 0 when more is needed, -EPIPE at end of stream. */
static int rx_step(int fd, struct us_rx *rx)
{
	for (;;) {
		void *dst;
		size_t want;
		ssize_t n;

		if (rx->hdr_got < sizeof(rx->hdr)) {
			dst = (char *)&rx->hdr + rx->hdr_got;
			want = sizeof(rx->hdr) - rx->hdr_got;
		} else {
			if (rx->hdr.magic != US_MAGIC)
				return -EPROTO;
			if (!rx->payload && rx->hdr.len) {
				rx->payload = malloc(rx->hdr.len);
				if (!rx->payload)
					return -ENOMEM;
			}
			if (rx->got == rx->hdr.len)
				return 1;
			dst = rx->payload + rx->got;
			want = rx->hdr.len - rx->got;
		}
		n = recv(fd, dst, want, MSG_DONTWAIT);
		if (n == 0)
			return -EPIPE;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			if (errno == ECONNRESET)
				return -EPIPE;
			return -errno;
		}
		if (rx->hdr_got < sizeof(rx->hdr))
			rx->hdr_got += (size_t)n;
		else
			rx->got += (size_t)n;
	}
}

/*
 * Where the orbit's next message is, none of it being read yet: 2 in the
 * mailbox `mb`, 1 in the socket (it may be read), 0 nowhere yet, -EPIPE
 * (the socket ended) or another error.  `count` is the orbit's count of
 * messages sent, `seen` ours of those taken.
 *
 * The invariant the orbit keeps (us_out_send): it fills the mailbox only
 * when we have taken every earlier message, and sends nothing more until
 * it is counted, so a FULL mailbox always holds the next message.  Bytes at
 * the head of the socket are the next message's only if the mailbox was
 * found not FULL *after* they were seen: looked at before, the mailbox may
 * have been empty, then filled by the orbit, which then sent the message
 * after it through the socket (we had not taken the mailbox's yet), so the
 * socket would deliver that one first.  Hence the order below: first learn
 * that something is in the socket, then look at the mailbox.
 *  - A count ahead of `seen` (acquire, pairing with the orbit's increment
 *    after it filled the mailbox or sent the whole message) says message
 *    seen+1 is complete; if it were the mailbox's, the mailbox would be
 *    FULL now (only we empty it), so otherwise it is whole in the socket.
 *  - Else a peek at the socket (a message being sent, not yet counted: a
 *    big one we must read while the orbit writes it): the orbit filled the
 *    mailbox, if it did, before it sent the bytes the peek saw, and the
 *    socket's lock orders that before our look at the mailbox.
 */
static int next_message(int fd, struct us_mbox *mb, _Atomic uint64_t *count, uint64_t seen)
{
	ssize_t n;
	char c;

	if (us_mbox_full(mb))
		return 2;
	if (us_count_ahead(count, seen))
		return us_mbox_full(mb) ? 2 : 1;
	do
		n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return 0;
	/* Something seen in the socket (bytes, its end, an error): a message
	 * in the mailbox comes before it. */
	if (us_mbox_full(mb))
		return 2;
	if (n > 0)
		return 1;
	if (n == 0 || errno == ECONNRESET)
		return -EPIPE;
	return -errno;
}

/*
 * Wait up to timeout_ms for the orbit's next message: 1 when it is complete
 * in rx (read from the socket), 2 when it waits in the mailbox `mb` instead
 * (see mailbox.c and next_message), -ETIMEDOUT, -EINTR, -EPIPE.
 */
int us_rx_poll(int fd, struct us_rx *rx, struct us_mbox *mb, _Atomic uint64_t *count,
	       uint64_t seen, int timeout_ms)
{
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX
					   : us_now_ns() + (uint64_t)timeout_ms * 1000000ULL;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int rc = 1, wait, err, marked = 0;
		uint64_t now;

		/* A message begun in the socket comes before anything else. */
		if (rx->hdr_got == 0) {
			rc = next_message(fd, mb, count, seen);
			if (rc == 2 || rc < 0)
				return rc;
		}
		if (rc) {
			rc = rx_step(fd, rx);
			if (rc)
				return rc;
		}
		now = us_now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		wait = deadline == UINT64_MAX ? -1
					      : (int)((deadline - now + 999999) / 1000000);
		/* From here the orbit sends through the socket, which wakes us. */
		if (rx->hdr_got == 0) {
			if (us_mbox_sleep(mb))
				return 2;
			marked = 1;
		}
		rc = poll(&p, 1, wait);
		err = errno;
		if (marked)
			us_mbox_wake(mb);
		if (rc < 0 && err == EINTR)
			return -EINTR;
	}
}

static int read_full(int fd, void *buf, size_t n)
{
	char *p = buf;

	while (n) {
		ssize_t r = read(fd, p, n);

		if (r == 0)
			return -EPIPE;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

int us_read_msg(int fd, struct us_hdr *h, char **buf, size_t *cap, int *fds, int *nfds,
		int maxfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * US_MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { h, sizeof(*h) };
	struct msghdr mh = { 0 };
	ssize_t n;
	int err;

	*nfds = 0;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = u.buf;
	mh.msg_controllen = sizeof(u.buf);
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return -EPIPE;
	if (n < 0)
		return -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int cnt = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));

		for (int i = 0; i < cnt; i++) {
			int fdv;

			memcpy(&fdv, CMSG_DATA(c) + sizeof(int) * (size_t)i, sizeof(int));
			if (*nfds < maxfds)
				fds[(*nfds)++] = fdv;
			else
				close(fdv);
		}
	}
	if ((size_t)n < sizeof(*h) && (err = read_full(fd, (char *)h + n, sizeof(*h) - (size_t)n)))
		return err;
	if (h->magic != US_MAGIC)
		return -EPROTO;
	if (h->len > *cap) {
		char *nb = realloc(*buf, h->len);

		if (!nb)
			return -ENOMEM;
		*buf = nb;
		*cap = h->len;
	}
	return h->len ? read_full(fd, *buf, h->len) : 0;
}
