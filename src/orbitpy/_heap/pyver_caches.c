/*
 * pyver_caches.c - interpreter-wide caches of CPython 3.11, 3.12 and 3.13
 * that code run inside `with arena:` can fill with arena objects, and that
 * a new orbit empties of them (heap_fork_scrub.c).
 *
 * The type attribute cache holds a strong reference to the attribute name
 * of each entry (a str, maybe made in an arena) and a borrowed one to the
 * value found; an entry replaced later releases the old name, so an orbit
 * whose call maps no arena would fault on it.
 *
 * An ABC keeps its caches in an _abc._abc_data, a struct private to
 * Modules/_abc.c; it is mirrored here, and a type whose instance size
 * differs from the mirror's is refused, not misread.
 */
#include "pyver_internal.h"

static struct type_cache *type_cache(void)
{
	PyInterpreterState *interp = PyInterpreterState_Get();

#if PY_VERSION_HEX >= 0x030C0000
	return &interp->types.type_cache;
#else
	return &interp->type_cache;
#endif
}

void pyver_type_cache_forget(int (*pred)(const void *p))
{
	struct type_cache *cache = type_cache();

	for (size_t i = 0; i < (size_t)1 << MCACHE_SIZE_EXP; i++) {
		struct type_cache_entry *e = &cache->hashtable[i];

		if ((!e->name || !pred(e->name)) && (!e->value || !pred(e->value)))
			continue;
		/* As CPython empties an entry, but the old name is left alone:
		 * releasing it would run its deallocator on arena memory. */
		e->version = 0;
		e->name = Py_NewRef(Py_None);
		e->value = NULL;
	}
}

struct abc_data_mirror {
	PyObject_HEAD
	PyObject *registry;
	PyObject *cache;
	PyObject *negative_cache;
	unsigned long long negative_cache_version;
};

int pyver_abc_data_layout_ok(PyTypeObject *tp)
{
	return tp->tp_basicsize == (Py_ssize_t)sizeof(struct abc_data_mirror) ? 0 : -1;
}

void pyver_abc_caches(PyObject *impl, PyObject ***cache, PyObject ***negative)
{
	struct abc_data_mirror *m = (struct abc_data_mirror *)impl;

	*cache = &m->cache;
	*negative = &m->negative_cache;
}
