/* _core_implicit.c - the CPython wrappers of the implicit-feedback families (csrc/als.h,
 * csrc/bpr.h): CSR building, the Gramian and the conjugate-gradient half-step of implicit ALS,
 * BPR's block grouping, block training and fold-in. Same shape as every wrapper of
 * `collabc._core`: parse, validate (dtype, shape, order, writability, aliasing, sizes), release
 * the GIL around the work, raise on a bad status. Arrays the kernels write are validated, never
 * converted; arrays returned are new NumPy arrays (Python owns every buffer). */
#include "_binding.h"

/* a 1-D int32 array read through its stride (a column of an (n, 2) array is fine) */
static int check_strided_ids(const char *fn, const char *name, PyObject *obj, int64_t *n,
                             int64_t *stride) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s(): argument '%s' must be an int32 ndarray, got %s", fn,
                     name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != NPY_INT32) {
        PyErr_Format(PyExc_TypeError, "%s(): argument '%s' must have dtype int32, got %s", fn, name,
                     PyArray_DESCR(a)->typeobj->tp_name);
        return -1;
    }
    if (PyArray_NDIM(a) != 1) {
        PyErr_Format(PyExc_ValueError, "%s(): argument '%s' must be one-dimensional, got %d "
                     "dimensions", fn, name, PyArray_NDIM(a));
        return -1;
    }
    npy_intp st = PyArray_DIM(a, 0) > 1 ? PyArray_STRIDE(a, 0) : 4;
    if (!PyArray_ISNOTSWAPPED(a) || !PyArray_ISALIGNED(a) || st <= 0 || st % 4 != 0) {
        PyErr_Format(PyExc_ValueError, "%s(): argument '%s' must be aligned, in native byte order "
                     "and have a positive stride", fn, name);
        return -1;
    }
    *n = (int64_t)PyArray_DIM(a, 0);
    *stride = (int64_t)(st / 4);
    return 0;
}

/* indptr (rows + 1,) int64 from 0, not decreasing, ending at most at n_indices */
static int check_indptr(const char *fn, argspec *indptr, argspec *indices, int64_t rows) {
    if (check_shape1(fn, indptr, rows + 1) < 0 || check_shape1(fn, indices, -1) < 0) return -1;
    const int64_t *p = (const int64_t *)PyArray_DATA(indptr->arr), nnz = DIM(*indices, 0);
    int ok = p[0] == 0 && p[rows] <= nnz;
    for (int64_t r = 0; ok && r < rows; r++) ok = p[r] <= p[r + 1];
    if (ok) return 0;
    PyErr_Format(PyExc_ValueError, "%s(): argument '%s' must be a CSR row pointer: %lld "
                 "non-decreasing offsets from 0 to at most len(%s) = %lld", fn, indptr->name,
                 (long long)(rows + 1), indices->name, (long long)nnz);
    return -1;
}

static int check_real(const char *fn, const char *name, double v, double lo, int strict) {
    if (isfinite(v) && (strict ? v > lo : v >= lo)) return 0;
    char buf[64], lob[32];
    snprintf(buf, sizeof buf, "%g", v);
    snprintf(lob, sizeof lob, "%g", lo);
    PyErr_Format(PyExc_ValueError, "%s(): argument '%s' must be a finite number %s %s, got %s",
                 fn, name, strict ? ">" : ">=", lob, buf);
    return -1;
}

static PyObject *new_array(int nd, npy_intp d0, npy_intp d1, int type) {
    npy_intp dims[2] = {d0, d1};
    return PyArray_SimpleNew(nd, dims, type);
}

/* ---------------------------------------------------------------- ALS */

PyDoc_STRVAR(als_csr_doc,
"als_csr(rows, cols, w, n_rows, n_cols, n_threads=1)\n--\n\n"
"The CSR of the pairs (rows[p], cols[p]) (1-D int32, any stride: columns of an (n, 2) array\n"
"will do), each row sorted by column, repeated pairs merged with their weights w ((n,) float32,\n"
"or None for 1) summed. Returns (indptr (n_rows+1,) int64, indices (nnz,) int32, weights\n"
"(nnz,) float32 or None when w is None).");

