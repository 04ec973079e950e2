/*
 * heap_outside.c - interpreter work a thread does inside `with arena:` that
 * is not the program's arena state, run outside the arena's scope.
 *
 * A thread inside `with arena:` makes everything it allocates in the arena,
 * and some of that is the interpreter's: a module imported for the first
 * time there (lazily, by the code the block runs: warnings imports linecache
 * and tracemalloc to show a warning, datetime.strptime imports _strptime)
 * would be made in the arena with its functions, classes and caches, and
 * sys.modules would point there; an orbit whose call maps no arena faults
 * on it, and main would lose it with the arena.  Such work is found where it
 * starts, a Python-level entry point the interpreter looks up each time
 * (importlib._bootstrap._find_and_load, run only for a module not imported
 * yet; warnings._showwarnmsg), and is wrapped in a builtin that turns the
 * thread's arena scope off around it.  The cost is one C call when the work
 * runs, none elsewhere.  (Interpreter state that the work fills before such
 * an entry point, or through none, is cut off in new orbits instead:
 * heap_fork_scrub.c.)
 */
#include "heap.h"

static PyObject *call_outside(PyObject *fn, PyObject *const *args, size_t nargsf,
			      PyObject *kwnames)
{
	struct heap_area *prev = heap_current();
	PyObject *r;

	heap_set_current(NULL);
	r = PyObject_Vectorcall(fn, args, nargsf, kwnames);
	heap_set_current(prev);
	return r;
}

static PyObject *call_outside_fast(PyObject *fn, PyObject *const *args, Py_ssize_t nargs,
				   PyObject *kwnames)
{
	return call_outside(fn, args, (size_t)nargs, kwnames);
}

static PyMethodDef outside_def = {
	"outside_arenas",
	(PyCFunction)(void (*)(void))call_outside_fast,
	METH_FASTCALL | METH_KEYWORDS,
	"Call __self__ with the calling thread's arena scope off.",
};

PyObject *heap_outside_arenas(PyObject *fn)
{
	return PyCFunction_New(&outside_def, fn);
}
