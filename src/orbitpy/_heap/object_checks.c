/*
 * object_checks.c - the checks of one arena object or table, by type, and
 * of the references in it (see object_checks.h).
 *
 * Why each rule:
 *  - An arena object is in the orbit's snapshot: the orbit may follow it.
 *  - A static interpreter object (None, small ints, builtin types, ...) sits
 *    at the same address, unchanged, in every process.
 *  - A class defined in Python is the orbit's own copy from its fork: fine if
 *    it existed then and has not been changed since (version tag, else its
 *    state compared with the one registered at the fork, cache attributes
 *    aside: class_state.h), and its address cannot have been reused (the
 *    registry drops dead classes).  Otherwise the failure is one the caller
 *    mends by restarting the orbit (pass_fail_class).  A static type of an
 *    extension module is fine if the module was loaded before the fork
 *    (extension modules are never unloaded).
 *  - An instance is checked by its layout: the first base that is not a
 *    class defined in Python (a builtin below, or a C type of heap_types.c).
 *    A C type the checker does not know is refused, never guessed at.
 *  - An Enum member is a singleton made with its class: the orbit has it if
 *    it has the class.
 *  - An immutable value outside the arena (str, bytes, int, float, complex,
 *    tuples and frozensets of those) is copied into the arena (copy_in.c),
 *    and the reference moved to the copy.
 *  - A table (list items, dict keys, set table, bytearray bytes) that an
 *    arena object got from outside the arena (it grew outside `with`) is
 *    moved into the arena.
 *  - Anything else is a failure the caller reports.
 */
#include <string.h>

#include "class_registry.h"
#include "copy_in.h"
#include "heap_types.h"
#include "object_checks.h"
#include "static_image.h"

/* ------------------------------------------------------------ classes */

