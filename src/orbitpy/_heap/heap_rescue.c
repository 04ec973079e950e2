/*
 * heap_rescue.c - keep the interpreter's own tables out of arenas.
 *
 * A dict made outside the arena that grows while a thread is inside
 * `with arena:` gets its new key table from the arena (the allocator cannot
 * tell a table from an object).  For the interpreter's long-lived dicts that
 * is dangerous: an orbit reads them from its fork (module globals, builtins,
 * interned strings), but it sees arena memory as main has it now, where the
 * table may since have been freed and reused; and main would read unmapped
 * memory once the arena is closed.  So before each orbit fork and before an
 * arena is closed, every module's table is moved back to the heap.  At the
 * end of each `with` block only the tables the block most likely grew are
 * (its code's globals, builtins, sys.modules, interned strings): walking
 * every module costs microseconds, and a service enters a block per
 * request; until a fork or a close any other table is valid memory of
 * main's.
 */
#include <string.h>

#include "heap.h"

int heap_rescue_dict(PyObject *d)
{
	struct pyver_dict v;
	void *t;

	if (!d || !PyDict_Check(d) || heap_area_of(d))
		return 0;
	pyver_dict((PyDictObject *)d, &v);
	if (v.split || !heap_area_of(v.keys) || pyver_keys_refcnt(v.keys) != 1)
		return 0;
	t = PyObject_Malloc(v.keys_size);	/* no arena is current here */
	if (!t) {
		PyErr_NoMemory();
		return -1;
	}
	memcpy(t, v.keys, v.keys_size);
	((PyDictObject *)d)->ma_keys = t;
	PyObject_Free(v.keys);
	return 0;
}

static int rescue_tables(PyObject *globals, int every_module)
{
	struct heap_area *prev = heap_current();
	PyObject *modules = PyImport_GetModuleDict(), *key, *mod;
	Py_ssize_t pos = 0;
	int rc = 0;

	heap_set_current(NULL);
	if (heap_rescue_dict(modules) < 0 || heap_rescue_dict(pyver_interned_dict()) < 0 ||
	    heap_rescue_dict(PyEval_GetBuiltins()) < 0 || heap_rescue_dict(globals) < 0)
		rc = -1;
	while (!rc && every_module && PyDict_Next(modules, &pos, &key, &mod))
		if (PyModule_Check(mod) && heap_rescue_dict(PyModule_GetDict(mod)) < 0)
			rc = -1;
	heap_set_current(prev);
	return rc;
}

int heap_rescue(void)
{
	return rescue_tables(NULL, 1);
}

int heap_rescue_block_end(PyObject *globals)
{
	return rescue_tables(globals, 0);
}