static PyObject *py_als_csr(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"rows", "cols", "w", "n_rows", "n_cols", "n_threads", NULL};
    const char *fn = "als_csr";
    PyObject *ro, *co;
    argspec a[1] = {{0, "w", NPY_FLOAT32, 0, 1}};
    long long NR, NC, n_threads = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOLL|L", kwlist, &ro, &co, &a[0].obj, &NR, &NC,
                                     &n_threads))
        return NULL;
    int64_t n, rs, n2, cs;
    if (check_strided_ids(fn, "rows", ro, &n, &rs) < 0 ||
        check_strided_ids(fn, "cols", co, &n2, &cs) < 0 || check_args(fn, a, 1) < 0)
        return NULL;
    if (n2 != n) {
        PyErr_Format(PyExc_ValueError, "%s(): arguments 'rows' and 'cols' must have the same "
                     "length, got %lld and %lld", fn, (long long)n, (long long)n2);
        return NULL;
    }
    if (check_shape1(fn, &a[0], n) < 0 || positive(fn, "n_threads", n_threads) < 0) return NULL;
    if (NR < 0 || NC < 0 || NR > INT32_MAX || NC > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s(): n_rows and n_cols must lie in [0, 2**31), got %lld "
                     "and %lld", fn, NR, NC);
        return NULL;
    }
    PyObject *indptr = new_array(1, (npy_intp)NR + 1, 0, NPY_INT64);
    PyObject *indices = new_array(1, (npy_intp)n, 0, NPY_INT32);
    PyObject *wout = a[0].arr ? new_array(1, (npy_intp)n, 0, NPY_FLOAT32) : (Py_INCREF(Py_None), Py_None);
    PyObject *res = NULL;
    if (!indptr || !indices || !wout) goto done;
    const int32_t *rows = (const int32_t *)PyArray_DATA((PyArrayObject *)ro);
    const int32_t *cols = (const int32_t *)PyArray_DATA((PyArrayObject *)co);
    float *wo = a[0].arr ? (float *)PyArray_DATA((PyArrayObject *)wout) : NULL;
    int64_t bad = -1;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_als_csr((int64_t *)PyArray_DATA((PyArrayObject *)indptr),
                    (int32_t *)PyArray_DATA((PyArrayObject *)indices), wo, &bad, rows, rs, cols, cs,
                    OPTF32(a[0]), n, NR, NC, (int)n_threads);
    Py_END_ALLOW_THREADS
    if (st == CF_ERR_NOMEM) {
        PyErr_NoMemory();
        goto done;
    }
    if (st == CF_ERR_INDEX) {
        int is_row = rows[bad * rs] < 0 || rows[bad * rs] >= NR;
        PyErr_Format(PyExc_IndexError, "%s(): argument '%s' holds %d at position %lld, outside "
                     "[0, %lld)", fn, is_row ? "rows" : "cols",
                     (int)(is_row ? rows[bad * rs] : cols[bad * cs]), (long long)bad,
                     is_row ? NR : NC);
        goto done;
    }
    if (st != CF_OK) {
        PyErr_Format(PyExc_RuntimeError, "%s(): internal error %d", fn, st);
        goto done;
    }
    npy_intp nnz = (npy_intp)((const int64_t *)PyArray_DATA((PyArrayObject *)indptr))[NR];
    if (nnz < (npy_intp)n) { /* repeats were merged: give the tail back */
        PyArray_Dims d = {&nnz, 1};
        PyObject *r = PyArray_Resize((PyArrayObject *)indices, &d, 0, NPY_CORDER);
        if (!r) goto done;
        Py_DECREF(r);
        if (wo) {
            r = PyArray_Resize((PyArrayObject *)wout, &d, 0, NPY_CORDER);
            if (!r) goto done;
            Py_DECREF(r);
        }
    }
    res = PyTuple_Pack(3, indptr, indices, wout);
