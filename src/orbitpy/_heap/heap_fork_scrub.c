/*
 * heap_fork_scrub.c - a new orbit's interpreter keeps no pointers into arenas.
 *
 * Code run inside `with arena:` makes there whatever it allocates, also what
 * belongs to the interpreter rather than to the program's arena state: an
 * ABC check caches weak references to classes, a warning creates a module's
 * __warningregistry__ and fills linecache, a finalizer run by dropping a
 * reference appends to a module's list (subprocess._active), the type
 * attribute cache keeps attribute names, and objects made since main's last
 * collection sit in the collector's lists.  An orbit is a fork of main, so
 * its interpreter has all of that; but its view of an arena is main's as of
 * each call, and it has no view of an arena its call does not map, so
 * touching any of it faults (or reads what main since put there).
 *
 * So right after the fork, while the orbit still holds the fork's private
 * copy of the arenas (see csrc/orbit_sys.h), this cuts those links in the
 * orbit's interpreter.  Main is left as it is: its caches stay warm, none of
 * its threads can change anything meanwhile, and it does not wait for this.
 *   - ABC caches holding anything in an arena are emptied (they refill);
 *   - type attribute cache entries naming arena objects are emptied;
 *   - caches bound as module globals (every module's __warningregistry__,
 *     warnings.onceregistry, linecache.cache, re's and strptime's caches)
 *     lose the entries in an arena, and a __warningregistry__ made in an
 *     arena goes;
 *   - lists, dicts and sets bound as module globals whose tables are in an
 *     arena get their tables copied to the orbit's heap;
 *   - last, arena objects are unlinked from the collector's lists (main
 *     keeps them tracked; the orbit's collector never walks them).
 * Arena objects are released only where that is the point (a weak reference
 * unlinks itself from its referent's list when released); the others are
 * left to leak in the orbit, which owns no arena memory (frees there are
 * no-ops, heap_hooks.c).
 *
 * Not found (README, Limits): an ABC's registry after ABC.register() in a
 * block, strings interned in a block, other caches, and arena objects kept
 * deeper than a module global's own table.
 */
#include <string.h>

#include "heap.h"

static int in_arena(const void *p)
{
	return p && heap_area_of(p) != NULL;
}

/* ---- ABC caches */

static int set_reaches_arena(PyObject *s)
{
	PySetObject *so = (PySetObject *)s;

	if (!s || !PyAnySet_Check(s))
		return 0;
	if (in_arena(s) || in_arena(so->table) || in_arena(so->weakreflist))
		return 1;
	for (Py_ssize_t i = 0; i <= so->mask; i++)
		if (in_arena(so->table[i].key))
			return 1;
	return 0;
}

static void empty_cache(PyObject **slot)
{
	PyObject *set = *slot;

	if (!set_reaches_arena(set))
		return;
	/* Releasing the weak references unlinks them from their classes' lists
	 * of weak references (the point), also from a set made in an arena,
	 * which the ABC then forgets (left to leak): it makes a new one when it
	 * caches again. */
	if (PySet_Clear(set) < 0)
		PyErr_Clear();
	if (in_arena(set))
		*slot = NULL;
}

/* The type of an ABC's _abc_impl, from abc.ABC (NULL: none to scrub). */
static PyTypeObject *abc_impl_type(void)
{
	PyObject *mod = PyDict_GetItemString(PyImport_GetModuleDict(), "abc");
	PyObject *abc_cls, *impl;

	if (!mod || !PyModule_Check(mod))
		return NULL;
	abc_cls = PyDict_GetItemString(PyModule_GetDict(mod), "ABC");
	if (!abc_cls || !PyType_Check(abc_cls) || !((PyTypeObject *)abc_cls)->tp_dict)
		return NULL;
	impl = PyDict_GetItemString(((PyTypeObject *)abc_cls)->tp_dict, "_abc_impl");
	if (!impl || pyver_abc_data_layout_ok(Py_TYPE(impl)) < 0)
		return NULL;
	return Py_TYPE(impl);
}

static void scrub_class(PyTypeObject *tp, PyTypeObject *impl_type)
{
	PyObject *impl, **cache, **negative;

	if (!tp->tp_dict)
		return;
	impl = PyDict_GetItemString(tp->tp_dict, "_abc_impl");
	if (!impl || Py_TYPE(impl) != impl_type || in_arena(impl))
		return;
	pyver_abc_caches(impl, &cache, &negative);
	empty_cache(cache);
	empty_cache(negative);
}

/* Every class outside the arenas, from object down (type.__subclasses__,
 * a builtin: no Python code runs), each once: a few thousand, where a walk
 * of the collector's lists would visit every object. */
static int scrub_abc_caches(void)
{
	PyTypeObject *impl_type = abc_impl_type();
	PyObject *subclasses, *todo = NULL, *seen = NULL, *subs = NULL, *key;
	int rc = -1;

	if (!impl_type)
		return 0;
	subclasses = PyObject_GetAttrString((PyObject *)&PyType_Type, "__subclasses__");
	todo = PyList_New(0);
	seen = PySet_New(NULL);
	if (!subclasses || !todo || !seen || PyList_Append(todo, (PyObject *)&PyBaseObject_Type) < 0)
		goto out;
	while (PyList_GET_SIZE(todo)) {
		Py_ssize_t last = PyList_GET_SIZE(todo) - 1;
		PyObject *cls = Py_NewRef(PyList_GET_ITEM(todo, last));

		if (PyList_SetSlice(todo, last, last + 1, NULL) < 0) {
			Py_DECREF(cls);
			goto out;
		}
		scrub_class((PyTypeObject *)cls, impl_type);
		subs = PyObject_CallOneArg(subclasses, cls);
		Py_DECREF(cls);
		if (!subs || !PyList_Check(subs))
			goto out;
		for (Py_ssize_t i = 0; i < PyList_GET_SIZE(subs); i++) {
			PyObject *sub = PyList_GET_ITEM(subs, i);
			int known;

			if (in_arena(sub) || !PyType_Check(sub))
				continue;
			key = PyLong_FromVoidPtr(sub);
			known = key ? PySet_Contains(seen, key) : -1;
			if (known < 0 || (!known && (PySet_Add(seen, key) < 0 ||
						     PyList_Append(todo, sub) < 0))) {
				Py_XDECREF(key);
				goto out;
			}
			Py_DECREF(key);
		}
		Py_CLEAR(subs);
	}
	rc = 0;
out:
	Py_XDECREF(subs);
	Py_XDECREF(seen);
	Py_XDECREF(todo);
	Py_XDECREF(subclasses);
	return rc;
}

