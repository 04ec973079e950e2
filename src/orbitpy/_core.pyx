# cython: language_level=3, freethreading_compatible=False
"""Thin binding over the C core (csrc/orbit.h).

Every function here is called with the GIL held; the C core drops it through
the hooks below whenever it waits, so other threads keep running.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.buffer cimport PyBuffer_FillInfo, PyObject_GetBuffer, PyBuffer_Release, PyBUF_FULL_RO
from libc.errno cimport EINTR, ETIMEDOUT, errno
from libc.stdint cimport uint64_t
from libc.stdlib cimport free
from libc.string cimport strerror

from .includes.python cimport *
from .includes.orbit cimport *
from .includes.heap cimport *

E_CRASHED = ORBIT_E_CRASHED
E_TIMEOUT = ORBIT_E_TIMEOUT
E_CLOSED = ORBIT_E_CLOSED
E_RESTART_LIMIT = ORBIT_E_RESTART_LIMIT
E_SKIPPED = ORBIT_E_SKIPPED
E_CANCELLED = ORBIT_E_CANCELLED
E_REFUSED = ORBIT_E_REFUSED
E_ABORTED = ORBIT_E_ABORTED
CALL_SKIP_IF_BUSY = ORBIT_CALL_SKIP_IF_BUSY
CALL_CANCEL_QUEUED = ORBIT_CALL_CANCEL_QUEUED
PAGE_SIZE = orbit_page_size()
MAX_CALL_AREAS = ORBIT_MAX_CALL_AREAS
BACKEND = (<bytes>orbit_backend_name()).decode()


def kernel_has_calls():
    """True when the running kernel has the orbit system calls, in the
    version the C core was built for (the kernel backend's own probe)."""
    return orbit_kernel_has_calls() != 0


class CoreError(Exception):
    """A failed core operation: .code is a positive ORBIT_E_* or errno value,
    .status the wait status of a dead orbit process (-1 if unknown), .cause
    for E_ABORTED the (positive) code of the call the orbit was killed for."""

    def __init__(self, code, status=-1, pid=0, cause=0):
        self.code = code
        self.status = status
        self.pid = pid
        self.cause = cause
        super().__init__(code, (<bytes>orbit_strerror(code)).decode())


# ----------------------------------------------------------------- hooks

cdef void *_block_begin(void *ctx) noexcept nogil:
    return <void *>PyEval_SaveThread()

cdef void _block_end(void *ctx, void *state) noexcept nogil:
    PyEval_RestoreThread(<PyThreadState *>state)

cdef int _interrupted(void *ctx) noexcept with gil:
    # Called while the core has the GIL dropped (between block hooks).
    # Runs the signal handlers of the main thread; a raised exception (e.g.
    # KeyboardInterrupt) stays set and is re-raised by the waiting call.
    return PyErr_CheckSignals() < 0

cdef void _before_fork(void *ctx) noexcept nogil:
    # The GIL is held here (PyOS_BeforeFork needs it).
    with gil:
        try:
            on_fork = (<Orbit>ctx).on_fork
            if on_fork is not None:
                on_fork()
        except BaseException:
            pass                        # advisory (see Orbit.on_fork)
        try:
            if _before_fork_fn is not None:
                (<Orbit>ctx).epoch = _before_fork_fn()
        except BaseException:
            (<Orbit>ctx).epoch = 0      # knows no classes: refuses, never wrong
    PyOS_BeforeFork()

cdef void _after_fork_parent(void *ctx) noexcept nogil:
    PyOS_AfterFork_Parent()

cdef object _child_handler = None

cdef void _after_fork_child(void *ctx) noexcept nogil:
    global _child_handler
    cdef int gc_was_enabled
    # Before any Python code runs: arena objects that were in main's
    # collector lists at fork time are unreadable until the first call maps
    # the orbit's view, and their links will point at main-only memory.
    gc_was_enabled = PyGC_Disable()
    heap_after_fork_orbit()
    PyOS_AfterFork_Child()
    with gil:
        _child_handler = (<Orbit>ctx).handler
        # Still the fork's private copy of the areas here (they are reset
        # right after this hook): cut the links from interpreter-wide state
        # (caches, module globals' tables, the collector's lists) into the
        # arenas (_heap/heap_fork_scrub.c); then park what the collector
        # knew at fork time in the permanent generation, which it never
        # walks, and let it run over what the orbit makes itself.
        heap_fork_scrub()
        import gc
        gc.freeze()
        if gc_was_enabled:
            gc.enable()

cdef struct call_check:
    # What a call's check needs, on the stack of Orbit.call_async for the
    # call: borrowed references, alive for as long as the call is issued.
    PyObject *plan              # the CallPlan
    PyObject *orbit             # the Orbit; its epoch is read when the check
                                # runs (a fork during the call changes it)

cdef int _check_call(void *ctx) noexcept with gil:
    # The call's check (orbit_call_async_checked): right before the snapshot,
    # GIL held, nothing waits in between; runs no Python code, so no other
    # thread runs until the snapshot is taken.
    cdef call_check *c = <call_check *>ctx
    return heap_precall(<CallPlan>c.plan, (<Orbit>c.orbit).epoch)

# Called before each orbit fork, GIL held; returns the orbit's epoch (the
# classes its process has: see _heap.pxi).  Set by the orbitpy._heap package.
cdef object _before_fork_fn = None


def set_before_fork(fn):
    """Make fn() (or None) what runs before each orbit process is forked; its
    int result is the orbit's epoch, the classes the process will have (an
    exception or no fn: epoch 0, which knows no classes)."""
    global _before_fork_fn
    _before_fork_fn = fn


cdef long _py_entry(void *arg, size_t argsize, void *store) noexcept with gil:
    cdef bytes payload
    try:
        status, payload = _child_handler(PyBytes_FromStringAndSize(<char *>arg, argsize))
        if payload:
            orbit_return_data(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))
        return status
    except BaseException:
        import os
        import traceback
        traceback.print_exc()
        os._exit(ORBIT_EXIT_RUNNER_RAISED)