done:
    Py_XDECREF(indptr);
    Py_XDECREF(indices);
    Py_XDECREF(wout);
    return res;
}

PyDoc_STRVAR(als_transpose_doc,
"als_transpose(indptr, indices, w, n_cols)\n--\n\n"
"The transpose of a CSR whose rows are sorted with no repeats (as als_csr makes): returns\n"
"(indptr (n_cols+1,) int64, indices (nnz,) int32 with rows sorted, weights or None).");

static PyObject *py_als_transpose(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"indptr", "indices", "w", "n_cols", NULL};
    const char *fn = "als_transpose";
    argspec a[3] = {{0, "indptr", NPY_INT64}, {0, "indices", NPY_INT32}, {0, "w", NPY_FLOAT32, 0, 1}};
    long long NC;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOL", kwlist, &a[0].obj, &a[1].obj, &a[2].obj, &NC))
        return NULL;
    if (check_args(fn, a, 3) < 0 || check_shape1(fn, &a[0], -1) < 0) return NULL;
    int64_t NR = DIM(a[0], 0) - 1;
    if (NR < 0) {
        PyErr_Format(PyExc_ValueError, "%s(): argument 'indptr' must not be empty", fn);
        return NULL;
    }
    if (check_indptr(fn, &a[0], &a[1], NR) < 0) return NULL;
    if (NC < 0 || NC > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s(): n_cols must lie in [0, 2**31), got %lld", fn, NC);
        return NULL;
    }
    int64_t nnz = ((const int64_t *)PyArray_DATA(a[0].arr))[NR];
    if (check_shape1(fn, &a[2], DIM(a[1], 0)) < 0 || check_ids(fn, &a[1], 0, 1, nnz, NC, NULL) < 0)
        return NULL;
    PyObject *ti = new_array(1, (npy_intp)NC + 1, 0, NPY_INT64);
    PyObject *tx = new_array(1, (npy_intp)nnz, 0, NPY_INT32);
    PyObject *tw = a[2].arr ? new_array(1, (npy_intp)nnz, 0, NPY_FLOAT32) : (Py_INCREF(Py_None), Py_None);
    PyObject *res = NULL;
    if (ti && tx && tw) {
        Py_BEGIN_ALLOW_THREADS
        cf_als_transpose((int64_t *)PyArray_DATA((PyArrayObject *)ti),
                         (int32_t *)PyArray_DATA((PyArrayObject *)tx),
                         a[2].arr ? (float *)PyArray_DATA((PyArrayObject *)tw) : NULL,
                         (const int64_t *)PyArray_DATA(a[0].arr), I32(a[1]), OPTF32(a[2]), NR, NC);
        Py_END_ALLOW_THREADS
        res = PyTuple_Pack(3, ti, tx, tw);
    }
    Py_XDECREF(ti);
    Py_XDECREF(tx);
    Py_XDECREF(tw);
    return res;
}

PyDoc_STRVAR(als_gramian_doc,
"als_gramian(G, T, n_threads=1)\n--\n\n"
"G ((K,K) float32, written) = T^T T for T (N,K) float32, summed in double; returns the sum of\n"
"the squares of T (the trace) as a float. The same for any n_threads.");

