/*
 * class_state.c - see class_state.h.
 *
 * The accept list.  What CPython 3.11, 3.12 and 3.13 and their standard
 * libraries write on a class lazily, after the class statement (checked in
 * their sources: copyreg, copy, pickle, abc/_abc, _py_abc, typing,
 * functools, dataclasses, enum, and typeobject.c):
 *  - copyreg._slotnames caches `__slotnames__` the first time an instance is
 *    pickled, copy.copy'd or deep-copied (object.__reduce_ex__ and
 *    object.__getstate__ ask for it): benign, the orbit computes the same
 *    list itself when it needs it.
 *  - reading `cls.__annotations__` of a class without annotations stores an
 *    empty dict in the class (type_get_annotations): benign while empty.
 *  - _py_abc (the pure-Python abc, used where the C _abc is missing) resets
 *    `_abc_negative_cache` and `_abc_negative_cache_version` in
 *    isinstance/issubclass: caches, benign.
 * Not lazy, so not accepted (a change there is a real change): the C _abc
 * keeps its caches inside `_abc_impl` (mutated in place, the class is not
 * written), `__abstractmethods__` is set when the class is made (or by an
 * explicit abc.update_abstractmethods); typing sets `__protocol_attrs__`,
 * `__callable_proto_members_only__` (3.12) and
 * `__non_callable_proto_members__` (3.13) when a protocol class is made or
 * decorated with @runtime_checkable; dataclasses, enum and
 * functools.total_ordering write the class only while decorating or making
 * it; functools.cached_property writes the instance's __dict__, never the
 * class.
 *
 * A snapshot keeps each value of the class dict in a way that its address
 * cannot be reused by another object while the snapshot lives (so that "same
 * address" means "same object"): values that refer to nothing (not
 * collector-tracked types: str, int, float, ...) by a strong reference;
 * values that may refer back to the class (functions through a __class__
 * cell, descriptors through their owner) by a weak reference where their
 * type allows one, so the snapshot never keeps a class alive.  Values of the
 * few types that allow neither (descriptors, property, classmethod,
 * staticmethod, tuples, lists, dicts) are known by address and type only: a
 * value of such a type rebound twice between two checks, the second time to
 * an object that happens to get the first one's address, would go unnoticed.
 */
#include <stdio.h>
#include <string.h>

#include "class_state.h"
#include "heap.h"

enum snap_kind { SNAP_STRONG, SNAP_WEAK, SNAP_ADDRESS };

struct snap_entry {
	PyObject *key;		/* strong */
	PyObject *ref;		/* the value (STRONG), a weakref to it (WEAK), NULL */
	const void *addr;	/* the value's address */
	PyTypeObject *type;	/* and its type */
	enum snap_kind kind;
};

struct class_snap {
	PyTypeObject *meta;	/* the class's class (the class keeps it alive) */
	PyObject *bases, *name, *qualname;	/* strong */
	Py_ssize_t n;
	struct snap_entry e[];
};

static int name_is(PyObject *name, const char *s)
{
	return PyUnicode_CheckExact(name) && PyUnicode_CompareWithASCIIString(name, s) == 0;
}

int chk_benign_attr(PyObject *name, PyObject *value)
{
	static const char *const caches[] = {
		"__slotnames__",
		"_abc_negative_cache",
		"_abc_negative_cache_version",
	};

	for (size_t i = 0; i < sizeof(caches) / sizeof(caches[0]); i++)
		if (name_is(name, caches[i]))
			return 1;
	return name_is(name, "__annotations__") && PyDict_CheckExact(value) &&
	       PyDict_GET_SIZE(value) == 0;
}

static PyObject *type_dict(PyTypeObject *tp)
{
	return tp->tp_dict;	/* heap types: their own dict on every version */
}

void class_snap_free(struct class_snap *s)
{
	if (!s)
		return;
	for (Py_ssize_t i = 0; i < s->n; i++) {
		Py_XDECREF(s->e[i].key);
		Py_XDECREF(s->e[i].ref);
	}
	Py_XDECREF(s->bases);
	Py_XDECREF(s->name);
	Py_XDECREF(s->qualname);
	PyMem_RawFree(s);
}

struct class_snap *class_snap_take(PyTypeObject *tp)
{
	PyHeapTypeObject *ht = (PyHeapTypeObject *)tp;
	PyObject *dict = type_dict(tp), *k, *v;
	struct heap_area *prev = heap_current();
	struct class_snap *s;
	Py_ssize_t pos = 0, n = 0;

