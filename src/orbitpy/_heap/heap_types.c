/*
 * heap_types.c - see heap_types.h.
 *
 * Why each type is safe when it passes:
 *  - deque: its items live in a chain of PyMem blocks; every block the
 *    orbit can walk to is in the arena (blocks the deque got outside it are
 *    moved in, like list tables), and every item passes the usual rules.
 *  - OrderedDict: a dict, plus its keys again in a linked list of PyMem
 *    nodes and a PyMem table of node pointers: every node and the table in
 *    the arena (moved in if made outside it), every key checked.
 *  - defaultdict: a dict (checked as one) plus default_factory, a reference
 *    like any other (a builtin type or a class the orbit has, typically).
 *  - date, timedelta: fixed-size values with no pointers.
 *  - datetime, time: the same plus a tzinfo reference: None, timezone.utc
 *    (a singleton of the module, which the orbit has) or an arena object.
 *  - timezone: an offset (timedelta) and a name (str or NULL).
 *  - Decimal: its digits are inline, or a PyMem block that must be in the
 *    arena (a Decimal made inside `with arena:` has them there).
 */
#include "heap_types.h"
#include "pass.h"
#include "ptrmap.h"

#include <datetime.h>	/* after Python.h */

static destructor python_dealloc;	/* tp_dealloc of every Python class */
static PyTypeObject *t_deque, *t_defaultdict, *t_decimal, *t_timezone, *t_enummeta;
/* PyDateTimeAPI (datetime.h): set once the module is imported. */
static PyObject *utc;

int ht_is_python_class(PyTypeObject *tp)
{
	return (tp->tp_flags & Py_TPFLAGS_HEAPTYPE) && python_dealloc &&
	       tp->tp_dealloc == python_dealloc;
}

PyTypeObject *ht_layout_base(PyTypeObject *tp)
{
	while (ht_is_python_class(tp) && tp->tp_base)
		tp = tp->tp_base;
	return tp;
}

/* module.name if the module is imported and it is a type named `want`,
 * else NULL.  New reference. */
static PyTypeObject *any_type(const char *module, const char *name, const char *want)
{
	PyObject *mod, *name_obj = PyUnicode_FromString(module), *t = NULL;

	if (!name_obj)
		return NULL;
	mod = PyImport_GetModule(name_obj);
	Py_DECREF(name_obj);
	if (mod) {
		t = PyObject_GetAttrString(mod, name);
		Py_DECREF(mod);
	}
	PyErr_Clear();
	if (t && (!PyType_Check(t) || strcmp(((PyTypeObject *)t)->tp_name, want)))
		Py_CLEAR(t);
	return (PyTypeObject *)t;
}

/* The same, for a C type (a Python class standing in for it is refused:
 * its instances are not laid out as the C type's). */
static PyTypeObject *c_type(const char *module, const char *name, const char *want)
{
	PyTypeObject *t = any_type(module, name, want);

	if (t && ht_is_python_class(t))
		Py_CLEAR(t);
	return t;
}

