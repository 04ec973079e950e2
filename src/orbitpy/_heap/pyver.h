/*
 * pyver.h - what orbitpy needs to know about how CPython lays out objects and
 * caches memory, behind one interface.  Everything that differs between
 * 3.11, 3.12 and 3.13 lives in pyver_layout.c (object layout),
 * pyver_freelists.c (free lists), pyver_gc.c (the collector's lists) and
 * pyver_caches.c (the type attribute cache, ABC caches); nothing else
 * includes internal headers.
 */
#ifndef ORBITPY_PYVER_H
#define ORBITPY_PYVER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#if PY_VERSION_HEX < 0x030C0000
#include <structmember.h>	/* PyMemberDef */
/* The collector's generation lists (pyver_gc.c).  Generations 0..2; 2 is
 * the oldest, the one a full collection walks. */
#define PYVER_GC_OLDEST 2
/* Move the objects of generation `gen` for which is_parked() is true to a
 * list no collection walks (they stay tracked); how many moved. */
Py_ssize_t pyver_gc_park(int gen, int (*is_parked)(const void *op));
/* Put every parked object back at the end of the oldest generation. */
Py_ssize_t pyver_gc_unpark(void);
/* Objects parked now (walks the list). */
Py_ssize_t pyver_gc_parked(void);

#endif

/* Bytes an object of this type keeps in front of its address (GC links,
 * managed dict pointers): the block the allocator handed out starts there. */
size_t pyver_preheader(PyTypeObject *tp);

/* Attribute storage of an instance of a class defined in Python. */
struct pyver_inst {
	PyObject **dict_slot;	/* where its __dict__ pointer lives, or NULL */
	PyObject **values;	/* attribute values indexed like `keys`, or NULL */
	Py_ssize_t nvalues;	/* entries of `values` that may be set */
	void *values_block;	/* allocation holding `values`, NULL when inline */
	void *keys;		/* the class's shared keys `values` follow */
};
void pyver_inst(PyObject *op, struct pyver_inst *out);

/* A dict's tables. */
struct pyver_dict {
	void *keys;		/* the keys object (an allocation of keys_size) */
	size_t keys_size;
	int split;		/* keys shared with a class, values in `values` */
	char *entries;		/* entry array inside keys */
	size_t entry_size;
	Py_ssize_t nentries;
	size_t key_off, value_off;	/* offsets of the pointers in an entry */
	PyObject **values;	/* split: the values */
	void *values_block;	/* split: allocation holding them, NULL when
				 * embedded in an instance */
};
void pyver_dict(PyDictObject *d, struct pyver_dict *out);
/* Entries a keys object has used so far (shared keys only grow). */
Py_ssize_t pyver_keys_nentries(void *keys);
/* Number of dicts sharing a keys object. */
Py_ssize_t pyver_keys_refcnt(void *keys);
/* The class's shared keys, or NULL. */
void *pyver_type_shared_keys(PyTypeObject *tp);
/* The type's version tag, assigned now if it has none; 0 when none can be. */
unsigned int pyver_type_version(PyTypeObject *tp);

/* The dict of interned strings (borrowed), or NULL where unreachable. */
PyObject *pyver_interned_dict(void);

/* Does this member (a __slots__ entry) hold an object reference? */
int pyver_member_is_object(const PyMemberDef *m);

/* Since 3.12 the interpreter has immortal objects: reference counting skips
 * them, so reading one writes nothing to its memory. */
#define PYVER_HAS_IMMORTAL (PY_VERSION_HEX >= 0x030C0000)
/* Give the object (a copy in an orbit's snapshot, never main's object) an
 * immortal reference count; a no-op where there are none. */
void pyver_make_immortal(PyObject *copy);

/* From now on, floats, tuples, lists and dicts are made and freed through
 * the allocator, never recycled on free lists (see pyver_freelists.c).
 * Call again after every full collection, which reopens them. */
void pyver_freelists_off(void);

/* The collector's generation lists (pyver_gc.c).  Generations 0..2; 2 is
 * the oldest, the one a full collection walks. */