static PyObject *py_als_gramian(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"G", "T", "n_threads", NULL};
    const char *fn = "als_gramian";
    argspec a[2] = {{0, "G", NPY_FLOAT32, 1}, {0, "T", NPY_FLOAT32}};
    long long n_threads = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|L", kwlist, &a[0].obj, &a[1].obj, &n_threads))
        return NULL;
    if (check_args(fn, a, 2) < 0 || check_shape2(fn, &a[1], -1, -1) < 0) return NULL;
    int64_t N = DIM(a[1], 0), K = DIM(a[1], 1);
    if (positive(fn, "K (T.shape[1])", K) < 0 || check_shape2(fn, &a[0], K, K) < 0 ||
        positive(fn, "n_threads", n_threads) < 0)
        return NULL;
    double sq = 0.0;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_als_gramian(F32(a[0]), &sq, CF32(a[1]), N, K, (int)(n_threads > 64 ? 64 : n_threads));
    Py_END_ALLOW_THREADS
    if (st == CF_ERR_NOMEM) return PyErr_NoMemory();
    if (st != CF_OK) return PyErr_Format(PyExc_RuntimeError, "%s(): internal error %d", fn, st);
    return PyFloat_FromDouble(sq);
}

PyDoc_STRVAR(als_solve_doc,
"als_solve(X, G, Y, indptr, indices, w, row0, row1, alpha, reg, cg_steps, n_threads=1)\n--\n\n"
"One implicit-ALS half-step over the rows [row0, row1) of X ((NX,K) float32, updated in place)\n"
"against the fixed Y ((NY,K) float32) with G = Y^T Y (als_gramian): cg_steps conjugate-gradient\n"
"steps per row from its current value on (G + reg I + Y^T diag(alpha w) Y) x = Y^T (1 + alpha w);\n"
"rows without items become 0. indptr (NX+1,) int64 and indices (nnz,) int32 (in [0, NY)) are\n"
"the CSR of X's rows, w (nnz,) float32 their weights (finite, >= 0) or None for 1. Returns the\n"
"rows' part of the training loss, sum of c (p - x.y)^2 over every pair plus reg |x|^2.");

static PyObject *py_als_solve(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"X", "G", "Y", "indptr", "indices", "w", "row0", "row1", "alpha",
                             "reg", "cg_steps", "n_threads", NULL};
    const char *fn = "als_solve";
    argspec a[6] = {{0, "X", NPY_FLOAT32, 1}, {0, "G", NPY_FLOAT32}, {0, "Y", NPY_FLOAT32},
                    {0, "indptr", NPY_INT64}, {0, "indices", NPY_INT32}, {0, "w", NPY_FLOAT32, 0, 1}};
    long long row0, row1, cg_steps, n_threads = 1;
    double alpha, reg;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOLLddL|L", kwlist, &a[0].obj, &a[1].obj,
                                     &a[2].obj, &a[3].obj, &a[4].obj, &a[5].obj, &row0, &row1,
                                     &alpha, &reg, &cg_steps, &n_threads))
        return NULL;
    if (check_args(fn, a, 6) < 0 || check_shape2(fn, &a[0], -1, -1) < 0) return NULL;
    int64_t NX = DIM(a[0], 0), K = DIM(a[0], 1);
    if (positive(fn, "K (X.shape[1])", K) < 0 || check_shape2(fn, &a[1], K, K) < 0 ||
        check_shape2(fn, &a[2], -1, K) < 0 || check_indptr(fn, &a[3], &a[4], NX) < 0 ||
        check_shape1(fn, &a[5], DIM(a[4], 0)) < 0 || check_real(fn, "alpha", alpha, 0.0, 1) < 0 ||
        check_real(fn, "reg", reg, 0.0, 0) < 0 || positive(fn, "cg_steps", cg_steps) < 0 ||
        positive(fn, "n_threads", n_threads) < 0)
        return NULL;
    if (row0 < 0 || row1 < row0 || row1 > NX) {
        PyErr_Format(PyExc_ValueError, "%s(): rows [row0, row1) = [%lld, %lld) must lie in [0, %lld]",
                     fn, row0, row1, (long long)NX);
        return NULL;
    }
    if (cg_steps > 1000000) cg_steps = 1000000;
    int64_t NY = DIM(a[2], 0), bad = -1;
    double obj = 0.0;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_als_solve(F32(a[0]), &obj, &bad, CF32(a[1]), CF32(a[2]),
                      (const int64_t *)PyArray_DATA(a[3].arr), I32(a[4]), OPTF32(a[5]), NX, NY, K,
                      row0, row1, alpha, reg, (int)cg_steps, (int)(n_threads > 64 ? 64 : n_threads));
    Py_END_ALLOW_THREADS
    if (st == CF_ERR_NOMEM) return PyErr_NoMemory();
    if (st == CF_ERR_INDEX)
        return PyErr_Format(PyExc_IndexError, "%s(): argument 'indices' holds %d at position %lld, "
                            "outside [0, %lld)", fn, (int)I32(a[4])[bad], (long long)bad, (long long)NY);
    if (st == CF_ERR_ARG && bad >= 0 && a[5].arr) {
        char buf[64];
        snprintf(buf, sizeof buf, "%g", (double)CF32(a[5])[bad]);
        return PyErr_Format(PyExc_ValueError, "%s(): argument 'w' holds %s at position %lld; "
                            "weights must be finite and >= 0", fn, buf, (long long)bad);
    }
    if (st != CF_OK) return PyErr_Format(PyExc_RuntimeError, "%s(): internal error %d", fn, st);
    return PyFloat_FromDouble(obj);
}