int ht_refresh(void)
{
	if (!t_enummeta)
		t_enummeta = any_type("enum", "EnumType", "EnumType");
	/* Every class a `class` statement makes has the same tp_dealloc: take
	 * it from one that exists (orbitpy imports enum), rather than make a
	 * class while the classes of an orbit fork are being registered. */
	if (!python_dealloc && t_enummeta && (t_enummeta->tp_flags & Py_TPFLAGS_HEAPTYPE) &&
	    t_enummeta->tp_base == &PyType_Type)
		python_dealloc = t_enummeta->tp_dealloc;
	/* Types stay referenced: their addresses must not be reused. */
	if (!t_deque) {
		t_deque = c_type("_collections", "deque", "collections.deque");
		if (t_deque && !pyver_deque_layout_ok(t_deque))
			Py_CLEAR(t_deque);
	}
	if (!t_defaultdict) {
		t_defaultdict = c_type("_collections", "defaultdict", "collections.defaultdict");
		if (t_defaultdict && (t_defaultdict->tp_base != &PyDict_Type ||
				      !pyver_defaultdict_layout_ok(t_defaultdict)))
			Py_CLEAR(t_defaultdict);
	}
	if (!t_decimal) {
		t_decimal = c_type("_decimal", "Decimal", "decimal.Decimal");
		if (t_decimal && !pyver_decimal_layout_ok(t_decimal))
			Py_CLEAR(t_decimal);
	}
	if (!PyDateTimeAPI) {
		PyObject *name = PyUnicode_FromString("_datetime"), *mod;

		mod = name ? PyImport_GetModule(name) : NULL;
		Py_XDECREF(name);
		if (mod) {
			PyDateTimeAPI = PyCapsule_Import(PyDateTime_CAPSULE_NAME, 0);
			Py_DECREF(mod);
		}
		PyErr_Clear();
		if (PyDateTimeAPI) {
			utc = PyDateTimeAPI->TimeZone_UTC;
			t_timezone = Py_TYPE(utc);
			if (!pyver_timezone_layout_ok(t_timezone))
				t_timezone = NULL;
		}
	}
	return 0;
}

enum ht_kind ht_kind_of(PyTypeObject *base)
{
	if (!base)
		return HT_UNKNOWN;
	if (base == t_deque)
		return HT_DEQUE;
	if (base == t_defaultdict)
		return HT_DEFAULTDICT;
	if (base == &PyODict_Type && pyver_odict_layout_ok(base))
		return HT_ODICT;
	if (base == t_decimal)
		return HT_DECIMAL;
	if (PyDateTimeAPI) {
		if (base == PyDateTimeAPI->DateType)
			return HT_DATE;
		if (base == PyDateTimeAPI->DateTimeType)
			return HT_DATETIME;
		if (base == PyDateTimeAPI->TimeType)
			return HT_TIME;
		if (base == PyDateTimeAPI->DeltaType)
			return HT_TIMEDELTA;
		if (base == PyDateTimeAPI->TZInfoType)
			return HT_TZINFO;
		if (base == t_timezone)
			return HT_TIMEZONE;
	}
	return HT_UNKNOWN;
}

const char *ht_advice(PyTypeObject *base)
{
	const char *n = base->tp_name;

	if (!strcmp(n, "zoneinfo.ZoneInfo"))
		return "; use datetime.timezone instead (timezone.utc or a fixed offset made "
		       "inside `with arena:`), or store the zone's key and convert in the orbit";
	if (!strcmp(n, "decimal.Decimal"))
		return "; store str(value) instead and make the Decimal in the orbit";
	if (!strncmp(n, "datetime.", 9))
		return "; store a timestamp (float) or an ISO string instead";
	if (!strcmp(n, "array.array"))
		return "; use bytes, a list, or arena.buffer() instead";
	return "; store its data as builtin values (str, int, float, tuple, list, dict, set) "
	       "or instances of classes defined in Python instead";
}

int ht_is_enum_member(PyObject *op)
{
	static PyObject *key;
	PyTypeObject *tp = Py_TYPE(op);
	PyObject *members, *k, *v;
	Py_ssize_t pos = 0;

	if (!t_enummeta || !ht_is_python_class(tp) || !PyType_IsSubtype(Py_TYPE(tp), t_enummeta) ||
	    !tp->tp_dict)
		return 0;
	if (!key && !(key = PyUnicode_InternFromString("_member_map_")))
		goto no;
	/* A str key: the lookup runs no Python code. */
	members = PyDict_GetItemWithError(tp->tp_dict, key);
	if (!members || !PyDict_CheckExact(members))
		goto no;
	while (PyDict_Next(members, &pos, &k, &v))
		if (v == op)
			return 1;
no:
	PyErr_Clear();
	return 0;
}

/* ------------------------------------------------------------- walks */

