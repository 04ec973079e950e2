/*
 * object_checks.h - checking one arena object, or one table block of a
 * checked object, for the pass (heap_check.c): its class, its tables (moved
 * into the arena when they are outside), the references in them (values
 * copied in, arena objects queued on the pass's stack), and its marks.
 */
#ifndef ORBITPY_OBJECT_CHECKS_H
#define ORBITPY_OBJECT_CHECKS_H

#include "pass.h"

/*
 * Check arena object op and mark it, or unmark it and keep it on the area's
 * `invalid` list if it fails.  lo/hi (or NULL) is the changed byte range that
 * brought us here: long inline arrays (tuples) are checked only there.
 * `full`: check every entry of its tables too, not only new tables.
 * 0, or -1 with an exception set.
 */
int chk_object(struct pass *ps, PyObject *op, const char *lo, const char *hi, int full);

/* Table block t of a checked object changed within [lo, hi): check what
 * changed, or forget the table if its owner no longer has it.  0 or -1. */
int chk_table(struct pass *ps, char *t, const char *lo, const char *hi);

/* Is this a value with no references in it (nothing to check inside)? */
static inline int chk_is_leaf(PyTypeObject *tp)
{
	return tp == &PyFloat_Type || tp == &PyUnicode_Type || tp == &PyLong_Type ||
	       tp == &PyBytes_Type || tp == &PyComplex_Type || tp == &PyBool_Type;
}

#endif
