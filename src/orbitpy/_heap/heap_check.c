/*
 * heap_check.c - see heap_check.h.
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
 *    mends by restarting the orbit (fail_class).  A static type of an
 *    extension module is fine if the module was loaded before the fork
 *    (extension modules are never unloaded).
 *  - An instance is checked by its layout: the first base that is not a
 *    class defined in Python (a builtin below, or a C type of heap_types.c).
 *    A C type the checker does not know is refused, never guessed at.
 *  - An Enum member is a singleton made with its class: the orbit has it if
 *    it has the class.
 *  - An immutable value outside the arena (str, bytes, int, float, complex,
 *    tuples and frozensets of those) is copied into the arena, and the
 *    reference moved to the copy.
 *  - A table (list items, dict keys, set table, bytearray bytes) that an
 *    arena object got from outside the arena (it grew outside `with`) is
 *    moved into the arena.
 *  - Anything else is a failure the caller reports.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "class_state.h"
#include "heap_check.h"
#include "heap_types.h"
#include "ptrmap.h"

#define GRAN_SHIFT 4
#define PAGE_SHIFT 12
#define PAGE 4096

struct chk_area {
	char *base;
	size_t size, npages;
	uint64_t *obj;		/* checked objects, by address */
	uint64_t *buf;		/* checked tables, by block */
	uint32_t *cover;	/* per page: 1 + granule of the checked object or
				 * table that starts before it and reaches into it */
	struct ptrmap owner;	/* table block -> object it belongs to */
	struct ptrmap invalid;	/* objects whose last check failed */
};

struct class_snap;

/* A class alive when some orbit was forked. */
struct treg {
	PyTypeObject *tp;
	unsigned int tag;	/* version tag when registered, or of a state
				 * found equivalent to it since */
	uint64_t epoch;		/* orbits forked at or after this have it */
	void *keys;		/* its shared keys then */
	Py_ssize_t nentries;	/* entries they had (they only grow) */
	int referenced;		/* on the `referenced` list */
	struct class_snap *snap;	/* its own state at `epoch`, or NULL */
	uint64_t born;		/* the epoch it was first registered at */
	uint64_t span;		/* the newest epoch of a class in its MRO when
				 * `tag` was last verified (UINT64_MAX: not yet) */
	char change[160];	/* what changed at `epoch` (for messages) */
};

static struct ptrmap types;	/* PyTypeObject * -> struct treg * */
static struct ptrmap keys_of;	/* shared keys -> struct treg * */
static struct treg **referenced;	/* classes checked objects refer to */
static size_t nreferenced, referenced_cap;
static uint64_t epoch_now;
static char *static_lo, *static_hi;
static struct chk_stats stats;

/* One chk_prepare. */
struct pass {
	struct heap_area *ha;
	struct chk_area *ca;
	uint64_t epoch;
	PyObject *failures;
	struct ptrmap copies;	/* outside value -> its arena copy, this pass */
	PyObject **stack;
	size_t nstack, stack_cap;
	size_t *pages;
	size_t npages, pages_cap;
	int oom;
	struct ptrmap failed;	/* objects that failed in this pass */
	int wrote;		/* the pass wrote the arena (copies, moves, dicts) */
	PyObject *dropped;	/* references given up, released after the call */
	struct ptrmap seen;	/* chk_reaches: objects reached */
	struct ptrmap walked;	/* C-type walks done this pass (deque, ...) */
};

/* ---------------------------------------------------------------- bits */

static inline size_t gran(const struct chk_area *ca, const void *p)
{
	return (size_t)((const char *)p - ca->base) >> GRAN_SHIFT;
}

static inline int bit_get(const uint64_t *m, size_t g)
{
	return (int)((m[g / 64] >> (g % 64)) & 1);
}

static inline void bit_set(uint64_t *m, size_t g)
{
	m[g / 64] |= 1ULL << (g % 64);
}

static inline void bit_clr(uint64_t *m, size_t g)
{
	m[g / 64] &= ~(1ULL << (g % 64));
}

static inline int in_area(const struct chk_area *ca, const void *p)
{
	return (const char *)p >= ca->base && (const char *)p < ca->base + ca->size;
}

int chk_is_static(const void *op)
{
	return (const char *)op >= static_lo && (const char *)op < static_hi;
}

