/* _core_tensor.c - the CPython wrappers of csrc/tensorops.c, the kernels of the generic tensor
 * layer (collabc/tensor.py): row gather, scatter-add and zeroing by int64 ids, the ordered row sum.
 * Same shape as every wrapper in _core.c (parse, validate, release the GIL, call, raise on a
 * bad status); the one difference is that id arrays may be strided (a column of a batch),
 * since copying them would cost as much as the gather. */
#include "_binding.h"

/* a 1-D int64 array, read in place with any element stride (negative and zero included) */
static int check_ids_1d(const char *fn, PyObject *obj, const char *name, PyArrayObject **out,
                        int64_t *n, int64_t *stride) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s(): argument '%s' must be an int64 ndarray, got %s", fn,
                     name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != NPY_INT64) {
        PyErr_Format(PyExc_TypeError, "%s(): argument '%s' must have dtype int64, got %s", fn,
                     name, PyArray_DESCR(a)->typeobj->tp_name);
        return -1;
    }
    if (PyArray_NDIM(a) != 1) {
        PyErr_Format(PyExc_ValueError, "%s(): argument '%s' must be 1-D, got %d dimensions", fn,
                     name, PyArray_NDIM(a));
        return -1;
    }
    if (!PyArray_ISNOTSWAPPED(a) || !PyArray_ISALIGNED(a) ||
        PyArray_STRIDE(a, 0) % (npy_intp)sizeof(int64_t) != 0) {
        PyErr_Format(PyExc_ValueError, "%s(): argument '%s' must be aligned, in native byte order, "
                     "with a stride that is a whole number of elements", fn, name);
        return -1;
    }
    *out = a;
    *n = (int64_t)PyArray_DIM(a, 0);
    *stride = (int64_t)(PyArray_STRIDE(a, 0) / (npy_intp)sizeof(int64_t));
    return 0;
}

static void raise_bad_id(const char *fn, PyArrayObject *idx, int64_t stride, int64_t bad,
                         int64_t N, int wrap) {
    const int64_t *p = (const int64_t *)PyArray_DATA(idx);
    PyErr_Format(PyExc_IndexError, "%s(): index %lld (at position %lld) is out of range for a "
                 "table of %lld rows (valid: %s%lld to %lld)", fn, (long long)p[bad * stride],
                 (long long)bad, (long long)N, wrap ? "-" : "", wrap ? (long long)N : 0LL,
                 (long long)N - 1);
}

/* the forward (gather into out) and backward (scatter-add from dout) share one wrapper: the
 * written array comes first, the table-shaped one is (N,K) and the batch-shaped one (B,K) */
static PyObject *gather_call(const char *fn, char **kwlist, int backward, PyObject *args,
                             PyObject *kw) {
    argspec a[2] = {{0, kwlist[0], NPY_FLOAT32, 1}, {0, kwlist[1], NPY_FLOAT32}};
    PyObject *idx_obj;
    int wrap;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOp", kwlist, &a[0].obj, &a[1].obj, &idx_obj,
                                     &wrap))
        return NULL;
    argspec *table = backward ? &a[0] : &a[1], *rows = backward ? &a[1] : &a[0];
    PyArrayObject *idx;
    int64_t B, stride;
    if (check_args(fn, a, 2) < 0 || check_shape2(fn, table, -1, -1) < 0 ||
        check_ids_1d(fn, idx_obj, "idx", &idx, &B, &stride) < 0)
        return NULL;
    int64_t N = DIM(*table, 0), K = DIM(*table, 1), bad = -1;
    if (check_shape2(fn, rows, B, K) < 0) return NULL;
    const int64_t *ids = (const int64_t *)PyArray_DATA(idx);
    int st;
    Py_BEGIN_ALLOW_THREADS
    if (backward)
        st = cf_tensor_gather_backward(F32(a[0]), CF32(a[1]), ids, stride, B, K, N, wrap, &bad);
    else
        st = cf_tensor_gather_forward(F32(a[0]), CF32(a[1]), ids, stride, B, K, N, wrap, &bad);
    Py_END_ALLOW_THREADS
    if (st != CF_OK) {
        raise_bad_id(fn, idx, stride, bad, N, wrap);
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(tensor_gather_forward_doc,
"tensor_gather_forward(out, table, idx, wrap)\n--\n\n"
"Gather rows: out[b] = table[idx[b]]. out (B,K) float32 written; table (N,K) float32; idx (B,)\n"
"int64, any stride. wrap: ids in [-N, 0) count from the end; else they raise IndexError.");

static PyObject *py_tensor_gather_forward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"out", "table", "idx", "wrap", NULL};
    return gather_call("tensor_gather_forward", kwlist, 0, args, kw);
}

