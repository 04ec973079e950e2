/*
 * ptrmap.h - a hash map from addresses to addresses (open addressing,
 * linear probing, backward-shift deletion), for the checker's side tables.
 */
#ifndef ORBITPY_PTRMAP_H
#define ORBITPY_PTRMAP_H

#include <stddef.h>
#include <stdint.h>

struct ptrmap {
	uintptr_t *keys;	/* 0 = empty slot */
	uintptr_t *vals;
	size_t cap;		/* power of two, or 0 */
	size_t len;
};

/* 1 and *val if present, else 0. */
int ptrmap_get(const struct ptrmap *m, uintptr_t key, uintptr_t *val);
/* 0, or -1 when out of memory.  key must not be 0. */
int ptrmap_put(struct ptrmap *m, uintptr_t key, uintptr_t val);
/* 1 if it was there. */
int ptrmap_del(struct ptrmap *m, uintptr_t key);
void ptrmap_free(struct ptrmap *m);

#endif
