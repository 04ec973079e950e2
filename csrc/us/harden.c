/*
 * harden.c - an orbit that cannot reach into main by accident.
 *
 * An orbit is a fork of main under the same user, so the kernel lets it
 * trace main, write main's memory and signal main.  Orbits run trusted code
 * and this is no sandbox, but a buggy task must not do it by mistake: a
 * seccomp filter (installed in the orbit, inherited by whatever it runs)
 * makes these fail with EPERM:
 *
 *   ptrace(PTRACE_ATTACH / PTRACE_SEIZE, any pid)  - main's threads have
 *       pids of their own; PTRACE_TRACEME (a debugger starting a program)
 *       still works
 *   process_vm_writev(any pid)
 *   kill(main), kill(0), kill(-1), kill(-main's group): a non-zero signal
 *   tgkill / tkill / rt_sigqueueinfo / rt_tgsigqueueinfo naming main
 *   pidfd_open(main); pidfd_send_signal / pidfd_getfd on the watchdog's
 *       pidfd of main
 *
 * Not covered: open("/proc/<main>/mem") for writing (seccomp cannot see
 * paths; the kernel allows it to the same user unless main is not
 * dumpable, and always to root), signals through a /proc/<main> directory
 * descriptor or a thread of main named by tid (tkill), and system calls made
 * through another ABI (32-bit or x32 on x86-64).  Root's CAP_SYS_PTRACE does
 * not get around the filter.
 */
#include <errno.h>
#include <stddef.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "us.h"

#if defined(__x86_64__)
#define HARDEN_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define HARDEN_ARCH AUDIT_ARCH_AARCH64
#endif

#ifdef HARDEN_ARCH

#define DENY (SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))
#define NR_OFF offsetof(struct seccomp_data, nr)
/* The low 32 bits of argument i: pids, fds and requests are ints. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ARG_OFF(i) (offsetof(struct seccomp_data, args) + 8 * (i))
#else
#define ARG_OFF(i) (offsetof(struct seccomp_data, args) + 8 * (i) + 4)
#endif

#define MAX_INSNS 128

#ifndef SECCOMP_FILTER_FLAG_SPEC_ALLOW
#define SECCOMP_FILTER_FLAG_SPEC_ALLOW (1UL << 2)
#endif

struct prog {
	struct sock_filter f[MAX_INSNS];
	unsigned short n;
	int overflow;
};

static void emit(struct prog *p, struct sock_filter insn)
{
	if (p->n < MAX_INSNS)
		p->f[p->n++] = insn;
	else
		p->overflow = 1;
}

static void ld(struct prog *p, uint32_t off)
{
	emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, off));
}

static void ret(struct prog *p, uint32_t action)
{
	emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, action));
}

/* if (A == k) skip `t` instructions, else skip `f`. */
static void jeq(struct prog *p, uint32_t k, uint8_t t, uint8_t f)
{
	emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, k, t, f));
}

/*
 * One rule: for system call `nr`, deny when argument `arg` equals one of
 * `vals` (any value when nvals is 0), unless the signal argument `sig_arg`
 * (-1: none; only with vals) is 0, the probe that delivers nothing.  Each
 * rule is a block ending in returns, entered only for its system call, so
 * that the accumulator holds the system call number at every rule's start:
 *
 *   jeq nr ? next : past the block
 *   [ld sig; jeq 0 ? ALLOW : next]
 *   [ld arg; jeq vals[0] ? DENY : next; ...; ALLOW:  ret allow]
 *   DENY: ret deny
 */
static void rule(struct prog *p, long nr, int arg, const uint32_t *vals, int nvals, int sig_arg)
{
	uint8_t body = (uint8_t)((sig_arg >= 0 ? 2 : 0) + (nvals ? 1 + nvals + 1 : 0) + 1);

	jeq(p, (uint32_t)nr, 0, body);
	if (sig_arg >= 0) {
		ld(p, ARG_OFF(sig_arg));
		jeq(p, 0, (uint8_t)(1 + nvals), 0);	/* over the loads and tests */
	}
	if (nvals) {
		ld(p, ARG_OFF(arg));
		for (int i = 0; i < nvals; i++)
			jeq(p, vals[i], (uint8_t)(nvals - i), 0);
		ret(p, SECCOMP_RET_ALLOW);
	}
	ret(p, DENY);
}