/* 0 if the orbit has class tp as main has it, 1 after recording why not. */
static int check_class(struct pass *ps, PyObject *owner, PyTypeObject *tp)
{
	uint64_t born;
	char why[300];

	if (chk_is_static(tp))
		return 0;
	if (!(tp->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
		if (!creg_known(tp, &born))
			return pass_fail(ps, owner, (PyObject *)tp,
					 "class %s is not part of the interpreter's static image "
					 "nor of an extension module the orbit knows", tp->tp_name);
		if (born > ps->epoch)
			return pass_fail_class(ps, owner, tp, "its module was loaded after the "
					       "orbit started");
	} else if (creg_changed(tp, ps->epoch, why, sizeof(why))) {
		return pass_fail_class(ps, owner, tp, why);
	}
	/* Checked objects use it: the pass looks at it again at its end. */
	if (creg_note_referenced(tp)) {
		PyErr_NoMemory();
		return -1;
	}
	return 0;
}

/* ------------------------------------------- services to heap_types.c */

int chk_in_area(struct pass *ps, const void *p)
{
	return marks_in(ps->m, p);
}

void chk_free_block(struct pass *ps, void *p)
{
	PyMem_Free(p);
	ps->wrote = 1;
}

/* --------------------------------------------------------- references */

/*
 * The reference in *slot, held by arena object owner: 0 if the orbit may
 * follow it (queueing arena objects not yet checked), 1 after recording a
 * failure, -1 on error.  `may_copy`: the slot may be pointed at a copy.
 */
static int check_ref(struct pass *ps, PyObject *owner, PyObject **slot, int may_copy)
{
	PyObject *t = *slot, *c;
	struct heap_area *ha;

	if (!t || chk_is_static(t))
		return 0;
	if (marks_in(ps->m, t)) {
		if (marks_checked(ps->m, t))
			return 0;
		return pass_push(ps, t);
	}
	if (PyType_Check(t))
		return check_class(ps, owner, (PyTypeObject *)t);
	ha = heap_area_of(t);
	if (ha)
		return pass_fail(ps, owner, t, "refers to a %s in another arena",
				 Py_TYPE(t)->tp_name);
	if (ht_is_enum_member(t))	/* a singleton the orbit has with its class */
		return check_class(ps, owner, Py_TYPE(t));
	if (!may_copy || !copy_in_possible(t))
		return pass_fail(ps, owner, t, "refers to a %s that is not in the arena (it was "
				 "made outside `with arena:`): make it inside the block, or "
				 "store arena.copy(value), a deep copy into the arena",
				 Py_TYPE(t)->tp_name);
	c = copy_in(ps, t);
	if (!c)
		return -1;
	*slot = c;
	pass_drop(ps, t);
	/* The copy may hold arena objects not checked yet (kept by reference). */
	return marks_in(ps->m, c) ? pass_push(ps, c) : 0;
}

/* ------------------------------------------------------------- tables */

static int own_table(struct pass *ps, PyObject *owner, void **slot, void *block, size_t nbytes,
		     PyMemAllocatorDomain domain, int may_move, int *fresh);

int chk_ref(struct pass *ps, PyObject *owner, PyObject **slot, int may_copy)
{
	return check_ref(ps, owner, slot, may_copy);
}

int chk_own_block(struct pass *ps, PyObject *owner, void **slot, size_t nbytes)
{
	int fresh;

	return own_table(ps, owner, slot, NULL, nbytes, PYMEM_DOMAIN_MEM, 1, &fresh);
}

/*
 * The table *slot (nbytes, allocated in `domain`) of arena object owner.
 * Moves it into the arena if it is outside and may_move; marks it as the
 * owner's.  *fresh is set when its entries must all be checked now.
 */
static int own_table(struct pass *ps, PyObject *owner, void **slot, void *block, size_t nbytes,
		     PyMemAllocatorDomain domain, int may_move, int *fresh)
{
	struct heap_marks *m = ps->m;
	void *t = block ? block : *slot;
	uintptr_t who;
	size_t g;

	*fresh = 0;
	if (!t || chk_is_static(t))
		return 0;
	if (!marks_in(m, t)) {
		void *n;

		if (!may_move || block)
			return pass_fail(ps, owner, NULL, "%s keeps its contents outside the arena",
					 Py_TYPE(owner)->tp_name);
		n = heap_alloc_in(ps->ha, nbytes);
		if (!n) {
			PyErr_NoMemory();
			return -1;
		}
		memcpy(n, t, nbytes);
		*slot = n;
		if (domain == PYMEM_DOMAIN_OBJ)
			PyObject_Free(t);
		else
			PyMem_Free(t);
		t = n;
		ps->counts.moves++;
		ps->wrote = 1;
	}
	g = marks_gran(m, t);
	if (marks_bit(m->buf, g) && ptrmap_get(&m->owner, (uintptr_t)t, &who) &&
	    who == (uintptr_t)owner)
		return 0;
	if (ptrmap_put(&m->owner, (uintptr_t)t, (uintptr_t)owner) < 0) {
		PyErr_NoMemory();
		return -1;
	}
	marks_bit_set(m->buf, g);
	if (marks_crosses_page(m, t, nbytes))
		marks_cover_set(m, t, nbytes, g);
	*fresh = 1;
	return 0;
}

/* Entries [*i0, *i1) of an array of n entries of esz bytes at a that
 * overlap [lo, hi); lo NULL means all. */
static void span(const char *a, size_t esz, Py_ssize_t n, const char *lo, const char *hi,
		 Py_ssize_t *i0, Py_ssize_t *i1)
{
	*i0 = 0;
	*i1 = n;
	if (!lo)
		return;
	if (lo > a)
		*i0 = (Py_ssize_t)((size_t)(lo - a) / esz);
	if (hi < a + (size_t)n * esz)
		*i1 = hi <= a ? 0 : (Py_ssize_t)(((size_t)(hi - a) + esz - 1) / esz);
	if (*i0 > n)
		*i0 = n;
}

static int check_array(struct pass *ps, PyObject *owner, PyObject **a, Py_ssize_t n,
		       const char *lo, const char *hi, int may_copy)
{
	Py_ssize_t i0, i1;
	int r, bad = 0;

	span((const char *)a, sizeof(PyObject *), n, lo, hi, &i0, &i1);
	for (Py_ssize_t i = i0; i < i1; i++) {
		r = check_ref(ps, owner, &a[i], may_copy);
		if (r < 0)
			return -1;
		bad |= r;
	}
	return bad;
}

/* ------------------------------------------------------------- per type */

static int check_dict(struct pass *ps, PyObject *op, const char *lo, const char *hi, int full)
{
	PyDictObject *d = (PyDictObject *)op;
	struct pyver_dict v;
	int fresh, r, bad = 0;

	pyver_dict(d, &v);
	if (v.split) {
		uint64_t kepoch;
		Py_ssize_t knentries;

		if (!creg_keys(v.keys, &kepoch, &knentries) || kepoch > ps->epoch)
			return pass_fail(ps, op, NULL, "dict shares its keys with a class the orbit "
					 "does not have");
		r = own_table(ps, op, (void **)&d->ma_values, v.values_block, 0,
			      PYMEM_DOMAIN_MEM, 0, &fresh);
		if (r)
			return r;
		for (Py_ssize_t i = knentries; i < v.nentries; i++)
			if (v.values[i])
				return pass_fail(ps, op, NULL, "dict uses keys its class gained "
						 "after the orbit started");
		return check_array(ps, op, v.values, v.nentries, lo, hi, 1);
	}
	r = own_table(ps, op, (void **)&d->ma_keys, NULL, v.keys_size, PYMEM_DOMAIN_OBJ,
		      pyver_keys_refcnt(v.keys) == 1, &fresh);
	if (r)
		return r;
	if (!fresh && !full && !lo)
		return 0;
	pyver_dict(d, &v);	/* it may have moved */
	{
		Py_ssize_t i0, i1;

		span(v.entries, v.entry_size, v.nentries, lo, hi, &i0, &i1);
		for (Py_ssize_t i = i0; i < i1; i++) {
			char *e = v.entries + (size_t)i * v.entry_size;

			r = check_ref(ps, op, (PyObject **)(e + v.key_off), 1);
			if (r < 0)
				return -1;
			bad |= r;
			r = check_ref(ps, op, (PyObject **)(e + v.value_off), 1);
			if (r < 0)
				return -1;
			bad |= r;
		}
	}
	return bad;
}

static int check_list(struct pass *ps, PyObject *op, const char *lo, const char *hi, int full)
{
	PyListObject *l = (PyListObject *)op;
	int fresh, r;

	r = own_table(ps, op, (void **)&l->ob_item, NULL, (size_t)l->allocated * sizeof(PyObject *),
		      PYMEM_DOMAIN_MEM, 1, &fresh);
	if (r)
		return r;
	if (!fresh && !full && !lo)
		return 0;
	return check_array(ps, op, l->ob_item, Py_SIZE(l), lo, hi, 1);
}

static int check_set(struct pass *ps, PyObject *op, const char *lo, const char *hi, int full)
{
	PySetObject *s = (PySetObject *)op;
	int fresh = 0, r, bad = 0;
	Py_ssize_t i0, i1;

	if (s->table != s->smalltable) {
		r = own_table(ps, op, (void **)&s->table, NULL,
			      (size_t)(s->mask + 1) * sizeof(setentry), PYMEM_DOMAIN_MEM, 1, &fresh);
		if (r)
			return r;
		if (!fresh && !full && !lo)
			return 0;
	}
	span((const char *)s->table, sizeof(setentry), s->mask + 1, lo, hi, &i0, &i1);
	for (Py_ssize_t i = i0; i < i1; i++) {
		setentry *e = &s->table[i];

		if (!e->key)	/* the dummy is static: check_ref passes it */
			continue;
		r = check_ref(ps, op, &e->key, 1);
		if (r < 0)
			return -1;
		bad |= r;
	}
	return bad;
}

static int check_bytearray(struct pass *ps, PyObject *op)
{
	PyByteArrayObject *b = (PyByteArrayObject *)op;
	char *old = b->ob_bytes;
	int fresh;
	int r = own_table(ps, op, (void **)&b->ob_bytes, NULL, (size_t)b->ob_alloc,
			  PYMEM_DOMAIN_OBJ, 1, &fresh);

	if (!r && b->ob_bytes != old)
		b->ob_start = b->ob_bytes + (b->ob_start - old);
	return r;
}

/*
 * Give an instance a plain (combined) dict of its own, in the arena.  It is
 * set through the class's __dict__ descriptor (on 3.13 that also marks the
 * inline values invalid, which PyObject_GenericSetDict does not), called
 * directly: a __setattr__ of the class is Python code (and may refuse, as a
 * frozen dataclass's does), and no Python code may run between a call's
 * check and its snapshot.  0, 1 after recording a failure, or -1.
 */
static int own_dict(struct pass *ps, PyObject *op)
{
	static PyObject *name;
	struct heap_area *prev;
	PyObject *descr, *d, *nd = NULL;
	int rc = -1, was_strict;

	if (!name && !(name = PyUnicode_InternFromString("__dict__")))
		return -1;
	descr = _PyType_Lookup(Py_TYPE(op), name);
	if (!descr || !Py_IS_TYPE(descr, &PyGetSetDescr_Type))
		return pass_fail(ps, op, NULL, "class %s defines its own __dict__ attribute",
				 Py_TYPE(op)->tp_name);
	prev = heap_current();
	heap_set_current(ps->ha);
	was_strict = heap_strict(1);	/* the new dict is arena state */
	d = PyObject_GenericGetDict(op, NULL);
	if (d) {
		nd = PyDict_New();
		if (nd && PyDict_Update(nd, d) == 0 &&
		    Py_TYPE(descr)->tp_descr_set(descr, op, nd) == 0)
			rc = 0;
	}
	heap_strict(was_strict);
	heap_set_current(prev);
	if (d)
		pass_drop(ps, d);	/* the old dict */
	Py_XDECREF(nd);
	return rc;
}

static int check_instance(struct pass *ps, PyObject *op)
{
	PyTypeObject *tp = Py_TYPE(op);
	PyObject *mro = tp->tp_mro;
	struct pyver_inst in;
	int r, bad = 0, fresh;

	/* __slots__: object members of every class in the MRO. */
	for (Py_ssize_t k = 0; mro && k < PyTuple_GET_SIZE(mro); k++) {
		PyTypeObject *t = (PyTypeObject *)PyTuple_GET_ITEM(mro, k);
		PyMemberDef *m;

		if (!ht_is_python_class(t))	/* C types: their walks */
			continue;
		for (m = t->tp_members; m && m->name; m++) {
			if (!pyver_member_is_object(m))
				continue;
			r = check_ref(ps, op, (PyObject **)((char *)op + m->offset), 1);
			if (r < 0)
				return -1;
			bad |= r;
		}
	}
	/*
	 * Attribute values indexed by the class's shared keys are read in the
	 * orbit through its fork-time copy of those keys, which may know fewer
	 * names and (CPython shrinks the keys' `usable` as instances are made)
	 * a larger values array than instances made since have.  So an arena
	 * instance gets a plain dict of its own, in the arena.
	 */
	pyver_inst(op, &in);
	if (in.values || (in.dict_slot && *in.dict_slot && PyDict_Check(*in.dict_slot) &&
			  ((PyDictObject *)*in.dict_slot)->ma_values)) {
		ps->wrote = 1;
		r = own_dict(ps, op);
		if (r)
			return r;
		pyver_inst(op, &in);
	}
	if (in.values) {
		r = own_table(ps, op, (void **)&in.values_block, in.values_block, 0,
			      PYMEM_DOMAIN_MEM, 0, &fresh);
		if (r)
			return r;
		r = check_array(ps, op, in.values, in.nvalues, NULL, NULL, 1);
		if (r < 0)
			return -1;
		bad |= r;
	}
	if (in.dict_slot && *in.dict_slot) {
		r = check_ref(ps, op, in.dict_slot, 0);
		if (r < 0)
			return -1;
		bad |= r;
	}
	return bad;
}

/* Is base (a layout base) a dict as far as its tables go? */
static inline int dict_like(PyTypeObject *base)
{
	enum ht_kind k = ht_kind_of(base);

	return base == &PyDict_Type || k == HT_DEFAULTDICT || k == HT_ODICT;
}

/* An upper bound of the bytes op spans from its block's start, without
 * asking the allocator (which takes a lock) unless it may exceed a page. */
static size_t extent(struct pass *ps, PyObject *op, char *blk)
{
	PyTypeObject *tp = Py_TYPE(op);
	size_t n = (size_t)tp->tp_basicsize + ((char *)op - blk);

	/* Asked too when the bound crosses a page: an object smaller than its
	 * type's size (a naive datetime) must not claim a page it does not reach. */
	if (tp->tp_itemsize || tp == &PyUnicode_Type || n > orbit_page_size() / 2 ||
	    marks_crosses_page(ps->m, blk, n))
		return orbit_usable_size(ps->ha->area, blk);
	return n;
}

static void mark(struct pass *ps, PyObject *op)
{
	struct heap_marks *m = ps->m;
	size_t g = marks_gran(m, op);
	char *blk = (char *)op - pyver_preheader(Py_TYPE(op));
	size_t n;

	marks_bit_set(m->obj, g);
	n = extent(ps, op, blk);
	if (marks_crosses_page(m, blk, n))
		marks_cover_set(m, blk, n, g);
}

int chk_object(struct pass *ps, PyObject *op, const char *lo, const char *hi, int full)
{
	PyTypeObject *tp, *base;
	int r, bad = 0;

	ps->counts.objects++;
	if (Py_REFCNT(op) <= 0) {	/* dead, parked on a free list */
		marks_bit_clr(ps->m->obj, marks_gran(ps->m, op));
		return 0;
	}
	tp = Py_TYPE(op);
	r = check_class(ps, op, tp);
	if (r)
		goto out;
	base = ht_layout_base(tp);
	if (base == &PyTuple_Type) {
		r = check_array(ps, op, ((PyTupleObject *)op)->ob_item, Py_SIZE(op), lo, hi, 1);
	} else if (base == &PyList_Type) {
		r = check_list(ps, op, NULL, NULL, full);
	} else if (dict_like(base)) {
		r = check_dict(ps, op, NULL, NULL, full);
		if (!r && base != &PyDict_Type && !ptrmap_get(&ps->walked, (uintptr_t)op, NULL)) {
			if (ptrmap_put(&ps->walked, (uintptr_t)op, 1) < 0) {
				PyErr_NoMemory();
				return -1;
			}
			r = ht_check(ps, ht_kind_of(base), op);
		}
	} else if (base == &PySet_Type || base == &PyFrozenSet_Type) {
		r = check_set(ps, op, NULL, NULL, full);
	} else if (base == &PyByteArray_Type) {
		r = check_bytearray(ps, op);
	} else if (base == &PyUnicode_Type || base == &PyBytes_Type || base == &PyLong_Type ||
		   base == &PyFloat_Type || base == &PyComplex_Type || base == &PyBaseObject_Type ||
		   base == &PyBool_Type) {
		r = 0;
	} else if (ht_kind_of(base) != HT_UNKNOWN) {
		/* A full walk (a deque's blocks) once per pass, however many of
		 * its pages changed. */
		if (ptrmap_get(&ps->walked, (uintptr_t)op, NULL))
			return 0;
		if (ptrmap_put(&ps->walked, (uintptr_t)op, 1) < 0) {
			PyErr_NoMemory();
			return -1;
		}
		r = ht_check(ps, ht_kind_of(base), op);
	} else {
		r = pass_fail(ps, op, (PyObject *)tp, "objects of type %s cannot be checked, so "
			      "they cannot be read by orbits from an arena%s", base->tp_name,
			      ht_advice(base));
	}
	if (r < 0)
		return -1;
	bad |= r;
	if (!bad && ht_is_python_class(tp)) {
		r = check_instance(ps, op);
		if (r < 0)
			return -1;
		bad |= r;
	}
	r = bad;
out:
	if (r < 0)
		return -1;
	if (r) {
		marks_bit_clr(ps->m->obj, marks_gran(ps->m, op));
		if (ptrmap_put(&ps->m->invalid, (uintptr_t)op, 1) < 0 ||
		    ptrmap_put(&ps->failed, (uintptr_t)op, 1) < 0) {
			PyErr_NoMemory();
			return -1;
		}
		return 0;
	}
	if (ps->m->invalid.len)
		ptrmap_del(&ps->m->invalid, (uintptr_t)op);
	mark(ps, op);
	return 0;
}

int chk_table(struct pass *ps, char *t, const char *lo, const char *hi)
{
	struct heap_marks *m = ps->m;
	uintptr_t who;
	PyObject *op;
	PyTypeObject *base;
	int stale = 1, r = 0;

	ps->counts.objects++;
	if (!ptrmap_get(&m->owner, (uintptr_t)t, &who))
		goto drop;
	op = (PyObject *)who;
	if (!marks_in(m, op) || !marks_bit(m->obj, marks_gran(m, op)) || Py_REFCNT(op) <= 0)
		goto drop;
	base = ht_layout_base(Py_TYPE(op));
	if (base == &PyList_Type && (char *)((PyListObject *)op)->ob_item == t) {
		stale = 0;
		r = check_list(ps, op, lo, hi, 0);
	} else if (dict_like(base)) {
		struct pyver_dict v;

		pyver_dict((PyDictObject *)op, &v);
		if ((char *)v.keys == t || (v.values_block && (char *)v.values_block == t)) {
			stale = 0;
			r = check_dict(ps, op, lo, hi, 0);
		}
		else if (ht_kind_of(base) == HT_ODICT)	/* a node or the node table */
			return chk_object(ps, op, NULL, NULL, 1);
	} else if ((base == &PySet_Type || base == &PyFrozenSet_Type) &&
		   (char *)((PySetObject *)op)->table == t) {
		stale = 0;
		r = check_set(ps, op, lo, hi, 0);
	} else if (base == &PyByteArray_Type && ((PyByteArrayObject *)op)->ob_bytes == t) {
		stale = 0;
	} else if (ht_kind_of(base) == HT_DEQUE) {
		/* One of its blocks (or a spare one): walk the deque again. */
		return chk_object(ps, op, NULL, NULL, 1);
	}
	if (stale && ht_is_python_class(Py_TYPE(op))) {
		struct pyver_inst in;

		pyver_inst(op, &in);
		if ((char *)in.values_block == t) {
			stale = 0;
			return chk_object(ps, op, NULL, NULL, 0);
		}
	}
	if (!stale) {
		if (r > 0) {	/* the owner no longer passes */
			marks_bit_clr(m->obj, marks_gran(m, op));
			if (ptrmap_put(&m->invalid, (uintptr_t)op, 1) < 0) {
				PyErr_NoMemory();
				return -1;
			}
		}
		return r < 0 ? -1 : 0;
	}
drop:
	marks_bit_clr(m->buf, marks_gran(m, t));
	ptrmap_del(&m->owner, (uintptr_t)t);
	return 0;
}

