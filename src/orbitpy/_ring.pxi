# _ring.pxi (included by _core.pyx) - a ring of fixed-size records in an
# arena buffer: main appends one per event (a command's timing, a request's
# route and latency), an orbit reads the records added since its last call.
#
# Why in C: a service appends one record per request, so the append is on
# its hot path.  The same thing in Python (struct.pack_into of a slice, the
# ring arithmetic, a method call) costs ~1-2 us; here ~0.2 us.  Appending
# allocates nothing, in the arena or outside it, and writes the same few
# pages again and again: an orbit call copies only those.
#
# Layout (little endian, the buffer's start 8-aligned):
#   header (RING_HEADER bytes): magic u64, slots u64, fields u32,
#       payload u32, slot_size u64, next u64 (records appended so far)
#   slots: seq i64, `fields` i64 values, payload length u32, 4 bytes of
#       padding, `payload` bytes; slot_size rounded up to 8.
# A slot holds the record whose seq it says: a reader takes records
# start..end-1 still in the ring (older ones were overwritten).

from libc.stdint cimport int64_t, uint32_t
from libc.string cimport memcpy
from cpython.buffer cimport PyBUF_WRITABLE, PyBUF_SIMPLE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.pyport cimport PY_SSIZE_T_MAX

cdef enum:
    RING_HEADER = 48
    RING_MAX_FIELDS = 4

cdef uint64_t RING_MAGIC = 0x31474e495242524fULL   # "ORBRING1"


cdef class Ring:
    """A ring of fixed-size records in an arena buffer (see the module notes)."""
    cdef Py_buffer _view
    cdef bint _held
    cdef char *_base
    cdef readonly object buffer
    cdef readonly Py_ssize_t slots, fields, payload, slot_size
    cdef uint64_t _next

    def __cinit__(self):
        self._held = False

    def __init__(self, buffer, Py_ssize_t slots, Py_ssize_t fields=3, Py_ssize_t payload=0):
        cdef Py_ssize_t slot_size
        if slots <= 0:
            raise ValueError(f"a ring needs at least 1 slot, got {slots}")
        if not 0 <= fields <= RING_MAX_FIELDS:
            raise ValueError(f"fields must be 0..{RING_MAX_FIELDS}, got {fields}")
        if not 0 <= payload <= 0xFFFFFFFF:
            raise ValueError(f"payload must be 0..{0xFFFFFFFF} bytes, got {payload}")
        slot_size = (8 + 8 * fields + 8 + payload + 7) & ~7
        PyObject_GetBuffer(buffer, &self._view, PyBUF_WRITABLE | PyBUF_SIMPLE)
        self._held = True
        if self._view.len < RING_HEADER + slots * slot_size:
            need = RING_HEADER + slots * slot_size
            raise ValueError(f"the buffer holds {self._view.len} bytes; {slots} slots of "
                             f"{slot_size} need {need} (Ring.size_for gives it)")
        if (<size_t>self._view.buf) & 7:
            raise ValueError("the buffer must start 8-byte aligned (an arena buffer does)")
        self._base = <char *>self._view.buf
        self.buffer = buffer
        self.slots, self.fields, self.payload, self.slot_size = slots, fields, payload, slot_size
        self._next = 0
        (<uint64_t *>self._base)[0] = RING_MAGIC
        (<uint64_t *>self._base)[1] = <uint64_t>slots
        (<uint32_t *>(self._base + 16))[0] = <uint32_t>fields
        (<uint32_t *>(self._base + 20))[0] = <uint32_t>payload
        (<uint64_t *>(self._base + 24))[0] = <uint64_t>slot_size
        (<uint64_t *>(self._base + 32))[0] = 0

    def __dealloc__(self):
        if self._held:
            PyBuffer_Release(&self._view)

    @staticmethod
    def size_for(Py_ssize_t slots, Py_ssize_t fields=3, Py_ssize_t payload=0):
        """Bytes of buffer a ring of `slots` records needs."""
        return RING_HEADER + slots * ((8 + 8 * fields + 8 + payload + 7) & ~7)

    @property
    def next(self):
        """Records appended so far (the seq the next one gets)."""
        return self._next

    def append(self, int64_t a=0, int64_t b=0, int64_t c=0, int64_t d=0, data=None,
               Py_ssize_t start=0, Py_ssize_t end=PY_SSIZE_T_MAX):
        """Append a record: the ring's first `fields` of a, b, c, d, and
        data[start:end] cut to the payload size (bytes, bytearray or any
        buffer).  Returns its seq."""
        cdef uint64_t seq = self._next
        cdef char *slot = self._base + RING_HEADER + <Py_ssize_t>(seq % <uint64_t>self.slots) * self.slot_size
        cdef int64_t *v = <int64_t *>(slot + 8)
        cdef Py_ssize_t n = 0, size
        cdef const char *src = NULL
        cdef Py_buffer view
        cdef bint held = False
        cdef int nf = <int>self.fields
        if nf > 0:
            v[0] = a
        if nf > 1:
            v[1] = b
        if nf > 2:
            v[2] = c
        if nf > 3:
            v[3] = d
        if data is not None and self.payload:
            if type(data) is bytearray:
                src, size = PyByteArray_AS_STRING(data), PyByteArray_GET_SIZE(data)
            elif type(data) is bytes:
                src, size = PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)
            else:
                PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
                held = True
                src, size = <const char *>view.buf, view.len
            if start < 0:
                start = 0
            if end > size:
                end = size
            if end > start:
                n = end - start
                if n > self.payload:
                    n = self.payload
                memcpy(slot + 16 + 8 * nf, src + start, <size_t>n)
            if held:
                PyBuffer_Release(&view)
        (<uint32_t *>(slot + 8 + 8 * nf))[0] = <uint32_t>n
        (<int64_t *>slot)[0] = <int64_t>seq
        self._next = seq + 1
        (<uint64_t *>(self._base + 32))[0] = self._next
        return seq