cdef int _reraise_pending() except -1:
    return -1


cdef int _timeout_ms(timeout) except -2:
    if timeout is None:
        return -1
    t = float(timeout)
    if t < 0:
        t = 0
    return int(min(t * 1000.0, 2**31 - 1))


# ----------------------------------------------------------------- areas

cdef class Area:
    """An area: a range of memory snapshotted into orbits page by page.
    It is unmapped only by destroy(), never by garbage collection: buffers
    may still point into it."""
    cdef orbit_area *a
    cdef object __weakref__

    def __cinit__(self, size_t size, str mode="auto"):
        # The mode is a hint the backend interprets (see orbit_area_create).
        cdef bytes hint = mode.encode()
        self.a = orbit_area_create(size, hint)
        if self.a is NULL:
            raise OSError(errno, strerror(errno).decode())

    @property
    def address(self):
        self._check()
        return <size_t>orbit_area_base(self.a)

    @property
    def size(self):
        self._check()
        return orbit_area_size(self.a)

    @property
    def mode(self):
        self._check()
        return (<bytes>orbit_area_mode(self.a)).decode()

    @property
    def alive(self):
        return self.a is not NULL

    cdef _check(self):
        if self.a is NULL:
            raise ValueError("the area is closed")

    def confine_writes(self):
        # Main writes this area only inside its allocations (orbit.h): the
        # backend need not look above the allocator's high-water mark.
        self._check()
        cdef int rc = orbit_area_confine_writes(self.a)
        if rc < 0:
            raise OSError(-rc, strerror(-rc).decode())

    def free(self, size_t addr):
        if self.a is not NULL:
            orbit_free(self.a, <void *>addr)

    def stats(self):
        cdef c_area_stats st
        self._check()
        orbit_area_stats(self.a, &st)
        return st.size, st.used, st.allocations

    def destroy(self):
        if self.a is not NULL:
            orbit_area_destroy(self.a)
            self.a = NULL


cdef class Block:
    """size bytes allocated in an area, exporting the buffer protocol; the
    memory returns to the area when the last view of it is gone."""
    cdef Area area
    cdef char *p
    cdef Py_ssize_t n

    def __cinit__(self, Area area, Py_ssize_t n):
        area._check()
        self.area = area
        self.n = n
        self.p = <char *>orbit_alloc(area.a, <size_t>n)
        if self.p is NULL:
            raise MemoryError(n)

    def __getbuffer__(self, Py_buffer *buf, int flags):
        PyBuffer_FillInfo(buf, self, self.p, self.n, 0, flags)

    def __dealloc__(self):
        if self.p is not NULL and self.area is not None:
            self.area.free(<size_t>self.p)


def rearm_fault_handler():
    """Put the backend's fault handler back on top (a backend extra: the
    userspace backend's mprotect mode; nothing for other backends)."""
    orbit_rearm_fault_handler()


def reservation_size():
    return orbit_reservation_size()


def set_background_sync(unsigned int ms):
    """Set the period (ms) of the copying between calls; 0 stops it (and
    waits for a pass in progress).  Returns the previous period."""
    cdef long prev
    with nogil:
        prev = orbit_set_background_sync(ms)
    if prev < 0:
        raise OSError(-prev, "this backend does no copying between calls")
    return prev


