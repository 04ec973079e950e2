/*
 * orbit_update.c - the orbit_update system call, a test per behaviour.
 *
 * orbit_update(pidfd, addr, len, flags) makes the orbit process's memory in
 * [addr, addr + len) a copy-on-write snapshot of the caller's: the orbit then
 * reads what the caller had there at the moment of the call, and later writes
 * by either side stay private to that side.  See kernel/README.md.
 *
 * Each test forks an "orbit" child that serves commands over a pipe (read a
 * page's checksum, write a page, exit), so that what the child sees is
 * checked from the parent.  Prints "ok NAME" / "FAIL NAME: why" per test and
 * exits non-zero if any failed; a kernel without the call skips every test
 * with a "SKIP" line and exits 77.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "uapi_orbit.h"	/* csrc/ks/ */

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25	/* Linux 6.1 */
#endif

#define PAGE 4096UL
#define NPAGES 64UL

static int failures;

#define EXPECT(cond, ...)                                                     \
	do {                                                                  \
		if (!(cond)) {                                                \
			printf("FAIL %s:%d: %s: ", __func__, __LINE__, #cond); \
			printf(__VA_ARGS__);                                  \
			printf("\n");                                         \
			failures++;                                           \
			return;                                               \
		}                                                             \
	} while (0)

static long orbit_update(int pidfd, void *addr, size_t len, unsigned int flags)
{
	return syscall(__NR_orbit_update, pidfd, (unsigned long)addr, (unsigned long)len, flags);
}

static int pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* ---- the child: an orbit that answers commands ---- */

/* CMD_PULL: the child makes its memory a snapshot of process `page`'s
 * (ORBIT_UPDATE_FROM_PIDFD) and answers 0 or the errno.  CMD_DROP: it
 * drops a page (MADV_DONTNEED).  CMD_SUM_ALL: the checksum of the NPAGES
 * pages.  CMD_PFN: the page frame its page is (0: none). */
enum { CMD_SUM = 1, CMD_WRITE = 2, CMD_EXIT = 3, CMD_PULL = 4, CMD_DROP = 5,
       CMD_SUM_ALL = 6, CMD_PFN = 7 };

struct cmd {
	int op;
	unsigned long page;
	unsigned char value;
};

struct orbit {
	pid_t pid;
	int pidfd;
	int to, from;	/* pipes: commands to it, answers from it */
};

static uint64_t page_sum(const unsigned char *p)
{
	uint64_t s = 0;

	for (size_t i = 0; i < PAGE; i++)
		s = s * 31 + p[i];
	return s;
}

static uint64_t sum_all(const unsigned char *mem)
{
	uint64_t s = 0;

	for (size_t i = 0; i < NPAGES; i++)
		s = s * 1000003 + page_sum(mem + i * PAGE);
	return s;
}

/* The page frame mapped at @p in this process, from /proc/self/pagemap
 * (root reads the frame numbers); 0 if none is. */
static uint64_t page_frame(const void *p)
{
	uint64_t e = 0;
	FILE *f = fopen("/proc/self/pagemap", "rb");

	if (!f)
		return 0;
	if (fseek(f, (long)((uintptr_t)p / PAGE * sizeof(e)), SEEK_SET) ||
	    fread(&e, sizeof(e), 1, f) != 1)
		e = 0;
	fclose(f);
	return e >> 63 ? e & ((1ULL << 55) - 1) : 0;
}

static uint64_t pull_from(pid_t pid, unsigned char *mem)
{
	int fd = pidfd_open(pid);
	long r;

	if (fd < 0)
		return (uint64_t)errno;
	r = orbit_update(fd, mem, NPAGES * PAGE, ORBIT_UPDATE_FROM_PIDFD);
	close(fd);
	return r == 0 ? 0 : (uint64_t)errno;
}

static void serve(unsigned char *mem, int in, int out)
{
	struct cmd c;

	while (read(in, &c, sizeof(c)) == (ssize_t)sizeof(c)) {
		uint64_t ans = 0;

		if (c.op == CMD_SUM)
			ans = page_sum(mem + c.page * PAGE);
		else if (c.op == CMD_WRITE)
			memset(mem + c.page * PAGE, c.value, PAGE);
		else if (c.op == CMD_PULL)
			ans = pull_from((pid_t)c.page, mem);
		else if (c.op == CMD_DROP)
			ans = (uint64_t)madvise(mem + c.page * PAGE, PAGE, MADV_DONTNEED);
		else if (c.op == CMD_SUM_ALL)
			ans = sum_all(mem);
		else if (c.op == CMD_PFN)
			ans = page_frame(mem + c.page * PAGE);
		else
			_exit(0);
		if (write(out, &ans, sizeof(ans)) != (ssize_t)sizeof(ans))
			_exit(1);
	}
	_exit(0);
}

static int orbit_start(struct orbit *o, unsigned char *mem)
{
	int a[2], b[2];

	if (pipe(a) || pipe(b))
		return -1;
	o->pid = fork();
	if (o->pid < 0)
		return -1;
	if (o->pid == 0) {
		close(a[1]);
		close(b[0]);
		serve(mem, a[0], b[1]);
	}
	close(a[0]);
	close(b[1]);
	o->to = a[1];
	o->from = b[0];
	o->pidfd = pidfd_open(o->pid);
	return o->pidfd < 0 ? -1 : 0;
}

static uint64_t orbit_ask(struct orbit *o, int op, unsigned long page, unsigned char value)
{
	struct cmd c = { .op = op, .page = page, .value = value };
	uint64_t ans = UINT64_MAX;

	if (write(o->to, &c, sizeof(c)) != (ssize_t)sizeof(c) ||
	    read(o->from, &ans, sizeof(ans)) != (ssize_t)sizeof(ans))
		return UINT64_MAX;
	return ans;
}

static void orbit_stop(struct orbit *o)
{
	struct cmd c = { .op = CMD_EXIT };
	int st;

	if (write(o->to, &c, sizeof(c)) < 0)
		kill(o->pid, SIGKILL);
	waitpid(o->pid, &st, 0);
	close(o->to);
	close(o->from);
	close(o->pidfd);
}

static unsigned char *map_pages(size_t n, int flags)
{
	void *p = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	madvise(p, n * PAGE, MADV_NOHUGEPAGE);
	return p;
}

static uint64_t sum_of_value(unsigned char v)
{
	unsigned char p[PAGE];

	memset(p, v, PAGE);
	return page_sum(p);
}

/* ---- the tests ---- */

static void probe_answers_the_abi(void)
{
	long v = orbit_update(-1, NULL, 0, ORBIT_UPDATE_PROBE);

	EXPECT(v == ORBIT_ABI_VERSION, "probe returned %ld (errno %d)", v, errno);
}

/* The orbit sees main's writes made before the update, not those after. */
static void orbit_sees_the_snapshot(void)
{
	unsigned char *mem = map_pages(NPAGES, MAP_PRIVATE);
	struct orbit o;

	EXPECT(mem != NULL, "mmap");
	memset(mem, 1, NPAGES * PAGE);
	EXPECT(orbit_start(&o, mem) == 0, "start: %s", strerror(errno));
	memset(mem, 2, NPAGES * PAGE);
	EXPECT(orbit_ask(&o, CMD_SUM, 5, 0) == sum_of_value(1), "before the update");
	EXPECT(orbit_update(o.pidfd, mem, NPAGES * PAGE, 0) == 0, "update: %s", strerror(errno));
	EXPECT(orbit_ask(&o, CMD_SUM, 5, 0) == sum_of_value(2), "after the update");
	memset(mem + 5 * PAGE, 3, PAGE);	/* after: not seen */
	EXPECT(orbit_ask(&o, CMD_SUM, 5, 0) == sum_of_value(2), "a later write leaked in");
	EXPECT(orbit_update(o.pidfd, mem, NPAGES * PAGE, 0) == 0, "update 2");
	EXPECT(orbit_ask(&o, CMD_SUM, 5, 0) == sum_of_value(3), "second update");
	orbit_stop(&o);
	munmap(mem, NPAGES * PAGE);
}

/* The orbit's writes stay its own, and the next update replaces them. */
static void orbit_writes_stay_private(void)
{
	unsigned char *mem = map_pages(NPAGES, MAP_PRIVATE);
	struct orbit o;

	EXPECT(mem != NULL, "mmap");
	memset(mem, 4, NPAGES * PAGE);
	EXPECT(orbit_start(&o, mem) == 0, "start");
	EXPECT(orbit_update(o.pidfd, mem, NPAGES * PAGE, 0) == 0, "update");
	EXPECT(orbit_ask(&o, CMD_WRITE, 7, 9) == 0, "orbit write");
	EXPECT(page_sum(mem + 7 * PAGE) == sum_of_value(4), "main saw the orbit's write");
	EXPECT(orbit_ask(&o, CMD_SUM, 7, 0) == sum_of_value(9), "orbit lost its write");
	EXPECT(orbit_update(o.pidfd, mem, NPAGES * PAGE, 0) == 0, "update 2");
	EXPECT(orbit_ask(&o, CMD_SUM, 7, 0) == sum_of_value(4), "the update kept the orbit's write");
	orbit_stop(&o);
	munmap(mem, NPAGES * PAGE);
}

/* Only the range named changes; pages main dropped read as zero. */
static void only_the_range_changes(void)
{
	unsigned char *mem = map_pages(NPAGES, MAP_PRIVATE);
	struct orbit o;

	EXPECT(mem != NULL, "mmap");
	memset(mem, 5, NPAGES * PAGE);
	EXPECT(orbit_start(&o, mem) == 0, "start");
	memset(mem, 6, NPAGES * PAGE);
	madvise(mem + 10 * PAGE, PAGE, MADV_DONTNEED);
	EXPECT(orbit_update(o.pidfd, mem + 8 * PAGE, 4 * PAGE, 0) == 0, "update: %s",
	       strerror(errno));
	EXPECT(orbit_ask(&o, CMD_SUM, 7, 0) == sum_of_value(5), "page below the range changed");
	EXPECT(orbit_ask(&o, CMD_SUM, 8, 0) == sum_of_value(6), "page in the range kept");
	EXPECT(orbit_ask(&o, CMD_SUM, 10, 0) == sum_of_value(0), "dropped page not zero");
	EXPECT(orbit_ask(&o, CMD_SUM, 12, 0) == sum_of_value(5), "page above the range changed");
	orbit_stop(&o);
	munmap(mem, NPAGES * PAGE);
}

/* A range main holds as several mappings (madvise() on part of it split
 * it; orbitpy's areas are pieces of one such mapping, each with its own
 * history of madvise() calls) is updated whole. */
static void range_across_mappings(void)
{
	unsigned char *mem = map_pages(NPAGES, MAP_PRIVATE);
	struct orbit o;
	long r;

	EXPECT(mem != NULL, "mmap");
	memset(mem, 1, NPAGES * PAGE);
	EXPECT(orbit_start(&o, mem) == 0, "start");
	EXPECT(madvise(mem + 16 * PAGE, 16 * PAGE, MADV_RANDOM) == 0, "split: %s",
	       strerror(errno));
	memset(mem, 2, NPAGES * PAGE);
	r = orbit_update(o.pidfd, mem, NPAGES * PAGE, 0);
	EXPECT(r == 0, "update: %s", strerror(errno));
	EXPECT(orbit_ask(&o, CMD_SUM, 5, 0) == sum_of_value(2), "below the split");
	EXPECT(orbit_ask(&o, CMD_SUM, 20, 0) == sum_of_value(2), "in the split part");
	EXPECT(orbit_ask(&o, CMD_SUM, 40, 0) == sum_of_value(2), "above the split");
	orbit_stop(&o);
	munmap(mem, NPAGES * PAGE);
}

/* Many updates of a changing range: the orbit always sees the latest. */
static void repeated_updates(void)
{
	unsigned char *mem = map_pages(NPAGES, MAP_PRIVATE);
	struct orbit o;

	EXPECT(mem != NULL, "mmap");
	memset(mem, 0, NPAGES * PAGE);
	EXPECT(orbit_start(&o, mem) == 0, "start");
	for (int i = 1; i <= 500; i++) {
		unsigned long pg = (unsigned long)(i * 7) % NPAGES;

		memset(mem + pg * PAGE, i & 0xff, PAGE);
		EXPECT(orbit_update(o.pidfd, mem, NPAGES * PAGE, 0) == 0, "update %d", i);
		EXPECT(orbit_ask(&o, CMD_SUM, pg, 0) == sum_of_value((unsigned char)(i & 0xff)),
		       "round %d", i);
	}
	orbit_stop(&o);
	munmap(mem, NPAGES * PAGE);
}

/*
 * The pages main did not change since an update stay shared (the orbit's
 * entry maps main's page frame), main's changed page is shared again, and
 * a page the orbit wrote or dropped is main's again after the next update.
 */
static void unchanged_pages_stay_shared(void)
{
	unsigned char *mem = map_pages(NPAGES, MAP_PRIVATE);
	struct orbit o;
	uint64_t f3;

	EXPECT(mem != NULL, "mmap");
	memset(mem, 1, NPAGES * PAGE);
	EXPECT(orbit_start(&o, mem) == 0, "start");
	memset(mem, 2, NPAGES * PAGE);
	EXPECT(orbit_update(o.pidfd, mem, NPAGES * PAGE, 0) == 0, "update");
	f3 = page_frame(mem + 3 * PAGE);
	EXPECT(f3 != 0 && orbit_ask(&o, CMD_PFN, 3, 0) == f3, "page 3 not shared");
	mem[9 * PAGE] = 3;			/* main changes page 9 */
	EXPECT(orbit_ask(&o, CMD_WRITE, 4, 5) == 0, "orbit write");
	EXPECT(orbit_ask(&o, CMD_DROP, 5, 0) == 0, "orbit drop");
	EXPECT(orbit_update(o.pidfd, mem, NPAGES * PAGE, 0) == 0, "update 2");
	EXPECT(page_frame(mem + 3 * PAGE) == f3 && orbit_ask(&o, CMD_PFN, 3, 0) == f3,
	       "page 3 moved");
	EXPECT(orbit_ask(&o, CMD_PFN, 9, 0) == page_frame(mem + 9 * PAGE), "page 9 not shared");
	EXPECT(orbit_ask(&o, CMD_SUM, 9, 0) == page_sum(mem + 9 * PAGE), "page 9 stale");
	EXPECT(orbit_ask(&o, CMD_SUM, 4, 0) == sum_of_value(2), "orbit's write kept");
	EXPECT(orbit_ask(&o, CMD_SUM, 5, 0) == sum_of_value(2), "orbit's drop kept");
	EXPECT(orbit_ask(&o, CMD_PFN, 4, 0) == page_frame(mem + 4 * PAGE), "page 4 not shared");
	orbit_stop(&o);
	munmap(mem, NPAGES * PAGE);
}

/*
 * Random writes and drops on both sides (main also reads dropped pages,
 * which maps the zero page), an update after each round: the orbit always
 * reads exactly main's memory.
 */
static void random_changes_both_sides(void)
{
	unsigned char *mem = map_pages(NPAGES, MAP_PRIVATE);
	unsigned int seed = 12345;
	struct orbit o;
	volatile unsigned char sink;

	EXPECT(mem != NULL, "mmap");
	memset(mem, 1, NPAGES * PAGE);
	EXPECT(orbit_start(&o, mem) == 0, "start");
	for (int round = 1; round <= 300; round++) {
		for (int k = 0; k < 3; k++) {
			unsigned long pg = (unsigned long)rand_r(&seed) % NPAGES;

			switch (rand_r(&seed) % 4) {
			case 0:
				madvise(mem + pg * PAGE, PAGE, MADV_DONTNEED);
				break;
			case 1:
				madvise(mem + pg * PAGE, PAGE, MADV_DONTNEED);
				sink = mem[pg * PAGE];
				(void)sink;
				break;
			default:
				memset(mem + pg * PAGE, round & 0xff, PAGE);
			}
		}
		for (int k = 0; k < 2; k++) {
			unsigned long pg = (unsigned long)rand_r(&seed) % NPAGES;

			EXPECT(orbit_ask(&o, rand_r(&seed) % 2 ? CMD_DROP : CMD_WRITE, pg,
					 0x80 | (round & 0x7f)) == 0, "round %d: orbit", round);
		}
		EXPECT(orbit_update(o.pidfd, mem, NPAGES * PAGE, 0) == 0, "update %d", round);
		EXPECT(orbit_ask(&o, CMD_SUM_ALL, 0, 0) == sum_all(mem), "round %d", round);
	}
	orbit_stop(&o);
	munmap(mem, NPAGES * PAGE);
}

/*
 * Main maps part of the range with a huge page where the orbit still has a
 * page table from an earlier update: the update must share main's memory
 * without leaking or overwriting the orbit's page table (a leak shows as
 * "BUG: non-zero pgtables_bytes" when the orbit exits, which
 * kernel/run-tests fails on).
 */
/* AnonHugePages of /proc/self/smaps_rollup: 0 where the kernel has no
 * transparent huge pages (the test then checks the small-page path). */
static unsigned long anon_huge_kb(void)
{
	char line[256];
	unsigned long kb = 0;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "AnonHugePages: %lu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

static void huge_page_facing_page_table(void)
{
	size_t huge = 2UL << 20, len = 2 * huge;
	unsigned char *raw = map_pages(len / PAGE + huge / PAGE, MAP_PRIVATE);
	unsigned char *mem;
	struct orbit o;

	EXPECT(raw != NULL, "mmap");
	mem = (unsigned char *)(((uintptr_t)raw + huge - 1) & ~(huge - 1));
	memset(mem, 1, len);
	EXPECT(orbit_start(&o, mem) == 0, "start");
	EXPECT(orbit_update(o.pidfd, mem, len, 0) == 0, "update");
	EXPECT(orbit_ask(&o, CMD_SUM, 700, 0) == sum_of_value(1), "first update");
	/* Main's second huge page's worth: dropped, written again and
	 * collapsed into a huge page (where the kernel has transparent huge
	 * pages: the page table stays after the drop, so a fault maps small
	 * pages). */
	EXPECT(madvise(mem + huge, huge, MADV_DONTNEED) == 0, "drop");
	memset(mem + huge, 2, huge);
	EXPECT(madvise(mem, len, MADV_HUGEPAGE) == 0 || errno == EINVAL, "MADV_HUGEPAGE");
	if (madvise(mem + huge, huge, MADV_COLLAPSE))
		printf("  MADV_COLLAPSE: %s\n", strerror(errno));
	printf("  main's huge pages: %lu kB\n", anon_huge_kb());
	EXPECT(orbit_update(o.pidfd, mem, len, 0) == 0, "update 2: %s", strerror(errno));
	EXPECT(orbit_ask(&o, CMD_SUM, 700, 0) == sum_of_value(2), "huge part");
	EXPECT(orbit_ask(&o, CMD_SUM, 5, 0) == sum_of_value(1), "small part");
	EXPECT(orbit_ask(&o, CMD_WRITE, 600, 3) == 0, "orbit write");
	EXPECT(page_sum(mem + 600 * PAGE) == sum_of_value(2), "main saw the orbit's write");
	EXPECT(orbit_update(o.pidfd, mem, len, 0) == 0, "update 3");
	EXPECT(orbit_ask(&o, CMD_SUM, 600, 0) == sum_of_value(2), "update 3 kept the write");
	orbit_stop(&o);
	munmap(raw, len + huge);
}

static void bad_arguments(void)
{
	unsigned char *mem = map_pages(NPAGES + 1024, MAP_PRIVATE);
	unsigned char *shared = map_pages(4, MAP_SHARED);
	struct orbit o;
	int self;

	EXPECT(mem != NULL && shared != NULL, "mmap");
	/* Past mem, a hole (a range may span mappings, not holes). */
	munmap(mem + NPAGES * PAGE, 1024 * PAGE);
	EXPECT(orbit_start(&o, mem) == 0, "start");
	errno = 0;
	EXPECT(orbit_update(o.pidfd, mem, PAGE, 0x40) == -1 && errno == EINVAL, "flags: %d", errno);
	EXPECT(orbit_update(o.pidfd, mem + 1, PAGE, 0) == -1 && errno == EINVAL, "addr: %d", errno);
	EXPECT(orbit_update(o.pidfd, mem, 100, 0) == -1 && errno == EINVAL, "len: %d", errno);
	EXPECT(orbit_update(o.pidfd, mem, 0, 0) == -1 && errno == EINVAL, "len 0: %d", errno);
	EXPECT(orbit_update(-1, mem, PAGE, 0) == -1 && errno == EBADF, "fd -1: %d", errno);
	EXPECT(orbit_update(0, mem, PAGE, 0) == -1 && errno == EBADF, "not a pidfd: %d", errno);
	EXPECT(orbit_update(o.pidfd, shared, PAGE, 0) == -1 && errno == EINVAL, "shared: %d",
	       errno);
	/* A range running past its mapping into the hole. */
	EXPECT(orbit_update(o.pidfd, mem, (NPAGES + 1024) * PAGE, 0) == -1 && errno == ENOMEM,
	       "past the mapping: %d", errno);
	self = pidfd_open(getpid());
	EXPECT(self >= 0, "pidfd of self");
	EXPECT(orbit_update(self, mem, PAGE, 0) == -1 && errno == EPERM, "self: %d", errno);
	close(self);
	orbit_stop(&o);
	/* Reaped: the process is gone. */
	EXPECT(orbit_update(o.pidfd, mem, PAGE, 0) == -1, "exited orbit accepted");
	munmap(mem, NPAGES * PAGE);
	munmap(shared, 4 * PAGE);
}

/* The orbit's mapping must have main's permissions: a range it holds
 * PROT_NONE (orbitpy's address reservation) is refused, never made readable
 * behind the mapping's back. */
static void permissions_must_match(void)
{
	unsigned char *mem = map_pages(NPAGES, MAP_PRIVATE);
	struct orbit o;
	int p[2];
	char c = 0;
	pid_t child;
	long r;

	EXPECT(mem != NULL && pipe(p) == 0, "setup");
	memset(mem, 8, NPAGES * PAGE);
	child = fork();
	if (child == 0) {
		mprotect(mem, NPAGES * PAGE, PROT_NONE);
		if (write(p[1], &c, 1) < 0)
			_exit(1);
		pause();
		_exit(0);
	}
	EXPECT(read(p[0], &c, 1) == 1, "child ready");
	o.pidfd = pidfd_open(child);
	r = orbit_update(o.pidfd, mem, NPAGES * PAGE, 0);
	int err = errno;
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	close(o.pidfd);
	close(p[0]);
	close(p[1]);
	munmap(mem, NPAGES * PAGE);
	EXPECT(r == -1 && err == EINVAL, "PROT_NONE orbit range: r=%ld errno %d", r, err);
}

/* A grandchild is not the caller's orbit. */
static void only_own_children(void)
{
	unsigned char *mem = map_pages(4, MAP_PRIVATE);
	int p[2];
	pid_t child;
	long r;

	EXPECT(mem != NULL && pipe(p) == 0, "setup");
	child = fork();
	if (child == 0) {
		pid_t g = fork();

		if (g == 0) {
			pause();
			_exit(0);
		}
		if (write(p[1], &g, sizeof(g)) < 0)
			_exit(1);
		waitpid(g, NULL, 0);
		_exit(0);
	}
	pid_t g = 0;
	EXPECT(read(p[0], &g, sizeof(g)) == (ssize_t)sizeof(g), "grandchild pid");
	int fd = pidfd_open(g);
	r = orbit_update(fd, mem, PAGE, 0);
	int err = errno;
	kill(g, SIGKILL);
	waitpid(child, NULL, 0);
	close(fd);
	close(p[0]);
	close(p[1]);
	munmap(mem, 4 * PAGE);
	EXPECT(r == -1 && err == EPERM, "grandchild: r=%ld errno %d", r, err);
}

/* ---- ORBIT_UPDATE_FROM_PIDFD: the caller takes another process's range */

/*
 * A queued call's path: main snapshots its memory into a holder (a child),
 * goes on writing, and the orbit (another child) later makes its memory the
 * holder's: it sees main's memory as it was at the holder's update.
 */
static void update_from_another_process(void)
{
	unsigned char *mem = map_pages(NPAGES, MAP_PRIVATE);
	struct orbit holder, o;

	EXPECT(mem != NULL, "mmap");
	memset(mem, 1, NPAGES * PAGE);
	EXPECT(orbit_start(&holder, mem) == 0 && orbit_start(&o, mem) == 0, "start");
	memset(mem, 2, NPAGES * PAGE);
	EXPECT(orbit_update(holder.pidfd, mem, NPAGES * PAGE, 0) == 0, "to the holder: %s",
	       strerror(errno));
	memset(mem, 3, NPAGES * PAGE);	/* after the snapshot */
	EXPECT(orbit_ask(&o, CMD_SUM, 9, 0) == sum_of_value(1), "orbit changed early");
	EXPECT(orbit_ask(&o, CMD_PULL, (unsigned long)holder.pid, 0) == 0, "pull failed");
	EXPECT(orbit_ask(&o, CMD_SUM, 9, 0) == sum_of_value(2), "orbit lacks the snapshot");
	EXPECT(orbit_ask(&holder, CMD_SUM, 9, 0) == sum_of_value(2), "holder lost it");
	/* Copy-on-write both ways: the orbit's write is its own. */
	EXPECT(orbit_ask(&o, CMD_WRITE, 9, 7) == 0, "orbit write");
	EXPECT(orbit_ask(&holder, CMD_SUM, 9, 0) == sum_of_value(2), "holder saw the write");
	EXPECT(page_sum(mem + 9 * PAGE) == sum_of_value(3), "main saw the write");
	/* Another source: one forked later, holding main's memory by fork(). */
	orbit_stop(&holder);
	EXPECT(orbit_start(&holder, mem) == 0, "start 2");
	EXPECT(orbit_ask(&holder, CMD_SUM, 0, 0) == sum_of_value(3), "holder 2");
	EXPECT(orbit_ask(&o, CMD_PULL, (unsigned long)holder.pid, 0) == 0, "pull 2");
	EXPECT(orbit_ask(&o, CMD_SUM, 9, 0) == sum_of_value(3), "second pull");
	orbit_stop(&holder);
	orbit_stop(&o);
	munmap(mem, NPAGES * PAGE);
}

static void from_bad_source(void)
{
	unsigned char *mem = map_pages(NPAGES, MAP_PRIVATE);
	int self;

	EXPECT(mem != NULL, "mmap");
	errno = 0;
	EXPECT(orbit_update(-1, mem, PAGE, ORBIT_UPDATE_FROM_PIDFD) == -1 && errno == EBADF,
	       "fd -1: %d", errno);
	EXPECT(orbit_update(0, mem, PAGE, ORBIT_UPDATE_FROM_PIDFD) == -1 && errno == EBADF,
	       "not a pidfd: %d", errno);
	EXPECT(orbit_update(-1, mem, PAGE, ORBIT_UPDATE_FROM_PIDFD | 0x40) == -1 &&
	       errno == EINVAL, "unknown flag: %d", errno);
	self = pidfd_open(getpid());
	EXPECT(self >= 0, "pidfd of self");
	EXPECT(orbit_update(self, mem, PAGE, ORBIT_UPDATE_FROM_PIDFD) == -1 && errno == EPERM,
	       "self: %d", errno);
	close(self);
	munmap(mem, NPAGES * PAGE);
}

/* A source the caller may not ptrace: another user's (root drops to
 * nobody first), and not dumpable (enough for anyone without
 * CAP_SYS_PTRACE). */
static void from_needs_ptrace(void)
{
	unsigned char *mem = map_pages(NPAGES, MAP_PRIVATE);
	int p[2], st = 0;
	pid_t src, caller;
	char c = 0;

	EXPECT(mem != NULL && pipe(p) == 0, "setup");
	memset(mem, 5, NPAGES * PAGE);
	src = fork();
	if (src == 0) {
		prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
		if (write(p[1], &c, 1) < 0)
			_exit(1);
		pause();
		_exit(0);
	}
	EXPECT(read(p[0], &c, 1) == 1, "source ready");
	caller = fork();
	if (caller == 0) {
		int fd = pidfd_open(src);

		if (getuid() == 0 && (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)))
			_exit(2);
		_exit(orbit_update(fd, mem, NPAGES * PAGE, ORBIT_UPDATE_FROM_PIDFD) == -1 &&
		      errno == EPERM ? 0 : 1);
	}
	waitpid(caller, &st, 0);
	kill(src, SIGKILL);
	waitpid(src, NULL, 0);
	close(p[0]);
	close(p[1]);
	munmap(mem, NPAGES * PAGE);
	EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "not refused: status %#x", st);
}

