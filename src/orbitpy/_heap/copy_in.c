/*
 * copy_in.c - immutable values copied into an arena (see copy_in.h).  Each
 * is made through the allocator (never a free list) while the pass's arena is
 * current and strict, so that it lands in the arena or is not made at all.
 */
#include <string.h>

#include "copy_in.h"
#include "static_image.h"

static int copyable(PyObject *op, int depth)
{
	PyTypeObject *tp = Py_TYPE(op);

	if (tp == &PyUnicode_Type || tp == &PyBytes_Type || tp == &PyLong_Type ||
	    tp == &PyFloat_Type || tp == &PyComplex_Type || tp == &PyBool_Type)
		return 1;
	if (depth > 64)
		return 0;
	if (tp == &PyTuple_Type) {
		for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(op); i++) {
			PyObject *x = PyTuple_GET_ITEM(op, i);

			if (!chk_is_static(x) && !heap_area_of(x) && !copyable(x, depth + 1))
				return 0;
		}
		return 1;
	}
	if (tp == &PyFrozenSet_Type) {
		PySetObject *s = (PySetObject *)op;

		for (Py_ssize_t i = 0; i <= s->mask; i++) {
			PyObject *x = s->table[i].key;

			if (x && s->table[i].hash != -1 && !chk_is_static(x) && !heap_area_of(x) &&
			    !copyable(x, depth + 1))
				return 0;
		}
		return 1;
	}
	return 0;
}

/* A new reference to an arena copy of the immutable value op (copyable). */
static PyObject *copy_value(struct pass *ps, PyObject *op)
{
	PyTypeObject *tp = Py_TYPE(op);
	PyObject *c = NULL;
	uintptr_t v;

	if (chk_is_static(op) || heap_area_of(op))
		return Py_NewRef(op);
	if (ptrmap_get(&ps->copies, (uintptr_t)op, &v))
		return Py_NewRef((PyObject *)v);
	/* Made through the allocator (not free lists) while the arena is current. */
	if (tp == &PyUnicode_Type) {
		Py_ssize_t n = PyUnicode_GET_LENGTH(op);

		c = PyUnicode_New(n, PyUnicode_MAX_CHAR_VALUE(op));
		if (c) {
			memcpy(PyUnicode_DATA(c), PyUnicode_DATA(op), (size_t)n * PyUnicode_KIND(op));
			if (PyObject_Hash(c) == -1)	/* dict lookups expect it cached */
				Py_CLEAR(c);
		}
	} else if (tp == &PyBytes_Type) {
		c = PyBytes_FromStringAndSize(PyBytes_AS_STRING(op), PyBytes_GET_SIZE(op));
	} else if (tp == &PyLong_Type || tp == &PyBool_Type) {
		c = _PyLong_Copy((PyLongObject *)op);
	} else if (tp == &PyFloat_Type) {
		PyFloatObject *f = PyObject_Malloc(sizeof(PyFloatObject));

		if (f) {
			PyObject_Init((PyObject *)f, &PyFloat_Type);
			f->ob_fval = PyFloat_AS_DOUBLE(op);
		}
		c = (PyObject *)f;
	} else if (tp == &PyComplex_Type) {
		c = PyComplex_FromCComplex(((PyComplexObject *)op)->cval);
	} else if (tp == &PyTuple_Type) {
		Py_ssize_t n = PyTuple_GET_SIZE(op);
		PyTupleObject *t = PyObject_GC_NewVar(PyTupleObject, &PyTuple_Type, n);

		if (t) {
			memset(t->ob_item, 0, (size_t)n * sizeof(PyObject *));
			for (Py_ssize_t i = 0; i < n; i++) {
				PyObject *x = copy_value(ps, PyTuple_GET_ITEM(op, i));

				if (!x) {
					Py_DECREF(t);
					return NULL;
				}
				t->ob_item[i] = x;
			}
			PyObject_GC_Track(t);
		}
		c = (PyObject *)t;
	} else if (tp == &PyFrozenSet_Type) {
		PySetObject *s = (PySetObject *)op;
		PyObject *items = PyList_New(0);

		for (Py_ssize_t i = 0; items && i <= s->mask; i++) {
			PyObject *x = s->table[i].key, *xc;

			if (!x || s->table[i].hash == -1)	/* empty, or the dummy */
				continue;
			xc = copy_value(ps, x);
			if (!xc || PyList_Append(items, xc) < 0)
				Py_CLEAR(items);
			Py_XDECREF(xc);
		}
		c = items ? PyFrozenSet_New(items) : NULL;
		Py_XDECREF(items);
	}
	if (!c)
		return NULL;
	if (!heap_area_of(c) && !chk_is_static(c)) {	/* (b"", "x": static singletons) */
		Py_DECREF(c);
		PyErr_SetString(PyExc_RuntimeError, "orbitpy: a copy did not land in the arena");
		return NULL;
	}
	if (ptrmap_put(&ps->copies, (uintptr_t)op, (uintptr_t)c) < 0) {
		Py_DECREF(c);
		PyErr_NoMemory();
		return NULL;
	}
	ps->counts.copies++;
	ps->wrote = 1;
	return c;
}

int copy_in_possible(PyObject *op)
{
	return copyable(op, 0);
}

PyObject *copy_in(struct pass *ps, PyObject *op)
{
	struct heap_area *prev = heap_current();
	int was_strict;
	PyObject *c;

	heap_set_current(ps->ha);
	was_strict = heap_strict(1);	/* the copy is arena state: in the arena or not at all */
	c = copy_value(ps, op);
	heap_strict(was_strict);
	heap_set_current(prev);
	return c;
}
