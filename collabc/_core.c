/* _core.c - the CPython binding of collabc's C core: the module `collabc._core` and the
 * wrappers of the original kernel families (newer families keep their wrappers in
 * `_core_<family>.c`, sharing the helpers of `_binding.h`). One wrapper per kernel, each the same shape: parse, validate every array
 * (dtype, shape, C order, alignment, byte order, writability, no aliasing of outputs),
 * check ids, release the GIL, call the kernel, re-acquire, raise on a bad status, return.
 * Arrays the kernel writes are validated, never converted: a silent copy would make an
 * in-place update vanish. C keeps no pointer into NumPy memory past a call. */
#define CF_BINDING_MAIN
#include "_binding.h"
#include "fpmode.h"
#include "isa.h"

/* ---------------------------------------------------------------- embedding */

PyDoc_STRVAR(embedding_forward_doc,
"embedding_forward(out, weight, idx)\n--\n\n"
"Gather rows: out[b] = weight[idx[b]]. out (B,K) float32 written; weight (N,K) float32;\n"
"idx (B,) int32 in [0, N).");

static PyObject *py_embedding_forward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"out", "weight", "idx", NULL};
    const char *fn = "embedding_forward";
    argspec a[3] = {{0, "out", NPY_FLOAT32, 1}, {0, "weight", NPY_FLOAT32}, {0, "idx", NPY_INT32}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO", kwlist, &a[0].obj, &a[1].obj, &a[2].obj))
        return NULL;
    if (check_args(fn, a, 3) < 0 || check_shape2(fn, &a[1], -1, -1) < 0) return NULL;
    int64_t N = DIM(a[1], 0), K = DIM(a[1], 1);
    if (check_shape1(fn, &a[2], -1) < 0) return NULL;
    int64_t B = DIM(a[2], 0);
    if (check_shape2(fn, &a[0], B, K) < 0 || check_ids(fn, &a[2], 0, 1, B, N, NULL) < 0) return NULL;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_embedding_forward(F32(a[0]), CF32(a[1]), I32(a[2]), B, K, N);
    Py_END_ALLOW_THREADS
    if (st != CF_OK) return ids_changed(fn, "idx");
    Py_RETURN_NONE;
}

PyDoc_STRVAR(embedding_backward_doc,
"embedding_backward(dweight, dout, idx)\n--\n\n"
"Scatter-add, accumulating: dweight[idx[b]] += dout[b]. dweight (N,K) float32 written;\n"
"dout (B,K) float32; idx (B,) int32 in [0, N).");

static PyObject *py_embedding_backward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"dweight", "dout", "idx", NULL};
    const char *fn = "embedding_backward";
    argspec a[3] = {{0, "dweight", NPY_FLOAT32, 1}, {0, "dout", NPY_FLOAT32}, {0, "idx", NPY_INT32}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO", kwlist, &a[0].obj, &a[1].obj, &a[2].obj))
        return NULL;
    if (check_args(fn, a, 3) < 0 || check_shape2(fn, &a[0], -1, -1) < 0) return NULL;
    int64_t N = DIM(a[0], 0), K = DIM(a[0], 1);
    if (check_shape1(fn, &a[2], -1) < 0) return NULL;
    int64_t B = DIM(a[2], 0);
    if (check_shape2(fn, &a[1], B, K) < 0 || check_ids(fn, &a[2], 0, 1, B, N, NULL) < 0) return NULL;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_embedding_backward(F32(a[0]), CF32(a[1]), I32(a[2]), B, K, N);
    Py_END_ALLOW_THREADS
    if (st != CF_OK) return ids_changed(fn, "idx");
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- dotbias */

/* uw (NU,K), iw (NI,K), optional ub (NU,), ib (NI,) (both or neither), users/items (B,) */
static int check_dot_tables(const char *fn, argspec *uw, argspec *iw, argspec *ub, argspec *ib,
                            int64_t *NU, int64_t *NI, int64_t *K) {
    if (check_shape2(fn, uw, -1, -1) < 0) return -1;
    *NU = DIM(*uw, 0);
    *K = DIM(*uw, 1);
    if (check_shape2(fn, iw, -1, *K) < 0) return -1;
    *NI = DIM(*iw, 0);
    if ((ub->arr == NULL) != (ib->arr == NULL)) {
        PyErr_Format(PyExc_ValueError, "%s(): pass both '%s' and '%s' or neither", fn, ub->name,
                     ib->name);
        return -1;
    }
    if (check_shape1(fn, ub, *NU) < 0 || check_shape1(fn, ib, *NI) < 0) return -1;
    return 0;
}

static int check_pairs(const char *fn, argspec *users, argspec *items, int64_t NU, int64_t NI,
                       int64_t *B) {
    if (check_shape1(fn, users, -1) < 0) return -1;
    *B = DIM(*users, 0);
    if (check_shape1(fn, items, *B) < 0) return -1;
    if (check_ids(fn, users, 0, 1, *B, NU, "a user") < 0) return -1;
    if (check_ids(fn, items, 0, 1, *B, NI, "an item") < 0) return -1;
    return 0;
}

PyDoc_STRVAR(dotbias_forward_doc,
"dotbias_forward(out, uw, iw, ub, ib, users, items)\n--\n\n"
"out[b] = uw[users[b]] . iw[items[b]] + ub[users[b]] + ib[items[b]] (ub, ib may be None).\n"
"out (B,) float32 written; uw (NU,K), iw (NI,K), ub (NU,), ib (NI,) float32; users, items (B,) int32.");

static PyObject *py_dotbias_forward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"out", "uw", "iw", "ub", "ib", "users", "items", NULL};
    const char *fn = "dotbias_forward";
    argspec a[7] = {{0, "out", NPY_FLOAT32, 1}, {0, "uw", NPY_FLOAT32}, {0, "iw", NPY_FLOAT32},
                    {0, "ub", NPY_FLOAT32, 0, 1}, {0, "ib", NPY_FLOAT32, 0, 1},
                    {0, "users", NPY_INT32}, {0, "items", NPY_INT32}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOO", kwlist, &a[0].obj, &a[1].obj, &a[2].obj,
                                     &a[3].obj, &a[4].obj, &a[5].obj, &a[6].obj))
        return NULL;
    int64_t NU, NI, K, B;
    if (check_args(fn, a, 7) < 0 || check_dot_tables(fn, &a[1], &a[2], &a[3], &a[4], &NU, &NI, &K) < 0 ||
        check_pairs(fn, &a[5], &a[6], NU, NI, &B) < 0 || check_shape1(fn, &a[0], B) < 0)
        return NULL;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_dotbias_forward(F32(a[0]), CF32(a[1]), CF32(a[2]), OPTF32(a[3]), OPTF32(a[4]), I32(a[5]),
                            I32(a[6]), B, K, NU, NI);
    Py_END_ALLOW_THREADS
    if (st != CF_OK) return ids_changed(fn, "users' or 'items");
    Py_RETURN_NONE;
}

PyDoc_STRVAR(dotbias_backward_doc,
"dotbias_backward(duw, diw, dub, dib, dout, uw, iw, users, items)\n--\n\n"
"Accumulates the gradients of dotbias_forward into duw (NU,K), diw (NI,K), dub (NU,), dib (NI,)\n"
"(dub, dib may be None) given dout (B,) float32.");

static PyObject *py_dotbias_backward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"duw", "diw", "dub", "dib", "dout", "uw", "iw", "users", "items", NULL};
    const char *fn = "dotbias_backward";
    argspec a[9] = {{0, "duw", NPY_FLOAT32, 1}, {0, "diw", NPY_FLOAT32, 1},
                    {0, "dub", NPY_FLOAT32, 1, 1}, {0, "dib", NPY_FLOAT32, 1, 1},
                    {0, "dout", NPY_FLOAT32}, {0, "uw", NPY_FLOAT32}, {0, "iw", NPY_FLOAT32},
                    {0, "users", NPY_INT32}, {0, "items", NPY_INT32}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOOO", kwlist, &a[0].obj, &a[1].obj,
                                     &a[2].obj, &a[3].obj, &a[4].obj, &a[5].obj, &a[6].obj,
                                     &a[7].obj, &a[8].obj))
        return NULL;
    int64_t NU, NI, K, B;
    if (check_args(fn, a, 9) < 0 || check_dot_tables(fn, &a[5], &a[6], &a[2], &a[3], &NU, &NI, &K) < 0 ||
        check_shape2(fn, &a[0], NU, K) < 0 || check_shape2(fn, &a[1], NI, K) < 0 ||
        check_pairs(fn, &a[7], &a[8], NU, NI, &B) < 0 || check_shape1(fn, &a[4], B) < 0)
        return NULL;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_dotbias_backward(F32(a[0]), F32(a[1]), OPTF32(a[2]), OPTF32(a[3]), CF32(a[4]), CF32(a[5]),
                             CF32(a[6]), I32(a[7]), I32(a[8]), B, K, NU, NI);
    Py_END_ALLOW_THREADS
    if (st != CF_OK) return ids_changed(fn, "users' or 'items");
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- activations and loss */

/* lo and hi are used as float32: both must be finite there and still ordered */
static int check_range(const char *fn, double lo, double hi) {
    if (check_finite(fn, "lo", (float)lo) < 0 || check_finite(fn, "hi", (float)hi) < 0) return -1;
    if (!((float)lo < (float)hi)) {
        char buf[96];
        snprintf(buf, sizeof buf, "lo=%g hi=%g", lo, hi);
        PyErr_Format(PyExc_ValueError, "%s(): y_range must have lo < hi, got %s", fn, buf);
        return -1;
    }
    return 0;
}

/* out and x of the same 1-D shape (N,) */
static int check_same(const char *fn, argspec *a, int n) {
    if (check_shape1(fn, &a[n - 1], -1) < 0) return -1;
    for (int i = 0; i < n - 1; i++)
        if (check_shape1(fn, &a[i], DIM(a[n - 1], 0)) < 0) return -1;
    return 0;
}

PyDoc_STRVAR(sigmoid_range_forward_doc,
"sigmoid_range_forward(out, x, lo, hi)\n--\n\nout = sigmoid(x) * (hi - lo) + lo, all (N,) float32.");