/* The interpreter's static objects live in the image holding None. */
static void find_static_range(void)
{
	Dl_info info;
	char line[4096], path[4096];
	FILE *f;

	if (!dladdr((void *)Py_None, &info) || !info.dli_fname)
		return;
	if (!realpath(info.dli_fname, path))
		snprintf(path, sizeof(path), "%s", info.dli_fname);
	f = fopen("/proc/self/maps", "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char *name = strchr(line, '/');

		if (!name || sscanf(line, "%lx-%lx", &lo, &hi) != 2)
			continue;
		name[strcspn(name, "\n")] = 0;
		if (strcmp(name, path))
			continue;
		if (!static_lo || (char *)lo < static_lo)
			static_lo = (char *)lo;
		if ((char *)hi > static_hi)
			static_hi = (char *)hi;
	}
	fclose(f);
}

int chk_area_init(struct heap_area *ha)
{
	struct chk_area *ca = calloc(1, sizeof(*ca));
	size_t size = (size_t)(ha->hi - ha->lo), ngran = size >> GRAN_SHIFT;

	if (!static_lo)
		find_static_range();
	if (!ca)
		return -1;
	ca->base = ha->lo;
	ca->size = size;
	ca->npages = size >> PAGE_SHIFT;
	ca->obj = calloc(ngran / 64 + 1, sizeof(uint64_t));
	ca->buf = calloc(ngran / 64 + 1, sizeof(uint64_t));
	ca->cover = calloc(ca->npages + 1, sizeof(uint32_t));
	if (!ca->obj || !ca->buf || !ca->cover) {
		free(ca->obj);
		free(ca->buf);
		free(ca->cover);
		free(ca);
		return -1;
	}
	ha->chk = ca;
	return 0;
}

void chk_area_free(struct heap_area *ha)
{
	struct chk_area *ca = ha->chk;

	if (!ca)
		return;
	free(ca->obj);
	free(ca->buf);
	free(ca->cover);
	ptrmap_free(&ca->owner);
	ptrmap_free(&ca->invalid);
	free(ca);
	ha->chk = NULL;
}

/*
 * cover[pg] names the one checked block (object or table) that starts before
 * page pg and reaches into it (granule + 1; 0: none): a page's recheck then
 * looks at the blocks starting in the page and at most one more, instead of
 * scanning back a page for blocks that might reach it.  Pages after the
 * block's first page whose first byte is inside it: [first, end).
 */
static void cover_range(const struct chk_area *ca, const char *start, size_t len,
			size_t *first, size_t *end)
{
	size_t off = (size_t)(start - ca->base);

	*first = (off >> PAGE_SHIFT) + 1;
	*end = (off + len + PAGE - 1) >> PAGE_SHIFT;
	if (*end > ca->npages)
		*end = ca->npages;
}

static inline int crosses_page(const struct chk_area *ca, const char *start, size_t len)
{
	return (((size_t)(start - ca->base)) & (PAGE - 1)) + len > PAGE;
}

static void cover_set(struct chk_area *ca, const char *start, size_t len, size_t g)
{
	size_t first, end;

	cover_range(ca, start, len, &first, &end);
	for (size_t pg = first; pg < end; pg++)
		ca->cover[pg] = (uint32_t)(g + 1);
}

static void cover_clear(struct chk_area *ca, const char *start, size_t len, size_t g)
{
	size_t first, end;

	cover_range(ca, start, len, &first, &end);
	for (size_t pg = first; pg < end; pg++)
		if (ca->cover[pg] == g + 1)
			ca->cover[pg] = 0;
}

void chk_forget(struct heap_area *ha, void *p, size_t n)
{
	struct chk_area *ca = ha->chk;
	size_t g, ng;

	if (!ca || !n)
		return;
	/* An object sits at most 32 bytes (its pre-header) into its block. */
	g = gran(ca, p);
	ng = (n < 48 ? n : 48) >> GRAN_SHIFT;
	if (bit_get(ca->buf, g)) {
		bit_clr(ca->buf, g);
		ptrmap_del(&ca->owner, (uintptr_t)p);
	}
	for (size_t i = 0; i < ng; i++) {
		if (bit_get(ca->obj, g + i))
			bit_clr(ca->obj, g + i);
		if (ca->invalid.len)
			ptrmap_del(&ca->invalid, (uintptr_t)((char *)p + (i << GRAN_SHIFT)));
	}
	if (crosses_page(ca, p, n))
		for (size_t i = 0; i <= ng; i++)
			cover_clear(ca, p, n, g + i);
}

int chk_may_know(struct heap_area *ha, const void *p)
{
	struct chk_area *ca = ha->chk;
	size_t g;

	if (!ca)
		return 0;
	if (ca->invalid.len)
		return 1;
	g = gran(ca, p);	/* an object sits at most 32 bytes into its block */
	return bit_get(ca->buf, g) | bit_get(ca->obj, g) | bit_get(ca->obj, g + 1) |
	       bit_get(ca->obj, g + 2);
}

