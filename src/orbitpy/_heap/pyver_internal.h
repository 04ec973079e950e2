/*
 * pyver_internal.h - CPython's internal headers, for the files that need
 * them (pyver_layout.c, pyver_freelists.c, pyver_gc.c, pyver_caches.c) and
 * nothing else.
 */
#ifndef ORBITPY_PYVER_INTERNAL_H
#define ORBITPY_PYVER_INTERNAL_H

#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#endif
#include "pyver.h"
/* Internal headers are not written for -Wextra. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include "internal/pycore_dict.h"
#include "internal/pycore_object.h"
#include "internal/pycore_interp.h"
#pragma GCC diagnostic pop

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030E0000
#error "orbitpy supports CPython 3.11 to 3.13"
#endif
#ifdef Py_GIL_DISABLED
#error "orbitpy needs a CPython built with the GIL"
#endif

#endif
