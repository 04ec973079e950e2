/*
 * pyver_gc.c - the collector's generation lists of CPython 3.11, 3.12 and
 * 3.13, and a list of arena objects held out of them.
 *
 * A collection of a generation writes the GC header (gc_refs, kept in
 * gc_prev) of every object in it, so a full collection dirties every page
 * holding a tracked arena object and the next orbit call copies and checks
 * the whole arena again.  Objects moved ("parked") from the generation
 * lists to the list here stay tracked (PyObject_GC_UnTrack unlinks an
 * object from whatever list holds it, so they can be freed as usual) but no
 * collection walks them until they are put back.
 *
 * In all three versions the state is interp->gc (struct _gc_runtime_state):
 * generations[3], each a circular doubly linked list through PyGC_Head
 * (two words in front of the object; the low two bits of _gc_prev are
 * flags, which moving an object keeps).  The "start" callbacks of a
 * collection run before it merges the younger generations into the one it
 * collects, and nothing links objects while the GIL is held here.
 */
#include "pyver_internal.h"

/* The object behind a GC header (the header sits right in front of it). */
static PyObject *object_of(PyGC_Head *g)
{
	return (PyObject *)(g + 1);
}

static PyGC_Head parked;	/* circular; empty when it points to itself */
static Py_ssize_t nparked;

static PyGC_Head *gen_head(int gen)
{
	PyInterpreterState *interp = PyInterpreterState_Get();

	return &interp->gc.generations[gen].head;
}

static void list_init_once(PyGC_Head *l)
{
	if (!l->_gc_next) {
		l->_gc_next = (uintptr_t)l;
		l->_gc_prev = (uintptr_t)l;
	}
}

static void unlink_node(PyGC_Head *g)
{
	PyGC_Head *prev = _PyGCHead_PREV(g);
	PyGC_Head *next = _PyGCHead_NEXT(g);

	_PyGCHead_SET_NEXT(prev, next);
	_PyGCHead_SET_PREV(next, prev);
}

static void append_node(PyGC_Head *g, PyGC_Head *l)
{
	PyGC_Head *last = _PyGCHead_PREV(l);

	_PyGCHead_SET_NEXT(last, g);
	_PyGCHead_SET_PREV(g, last);
	_PyGCHead_SET_NEXT(g, l);
	_PyGCHead_SET_PREV(l, g);
}

Py_ssize_t pyver_gc_park(int gen, int (*is_parked)(const void *op))
{
	PyGC_Head *head = gen_head(gen), *g, *next;
	Py_ssize_t n = 0;

	list_init_once(&parked);
	for (g = _PyGCHead_NEXT(head); g != head; g = next) {
		next = _PyGCHead_NEXT(g);
		if (is_parked(object_of(g))) {
			unlink_node(g);
			append_node(g, &parked);
			n++;
		}
	}
	nparked += n;
	return n;
}

Py_ssize_t pyver_gc_unpark(void)
{
	PyGC_Head *head = gen_head(NUM_GENERATIONS - 1);
	PyGC_Head *first, *last, *tail;
	Py_ssize_t n = nparked;

	list_init_once(&parked);
	nparked = 0;
	if ((PyGC_Head *)parked._gc_next == &parked)
		return 0;
	/* Splice the whole list onto the end of the oldest generation. */
	first = _PyGCHead_NEXT(&parked);
	last = _PyGCHead_PREV(&parked);
	tail = _PyGCHead_PREV(head);
	_PyGCHead_SET_NEXT(tail, first);
	_PyGCHead_SET_PREV(first, tail);
	_PyGCHead_SET_NEXT(last, head);
	_PyGCHead_SET_PREV(head, last);
	parked._gc_next = parked._gc_prev = (uintptr_t)&parked;
	return n;
}

Py_ssize_t pyver_gc_parked(void)
{
	PyGC_Head *g;
	Py_ssize_t n = 0;

	/* Objects leave the list when they are freed, without telling anyone:
	 * count them (only for stats and tests). */
	list_init_once(&parked);
	for (g = _PyGCHead_NEXT(&parked); g != &parked; g = _PyGCHead_NEXT(g))
		n++;
	nparked = n;
	return n;
}

/*
 * For an orbit's fork image (heap_fork_scrub.c): every list the collector
 * links objects in, the generations and the permanent one (gc.freeze()).
 */
#define NLISTS (NUM_GENERATIONS + 1)

static PyGC_Head *list_head(int i)
{
	PyInterpreterState *interp = PyInterpreterState_Get();

	if (i < NUM_GENERATIONS)
		return &interp->gc.generations[i].head;
	return &interp->gc.permanent_generation.head;
}

Py_ssize_t pyver_gc_drop(int (*is_dropped)(const void *op))
{
	Py_ssize_t n = 0;

	for (int i = 0; i < NLISTS; i++) {
		PyGC_Head *head = list_head(i), *g, *next;

		for (g = _PyGCHead_NEXT(head); g != head; g = next) {
			next = _PyGCHead_NEXT(g);
			if (is_dropped(object_of(g))) {
				unlink_node(g);
				n++;
			}
		}
	}
	return n;
}