int chk_is_checked(struct heap_area *ha, PyObject *op)
{
	return ha->chk && in_area(ha->chk, op) && bit_get(ha->chk->obj, gran(ha->chk, op));
}

void chk_get_stats(struct chk_stats *st)
{
	*st = stats;
}

/*
 * The copy filter: in an orbit's copy of the pages main changed, every
 * checked live object gets an immortal reference count.  Reading an arena
 * object in the orbit then writes nothing (Py_INCREF/Py_DECREF skip immortal
 * objects), so the orbit takes no copy-on-write fault per page it reads and
 * has nothing to drop before its next call.  Objects the checker has not
 * marked keep their counts there: reading them costs a fault, as before.
 * Runs in main right after the call's check (GIL held), so the marks are
 * those the call was checked with.  Before 3.12 it rewrites nothing: it is
 * there for the comparison the snapshot makes (orbit_area_set_copy_filter).
 */
void chk_copy_filter(void *ctx, size_t first, size_t npages, void *dst)
{
	struct heap_area *ha = ctx;
	struct chk_area *ca = ha->chk;
	char *P = ca ? ca->base + (first << PAGE_SHIFT) : NULL;
	size_t w0 = (first << PAGE_SHIFT) >> GRAN_SHIFT >> 6;
	size_t w1 = ((first + npages) << PAGE_SHIFT) >> GRAN_SHIFT >> 6;

	if (!PYVER_HAS_IMMORTAL || !ca || first + npages > ca->npages)
		return;
	for (size_t w = w0; w < w1; w++) {
		for (uint64_t x = ca->obj[w]; x; x &= x - 1) {
			char *op = ca->base + ((w * 64 + (size_t)__builtin_ctzll(x)) << GRAN_SHIFT);

			if (Py_REFCNT((PyObject *)op) > 0)
				pyver_make_immortal((PyObject *)((char *)dst + (op - P)));
		}
	}
}

/* ------------------------------------------------------------- classes */

static int referenced_add(struct treg *r)
{
	if (r->referenced)
		return 0;
	if (nreferenced == referenced_cap) {
		size_t cap = referenced_cap ? referenced_cap * 2 : 16;
		struct treg **n = realloc(referenced, cap * sizeof(*n));

		if (!n)
			return -1;
		referenced = n;
		referenced_cap = cap;
	}
	referenced[nreferenced++] = r;
	r->referenced = 1;
	return 0;
}

static struct treg *treg_of(PyTypeObject *tp)
{
	uintptr_t v;

	return ptrmap_get(&types, (uintptr_t)tp, &v) ? (struct treg *)v : NULL;
}

uint64_t chk_register_types(PyObject *list)
{
	uint64_t e = ++epoch_now;
	/* Snapshots walk class dicts with borrowed references while they make
	 * weak references: no collection (finalizers, callbacks) may run then. */
	int gc_was_on = PyGC_Disable();
	struct heap_area *prev = heap_current();

	heap_set_current(NULL);	/* (the probe class is no arena object) */
	if (ht_refresh() < 0)
		PyErr_Clear();	/* the types stay unknown: refused, never wrong */
	heap_set_current(prev);

	for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
		PyTypeObject *tp = (PyTypeObject *)PyList_GET_ITEM(list, i);
		struct treg *r = treg_of(tp);
		unsigned int tag = pyver_type_version(tp);
		void *keys = pyver_type_shared_keys(tp);

		if (!r) {
			r = calloc(1, sizeof(*r));
			if (!r || ptrmap_put(&types, (uintptr_t)tp, (uintptr_t)r)) {
				free(r);
				continue;	/* unknown to the checker: refused, never wrong */
			}
			r->tp = tp;
			r->born = e;
		} else if (r->keys == keys &&
			   ((tag && tag == r->tag) || class_snap_same(r->snap, tp))) {
			continue;	/* its own state is the registered one */
		} else {
			class_snap_diff(r->snap, tp, r->change, sizeof(r->change));
		}
		/* New, or changed: orbits from now on have this state. */
		r->epoch = e;
		if (r->keys)
			ptrmap_del(&keys_of, (uintptr_t)r->keys);
		r->tag = tag;
		r->span = UINT64_MAX;
		r->keys = keys;
		r->nentries = keys ? pyver_keys_nentries(keys) : 0;
		if (keys)
			ptrmap_put(&keys_of, (uintptr_t)keys, (uintptr_t)r);
		class_snap_free(r->snap);
		r->snap = class_snap_take(tp);	/* NULL: any change is a real one */
	}
	if (gc_was_on)
		PyGC_Enable();
	return e;
}

