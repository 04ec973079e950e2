# cython: language_level=3
"""Benchmark helpers in C, for benchmarks/ only (not part of the API).

futex_roundtrip() measures the floor under a synchronous orbit call: a bare
cross-process wake-up and answer through a futex on shared memory, with no
Python, no sockets and no snapshot in the loop.
"""

cdef extern from *:
    """
    #include <errno.h>
    #include <linux/futex.h>
    #include <sched.h>
    #include <signal.h>
    #include <stdatomic.h>
    #include <stdint.h>
    #include <sys/mman.h>
    #include <sys/prctl.h>
    #include <sys/syscall.h>
    #include <sys/wait.h>
    #include <time.h>
    #include <unistd.h>

    /* The word the two sides hand back and forth: the parent stores 2i+1
     * (request i), the child answers 2i+2; FB_STOP tells the child to exit.
     * `sleepers` counts the sides in FUTEX_WAIT so that a waker whose
     * partner is still spinning skips the FUTEX_WAKE system call (both
     * sides use seq_cst: either the waker sees the sleeper, or the
     * sleeper's FUTEX_WAIT sees the new value and returns at once). */
    struct fb_shared {
        _Atomic uint32_t word;
        _Atomic uint32_t sleepers;
    };

    #define FB_STOP 0xffffffffu

    static uint64_t fb_now_ns(void)
    {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
    }

    static void fb_relax(void)
    {
    #if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
    #elif defined(__aarch64__)
        __asm__ __volatile__("yield");
    #endif
    }

    /* Shared (not FUTEX_PRIVATE_FLAG): the word lives in a MAP_SHARED page
     * seen by two processes. */
    static long fb_futex(_Atomic uint32_t *w, int op, uint32_t val, const struct timespec *ts)
    {
        return syscall(SYS_futex, (uint32_t *)w, op, val, ts, NULL, 0);
    }

    static void fb_publish(struct fb_shared *sh, uint32_t v)
    {
        atomic_store(&sh->word, v);
        if (atomic_load(&sh->sleepers))
            fb_futex(&sh->word, FUTEX_WAKE, 1, NULL);
    }

    /* Wait until the word is no longer `cur`: spin up to spin_ns, then
     * sleep.  Returns the new value, or FB_STOP if `give_up` is set and the
     * parent is gone. */
    static uint32_t fb_wait_change(struct fb_shared *sh, uint32_t cur, uint64_t spin_ns,
                                   pid_t parent)
    {
        uint32_t v = atomic_load(&sh->word);

        if (v != cur)
            return v;
        if (spin_ns) {
            uint64_t until = fb_now_ns() + spin_ns;

            while ((v = atomic_load(&sh->word)) == cur) {
                if (fb_now_ns() >= until)
                    break;
                fb_relax();
            }
            if (v != cur)
                return v;
        }
        for (;;) {
            struct timespec ts = { 1, 0 };

            atomic_fetch_add(&sh->sleepers, 1);
            fb_futex(&sh->word, FUTEX_WAIT, cur, &ts);
            atomic_fetch_sub(&sh->sleepers, 1);
            v = atomic_load(&sh->word);
            if (v != cur)
                return v;
            if (parent && getppid() != parent)
                return FB_STOP;    /* the parent died: do not linger */
        }
    }

    static int fb_pin(int cpu)
    {
        cpu_set_t set;

        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        return sched_setaffinity(0, sizeof(set), &set);
    }

    /* Returns seconds per round trip (mean over `iterations`, after
     * `warmup` uncounted ones), or a negative errno.  When `samples` is
     * not NULL it receives each counted round trip's duration (seconds),
     * timed on the parent's side.  cpu_parent / cpu_child >= 0 pin the
     * calling thread (for the duration) and the child to those CPUs. */
    static double fb_roundtrip(long iterations, long warmup, uint64_t spin_ns, double *samples,
                               int cpu_parent, int cpu_child)
    {
        struct fb_shared *sh;
        pid_t parent = getpid(), pid;
        uint64_t t0 = 0, t1, prev;
        int status, pinned = 0;
        long i, total = iterations + warmup;
        cpu_set_t saved;

        if (cpu_parent >= 0) {
            if (sched_getaffinity(0, sizeof(saved), &saved) < 0 || fb_pin(cpu_parent) < 0)
                return -(double)errno;
            pinned = 1;
        }
        sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (sh == MAP_FAILED) {
            int err = errno;

            if (pinned)
                sched_setaffinity(0, sizeof(saved), &saved);
            return -(double)err;
        }
        atomic_store(&sh->word, 0);
        atomic_store(&sh->sleepers, 0);
        pid = fork();
        if (pid < 0) {
            int err = errno;

            munmap(sh, 4096);
            if (pinned)
                sched_setaffinity(0, sizeof(saved), &saved);
            return -(double)err;
        }
        if (pid == 0) {
            /* Child: raw system calls only (the parent may have threads). */
            uint32_t cur = 0;

            prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
            if (cpu_child >= 0)
                fb_pin(cpu_child);
            else if (pinned)    /* do not inherit the parent's pinning */
                sched_setaffinity(0, sizeof(saved), &saved);
            for (;;) {
                uint32_t v = fb_wait_change(sh, cur, spin_ns, parent);

                if (v == FB_STOP)
                    _exit(0);
                cur = v + 1;
                fb_publish(sh, cur);
            }
        }
        for (i = 0; i < total; i++) {
            uint32_t req = (uint32_t)(2 * i + 1);

            if (i == warmup)
                t0 = fb_now_ns();
            prev = samples ? fb_now_ns() : 0;
            fb_publish(sh, req);
            while (fb_wait_change(sh, req, spin_ns, 0) != req + 1)
                ;
            if (samples && i >= warmup) {
                t1 = fb_now_ns();
                samples[i - warmup] = (double)(t1 - prev) * 1e-9;
            }
        }
        t1 = fb_now_ns();
        fb_publish(sh, FB_STOP);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        munmap(sh, 4096);
        if (pinned)
            sched_setaffinity(0, sizeof(saved), &saved);
        return iterations ? (double)(t1 - t0) * 1e-9 / (double)iterations : 0.0;
    }
    """
    double fb_roundtrip(long iterations, long warmup, unsigned long long spin_ns,
                        double *samples, int cpu_parent, int cpu_child) nogil