static int check_deque(struct pass *ps, PyObject *op)
{
	struct pyver_deque d;
	struct pyver_deque_block **slot, *b = NULL;
	Py_ssize_t nblocks, max;
	int r, bad = 0;

	pyver_deque(op, &d);
	/* Spare blocks are reused by appends, in the orbit too: keep only
	 * those in the arena (the others are a cache main can do without). */
	for (Py_ssize_t i = 0; i < *d.nfree && i < 16;) {
		if (chk_in_area(ps, d.freeblocks[i])) {
			i++;
			continue;
		}
		chk_free_block(ps, d.freeblocks[i]);
		d.freeblocks[i] = d.freeblocks[--*d.nfree];
	}
	max = d.len / PYVER_DEQUE_BLOCKLEN + 2;
	for (nblocks = 0;; nblocks++) {
		struct pyver_deque_block *old;
		Py_ssize_t lo, hi;

		slot = nblocks ? &b->right : d.leftblock;
		old = *slot;
		if (!old || nblocks >= max)
			return pass_fail(ps, op, NULL, "deque's blocks are not linked as expected");
		r = chk_own_block(ps, op, (void **)slot, sizeof(*old));
		if (r)
			return r;
		b = *slot;
		if (b != old) {	/* moved into the arena: relink it */
			/* (The end blocks' outer links are left uninitialized.) */
			if (*d.rightblock == old)
				*d.rightblock = b;
			else
				b->right->left = b;
		}
		lo = b == *d.leftblock ? d.leftindex : 0;
		hi = b == *d.rightblock ? d.rightindex + 1 : PYVER_DEQUE_BLOCKLEN;
		if (lo < 0 || hi > PYVER_DEQUE_BLOCKLEN)
			return pass_fail(ps, op, NULL, "deque's indices are not as expected");
		for (Py_ssize_t i = lo; i < hi; i++) {
			r = chk_ref(ps, op, &b->items[i], 1);
			if (r < 0)
				return -1;
			bad |= r;
		}
		if (b == *d.rightblock)
			break;
	}
	return bad;
}

/* Fix the node table after nodes moved (`moved`: old -> new), then own it. */
static int odict_table(struct pass *ps, PyObject *op, struct pyver_odict *od,
		       struct ptrmap *moved)
{
	struct pyver_odict_node **t = *od->fast_nodes;
	uintptr_t v;
	int r;

	if (!t)
		return 0;
	for (Py_ssize_t i = 0; moved->len && i < od->fast_nodes_size; i++)
		if (t[i] && ptrmap_get(moved, (uintptr_t)t[i], &v))
			t[i] = (struct pyver_odict_node *)v;
	r = chk_own_block(ps, op, (void **)od->fast_nodes,
			  (size_t)od->fast_nodes_size * sizeof(*t));
	if (r)
		return r;
	t = *od->fast_nodes;
	for (Py_ssize_t i = 0; i < od->fast_nodes_size; i++)
		if (t[i] && !chk_in_area(ps, t[i]))
			return pass_fail(ps, op, NULL, "OrderedDict's node table refers to a node "
					 "outside the arena");
	return 0;
}

static int check_odict(struct pass *ps, PyObject *op)
{
	struct pyver_odict od;
	struct pyver_odict_node **slot, *n, *prev = NULL;
	struct ptrmap moved = { 0 };
	Py_ssize_t count = 0, max = PyDict_GET_SIZE(op) + 1;
	int r = 0, bad = 0;

	pyver_odict(op, &od);
	/* The nodes in order.  A node moved into the arena is relinked here and
	 * in the node table (odict_table) before anything can return. */
	for (slot = od.first; (n = *slot); slot = &n->next) {
		struct pyver_odict_node *old = n;

		if (++count > max || n->prev != prev) {
			r = pass_fail(ps, op, NULL, "OrderedDict's nodes are not linked as expected");
			break;
		}
		r = chk_own_block(ps, op, (void **)slot, sizeof(*n));
		if (r)
			break;
		n = *slot;
		if (n != old) {
			if (n->next)
				n->next->prev = n;
			else
				*od.last = n;
			if (ptrmap_put(&moved, (uintptr_t)old, (uintptr_t)n) < 0) {
				PyErr_NoMemory();
				r = -1;
				break;
			}
		}
		r = chk_ref(ps, op, &n->key, 1);
		if (r < 0)
			break;
		bad |= r;
		r = 0;
		prev = n;
	}
	if (!r && *od.last != prev)
		r = pass_fail(ps, op, NULL, "OrderedDict's nodes are not linked as expected");
	{
		int rt = odict_table(ps, op, &od, &moved);

		ptrmap_free(&moved);
		if (r < 0 || rt < 0)
			return -1;
		bad |= r | rt;
	}
	r = chk_ref(ps, op, od.inst_dict, 0);
	return r < 0 ? -1 : (bad | r);
}