/* ---- module globals */

/* Give a heap list, dict or set bound as a module global a table on the
 * orbit's heap if its table is in an arena. */
static void rescue_table(PyObject *v)
{
	if (in_arena(v))
		return;
	if (PyList_Check(v)) {
		PyListObject *l = (PyListObject *)v;
		PyObject **items;

		if (!in_arena(l->ob_item) || l->allocated <= 0)
			return;
		items = PyMem_Malloc((size_t)l->allocated * sizeof(*items));
		if (!items)
			return;
		memcpy(items, l->ob_item, (size_t)Py_SIZE(l) * sizeof(*items));
		l->ob_item = items;	/* the old one leaks in the orbit */
	} else if (PyAnySet_Check(v)) {
		PySetObject *so = (PySetObject *)v;
		setentry *t;

		if (so->table == so->smalltable || !in_arena(so->table))
			return;
		t = PyMem_Malloc(((size_t)so->mask + 1) * sizeof(*t));
		if (!t)
			return;
		memcpy(t, so->table, ((size_t)so->mask + 1) * sizeof(*t));
		so->table = t;
	} else if (PyDict_Check(v)) {
		if (heap_rescue_dict(v) < 0)
			PyErr_Clear();
	}
}

static int tuple_in_arena(PyObject *t)
{
	if (!PyTuple_Check(t))
		return 0;
	for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(t); i++)
		if (in_arena(PyTuple_GET_ITEM(t, i)))
			return 1;
	return 0;
}

/* A heap dict used as a cache: drop the entries that are (or hold, one
 * level down in a tuple) arena objects. */
static void drop_arena_entries(PyObject *d)
{
	PyObject *key, *value, *gone;
	Py_ssize_t pos = 0;

	if (!d || !PyDict_Check(d) || in_arena(d))
		return;
	gone = PyList_New(0);
	if (!gone) {
		PyErr_Clear();
		return;
	}
	while (PyDict_Next(d, &pos, &key, &value))
		if (in_arena(key) || in_arena(value) || tuple_in_arena(key) ||
		    tuple_in_arena(value)) {
			/* Left to leak: see the top of this file. */
			Py_INCREF(key);
			Py_INCREF(value);
			if (PyList_Append(gone, key) < 0)
				PyErr_Clear();
		}
	for (Py_ssize_t i = 0; i < PyList_GET_SIZE(gone); i++)
		if (PyDict_DelItem(d, PyList_GET_ITEM(gone, i)) < 0)
			PyErr_Clear();
	Py_DECREF(gone);
	rescue_table(d);
}

/* Module globals that are interpreter caches, emptied of arena entries. */
static const char *const caches[][2] = {
	{ "linecache", "cache" },	/* source lines of warnings, tracebacks */
	{ "warnings", "onceregistry" },
	{ "re", "_cache" },
	{ "re", "_cache2" },		/* 3.12+ */
	{ "_strptime", "_regex_cache" },	/* datetime.strptime() */
};

static void scrub_module(PyObject *name, PyObject *globals)
{
	PyObject *key, *value, *reg;
	Py_ssize_t pos = 0;

	reg = PyDict_GetItemString(globals, "__warningregistry__");
	if (reg && in_arena(reg)) {
		Py_INCREF(reg);	/* left to leak */
		if (PyDict_DelItemString(globals, "__warningregistry__") < 0)
			PyErr_Clear();
	} else if (reg) {
		drop_arena_entries(reg);
	}
	for (size_t i = 0; i < sizeof(caches) / sizeof(caches[0]); i++)
		if (PyUnicode_CompareWithASCIIString(name, caches[i][0]) == 0)
			drop_arena_entries(PyDict_GetItemString(globals, caches[i][1]));
	while (PyDict_Next(globals, &pos, &key, &value))
		rescue_table(value);
}

static void scrub_modules(void)
{
	PyObject *modules = PyImport_GetModuleDict(), *name, *mod;
	Py_ssize_t pos = 0;

	while (PyDict_Next(modules, &pos, &name, &mod))
		if (PyModule_Check(mod) && !in_arena(mod) && PyUnicode_Check(name))
			scrub_module(name, PyModule_GetDict(mod));
}

/* ---- all of it */

static int is_arena_object(const void *op)
{
	return in_arena(op);
}

void heap_fork_scrub(void)
{
	struct heap_area *prev = heap_current();

	if (!heap_any_area())
		return;
	heap_set_current(NULL);
	if (scrub_abc_caches() < 0)
		PyErr_Clear();	/* best effort: the rest is still done */
	pyver_type_cache_forget(is_arena_object);
	scrub_modules();
	/* Last: what the steps above released has left the lists already. */
	pyver_gc_drop(is_arena_object);
	heap_set_current(prev);
}