def memory_at(size_t addr, Py_ssize_t n, bint readonly=False):
    """A memoryview of n bytes at addr (in this process's address space)."""
    return PyMemoryView_FromMemory(<char *>addr, n, PyBUF_READ if readonly else PyBUF_WRITE)


def buffer_address(obj):
    """(address, nbytes, contiguous) of an object's buffer."""
    cdef Py_buffer view
    PyObject_GetBuffer(obj, &view, PyBUF_FULL_RO)
    try:
        contiguous = view.suboffsets == NULL and (
            view.strides == NULL or view.ndim <= 1 and view.strides[0] == view.itemsize
            or _c_contig(&view))
        return <size_t>view.buf, view.len, contiguous
    finally:
        PyBuffer_Release(&view)


cdef bint _c_contig(Py_buffer *v):
    cdef Py_ssize_t expect = v.itemsize
    cdef int i
    for i in range(v.ndim - 1, -1, -1):
        if v.shape[i] > 1 and v.strides[i] != expect:
            return False
        expect *= v.shape[i]
    return True


# ----------------------------------------------------------------- orbits

cdef Py_ssize_t _area_array(list areas, orbit_area **arr) except -1:
    # The core areas of a list of live Areas, into arr (ORBIT_MAX_CALL_AREAS
    # slots): what a call or a warm-up names.
    cdef Py_ssize_t n = len(areas), i
    if n > ORBIT_MAX_CALL_AREAS:
        raise ValueError(f"at most {ORBIT_MAX_CALL_AREAS} areas per call")
    for i in range(n):
        (<Area>areas[i])._check()
        arr[i] = (<Area>areas[i]).a
    return n


cdef class Orbit:
    """One orbit: a process started on demand that runs handler(arg_bytes)
    -> (status, payload_bytes) for each call."""
    cdef orbit *ob
    cdef orbit_hooks hooks
    cdef object handler
    cdef uint64_t epoch            # classes the process has (see _heap.pxi)
    # Called in main right before each orbit process is forked, GIL held
    # through the fork (what it records is what the process sees); its
    # exceptions are ignored.
    cdef public object on_fork

    def __cinit__(self, str name, object handler, int timeout_ms=0, int nice=0,
                  uint64_t cpu_mask=0, size_t memory_limit=0, bint harden=False,
                  bint restart=True,
                  int restart_limit=5, int backoff_ms=10, int max_backoff_ms=1000,
                  tuple keep_fds=()):
        cdef orbit_options o
        cdef int keep[256]
        orbit_options_init(&o)
        if len(keep_fds) > 256:
            raise ValueError("at most 256 descriptors to keep")
        for i, fd in enumerate(keep_fds):
            keep[i] = fd
        o.keep_fds = keep
        o.nkeep_fds = len(keep_fds)
        o.timeout_ms = timeout_ms
        o.nice = nice
        o.cpu_mask = cpu_mask
        o.memory_limit = memory_limit
        o.harden = harden
        o.restart = restart
        o.restart_limit = restart_limit
        o.backoff_ms = backoff_ms
        o.max_backoff_ms = max_backoff_ms
        self.hooks.before_fork = _before_fork
        self.hooks.after_fork_parent = _after_fork_parent
        self.hooks.after_fork_child = _after_fork_child
        self.hooks.block_begin = _block_begin
        self.hooks.block_end = _block_end
        self.hooks.interrupted = _interrupted
        self.hooks.ctx = <void *>self
        o.hooks = &self.hooks
        self.handler = handler
        self.ob = orbit_create(name.encode(), _py_entry, NULL, &o)
        if self.ob is NULL:
            raise OSError(errno, strerror(errno).decode())

    def __dealloc__(self):
        if self.ob is not NULL:
            orbit_destroy(self.ob)
            self.ob = NULL

    cdef _check(self):
        if self.ob is NULL:
            raise CoreError(ORBIT_E_CLOSED)

    def call_async(self, bytes arg, list areas, int flags=0, CallPlan plan=None):
        """plan, if given, holds the call's pre-call checks: they run right
        before the snapshot is taken, in one step with it for every other
        Python thread; a call they refuse raises plan.error()."""
        cdef orbit_area *arr[ORBIT_MAX_CALL_AREAS]
        cdef Py_ssize_t n
        cdef orbit_future *f
        cdef int err
        cdef call_check check
        self._check()
        n = _area_array(areas, arr)
        if plan is None:
            f = orbit_call_async(self.ob, flags, <size_t>n, arr, NULL,
                                 PyBytes_AS_STRING(arg), <size_t>PyBytes_GET_SIZE(arg))
        else:
            check.plan = <PyObject *>plan
            check.orbit = <PyObject *>self
            f = orbit_call_async_checked(self.ob, flags, <size_t>n, arr, NULL,
                                         PyBytes_AS_STRING(arg),
                                         <size_t>PyBytes_GET_SIZE(arg), _check_call, &check)
        err = errno
        if plan is not None:
            del plan.dropped[:]         # may run finalizers: after the snapshot
        if f is NULL:
            if err == ORBIT_E_REFUSED and plan is not None and plan.refusal is not None:
                raise plan.error()
            raise CoreError(err)
        fut = CoreFuture.__new__(CoreFuture)
        (<CoreFuture>fut).f = f
        (<CoreFuture>fut).owner = self
        return fut

    def warm(self, list areas):
        # Start the process if none runs and set up its copies of `areas`
        # now (orbit_warm); the GIL is held for the start, released by the
        # core's block hooks for the copies.
        cdef orbit_area *arr[ORBIT_MAX_CALL_AREAS]
        cdef Py_ssize_t n
        cdef int rc
        self._check()
        n = _area_array(areas, arr)
        rc = orbit_warm(self.ob, <size_t>n, arr)
        if rc < 0:
            raise CoreError(-rc)

    def restart(self):
        self._check()
        orbit_restart(self.ob)

    def close(self):
        if self.ob is not NULL:
            ob = self.ob
            self.ob = NULL
            orbit_destroy(ob)

    @property
    def closed(self):
        return self.ob is NULL

    @property
    def pid(self):
        return orbit_pid(self.ob) if self.ob is not NULL else 0

    def stats(self):
        cdef c_orbit_stats st
        self._check()
        orbit_stats(self.ob, &st)
        return {"calls": st.calls, "pages_copied": st.pages_copied,
                "pages_reset": st.pages_reset, "bytes_synced": st.bytes_synced,
                "restarts": st.restarts, "crashes": st.crashes,
                "full_syncs": st.full_syncs, "crashes_in_row": st.crashes_in_row,
                "failed": st.failed, "timeouts": st.timeouts, "cancelled": st.cancelled}


