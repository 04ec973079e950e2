/*
 * heap_check.c - the pass that runs before each call (see heap_check.h):
 * what changed since the last check, what failed before and what the call's
 * roots lead to is checked (object_checks.c) until a round writes nothing to
 * the arena; then the classes checked objects use.  Also chk_reaches, and
 * the pass's services (pass.h): its stack, failure records, dropped
 * references.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "class_registry.h"
#include "heap_types.h"
#include "object_checks.h"
#include "pass.h"

static struct chk_stats stats;	/* the sum of every pass's counts */

void chk_get_stats(struct chk_stats *st)
{
	*st = stats;
}

/* ------------------------------------------------------------ failures */

int pass_fail(struct pass *ps, PyObject *owner, PyObject *target, const char *fmt, ...)
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
int pass_fail_class(struct pass *ps, PyObject *owner, PyTypeObject *tp, const char *why)
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

/*
 * A reference the pass gives up.  Releasing it may free the object, and
 * freeing may run Python code (a weakref callback, a finalizer), which would
 * let the interpreter switch threads between the check and the snapshot: it
 * is parked in ps->dropped, which the caller releases after the snapshot.
 */
void pass_drop(struct pass *ps, PyObject *op)
{
	if (ps->dropped && PyList_Append(ps->dropped, op) < 0)
		PyErr_Clear();	/* no room to park it: release it now */
	Py_DECREF(op);
}


/* ---------------------------------------------------------------- stack */

int pass_push(struct pass *ps, PyObject *op)
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
	struct heap_marks *m = ps->m;
	size_t page = (size_t)1 << m->page_shift;
	char *P = m->base + (pg << m->page_shift), *end = P + page;
	size_t w0 = (pg << m->page_shift) >> MARKS_GRAN_SHIFT >> 6;
	size_t covering = m->cover[pg] ? m->cover[pg] - 1 : (size_t)-1;

	ps->counts.pages++;
	/* Blocks starting in the page (a 4 KiB page is 4 words of bits). */
	for (size_t w = w0; w < w0 + (page >> MARKS_GRAN_SHIFT >> 6); w++) {
		for (uint64_t x = m->obj[w] | m->buf[w]; x; x &= x - 1) {
			size_t g = w * 64 + (size_t)__builtin_ctzll(x);
			char *a = m->base + (g << MARKS_GRAN_SHIFT);

			if (marks_bit(m->obj, g)) {
				PyObject *op = (PyObject *)a;

				if (Py_REFCNT(op) <= 0) {
					marks_bit_clr(m->obj, g);
					continue;
				}
				/* A value with no references (type unchanged: a
				 * string stays a string) has nothing new to check. */
				if (chk_is_leaf(Py_TYPE(op)))
					continue;
				if (chk_object(ps, op, P, end, 0) < 0)
					return -1;
			}
			if (marks_bit(m->buf, g) && chk_table(ps, a, P, end) < 0)
				return -1;
		}
	}
	/* The block starting before the page and reaching into it, if checked.
	 * (An object's header may sit in the previous page while its pre-header
	 * -- the block's start -- is in the one before.) */
	if (covering != (size_t)-1 && covering < w0 * 64) {
		char *a = m->base + (covering << MARKS_GRAN_SHIFT);

		if (marks_bit(m->obj, covering)) {
			if (Py_REFCNT((PyObject *)a) > 0 && !chk_is_leaf(Py_TYPE((PyObject *)a)) &&
			    chk_object(ps, (PyObject *)a, P, end, 0) < 0)
				return -1;
		} else if (marks_bit(m->buf, covering)) {
			if (chk_table(ps, a, P, end) < 0)
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
	struct pass ps = { .ha = ha, .m = ha->marks, .epoch = epoch, .failures = failures,
			   .dropped = dropped };
	uint64_t t0 = now_ns();
	int rc = -1, err, gc_was_on;

	if (!ps.m) {
		PyErr_SetString(PyExc_RuntimeError, "orbitpy: arena has no checker state");
		return -1;
	}
	ps.counts.checks++;
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
		if (round == 0 && ps.m->invalid.len) {
			for (size_t i = 0; i < ps.m->invalid.cap; i++)
				if (ps.m->invalid.keys[i] &&
				    pass_push(&ps, (PyObject *)ps.m->invalid.keys[i]) < 0)
					goto out;
		}
		for (Py_ssize_t i = 0; round == 0 && i < PyList_GET_SIZE(roots); i++) {
			PyObject *r = PyList_GET_ITEM(roots, i);

			if (marks_in(ps.m, r) && !marks_checked(ps.m, r) &&
			    pass_push(&ps, r) < 0)
				goto out;
		}
		while (ps.nstack) {
			PyObject *op = ps.stack[--ps.nstack];

			if (marks_checked(ps.m, op) ||
			    ptrmap_get(&ps.failed, (uintptr_t)op, NULL))
				continue;
			if (chk_object(&ps, op, NULL, NULL, 1) < 0)
				goto out;
		}
	}
	/* 4. classes the checked objects use: still as the orbit has them? */
	for (size_t i = 0; i < creg_nreferenced(); i++) {
		PyTypeObject *tp = creg_referenced(i);
		char why[300];

		if (creg_changed(tp, epoch, why, sizeof(why)) &&
		    pass_fail_class(&ps, NULL, tp, why) < 0)
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
	ps.counts.ns = now_ns() - t0;
	stats.checks += ps.counts.checks;
	stats.pages += ps.counts.pages;
	stats.objects += ps.counts.objects;
	stats.copies += ps.counts.copies;
	stats.moves += ps.counts.moves;
	stats.ns += ps.counts.ns;
	return rc;
}

/* ------------------------------------------------------------- reaching */

static int reach_visit(PyObject *op, void *arg)
{
	struct pass *ps = arg;

	if (!op || !marks_in(ps->m, op) || ptrmap_get(&ps->seen, (uintptr_t)op, NULL))
		return 0;
	if (ptrmap_put(&ps->seen, (uintptr_t)op, 1) < 0 || pass_push(ps, op) < 0) {
		PyErr_NoMemory();
		return -1;	/* stops the traversal */
	}
	return 0;
}

int chk_reaches(struct heap_area *ha, PyObject *roots, PyObject *failures)
{
	struct pass ps = { .ha = ha, .m = ha->marks };
	struct ptrmap owners = { 0 }, classes = { 0 };
	int rc = -1;

	if (!ps.m) {
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
