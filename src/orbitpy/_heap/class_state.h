/*
 * class_state.h - what a class defined in Python looked like when an orbit
 * was forked, so that a later check can tell whether the orbit's copy of the
 * class still behaves as main's does.
 *
 * A class's version tag changes on every change to it, including writes of
 * attributes that only cache something (copyreg's __slotnames__, written the
 * first time an instance is pickled or copied).  A snapshot of the class's
 * own state (its dict, bases, name, metaclass) tells those apart: a class
 * whose state differs from its snapshot only in benign attributes (the accept
 * list, chk_benign_attr) is the class the orbit has.
 */
#ifndef ORBITPY_CLASS_STATE_H
#define ORBITPY_CLASS_STATE_H

#include "pyver.h"

struct class_snap;

/* The state of heap type tp now, or NULL when out of memory (no exception
 * left set).  Runs no Python code when the collector is disabled (it makes
 * weak references, which may start a collection). */
struct class_snap *class_snap_take(PyTypeObject *tp);
void class_snap_free(struct class_snap *s);

/* 1 if tp's state is s's but for benign attributes, else 0.  Runs no Python
 * code and allocates nothing. */
int class_snap_same(const struct class_snap *s, PyTypeObject *tp);

/* Say what differs between s and tp now ("attribute 'x' rebound, ..."), in
 * buf (always NUL-terminated).  Runs no Python code. */
void class_snap_diff(const struct class_snap *s, PyTypeObject *tp, char *buf, size_t size);

/* Does attribute `name` of a class, holding `value`, only cache something
 * that changes no behaviour, so that writing it is no change to the class? */
int chk_benign_attr(PyObject *name, PyObject *value);

#endif