static PyObject *py_sigmoid_range_forward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"out", "x", "lo", "hi", NULL};
    const char *fn = "sigmoid_range_forward";
    argspec a[2] = {{0, "out", NPY_FLOAT32, 1}, {0, "x", NPY_FLOAT32}};
    double lo, hi;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOdd", kwlist, &a[0].obj, &a[1].obj, &lo, &hi))
        return NULL;
    if (check_args(fn, a, 2) < 0 || check_same(fn, a, 2) < 0 || check_range(fn, lo, hi) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    cf_sigmoid_range_forward(F32(a[0]), CF32(a[1]), DIM(a[1], 0), (float)lo, (float)hi);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyDoc_STRVAR(sigmoid_range_backward_doc,
"sigmoid_range_backward(dx, dout, x, lo, hi)\n--\n\n"
"Accumulates dx += dout * (hi - lo) * s * (1 - s), s = sigmoid(x); all (N,) float32.");

static PyObject *py_sigmoid_range_backward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"dx", "dout", "x", "lo", "hi", NULL};
    const char *fn = "sigmoid_range_backward";
    argspec a[3] = {{0, "dx", NPY_FLOAT32, 1}, {0, "dout", NPY_FLOAT32}, {0, "x", NPY_FLOAT32}};
    double lo, hi;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOdd", kwlist, &a[0].obj, &a[1].obj, &a[2].obj,
                                     &lo, &hi))
        return NULL;
    if (check_args(fn, a, 3) < 0 || check_same(fn, a, 3) < 0 || check_range(fn, lo, hi) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    cf_sigmoid_range_backward(F32(a[0]), CF32(a[1]), CF32(a[2]), DIM(a[2], 0), (float)lo, (float)hi);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyDoc_STRVAR(relu_forward_doc, "relu_forward(out, x)\n--\n\nout = max(x, 0), (N,) float32.");

static PyObject *py_relu_forward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"out", "x", NULL};
    const char *fn = "relu_forward";
    argspec a[2] = {{0, "out", NPY_FLOAT32, 1}, {0, "x", NPY_FLOAT32}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO", kwlist, &a[0].obj, &a[1].obj)) return NULL;
    if (check_args(fn, a, 2) < 0 || check_same(fn, a, 2) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    cf_relu_forward(F32(a[0]), CF32(a[1]), DIM(a[1], 0));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyDoc_STRVAR(relu_backward_doc,
"relu_backward(dx, dout, x)\n--\n\nAccumulates dx += dout where x > 0; all (N,) float32.");

static PyObject *py_relu_backward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"dx", "dout", "x", NULL};
    const char *fn = "relu_backward";
    argspec a[3] = {{0, "dx", NPY_FLOAT32, 1}, {0, "dout", NPY_FLOAT32}, {0, "x", NPY_FLOAT32}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO", kwlist, &a[0].obj, &a[1].obj, &a[2].obj))
        return NULL;
    if (check_args(fn, a, 3) < 0 || check_same(fn, a, 3) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    cf_relu_backward(F32(a[0]), CF32(a[1]), CF32(a[2]), DIM(a[2], 0));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyDoc_STRVAR(mse_forward_doc,
"mse_forward(pred, y)\n--\n\nReturns mean((pred - y)**2) as a float; pred, y (N,) float32, N >= 1.");

static PyObject *py_mse_forward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"pred", "y", NULL};
    const char *fn = "mse_forward";
    argspec a[2] = {{0, "pred", NPY_FLOAT32}, {0, "y", NPY_FLOAT32}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO", kwlist, &a[0].obj, &a[1].obj)) return NULL;
    if (check_args(fn, a, 2) < 0 || check_same(fn, a, 2) < 0 ||
        positive(fn, "len(pred)", DIM(a[0], 0)) < 0)
        return NULL;
    double r;
    Py_BEGIN_ALLOW_THREADS
    r = cf_mse_forward(CF32(a[0]), CF32(a[1]), DIM(a[0], 0));
    Py_END_ALLOW_THREADS
    return PyFloat_FromDouble(r);
}

PyDoc_STRVAR(mse_backward_doc,
"mse_backward(dpred, pred, y)\n--\n\nAccumulates dpred += 2 * (pred - y) / N; all (N,) float32.");

static PyObject *py_mse_backward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"dpred", "pred", "y", NULL};
    const char *fn = "mse_backward";
    argspec a[3] = {{0, "dpred", NPY_FLOAT32, 1}, {0, "pred", NPY_FLOAT32}, {0, "y", NPY_FLOAT32}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO", kwlist, &a[0].obj, &a[1].obj, &a[2].obj))
        return NULL;
    if (check_args(fn, a, 3) < 0 || check_same(fn, a, 3) < 0 ||
        positive(fn, "len(pred)", DIM(a[1], 0)) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    cf_mse_backward(F32(a[0]), CF32(a[1]), CF32(a[2]), DIM(a[1], 0));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- optimizers */

static int check_hyper(const char *fn, double lr, double mom, double wd) {
    if (check_finite(fn, "lr", lr) < 0 || check_finite(fn, "mom", mom) < 0 || check_finite(fn, "wd", wd) < 0)
        return -1;
    if (lr < 0 || wd < 0) {
        PyErr_Format(PyExc_ValueError, "%s(): lr and wd must be >= 0", fn);
        return -1;
    }
    if (mom < 0 || mom >= 1) {
        char buf[64];
        snprintf(buf, sizeof buf, "%g", mom);
        PyErr_Format(PyExc_ValueError, "%s(): momentum must be in [0, 1), got %s", fn, buf);
        return -1;
    }
    return 0;
}

static int check_adam_consts(const char *fn, double sqr_mom, double eps) {
    if (check_finite(fn, "sqr_mom", sqr_mom) < 0 || check_finite(fn, "eps", eps) < 0) return -1;
    if (sqr_mom < 0 || sqr_mom >= 1 || eps <= 0) {
        PyErr_Format(PyExc_ValueError, "%s(): need 0 <= sqr_mom < 1 and eps > 0", fn);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(optimizer_step_doc,
"optimizer_step(params, grads, m, v, *, opt, lr, mom, sqr_mom, eps, wd, n_wd, decouple_wd, step)\n--\n\n"
"One step of fastai's Adam ('adam') or SGD ('sgd') over a whole parameter block, as the epoch\n"
"drivers take it after each batch (csrc/optim.h cf_optimizer_step): params[:n_wd] take weight\n"
"decay, the rest do not; m, v are Adam's moments (m: SGD's momentum buffer or None). Subnormal\n"
"numbers are flushed to zero during the step, as in the drivers. Returns the new step count.");

static PyObject *py_optimizer_step(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"params", "grads", "m", "v", "opt", "lr", "mom", "sqr_mom", "eps",
                             "wd", "n_wd", "decouple_wd", "step", NULL};
    const char *fn = "optimizer_step";
    argspec a[4] = {{0, "params", NPY_FLOAT32, 1}, {0, "grads", NPY_FLOAT32},
                    {0, "m", NPY_FLOAT32, 1, 1}, {0, "v", NPY_FLOAT32, 1, 1}};
    const char *opt_name;
    double lr, mom, sqr_mom, eps, wd;
    long long n_wd, step;
    int decouple;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOO$sdddddLpL", kwlist, &a[0].obj, &a[1].obj,
                                     &a[2].obj, &a[3].obj, &opt_name, &lr, &mom, &sqr_mom, &eps,
                                     &wd, &n_wd, &decouple, &step))
        return NULL;
    if (check_args(fn, a, 4) < 0 || check_shape1(fn, &a[0], -1) < 0) return NULL;
    int64_t P = DIM(a[0], 0);
    if (check_shape1(fn, &a[1], P) < 0 || check_shape1(fn, &a[2], P) < 0 ||
        check_shape1(fn, &a[3], P) < 0 || check_hyper(fn, lr, mom, wd) < 0)
        return NULL;
    cf_optimizer opt;
    memset(&opt, 0, sizeof opt);
    if (strcmp(opt_name, "adam") == 0) {
        opt.kind = CF_OPT_ADAM;
        if (!a[2].arr || !a[3].arr) {
            PyErr_Format(PyExc_TypeError, "%s(): Adam needs the moment buffers 'm' and 'v'", fn);
            return NULL;
        }
        if (check_adam_consts(fn, sqr_mom, eps) < 0) return NULL;
    } else if (strcmp(opt_name, "sgd") == 0) {
        opt.kind = CF_OPT_SGD;
    } else {
        PyErr_Format(PyExc_ValueError, "%s(): opt must be 'adam' or 'sgd', got '%s'", fn, opt_name);
        return NULL;
    }
    if (n_wd < 0 || n_wd > P || step < 0 || step == INT64_MAX) {
        PyErr_Format(PyExc_ValueError, "%s(): need 0 <= n_wd <= %lld and 0 <= step < 2**63 - 1", fn,
                     (long long)P);
        return NULL;
    }
    opt.m = OPTF32(a[2]);
    opt.v = OPTF32(a[3]);
    opt.n = P;
    opt.n_wd = n_wd;
    opt.wd = wd;
    opt.beta2 = sqr_mom;
    opt.eps = eps;
    opt.decouple_wd = decouple;
    opt.step = step;
    Py_BEGIN_ALLOW_THREADS
    cf_fp_mode mode = cf_fp_flush_subnormals();
    cf_optimizer_step(&opt, F32(a[0]), CF32(a[1]), lr, mom);
    cf_fp_restore(mode);
    Py_END_ALLOW_THREADS
    return PyLong_FromLongLong((long long)opt.step);
}

PyDoc_STRVAR(adam_step_doc,
"adam_step(p, g, m, v, lr, mom, sqr_mom, eps, wd, step, decouple_wd=True)\n--\n\n"
"One fastai Adam step, in place on p, m, v (all (N,) float32); step is the 1-based count\n"
"after this update. See csrc/optim.h for the formula.");

static PyObject *py_adam_step(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"p", "g", "m", "v", "lr", "mom", "sqr_mom", "eps", "wd", "step",
                             "decouple_wd", NULL};
    const char *fn = "adam_step";
    argspec a[4] = {{0, "p", NPY_FLOAT32, 1}, {0, "g", NPY_FLOAT32}, {0, "m", NPY_FLOAT32, 1},
                    {0, "v", NPY_FLOAT32, 1}};
    double lr, mom, sqr_mom, eps, wd;
    long long step;
    int decouple = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOdddddL|p", kwlist, &a[0].obj, &a[1].obj,
                                     &a[2].obj, &a[3].obj, &lr, &mom, &sqr_mom, &eps, &wd, &step,
                                     &decouple))
        return NULL;
    if (check_args(fn, a, 4) < 0 || check_shape1(fn, &a[0], -1) < 0) return NULL;
    for (int i = 1; i < 4; i++)
        if (check_shape1(fn, &a[i], DIM(a[0], 0)) < 0) return NULL;
    if (check_hyper(fn, lr, mom, wd) < 0 || check_adam_consts(fn, sqr_mom, eps) < 0 ||
        positive(fn, "step", step) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    cf_adam_step(F32(a[0]), CF32(a[1]), F32(a[2]), F32(a[3]), DIM(a[0], 0), lr, mom, sqr_mom,
                 eps, wd, (int64_t)step, decouple);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyDoc_STRVAR(sgd_step_doc,
"sgd_step(p, g, buf, lr, mom, wd, decouple_wd=True)\n--\n\n"
"One fastai SGD step in place on p (and the momentum buffer buf, or None for plain SGD).");

static PyObject *py_sgd_step(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"p", "g", "buf", "lr", "mom", "wd", "decouple_wd", NULL};
    const char *fn = "sgd_step";
    argspec a[3] = {{0, "p", NPY_FLOAT32, 1}, {0, "g", NPY_FLOAT32}, {0, "buf", NPY_FLOAT32, 1, 1}};
    double lr, mom, wd;
    int decouple = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOddd|p", kwlist, &a[0].obj, &a[1].obj,
                                     &a[2].obj, &lr, &mom, &wd, &decouple))
        return NULL;
    if (check_args(fn, a, 3) < 0 || check_shape1(fn, &a[0], -1) < 0 ||
        check_shape1(fn, &a[1], DIM(a[0], 0)) < 0 || check_shape1(fn, &a[2], DIM(a[0], 0)) < 0 ||
        check_hyper(fn, lr, mom, wd) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    cf_sgd_step(F32(a[0]), CF32(a[1]), OPTF32(a[2]), DIM(a[0], 0), lr, mom, wd, decouple);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- schedules */

PyDoc_STRVAR(onecycle_doc,
"onecycle(pos, start, middle, end, pct_start)\n--\n\n"
"fastai's combined cosine at each position of pos ((N,) float64 in [0, 1]); returns a new\n"
"(N,) float64 array.");

static PyObject *py_onecycle(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"pos", "start", "middle", "end", "pct_start", NULL};
    const char *fn = "onecycle";
    argspec a[1] = {{0, "pos", NPY_FLOAT64}};
    double start, middle, end, pct;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Odddd", kwlist, &a[0].obj, &start, &middle, &end,
                                     &pct))
        return NULL;
    if (check_args(fn, a, 1) < 0 || check_shape1(fn, &a[0], -1) < 0) return NULL;
    if (!(pct >= 0 && pct <= 1)) {
        PyErr_Format(PyExc_ValueError, "%s(): pct_start must be in [0, 1]", fn);
        return NULL;
    }
    npy_intp n = PyArray_DIM(a[0].arr, 0);
    PyObject *out = PyArray_SimpleNew(1, &n, NPY_FLOAT64);
    if (!out) return NULL;
    Py_BEGIN_ALLOW_THREADS
    cf_onecycle_fill((double *)PyArray_DATA((PyArrayObject *)out),
                     (const double *)PyArray_DATA(a[0].arr), n, start, middle, end, pct);
    Py_END_ALLOW_THREADS
    return out;
}

/* ---------------------------------------------------------------- dot-product model */

/* y_range: None, or any sequence of two numbers (low, high) with low < high in float32 */
static int parse_y_range(const char *fn, PyObject *y_range, int *has, float *lo, float *hi) {
    *has = 0;
    *lo = *hi = 0.0f;
    if (y_range == Py_None) return 0;
    PyObject *seq = PySequence_Check(y_range) && !PyUnicode_Check(y_range) && !PyBytes_Check(y_range)
                        ? PySequence_Fast(y_range, "y_range") : NULL;
    if (!seq || PySequence_Fast_GET_SIZE(seq) != 2) {
        Py_XDECREF(seq);
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s(): y_range must be None or a (low, high) pair of numbers, "
                     "got %.100s", fn, Py_TYPE(y_range)->tp_name);
        return -1;
    }
    double v[2];
    for (int i = 0; i < 2; i++) {
        v[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (v[i] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(seq);
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%s(): y_range must hold two numbers", fn);
            return -1;
        }
    }
    Py_DECREF(seq);
    if (check_range(fn, v[0], v[1]) < 0) return -1;
    *has = 1;
    *lo = (float)v[0];
    *hi = (float)v[1];
    return 0;
}

/* Rows referenced by the first `used` entries of order must exist (order in [0, R)) and
 * hold ids inside their tables (x is (R, E) int32; limits[e] rows for column e). Only these
 * rows are read by the call, so only they are checked: O(used), not O(R). */
static int check_order_rows(const char *fn, argspec *order, argspec *x, int64_t used, int64_t R,
                            int64_t E, const int64_t *limits) {
    const int64_t *o = (const int64_t *)PyArray_DATA(order->arr);
    const int32_t *xs = I32(*x);
    for (int64_t r = 0; r < used; r++) {
        if (o[r] < 0 || o[r] >= R) {
            PyErr_Format(PyExc_IndexError, "%s(): argument 'order' holds %lld at position %lld, "
                         "outside [0, %lld)", fn, (long long)o[r], (long long)r, (long long)R);
            return -1;
        }
        for (int64_t e = 0; e < E; e++) {
            int32_t id = xs[o[r] * E + e];
            if (id < 0 || (int64_t)id >= limits[e]) {
                PyErr_Format(PyExc_IndexError, "%s(): argument 'x' holds %s id %d at row %lld, "
                             "outside [0, %lld)", fn, e == 0 ? "a user" : "an item", (int)id,
                             (long long)o[r], (long long)limits[e]);
                return -1;
            }
        }
    }
    return 0;
}

/* J batches of bs over L order entries: every batch must start inside order; returns the
 * number of order entries the batches use, or -1 with an exception */
static int64_t batches_fit(const char *fn, int64_t J, int64_t bs, int64_t L) {
    if (J == 0) return 0;
    if (L == 0 || J - 1 > (L - 1) / bs) {
        PyErr_Format(PyExc_ValueError, "%s(): %lld batches of bs=%lld do not fit %lld order "
                     "entries", fn, (long long)J, (long long)bs, (long long)L);
        return -1;
    }
    int64_t start = (J - 1) * bs;
    return L - start > bs ? start + bs : L;
}

