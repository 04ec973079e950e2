/*
 * static_image.h - the interpreter's statically allocated objects (None,
 * small ints, builtin types, ...): they sit at the same address, unchanged,
 * in every process, so an orbit may follow a reference to one.
 */
#ifndef ORBITPY_STATIC_IMAGE_H
#define ORBITPY_STATIC_IMAGE_H

/* Is op a statically allocated interpreter object? */
int chk_is_static(const void *op);

#endif