/* ---------------------------------------------------------------- BPR */

PyDoc_STRVAR(bpr_blocks_doc,
"bpr_blocks(indptr, indices, n_items, nb)\n--\n\n"
"The pairs of a user CSR (rows sorted, no repeats) grouped into the nb x nb grid of blocks\n"
"(user u mod nb, item i mod nb), each block by user then item: returns (pairs (nnz, 2) int32,\n"
"starts (nb*nb+1,) int64).");

static PyObject *py_bpr_blocks(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"indptr", "indices", "n_items", "nb", NULL};
    const char *fn = "bpr_blocks";
    argspec a[2] = {{0, "indptr", NPY_INT64}, {0, "indices", NPY_INT32}};
    long long NI, nb;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOLL", kwlist, &a[0].obj, &a[1].obj, &NI, &nb))
        return NULL;
    if (check_args(fn, a, 2) < 0 || check_shape1(fn, &a[0], -1) < 0) return NULL;
    int64_t NU = DIM(a[0], 0) - 1;
    if (NU < 0) {
        PyErr_Format(PyExc_ValueError, "%s(): argument 'indptr' must not be empty", fn);
        return NULL;
    }
    if (check_indptr(fn, &a[0], &a[1], NU) < 0 || positive(fn, "nb", nb) < 0) return NULL;
    if (nb > 4096 || NI < 0 || NI > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s(): nb must lie in [1, 4096] and n_items in [0, 2**31), "
                     "got %lld and %lld", fn, nb, NI);
        return NULL;
    }
    int64_t nnz = ((const int64_t *)PyArray_DATA(a[0].arr))[NU];
    if (check_ids(fn, &a[1], 0, 1, nnz, NI, "an item") < 0) return NULL;
    PyObject *pairs = new_array(2, (npy_intp)nnz, 2, NPY_INT32);
    PyObject *starts = new_array(1, (npy_intp)(nb * nb + 1), 0, NPY_INT64);
    PyObject *res = NULL;
    if (pairs && starts) {
        int st;
        Py_BEGIN_ALLOW_THREADS
        st = cf_bpr_blocks((int32_t *)PyArray_DATA((PyArrayObject *)pairs),
                           (int64_t *)PyArray_DATA((PyArrayObject *)starts),
                           (const int64_t *)PyArray_DATA(a[0].arr), I32(a[1]), NU, NI, nb);
        Py_END_ALLOW_THREADS
        if (st != CF_OK) PyErr_Format(PyExc_RuntimeError, "%s(): internal error %d", fn, st);
        else res = PyTuple_Pack(2, pairs, starts);
    }
    Py_XDECREF(pairs);
    Py_XDECREF(starts);
    return res;
}