/* The epoch driver stopped at order position pos (CF_ERR_INDEX) although check_order_rows
 * passed before the call: order or x was written by another thread while the GIL was
 * released. Raises an IndexError naming what is wrong now (read with bounds checks: the
 * arrays may still be changing). */
static PyObject *fit_index_error(const char *fn, argspec *order, argspec *x, int64_t pos,
                                 int64_t R, int64_t E, const int64_t *limits) {
    const int64_t L = DIM(*order, 0);
    const int64_t r = pos >= 0 && pos < L ? ((const int64_t *)PyArray_DATA(order->arr))[pos] : -1;
    const char *what = "'order' or 'x'";
    char found[160] = "";
    if (r < 0 || r >= R) {
        what = "'order'";
        snprintf(found, sizeof found, "holds %lld at position %lld, outside [0, %lld)",
                 (long long)r, (long long)pos, (long long)R);
    } else {
        for (int64_t e = 0; e < E && !found[0]; e++) {
            int32_t id = I32(*x)[r * E + e];
            if (id < 0 || (int64_t)id >= limits[e]) {
                what = "'x'";
                snprintf(found, sizeof found, "holds %s id %d at row %lld, outside [0, %lld)",
                         e == 0 ? "a user" : "an item", (int)id, (long long)r, (long long)limits[e]);
            }
        }
        if (!found[0]) snprintf(found, sizeof found, "held a bad row or id at position %lld", (long long)pos);
    }
    PyErr_Format(PyExc_IndexError, "%s(): argument %s %s, which was not there when the call "
                 "checked it: another thread wrote to it during the call, which stopped before "
                 "the batch holding it (the batches before it were trained)", fn, what, found);
    return NULL;
}

/* parses the model description shared by dot_predict and dot_fit_epoch */
static int parse_dot_config(const char *fn, long long nu, long long ni, long long k, int has_bias,
                            PyObject *y_range, cf_dot_config *c) {
    if (positive(fn, "n_users", nu) < 0 || positive(fn, "n_items", ni) < 0 ||
        positive(fn, "n_factors", k) < 0)
        return -1;
    if (nu > INT32_MAX || ni > INT32_MAX || k > INT32_MAX ||
        (nu + ni) > (INT64_MAX / 4) / (k + 1)) {
        PyErr_Format(PyExc_ValueError, "%s(): n_users, n_items and n_factors must be < 2**31 and "
                     "the parameter count (n_users + n_items) * (n_factors + 1) < 2**61", fn);
        return -1;
    }
    c->n_users = nu;
    c->n_items = ni;
    c->k = k;
    c->has_bias = has_bias;
    return parse_y_range(fn, y_range, &c->has_range, &c->lo, &c->hi);
}

PyDoc_STRVAR(dot_predict_doc,
"dot_predict(out, params, x, n_users, n_items, n_factors, has_bias, y_range, n_threads=1)\n--\n\n"
"Predictions of a dot-product model for the (user, item) rows of x ((N,2) int32) into out\n"
"((N,) float32). params is the model's flat float32 block (see csrc/train.h for its layout).\n"
"Up to n_threads threads (one for every 8192 rows at most); the values do not depend on it.");

static PyObject *py_dot_predict(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"out", "params", "x", "n_users", "n_items", "n_factors", "has_bias",
                             "y_range", "n_threads", NULL};
    const char *fn = "dot_predict";
    argspec a[3] = {{0, "out", NPY_FLOAT32, 1}, {0, "params", NPY_FLOAT32}, {0, "x", NPY_INT32}};
    long long nu, ni, k, n_threads = 1;
    int has_bias;
    PyObject *y_range;
    cf_dot_config c;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOLLLpO|L", kwlist, &a[0].obj, &a[1].obj,
                                     &a[2].obj, &nu, &ni, &k, &has_bias, &y_range, &n_threads))
        return NULL;
    if (positive(fn, "n_threads", n_threads) < 0) return NULL;
    if (n_threads > 64) n_threads = 64; /* the core caps it too */
    if (check_args(fn, a, 3) < 0 || parse_dot_config(fn, nu, ni, k, has_bias, y_range, &c) < 0 ||
        check_shape1(fn, &a[1], cf_dot_n_params(&c)) < 0 || check_shape2(fn, &a[2], -1, 2) < 0)
        return NULL;
    int64_t N = DIM(a[2], 0);
    if (check_shape1(fn, &a[0], N) < 0 || check_ids(fn, &a[2], 0, 2, N, c.n_users, "a user") < 0 ||
        check_ids(fn, &a[2], 1, 2, N, c.n_items, "an item") < 0)
        return NULL;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_dot_predict(F32(a[0]), CF32(a[1]), I32(a[2]), N, &c, (int)n_threads);
    Py_END_ALLOW_THREADS
    if (st == CF_ERR_NOMEM) return PyErr_NoMemory();
    if (st != CF_OK) return ids_changed(fn, "x");
    Py_RETURN_NONE;
}

/* The optimizer and per-batch schedule shared by the epoch drivers: opt is 'adam' or 'sgd';
 * m, v are (P,) state buffers (Adam needs both; SGD uses m as its momentum buffer, or None);
 * parameters [0, n_wd) take weight decay; lrs and moms are (J,) per batch. Fills *opt and *J. */
static int parse_optimizer(const char *fn, const char *opt_name, argspec *m, argspec *v,
                           int64_t P, double wd, long long n_wd, double sqr_mom, double eps,
                           int decouple, long long step, argspec *lrs, argspec *moms,
                           cf_optimizer *opt, int64_t *J) {
    memset(opt, 0, sizeof *opt);
    if (strcmp(opt_name, "adam") == 0) opt->kind = CF_OPT_ADAM;
    else if (strcmp(opt_name, "sgd") == 0) opt->kind = CF_OPT_SGD;
    else {
        PyErr_Format(PyExc_ValueError, "%s(): opt must be 'adam' or 'sgd', got '%s'", fn, opt_name);
        return -1;
    }
    if (check_shape1(fn, m, P) < 0 || check_shape1(fn, v, P) < 0) return -1;
    if (opt->kind == CF_OPT_ADAM && (!m->arr || !v->arr)) {
        PyErr_Format(PyExc_TypeError, "%s(): Adam needs the moment buffers 'm' and 'v'", fn);
        return -1;
    }
    if (check_shape1(fn, lrs, -1) < 0) return -1;
    *J = DIM(*lrs, 0);
    if (check_shape1(fn, moms, *J) < 0) return -1;
    if (n_wd < 0 || n_wd > P || step < 0) {
        PyErr_Format(PyExc_ValueError, "%s(): need 0 <= n_wd <= %lld and step >= 0", fn,
                     (long long)P);
        return -1;
    }
    if (check_hyper(fn, 0.0, 0.0, wd) < 0 ||
        (opt->kind == CF_OPT_ADAM && check_adam_consts(fn, sqr_mom, eps) < 0))
        return -1;
    const double *l = (const double *)PyArray_DATA(lrs->arr);
    const double *mo = (const double *)PyArray_DATA(moms->arr);
    for (int64_t j = 0; j < *J; j++)
        if (check_hyper(fn, l[j], mo[j], wd) < 0) return -1;
    opt->m = OPTF32(*m);
    opt->v = OPTF32(*v);
    opt->n = P;
    opt->n_wd = n_wd;
    opt->wd = wd;
    opt->beta2 = sqr_mom;
    opt->eps = eps;
    opt->decouple_wd = decouple;
    opt->step = step;
    return 0;
}

PyDoc_STRVAR(dot_fit_epoch_doc,
"dot_fit_epoch(params, grads, m, v, losses, x, y, order, lrs, moms, *, n_users, n_items,\n"
"              n_factors, has_bias, y_range, bs, opt, wd, n_wd, sqr_mom, eps, decouple_wd,\n"
"              step)\n--\n\n"
"Trains a dot-product model for one epoch in a single call with the GIL released.\n"
"params, grads, m, v: (P,) float32 blocks (v unused and may be None for SGD; m None for SGD\n"
"without momentum). x (R,2) int32, y (R,) float32, order (R,) int64; batch j is\n"
"order[j*bs:(j+1)*bs]; lrs, moms (J,) float64 per batch; losses (J,) float64 receives each\n"
"batch's MSE before its step. opt is 'adam' or 'sgd'; parameters [0, n_wd) take weight decay.\n"
"Returns (step, bad_batch): the optimizer's step count afterwards and -1, or the index of the\n"
"batch whose loss was not finite (training stopped before that batch's step).");

static PyObject *py_dot_fit_epoch(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"params", "grads", "m", "v", "losses", "x", "y", "order", "lrs",
                             "moms", "n_users", "n_items", "n_factors", "has_bias", "y_range",
                             "bs", "opt", "wd", "n_wd", "sqr_mom", "eps", "decouple_wd", "step",
                             NULL};
    const char *fn = "dot_fit_epoch";
    argspec a[10] = {{0, "params", NPY_FLOAT32, 1}, {0, "grads", NPY_FLOAT32, 1},
                     {0, "m", NPY_FLOAT32, 1, 1},     {0, "v", NPY_FLOAT32, 1, 1},
                     {0, "losses", NPY_FLOAT64, 1},   {0, "x", NPY_INT32},
                     {0, "y", NPY_FLOAT32},           {0, "order", NPY_INT64},
                     {0, "lrs", NPY_FLOAT64},         {0, "moms", NPY_FLOAT64}};
    long long nu, ni, k, bs, n_wd, step;
    int has_bias, decouple;
    PyObject *y_range;
    const char *opt_name;
    double wd, sqr_mom, eps;
    cf_dot_config c;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOOOO$LLLpOLsdLddpL", kwlist, &a[0].obj,
                                     &a[1].obj, &a[2].obj, &a[3].obj, &a[4].obj, &a[5].obj,
                                     &a[6].obj, &a[7].obj, &a[8].obj, &a[9].obj, &nu, &ni, &k,
                                     &has_bias, &y_range, &bs, &opt_name, &wd, &n_wd, &sqr_mom,
                                     &eps, &decouple, &step))
        return NULL;
    if (check_args(fn, a, 10) < 0 || parse_dot_config(fn, nu, ni, k, has_bias, y_range, &c) < 0)
        return NULL;
    int64_t P = cf_dot_n_params(&c), J;
    cf_optimizer opt;
    if (check_shape1(fn, &a[0], P) < 0 || check_shape1(fn, &a[1], P) < 0 ||
        parse_optimizer(fn, opt_name, &a[2], &a[3], P, wd, n_wd, sqr_mom, eps, decouple, step,
                        &a[8], &a[9], &opt, &J) < 0 ||
        check_shape2(fn, &a[5], -1, 2) < 0)
        return NULL;
    int64_t R = DIM(a[5], 0);
    if (check_shape1(fn, &a[6], R) < 0 || check_shape1(fn, &a[7], -1) < 0 ||
        check_shape1(fn, &a[4], J) < 0 || positive(fn, "bs", bs) < 0)
        return NULL;
    int64_t L = DIM(a[7], 0);
    int64_t used = batches_fit(fn, J, bs, L);
    if (used < 0) return NULL;
    const int64_t limits[2] = {c.n_users, c.n_items};
    if (check_order_rows(fn, &a[7], &a[5], used, R, 2, limits) < 0) return NULL;
    const int64_t *order = (const int64_t *)PyArray_DATA(a[7].arr);
    const double *lrs = (const double *)PyArray_DATA(a[8].arr);
    const double *moms = (const double *)PyArray_DATA(a[9].arr);
    int64_t bad = -1;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_dot_fit_epoch(F32(a[0]), F32(a[1]), &opt, (double *)PyArray_DATA(a[4].arr), &bad,
                          I32(a[5]), CF32(a[6]), order, L, R, bs, J, lrs, moms, &c);
    Py_END_ALLOW_THREADS
    if (st == CF_ERR_NOMEM) return PyErr_NoMemory();
    if (st == CF_ERR_INDEX) return fit_index_error(fn, &a[7], &a[5], bad, R, 2, limits);
    if (st != CF_OK && st != CF_ERR_NONFINITE) {
        PyErr_Format(PyExc_RuntimeError, "%s(): internal error %d", fn, st);
        return NULL;
    }
    return Py_BuildValue("LL", (long long)opt.step, (long long)bad);
}

/* ---------------------------------------------------------------- neural model (issue 3) */

PyDoc_STRVAR(linear_forward_doc,
"linear_forward(outT, xT, W, bias)\n--\n\n"
"outT = W @ xT + bias[:, None]. Feature-major: xT (DI,B), outT (DO,B) written, W (DO,DI), bias (DO,)\n"
"or None; all float32.");

