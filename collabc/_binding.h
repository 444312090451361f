/* _binding.h - what every file of collabc's CPython binding shares: the NumPy C-API set-up
 * for an extension built from several files, the argument-validation helpers (dtype, shape,
 * C order, alignment, byte order, writability, no aliasing of outputs, id ranges) and the
 * method tables that the kernel families' binding files contribute to `collabc._core`.
 * `_core.c` defines the module and imports NumPy's C API; a family binding file
 * (`_core_<family>.c`) defines `cf_<family>_methods[]`, declared below and added to the module
 * in `_core.c`'s exec slot. Only binding files include Python.h and NumPy; csrc/ never does. */
#ifndef COLLABC_BINDING_H
#define COLLABC_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define PY_ARRAY_UNIQUE_SYMBOL collabc_ARRAY_API
#ifndef CF_BINDING_MAIN
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "collabc.h"

/* ---------------------------------------------------------------- validation helpers */

typedef struct {
    PyObject *obj;   /* borrowed from argument parsing */
    const char *name;
    int type;        /* NPY_FLOAT32, NPY_INT32, NPY_INT64, NPY_FLOAT64 */
    int writable;
    int optional;    /* None allowed */
    PyArrayObject *arr; /* filled in by check_args (borrowed) */
} argspec;

static inline const char *type_name(int t) {
    switch (t) {
    case NPY_FLOAT32: return "float32";
    case NPY_FLOAT64: return "float64";
    case NPY_INT32: return "int32";
    case NPY_INT64: return "int64";
    default: return "?";
    }
}

static inline int check_one(const char *fn, argspec *a) {
    a->arr = NULL;
    if (a->obj == NULL || a->obj == Py_None) {
        if (a->optional) return 0;
        PyErr_Format(PyExc_TypeError, "%s(): argument '%s' must be a %s ndarray, got None", fn,
                     a->name, type_name(a->type));
        return -1;
    }
    if (!PyArray_Check(a->obj)) {
        PyErr_Format(PyExc_TypeError, "%s(): argument '%s' must be a %s ndarray, got %s", fn,
                     a->name, type_name(a->type), Py_TYPE(a->obj)->tp_name);
        return -1;
    }
    PyArrayObject *arr = (PyArrayObject *)a->obj;
    if (PyArray_TYPE(arr) != a->type) {
        PyErr_Format(PyExc_TypeError, "%s(): argument '%s' must have dtype %s, got %s", fn,
                     a->name, type_name(a->type), PyArray_DESCR(arr)->typeobj->tp_name);
        return -1;
    }
    if (!PyArray_ISNOTSWAPPED(arr)) {
        PyErr_Format(PyExc_ValueError, "%s(): argument '%s' must be in native byte order", fn,
                     a->name);
        return -1;
    }
    if (!PyArray_IS_C_CONTIGUOUS(arr)) {
        PyErr_Format(PyExc_ValueError,
                     "%s(): argument '%s' must be C-contiguous (use np.ascontiguousarray)", fn,
                     a->name);
        return -1;
    }
    if (!PyArray_ISALIGNED(arr)) {
        PyErr_Format(PyExc_ValueError, "%s(): argument '%s' must be aligned", fn, a->name);
        return -1;
    }
    if (a->writable && !PyArray_ISWRITEABLE(arr)) {
        PyErr_Format(PyExc_ValueError, "%s(): argument '%s' is written in place and must be writeable",
                     fn, a->name);
        return -1;
    }
    a->arr = arr;
    return 0;
}

/* true when the byte ranges of two arrays intersect */
static inline int overlaps(PyArrayObject *a, PyArrayObject *b) {
    char *a0 = PyArray_BYTES(a), *b0 = PyArray_BYTES(b);
    char *a1 = a0 + PyArray_NBYTES(a), *b1 = b0 + PyArray_NBYTES(b);
    return PyArray_NBYTES(a) > 0 && PyArray_NBYTES(b) > 0 && a0 < b1 && b0 < a1;
}

/* validates every spec; then refuses any written array that shares memory with another */
static inline int check_args(const char *fn, argspec *specs, int n) {
    for (int i = 0; i < n; i++)
        if (check_one(fn, &specs[i]) < 0) return -1;
    for (int i = 0; i < n; i++) {
        if (!specs[i].arr || !specs[i].writable) continue;
        for (int j = 0; j < n; j++) {
            if (j == i || !specs[j].arr) continue;
            if (overlaps(specs[i].arr, specs[j].arr)) {
                PyErr_Format(PyExc_ValueError,
                             "%s(): argument '%s' is written in place and must not share memory "
                             "with argument '%s'", fn, specs[i].name, specs[j].name);
                return -1;
            }
        }
    }
    return 0;
}