/* The source's range must match the caller's: the same permissions, one
 * mapping, one anon_vma tree. */
static void from_must_match(void)
{
	unsigned char *mem = map_pages(NPAGES, MAP_PRIVATE);
	int p[2];
	char c = 0;
	long r[3];
	int err[3];

	EXPECT(mem != NULL && pipe(p) == 0, "setup");
	memset(mem, 6, NPAGES * PAGE);
	for (int t = 0; t < 3; t++) {
		pid_t src = fork();
		int fd;

		if (src == 0) {
			if (t == 0)	/* read-only */
				mprotect(mem, NPAGES * PAGE, PROT_READ);
			else if (t == 1)	/* half of it unmapped */
				munmap(mem + NPAGES / 2 * PAGE, NPAGES / 2 * PAGE);
			else	/* a mapping of its own, written: another tree */
				memset(mmap(mem, NPAGES * PAGE, PROT_READ | PROT_WRITE,
					    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
				       7, NPAGES * PAGE);
			if (write(p[1], &c, 1) < 0)
				_exit(1);
			pause();
			_exit(0);
		}
		EXPECT(read(p[0], &c, 1) == 1, "source %d ready", t);
		fd = pidfd_open(src);
		r[t] = orbit_update(fd, mem, NPAGES * PAGE, ORBIT_UPDATE_FROM_PIDFD);
		err[t] = errno;
		kill(src, SIGKILL);
		waitpid(src, NULL, 0);
		close(fd);
	}
	close(p[0]);
	close(p[1]);
	EXPECT(page_sum(mem) == sum_of_value(6), "the caller's memory changed");
	munmap(mem, NPAGES * PAGE);
	EXPECT(r[0] == -1 && err[0] == EINVAL, "read-only source: r=%ld errno %d", r[0], err[0]);
	EXPECT(r[1] == -1 && err[1] == ENOMEM, "short source: r=%ld errno %d", r[1], err[1]);
	EXPECT(r[2] == -1 && err[2] == EINVAL, "other tree: r=%ld errno %d", r[2], err[2]);
}

/*
 * A source's page written by the source itself belongs to the source's own
 * anon_vma, which a sibling's mapping is not linked to: rmap would never
 * find the sibling's mapping of it (reclaim and migration would leave it
 * behind), so the sibling may not take it.  Main's pages it may.
 */
static void from_pages_of_its_own(void)
{
	unsigned char *mem = map_pages(NPAGES, MAP_PRIVATE);
	struct orbit src, o;

	EXPECT(mem != NULL, "mmap");
	memset(mem, 1, NPAGES * PAGE);
	EXPECT(orbit_start(&src, mem) == 0 && orbit_start(&o, mem) == 0, "start");
	memset(mem, 2, NPAGES * PAGE);
	EXPECT(orbit_update(src.pidfd, mem, NPAGES * PAGE, 0) == 0, "to the source");
	EXPECT(orbit_ask(&o, CMD_PULL, (unsigned long)src.pid, 0) == 0, "main's pages refused");
	EXPECT(orbit_ask(&o, CMD_SUM, 9, 0) == sum_of_value(2), "pull");
	EXPECT(orbit_ask(&src, CMD_WRITE, 9, 3) == 0, "source write");
	EXPECT(orbit_ask(&o, CMD_PULL, (unsigned long)src.pid, 0) == EINVAL,
	       "the source's own page taken");
	EXPECT(orbit_ask(&o, CMD_SUM, 9, 0) == sum_of_value(2), "refused, yet changed");
	/* Main's update replaces the source's page with main's: allowed again. */
	EXPECT(orbit_update(src.pidfd, mem, NPAGES * PAGE, 0) == 0, "to the source 2");
	EXPECT(orbit_ask(&o, CMD_PULL, (unsigned long)src.pid, 0) == 0, "second pull");
	orbit_stop(&src);
	orbit_stop(&o);
	munmap(mem, NPAGES * PAGE);
}

/* Two processes taking each other's range at the same time lock the same
 * two mms in opposite roles: they must not deadlock. */
static void from_both_ways_no_deadlock(void)
{
	unsigned char *mem = map_pages(NPAGES, MAP_PRIVATE);
	int p[2], q[2], st[2] = { -1, -1 };
	pid_t kid[2];

	EXPECT(mem != NULL && pipe(p) == 0 && pipe(q) == 0, "setup");
	memset(mem, 8, NPAGES * PAGE);
	for (int i = 0; i < 2; i++) {
		kid[i] = fork();
		if (kid[i] == 0) {
			pid_t other;
			int fd, bad = 0;

			if (read(i ? q[0] : p[0], &other, sizeof(other)) != sizeof(other))
				_exit(2);
			fd = pidfd_open(other);
			/* Neither writes: a page of its own would be refused
			 * to the other (from_pages_of_its_own). */
			for (int n = 0; n < 500 && !bad; n++) {
				long r;

				r = orbit_update(fd, mem, NPAGES * PAGE, ORBIT_UPDATE_FROM_PIDFD);
				if (r && errno == ESRCH)
					break;	/* the other one is done */
				bad = r != 0;
			}
			_exit(bad);
		}
	}
	EXPECT(write(p[1], &kid[1], sizeof(pid_t)) == sizeof(pid_t) &&
	       write(q[1], &kid[0], sizeof(pid_t)) == sizeof(pid_t), "pids");
	for (int i = 0; i < 2; i++)
		waitpid(kid[i], &st[i], 0);	/* the binary's timeout catches a deadlock */
	close(p[0]);
	close(p[1]);
	close(q[0]);
	close(q[1]);
	munmap(mem, NPAGES * PAGE);
	EXPECT(WIFEXITED(st[0]) && !WEXITSTATUS(st[0]) && WIFEXITED(st[1]) && !WEXITSTATUS(st[1]),
	       "status %#x %#x", st[0], st[1]);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (orbit_update(-1, NULL, 0, ORBIT_UPDATE_PROBE) < 0 && errno == ENOSYS) {
		printf("SKIP orbit_update: this kernel has no orbit system calls\n");
		return 77;
	}
#define RUN(t) do { int before = failures; t(); if (failures == before) printf("ok %s\n", #t); } while (0)
	RUN(probe_answers_the_abi);
	RUN(orbit_sees_the_snapshot);
	RUN(orbit_writes_stay_private);
	RUN(only_the_range_changes);
	RUN(range_across_mappings);
	RUN(repeated_updates);
	RUN(unchanged_pages_stay_shared);
	RUN(random_changes_both_sides);
	RUN(huge_page_facing_page_table);
	RUN(bad_arguments);
	RUN(permissions_must_match);
	RUN(only_own_children);
	RUN(update_from_another_process);
	RUN(from_bad_source);
	RUN(from_needs_ptrace);
	RUN(from_must_match);
	RUN(from_pages_of_its_own);
	RUN(from_both_ways_no_deadlock);
	printf("%s orbit_update: %d failed\n", failures ? "FAIL" : "PASS", failures);
	return failures ? 1 : 0;
}