static PyObject *py_linear_forward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"outT", "xT", "W", "bias", NULL};
    const char *fn = "linear_forward";
    argspec a[4] = {{0, "outT", NPY_FLOAT32, 1}, {0, "xT", NPY_FLOAT32}, {0, "W", NPY_FLOAT32},
                    {0, "bias", NPY_FLOAT32, 0, 1}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOO", kwlist, &a[0].obj, &a[1].obj, &a[2].obj,
                                     &a[3].obj))
        return NULL;
    if (check_args(fn, a, 4) < 0 || check_shape2(fn, &a[2], -1, -1) < 0) return NULL;
    int64_t DO = DIM(a[2], 0), DI = DIM(a[2], 1);
    if (check_shape2(fn, &a[1], DI, -1) < 0) return NULL;
    int64_t B = DIM(a[1], 1);
    if (check_shape2(fn, &a[0], DO, B) < 0 || check_shape1(fn, &a[3], DO) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    cf_linear_forward(F32(a[0]), CF32(a[1]), CF32(a[2]), OPTF32(a[3]), B, DI, DO);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyDoc_STRVAR(linear_backward_doc,
"linear_backward(dxT, dW, dbias, doutT, xT, W)\n--\n\n"
"Accumulates the gradients of linear_forward into dxT (DI,B) (or None), dW (DO,DI) and dbias (DO,)\n"
"(or None) given doutT (DO,B), the forward input xT (DI,B) and W (DO,DI).");

static PyObject *py_linear_backward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"dxT", "dW", "dbias", "doutT", "xT", "W", NULL};
    const char *fn = "linear_backward";
    argspec a[6] = {{0, "dxT", NPY_FLOAT32, 1, 1}, {0, "dW", NPY_FLOAT32, 1},
                    {0, "dbias", NPY_FLOAT32, 1, 1}, {0, "doutT", NPY_FLOAT32},
                    {0, "xT", NPY_FLOAT32}, {0, "W", NPY_FLOAT32}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOO", kwlist, &a[0].obj, &a[1].obj, &a[2].obj,
                                     &a[3].obj, &a[4].obj, &a[5].obj))
        return NULL;
    if (check_args(fn, a, 6) < 0 || check_shape2(fn, &a[5], -1, -1) < 0) return NULL;
    int64_t DO = DIM(a[5], 0), DI = DIM(a[5], 1);
    if (check_shape2(fn, &a[4], DI, -1) < 0) return NULL;
    int64_t B = DIM(a[4], 1);
    if (check_shape2(fn, &a[3], DO, B) < 0 || check_shape2(fn, &a[0], DI, B) < 0 ||
        check_shape2(fn, &a[1], DO, DI) < 0 || check_shape1(fn, &a[2], DO) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    cf_linear_backward(OPTF32(a[0]), F32(a[1]), OPTF32(a[2]), CF32(a[3]), CF32(a[4]), CF32(a[5]),
                       B, DI, DO);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static int check_bn_consts(const char *fn, double momentum, double eps) {
    if (check_finite(fn, "momentum", momentum) < 0 || check_finite(fn, "eps", eps) < 0) return -1;
    if (momentum < 0 || momentum > 1 || eps <= 0) {
        PyErr_Format(PyExc_ValueError, "%s(): need 0 <= momentum <= 1 and eps > 0", fn);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(batchnorm_forward_train_doc,
"batchnorm_forward_train(outT, mean, invstd, xT, gamma, beta, running_mean, running_var,\n"
"                        momentum=0.1, eps=1e-5)\n--\n\n"
"BatchNorm1d in training mode over feature-major xT (N,B), B >= 2: writes outT (N,B) and the\n"
"cache mean, invstd (N,), updates running_mean, running_var (N,) in place.");

static PyObject *py_batchnorm_forward_train(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"outT", "mean", "invstd", "xT", "gamma", "beta", "running_mean",
                             "running_var", "momentum", "eps", NULL};
    const char *fn = "batchnorm_forward_train";
    argspec a[8] = {{0, "outT", NPY_FLOAT32, 1}, {0, "mean", NPY_FLOAT32, 1},
                    {0, "invstd", NPY_FLOAT32, 1}, {0, "xT", NPY_FLOAT32},
                    {0, "gamma", NPY_FLOAT32}, {0, "beta", NPY_FLOAT32},
                    {0, "running_mean", NPY_FLOAT32, 1}, {0, "running_var", NPY_FLOAT32, 1}};
    double momentum = 0.1, eps = 1e-5;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOO|dd", kwlist, &a[0].obj, &a[1].obj,
                                     &a[2].obj, &a[3].obj, &a[4].obj, &a[5].obj, &a[6].obj,
                                     &a[7].obj, &momentum, &eps))
        return NULL;
    if (check_args(fn, a, 8) < 0 || check_shape2(fn, &a[3], -1, -1) < 0 ||
        check_bn_consts(fn, momentum, eps) < 0)
        return NULL;
    int64_t N = DIM(a[3], 0), B = DIM(a[3], 1);
    if (check_shape2(fn, &a[0], N, B) < 0) return NULL;
    for (int i = 1; i < 8; i++)
        if (i != 3 && check_shape1(fn, &a[i], N) < 0) return NULL;
    if (B < 2) {
        PyErr_Format(PyExc_ValueError, "%s(): training-mode BatchNorm needs at least 2 rows per "
                     "batch, got %lld", fn, (long long)B);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    cf_batchnorm_forward_train(F32(a[0]), F32(a[1]), F32(a[2]), CF32(a[3]), CF32(a[4]), CF32(a[5]),
                               F32(a[6]), F32(a[7]), B, N, momentum, eps);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyDoc_STRVAR(batchnorm_forward_eval_doc,
"batchnorm_forward_eval(outT, xT, gamma, beta, running_mean, running_var, eps=1e-5)\n--\n\n"
"BatchNorm1d in eval mode (running statistics) over feature-major xT (N,B) into outT (N,B).");

static PyObject *py_batchnorm_forward_eval(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"outT", "xT", "gamma", "beta", "running_mean", "running_var", "eps",
                             NULL};
    const char *fn = "batchnorm_forward_eval";
    argspec a[6] = {{0, "outT", NPY_FLOAT32, 1}, {0, "xT", NPY_FLOAT32}, {0, "gamma", NPY_FLOAT32},
                    {0, "beta", NPY_FLOAT32}, {0, "running_mean", NPY_FLOAT32},
                    {0, "running_var", NPY_FLOAT32}};
    double eps = 1e-5;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOO|d", kwlist, &a[0].obj, &a[1].obj, &a[2].obj,
                                     &a[3].obj, &a[4].obj, &a[5].obj, &eps))
        return NULL;
    if (check_args(fn, a, 6) < 0 || check_shape2(fn, &a[1], -1, -1) < 0 ||
        check_bn_consts(fn, 0.1, eps) < 0)
        return NULL;
    int64_t N = DIM(a[1], 0), B = DIM(a[1], 1);
    if (check_shape2(fn, &a[0], N, B) < 0) return NULL;
    for (int i = 2; i < 6; i++)
        if (check_shape1(fn, &a[i], N) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    cf_batchnorm_forward_eval(F32(a[0]), CF32(a[1]), CF32(a[2]), CF32(a[3]), CF32(a[4]),
                              CF32(a[5]), B, N, eps);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyDoc_STRVAR(batchnorm_backward_doc,
"batchnorm_backward(dxT, dgamma, dbeta, doutT, xT, mean, invstd, gamma)\n--\n\n"
"Accumulates the gradients of batchnorm_forward_train into dxT (N,B), dgamma, dbeta (N,).");

static PyObject *py_batchnorm_backward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"dxT", "dgamma", "dbeta", "doutT", "xT", "mean", "invstd", "gamma",
                             NULL};
    const char *fn = "batchnorm_backward";
    argspec a[8] = {{0, "dxT", NPY_FLOAT32, 1}, {0, "dgamma", NPY_FLOAT32, 1},
                    {0, "dbeta", NPY_FLOAT32, 1}, {0, "doutT", NPY_FLOAT32},
                    {0, "xT", NPY_FLOAT32}, {0, "mean", NPY_FLOAT32},
                    {0, "invstd", NPY_FLOAT32}, {0, "gamma", NPY_FLOAT32}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOO", kwlist, &a[0].obj, &a[1].obj,
                                     &a[2].obj, &a[3].obj, &a[4].obj, &a[5].obj, &a[6].obj,
                                     &a[7].obj))
        return NULL;
    if (check_args(fn, a, 8) < 0 || check_shape2(fn, &a[4], -1, -1) < 0) return NULL;
    int64_t N = DIM(a[4], 0), B = DIM(a[4], 1);
    if (check_shape2(fn, &a[0], N, B) < 0 || check_shape2(fn, &a[3], N, B) < 0) return NULL;
    for (int i = 1; i < 8; i++)
        if (i != 3 && i != 4 && check_shape1(fn, &a[i], N) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    cf_batchnorm_backward(F32(a[0]), F32(a[1]), F32(a[2]), CF32(a[3]), CF32(a[4]), CF32(a[5]),
                          CF32(a[6]), CF32(a[7]), B, N);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyDoc_STRVAR(dropout_mask_doc,
"dropout_mask(mask, p, seed)\n--\n\n"
"Fills mask ((N,) float32) with 0 (probability p) or 1/(1-p), from a generator seeded by seed.");

static PyObject *py_dropout_mask(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"mask", "p", "seed", NULL};
    const char *fn = "dropout_mask";
    argspec a[1] = {{0, "mask", NPY_FLOAT32, 1}};
    double p;
    unsigned long long seed;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OdK", kwlist, &a[0].obj, &p, &seed)) return NULL;
    if (check_args(fn, a, 1) < 0 || check_shape1(fn, &a[0], -1) < 0) return NULL;
    if (!(p >= 0 && p < 1)) {
        PyErr_Format(PyExc_ValueError, "%s(): p must be in [0, 1)", fn);
        return NULL;
    }
    cf_rng rng;
    cf_rng_seed(&rng, (uint64_t)seed);
    Py_BEGIN_ALLOW_THREADS
    cf_dropout_mask(F32(a[0]), DIM(a[0], 0), p, &rng);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* tables: a sequence of E float32 (rows, dim) arrays, checked like any other argument.
 * On success every specs[e].obj is a new reference, held until release_tables: the kernel
 * reads the arrays with the GIL released, and nothing else may be what keeps them alive - a
 * sequence that is not a list or tuple (or an ndarray) makes its items on the fly, and
 * another thread can take an item out of a list. On failure nothing is held. */
#define CF_MAX_TABLES 64
static void release_tables(argspec *specs, int64_t E) {
    for (int64_t e = 0; e < E; e++) Py_CLEAR(specs[e].obj);
}

static int check_tables(const char *fn, const char *name, PyObject *seq_obj, int writable,
                        argspec *specs, int64_t *E) {
    *E = 0;
    PyObject *seq = PySequence_Check(seq_obj) ? PySequence_Fast(seq_obj, name) : NULL;
    if (!seq) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s(): argument '%s' must be a sequence of float32 arrays",
                     fn, name);
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > CF_MAX_TABLES) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "%s(): argument '%s' must hold 1 to %d tables", fn, name,
                     CF_MAX_TABLES);
        return -1;
    }
    for (Py_ssize_t e = 0; e < n; e++) {
        specs[e].obj = PySequence_Fast_GET_ITEM(seq, e);
        Py_INCREF(specs[e].obj);
        specs[e].name = name;
        specs[e].type = NPY_FLOAT32;
        specs[e].writable = writable;
        specs[e].optional = 0;
    }
    Py_DECREF(seq);
    for (Py_ssize_t e = 0; e < n; e++)
        if (check_one(fn, &specs[e]) < 0 || check_shape2(fn, &specs[e], -1, -1) < 0) {
            release_tables(specs, n);
            return -1;
        }
    *E = n;
    return 0;
}

PyDoc_STRVAR(embedding_concat_forward_doc,
"embedding_concat_forward(outT, tables, ids)\n--\n\n"
"outT[off_e + j, b] = tables[e][ids[e, b], j]: the rows of E tables concatenated, feature-major.\n"
"outT (sum(dims), B) float32 written; tables a sequence of (rows, dim) float32; ids (E, B) int32.");

static PyObject *py_embedding_concat_forward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"outT", "tables", "ids", NULL};
    const char *fn = "embedding_concat_forward";
    argspec a[2] = {{0, "outT", NPY_FLOAT32, 1}, {0, "ids", NPY_INT32}};
    argspec t[CF_MAX_TABLES];
    PyObject *tables, *ret = NULL;
    int64_t E = 0, rows[CF_MAX_TABLES], dims[CF_MAX_TABLES], D = 0, B;
    const float *ptr[CF_MAX_TABLES];
    int st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO", kwlist, &a[0].obj, &tables, &a[1].obj))
        return NULL;
    if (check_args(fn, a, 2) < 0 || check_tables(fn, "tables", tables, 0, t, &E) < 0)
        return NULL;
    if (check_shape2(fn, &a[1], E, -1) < 0) goto done;
    B = DIM(a[1], 1);
    for (int64_t e = 0; e < E; e++) {
        rows[e] = DIM(t[e], 0);
        dims[e] = DIM(t[e], 1);
        ptr[e] = CF32(t[e]);
        D += dims[e];
        if (overlaps(a[0].arr, t[e].arr)) {
            PyErr_Format(PyExc_ValueError, "%s(): 'outT' must not share memory with 'tables'", fn);
            goto done;
        }
        if (check_ids(fn, &a[1], e * B, 1, B, rows[e], e == 0 ? "a user" : "an item") < 0)
            goto done;
    }
    if (check_shape2(fn, &a[0], D, B) < 0) goto done;
    Py_BEGIN_ALLOW_THREADS
    st = cf_embedding_concat_forward(F32(a[0]), ptr, rows, dims, I32(a[1]), E, B);
    Py_END_ALLOW_THREADS
    ret = st != CF_OK ? ids_changed(fn, "ids") : (Py_INCREF(Py_None), Py_None);
