/*
 * static_image.c - where the interpreter's static objects are (see
 * static_image.h): the address range of the image holding None.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyver.h"
#include "static_image.h"

static char *static_lo, *static_hi;
static int looked;	/* the range is looked up once, failed or not */

/* The interpreter's static objects live in the image holding None. */
static void find_static_range(void)
{
	Dl_info info;
	char line[4096], path[4096];
	FILE *f;

	looked = 1;
	if (!dladdr((void *)Py_None, &info) || !info.dli_fname)
		return;
	if (!realpath(info.dli_fname, path))
		snprintf(path, sizeof(path), "%s", info.dli_fname);
	f = fopen("/proc/self/maps", "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char *name = strchr(line, '/');

		if (!name || sscanf(line, "%lx-%lx", &lo, &hi) != 2)
			continue;
		name[strcspn(name, "\n")] = 0;
		if (strcmp(name, path))
			continue;
		if (!static_lo || (char *)lo < static_lo)
			static_lo = (char *)lo;
		if ((char *)hi > static_hi)
			static_hi = (char *)hi;
	}
	fclose(f);
}

int chk_is_static(const void *op)
{
	if (__builtin_expect(!looked, 0))
		find_static_range();
	return (const char *)op >= static_lo && (const char *)op < static_hi;
}
