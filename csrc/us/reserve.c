/*
 * reserve.c - the address range areas live in.
 *
 * Reserved once, up front (PROT_NONE, no memory committed), so that an area
 * created after an orbit started has an address that is free in the orbit
 * too: the orbit inherited the same reservation when it was forked.  The size
 * is ORBITPY_RESERVE bytes (suffixes K, M, G, T), 64 GiB by default.
 */
#include <errno.h>
#include <pthread.h>
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
static pthread_mutex_t res_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t parse_size(const char *s, size_t dflt)
{
	char *end;
	unsigned long long v;

	if (!s || !*s)
		return dflt;
	v = strtoull(s, &end, 0);
	switch (*end) {
	case 'T': case 't': v <<= 10; /* fall through */
	case 'G': case 'g': v <<= 10; /* fall through */
	case 'M': case 'm': v <<= 10; /* fall through */
	case 'K': case 'k': v <<= 10; break;
	default: break;
	}
	return v ? (size_t)v : dflt;
}

static int res_init_locked(void)
{
	void *p;

	if (res_base)
		return 0;
	res_size = parse_size(getenv("ORBITPY_RESERVE"), 64UL << 30);
	res_size = (res_size + PM_PAGE_SIZE - 1) & ~(PM_PAGE_SIZE - 1);
	p = mmap(NULL, res_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	res_base = p;
	res_free[0].off = 0;
	res_free[0].len = res_size;
	res_nfree = 1;
	return 0;
}

size_t us_reserve_size(void)
{
	pthread_mutex_lock(&res_lock);
	res_init_locked();
	pthread_mutex_unlock(&res_lock);
	return res_size;
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

	mmap(addr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
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
	 * its own views here on demand. */
	if (res_base)
		mmap(res_base, res_size, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	pthread_mutex_init(&res_lock, NULL);
}
