/*
 * pyver_layout.c - object layouts of CPython 3.11, 3.12 and 3.13.
 *
 * The checks that keep orbits from reading memory they do not have must see
 * the pointers inside dicts and instances exactly; the public API hides them
 * (and may allocate while looking), so this file reads the internal headers
 * of the CPython it is compiled for.
 */
#include "pyver_internal.h"

#define USABLE_FRACTION(n) (((n) << 1) / 3)

size_t pyver_preheader(PyTypeObject *tp)
{
	return _PyType_PreHeaderSize(tp);
}

void *pyver_type_shared_keys(PyTypeObject *tp)
{
	if (!(tp->tp_flags & Py_TPFLAGS_HEAPTYPE))
		return NULL;
	return ((PyHeapTypeObject *)tp)->ht_cached_keys;
}

Py_ssize_t pyver_keys_nentries(void *keys)
{
	return ((PyDictKeysObject *)keys)->dk_nentries;
}

Py_ssize_t pyver_keys_refcnt(void *keys)
{
	return ((PyDictKeysObject *)keys)->dk_refcnt;
}

#if PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000
/* 3.12 allocates split values behind a prefix whose last byte is its size. */
static void *values_block_312(PyDictValues *v)
{
	return (char *)v - ((uint8_t *)v)[-1];
}
#endif

void pyver_inst(PyObject *op, struct pyver_inst *out)
{
	PyTypeObject *tp = Py_TYPE(op);

	memset(out, 0, sizeof(*out));
	if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
		void *keys = pyver_type_shared_keys(tp);
#if PY_VERSION_HEX < 0x030C0000
		PyDictValues *v = *_PyObject_ValuesPointer(op);

		out->dict_slot = _PyObject_ManagedDictPointer(op);
		if (v && keys) {
			out->values = v->values;
			out->values_block = v;
		}
#elif PY_VERSION_HEX < 0x030D0000
		PyDictOrValues *dorv = _PyObject_DictOrValuesPointer(op);

		if (_PyDictOrValues_IsValues(*dorv)) {
			PyDictValues *v = _PyDictOrValues_GetValues(*dorv);

			if (keys) {
				out->values = v->values;
				out->values_block = values_block_312(v);
			}
		} else {
			out->dict_slot = &dorv->dict;
		}
#else
		out->dict_slot = (PyObject **)&_PyObject_ManagedDictPointer(op)->dict;
		if ((tp->tp_flags & Py_TPFLAGS_INLINE_VALUES) && keys) {
			PyDictValues *v = _PyObject_InlineValues(op);

			if (v->valid) {
				out->values = v->values;
				out->values_block = NULL;
			}
		}
#endif
		if (out->values) {
			out->keys = keys;
			out->nvalues = pyver_keys_nentries(keys);
		}
	} else if (tp->tp_dictoffset) {
		Py_ssize_t off = tp->tp_dictoffset;

		if (off < 0) {	/* from the end of a variable-size object */
			Py_ssize_t n = Py_SIZE(op);

			off += (Py_ssize_t)_PyObject_VAR_SIZE(tp, n < 0 ? -n : n);
		}
		out->dict_slot = (PyObject **)((char *)op + off);
	}
}

void pyver_dict(PyDictObject *d, struct pyver_dict *out)
{
	PyDictKeysObject *k = d->ma_keys;
	int unicode = k->dk_kind != DICT_KEYS_GENERAL;

	memset(out, 0, sizeof(*out));
	out->keys = k;
	out->entry_size = unicode ? sizeof(PyDictUnicodeEntry) : sizeof(PyDictKeyEntry);
	out->keys_size = sizeof(PyDictKeysObject) + ((size_t)1 << k->dk_log2_index_bytes) +
			 (size_t)USABLE_FRACTION(DK_SIZE(k)) * out->entry_size;
	out->entries = (char *)k->dk_indices + ((size_t)1 << k->dk_log2_index_bytes);
	out->nentries = k->dk_nentries;
	if (unicode) {
		out->key_off = offsetof(PyDictUnicodeEntry, me_key);
		out->value_off = offsetof(PyDictUnicodeEntry, me_value);
	} else {
		out->key_off = offsetof(PyDictKeyEntry, me_key);
		out->value_off = offsetof(PyDictKeyEntry, me_value);
	}
	if (d->ma_values) {
		out->split = 1;
		out->values = d->ma_values->values;
#if PY_VERSION_HEX < 0x030C0000
		out->values_block = d->ma_values;
#elif PY_VERSION_HEX < 0x030D0000
		out->values_block = values_block_312(d->ma_values);
#else
		out->values_block = d->ma_values->embedded ? NULL : d->ma_values;
#endif
	}
}

void pyver_make_immortal(PyObject *copy)
{
#if PYVER_HAS_IMMORTAL
	copy->ob_refcnt = _Py_IMMORTAL_REFCNT;
#else
	(void)copy;
#endif
}

unsigned int pyver_type_version(PyTypeObject *tp)
{
#if PY_VERSION_HEX >= 0x030C0000
	if (!tp->tp_version_tag)
		PyUnstable_Type_AssignVersionTag(tp);
	return tp->tp_version_tag;
#else
	if (!(tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG)) {
		PyObject *name = PyUnicode_InternFromString("__orbitpy_version_probe__");

		if (name) {	/* a lookup assigns a tag as a side effect */
			(void)_PyType_Lookup(tp, name);
			Py_DECREF(name);
		}
		PyErr_Clear();
	}
	return (tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) ? tp->tp_version_tag : 0;
#endif
}

