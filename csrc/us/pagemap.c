/*
 * pagemap.c - page-table queries through /proc/self/pagemap.
 *
 * The descriptor is opened lazily and dropped in every forked child: an
 * inherited /proc/self/pagemap descriptor keeps describing the parent's
 * address space, which would silently give a child the wrong answers.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "pagemap.h"
#include "uapi_compat.h"

static int pm_fd = -1;
static pthread_once_t pm_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t pm_lock = PTHREAD_MUTEX_INITIALIZER;

static void pm_atfork_child(void)
{
	if (pm_fd >= 0)
		close(pm_fd);
	pm_fd = -1;
	pthread_mutex_init(&pm_lock, NULL);
}

static void pm_register(void)
{
	pthread_atfork(NULL, NULL, pm_atfork_child);
}

static int pm_get_fd(void)
{
	int fd;

	pthread_once(&pm_once, pm_register);
	fd = __atomic_load_n(&pm_fd, __ATOMIC_ACQUIRE);
	if (fd >= 0)
		return fd;
	pthread_mutex_lock(&pm_lock);
	if (pm_fd < 0) {
		fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			fd = -errno;
			pthread_mutex_unlock(&pm_lock);
			return fd;
		}
		__atomic_store_n(&pm_fd, fd, __ATOMIC_RELEASE);
	}
	fd = pm_fd;
	pthread_mutex_unlock(&pm_lock);
	return fd;
}

#define PM_VEC 256

int pm_scan(void *addr, size_t len, uint64_t flags, uint64_t inverted, uint64_t mask,
	    uint64_t anyof, page_run_cb cb, void *ctx)
{
	struct page_region vec[PM_VEC];
	struct pm_scan_arg arg = { 0 };
	uint64_t start = (uintptr_t)addr, end = start + len;
	int fd = pm_get_fd();

	if (fd < 0)
		return fd;
	arg.size = sizeof(arg);
	arg.flags = flags;
	arg.vec = (uintptr_t)vec;
	arg.vec_len = PM_VEC;
	arg.category_inverted = inverted;
	arg.category_mask = mask;
	arg.category_anyof_mask = anyof;
	/* Report only the categories we filter on, so that neighbouring
	 * matching pages merge into one region. */
	arg.return_mask = mask | anyof;
	while (start < end) {
		long n;

		arg.start = start;
		arg.end = end;
		n = ioctl(fd, PAGEMAP_SCAN, &arg);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (long i = 0; i < n; i++)
			cb(ctx, (vec[i].start - (uintptr_t)addr) >> PM_PAGE_SHIFT,
			   (vec[i].end - vec[i].start) >> PM_PAGE_SHIFT);
		if (arg.walk_end <= start)	/* no progress: should not happen */
			return -EIO;
		start = arg.walk_end;
	}
	return 0;
}

static void pm_ignore(void *ctx, size_t first, size_t n)
{
	(void)ctx;
	(void)first;
	(void)n;
}

int pm_scan_available(void)
{
	static int avail = -1;
	static char probe[PM_PAGE_SIZE] __attribute__((aligned(4096)));

	if (avail < 0)	/* a harmless query on one of our own pages */
		avail = pm_scan(probe, PM_PAGE_SIZE, 0, 0, PAGE_IS_PRESENT, 0,
				pm_ignore, NULL) == 0;
	return avail;
}

#define PM_PRESENT (1ULL << 63)
#define PM_SWAPPED (1ULL << 62)
#define PM_FILE_OR_SHARED (1ULL << 61)
#define PM_BATCH 512

int pagemap_runs(void *addr, size_t len, int private_only, page_run_cb cb, void *ctx)
{
	uint64_t ent[PM_BATCH];
	size_t npages = len >> PM_PAGE_SHIFT, run_start = 0, run_len = 0;
	off_t off = (off_t)((uintptr_t)addr >> PM_PAGE_SHIFT) * 8;
	int fd = pm_get_fd();

	if (fd < 0)
		return fd;
	for (size_t done = 0; done < npages;) {
		size_t want = npages - done < PM_BATCH ? npages - done : PM_BATCH;
		ssize_t got = pread(fd, ent, want * 8, off + (off_t)done * 8);

		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (got < 8)
			return -EIO;
		for (size_t i = 0; i < (size_t)got / 8; i++) {
			uint64_t e = ent[i];
			int hit = (e & (PM_PRESENT | PM_SWAPPED)) &&
				  !(private_only && (e & PM_FILE_OR_SHARED));

			if (hit) {
				if (!run_len)
					run_start = done + i;
				run_len++;
			} else if (run_len) {
				cb(ctx, run_start, run_len);
				run_len = 0;
			}
		}
		done += (size_t)got / 8;
	}
	if (run_len)
		cb(ctx, run_start, run_len);
	return 0;
}