/* ptrace: deny the requests that attach, whatever the pid (same shape). */
static void rule_ptrace(struct prog *p)
{
	jeq(p, SYS_ptrace, 0, 5);
	ld(p, ARG_OFF(0));
	jeq(p, PTRACE_ATTACH, 2, 0);
	jeq(p, PTRACE_SEIZE, 1, 0);
	ret(p, SECCOMP_RET_ALLOW);
	ret(p, DENY);
}

static int build(struct prog *p, pid_t main_pid, pid_t main_pgid, int main_pidfd)
{
	uint32_t pid = (uint32_t)main_pid;
	uint32_t kill_vals[] = { pid, 0, (uint32_t)-1, (uint32_t)-main_pgid, (uint32_t)-main_pid };
	uint32_t fd = (uint32_t)main_pidfd;

	p->n = 0;
	p->overflow = 0;
	/* Another ABI numbers system calls differently: let it through. */
	ld(p, offsetof(struct seccomp_data, arch));
	jeq(p, HARDEN_ARCH, 1, 0);
	ret(p, SECCOMP_RET_ALLOW);
	ld(p, NR_OFF);
	rule_ptrace(p);
	rule(p, SYS_process_vm_writev, 0, NULL, 0, -1);
	rule(p, SYS_kill, 0, kill_vals, 5, 1);
	rule(p, SYS_tgkill, 0, &pid, 1, 2);
	rule(p, SYS_tkill, 0, &pid, 1, 1);
	rule(p, SYS_rt_sigqueueinfo, 0, &pid, 1, 1);
	rule(p, SYS_rt_tgsigqueueinfo, 0, &pid, 1, 2);
#ifdef SYS_pidfd_open
	rule(p, SYS_pidfd_open, 0, &pid, 1, -1);
#endif
	if (main_pidfd >= 0) {
#ifdef SYS_pidfd_send_signal
		rule(p, SYS_pidfd_send_signal, 0, &fd, 1, 1);
#endif
#ifdef SYS_pidfd_getfd
		rule(p, SYS_pidfd_getfd, 0, &fd, 1, -1);
#endif
	}
	ret(p, SECCOMP_RET_ALLOW);
	return p->overflow ? -E2BIG : 0;
}

int us_harden_child(pid_t main_pid, int main_pidfd)
{
	struct prog p;
	struct sock_fprog fp;
	int rc = build(&p, main_pid, getpgrp(), main_pidfd);

	if (rc)
		return rc;
	fp.len = p.n;
	fp.filter = p.f;
	/*
	 * All the orbit's threads.  SPEC_ALLOW: kernels that default to
	 * "spec_store_bypass_disable=seccomp" would otherwise slow the whole
	 * orbit down with a Spectre mitigation this filter does not need
	 * (EINVAL before Linux 4.17: retry without it).  Without CAP_SYS_ADMIN
	 * the kernel wants no_new_privs first (then set-uid programs the orbit
	 * runs do not gain their privileges).
	 */
	unsigned long flags = SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_SPEC_ALLOW;

	for (int tries = 0; tries < 3; tries++) {
		if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fp) == 0)
			return 0;
		if (errno == EINVAL && (flags & SECCOMP_FILTER_FLAG_SPEC_ALLOW))
			flags &= ~SECCOMP_FILTER_FLAG_SPEC_ALLOW;
		else if (errno == EACCES && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0)
			continue;
		else
			break;
	}
	return -errno;
}

#else

int us_harden_child(pid_t main_pid, int main_pidfd)
{
	(void)main_pid;
	(void)main_pidfd;
	return -ENOSYS;
}

#endif
