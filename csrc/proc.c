/*
 * proc.c - what belongs to this process rather than to an orbit: the clock,
 * its own pid (to tell main from the processes forked from it), and the
 * texts of the error codes.
 */
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "orbit_internal.h"

uint64_t orbit_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* getpid() without a system call on the call path: cached, and forgotten in
 * every forked child. */
static pid_t self_pid;
static pthread_once_t self_pid_once = PTHREAD_ONCE_INIT;

static void self_pid_forget(void)
{
	self_pid = 0;
}

static void self_pid_register(void)
{
	pthread_atfork(NULL, NULL, self_pid_forget);
}

pid_t orbit_self_pid(void)
{
	pid_t pid = __atomic_load_n(&self_pid, __ATOMIC_RELAXED);

	if (pid)
		return pid;
	pthread_once(&self_pid_once, self_pid_register);
	pid = getpid();
	__atomic_store_n(&self_pid, pid, __ATOMIC_RELAXED);
	return pid;
}

const char *orbit_strerror(int code)
{
	if (code < 0)
		code = -code;
	switch (code) {
	case ORBIT_E_CRASHED: return "the orbit process died";
	case ORBIT_E_TIMEOUT: return "the call overran the orbit's timeout";
	case ORBIT_E_CLOSED: return "the orbit is closed";
	case ORBIT_E_RESTART_LIMIT: return "the orbit crashed too often in a row";
	case ORBIT_E_SKIPPED: return "the orbit was busy and the call was skipped";
	case ORBIT_E_CANCELLED: return "the call was cancelled before it ran";
	case ORBIT_E_REFUSED: return "the call was refused before it was sent";
	case ORBIT_E_ABORTED: return "the orbit was killed for an earlier call before this one ran";
	default: return strerror(code);
	}
}