cdef class CoreFuture:
    cdef orbit_future *f
    cdef object owner

    def __dealloc__(self):
        if self.f is not NULL:
            orbit_future_release(self.f)

    def wait(self, timeout=None):
        """(retval, payload) once the call ended; raises CoreError, or
        TimeoutError if it is still pending after timeout seconds."""
        cdef long ret = 0
        cdef size_t n = 0
        cdef const void *data
        cdef int rc = orbit_future_wait(self.f, _timeout_ms(timeout), &ret)
        if rc == -EINTR:  # a signal handler raised: re-raise its exception
            _reraise_pending()
        if rc == -ETIMEDOUT:
            raise TimeoutError("the orbit call is still running")
        if rc < 0:
            raise CoreError(-rc, orbit_future_status(self.f), orbit_future_pid(self.f),
                            -orbit_future_cause(self.f))
        data = orbit_future_data(self.f, &n)
        return ret, (PyBytes_FromStringAndSize(<const char *>data, n) if n else b"")

    def set_timeout(self, timeout):
        """Limit this call to timeout seconds from when it starts running
        (None: the orbit's timeout)."""
        cdef int ms = 0 if timeout is None else max(1, _timeout_ms(timeout))
        orbit_future_set_timeout(self.f, ms)

    def cancel(self, bint kill):
        """True if the call was cancelled: a queued call always is; the
        oldest call (perhaps running) only with kill, by killing the orbit."""
        cdef int rc = orbit_future_cancel(self.f, ORBIT_CANCEL_KILL if kill else 0)
        if rc < 0:
            raise CoreError(-rc)
        return rc == 1

    def pull(self, timeout=None):
        """(True, update) or (False, None) once the call ended and every
        update was taken."""
        cdef void *data = NULL
        cdef size_t n = 0
        cdef int rc = orbit_pull(self.f, _timeout_ms(timeout), &data, &n)
        if rc == -EINTR:
            _reraise_pending()
        if rc == -ETIMEDOUT:
            raise TimeoutError("no update yet")
        if rc < 0:
            raise CoreError(-rc, orbit_future_status(self.f), orbit_future_pid(self.f))
        if rc == 0:
            return False, None
        try:
            return True, PyBytes_FromStringAndSize(<const char *>data, n)
        finally:
            free(data)


def in_orbit():
    return bool(orbit_in_orbit())


def push(bytes data):
    cdef int rc = orbit_push(PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data))
    if rc < 0:
        raise CoreError(-rc)


include "_heap.pxi"
include "_heap_scope.pxi"
include "_ring.pxi"
