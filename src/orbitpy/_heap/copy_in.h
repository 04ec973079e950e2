/*
 * copy_in.h - copying an immutable value from outside the arena into it, so
 * that an arena object referring to the value can refer to the copy, which
 * the orbit has, instead.
 */
#ifndef ORBITPY_COPY_IN_H
#define ORBITPY_COPY_IN_H

#include "pass.h"

/* Can op be copied in: str, bytes, int, float, complex, bool, and tuples
 * and frozensets of those (or of arena and static objects)? */
int copy_in_possible(PyObject *op);

/* A new reference to the arena copy of op (copy_in_possible), made in ps's
 * area, or op itself if it is static or in an arena.  One copy per value per
 * pass.  NULL with an exception set (MemoryError when the arena is full). */
PyObject *copy_in(struct pass *ps, PyObject *op);

#endif