PyDoc_STRVAR(bpr_fit_blocks_doc,
"bpr_fit_blocks(U, V, b, acc, losses, stats, triples, pairs, starts, blocks, lrs, *, opt, reg,\n"
"               reg_bias, eps, seed, epoch, n_threads)\n--\n\n"
"BPR on the blocks listed in blocks ((S,) int64 grid ids, in order) at learning rates lrs ((S,)\n"
"float64): U (NU,K), V (NI,K), b (NI,) float32 updated; opt 'sgd' or 'adagrad' (acc (NU+2*NI,)\n"
"float32 accumulators, else None); pairs (nnz,2) int32 and starts (nb*nb+1,) int64 from\n"
"bpr_blocks. losses ((S,) float64) receives each block's mean -ln sigmoid(x_uij), stats ((S,2)\n"
"int64) its samples with x_uij > 0 and its skipped samples, triples ((T,3) int32, T = the\n"
"selected blocks' sizes summed, or None) every sample (u, i, j), j = -1 when skipped.\n"
"The samples are a function of (seed, epoch, block): the result is the same for any n_threads.\n"
"Returns -1, or the position of the block where x_uij was not finite (training stopped there).");

static PyObject *py_bpr_fit_blocks(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"U", "V", "b", "acc", "losses", "stats", "triples", "pairs", "starts",
                             "blocks", "lrs", "opt", "reg", "reg_bias", "eps", "seed", "epoch",
                             "n_threads", NULL};
    const char *fn = "bpr_fit_blocks";
    argspec a[11] = {{0, "U", NPY_FLOAT32, 1},       {0, "V", NPY_FLOAT32, 1},
                     {0, "b", NPY_FLOAT32, 1},       {0, "acc", NPY_FLOAT32, 1, 1},
                     {0, "losses", NPY_FLOAT64, 1},  {0, "stats", NPY_INT64, 1},
                     {0, "triples", NPY_INT32, 1, 1}, {0, "pairs", NPY_INT32},
                     {0, "starts", NPY_INT64},       {0, "blocks", NPY_INT64},
                     {0, "lrs", NPY_FLOAT64}};
    const char *opt_name;
    double reg, reg_bias, eps;
    unsigned long long seed, epoch;
    long long n_threads = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOOOOO$sdddKKL", kwlist, &a[0].obj, &a[1].obj,
                                     &a[2].obj, &a[3].obj, &a[4].obj, &a[5].obj, &a[6].obj,
                                     &a[7].obj, &a[8].obj, &a[9].obj, &a[10].obj, &opt_name, &reg,
                                     &reg_bias, &eps, &seed, &epoch, &n_threads))
        return NULL;
    cf_bpr_config c;
    memset(&c, 0, sizeof c);
    if (strcmp(opt_name, "sgd") == 0) c.opt = CF_BPR_SGD;
    else if (strcmp(opt_name, "adagrad") == 0) c.opt = CF_BPR_ADAGRAD;
    else {
        PyErr_Format(PyExc_ValueError, "%s(): opt must be 'sgd' or 'adagrad', got '%s'", fn, opt_name);
        return NULL;
    }
    if (check_args(fn, a, 11) < 0 || check_shape2(fn, &a[0], -1, -1) < 0) return NULL;
    c.n_users = DIM(a[0], 0);
    c.k = DIM(a[0], 1);
    if (positive(fn, "K (U.shape[1])", c.k) < 0 || check_shape2(fn, &a[1], -1, c.k) < 0) return NULL;
    c.n_items = DIM(a[1], 0);
    if (check_shape1(fn, &a[2], c.n_items) < 0 || check_shape2(fn, &a[7], -1, 2) < 0 ||
        check_shape1(fn, &a[8], -1) < 0 || check_shape1(fn, &a[9], -1) < 0)
        return NULL;
    const int64_t R = DIM(a[7], 0), NS = DIM(a[8], 0), S = DIM(a[9], 0);
    const int64_t nb = (int64_t)llround(sqrt((double)(NS > 0 ? NS - 1 : 0)));
    const int64_t *starts = (const int64_t *)PyArray_DATA(a[8].arr);
    int ok = NS >= 2 && nb >= 1 && nb * nb + 1 == NS && starts[0] == 0 && starts[NS - 1] == R;
    for (int64_t q = 0; ok && q + 1 < NS; q++) ok = starts[q] <= starts[q + 1];
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "%s(): argument 'starts' must be the block starts that "
                     "bpr_blocks returned for these pairs (nb*nb + 1 non-decreasing offsets from 0 "
                     "to %lld)", fn, (long long)R);
        return NULL;
    }
    c.nb = nb;
    if (check_shape1(fn, &a[10], S) < 0 || check_shape1(fn, &a[4], S) < 0 ||
        check_shape2(fn, &a[5], S, 2) < 0 || check_real(fn, "reg", reg, 0.0, 0) < 0 ||
        check_real(fn, "reg_bias", reg_bias, 0.0, 0) < 0 || positive(fn, "n_threads", n_threads) < 0)
        return NULL;
    const int64_t *blocks = (const int64_t *)PyArray_DATA(a[9].arr);
    int64_t total = 0;
    for (int64_t k = 0; k < S; k++) {
        if (blocks[k] < 0 || blocks[k] >= nb * nb) {
            PyErr_Format(PyExc_IndexError, "%s(): argument 'blocks' holds %lld at position %lld, "
                         "outside [0, %lld)", fn, (long long)blocks[k], (long long)k, (long long)(nb * nb));
            return NULL;
        }
        total += starts[blocks[k] + 1] - starts[blocks[k]];
    }
    const double *lrs = (const double *)PyArray_DATA(a[10].arr);
    for (int64_t k = 0; k < S; k++)
        if (check_real(fn, "lrs[k]", lrs[k], 0.0, 0) < 0) return NULL;
    if (check_shape2(fn, &a[6], total, 3) < 0) return NULL;
    if (c.opt == CF_BPR_ADAGRAD) {
        if (!a[3].arr) {
            PyErr_Format(PyExc_TypeError, "%s(): Adagrad needs the accumulators 'acc'", fn);
            return NULL;
        }
        if (check_shape1(fn, &a[3], c.n_users + 2 * c.n_items) < 0 ||
            check_real(fn, "eps", eps, 0.0, 1) < 0)
            return NULL;
    }
    c.reg = reg;
    c.reg_bias = reg_bias;
    c.eps = eps;
    c.seed = seed;
    c.epoch = epoch;
    int64_t bad = -1;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_bpr_fit_blocks(F32(a[0]), F32(a[1]), F32(a[2]), OPTF32(a[3]),
                           (double *)PyArray_DATA(a[4].arr), (int64_t *)PyArray_DATA(a[5].arr),
                           a[6].arr ? (int32_t *)PyArray_DATA(a[6].arr) : NULL, &bad, I32(a[7]),
                           starts, blocks, S, lrs, &c, (int)(n_threads > 64 ? 64 : n_threads));
    Py_END_ALLOW_THREADS
    if (st == CF_ERR_NOMEM) return PyErr_NoMemory();
    if (st == CF_ERR_INDEX && bad >= 0 && bad < R) {
        const int32_t *p = I32(a[7]) + 2 * bad;
        return PyErr_Format(PyExc_IndexError, "%s(): argument 'pairs' holds (%d, %d) at row %lld: "
                            "outside the tables (%lld users, %lld items) or its block; pass the "
                            "pairs and starts of bpr_blocks", fn, (int)p[0], (int)p[1], (long long)bad,
                            (long long)c.n_users, (long long)c.n_items);
    }
    if (st != CF_OK && st != CF_ERR_NONFINITE)
        return PyErr_Format(PyExc_RuntimeError, "%s(): internal error %d", fn, st);
    return PyLong_FromLongLong((long long)bad);
}

