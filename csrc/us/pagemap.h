/*
 * pagemap.h - which pages of a range are present, written or private, read
 * from the kernel's page tables (/proc/self/pagemap and its PAGEMAP_SCAN
 * ioctl).  Shared by every dirty tracker and by the orbit's view.
 */
#ifndef ORBIT_PAGEMAP_H
#define ORBIT_PAGEMAP_H

#include <stddef.h>
#include <stdint.h>

/* Called once per run of consecutive matching pages; pages count from addr. */
typedef void (*page_run_cb)(void *ctx, size_t first_page, size_t npages);

/* The userspace backend's page size, which it reports through the seam
 * (orbit_sys->page_size): it assumes 4 KiB pages, as /proc/self/pagemap
 * counts them on x86-64 and on arm64 kernels built with 4 KiB pages. */
#define PM_PAGE_SIZE 4096UL
#define PM_PAGE_SHIFT 12

/*
 * PAGEMAP_SCAN over [addr, addr+len): report pages whose categories, after
 * XOR with `inverted`, contain all of `mask` and any of `anyof` (0: no
 * constraint).  `flags` are PM_SCAN_* (write-protect what matched).  Returns
 * 0, or -errno (-ENOTTY/-EINVAL when the kernel lacks the ioctl).
 */
int pm_scan(void *addr, size_t len, uint64_t flags, uint64_t inverted, uint64_t mask,
	    uint64_t anyof, page_run_cb cb, void *ctx);

/* Is PAGEMAP_SCAN available (Linux >= 6.7)? */
int pm_scan_available(void);

/*
 * Read /proc/self/pagemap (works on every kernel since 2.6.25): report present
 * or swapped pages; with `private_only`, only those that are anonymous
 * private (copy-on-write copies in a file mapping).
 */
int pagemap_runs(void *addr, size_t len, int private_only, page_run_cb cb, void *ctx);

#endif