def ring_records(buffer, Py_ssize_t start=0, end=None):
    """The records start..end-1 (end: all appended) still in the ring held
    by `buffer`, oldest first, as tuples (seq, field..., payload bytes).
    Reads a snapshot (an orbit's) or, holding the GIL, main's live ring."""
    cdef Py_buffer view
    cdef const char *base
    cdef uint64_t slots, slot_size, nxt, seq, first, last
    cdef uint32_t fields, payload, n
    cdef const char *slot
    cdef Py_ssize_t e
    cdef list out = []
    PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE)
    try:
        base = <const char *>view.buf
        if view.len < RING_HEADER or (<const uint64_t *>base)[0] != RING_MAGIC:
            raise ValueError("not a ring buffer (orbitpy.Ring)")
        slots = (<const uint64_t *>base)[1]
        fields = (<const uint32_t *>(base + 16))[0]
        payload = (<const uint32_t *>(base + 20))[0]
        slot_size = (<const uint64_t *>(base + 24))[0]
        nxt = (<const uint64_t *>(base + 32))[0]
        if fields > RING_MAX_FIELDS or <uint64_t>view.len < RING_HEADER + slots * slot_size:
            raise ValueError("corrupt ring header")
        last = nxt
        if end is not None:
            e = end
            if e < 0:
                e = 0
            if <uint64_t>e < last:
                last = <uint64_t>e
        first = <uint64_t>start if start > 0 else 0
        if last > slots and first < last - slots:
            first = last - slots
        seq = first
        while seq < last:
            slot = base + RING_HEADER + (seq % slots) * slot_size
            if (<const int64_t *>slot)[0] == <int64_t>seq:
                n = (<const uint32_t *>(slot + 8 + 8 * fields))[0]
                if n > payload:
                    n = payload
                rec = [seq]
                for i in range(fields):
                    rec.append((<const int64_t *>(slot + 8))[i])
                rec.append(PyBytes_FromStringAndSize(slot + 16 + 8 * fields, n))
                out.append(tuple(rec))
            seq += 1
    finally:
        PyBuffer_Release(&view)
    return out