PyDoc_STRVAR(bpr_fold_in_doc,
"bpr_fold_in(x, V, b, items, n_steps, lr, reg, seed)\n--\n\n"
"A new user's BPR factors with V ((NI,K) float32) and b ((NI,) float32 or None) frozen: x ((K,)\n"
"float32, in: the start) takes n_steps SGD steps, each on a positive drawn from items ((n,) int32,\n"
"sorted, unique, in [1, NI)) and a negative drawn uniformly from the other items but 0.");

static PyObject *py_bpr_fold_in(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"x", "V", "b", "items", "n_steps", "lr", "reg", "seed", NULL};
    const char *fn = "bpr_fold_in";
    argspec a[4] = {{0, "x", NPY_FLOAT32, 1}, {0, "V", NPY_FLOAT32}, {0, "b", NPY_FLOAT32, 0, 1},
                    {0, "items", NPY_INT32}};
    long long n_steps;
    double lr, reg;
    unsigned long long seed;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOLddK", kwlist, &a[0].obj, &a[1].obj, &a[2].obj,
                                     &a[3].obj, &n_steps, &lr, &reg, &seed))
        return NULL;
    if (check_args(fn, a, 4) < 0 || check_shape2(fn, &a[1], -1, -1) < 0) return NULL;
    int64_t NI = DIM(a[1], 0), K = DIM(a[1], 1);
    if (positive(fn, "K (V.shape[1])", K) < 0 || check_shape1(fn, &a[0], K) < 0 ||
        check_shape1(fn, &a[2], NI) < 0 || check_shape1(fn, &a[3], -1) < 0 ||
        check_real(fn, "lr", lr, 0.0, 0) < 0 || check_real(fn, "reg", reg, 0.0, 0) < 0)
        return NULL;
    int64_t n = DIM(a[3], 0);
    if (n_steps < 0) {
        PyErr_Format(PyExc_ValueError, "%s(): n_steps must be >= 0, got %lld", fn, n_steps);
        return NULL;
    }
    if (n < 1 || n >= NI - 1) {
        PyErr_Format(PyExc_ValueError, "%s(): argument 'items' must hold between 1 and %lld items "
                     "(some item but '#na#' must be left as a negative), got %lld", fn,
                     (long long)(NI > 2 ? NI - 2 : 0), (long long)n);
        return NULL;
    }
    if (check_ids(fn, &a[3], 0, 1, n, NI, "an item") < 0) return NULL;
    const int32_t *it = I32(a[3]);
    for (int64_t q = 0; q < n; q++)
        if (it[q] < 1 || (q > 0 && it[q] <= it[q - 1])) {
            PyErr_Format(PyExc_ValueError, "%s(): argument 'items' must be sorted, unique and "
                         "exclude '#na#' (0); position %lld holds %d", fn, (long long)q, (int)it[q]);
            return NULL;
        }
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_bpr_fold_in(F32(a[0]), CF32(a[1]), OPTF32(a[2]), it, n, NI, K, n_steps, lr, reg, seed);
    Py_END_ALLOW_THREADS
    if (st == CF_ERR_NONFINITE)
        return PyErr_Format(PyExc_ValueError, "%s(): the factors became NaN or infinite (a NaN or "
                            "infinite value in 'V' or 'b', or lr too large)", fn);
    if (st != CF_OK) return PyErr_Format(PyExc_RuntimeError, "%s(): internal error %d", fn, st);
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- table */

#define CF_METH(name) \
    {#name, (PyCFunction)(void (*)(void))py_##name, METH_VARARGS | METH_KEYWORDS, name##_doc}

PyMethodDef cf_implicit_methods[] = {
    CF_METH(als_csr),        CF_METH(als_transpose),  CF_METH(als_gramian), CF_METH(als_solve),
    CF_METH(bpr_blocks),     CF_METH(bpr_fit_blocks), CF_METH(bpr_fold_in),
    {NULL, NULL, 0, NULL},
};