def futex_roundtrip(long iterations, double spin_us=0, samples=None, long warmup=10,
                    cpus=None):
    """Seconds per cross-process futex round trip (wake the child, wait for
    its answer), averaged over `iterations` after `warmup` uncounted ones.

    A child is forked on a shared anonymous page; each side waits for the
    other with FUTEX_WAIT on a shared (not FUTEX_PRIVATE_FLAG) word, after
    spinning up to `spin_us` microseconds (0: sleep at once).  Everything
    runs in C with the GIL released.  `samples`, if given, is a writable
    buffer of C doubles (e.g. ``array.array('d', bytes(8 * iterations))``)
    that receives every round trip's duration in seconds.  `cpus`, if
    given, is (parent_cpu, child_cpu): the calling thread is pinned to the
    first for the measurement (its affinity is restored afterwards) and the
    child to the second; where the two sides run decides the cost of a
    sleeping wake-up.
    """
    cdef double[::1] out
    cdef double *p = NULL
    cdef double r
    cdef unsigned long long spin_ns
    cdef int cpu_parent = -1, cpu_child = -1
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    if warmup < 0:
        raise ValueError("warmup must be >= 0")
    if spin_us < 0:
        raise ValueError("spin_us must be >= 0")
    spin_ns = <unsigned long long>(spin_us * 1000.0)
    if samples is not None:
        out = samples
        if out.shape[0] < iterations:
            raise ValueError(f"samples holds {out.shape[0]} values, need {iterations}")
        p = &out[0]
    if cpus is not None:
        cpu_parent, cpu_child = cpus
        if cpu_parent < 0 or cpu_child < 0:
            raise ValueError("cpus must be two CPU numbers >= 0")
    with nogil:
        r = fb_roundtrip(iterations, warmup, spin_ns, p, cpu_parent, cpu_child)
    if r < 0:
        import os
        errno_ = int(-r)
        raise OSError(errno_, os.strerror(errno_))
    return r
