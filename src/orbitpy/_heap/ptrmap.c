/* ptrmap.c - see ptrmap.h. */
#include <stdlib.h>
#include <string.h>

#include "ptrmap.h"

static size_t slot_of(uintptr_t key, size_t cap)
{
	uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ULL;	/* Fibonacci hashing */

	return (size_t)(h >> 20) & (cap - 1);
}

int ptrmap_get(const struct ptrmap *m, uintptr_t key, uintptr_t *val)
{
	if (!m->cap)
		return 0;
	for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == key) {
			if (val)
				*val = m->vals[i];
			return 1;
		}
		if (!m->keys[i])
			return 0;
	}
}

static int grow(struct ptrmap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 64;
	uintptr_t *keys = calloc(cap, sizeof(*keys)), *vals = calloc(cap, sizeof(*vals));
	struct ptrmap old = *m;

	if (!keys || !vals) {
		free(keys);
		free(vals);
		return -1;
	}
	m->keys = keys;
	m->vals = vals;
	m->cap = cap;
	m->len = 0;
	for (size_t i = 0; i < old.cap; i++)
		if (old.keys[i])
			ptrmap_put(m, old.keys[i], old.vals[i]);
	free(old.keys);
	free(old.vals);
	return 0;
}

int ptrmap_put(struct ptrmap *m, uintptr_t key, uintptr_t val)
{
	if ((m->len + 1) * 4 > m->cap * 3 && grow(m))
		return -1;
	for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == key) {
			m->vals[i] = val;
			return 0;
		}
		if (!m->keys[i]) {
			m->keys[i] = key;
			m->vals[i] = val;
			m->len++;
			return 0;
		}
	}
}

int ptrmap_del(struct ptrmap *m, uintptr_t key)
{
	size_t i, j, mask = m->cap - 1;

	if (!m->cap)
		return 0;
	for (i = slot_of(key, m->cap); m->keys[i] != key; i = (i + 1) & mask)
		if (!m->keys[i])
			return 0;
	/* Shift later members of the probe run back into the hole. */
	for (j = (i + 1) & mask; m->keys[j]; j = (j + 1) & mask) {
		size_t home = slot_of(m->keys[j], m->cap);

		if (((j - home) & mask) >= ((j - i) & mask)) {
			m->keys[i] = m->keys[j];
			m->vals[i] = m->vals[j];
			i = j;
		}
	}
	m->keys[i] = 0;
	m->vals[i] = 0;
	m->len--;
	return 1;
}

void ptrmap_free(struct ptrmap *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}