static int check_tzinfo(struct pass *ps, PyObject *op, PyObject **slot)
{
	PyObject *tz = *slot;

	if (tz == Py_None || tz == utc)
		return 0;
	if (!chk_in_area(ps, tz))
		return pass_fail(ps, op, tz, "refers to a tzinfo (%s) that is not in the arena; use "
				 "datetime.timezone.utc, or make the timezone inside `with arena:` "
				 "(or store arena.copy(value))", Py_TYPE(tz)->tp_name);
	return chk_ref(ps, op, slot, 0);
}

static int check_decimal(struct pass *ps, PyObject *op)
{
	size_t n;
	int inl;
	char *digits = pyver_decimal_digits(op, &n, &inl);

	if (inl || (n && chk_in_area(ps, digits) && chk_in_area(ps, digits + n - 1)))
		return 0;
	return pass_fail(ps, op, NULL, "Decimal keeps its digits outside the arena (it was made "
			 "outside `with arena:`): make it inside the block, or store "
			 "arena.copy(value) or str(value)");
}

int ht_check(struct pass *ps, enum ht_kind kind, PyObject *op)
{
	int r;

	switch (kind) {
	case HT_DEQUE:
		return check_deque(ps, op);
	case HT_ODICT:	/* the dict part is checked as a dict */
		return check_odict(ps, op);
	case HT_DEFAULTDICT:	/* the dict part is checked as a dict */
		return chk_ref(ps, op, pyver_defaultdict_factory(op), 0);
	case HT_DATE:
	case HT_TIMEDELTA:
	case HT_TZINFO:
		return 0;
	case HT_DATETIME:
		if (!_PyDateTime_HAS_TZINFO(op))
			return 0;
		return check_tzinfo(ps, op, &((PyDateTime_DateTime *)op)->tzinfo);
	case HT_TIME:
		if (!_PyDateTime_HAS_TZINFO(op))
			return 0;
		return check_tzinfo(ps, op, &((PyDateTime_Time *)op)->tzinfo);
	case HT_TIMEZONE:
		r = chk_ref(ps, op, pyver_timezone_offset(op), 0);
		if (r)
			return r;
		return chk_ref(ps, op, pyver_timezone_name(op), 1);
	case HT_DECIMAL:
		return check_decimal(ps, op);
	case HT_UNKNOWN:
		break;
	}
	return pass_fail(ps, op, (PyObject *)Py_TYPE(op), "objects of type %s cannot be checked",
			 Py_TYPE(op)->tp_name);
}

int ht_traverse(PyObject *op, visitproc visit, void *arg)
{
	switch (ht_kind_of(ht_layout_base(Py_TYPE(op)))) {
	case HT_DATETIME:
		if (_PyDateTime_HAS_TZINFO(op))
			Py_VISIT(((PyDateTime_DateTime *)op)->tzinfo);
		break;
	case HT_TIME:
		if (_PyDateTime_HAS_TZINFO(op))
			Py_VISIT(((PyDateTime_Time *)op)->tzinfo);
		break;
	case HT_TIMEZONE:
		Py_VISIT(*pyver_timezone_offset(op));
		Py_VISIT(*pyver_timezone_name(op));
		break;
	default:	/* collected types: their tp_traverse visits it all */
		break;
	}
	return 0;
}