	if (!(tp->tp_flags & Py_TPFLAGS_HEAPTYPE) || !dict || !PyDict_Check(dict))
		return NULL;	/* only heap types have names of their own */
	while (PyDict_Next(dict, &pos, &k, &v))
		n += !chk_benign_attr(k, v);
	s = PyMem_RawCalloc(1, sizeof(*s) + (size_t)n * sizeof(s->e[0]));
	if (!s)
		return NULL;
	heap_set_current(NULL);		/* weak references are main's, never arena state */
	s->meta = Py_TYPE(tp);
	s->bases = Py_XNewRef(tp->tp_bases);
	s->name = Py_XNewRef(ht->ht_name);
	s->qualname = Py_XNewRef(ht->ht_qualname);
	pos = 0;
	while (PyDict_Next(dict, &pos, &k, &v) && s->n < n) {
		struct snap_entry *e = &s->e[s->n];

		if (chk_benign_attr(k, v))
			continue;
		e->key = Py_NewRef(k);
		e->addr = v;
		e->type = Py_TYPE(v);
		if (!PyType_IS_GC(Py_TYPE(v))) {
			e->kind = SNAP_STRONG;
			e->ref = Py_NewRef(v);
		} else if (Py_TYPE(v)->tp_weaklistoffset &&
			   (e->ref = PyWeakref_NewRef(v, NULL)) != NULL) {
			e->kind = SNAP_WEAK;
		} else {
			PyErr_Clear();
			e->kind = SNAP_ADDRESS;
		}
		s->n++;
	}
	heap_set_current(prev);
	if (s->n != n) {	/* the dict changed under us: cannot happen, no code ran */
		class_snap_free(s);
		return NULL;
	}
	return s;
}

static int entry_holds(const struct snap_entry *e, PyObject *v)
{
	if (e->addr != v || e->type != Py_TYPE(v))
		return 0;
	/* A live weak reference to v: the object the snapshot saw is alive, so
	 * nothing else can be at its address. */
	return e->kind != SNAP_WEAK || ((PyWeakReference *)e->ref)->wr_object == v;
}

static int frame_same(const struct class_snap *s, PyTypeObject *tp)
{
	PyHeapTypeObject *ht = (PyHeapTypeObject *)tp;

	return s->meta == Py_TYPE(tp) && s->bases == tp->tp_bases && s->name == ht->ht_name &&
	       s->qualname == ht->ht_qualname;
}

int class_snap_same(const struct class_snap *s, PyTypeObject *tp)
{
	PyObject *dict = type_dict(tp), *k, *v;
	Py_ssize_t pos = 0, i = 0;

	if (!s || !(tp->tp_flags & Py_TPFLAGS_HEAPTYPE) || !dict || !PyDict_Check(dict) ||
	    !frame_same(s, tp))
		return 0;
	/* Rebinding keeps a key's place and benign keys are skipped on both
	 * sides, so an unchanged class lists the same entries in the same order;
	 * anything else (a key deleted and added again) counts as a change. */
	while (PyDict_Next(dict, &pos, &k, &v)) {
		if (chk_benign_attr(k, v))
			continue;
		if (i >= s->n || s->e[i].key != k || !entry_holds(&s->e[i], v))
			return 0;
		i++;
	}
	return i == s->n;
}

/* Append "what" to buf[*len..] as a comma-separated item. */
static void say(char *buf, size_t size, size_t *len, const char *what, PyObject *name)
{
	const char *n = name && PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
	int w;

	if (!n)
		PyErr_Clear();
	if (*len >= size)
		return;
	w = snprintf(buf + *len, size - *len, "%s%s%s%s%s", *len ? ", " : "", what,
		     n ? " '" : "", n ? n : "", n ? "'" : "");
	*len += w > 0 ? (size_t)w : 0;
}

void class_snap_diff(const struct class_snap *s, PyTypeObject *tp, char *buf, size_t size)
{
	PyHeapTypeObject *ht = (PyHeapTypeObject *)tp;
	PyObject *dict = type_dict(tp), *k, *v;
	size_t len = 0;
	Py_ssize_t pos;

	buf[0] = 0;
	if (!s || !(tp->tp_flags & Py_TPFLAGS_HEAPTYPE) || !dict || !PyDict_Check(dict)) {
		snprintf(buf, size, "what changed is not known");
		return;
	}
	if (s->meta != Py_TYPE(tp))
		say(buf, size, &len, "its metaclass", NULL);
	if (s->bases != tp->tp_bases)
		say(buf, size, &len, "its base classes", NULL);
	if (s->name != ht->ht_name || s->qualname != ht->ht_qualname)
		say(buf, size, &len, "its name", NULL);
	/* Quadratic, but only when a class changed and the orbit restarts. */
	pos = 0;
	while (PyDict_Next(dict, &pos, &k, &v)) {
		Py_ssize_t i;

		if (chk_benign_attr(k, v))
			continue;
		for (i = 0; i < s->n && s->e[i].key != k; i++)
			;
		if (i == s->n)
			say(buf, size, &len, "attribute added:", k);
		else if (!entry_holds(&s->e[i], v))
			say(buf, size, &len, "attribute rebound:", k);
	}
	for (Py_ssize_t i = 0; i < s->n; i++) {
		int found = 0;

		pos = 0;
		while (!found && PyDict_Next(dict, &pos, &k, &v))
			found = k == s->e[i].key && !chk_benign_attr(k, v);
		if (!found)
			say(buf, size, &len, "attribute deleted:", s->e[i].key);
	}
	if (!len)
		snprintf(buf, size, "its attributes were deleted and set again");
	if (len >= size && size > 4)
		memcpy(buf + size - 4, "...", 4);
}
