# The parts of the CPython C API _core.pyx uses that Cython's own cpython/*.pxd
# do not declare (or not as nogil).

cdef extern from "Python.h":
    ctypedef struct PyThreadState
    # Declared nogil: the C core calls these through hooks at points where it
    # knows whether the GIL is held (see csrc/hooks.c).
    PyThreadState *PyEval_SaveThread() nogil
    void PyEval_RestoreThread(PyThreadState *) nogil
    void PyOS_BeforeFork() nogil
    void PyOS_AfterFork_Parent() nogil
    void PyOS_AfterFork_Child() nogil
    int PyErr_CheckSignals()
    int PyGC_Disable() nogil
    int PyGC_Enable() nogil
    object PyMemoryView_FromMemory(char *mem, Py_ssize_t size, int flags)
    int PyBUF_READ
    int PyBUF_WRITE