done:
    release_tables(t, E);
    return ret;
}

PyDoc_STRVAR(embedding_concat_backward_doc,
"embedding_concat_backward(dtables, doutT, ids)\n--\n\n"
"Accumulates doutT (sum(dims), B) into the rows ids[e] of each dtables[e] (rows, dim) float32\n"
"(scatter-add; repeated ids add up).");

static PyObject *py_embedding_concat_backward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"dtables", "doutT", "ids", NULL};
    const char *fn = "embedding_concat_backward";
    argspec a[2] = {{0, "doutT", NPY_FLOAT32}, {0, "ids", NPY_INT32}};
    argspec t[CF_MAX_TABLES];
    PyObject *tables, *ret = NULL;
    int64_t E = 0, rows[CF_MAX_TABLES], dims[CF_MAX_TABLES], D = 0, B;
    float *ptr[CF_MAX_TABLES];
    int st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO", kwlist, &tables, &a[0].obj, &a[1].obj))
        return NULL;
    if (check_args(fn, a, 2) < 0 || check_tables(fn, "dtables", tables, 1, t, &E) < 0)
        return NULL;
    if (check_shape2(fn, &a[1], E, -1) < 0) goto done;
    B = DIM(a[1], 1);
    for (int64_t e = 0; e < E; e++) {
        rows[e] = DIM(t[e], 0);
        dims[e] = DIM(t[e], 1);
        ptr[e] = F32(t[e]);
        D += dims[e];
        for (int64_t f = 0; f < E; f++)
            if (f != e && overlaps(t[e].arr, t[f].arr)) {
                PyErr_Format(PyExc_ValueError, "%s(): the tables of 'dtables' must not share memory", fn);
                goto done;
            }
        if (overlaps(t[e].arr, a[0].arr) || overlaps(t[e].arr, a[1].arr)) {
            PyErr_Format(PyExc_ValueError, "%s(): 'dtables' must not share memory with 'doutT' or 'ids'", fn);
            goto done;
        }
        if (check_ids(fn, &a[1], e * B, 1, B, rows[e], e == 0 ? "a user" : "an item") < 0)
            goto done;
    }
    if (check_shape2(fn, &a[0], D, B) < 0) goto done;
    Py_BEGIN_ALLOW_THREADS
    st = cf_embedding_concat_backward(ptr, CF32(a[0]), rows, dims, I32(a[1]), E, B);
    Py_END_ALLOW_THREADS
    ret = st != CF_OK ? ids_changed(fn, "ids") : (Py_INCREF(Py_None), Py_None);
done:
    release_tables(t, E);
    return ret;
}

PyDoc_STRVAR(dropout_forward_doc,
"dropout_forward(out, x, mask)\n--\n\nout = x * mask; all (N,) float32 (mask from dropout_mask).");

static PyObject *py_dropout_forward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"out", "x", "mask", NULL};
    const char *fn = "dropout_forward";
    argspec a[3] = {{0, "out", NPY_FLOAT32, 1}, {0, "x", NPY_FLOAT32}, {0, "mask", NPY_FLOAT32}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO", kwlist, &a[0].obj, &a[1].obj, &a[2].obj))
        return NULL;
    if (check_args(fn, a, 3) < 0 || check_same(fn, a, 3) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    cf_dropout_forward(F32(a[0]), CF32(a[1]), CF32(a[2]), DIM(a[2], 0));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyDoc_STRVAR(dropout_backward_doc,
"dropout_backward(dx, dout, mask)\n--\n\nAccumulates dx += dout * mask; all (N,) float32.");

static PyObject *py_dropout_backward(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"dx", "dout", "mask", NULL};
    const char *fn = "dropout_backward";
    argspec a[3] = {{0, "dx", NPY_FLOAT32, 1}, {0, "dout", NPY_FLOAT32}, {0, "mask", NPY_FLOAT32}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO", kwlist, &a[0].obj, &a[1].obj, &a[2].obj))
        return NULL;
    if (check_args(fn, a, 3) < 0 || check_same(fn, a, 3) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    cf_dropout_backward(F32(a[0]), CF32(a[1]), CF32(a[2]), DIM(a[2], 0));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Builds an nn config from tables ((E,3) int64: rows, dim, params offset), ops ((K,6) int64:
 * kind, n_in, n_out, w, b, stat) and ps ((K,) float64). The arrays must outlive the config. */
typedef struct {
    cf_nn_config c;
    cf_nn_op *ops;
    int64_t *emb; /* rows | dims | offsets, each n_emb long */
} nn_holder;

static void nn_holder_free(nn_holder *h) {
    PyMem_Free(h->ops);
    PyMem_Free(h->emb);
}

static int parse_nn_config(const char *fn, argspec *tables, argspec *ops, argspec *ps,
                           PyObject *y_range, double bn_momentum, double bn_eps, int64_t n_params,
                           int64_t n_stats, nn_holder *h) {
    memset(h, 0, sizeof *h);
    if (check_shape2(fn, tables, -1, 3) < 0 || check_shape2(fn, ops, -1, 6) < 0 ||
        check_shape1(fn, ps, DIM(*ops, 0)) < 0 || check_bn_consts(fn, bn_momentum, bn_eps) < 0)
        return -1;
    int64_t E = DIM(*tables, 0), K = DIM(*ops, 0);
    if (positive(fn, "len(tables)", E) < 0 || positive(fn, "len(ops)", K) < 0) return -1;
    h->ops = PyMem_Calloc((size_t)K, sizeof(cf_nn_op)); /* overflow-checked counts */
    h->emb = E <= PY_SSIZE_T_MAX / 3 ? PyMem_Calloc((size_t)(3 * E), sizeof(int64_t)) : NULL;
    if (!h->ops || !h->emb) {
        nn_holder_free(h);
        PyErr_NoMemory();
        return -1;
    }
    const int64_t *t = (const int64_t *)PyArray_DATA(tables->arr);
    for (int64_t e = 0; e < E; e++) {
        h->emb[e] = t[3 * e];
        h->emb[E + e] = t[3 * e + 1];
        h->emb[2 * E + e] = t[3 * e + 2];
        if (h->emb[e] > INT32_MAX || h->emb[E + e] > INT32_MAX) {
            PyErr_Format(PyExc_ValueError, "%s(): embedding tables must have < 2**31 rows and "
                         "columns", fn);
            nn_holder_free(h);
            return -1;
        }
    }
    const int64_t *o = (const int64_t *)PyArray_DATA(ops->arr);
    const double *p = (const double *)PyArray_DATA(ps->arr);
    for (int64_t k = 0; k < K; k++) {
        cf_nn_op *op = &h->ops[k];
        op->kind = o[6 * k];
        op->n_in = o[6 * k + 1];
        op->n_out = o[6 * k + 2];
        op->w = o[6 * k + 3];
        op->b = o[6 * k + 4];
        op->stat = o[6 * k + 5];
        op->p = p[k];
        if (op->n_in > INT32_MAX || op->n_out > INT32_MAX) {
            PyErr_Format(PyExc_ValueError, "%s(): layer widths must be < 2**31", fn);
            nn_holder_free(h);
            return -1;
        }
    }
    h->c.n_emb = E;
    h->c.emb_rows = h->emb;
    h->c.emb_dim = h->emb + E;
    h->c.emb_off = h->emb + 2 * E;
    h->c.n_ops = K;
    h->c.ops = h->ops;
    h->c.bn_momentum = bn_momentum;
    h->c.bn_eps = bn_eps;
    h->c.n_params = n_params;
    h->c.n_stats = n_stats;
    if (parse_y_range(fn, y_range, &h->c.has_range, &h->c.lo, &h->c.hi) < 0) {
        nn_holder_free(h);
        return -1;
    }
    if (cf_nn_validate(&h->c) != CF_OK) {
        PyErr_Format(PyExc_ValueError, "%s(): inconsistent network description: layer widths must "
                     "chain from the embedding width down to 1 and every offset must lie inside "
                     "params (%lld) or stats (%lld); dropout p in [0, 1)", fn,
                     (long long)n_params, (long long)n_stats);
        nn_holder_free(h);
        return -1;
    }
    return 0;
}

static int check_nn_ids(const char *fn, argspec *x, const cf_nn_config *c, int64_t *N) {
    if (check_shape2(fn, x, -1, c->n_emb) < 0) return -1;
    *N = DIM(*x, 0);
    for (int64_t e = 0; e < c->n_emb; e++)
        if (check_ids(fn, x, e, c->n_emb, *N, c->emb_rows[e], e == 0 ? "a user" : "an item") < 0)
            return -1;
    return 0;
}

PyDoc_STRVAR(nn_predict_doc,
"nn_predict(out, params, stats, x, *, tables, ops, ps, y_range, bn_momentum, bn_eps)\n--\n\n"
"Eval-mode predictions of an embedding + MLP model for the rows of x ((N,E) int32) into out\n"
"((N,) float32). tables (E,3) int64 rows/dim/offset; ops (K,6) int64 kind/n_in/n_out/w/b/stat\n"
"(kinds: 0 Linear, 1 ReLU, 2 BatchNorm1d, 3 Dropout); ps (K,) float64 dropout probabilities.");

static PyObject *py_nn_predict(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"out", "params", "stats", "x", "tables", "ops", "ps", "y_range",
                             "bn_momentum", "bn_eps", NULL};
    const char *fn = "nn_predict";
    argspec a[7] = {{0, "out", NPY_FLOAT32, 1}, {0, "params", NPY_FLOAT32},
                    {0, "stats", NPY_FLOAT32}, {0, "x", NPY_INT32}, {0, "tables", NPY_INT64},
                    {0, "ops", NPY_INT64}, {0, "ps", NPY_FLOAT64}};
    PyObject *y_range;
    double bn_momentum, bn_eps;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOO$OOOOdd", kwlist, &a[0].obj, &a[1].obj,
                                     &a[2].obj, &a[3].obj, &a[4].obj, &a[5].obj, &a[6].obj,
                                     &y_range, &bn_momentum, &bn_eps))
        return NULL;
    nn_holder h;
    if (check_args(fn, a, 7) < 0 || check_shape1(fn, &a[1], -1) < 0 ||
        check_shape1(fn, &a[2], -1) < 0 ||
        parse_nn_config(fn, &a[4], &a[5], &a[6], y_range, bn_momentum, bn_eps, DIM(a[1], 0),
                        DIM(a[2], 0), &h) < 0)
        return NULL;
    int64_t N;
    if (check_nn_ids(fn, &a[3], &h.c, &N) < 0 || check_shape1(fn, &a[0], N) < 0) {
        nn_holder_free(&h);
        return NULL;
    }
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_nn_predict(F32(a[0]), CF32(a[1]), CF32(a[2]), I32(a[3]), N, &h.c);
    Py_END_ALLOW_THREADS
    nn_holder_free(&h);
    if (st == CF_ERR_NOMEM) return PyErr_NoMemory();
    if (st == CF_ERR_INDEX) return ids_changed(fn, "x");
    if (st != CF_OK) {
        PyErr_Format(PyExc_RuntimeError, "%s(): internal error %d", fn, st);
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(nn_fit_epoch_doc,
"nn_fit_epoch(params, grads, stats, m, v, losses, x, y, order, lrs, moms, *, tables, ops, ps,\n"
"             y_range, bn_momentum, bn_eps, bs, opt, wd, n_wd, sqr_mom, eps, decouple_wd,\n"
"             step, seed)\n--\n\n"
"Trains an embedding + MLP model for one epoch in one call with the GIL released; arguments\n"
"as dot_fit_epoch plus the network description of nn_predict, the BatchNorm running\n"
"statistics block stats (updated in place) and the dropout seed. Returns (step, bad_batch).");

static PyObject *py_nn_fit_epoch(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"params", "grads", "stats", "m", "v", "losses", "x", "y", "order",
                             "lrs", "moms", "tables", "ops", "ps", "y_range", "bn_momentum",
                             "bn_eps", "bs", "opt", "wd", "n_wd", "sqr_mom", "eps",
                             "decouple_wd", "step", "seed", NULL};
    const char *fn = "nn_fit_epoch";
    argspec a[14] = {{0, "params", NPY_FLOAT32, 1}, {0, "grads", NPY_FLOAT32, 1},
                     {0, "stats", NPY_FLOAT32, 1},  {0, "m", NPY_FLOAT32, 1, 1},
                     {0, "v", NPY_FLOAT32, 1, 1},   {0, "losses", NPY_FLOAT64, 1},
                     {0, "x", NPY_INT32},           {0, "y", NPY_FLOAT32},
                     {0, "order", NPY_INT64},       {0, "lrs", NPY_FLOAT64},
                     {0, "moms", NPY_FLOAT64},      {0, "tables", NPY_INT64},
                     {0, "ops", NPY_INT64},         {0, "ps", NPY_FLOAT64}};
    PyObject *y_range;
    double bn_momentum, bn_eps, wd, sqr_mom, eps;
    long long bs, n_wd, step;
    unsigned long long seed;
    int decouple;
    const char *opt_name;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOOOOO$OOOOddLsdLddpLK", kwlist, &a[0].obj,
                                     &a[1].obj, &a[2].obj, &a[3].obj, &a[4].obj, &a[5].obj,
                                     &a[6].obj, &a[7].obj, &a[8].obj, &a[9].obj, &a[10].obj,
                                     &a[11].obj, &a[12].obj, &a[13].obj, &y_range, &bn_momentum,
                                     &bn_eps, &bs, &opt_name, &wd, &n_wd, &sqr_mom, &eps,
                                     &decouple, &step, &seed))
        return NULL;
    if (check_args(fn, a, 14) < 0 || check_shape1(fn, &a[0], -1) < 0 ||
        check_shape1(fn, &a[2], -1) < 0)
        return NULL;
    int64_t P = DIM(a[0], 0), J;
    cf_optimizer opt;
    if (check_shape1(fn, &a[1], P) < 0 ||
        parse_optimizer(fn, opt_name, &a[3], &a[4], P, wd, n_wd, sqr_mom, eps, decouple, step,
                        &a[9], &a[10], &opt, &J) < 0)
        return NULL;
    nn_holder h;
    if (parse_nn_config(fn, &a[11], &a[12], &a[13], y_range, bn_momentum, bn_eps, P,
                        DIM(a[2], 0), &h) < 0)
        return NULL;
    int64_t R;
    PyObject *ret = NULL;
    if (check_shape2(fn, &a[6], -1, h.c.n_emb) < 0) goto done;
    R = DIM(a[6], 0);
    if (check_shape1(fn, &a[7], R) < 0 || check_shape1(fn, &a[8], -1) < 0 ||
        check_shape1(fn, &a[5], J) < 0 || positive(fn, "bs", bs) < 0)
        goto done;
    int64_t L = DIM(a[8], 0);
    int64_t used = batches_fit(fn, J, bs, L);
    if (used < 0) goto done;
    int has_bn = 0;
    for (int64_t k = 0; k < h.c.n_ops; k++) has_bn |= h.ops[k].kind == CF_NN_BATCHNORM;
    if (has_bn && J > 0 && bs < 2) {
        PyErr_Format(PyExc_ValueError, "%s(): training-mode BatchNorm needs at least 2 rows in "
                     "every batch to compute batch statistics, got bs=%lld", fn, bs);
        goto done;
    }
    if (has_bn && J > 0 && used - (J - 1) * bs < 2) {
        PyErr_Format(PyExc_ValueError, "%s(): the last batch holds a single row (%lld order "
                     "entries in batches of bs=%lld leave 1 over), and training-mode BatchNorm "
                     "cannot compute the batch statistics of one row; drop the last partial "
                     "batch (drop_last=True) or use a bs that does not leave one row over", fn,
                     (long long)used, bs);
        goto done;
    }
    const double *lrs = (const double *)PyArray_DATA(a[9].arr);
    const double *moms = (const double *)PyArray_DATA(a[10].arr);
    if (check_order_rows(fn, &a[8], &a[6], used, R, h.c.n_emb, h.c.emb_rows) < 0) goto done;
    const int64_t *order = (const int64_t *)PyArray_DATA(a[8].arr);
    int64_t bad = -1;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_nn_fit_epoch(F32(a[0]), F32(a[1]), F32(a[2]), &opt, (double *)PyArray_DATA(a[5].arr),
                         &bad, I32(a[6]), CF32(a[7]), order, L, R, bs, J, lrs, moms, (uint64_t)seed,
                         &h.c);
    Py_END_ALLOW_THREADS
    if (st == CF_ERR_NOMEM)
        PyErr_Format(PyExc_MemoryError, "%s(): cannot allocate the scratch space of this network "
                     "for batches of up to %lld rows (its activations times the batch size need "
                     "more memory than can be allocated or addressed); use a smaller bs or "
                     "narrower layers", fn, (long long)(bs < used ? bs : used));
    else if (st == CF_ERR_INDEX)
        fit_index_error(fn, &a[8], &a[6], bad, R, h.c.n_emb, h.c.emb_rows);
    else if (st != CF_OK && st != CF_ERR_NONFINITE)
        PyErr_Format(PyExc_RuntimeError, "%s(): internal error %d", fn, st);
    else ret = Py_BuildValue("LL", (long long)opt.step, (long long)bad);
done:
    nn_holder_free(&h);
    return ret;
}

