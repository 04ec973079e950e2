/* check.h - a tiny harness for the C core's tests. */
#ifndef ORBIT_CHECK_H
#define ORBIT_CHECK_H

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "orbit.h"

static int check_failures;

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
				#cond);                                               \
			check_failures++;                                             \
		}                                                                     \
	} while (0)

#define CHECK_STREQ(a, b)                                                             \
	do {                                                                          \
		const char *_a = (a), *_b = (b);                                      \
		if (!_a || !_b || strcmp(_a, _b)) {                                   \
			fprintf(stderr, "%s:%d: CHECK_STREQ failed: %s == \"%s\", %s == \"%s\"\n", \
				__FILE__, __LINE__, #a, _a ? _a : "(null)", #b,        \
				_b ? _b : "(null)");                                  \
			check_failures++;                                             \
		}                                                                     \
	} while (0)

#define CHECK_EQ(a, b)                                                                \
	do {                                                                          \
		long long _a = (long long)(a), _b = (long long)(b);                   \
		if (_a != _b) {                                                       \
			fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", \
				__FILE__, __LINE__, #a, _a, #b, _b);                  \
			check_failures++;                                             \
		}                                                                     \
	} while (0)

/* Like CHECK, but gives up on the current test (it must return void). */
/* A call's result: it succeeded and returned want; releases the future. */
#define CHECK_FUTURE(f, want)                                                         \
	do {                                                                          \
		long _fret = -12345;                                                  \
		CHECK_EQ(orbit_future_get((f), &_fret), 0);                           \
		CHECK_EQ(_fret, (long)(want));                                        \
		orbit_future_release(f);                                              \
	} while (0)

#define REQUIRE(cond)                                                                 \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, \
				#cond);                                               \
			check_failures++;                                             \
			return;                                                       \
		}                                                                     \
	} while (0)

static inline uint64_t check_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#define RUN(test)                                                                     \
	do {                                                                          \
		int _before = check_failures;                                         \
		uint64_t _t0 = check_now_ms();                                        \
		test();                                                               \
		printf("%s %s (%llu ms)\n", check_failures == _before ? "ok  " : "FAIL", \
		       #test, (unsigned long long)(check_now_ms() - _t0));            \
		fflush(stdout);                                                       \
	} while (0)

#define CHECK_DONE() (check_failures ? (fprintf(stderr, "%d failure(s)\n", check_failures), 1) : 0)

/*
 * A test binary must never hang: SIGALRM (not inherited by forked orbits)
 * ends it after `seconds`.  Call first thing in main().
 */
static inline void check_on_alarm(int sig)
{
	static const char msg[] = "test binary timed out (watchdog alarm)\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing to do */
	}
	_exit(124);
}

static inline void check_watchdog(unsigned seconds)
{
	signal(SIGALRM, check_on_alarm);
	alarm(seconds);
	setvbuf(stdout, NULL, _IOLBF, 0);
}

static inline void check_sleep_ms(unsigned ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Number of open descriptors of this process. */
static inline int check_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;	/* includes the descriptor of the listing itself */
}

/* State letter of a process from /proc/<pid>/stat, or 0 when it is gone. */
/* How many of this process's descriptors name something containing `what`
 * ("socket:", "memfd:orbit-base", ...). */
static inline long check_count_fds_like(const char *what)
{
	char path[64], link[128];
	long n = 0;

	for (int fd = 0; fd < 1024; fd++) {
		ssize_t len;

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		len = readlink(path, link, sizeof(link) - 1);
		if (len <= 0)
			continue;
		link[len] = 0;
		if (strstr(link, what))
			n++;
	}
	return n;
}

static inline char check_proc_state(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

/* Has the process exited (gone, or a zombie)? */
static inline int check_proc_dead(pid_t pid)
{
	char s = check_proc_state(pid);

	return s == 0 || s == 'Z' || s == 'X';
}

/*
 * Wait up to ms until the process has fully exited: every thread gone and
 * its descriptors closed.  (The leader shows 'Z' while other threads are
 * still exiting; a pidfd polls readable only once all of them are gone.)
 */
static inline int check_wait_dead(pid_t pid, unsigned ms)
{
	uint64_t until = check_now_ms() + ms;
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	if (fd >= 0) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r;

		do
			r = poll(&p, 1, (int)ms);
		while (r < 0 && errno == EINTR);
		close(fd);
		return r > 0;
	}
	if (errno != ESRCH && errno != ENOSYS)
		return 0;
	while (!check_proc_dead(pid)) {
		if (check_now_ms() >= until)
			return 0;
		check_sleep_ms(2);
	}
	return 1;
}

