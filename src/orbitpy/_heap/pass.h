/*
 * pass.h - one run of the pre-call check (chk_prepare or chk_reaches) and
 * what the pass driver (heap_check.c) offers the code that checks objects
 * (object_checks.c, copy_in.c, the walks of heap_types.c): a stack of
 * objects still to check, failure records, references given up.
 */
#ifndef ORBITPY_PASS_H
#define ORBITPY_PASS_H

#include "heap_check.h"
#include "heap_marks.h"
#include "ptrmap.h"

struct pass {
	struct heap_area *ha;
	struct heap_marks *m;
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
	struct chk_stats counts;	/* this pass's share of chk_get_stats */
};

/* Queue arena object op to be checked (or, in chk_reaches, visited).
 * 0, or -1 with MemoryError set. */
int pass_push(struct pass *ps, PyObject *op);

/* Record a failure (owner, target, message): 1, or -1 with an exception. */
int pass_fail(struct pass *ps, PyObject *owner, PyObject *target, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Record that the orbit has class tp in another state than main (`why`):
 * 1, or -1 with an exception. */
int pass_fail_class(struct pass *ps, PyObject *owner, PyTypeObject *tp, const char *why);

/* Give up the reference op without running Python code now. */
void pass_drop(struct pass *ps, PyObject *op);

#endif