/* ---------------------------------------------------------------- ranking (issue 4) */

PyDoc_STRVAR(rank_pack_doc,
"rank_pack(cw)\n--\n\n"
"The candidate table cw ((NC,K) float32) re-laid out for rank_dot_topk: returns a new 1-D\n"
"float32 array (tiles of 16 rows, factor-major, zero-padded). Pack once, rank many times.");

static PyObject *py_rank_pack(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"cw", NULL};
    const char *fn = "rank_pack";
    argspec a[1] = {{0, "cw", NPY_FLOAT32}};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O", kwlist, &a[0].obj)) return NULL;
    if (check_args(fn, a, 1) < 0 || check_shape2(fn, &a[0], -1, -1) < 0) return NULL;
    int64_t NC = DIM(a[0], 0), K = DIM(a[0], 1);
    if (positive(fn, "cw.shape[0]", NC) < 0 || positive(fn, "cw.shape[1]", K) < 0) return NULL;
    if (NC > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s(): cw has %lld rows, more than 2**31-1", fn,
                     (long long)NC);
        return NULL;
    }
    npy_intp size = (npy_intp)cf_rank_panel_size(NC, K); /* fits: cw holds NC x K floats */
    PyObject *out = PyArray_SimpleNew(1, &size, NPY_FLOAT32);
    if (!out) return NULL;
    Py_BEGIN_ALLOW_THREADS
    cf_rank_pack((float *)PyArray_DATA((PyArrayObject *)out), CF32(a[0]), NC, K);
    Py_END_ALLOW_THREADS
    return out;
}

/* excl_indptr (Q+1,) int64 from 0, non-decreasing, ending at len(excl_indices); every row of
 * excl_indices (int32) sorted ascending inside [0, NC). The checks run on a copy of
 * excl_indptr, returned in *own (PyMem_Free it; NULL without exclusions), which is what the
 * kernel must read: another thread may write the caller's array while the GIL is released,
 * and only a pointer array that cannot change keeps the kernel inside excl_indices. */
static int check_csr(const char *fn, argspec *ptr, argspec *idx, int64_t Q, int64_t NC,
                     int64_t **own) {
    *own = NULL;
    if ((ptr->arr == NULL) != (idx->arr == NULL)) {
        PyErr_Format(PyExc_ValueError, "%s(): pass both '%s' and '%s' or neither", fn, ptr->name,
                     idx->name);
        return -1;
    }
    if (!ptr->arr) return 0;
    if (check_shape1(fn, ptr, Q + 1) < 0 || check_shape1(fn, idx, -1) < 0) return -1;
    int64_t *p = PyMem_Calloc((size_t)(Q + 1), sizeof(int64_t));
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(p, PyArray_DATA(ptr->arr), sizeof(int64_t) * (size_t)(Q + 1));
    *own = p;
    const int32_t *ix = I32(*idx);
    int64_t nnz = DIM(*idx, 0);
    if (p[0] != 0 || p[Q] != nnz) {
        PyErr_Format(PyExc_ValueError, "%s(): '%s' must start at 0 and end at len(%s) = %lld, "
                     "got %lld and %lld", fn, ptr->name, idx->name, (long long)nnz,
                     (long long)p[0], (long long)p[Q]);
        return -1;
    }
    for (int64_t q = 0; q < Q; q++) {
        if (p[q + 1] < p[q]) {
            PyErr_Format(PyExc_ValueError, "%s(): '%s' must be non-decreasing, but entry %lld "
                         "is %lld after %lld", fn, ptr->name, (long long)(q + 1),
                         (long long)p[q + 1], (long long)p[q]);
            return -1;
        }
        for (int64_t e = p[q]; e < p[q + 1]; e++) {
            if (ix[e] < 0 || ix[e] >= NC) {
                PyErr_Format(PyExc_IndexError, "%s(): argument '%s' holds candidate %d at "
                             "position %lld, outside [0, %lld)", fn, idx->name, (int)ix[e],
                             (long long)e, (long long)NC);
                return -1;
            }
            if (e > p[q] && ix[e] < ix[e - 1]) {
                PyErr_Format(PyExc_ValueError, "%s(): row %lld of '%s' must be sorted ascending "
                             "(%d follows %d)", fn, (long long)q, idx->name, (int)ix[e],
                             (int)ix[e - 1]);
                return -1;
            }
        }
    }
    return 0;
}

/* order (optional): a permutation of [0, NC), checked whole here (the core checks the range
 * again, which is all it needs to stay inside its arrays: a write by another thread during the
 * call can only repeat or drop candidates) */
static int check_order(const char *fn, argspec *o, int64_t NC) {
    if (!o->arr) return 0;
    if (check_shape1(fn, o, NC) < 0) return -1;
    unsigned char *seen = PyMem_Calloc((size_t)NC, 1);
    if (!seen) {
        PyErr_NoMemory();
        return -1;
    }
    const int32_t *v = (const int32_t *)PyArray_DATA(o->arr);
    for (int64_t p = 0; p < NC; p++) {
        const int32_t c = v[p];
        if (c < 0 || c >= NC || seen[c]) {
            PyErr_Format(PyExc_ValueError, "%s(): argument 'order' must be a permutation of "
                         "range(n_candidates=%lld): order[%lld] = %d is %s", fn, (long long)NC,
                         (long long)p, (int)c, c < 0 || c >= NC ? "outside it" : "repeated");
            PyMem_Free(seen);
            return -1;
        }
        seen[c] = 1;
    }
    PyMem_Free(seen);
    return 0;
}

PyDoc_STRVAR(rank_dot_topk_doc,
"rank_dot_topk(top_idx, top_score, qw, qb, panel, cb, excl_indptr, excl_indices, n_candidates,\n"
"              first, y_range, order=None)\n--\n\n"
"For each query row q of qw ((Q,K) float32), the best top_idx.shape[1] = n candidates c in\n"
"[first, n_candidates) by z = qw[q] . cw[c] + qb[q] + cb[c] (the same float as dotbias_forward;\n"
"qb (Q,) and cb (NC,) float32 may each be None), best first, ties to the smaller index,\n"
"skipping excl_indices[excl_indptr[q]:excl_indptr[q+1]] (CSR, int64 / int32, rows sorted; both\n"
"None for no exclusions). panel = rank_pack(cw). Writes top_idx (Q,n) int32 and top_score\n"
"(Q,n) float32: z, or sigmoid_range(z, *y_range) when y_range is a (low, high) pair. Rows\n"
"with fewer than n eligible candidates end with index -1 and score NaN. order ((NC,) int32,\n"
"a permutation of range(NC)): the panel and cb hold the candidates in that order (panel =\n"
"rank_pack(cw[order]), cb = biases[order]); the result is the same, and an order with likely\n"
"high scores first makes it faster.");