void chk_forget_type(uintptr_t addr)
{
	struct treg *r = treg_of((PyTypeObject *)addr);

	if (!r)
		return;
	ptrmap_del(&types, addr);
	if (r->keys)
		ptrmap_del(&keys_of, (uintptr_t)r->keys);
	if (r->referenced)
		for (size_t i = 0; i < nreferenced; i++)
			if (referenced[i] == r) {
				referenced[i] = referenced[--nreferenced];
				break;
			}
	class_snap_free(r->snap);
	free(r);
}

/*
 * Does an orbit forked at `epoch` have class tp, and every class in its MRO,
 * as main has them now?  0 if so; else 1 and why in buf.
 *
 * A class's version tag changes with every change to it or to one of its
 * bases.  r->tag is a tag of tp whose state (tp's own, and its bases')
 * was found equivalent to the registered states, all registered at or
 * before r->span: then an unchanged tag settles it.  Otherwise each class
 * of the MRO is compared with its state at registration, benign (cache)
 * attributes aside, and a match moves r->tag along, so that the next check
 * takes the quick way again.
 */
static int class_changed(PyTypeObject *tp, uint64_t epoch, char *buf, size_t size)
{
	struct treg *r = treg_of(tp);
	PyObject *mro = tp->tp_mro;
	unsigned int tag = pyver_type_version(tp);
	uint64_t span = 0;

	if (r && tag && tag == r->tag && r->span <= epoch)
		return 0;	/* the usual case: nothing changed */
	for (Py_ssize_t k = 0; k == 0 || (mro && k < PyTuple_GET_SIZE(mro)); k++) {
		PyTypeObject *t = k ? (PyTypeObject *)PyTuple_GET_ITEM(mro, k) : tp;
		struct treg *rt = k ? treg_of(t) : r;
		unsigned int tt = k ? pyver_type_version(t) : tag;
		const char *base = k ? "its base class " : "";
		const char *bname = k ? t->tp_name : "";
		char why[160];

		if (k && (t == tp || !(t->tp_flags & Py_TPFLAGS_HEAPTYPE) || chk_is_static(t)))
			continue;
		if (!rt || rt->born > epoch) {
			snprintf(buf, size, "%s%s%screated after the orbit started", base, bname,
				 k ? " was " : "");
			return 1;
		}
		if (rt->epoch > epoch) {
			snprintf(buf, size, "%s%s%schanged after the orbit started (%s)", base,
				 bname, k ? " was " : "", rt->change);
			return 1;
		}
		if (!(tt && tt == rt->tag) && !class_snap_same(rt->snap, t)) {
			class_snap_diff(rt->snap, t, why, sizeof(why));
			snprintf(buf, size, "%s%s%schanged after the orbit started (%s)", base,
				 bname, k ? " was " : "", why);
			return 1;
		}
		if (rt->epoch > span)
			span = rt->epoch;
	}
	if (r && tag) {
		r->tag = tag;
		r->span = span;
	}
	return 0;
}

/* ------------------------------------------------------------ failures */

static int fail(struct pass *ps, PyObject *owner, PyObject *target, const char *fmt, ...)
{
	char msg[300];
	va_list ap;
	PyObject *t;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	t = Py_BuildValue("(OOs)", owner ? owner : Py_None, target ? target : Py_None, msg);
	if (!t || PyList_Append(ps->failures, t) < 0) {
		Py_XDECREF(t);
		return -1;
	}
	Py_DECREF(t);
	return 1;
}

/*
 * A class the orbit has in another state than main (changed or created
 * since the orbit started): the caller restarts the orbit and tries again,
 * so this is recorded as (owner, class, message, what changed), a 4-tuple
 * that heap_precall tells from other failures.
 */
static int fail_class(struct pass *ps, PyObject *owner, PyTypeObject *tp, const char *why)
{
	char msg[400];
	PyObject *t;

	snprintf(msg, sizeof(msg), "class %s: %s", tp->tp_name, why);
	t = Py_BuildValue("(OOss)", owner ? owner : Py_None, (PyObject *)tp, msg, why);
	if (!t || PyList_Append(ps->failures, t) < 0) {
		Py_XDECREF(t);
		return -1;
	}
	Py_DECREF(t);
	return 1;
}

