/*
 * class_registry.h - the classes orbits have: each class alive when an
 * orbit was forked is registered with the epoch of that fork and its state
 * then (class_state.h), so that a check can tell whether an orbit forked at
 * some epoch has a class as main has it now.
 */
#ifndef ORBITPY_CLASS_REGISTRY_H
#define ORBITPY_CLASS_REGISTRY_H

#include "pyver.h"

/* Record the classes alive now as present in orbits forked from now on;
 * returns the epoch of those orbits.  `types` is a list of heap types. */
uint64_t chk_register_types(PyObject *types);
/* A registered class died: its address may be reused. */
void chk_forget_type(uintptr_t addr);

/* Is tp registered?  *born: the epoch it was first registered at. */
int creg_known(PyTypeObject *tp, uint64_t *born);
/*
 * Does an orbit forked at `epoch` have class tp, and every class in its MRO,
 * as main has them now?  0 if so; else 1 and why in buf.
 */
int creg_changed(PyTypeObject *tp, uint64_t epoch, char *buf, size_t size);
/* Keep tp (if registered) on the list of classes checked objects use, which
 * creg_referenced() walks: 0, or -1 when out of memory. */
int creg_note_referenced(PyTypeObject *tp);
/* The i-th class checked objects use (i < creg_nreferenced()). */
size_t creg_nreferenced(void);
PyTypeObject *creg_referenced(size_t i);
/* The shared keys `keys` belong to a registered class: 1 and the epoch its
 * current state was registered at and how many entries the keys had then;
 * else 0. */
int creg_keys(void *keys, uint64_t *epoch, Py_ssize_t *nentries);

#endif