static PyObject *py_rank_dot_topk(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"top_idx", "top_score", "qw", "qb", "panel", "cb", "excl_indptr",
                             "excl_indices", "n_candidates", "first", "y_range", "order", NULL};
    const char *fn = "rank_dot_topk";
    argspec a[9] = {{0, "top_idx", NPY_INT32, 1},        {0, "top_score", NPY_FLOAT32, 1},
                    {0, "qw", NPY_FLOAT32},              {0, "qb", NPY_FLOAT32, 0, 1},
                    {0, "panel", NPY_FLOAT32},           {0, "cb", NPY_FLOAT32, 0, 1},
                    {0, "excl_indptr", NPY_INT64, 0, 1}, {0, "excl_indices", NPY_INT32, 0, 1},
                    {0, "order", NPY_INT32, 0, 1}};
    long long NC, first;
    PyObject *y_range;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOOLLO|O", kwlist, &a[0].obj, &a[1].obj,
                                     &a[2].obj, &a[3].obj, &a[4].obj, &a[5].obj, &a[6].obj,
                                     &a[7].obj, &NC, &first, &y_range, &a[8].obj))
        return NULL;
    if (check_args(fn, a, 9) < 0 || positive(fn, "n_candidates", NC) < 0) return NULL;
    if (NC > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s(): n_candidates must be < 2**31", fn);
        return NULL;
    }
    if (first < 0 || first > NC) {
        PyErr_Format(PyExc_ValueError, "%s(): first must be in [0, n_candidates=%lld], got %lld",
                     fn, NC, first);
        return NULL;
    }
    if (check_shape2(fn, &a[2], -1, -1) < 0) return NULL;
    int64_t Q = DIM(a[2], 0), K = DIM(a[2], 1);
    if (positive(fn, "qw.shape[1]", K) < 0 || check_shape2(fn, &a[0], Q, -1) < 0) return NULL;
    if (cf_rank_panel_size(NC, K) < 0) { /* a -1 would match any panel shape below */
        PyErr_Format(PyExc_ValueError, "%s(): n_candidates x qw.shape[1] = %lld x %lld is too large",
                     fn, NC, (long long)K);
        return NULL;
    }
    int64_t n = DIM(a[0], 1);
    if (positive(fn, "top_idx.shape[1]", n) < 0 || check_shape2(fn, &a[1], Q, n) < 0 ||
        check_shape1(fn, &a[3], Q) < 0 || check_shape1(fn, &a[4], cf_rank_panel_size(NC, K)) < 0 ||
        check_shape1(fn, &a[5], NC) < 0 || check_order(fn, &a[8], NC) < 0)
        return NULL;
    int64_t *ptr = NULL;
    if (check_csr(fn, &a[6], &a[7], Q, NC, &ptr) < 0) {
        PyMem_Free(ptr);
        return NULL;
    }
    int has_range;
    float lo, hi;
    if (parse_y_range(fn, y_range, &has_range, &lo, &hi) < 0) {
        PyMem_Free(ptr);
        return NULL;
    }
    const int32_t *ex = a[7].arr ? I32(a[7]) : NULL;
    const int32_t *order = a[8].arr ? I32(a[8]) : NULL;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_rank_dot_topk((int32_t *)PyArray_DATA(a[0].arr), F32(a[1]), CF32(a[2]), OPTF32(a[3]),
                          CF32(a[4]), order, OPTF32(a[5]), ptr, ex, Q, K, NC, n, first,
                          has_range, lo, hi);
    Py_END_ALLOW_THREADS
    PyMem_Free(ptr);
    if (st == CF_ERR_ARG && (ex || order)) {
        /* the core checks the exclusion lists and the order again: only a write during the
         * call fails it */
        PyErr_Format(PyExc_ValueError, "%s(): argument %s was written by another thread during "
                     "the call (its entries are no longer inside [0, %lld)%s)", fn,
                     ex && order ? "'excl_indices' or 'order'" : ex ? "'excl_indices'" : "'order'",
                     NC, ex ? ", or its rows no longer sorted" : "");
        return NULL;
    }
    if (st != CF_OK) {
        PyErr_Format(PyExc_RuntimeError, "%s(): internal error %d", fn, st);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- sparse path (issue 6) */

PyDoc_STRVAR(block_sort_doc,
"block_sort(x, y, extra, nb, n_threads=1)\n--\n\n"
"Groups the rows of x ((R,2) int32) and y ((R,) float32), and of extra ((R,) int32 or int64,\n"
"or None),\n"
"in place into nb x nb blocks by (user mod nb, item mod nb), each block's rows ordered by user,\n"
"then item (n_threads threads sort the blocks). Returns the block starts as a new\n"
"(nb*nb + 1,) int64 array: block b is rows [starts[b], starts[b+1]).");

static PyObject *py_block_sort(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"x", "y", "extra", "nb", "n_threads", NULL};
    const char *fn = "block_sort";
    argspec a[3] = {{0, "x", NPY_INT32, 1}, {0, "y", NPY_FLOAT32, 1}, {0, "extra", NPY_INT64, 1, 1}};
    long long nb, n_threads = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOL|L", kwlist, &a[0].obj, &a[1].obj, &a[2].obj,
                                     &nb, &n_threads))
        return NULL;
    if (a[2].obj != Py_None && PyArray_Check(a[2].obj) &&
        PyArray_TYPE((PyArrayObject *)a[2].obj) == NPY_INT32)
        a[2].type = NPY_INT32; /* extra may be int32 or int64 */
    if (check_args(fn, a, 3) < 0 || check_shape2(fn, &a[0], -1, 2) < 0) return NULL;
    int64_t R = DIM(a[0], 0);
    if (check_shape1(fn, &a[1], R) < 0 || check_shape1(fn, &a[2], R) < 0 ||
        positive(fn, "nb", nb) < 0 || positive(fn, "n_threads", n_threads) < 0)
        return NULL;
    if (n_threads > 64) n_threads = 64; /* more could not be busy, and the core caps it too */
    if (nb > 4096) {
        PyErr_Format(PyExc_ValueError, "%s(): nb must be <= 4096, got %lld", fn, nb);
        return NULL;
    }
    if (check_ids(fn, &a[0], 0, 2, R, INT32_MAX, "a user") < 0 ||
        check_ids(fn, &a[0], 1, 2, R, INT32_MAX, "an item") < 0)
        return NULL;
    npy_intp n = (npy_intp)(nb * nb + 1);
    PyObject *starts = PyArray_SimpleNew(1, &n, NPY_INT64);
    if (!starts) return NULL;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_block_sort((int32_t *)PyArray_DATA(a[0].arr), F32(a[1]),
                       a[2].arr ? PyArray_DATA(a[2].arr) : NULL,
                       a[2].arr ? (int64_t)PyArray_ITEMSIZE(a[2].arr) : 0, R, nb,
                       (int64_t *)PyArray_DATA((PyArrayObject *)starts), (int)n_threads);
    Py_END_ALLOW_THREADS
    if (st != CF_OK) {
        Py_DECREF(starts);
        if (st == CF_ERR_NOMEM) return PyErr_NoMemory();
        if (st == CF_ERR_INDEX) return ids_changed(fn, "x");
        if (st == CF_ERR_ARG)
            return PyErr_Format(PyExc_ValueError, "%s(): argument 'x' was written by another thread "
                                "while it was being sorted; its rows are permuted but not grouped "
                                "into blocks", fn);
        return PyErr_Format(PyExc_RuntimeError, "%s(): internal error %d", fn, st);
    }
    return starts;
}

PyDoc_STRVAR(dot_layout_doc,
"dot_layout(n_users, n_items, n_factors, has_bias)\n--\n\n"
"The dot-product model's parameter block as the C core lays it out (cf_dot_split): a list of\n"
"(name, offset, shape) for u_weight, i_weight and, with has_bias, u_bias and i_bias, and the\n"
"block's size. Python builds the model's views from it, so the layout has one definition.");

static PyObject *py_dot_layout(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"n_users", "n_items", "n_factors", "has_bias", NULL};
    const char *fn = "dot_layout";
    long long nu, ni, k;
    int has_bias;
    cf_dot_config c;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "LLLp", kwlist, &nu, &ni, &k, &has_bias))
        return NULL;
    if (parse_dot_config(fn, nu, ni, k, has_bias, Py_None, &c) < 0) return NULL;
    int64_t off[4];
    cf_dot_offsets(off, &c);
    PyObject *list = Py_BuildValue("[(sL(LL))(sL(LL))]", "u_weight", (long long)off[0],
                                   (long long)c.n_users, (long long)c.k, "i_weight",
                                   (long long)off[1], (long long)c.n_items, (long long)c.k);
    if (!list) return NULL;
    if (c.has_bias) {
        PyObject *more = Py_BuildValue("[(sL(LL))(sL(LL))]", "u_bias", (long long)off[2],
                                       (long long)c.n_users, 1LL, "i_bias", (long long)off[3],
                                       (long long)c.n_items, 1LL);
        int bad = !more || PyList_SetSlice(list, 2, 2, more) < 0;
        Py_XDECREF(more);
        if (bad) {
            Py_DECREF(list);
            return NULL;
        }
    }
    return Py_BuildValue("(NL)", list, (long long)cf_dot_n_params(&c));
}

PyDoc_STRVAR(dot_fit_blocks_doc,
"dot_fit_blocks(params, losses, x, y, starts, blocks, lrs, moms, *, n_users, n_items, n_factors,\n"
"               has_bias, y_range, opt, m, v, pow1, pow2, wd, sqr_mom, eps, n_threads)\n--\n\n"
"The fast path for large data (not fastai-exact), after block_sort: rating by rating, each\n"
"update touches only its user and item rows. Trains the blocks listed in blocks ((S,) int64,\n"
"S a multiple of nb; each run of nb consecutive blocks a stratum sharing no user or item\n"
"group) at learning rates lrs ((S,) float64) and, for Adam, first-moment decays moms ((S,)\n"
"float64; ignored otherwise); losses ((S,) float64) receives each block's MSE.\n"
"opt: 'sgd', 'adagrad' (row-wise; v holds 2*(n_users+n_items) accumulators) or 'adam' (lazy;\n"
"m, v like params; pow1, pow2 (n_users+n_items,) start at 1). n_threads threads never share a\n"
"row, and the result is the same for any n_threads. Returns -1, or the position of the block\n"
"whose error was not finite.");

static PyObject *py_dot_fit_blocks(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"params", "losses", "x", "y", "starts", "blocks", "lrs", "moms",
                             "n_users", "n_items", "n_factors", "has_bias", "y_range", "opt", "m",
                             "v", "pow1", "pow2", "wd", "sqr_mom", "eps", "n_threads", NULL};
    const char *fn = "dot_fit_blocks";
    argspec a[12] = {{0, "params", NPY_FLOAT32, 1}, {0, "losses", NPY_FLOAT64, 1},
                     {0, "x", NPY_INT32},             {0, "y", NPY_FLOAT32},
                     {0, "starts", NPY_INT64},        {0, "blocks", NPY_INT64},
                     {0, "lrs", NPY_FLOAT64},         {0, "m", NPY_FLOAT32, 1, 1},
                     {0, "v", NPY_FLOAT32, 1, 1},     {0, "pow1", NPY_FLOAT32, 1, 1},
                     {0, "pow2", NPY_FLOAT32, 1, 1},  {0, "moms", NPY_FLOAT64}};
    long long nu, ni, k;
    int has_bias, n_threads;
    PyObject *y_range;
    const char *opt_name;
    double wd, sqr_mom, eps;
    cf_dot_config c;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOO$LLLpOsOOOOdddi", kwlist, &a[0].obj,
                                     &a[1].obj, &a[2].obj, &a[3].obj, &a[4].obj, &a[5].obj,
                                     &a[6].obj, &a[11].obj, &nu, &ni, &k, &has_bias, &y_range,
                                     &opt_name, &a[7].obj, &a[8].obj, &a[9].obj, &a[10].obj, &wd,
                                     &sqr_mom, &eps, &n_threads))
        return NULL;
    if (check_args(fn, a, 12) < 0 || parse_dot_config(fn, nu, ni, k, has_bias, y_range, &c) < 0)
        return NULL;
    cf_sparse_opt opt;
    memset(&opt, 0, sizeof opt);
    int64_t P = cf_dot_n_params(&c), rows = c.n_users + c.n_items;
    if (strcmp(opt_name, "sgd") == 0) opt.kind = CF_SPARSE_SGD;
    else if (strcmp(opt_name, "adagrad") == 0) opt.kind = CF_SPARSE_ADAGRAD;
    else if (strcmp(opt_name, "adam") == 0) opt.kind = CF_SPARSE_ADAM;
    else {
        PyErr_Format(PyExc_ValueError, "%s(): opt must be 'sgd', 'adagrad' or 'adam', got '%s'",
                     fn, opt_name);
        return NULL;
    }
    if (check_shape1(fn, &a[0], P) < 0 || check_shape2(fn, &a[2], -1, 2) < 0) return NULL;
    int64_t R = DIM(a[2], 0);
    if (check_shape1(fn, &a[3], R) < 0 || check_shape1(fn, &a[4], -1) < 0 ||
        check_shape1(fn, &a[5], -1) < 0)
        return NULL;
    int64_t NS = DIM(a[4], 0), S = DIM(a[5], 0);
    int64_t nb = (int64_t)llround(sqrt((double)(NS > 0 ? NS - 1 : 0)));
    const int64_t *starts = (const int64_t *)PyArray_DATA(a[4].arr);
    int ok = NS >= 2 && nb >= 1 && nb * nb + 1 == NS && starts[0] == 0 && starts[NS - 1] == R;
    for (int64_t b = 0; ok && b + 1 < NS; b++) ok = starts[b] <= starts[b + 1];
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "%s(): argument 'starts' must be the block starts that "
                     "block_sort returned for these rows (nb*nb + 1 increasing offsets from 0 to %lld)",
                     fn, (long long)R);
        return NULL;
    }
    if (check_shape1(fn, &a[6], S) < 0 || check_shape1(fn, &a[11], S) < 0 ||
        check_shape1(fn, &a[1], S) < 0 || positive(fn, "n_threads", n_threads) < 0)
        return NULL;
    const double *moms = (const double *)PyArray_DATA(a[11].arr);
    if (opt.kind == CF_SPARSE_ADAM) {
        if (!a[7].arr || !a[8].arr || !a[9].arr || !a[10].arr) {
            PyErr_Format(PyExc_TypeError, "%s(): Adam needs 'm', 'v', 'pow1' and 'pow2'", fn);
            return NULL;
        }
        if (check_shape1(fn, &a[7], P) < 0 || check_shape1(fn, &a[8], P) < 0 ||
            check_shape1(fn, &a[9], rows) < 0 || check_shape1(fn, &a[10], rows) < 0 ||
            check_adam_consts(fn, sqr_mom, eps) < 0)
            return NULL;
        for (int64_t j = 0; j < S; j++)
            if (check_hyper(fn, 0.0, moms[j], wd) < 0) return NULL;
    } else if (opt.kind == CF_SPARSE_ADAGRAD) {
        if (!a[8].arr) {
            PyErr_Format(PyExc_TypeError, "%s(): Adagrad needs the accumulators 'v'", fn);
            return NULL;
        }
        if (check_shape1(fn, &a[8], 2 * rows) < 0 || check_hyper(fn, 0.0, 0.0, wd) < 0 ||
            check_adam_consts(fn, 0.0, eps) < 0)
            return NULL;
    } else if (check_hyper(fn, 0.0, 0.0, wd) < 0) {
        return NULL;
    }
    const double *lrs = (const double *)PyArray_DATA(a[6].arr);
    for (int64_t j = 0; j < S; j++)
        if (check_hyper(fn, lrs[j], 0.0, wd) < 0) return NULL;
    const int64_t *blocks = (const int64_t *)PyArray_DATA(a[5].arr);
    for (int64_t j = 0; j < S; j++)
        if (blocks[j] < 0 || blocks[j] >= nb * nb) {
            PyErr_Format(PyExc_IndexError, "%s(): argument 'blocks' holds %lld at position %lld, "
                         "outside [0, %lld)", fn, (long long)blocks[j], (long long)j,
                         (long long)(nb * nb));
            return NULL;
        }
    if (S % nb != 0) {
        PyErr_Format(PyExc_ValueError, "%s(): argument 'blocks' must hold whole strata of nb=%lld "
                     "blocks, got %lld blocks", fn, (long long)nb, (long long)S);
        return NULL;
    }
    for (int64_t g0 = 0; g0 < S; g0 += nb)
        for (int64_t k = g0; k < g0 + nb; k++)
            for (int64_t l = g0; l < k; l++)
                if (blocks[k] / nb == blocks[l] / nb || blocks[k] % nb == blocks[l] % nb) {
                    PyErr_Format(PyExc_ValueError, "%s(): blocks %lld and %lld of the stratum at "
                                 "position %lld share a user or item group", fn,
                                 (long long)blocks[l], (long long)blocks[k], (long long)g0);
                    return NULL;
                }
    opt.m = OPTF32(a[7]);
    opt.v = OPTF32(a[8]);
    opt.pow1 = OPTF32(a[9]);
    opt.pow2 = OPTF32(a[10]);
    opt.beta1 = 0.0; /* per block: moms */
    opt.beta2 = sqr_mom;
    opt.eps = eps;
    opt.wd = wd;
    int64_t bad = -1;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_dot_fit_blocks(F32(a[0]), &opt, (double *)PyArray_DATA(a[1].arr), &bad, I32(a[2]),
                           CF32(a[3]), R, starts, nb, blocks, S, lrs, moms, &c, n_threads);
    Py_END_ALLOW_THREADS
    if (st == CF_ERR_NOMEM) return PyErr_NoMemory();
    if (st == CF_ERR_INDEX && bad >= 0 && bad < R) {
        /* the core checks the ids of the selected blocks' rows (only those are read) before
         * any update, and every rating's ids again as it reads them: inside the tables and
         * in its block's user and item groups; the blocks themselves were checked above */
        const int32_t *xr = I32(a[2]) + 2 * bad;
        const int32_t u = xr[0], i = xr[1];
        int is_user = u < 0 || u >= c.n_users;
        if (is_user || i < 0 || i >= c.n_items)
            PyErr_Format(PyExc_IndexError, "%s(): argument 'x' holds %s id %d at row %lld, outside "
                         "[0, %lld)%s", fn, is_user ? "a user" : "an item", (int)(is_user ? u : i),
                         (long long)bad, (long long)(is_user ? c.n_users : c.n_items),
                         " (if it was checked before the call, another thread wrote it during "
                         "the call, which stopped there)");
        else
            PyErr_Format(PyExc_IndexError, "%s(): row %lld of argument 'x' (user %d, item %d now) "
                         "held ids outside the tables or outside the block that 'starts' puts it "
                         "in when the call read it: pass the rows and starts that block_sort "
                         "returned, and let no other thread write to them during the call (it "
                         "stopped there)", fn, (long long)bad, (int)u, (int)i);
        return NULL;
    }
    if (st == CF_ERR_INDEX || st == CF_ERR_ARG) {
        /* the core validates its own copies of starts and blocks: they differ from what was
         * checked above only when another thread wrote to them during the call */
        PyErr_Format(PyExc_ValueError, "%s(): argument 'starts' or 'blocks' was written by another "
                     "thread during the call; nothing was trained", fn);
        return NULL;
    }
    if (st != CF_OK && st != CF_ERR_NONFINITE) {
        PyErr_Format(PyExc_RuntimeError, "%s(): internal error %d", fn, st);
        return NULL;
    }
    return PyLong_FromLongLong((long long)bad);
}