/* 0 if the orbit has class tp as main has it, 1 after recording why not. */
static int check_class(struct pass *ps, PyObject *owner, PyTypeObject *tp)
{
	struct treg *r;
	char why[300];

	if (chk_is_static(tp))
		return 0;
	r = treg_of(tp);
	if (!(tp->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
		if (!r)
			return fail(ps, owner, (PyObject *)tp,
				    "class %s is not part of the interpreter's static image "
				    "nor of an extension module the orbit knows", tp->tp_name);
		if (r->born > ps->epoch)
			return fail_class(ps, owner, tp, "its module was loaded after the "
					  "orbit started");
	} else if (class_changed(tp, ps->epoch, why, sizeof(why))) {
		return fail_class(ps, owner, tp, why);
	}
	if (r && referenced_add(r)) {
		PyErr_NoMemory();
		return -1;
	}
	return 0;
}

/*
 * A reference the pass gives up.  Releasing it may free the object, and
 * freeing may run Python code (a weakref callback, a finalizer), which would
 * let the interpreter switch threads between the check and the snapshot: it
 * is parked in ps->dropped, which the caller releases after the snapshot.
 */
static void drop(struct pass *ps, PyObject *op)
{
	if (ps->dropped && PyList_Append(ps->dropped, op) < 0)
		PyErr_Clear();	/* no room to park it: release it now */
	Py_DECREF(op);
}

/* ------------------------------------------- services to heap_types.c */

int chk_fail(struct pass *ps, PyObject *owner, PyObject *target, const char *fmt, ...)
{
	char msg[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return fail(ps, owner, target, "%s", msg);
}

int chk_in_area(struct pass *ps, const void *p)
{
	return in_area(ps->ca, p);
}

void chk_free_block(struct pass *ps, void *p)
{
	PyMem_Free(p);
	ps->wrote = 1;
}

/* --------------------------------------------------------------- copies */

static int push(struct pass *ps, PyObject *op)
{
	if (ps->nstack == ps->stack_cap) {
		size_t cap = ps->stack_cap ? ps->stack_cap * 2 : 256;
		PyObject **n = realloc(ps->stack, cap * sizeof(*n));

		if (!n) {
			PyErr_NoMemory();
			return -1;
		}
		ps->stack = n;
		ps->stack_cap = cap;
	}
	ps->stack[ps->nstack++] = op;
	return 0;
}

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
	stats.copies++;
	ps->wrote = 1;
	return c;
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
	struct heap_area *prev;
	int was_strict;

	if (!t || chk_is_static(t))
		return 0;
	if (in_area(ps->ca, t)) {
		if (bit_get(ps->ca->obj, gran(ps->ca, t)))
			return 0;
		return push(ps, t);
	}
	if (PyType_Check(t))
		return check_class(ps, owner, (PyTypeObject *)t);
	ha = heap_area_of(t);
	if (ha)
		return fail(ps, owner, t, "refers to a %s in another arena", Py_TYPE(t)->tp_name);
	if (ht_is_enum_member(t))	/* a singleton the orbit has with its class */
		return check_class(ps, owner, Py_TYPE(t));
	if (!may_copy || !copyable(t, 0))
		return fail(ps, owner, t, "refers to a %s that is not in the arena (it was made "
			    "outside `with arena:`): make it inside the block, or store "
			    "arena.copy(value), a deep copy into the arena", Py_TYPE(t)->tp_name);
	prev = heap_current();
	heap_set_current(ps->ha);
	was_strict = heap_strict(1);	/* the copy is arena state: in the arena or not at all */
	c = copy_value(ps, t);
	heap_strict(was_strict);
	heap_set_current(prev);
	if (!c)
		return -1;
	*slot = c;
	drop(ps, t);
	/* The copy may hold arena objects not checked yet (kept by reference). */
	return in_area(ps->ca, c) ? push(ps, c) : 0;
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
	struct chk_area *ca = ps->ca;
	void *t = block ? block : *slot;
	uintptr_t who;
	size_t g;

	*fresh = 0;
	if (!t || chk_is_static(t))
		return 0;
	if (!in_area(ca, t)) {
		void *n;

		if (!may_move || block)
			return fail(ps, owner, NULL, "%s keeps its contents outside the arena",
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
		stats.moves++;
		ps->wrote = 1;
	}
	g = gran(ca, t);
	if (bit_get(ca->buf, g) && ptrmap_get(&ca->owner, (uintptr_t)t, &who) &&
	    who == (uintptr_t)owner)
		return 0;
	if (ptrmap_put(&ca->owner, (uintptr_t)t, (uintptr_t)owner) < 0) {
		PyErr_NoMemory();
		return -1;
	}
	bit_set(ca->buf, g);
	if (crosses_page(ca, t, nbytes))
		cover_set(ca, t, nbytes, g);
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
		uintptr_t x;
		struct treg *reg = ptrmap_get(&keys_of, (uintptr_t)v.keys, &x) ?
				   (struct treg *)x : NULL;

		if (!reg || reg->epoch > ps->epoch)
			return fail(ps, op, NULL, "dict shares its keys with a class the orbit "
				    "does not have");
		r = own_table(ps, op, (void **)&d->ma_values, v.values_block, 0,
			      PYMEM_DOMAIN_MEM, 0, &fresh);
		if (r)
			return r;
		for (Py_ssize_t i = reg->nentries; i < v.nentries; i++)
			if (v.values[i])
				return fail(ps, op, NULL, "dict uses keys its class gained after "
					    "the orbit started");
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
		return fail(ps, op, NULL, "class %s defines its own __dict__ attribute",
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
		drop(ps, d);	/* the old dict */
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

/* Is this a value with no references in it (nothing to check inside)? */
static inline int is_leaf(PyTypeObject *tp)
{
	return tp == &PyFloat_Type || tp == &PyUnicode_Type || tp == &PyLong_Type ||
	       tp == &PyBytes_Type || tp == &PyComplex_Type || tp == &PyBool_Type;
}

/* An upper bound of the bytes op spans from its block's start, without
 * asking the allocator (which takes a lock) unless it may exceed a page. */
static size_t extent(struct pass *ps, PyObject *op, char *blk)
{
	PyTypeObject *tp = Py_TYPE(op);
	size_t n = (size_t)tp->tp_basicsize + ((char *)op - blk);

	/* Asked too when the bound crosses a page: an object smaller than its
	 * type's size (a naive datetime) must not claim a page it does not reach. */
	if (tp->tp_itemsize || tp == &PyUnicode_Type || n > PAGE / 2 ||
	    crosses_page(ps->ca, blk, n))
		return orbit_usable_size(ps->ha->area, blk);
	return n;
}

static void mark(struct pass *ps, PyObject *op)
{
	struct chk_area *ca = ps->ca;
	size_t g = gran(ca, op);
	char *blk = (char *)op - pyver_preheader(Py_TYPE(op));
	size_t n;

	bit_set(ca->obj, g);
	n = extent(ps, op, blk);
	if (crosses_page(ca, blk, n))
		cover_set(ca, blk, n, g);
}

/*
 * Check arena object op.  lo/hi (or NULL) is the changed byte range that
 * brought us here: long inline arrays (tuples) are checked only there.
 * `full`: check every entry of its tables too, not only new tables.
 */
static int check_object(struct pass *ps, PyObject *op, const char *lo, const char *hi, int full)
{
	PyTypeObject *tp, *base;
	int r, bad = 0;

	stats.objects++;
	if (Py_REFCNT(op) <= 0) {	/* dead, parked on a free list */
		bit_clr(ps->ca->obj, gran(ps->ca, op));
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
		r = fail(ps, op, (PyObject *)tp, "objects of type %s cannot be checked, so they "
			 "cannot be read by orbits from an arena%s", base->tp_name, ht_advice(base));
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
		bit_clr(ps->ca->obj, gran(ps->ca, op));
		if (ptrmap_put(&ps->ca->invalid, (uintptr_t)op, 1) < 0 ||
		    ptrmap_put(&ps->failed, (uintptr_t)op, 1) < 0) {
			PyErr_NoMemory();
			return -1;
		}
		return 0;
	}
	if (ps->ca->invalid.len)
		ptrmap_del(&ps->ca->invalid, (uintptr_t)op);
	mark(ps, op);
	return 0;
}

/* Table block t of a checked object changed within [lo, hi). */
static int check_table(struct pass *ps, char *t, const char *lo, const char *hi)
{
	struct chk_area *ca = ps->ca;
	uintptr_t who;
	PyObject *op;
	PyTypeObject *base;
	int stale = 1, r = 0;

	stats.objects++;
	if (!ptrmap_get(&ca->owner, (uintptr_t)t, &who))
		goto drop;
	op = (PyObject *)who;
	if (!in_area(ca, op) || !bit_get(ca->obj, gran(ca, op)) || Py_REFCNT(op) <= 0)
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
			return check_object(ps, op, NULL, NULL, 1);
	} else if ((base == &PySet_Type || base == &PyFrozenSet_Type) &&
		   (char *)((PySetObject *)op)->table == t) {
		stale = 0;
		r = check_set(ps, op, lo, hi, 0);
	} else if (base == &PyByteArray_Type && ((PyByteArrayObject *)op)->ob_bytes == t) {
		stale = 0;
	} else if (ht_kind_of(base) == HT_DEQUE) {
		/* One of its blocks (or a spare one): walk the deque again. */
		return check_object(ps, op, NULL, NULL, 1);
	}
	if (stale && ht_is_python_class(Py_TYPE(op))) {
		struct pyver_inst in;

		pyver_inst(op, &in);
		if ((char *)in.values_block == t) {
			stale = 0;
			return check_object(ps, op, NULL, NULL, 0);
		}
	}
	if (!stale) {
		if (r > 0) {	/* the owner no longer passes */
			bit_clr(ca->obj, gran(ca, op));
			if (ptrmap_put(&ca->invalid, (uintptr_t)op, 1) < 0) {
				PyErr_NoMemory();
				return -1;
			}
		}
		return r < 0 ? -1 : 0;
	}
drop:
	bit_clr(ca->buf, gran(ca, t));
	ptrmap_del(&ca->owner, (uintptr_t)t);
	return 0;
}

/* ---------------------------------------------------------------- pages */

static void note_pages(void *ctx, size_t first, size_t n)
{
	struct pass *ps = ctx;

	for (size_t pg = first; pg < first + n; pg++) {
		if (ps->npages == ps->pages_cap) {
			size_t cap = ps->pages_cap ? ps->pages_cap * 2 : 256;
			size_t *p = realloc(ps->pages, cap * sizeof(*p));

			if (!p) {
				ps->oom = 1;
				return;
			}
			ps->pages = p;
			ps->pages_cap = cap;
		}
		ps->pages[ps->npages++] = pg;
	}
}

/* Look again at what was checked and may have changed with page pg. */
static int recheck_page(struct pass *ps, size_t pg)
{
	struct chk_area *ca = ps->ca;
	char *P = ca->base + (pg << PAGE_SHIFT), *end = P + PAGE;
	size_t w0 = (pg << PAGE_SHIFT) >> GRAN_SHIFT >> 6;
	size_t covering = ca->cover[pg] ? ca->cover[pg] - 1 : (size_t)-1;

	stats.pages++;
	/* Blocks starting in the page (a page is 4 words of bits). */
	for (size_t w = w0; w < w0 + (PAGE >> GRAN_SHIFT >> 6); w++) {
		for (uint64_t x = ca->obj[w] | ca->buf[w]; x; x &= x - 1) {
			size_t g = w * 64 + (size_t)__builtin_ctzll(x);
			char *a = ca->base + (g << GRAN_SHIFT);

			if (bit_get(ca->obj, g)) {
				PyObject *op = (PyObject *)a;

				if (Py_REFCNT(op) <= 0) {
					bit_clr(ca->obj, g);
					continue;
				}
				/* A value with no references (type unchanged: a
				 * string stays a string) has nothing new to check. */
				if (is_leaf(Py_TYPE(op)))
					continue;
				if (check_object(ps, op, P, end, 0) < 0)
					return -1;
			}
			if (bit_get(ca->buf, g) && check_table(ps, a, P, end) < 0)
				return -1;
		}
	}
	/* The block starting before the page and reaching into it, if checked.
	 * (An object's header may sit in the previous page while its pre-header
	 * -- the block's start -- is in the one before.) */
	if (covering != (size_t)-1 && covering < w0 * 64) {
		char *a = ca->base + (covering << GRAN_SHIFT);

		if (bit_get(ca->obj, covering)) {
			if (Py_REFCNT((PyObject *)a) > 0 && !is_leaf(Py_TYPE((PyObject *)a)) &&
			    check_object(ps, (PyObject *)a, P, end, 0) < 0)
				return -1;
		} else if (bit_get(ca->buf, covering)) {
			if (check_table(ps, a, P, end) < 0)
				return -1;
		}
	}
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int chk_prepare(struct heap_area *ha, PyObject *roots, uint64_t epoch, PyObject *failures,
		PyObject *dropped)
{
	struct pass ps = { .ha = ha, .ca = ha->chk, .epoch = epoch, .failures = failures,
			   .dropped = dropped };
	uint64_t t0 = now_ns();
	int rc = -1, err, gc_was_on;

	if (!ps.ca) {
		PyErr_SetString(PyExc_RuntimeError, "orbitpy: arena has no checker state");
		return -1;
	}
	stats.checks++;
	/* The stack holds borrowed pointers: no collection may free them. */
	gc_was_on = PyGC_Disable();
	/*
	 * 1. what main wrote since the last check; 2. objects that failed
	 * before (they may be fixed, or reachable now); 3. the roots, and
	 * whatever new they lead to.  The scan in 1 also serves the call's
	 * snapshot (see orbit_area_changed): if the pass itself wrote the arena,
	 * scan and look again, until a pass writes nothing.
	 */
	for (int round = 0; round == 0 || ps.wrote; round++) {
		size_t from = ps.npages;

		if (round == 8) {
			PyErr_SetString(PyExc_RuntimeError, "orbitpy: the arena kept changing "
					"while it was checked");
			goto out;
		}
		ps.wrote = 0;
		err = orbit_area_changed(ha->area, note_pages, &ps);
		if (err) {
			errno = -err;
			PyErr_SetFromErrno(PyExc_OSError);
			goto out;
		}
		if (ps.oom) {
			PyErr_NoMemory();
			goto out;
		}
		for (size_t i = from; i < ps.npages; i++)
			if (recheck_page(&ps, ps.pages[i]) < 0)
				goto out;
		if (round == 0 && ps.ca->invalid.len) {
			for (size_t i = 0; i < ps.ca->invalid.cap; i++)
				if (ps.ca->invalid.keys[i] &&
				    push(&ps, (PyObject *)ps.ca->invalid.keys[i]) < 0)
					goto out;
		}
		for (Py_ssize_t i = 0; round == 0 && i < PyList_GET_SIZE(roots); i++) {
			PyObject *r = PyList_GET_ITEM(roots, i);

			if (in_area(ps.ca, r) && !bit_get(ps.ca->obj, gran(ps.ca, r)) &&
			    push(&ps, r) < 0)
				goto out;
		}
		while (ps.nstack) {
			PyObject *op = ps.stack[--ps.nstack];

			if (bit_get(ps.ca->obj, gran(ps.ca, op)) ||
			    ptrmap_get(&ps.failed, (uintptr_t)op, NULL))
				continue;
			if (check_object(&ps, op, NULL, NULL, 1) < 0)
				goto out;
		}
	}
	/* 4. classes the checked objects use: still as the orbit has them? */
	for (size_t i = 0; i < nreferenced; i++) {
		char why[300];

		if (class_changed(referenced[i]->tp, epoch, why, sizeof(why)) &&
		    fail_class(&ps, NULL, referenced[i]->tp, why) < 0)
			goto out;
	}
	rc = 0;
out:
	free(ps.stack);
	free(ps.pages);
	ptrmap_free(&ps.copies);
	ptrmap_free(&ps.failed);
	ptrmap_free(&ps.walked);
	if (gc_was_on)
		PyGC_Enable();
	stats.ns += now_ns() - t0;
	return rc;
}

/* ------------------------------------------------------------- reaching */

static int reach_visit(PyObject *op, void *arg)
{
	struct pass *ps = arg;

	if (!op || !in_area(ps->ca, op) || ptrmap_get(&ps->seen, (uintptr_t)op, NULL))
		return 0;
	if (ptrmap_put(&ps->seen, (uintptr_t)op, 1) < 0 || push(ps, op) < 0) {
		PyErr_NoMemory();
		return -1;	/* stops the traversal */
	}
	return 0;
}

int chk_reaches(struct heap_area *ha, PyObject *roots, PyObject *failures)
{
	struct pass ps = { .ha = ha, .ca = ha->chk };
	struct ptrmap owners = { 0 }, classes = { 0 };
	int rc = -1;

	if (!ps.ca) {
		PyErr_SetString(PyExc_RuntimeError, "orbitpy: arena has no checker state");
		return -1;
	}
	for (Py_ssize_t i = 0; i < PyList_GET_SIZE(failures); i++) {
		PyObject *f = PyList_GET_ITEM(failures, i);
		PyObject *owner = PyTuple_GET_ITEM(f, 0), *target = PyTuple_GET_ITEM(f, 1);

		if (owner != Py_None ? ptrmap_put(&owners, (uintptr_t)owner, 1) < 0 :
		    target != Py_None && ptrmap_put(&classes, (uintptr_t)target, 1) < 0) {
			PyErr_NoMemory();
			goto out;
		}
	}
	for (Py_ssize_t i = 0; i < PyList_GET_SIZE(roots); i++)
		if (reach_visit(PyList_GET_ITEM(roots, i), &ps) < 0)
			goto out;
	/* What the collector knows an object refers to (gc.get_referents),
	 * and what it does not for the C types that are no collected objects:
	 * C code, no Python code runs. */
	while (ps.nstack) {
		PyObject *op = ps.stack[--ps.nstack];
		PyTypeObject *tp = Py_TYPE(op);

		if (ptrmap_get(&owners, (uintptr_t)op, NULL) ||
		    ptrmap_get(&classes, (uintptr_t)tp, NULL)) {
			rc = 1;
			goto out;
		}
		if (PyType_IS_GC(tp) && tp->tp_traverse && tp->tp_traverse(op, reach_visit, &ps))
			goto out;
		if (ht_traverse(op, reach_visit, &ps))
			goto out;
	}
	rc = 0;
out:
	free(ps.stack);
	ptrmap_free(&ps.seen);
	ptrmap_free(&owners);
	ptrmap_free(&classes);
	return rc;
}