/*
 * Run fn in a forked child, so that a crash (or a sanitizer abort) fails one
 * test instead of ending the binary.  Returns the child's wait status, or -1
 * when it had to be killed after timeout_ms.  The child exits 0 when fn's
 * checks passed, 1 otherwise.
 */
static inline int check_in_child(void (*fn)(void), unsigned timeout_ms)
{
	uint64_t until;
	int status = -1;
	pid_t pid, r;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		fn();
		fflush(NULL);
		_exit(check_failures ? 1 : 0);
	}
	until = check_now_ms() + timeout_ms;
	for (;;) {
		r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return status;
		if (r < 0 && errno != EINTR)
			return -1;
		if (check_now_ms() >= until) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			fprintf(stderr, "child test hung; killed\n");
			return -1;
		}
		check_sleep_ms(5);
	}
}

/* CHECK that check_in_child(fn) passed, saying how it did not. */
#define CHECK_CHILD(fn, timeout_ms)                                                   \
	do {                                                                          \
		int _st = check_in_child(fn, timeout_ms);                             \
		if (_st == -1 || !WIFEXITED(_st) || WEXITSTATUS(_st) != 0) {          \
			fprintf(stderr, "%s:%d: %s failed in its child: %s %d\n",      \
				__FILE__, __LINE__, #fn,                              \
				_st == -1 ? "hung" : WIFSIGNALED(_st) ? "signal" : "exit", \
				_st == -1 ? 0 : WIFSIGNALED(_st) ? WTERMSIG(_st)      \
							      : WEXITSTATUS(_st));    \
			check_failures++;                                             \
		}                                                                     \
	} while (0)

/* Is a snapshot mode usable here?  (uffd needs Linux >= 6.7.) */
static inline int check_mode_available(const char *mode)
{
	struct orbit_area *a = orbit_area_create(orbit_page_size(), mode);

	if (!a)
		return 0;
	orbit_area_destroy(a);
	return 1;
}

/* An area whose page counts are exact: no transparent huge pages. */
static inline struct orbit_area *check_area(size_t size, const char *mode)
{
	struct orbit_area *a = orbit_area_create(size, mode);

	if (a)
		madvise(orbit_area_base(a), orbit_area_size(a), MADV_NOHUGEPAGE);
	return a;
}

/* The userspace backend's snapshot modes (see "Backend extras" in orbit.h).
 * For the shared tests they are hints another backend may take (the kernel
 * backend tracks main's writes with the same trackers) or refuse (EINVAL,
 * ENOTSUP: that run is skipped); a backend that takes none of them runs
 * the test once with "auto".  Asserting what a mode does is for the
 * userspace backend's own tests (tests/user/). */
#define CHECK_NMODES 3
static inline const char *check_mode(int i)
{
	return i == 0 ? "uffd" : i == 1 ? "mprotect" : "full";
}

static inline int check_mode_is(const char *mode, const char *name)
{
	return !strcmp(mode, name);
}

/* Run fn(mode) for every snapshot mode available, reporting each. */
#define RUN_MODES(fn)                                                                 \
	do {                                                                          \
		int _ran = 0;                                                         \
		for (int _m = 0; _m <= CHECK_NMODES; _m++) {                          \
			const char *_mode = _m < CHECK_NMODES ? check_mode(_m) : "auto"; \
			int _before = check_failures;                                 \
			uint64_t _t0 = check_now_ms();                                \
			if (_m == CHECK_NMODES && _ran)                               \
				break;                                                \
			if (!check_mode_available(_mode)) {                           \
				printf("skip %s[%s] (mode unavailable)\n", #fn,       \
				       _mode);              \
				continue;                                             \
			}                                                             \
			_ran = 1;                                                     \
			fn(_mode);                                                    \
			printf("%s %s[%s] (%llu ms)\n",                               \
			       check_failures == _before ? "ok  " : "FAIL", #fn,      \
			       _mode,                       \
			       (unsigned long long)(check_now_ms() - _t0));           \
		}                                                                     \
	} while (0)

#endif
