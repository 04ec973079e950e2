/*
 * reserve.c - the address range areas live in.
 *
 * Reserved once, up front (PROT_NONE, no memory committed), so that an area
 * created after an orbit started has an address that is free in the orbit
 * too: the orbit inherited the same reservation when it was forked.  The size
 * is ORBITPY_RESERVE bytes (suffixes K, M, G, T), 64 GiB by default.
 *
 * The kernel backend (ks/) asks for a writable reservation instead
 * (us_reserve_set_writable, before the first area): its areas are pieces of
 * this one mapping, in main and in every orbit, because orbit_update shares
 * pages only between mappings of one anon_vma tree (which the mapping gets
 * when it is made).  Released pieces are then emptied, not unmapped.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "us.h"

#define RES_MAX_FREE 4096

struct res_range {
	size_t off, len;
};

static char *res_base;
static size_t res_size;
static struct res_range res_free[RES_MAX_FREE];	/* sorted by offset */
static int res_nfree;
static int res_writable;
static pthread_mutex_t res_lock = PTHREAD_MUTEX_INITIALIZER;

/* Bytes in `s` (a number, then at most one of the suffixes K, M, G, T), or
 * `dflt` if unset; 0 if `s` is not such a size (a typo must not silently
 * give the default). */
static size_t parse_size(const char *s, size_t dflt)
{
	char *end;
	unsigned long long v;
	int shift = 0;

	if (!s || !*s)
		return dflt;
	if (*s == '-')
		return 0;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return 0;
	switch (*end) {
	case 'T': case 't': shift = 40; break;
	case 'G': case 'g': shift = 30; break;
	case 'M': case 'm': shift = 20; break;
	case 'K': case 'k': shift = 10; break;
	default: break;
	}
	if (shift)
		end++;
	if (*end || v > (SIZE_MAX >> shift))
		return 0;
	return (size_t)(v << shift);
}

static int res_prot(void)
{
	return res_writable ? PROT_READ | PROT_WRITE : PROT_NONE;
}

/* Before the first area; 0, or -EBUSY once the reservation exists. */
int us_reserve_set_writable(void)
{
	int err = 0;

	pthread_mutex_lock(&res_lock);
	if (res_base && !res_writable)
		err = -EBUSY;
	else
		res_writable = 1;
	pthread_mutex_unlock(&res_lock);
	return err;
}

int us_reserve_writable(void)
{
	return res_writable;
}

static int res_init_locked(void)
{
	void *p;

	if (res_base)
		return 0;
	res_size = parse_size(getenv("ORBITPY_RESERVE"), 64UL << 30);
	if (!res_size || res_size > SIZE_MAX - PM_PAGE_SIZE)
		return -EINVAL;
	res_size = (res_size + PM_PAGE_SIZE - 1) & ~(PM_PAGE_SIZE - 1);
	p = mmap(NULL, res_size, res_prot(), MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	if (res_writable) {
		/*
		 * Give the mapping its anon_vma now, while it is one piece:
		 * the areas split it (their snapshot modes, madvise), and a
		 * piece first written after a split gets an anon_vma of its
		 * own, the root of a tree of its own, when its neighbours have
		 * none.  orbit_update shares pages only within one tree, and
		 * the orbit's copy of the reservation is one mapping joined to
		 * the first area it is sent: a later area from another tree
		 * would fail with EINVAL.
		 */
		*(volatile char *)p = 0;
		madvise(p, PM_PAGE_SIZE, MADV_DONTNEED);
	}
	res_base = p;
	res_free[0].off = 0;
	res_free[0].len = res_size;
	res_nfree = 1;
	return 0;
}

/* The reservation's size; 0 if it could not be made (a bad ORBITPY_RESERVE,
 * or an address-space limit such as ulimit -v below it). */
size_t us_reserve_size(void)
{
	size_t size;

	pthread_mutex_lock(&res_lock);
	size = res_init_locked() ? 0 : res_size;
	pthread_mutex_unlock(&res_lock);
	return size;
}

int us_reserve_range(size_t size, char **addr)
{
	int err;

	pthread_mutex_lock(&res_lock);
	err = res_init_locked();
	if (!err) {
		err = -ENOMEM;
		for (int i = 0; i < res_nfree; i++) {
			if (res_free[i].len < size)
				continue;
			*addr = res_base + res_free[i].off;
			res_free[i].off += size;
			res_free[i].len -= size;
			if (!res_free[i].len) {
				for (int j = i; j + 1 < res_nfree; j++)
					res_free[j] = res_free[j + 1];
				res_nfree--;
			}
			err = 0;
			break;
		}
	}
	pthread_mutex_unlock(&res_lock);
	return err;
}

void us_reserve_release(char *addr, size_t size)
{
	size_t off = (size_t)(addr - res_base);
	int i;

	if (res_writable)
		madvise(addr, size, MADV_DONTNEED);	/* stays one mapping */
	else
		mmap(addr, size, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	pthread_mutex_lock(&res_lock);
	for (i = 0; i < res_nfree && res_free[i].off < off; i++)
		;
	if (i > 0 && res_free[i - 1].off + res_free[i - 1].len == off) {
		res_free[i - 1].len += size;
		if (i < res_nfree && off + size == res_free[i].off) {
			res_free[i - 1].len += res_free[i].len;
			for (int j = i; j + 1 < res_nfree; j++)
				res_free[j] = res_free[j + 1];
			res_nfree--;
		}
	} else if (i < res_nfree && off + size == res_free[i].off) {
		res_free[i].off = off;
		res_free[i].len += size;
	} else if (res_nfree < RES_MAX_FREE) {
		for (int j = res_nfree; j > i; j--)
			res_free[j] = res_free[j - 1];
		res_free[i].off = off;
		res_free[i].len = size;
		res_nfree++;
	}	/* else: the range is lost to fragmentation; still reserved */
	pthread_mutex_unlock(&res_lock);
}

void us_reserve_child_reset(void)
{
	/* Drop the child's copy-on-write share of main's areas at once: main
	 * then keeps writing its pages without copying them, and the orbit maps
	 * its own views here on demand (or, writable, gets main's pages from
	 * orbit_update: a new mapping without pages joins main's anon_vma). */
	if (res_base)
		mmap(res_base, res_size, res_prot(),
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	pthread_mutex_init(&res_lock, NULL);
}