/* ---------------------------------------------------------------- module */

/* ---------------------------------------------------------------- instruction sets */

PyDoc_STRVAR(isa_doc,
"isa()\n--\n\n"
"The instruction-set version of the hot kernels in use: 'avx512', 'avx2' or 'generic' (the best\n"
"this CPU runs, unless the environment variable COLLABC_ISA chose another at import). rank\n"
"kernels have AVX2 and generic versions only: at 'avx512' they run the AVX2 one.");

static PyObject *py_isa(PyObject *self, PyObject *unused) {
    return PyUnicode_FromString(cf_isa_name(cf_isa_get()));
}

PyDoc_STRVAR(isa_levels_doc,
"isa_levels()\n--\n\n"
"(built, supported): the versions this build compiled the hot kernels for, and those of them\n"
"this CPU runs, each a tuple of names, widest first ('avx512', 'avx2', 'generic').");

static PyObject *py_isa_levels(PyObject *self, PyObject *unused) {
    const unsigned sup = cf_isa_supported();
    PyObject *built = PyList_New(0), *ok = PyList_New(0), *res = NULL;
    if (!built || !ok) goto done;
    for (int l = CF_ISA_COUNT - 1; l >= 0; l--) {
        if (l != CF_ISA_GENERIC && !cf_isa_multiversioned()) continue;
        PyObject *name = PyUnicode_FromString(cf_isa_name(l));
        if (!name || PyList_Append(built, name) < 0 || ((sup >> l & 1u) && PyList_Append(ok, name) < 0)) {
            Py_XDECREF(name);
            goto done;
        }
        Py_DECREF(name);
    }
    res = Py_BuildValue("(NN)", PyList_AsTuple(built), PyList_AsTuple(ok));
done:
    Py_XDECREF(built);
    Py_XDECREF(ok);
    return res;
}

/* COLLABC_ISA at import: an unknown name, or a version this build or CPU cannot run, fails the
 * import with a ValueError that says what can be used (never a silent fallback) */
static int isa_from_env(void) {
    const char *env = getenv("COLLABC_ISA");
    if (!env || !*env) return 0;
    const int l = cf_isa_parse(env);
    if (l < 0) {
        PyErr_Format(PyExc_ValueError,
                     "COLLABC_ISA=%.40s is not an instruction set collabc knows: use avx512, avx2, "
                     "generic (or scalar), or auto, or leave it unset", env);
        return -1;
    }
    if (cf_isa_set(l) != 0) {
        const unsigned sup = cf_isa_supported();
        PyErr_Format(PyExc_ValueError,
                     "COLLABC_ISA=%.40s: %s cannot run the %s version of the kernels (it runs: %s%s%s); "
                     "unset COLLABC_ISA or choose one of those",
                     env, cf_isa_multiversioned() ? "this CPU" : "this build (compiled for the generic version only)",
                     cf_isa_name(l), sup >> CF_ISA_AVX512 & 1u ? "avx512, " : "",
                     sup >> CF_ISA_AVX2 & 1u ? "avx2, " : "", "generic");
        return -1;
    }
    return 0;
}

static PyMethodDef core_methods[] = {
    {"isa", (PyCFunction)py_isa, METH_NOARGS, isa_doc},
    {"isa_levels", (PyCFunction)py_isa_levels, METH_NOARGS, isa_levels_doc},
    {"embedding_forward", (PyCFunction)(void (*)(void))py_embedding_forward, METH_VARARGS | METH_KEYWORDS, embedding_forward_doc},
    {"embedding_backward", (PyCFunction)(void (*)(void))py_embedding_backward, METH_VARARGS | METH_KEYWORDS, embedding_backward_doc},
    {"dotbias_forward", (PyCFunction)(void (*)(void))py_dotbias_forward, METH_VARARGS | METH_KEYWORDS, dotbias_forward_doc},
    {"dotbias_backward", (PyCFunction)(void (*)(void))py_dotbias_backward, METH_VARARGS | METH_KEYWORDS, dotbias_backward_doc},
    {"sigmoid_range_forward", (PyCFunction)(void (*)(void))py_sigmoid_range_forward, METH_VARARGS | METH_KEYWORDS, sigmoid_range_forward_doc},
    {"sigmoid_range_backward", (PyCFunction)(void (*)(void))py_sigmoid_range_backward, METH_VARARGS | METH_KEYWORDS, sigmoid_range_backward_doc},
    {"relu_forward", (PyCFunction)(void (*)(void))py_relu_forward, METH_VARARGS | METH_KEYWORDS, relu_forward_doc},
    {"relu_backward", (PyCFunction)(void (*)(void))py_relu_backward, METH_VARARGS | METH_KEYWORDS, relu_backward_doc},
    {"mse_forward", (PyCFunction)(void (*)(void))py_mse_forward, METH_VARARGS | METH_KEYWORDS, mse_forward_doc},
    {"mse_backward", (PyCFunction)(void (*)(void))py_mse_backward, METH_VARARGS | METH_KEYWORDS, mse_backward_doc},
    {"optimizer_step", (PyCFunction)(void (*)(void))py_optimizer_step, METH_VARARGS | METH_KEYWORDS, optimizer_step_doc},
    {"adam_step", (PyCFunction)(void (*)(void))py_adam_step, METH_VARARGS | METH_KEYWORDS, adam_step_doc},
    {"sgd_step", (PyCFunction)(void (*)(void))py_sgd_step, METH_VARARGS | METH_KEYWORDS, sgd_step_doc},
    {"onecycle", (PyCFunction)(void (*)(void))py_onecycle, METH_VARARGS | METH_KEYWORDS, onecycle_doc},
    {"dot_predict", (PyCFunction)(void (*)(void))py_dot_predict, METH_VARARGS | METH_KEYWORDS, dot_predict_doc},
    {"dot_fit_epoch", (PyCFunction)(void (*)(void))py_dot_fit_epoch, METH_VARARGS | METH_KEYWORDS, dot_fit_epoch_doc},
    {"linear_forward", (PyCFunction)(void (*)(void))py_linear_forward, METH_VARARGS | METH_KEYWORDS, linear_forward_doc},
    {"linear_backward", (PyCFunction)(void (*)(void))py_linear_backward, METH_VARARGS | METH_KEYWORDS, linear_backward_doc},
    {"batchnorm_forward_train", (PyCFunction)(void (*)(void))py_batchnorm_forward_train, METH_VARARGS | METH_KEYWORDS, batchnorm_forward_train_doc},
    {"batchnorm_forward_eval", (PyCFunction)(void (*)(void))py_batchnorm_forward_eval, METH_VARARGS | METH_KEYWORDS, batchnorm_forward_eval_doc},
    {"batchnorm_backward", (PyCFunction)(void (*)(void))py_batchnorm_backward, METH_VARARGS | METH_KEYWORDS, batchnorm_backward_doc},
    {"dropout_mask", (PyCFunction)(void (*)(void))py_dropout_mask, METH_VARARGS | METH_KEYWORDS, dropout_mask_doc},
    {"embedding_concat_forward", (PyCFunction)(void (*)(void))py_embedding_concat_forward, METH_VARARGS | METH_KEYWORDS, embedding_concat_forward_doc},
    {"embedding_concat_backward", (PyCFunction)(void (*)(void))py_embedding_concat_backward, METH_VARARGS | METH_KEYWORDS, embedding_concat_backward_doc},
    {"dropout_forward", (PyCFunction)(void (*)(void))py_dropout_forward, METH_VARARGS | METH_KEYWORDS, dropout_forward_doc},
    {"dropout_backward", (PyCFunction)(void (*)(void))py_dropout_backward, METH_VARARGS | METH_KEYWORDS, dropout_backward_doc},
    {"nn_predict", (PyCFunction)(void (*)(void))py_nn_predict, METH_VARARGS | METH_KEYWORDS, nn_predict_doc},
    {"nn_fit_epoch", (PyCFunction)(void (*)(void))py_nn_fit_epoch, METH_VARARGS | METH_KEYWORDS, nn_fit_epoch_doc},
    {"block_sort", (PyCFunction)(void (*)(void))py_block_sort, METH_VARARGS | METH_KEYWORDS, block_sort_doc},
    {"dot_layout", (PyCFunction)(void (*)(void))py_dot_layout, METH_VARARGS | METH_KEYWORDS, dot_layout_doc},
    {"dot_fit_blocks", (PyCFunction)(void (*)(void))py_dot_fit_blocks, METH_VARARGS | METH_KEYWORDS, dot_fit_blocks_doc},
    {"rank_pack", (PyCFunction)(void (*)(void))py_rank_pack, METH_VARARGS | METH_KEYWORDS, rank_pack_doc},
    {"rank_dot_topk", (PyCFunction)(void (*)(void))py_rank_dot_topk, METH_VARARGS | METH_KEYWORDS, rank_dot_topk_doc},
    {NULL, NULL, 0, NULL},
};

static int core_exec(PyObject *m) {
    import_array1(-1);
    if (isa_from_env() < 0) return -1;
    /* the kernel families whose wrappers live in their own binding files (see _binding.h) */
    static PyMethodDef *family_tables[] = {cf_tensor_methods, cf_implicit_methods, cf_bayes_methods,
                                           NULL};
    for (PyMethodDef **t = family_tables; *t; t++)
        if (PyModule_AddFunctions(m, *t) < 0) return -1;
    if (PyModule_AddStringConstant(m, "__version__", CF_VERSION) < 0) return -1;
    return 0;
}

static PyModuleDef_Slot core_slots[] = {
    {Py_mod_exec, core_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, NULL},
};

PyDoc_STRVAR(core_doc,
"collabc._core: the C kernels of collabc (embedding gather/scatter, dot product with biases,\n"
"sigmoid_range, ReLU, MSE, fastai's SGD and Adam, the one-cycle schedule) and the whole-epoch\n"
"training driver for the dot-product models. Every function takes NumPy arrays of exact dtype\n"
"(float32 values, int32 ids), C-contiguous, and writes its outputs in place.");

static struct PyModuleDef core_def = {
    PyModuleDef_HEAD_INIT, "_core", core_doc, 0, core_methods, core_slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__core(void) { return PyModuleDef_Init(&core_def); }