static inline void shape_str(char *buf, size_t len, int ndim, const npy_intp *dims) {
    size_t off = (size_t)snprintf(buf, len, "(");
    for (int d = 0; d < ndim && off < len; d++)
        off += (size_t)snprintf(buf + off, len - off, d + 1 == ndim && ndim == 1 ? "%lld," :
                                (d + 1 == ndim ? "%lld" : "%lld, "), (long long)dims[d]);
    if (off < len) snprintf(buf + off, len - off, ")");
}

/* shape check; a negative entry in want matches any size */
static inline int check_shape(const char *fn, argspec *a, int ndim, const npy_intp *want) {
    if (!a->arr) return 0;
    int ok = PyArray_NDIM(a->arr) == ndim;
    for (int d = 0; ok && d < ndim; d++)
        if (want[d] >= 0 && PyArray_DIM(a->arr, d) != want[d]) ok = 0;
    if (ok) return 0;
    char got[128], exp[128];
    shape_str(got, sizeof got, PyArray_NDIM(a->arr), PyArray_DIMS(a->arr));
    shape_str(exp, sizeof exp, ndim, want);
    for (char *c = exp; *c; c++)
        if (*c == '-' && c[1] == '1') { c[0] = 'N'; memmove(c + 1, c + 2, strlen(c + 2) + 1); }
    PyErr_Format(PyExc_ValueError, "%s(): argument '%s' has shape %s but %s was expected", fn,
                 a->name, got, exp);
    return -1;
}

static inline int check_shape1(const char *fn, argspec *a, npy_intp n0) {
    npy_intp w[1] = {n0};
    return check_shape(fn, a, 1, w);
}

static inline int check_shape2(const char *fn, argspec *a, npy_intp n0, npy_intp n1) {
    npy_intp w[2] = {n0, n1};
    return check_shape(fn, a, 2, w);
}

#define F32(a) ((float *)PyArray_DATA((a).arr))
#define CF32(a) ((const float *)PyArray_DATA((a).arr))
#define OPTF32(a) ((a).arr ? (float *)PyArray_DATA((a).arr) : NULL)
#define I32(a) ((const int32_t *)PyArray_DATA((a).arr))
#define DIM(a, d) ((int64_t)PyArray_DIM((a).arr, d))

/* ids at a[col], a[col + stride], ... (n of them) must lie in [0, limit) */
static inline int check_ids(const char *fn, argspec *a, int64_t col, int64_t stride, int64_t n,
                     int64_t limit, const char *what) {
    int64_t bad = cf_ids_first_bad(I32(*a) + col, n, stride, limit);
    if (bad < 0) return 0;
    int32_t v = I32(*a)[bad * stride + col];
    PyErr_Format(PyExc_IndexError,
                 "%s(): argument '%s' holds %s id %d at row %lld, outside [0, %lld)", fn,
                 a->name, what ? what : "an", (int)v, (long long)bad, (long long)limit);
    return -1;
}

/* The kernel found an id outside its table that check_ids did not: the array was written by
 * another thread while the GIL was released (kernels read every id once and check it where
 * they use it, so this stops the call, never sends it outside a table). Raises IndexError. */
static inline PyObject *ids_changed(const char *fn, const char *name) {
    PyErr_Format(PyExc_IndexError,
                 "%s(): argument '%s' holds an id outside its table that was not there when the "
                 "call checked it: another thread wrote to it during the call, which stopped "
                 "there (its outputs are incomplete)", fn, name);
    return NULL;
}

static inline int positive(const char *fn, const char *name, long long v) {
    if (v >= 1) return 0;
    PyErr_Format(PyExc_ValueError, "%s(): argument '%s' must be >= 1, got %lld", fn, name, v);
    return -1;
}

static inline int check_finite(const char *fn, const char *name, double v) {
    if (isfinite(v)) return 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%g", v);
    PyErr_Format(PyExc_ValueError, "%s(): argument '%s' must be finite, got %s", fn, name, buf);
    return -1;
}

/* ---------------------------------------------------------------- family method tables
 * Each family binding file defines one NULL-terminated table; _core.c adds them all. */
extern PyMethodDef cf_bayes_methods[]; /* _core_bayes.c: the Bayesian factorization machine */

extern PyMethodDef cf_tensor_methods[]; /* _core_tensor.c: the generic tensor layer */
extern PyMethodDef cf_implicit_methods[]; /* _core_implicit.c: implicit ALS and BPR */

#endif
