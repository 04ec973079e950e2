/*
 * class_registry.c - the registry of classes orbits have (see
 * class_registry.h): each registered class's state at the epoch it was last
 * registered at, its shared keys, and the classes checked objects use.
 */
#include <stdio.h>
#include <stdlib.h>

#include "class_registry.h"
#include "class_state.h"
#include "heap.h"
#include "heap_types.h"
#include "ptrmap.h"
#include "static_image.h"

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
 * A class's version tag changes with every change to it or to one of its
 * bases.  r->tag is a tag of tp whose state (tp's own, and its bases')
 * was found equivalent to the registered states, all registered at or
 * before r->span: then an unchanged tag settles it.  Otherwise each class
 * of the MRO is compared with its state at registration, benign (cache)
 * attributes aside, and a match moves r->tag along, so that the next check
 * takes the quick way again.
 */
int creg_changed(PyTypeObject *tp, uint64_t epoch, char *buf, size_t size)
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

int creg_known(PyTypeObject *tp, uint64_t *born)
{
	struct treg *r = treg_of(tp);

	if (r)
		*born = r->born;
	return r != NULL;
}

int creg_note_referenced(PyTypeObject *tp)
{
	struct treg *r = treg_of(tp);

	return r ? referenced_add(r) : 0;
}

size_t creg_nreferenced(void)
{
	return nreferenced;
}

PyTypeObject *creg_referenced(size_t i)
{
	return referenced[i]->tp;
}

int creg_keys(void *keys, uint64_t *epoch, Py_ssize_t *nentries)
{
	uintptr_t x;
	struct treg *r;

	if (!ptrmap_get(&keys_of, (uintptr_t)keys, &x))
		return 0;
	r = (struct treg *)x;
	*epoch = r->epoch;
	*nentries = r->nentries;
	return 1;
}
