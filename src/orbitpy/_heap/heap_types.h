/*
 * heap_types.h - the C types (types not defined by a `class` statement)
 * whose instances the pre-call check can vouch for, and their walks.
 *
 * An instance of a class defined in Python is laid out as its first base
 * that is not: a builtin the checker knows (list, dict, ...), one of the
 * standard library types here (deque, defaultdict, the datetime types,
 * Decimal), or a type it does not know, whose instances are refused: the
 * checker cannot tell what memory they refer to.
 */
#ifndef ORBITPY_HEAP_TYPES_H
#define ORBITPY_HEAP_TYPES_H

#include "heap.h"

enum ht_kind {
	HT_UNKNOWN,
	HT_DEQUE,
	HT_DEFAULTDICT,
	HT_ODICT,
	HT_DATE,
	HT_DATETIME,
	HT_TIME,
	HT_TIMEDELTA,
	HT_TZINFO,
	HT_TIMEZONE,
	HT_DECIMAL,
};

/*
 * Learn the types of the modules imported so far (before each orbit fork:
 * an orbit has those modules).  Runs Python code (a probe class); call with
 * no arena current.  0, or -1 with an exception set.
 */
int ht_refresh(void);
/* Was tp made by a `class` statement (or type())? */
int ht_is_python_class(PyTypeObject *tp);
/* The first type in tp's base chain that is not a Python class. */
PyTypeObject *ht_layout_base(PyTypeObject *tp);
/* Which known C type `base` (a layout base) is. */
enum ht_kind ht_kind_of(PyTypeObject *base);
/* For a layout base the checker refuses: what to store instead, or "". */
const char *ht_advice(PyTypeObject *base);
/* Is op a member of an Enum class (one of its _member_map_ values)? */
int ht_is_enum_member(PyObject *op);

/* Visit the references of op that tp_traverse does not show: datetime,
 * time and timezone are no collected objects. */
int ht_traverse(PyObject *op, visitproc visit, void *arg);

/* ---- services of the object checks (object_checks.c) to the walks; a
 * walk records a failure with pass_fail (pass.h) */
struct pass;
/* The reference *slot held by owner: 0 ok, 1 failure recorded, -1 error. */
int chk_ref(struct pass *ps, PyObject *owner, PyObject **slot, int may_copy);
/* Block *slot (nbytes, a PyMem allocation) of owner: moved into the arena if
 * outside, recorded as owner's so that a write to it rechecks owner. */
int chk_own_block(struct pass *ps, PyObject *owner, void **slot, size_t nbytes);
int chk_in_area(struct pass *ps, const void *p);
/* Release a PyMem block outside the arena the walk took out of an object. */
void chk_free_block(struct pass *ps, void *p);

/* Check instance op of known C type `kind` (laid out as it): 0, 1 after
 * recording a failure, -1 on error. */
int ht_check(struct pass *ps, enum ht_kind kind, PyObject *op);

#endif
