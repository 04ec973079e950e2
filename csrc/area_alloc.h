/*
 * area_alloc.h - a first-fit allocator whose every byte of metadata lives in
 * the memory it manages, so that a page snapshot of an area is a consistent
 * snapshot of its allocator too.
 */
#ifndef ORBIT_AREA_ALLOC_H
#define ORBIT_AREA_ALLOC_H

#include <stddef.h>

/* Lay out an empty heap over [base, base+size). */
void area_alloc_init(void *base, size_t size);
/* NULL when there is no room.  Not thread-safe: callers lock. */
void *area_alloc(void *base, size_t size);
void area_free(void *base, void *ptr);
/* Bytes handed out (headers included) and the number of live blocks. */
void area_alloc_usage(void *base, size_t *used, size_t *count);
/* Does ptr point at a live block of this heap? */
int area_alloc_owns(void *base, const void *ptr);
/* Payload bytes of the live block at ptr, 0 if ptr is not one. */
size_t area_alloc_usable(void *base, const void *ptr);
/* Offset of the first byte never handed out: every block lies below it. */
size_t area_alloc_top(const void *base);

#endif