int pyver_member_is_object(const PyMemberDef *m)
{
#if PY_VERSION_HEX >= 0x030C0000
	return m->type == Py_T_OBJECT_EX || m->type == _Py_T_OBJECT;
#else
	return m->type == T_OBJECT_EX || m->type == T_OBJECT;
#endif
}

PyObject *pyver_interned_dict(void)
{
#if PY_VERSION_HEX >= 0x030C0000
	PyInterpreterState *interp = PyInterpreterState_Get();

	return _Py_INTERP_CACHED_OBJECT(interp, interned_strings);
#else
	return NULL;	/* 3.11 keeps it in a static of unicodeobject.c */
#endif
}

/* ---------------------------------------- standard library C types
 * Mirrors of structs private to Modules/_collectionsmodule.c,
 * Modules/_datetimemodule.c and Modules/_decimal/_decimal.c, the same in
 * 3.11, 3.12 and 3.13.  Each *_layout_ok compares the type's instance size
 * with the mirror's, so a CPython that changed them is refused, not misread.
 */

struct deque_mirror {
	PyObject_VAR_HEAD
	struct pyver_deque_block *leftblock, *rightblock;
	Py_ssize_t leftindex, rightindex;
	size_t state;
	Py_ssize_t maxlen;
	Py_ssize_t numfreeblocks;
	struct pyver_deque_block *freeblocks[16];
	PyObject *weakreflist;
};

int pyver_deque_layout_ok(PyTypeObject *tp)
{
	return tp->tp_basicsize == (Py_ssize_t)sizeof(struct deque_mirror) && !tp->tp_itemsize;
}

void pyver_deque(PyObject *op, struct pyver_deque *out)
{
	struct deque_mirror *d = (struct deque_mirror *)op;

	out->leftblock = &d->leftblock;
	out->rightblock = &d->rightblock;
	out->leftindex = d->leftindex;
	out->rightindex = d->rightindex;
	out->len = Py_SIZE(d);
	out->nfree = &d->numfreeblocks;
	out->freeblocks = d->freeblocks;
}

struct defaultdict_mirror {
	PyDictObject dict;
	PyObject *default_factory;
};

int pyver_defaultdict_layout_ok(PyTypeObject *tp)
{
	return tp->tp_basicsize == (Py_ssize_t)sizeof(struct defaultdict_mirror) &&
	       !tp->tp_itemsize;
}

PyObject **pyver_defaultdict_factory(PyObject *op)
{
	return &((struct defaultdict_mirror *)op)->default_factory;
}

struct timezone_mirror {
	PyObject_HEAD
	PyObject *offset;
	PyObject *name;
};

int pyver_timezone_layout_ok(PyTypeObject *tp)
{
	return tp->tp_basicsize == (Py_ssize_t)sizeof(struct timezone_mirror) && !tp->tp_itemsize;
}

PyObject **pyver_timezone_offset(PyObject *op)
{
	return &((struct timezone_mirror *)op)->offset;
}

PyObject **pyver_timezone_name(PyObject *op)
{
	return &((struct timezone_mirror *)op)->name;
}

/* libmpdec's mpd_t, then the object's inline digits. */
struct decimal_mirror {
	PyObject_HEAD
	Py_hash_t hash;
	struct {
		uint8_t flags;
		Py_ssize_t exp, digits, len, alloc;
		uint64_t *data;
	} dec;
	uint64_t data[4];
};

int pyver_decimal_layout_ok(PyTypeObject *tp)
{
	return tp->tp_basicsize == (Py_ssize_t)sizeof(struct decimal_mirror) && !tp->tp_itemsize;
}

void *pyver_decimal_digits(PyObject *op, size_t *nbytes, int *inline_)
{
	struct decimal_mirror *d = (struct decimal_mirror *)op;

	*inline_ = d->dec.data == d->data;
	*nbytes = d->dec.alloc > 0 ? (size_t)d->dec.alloc * sizeof(uint64_t) : 0;
	return d->dec.data;
}

struct odict_mirror {
	PyDictObject od_dict;
	struct pyver_odict_node *od_first, *od_last;
	struct pyver_odict_node **od_fast_nodes;
	Py_ssize_t od_fast_nodes_size;
	void *od_resize_sentinel;	/* compared with the dict's keys, never read */
	size_t od_state;
	PyObject *od_inst_dict;
	PyObject *od_weakreflist;
};

int pyver_odict_layout_ok(PyTypeObject *tp)
{
	return tp->tp_basicsize == (Py_ssize_t)sizeof(struct odict_mirror) && !tp->tp_itemsize;
}

void pyver_odict(PyObject *op, struct pyver_odict *out)
{
	struct odict_mirror *od = (struct odict_mirror *)op;

	out->first = &od->od_first;
	out->last = &od->od_last;
	out->fast_nodes = &od->od_fast_nodes;
	out->fast_nodes_size = od->od_fast_nodes_size;
	out->inst_dict = &od->od_inst_dict;
}
