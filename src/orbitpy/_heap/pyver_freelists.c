/*
 * pyver_freelists.c - take CPython's object free lists out of the way
 * (3.11, 3.12, 3.13).
 *
 * Floats, tuples, lists and dicts are recycled through free lists that never
 * call the allocator.  With them, an object made inside `with arena:` could
 * reuse a block from outside the arena, and an arena block could come back
 * as an object another thread makes outside it.  Once arenas hold objects,
 * every such object is made and freed through the allocator instead:
 *  - 3.13 marks a free list closed with numfree = -1 (as at finalization);
 *  - 3.11/3.12: linked lists (floats, tuples) are closed by "full and empty";
 *    array lists (lists, dicts) cannot be, so the types' deallocators are
 *    wrapped to release at once what the original parked.
 * Dict key tables: 3.13 closes theirs too; 3.11/3.12 cannot (an array
 * list, no deallocator to wrap), so it is emptied at each call of this (at
 * the end of `with` blocks and before orbit forks), and the checks move a
 * table that came from elsewhere into the arena of its dict.
 * A full collection clears the free lists and opens them again (numfree =
 * 0): the Python layer calls this again after each (a gc callback).
 *
 * The wrapped deallocators keep CPython's protection against deep
 * deallocation (the "trashcan", which defers frees past a fixed nesting
 * depth): the originals enable it only when the type's tp_dealloc is
 * themselves, which it no longer is, so the wrappers enable it instead.  A
 * chain of a million nested lists or dicts would otherwise overflow the C
 * stack when freed.
 */
#include "pyver_internal.h"


#if PY_VERSION_HEX >= 0x030D0000
void pyver_freelists_off(void)
{
	struct _Py_object_freelists *fl;

	fl = &((struct _is *)PyInterpreterState_Get())->object_state.freelists;
	while (fl->floats.items) {
		PyFloatObject *op = fl->floats.items;

		fl->floats.items = (PyFloatObject *)Py_TYPE(op);
		PyObject_Free(op);
	}
	fl->floats.numfree = -1;
	for (int i = 0; i < PyTuple_NFREELISTS; i++) {
		while (fl->tuples.items[i]) {
			PyTupleObject *op = fl->tuples.items[i];

			fl->tuples.items[i] = (PyTupleObject *)op->ob_item[0];
			PyObject_GC_Del(op);
		}
		fl->tuples.numfree[i] = -1;
	}
	while (fl->lists.numfree > 0)
		PyObject_GC_Del(fl->lists.items[--fl->lists.numfree]);
	fl->lists.numfree = -1;
	while (fl->dicts.numfree > 0)
		PyObject_GC_Del(fl->dicts.items[--fl->dicts.numfree]);
	fl->dicts.numfree = -1;
	while (fl->dictkeys.numfree > 0)
		PyObject_Free(fl->dictkeys.items[--fl->dictkeys.numfree]);
	fl->dictkeys.numfree = -1;
}
#else
static destructor list_dealloc_orig, dict_dealloc_orig;
static int wrapped;	/* the deallocators are ours */

static struct _is *interp(void)
{
	return (struct _is *)PyInterpreterState_Get();
}

/*
 * The trashcan parks an object it defers on a per-thread list through its GC
 * links, so the object must be untracked first, as the originals do before
 * their own (here disabled) trashcan; untracking again there is a no-op.
 * Deferred objects are freed later through tp_dealloc: these wrappers again.
 */
static void list_dealloc(PyObject *op)
{
	struct _Py_list_state *st = &interp()->list;

	PyObject_GC_UnTrack(op);
	Py_TRASHCAN_BEGIN(op, list_dealloc)
	int n = st->numfree;

	list_dealloc_orig(op);
	while (st->numfree > n)
		PyObject_GC_Del(st->free_list[--st->numfree]);
	Py_TRASHCAN_END
}

static void dict_dealloc(PyObject *op)
{
	struct _Py_dict_state *st = &interp()->dict_state;

	PyObject_GC_UnTrack(op);
	Py_TRASHCAN_BEGIN(op, dict_dealloc)
	int n = st->numfree, nk = st->keys_numfree;

	dict_dealloc_orig(op);
	while (st->numfree > n)
		PyObject_GC_Del(st->free_list[--st->numfree]);
	while (st->keys_numfree > nk)	/* its key table */
		PyObject_Free(st->keys_free_list[--st->keys_numfree]);
	Py_TRASHCAN_END
}

void pyver_freelists_off(void)
{
	struct _is *is;
	struct _Py_float_state *fs;

	is = interp();
	fs = &is->float_state;
	while (fs->free_list) {
		PyFloatObject *op = fs->free_list;

		fs->free_list = (PyFloatObject *)Py_TYPE(op);
		PyObject_Free(op);
	}
	fs->numfree = PyFloat_MAXFREELIST;	/* "full": deallocs free */
	for (int i = 0; i < PyTuple_NFREELISTS; i++) {
		while (is->tuple.free_list[i]) {
			PyTupleObject *op = is->tuple.free_list[i];

			is->tuple.free_list[i] = (PyTupleObject *)op->ob_item[0];
			PyObject_GC_Del(op);
		}
		is->tuple.numfree[i] = PyTuple_MAXFREELIST;
	}
	while (is->list.numfree > 0)
		PyObject_GC_Del(is->list.free_list[--is->list.numfree]);
	while (is->dict_state.numfree > 0)
		PyObject_GC_Del(is->dict_state.free_list[--is->dict_state.numfree]);
	/* Key tables cannot be closed here (an array list); empty it. */
	while (is->dict_state.keys_numfree > 0)
		PyObject_Free(is->dict_state.keys_free_list[--is->dict_state.keys_numfree]);
	if (!wrapped) {
		list_dealloc_orig = PyList_Type.tp_dealloc;
		PyList_Type.tp_dealloc = list_dealloc;
		dict_dealloc_orig = PyDict_Type.tp_dealloc;
		PyDict_Type.tp_dealloc = dict_dealloc;
		wrapped = 1;
	}
}
#endif