PyDoc_STRVAR(tensor_gather_backward_doc,
"tensor_gather_backward(dtable, dout, idx, wrap)\n--\n\n"
"Scatter-add, accumulating: dtable[idx[b]] += dout[b], repeated ids adding up. dtable (N,K)\n"
"float32 written; dout (B,K) float32; idx (B,) int64, any stride; wrap as tensor_gather_forward.");

static PyObject *py_tensor_gather_backward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"dtable", "dout", "idx", "wrap", NULL};
    return gather_call("tensor_gather_backward", kwlist, 1, args, kw);
}

PyDoc_STRVAR(tensor_zero_rows_doc,
"tensor_zero_rows(table, idx, wrap)\n--\n\n"
"table[idx[b]] = 0 for every b. table (N,K) float32 written; idx (B,) int64, any stride; wrap as\n"
"tensor_gather_forward (nothing is written if an id is out of range).");

static PyObject *py_tensor_zero_rows(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"table", "idx", "wrap", NULL};
    const char *fn = "tensor_zero_rows";
    argspec a[1] = {{0, "table", NPY_FLOAT32, 1}};
    PyObject *idx_obj;
    int wrap;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOp", kwlist, &a[0].obj, &idx_obj, &wrap)) return NULL;
    PyArrayObject *idx;
    int64_t B, stride;
    if (check_args(fn, a, 1) < 0 || check_shape2(fn, &a[0], -1, -1) < 0 ||
        check_ids_1d(fn, idx_obj, "idx", &idx, &B, &stride) < 0)
        return NULL;
    int64_t N = DIM(a[0], 0), K = DIM(a[0], 1), bad = -1;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_tensor_zero_rows(F32(a[0]), (const int64_t *)PyArray_DATA(idx), stride, B, K, N, wrap, &bad);
    Py_END_ALLOW_THREADS
    if (st != CF_OK) {
        raise_bad_id(fn, idx, stride, bad, N, wrap);
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(tensor_sum_rows_forward_doc,
"tensor_sum_rows_forward(out, x)\n--\n\n"
"out[r] = sum of row r of x, in float32 from left to right (cf_dotbias_forward's order).\n"
"out (R,) float32 written; x (R,K) float32.");

static PyObject *py_tensor_sum_rows_forward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"out", "x", NULL};
    const char *fn = "tensor_sum_rows_forward";
    argspec a[2] = {{0, "out", NPY_FLOAT32, 1}, {0, "x", NPY_FLOAT32}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO", kwlist, &a[0].obj, &a[1].obj)) return NULL;
    if (check_args(fn, a, 2) < 0 || check_shape2(fn, &a[1], -1, -1) < 0 ||
        check_shape1(fn, &a[0], DIM(a[1], 0)) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    cf_tensor_sum_rows_forward(F32(a[0]), CF32(a[1]), DIM(a[1], 0), DIM(a[1], 1));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyMethodDef cf_tensor_methods[] = {
    {"tensor_gather_forward", (PyCFunction)(void (*)(void))py_tensor_gather_forward, METH_VARARGS | METH_KEYWORDS, tensor_gather_forward_doc},
    {"tensor_gather_backward", (PyCFunction)(void (*)(void))py_tensor_gather_backward, METH_VARARGS | METH_KEYWORDS, tensor_gather_backward_doc},
    {"tensor_zero_rows", (PyCFunction)(void (*)(void))py_tensor_zero_rows, METH_VARARGS | METH_KEYWORDS, tensor_zero_rows_doc},
    {"tensor_sum_rows_forward", (PyCFunction)(void (*)(void))py_tensor_sum_rows_forward, METH_VARARGS | METH_KEYWORDS, tensor_sum_rows_forward_doc},
    {NULL, NULL, 0, NULL},
};
