/*
 * dirty_track_uffd.c - dirty pages from userfaultfd write-protection in async
 * mode (Linux >= 6.7).
 *
 * Every tracked page starts write-protected.  In async mode the kernel
 * resolves a write fault by itself (no message, no signal, also for writes
 * the kernel makes on our behalf, e.g. read(2) into an area) and the page
 * loses its protection.  PAGEMAP_SCAN then reports the unprotected pages and
 * protects them again in the same page-table walk, so collect is one ioctl.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dirty_track.h"
#include "uapi_compat.h"

/* WP_UNPOPULATED: a page main touches for the first time counts as written
 * (the kernel keeps write-protect markers in empty page-table entries). */
#define UFFD_WANT (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED)

static int uffd = -1;
static int uffd_avail = -1;
static pthread_mutex_t uffd_lock = PTHREAD_MUTEX_INITIALIZER;

/* A new userfaultfd with `features`, or -errno. */
static int uffd_new(uint64_t features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int fd;

	/* User-mode-only faults are all we need, and they are what an
	 * unprivileged process may ask for when vm.unprivileged_userfaultfd=0. */
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0 && errno == EINVAL)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_API, &api) < 0 || (api.features & features) != features) {
		close(fd);
		return -ENOTSUP;
	}
	return fd;
}

/* Register [addr, addr+len) with fd for write-protection, and protect it. */
static int wp_register(int fd, void *addr, size_t len)
{
	struct uffdio_register reg = { .range = { (uintptr_t)addr, len },
				       .mode = UFFDIO_REGISTER_MODE_WP };
	struct uffdio_writeprotect wp = { .range = { (uintptr_t)addr, len },
					  .mode = UFFDIO_WRITEPROTECT_MODE_WP };

	if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp) < 0) {
		int err = -errno;

		ioctl(fd, UFFDIO_UNREGISTER, &reg.range);
		return err;
	}
	return 0;
}

static void uffd_child_reset(void);
static pthread_once_t uffd_atfork_once = PTHREAD_ONCE_INIT;

/*
 * A userfaultfd acts on the address space of the process that opened it, and
 * a forked child inherits the descriptor: a child of main (os.fork,
 * multiprocessing, a pre-forking server's worker) registering its new areas
 * with it would register them in *main's* address space, and its page-table
 * scans would then find its own pages unregistered (EPERM).  So every child
 * forgets main's descriptor at fork (orbits too, again, in child_setup) and
 * opens its own on its first area.
 */
static void uffd_atfork_register(void)
{
	pthread_atfork(NULL, NULL, uffd_child_reset);
}

static int uffd_open_locked(void)
{
	pthread_once(&uffd_atfork_once, uffd_atfork_register);
	if (uffd < 0)
		uffd = uffd_new(UFFD_WANT);
	return uffd;
}

static int uffd_available(void)
{
	pthread_mutex_lock(&uffd_lock);
	if (uffd_avail < 0)
		uffd_avail = pm_scan_available() && uffd_open_locked() >= 0;
	pthread_mutex_unlock(&uffd_lock);
	return uffd_avail;
}

static int uffd_attach(void *addr, size_t len, void **state)
{
	int fd;

	pthread_mutex_lock(&uffd_lock);
	fd = uffd_open_locked();
	pthread_mutex_unlock(&uffd_lock);
	*state = NULL;
	return fd < 0 ? fd : wp_register(fd, addr, len);
}

static void uffd_detach(void *state, void *addr, size_t len)
{
	struct uffdio_range r = { (uintptr_t)addr, len };

	(void)state;
	if (uffd >= 0)
		ioctl(uffd, UFFDIO_UNREGISTER, &r);
}

static int uffd_collect(void *state, void *addr, size_t len, page_run_cb cb, void *ctx)
{
	(void)state;
	return pm_scan(addr, len, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, 0,
		       PAGE_IS_WRITTEN, 0, cb, ctx);
}


/*
 * The orbit's own writes to its private view of a base (a memfd).  Asking the
 * page tables which pages are copy-on-write copies (not file pages) makes the
 * kernel look up every present page: ~30 ns each, 2.5 ms for a 512 MiB view
 * the orbit has read.  So the orbit write-protects its views too (async, on
 * its own descriptor: shmem needs UFFD_FEATURE_WP_HUGETLBFS_SHMEM, which
 * main's does not ask for), and a write -- the copy -- clears the protection
 * of that page table entry: then the written pages are a check of the entry's
 * bit, as in main (~1.5 ns a page), and the scan protects them again.
 */
static int own_uffd = -1;

static int uffd_own_attach(void *addr, size_t len)
{
	if (own_uffd < 0)	/* only the orbit's call loop maps views */
		own_uffd = uffd_new(UFFD_WANT | UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
	return own_uffd < 0 ? own_uffd : wp_register(own_uffd, addr, len);
}

static int uffd_own_writes(void *addr, size_t len, int armed, page_run_cb cb, void *ctx)
{
	if (armed)	/* written and protected again, as in main */
		return uffd_collect(NULL, addr, len, cb, ctx);
	/* Copy-on-write copies are the pages that are not file pages (nor the
	 * shared zero page) but present or swapped. */
	return pm_scan(addr, len, 0, PAGE_IS_FILE | PAGE_IS_PFNZERO,
		       PAGE_IS_FILE | PAGE_IS_PFNZERO, PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		       cb, ctx);
}

static void uffd_child_reset(void)
{
	/* Without UFFD_FEATURE_EVENT_FORK the child's mappings are not
	 * registered; the inherited descriptor is only main's.  Closing our
	 * copy leaves main's open. */
	if (uffd >= 0)
		close(uffd);
	uffd = -1;
	if (own_uffd >= 0)	/* a child of an orbit (none today) */
		close(own_uffd);
	own_uffd = -1;
	uffd_avail = -1;
	pthread_mutex_init(&uffd_lock, NULL);
}

const struct dirty_track_ops dirty_track_uffd = {
	.mode = DIRTY_TRACK_UFFD,
	.name = "uffd",
	.available = uffd_available,
	.attach = uffd_attach,
	.detach = uffd_detach,
	.collect = uffd_collect,
	.own_attach = uffd_own_attach,
	.own_writes = uffd_own_writes,
	.child_reset = uffd_child_reset,
};