#define PYVER_GC_OLDEST 2
/* Move the objects of generation `gen` for which is_parked() is true to a
 * list no collection walks (they stay tracked); how many moved. */
Py_ssize_t pyver_gc_park(int gen, int (*is_parked)(const void *op));
/* Put every parked object back at the end of the oldest generation. */
Py_ssize_t pyver_gc_unpark(void);
/* Objects parked now (walks the list). */
Py_ssize_t pyver_gc_parked(void);
/* Only for an orbit's fork image (heap_fork_scrub.c), with the collector
 * off: unlink the objects for which is_dropped() is true from the
 * generations and the permanent generation, leaving their own links as
 * they are (they are not on any list of this process any more). */
Py_ssize_t pyver_gc_drop(int (*is_dropped)(const void *op));

/* ---- interpreter caches (pyver_caches.c) */

/* Empty the entries of the type attribute cache whose name or value
 * satisfies pred(); the names they held are not released (an orbit's fork
 * image must not run deallocators on them). */
void pyver_type_cache_forget(int (*pred)(const void *p));
/* abc: the class's _abc_impl (an _abc._abc_data, private to Modules/_abc.c,
 * the same in 3.11, 3.12 and 3.13).  0 when tp is laid out as the mirror. */
int pyver_abc_data_layout_ok(PyTypeObject *tp);
/* Where it keeps its positive and negative caches (sets of weak
 * references, made on first use: NULL before). */
void pyver_abc_caches(PyObject *impl, PyObject ***cache, PyObject ***negative);

/* ---- C types of the standard library whose instances arenas may hold.
 * Their structs are private to their modules; pyver_layout.c mirrors them
 * and refuses a type whose size says the mirror is wrong (0: the layout is
 * the mirrored one). */

/* collections.deque: a doubly linked list of fixed-size blocks, each a
 * PyMem allocation, plus a cache of spare blocks. */
#define PYVER_DEQUE_BLOCKLEN 64
struct pyver_deque_block {
	struct pyver_deque_block *left;
	PyObject *items[PYVER_DEQUE_BLOCKLEN];
	struct pyver_deque_block *right;
};
struct pyver_deque {
	struct pyver_deque_block **leftblock, **rightblock;	/* fields of the deque */
	Py_ssize_t leftindex, rightindex;	/* first and last item (inclusive) */
	Py_ssize_t len;
	Py_ssize_t *nfree;			/* spare blocks */
	struct pyver_deque_block **freeblocks;
};
int pyver_deque_layout_ok(PyTypeObject *tp);
void pyver_deque(PyObject *op, struct pyver_deque *out);

/* collections.defaultdict: a dict and its default_factory. */
int pyver_defaultdict_layout_ok(PyTypeObject *tp);
PyObject **pyver_defaultdict_factory(PyObject *op);

/* datetime.timezone: an offset (timedelta) and an optional name (str). */
int pyver_timezone_layout_ok(PyTypeObject *tp);
PyObject **pyver_timezone_offset(PyObject *op);
PyObject **pyver_timezone_name(PyObject *op);

/* decimal.Decimal (_decimal): its digits are inline in the object or in a
 * separate allocation (PyMem, as _decimal sets up libmpdec). */
int pyver_decimal_layout_ok(PyTypeObject *tp);
/* The digits and their size in bytes; *inline_ set when in the object. */
void *pyver_decimal_digits(PyObject *op, size_t *nbytes, int *inline_);

/* collections.OrderedDict (Objects/odictobject.c): a dict, a doubly linked
 * list of nodes (PyMem blocks holding the keys, in order) and a table of node
 * pointers that mirrors the dict's entries (a PyMem block). */
struct pyver_odict_node {
	PyObject *key;
	Py_hash_t hash;
	struct pyver_odict_node *next, *prev;
};
struct pyver_odict {
	struct pyver_odict_node **first, **last;	/* fields of the object */
	struct pyver_odict_node ***fast_nodes;
	Py_ssize_t fast_nodes_size;
	PyObject **inst_dict;
};
int pyver_odict_layout_ok(PyTypeObject *tp);
void pyver_odict(PyObject *op, struct pyver_odict *out);

#endif
