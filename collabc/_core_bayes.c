/* _core_bayes.c - the CPython binding of the Bayesian factorization machine (csrc/bfm.h):
 * bfm_run (Gibbs sweeps in place), bfm_predict (plug-in or sample-averaged predictions) and
 * bfm_random and bfm_stream (the sampler's own draws, for tests). Every array is validated
 * (dtype, C order, alignment, writability, shape), then the whole structure by cf_bfm_check
 * (every index in range, the groupings consistent), before the GIL is released. The sparse
 * structures come as tuples of arrays (see the docstrings); C keeps no pointer past a call. */
#include "_binding.h"

#define BFM_MAX_BLOCKS 16

/* the arrays of one tuple argument, by position */
typedef struct {
    const char *tname; /* the tuple argument's name */
    int n;
    argspec a[10];
} tuple_args;

static int parse_tuple(const char *fn, PyObject *obj, tuple_args *ta) {
    if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != ta->n) {
        PyErr_Format(PyExc_TypeError, "%s(): argument '%s' must be a tuple of %d arrays", fn,
                     ta->tname, ta->n);
        return -1;
    }
    for (int i = 0; i < ta->n; i++) ta->a[i].obj = PyTuple_GET_ITEM(obj, i);
    return check_args(fn, ta->a, ta->n);
}

#define I64P(s) ((const int64_t *)PyArray_DATA((s).arr))
#define OPTI64P(s) ((s).arr ? (const int64_t *)PyArray_DATA((s).arr) : NULL)
#define OPTI32P(s) ((s).arr ? (const int32_t *)PyArray_DATA((s).arr) : NULL)
#define OPTCF32(s) ((s).arr ? (const float *)PyArray_DATA((s).arr) : NULL)
#define F64(s) ((double *)PyArray_DATA((s).arr))
#define CF64(s) ((const double *)PyArray_DATA((s).arr))

/* model: k, d0, group (int32 [d]), blocks (tuple of (ptr, col, val, tptr, trow, tval)) */
typedef struct {
    cf_bfm_model m;
    cf_bfm_block b[BFM_MAX_BLOCKS];
    tuple_args bt[BFM_MAX_BLOCKS];
    argspec group;
} model_args;

static int parse_model(const char *fn, model_args *ma, long long k, long long d0, PyObject *group,
                       PyObject *blocks) {
    memset(ma, 0, sizeof *ma);
    if (k < 0 || d0 < 0) {
        PyErr_Format(PyExc_ValueError, "%s(): 'k' and 'd0' must be >= 0, got %lld and %lld", fn, k, d0);
        return -1;
    }
    if (!PyTuple_Check(blocks) || PyTuple_GET_SIZE(blocks) > BFM_MAX_BLOCKS) {
        PyErr_Format(PyExc_TypeError, "%s(): argument 'blocks' must be a tuple of at most %d blocks",
                     fn, BFM_MAX_BLOCKS);
        return -1;
    }
    const int R = (int)PyTuple_GET_SIZE(blocks);
    int64_t d = d0;
    for (int r = 0; r < R; r++) {
        tuple_args *ta = &ma->bt[r];
        argspec proto[7] = {{0, "block ptr", NPY_INT64}, {0, "block col", NPY_INT32},
                            {0, "block val", NPY_FLOAT32}, {0, "block tptr", NPY_INT64},
                            {0, "block trow", NPY_INT32}, {0, "block tval", NPY_FLOAT32},
                            {0, "block n_feat", NPY_INT64}};
        ta->tname = "blocks[r]";
        ta->n = 7;
        memcpy(ta->a, proto, sizeof proto);
        if (parse_tuple(fn, PyTuple_GET_ITEM(blocks, r), ta) < 0) return -1;
        for (int i = 0; i < 7; i++)
            if (check_shape1(fn, &ta->a[i], i == 6 ? 1 : -1) < 0) return -1;
        cf_bfm_block *b = &ma->b[r];
        b->n_rows = DIM(ta->a[0], 0) - 1;
        b->n_feat = I64P(ta->a[6])[0];
        b->nnz = DIM(ta->a[1], 0);
        if (b->n_rows < 0 || b->n_feat < 0 || DIM(ta->a[3], 0) != b->n_feat + 1 ||
            DIM(ta->a[2], 0) != b->nnz || DIM(ta->a[4], 0) != b->nnz || DIM(ta->a[5], 0) != b->nnz) {
            PyErr_Format(PyExc_ValueError,
                         "%s(): block %d: ptr must have M + 1 entries, tptr n_feat + 1, and col, "
                         "val, trow, tval one per non-zero", fn, r);
            return -1;
        }
        b->ptr = I64P(ta->a[0]);
        b->col = I32(ta->a[1]);
        b->val = CF32(ta->a[2]);
        b->tptr = I64P(ta->a[3]);
        b->trow = I32(ta->a[4]);
        b->tval = CF32(ta->a[5]);
        d += b->n_feat;
    }
    ma->group = (argspec){group, "group", NPY_INT32};
    if (check_args(fn, &ma->group, 1) < 0 || check_shape1(fn, &ma->group, d) < 0) return -1;
    int32_t G = 0;
    for (int64_t j = 0; j < d; j++)
        if (I32(ma->group)[j] + 1 > G) G = I32(ma->group)[j] + 1;
    ma->m.k = k;
    ma->m.d0 = d0;
    ma->m.n_blocks = R;
    ma->m.n_groups = G > 0 ? G : 1;
    ma->m.blocks = ma->b;
    ma->m.group = I32(ma->group);
    return 0;
}

/* rows: (x_ptr, x_col, x_val, idx); x_* may be None when d0 == 0; idx int32 [R, n] */
static int parse_rows(const char *fn, const char *name, PyObject *obj, const model_args *ma,
                      int64_t n_expect, tuple_args *ta, cf_bfm_rows *rw) {
    argspec proto[4] = {{0, "x_ptr", NPY_INT64, 0, 1}, {0, "x_col", NPY_INT32, 0, 1},
                        {0, "x_val", NPY_FLOAT32, 0, 1}, {0, "idx", NPY_INT32}};
    ta->tname = name;
    ta->n = 4;
    memcpy(ta->a, proto, sizeof proto);
    if (parse_tuple(fn, obj, ta) < 0) return -1;
    if (check_shape2(fn, &ta->a[3], ma->m.n_blocks, n_expect) < 0) return -1;
    rw->n = DIM(ta->a[3], 1);
    const int have_x = ta->a[0].arr != NULL;
    if (have_x != (ta->a[1].arr != NULL) || have_x != (ta->a[2].arr != NULL) ||
        (ma->m.d0 > 0 && !have_x)) {
        PyErr_Format(PyExc_ValueError,
                     "%s(): argument '%s': x_ptr, x_col, x_val must all be given (or all None "
                     "when there are no row-local features)", fn, name);
        return -1;
    }
    if (have_x) {
        if (check_shape1(fn, &ta->a[0], rw->n + 1) < 0 || check_shape1(fn, &ta->a[1], -1) < 0 ||
            check_shape1(fn, &ta->a[2], DIM(ta->a[1], 0)) < 0)
            return -1;
        if (I64P(ta->a[0])[rw->n] != DIM(ta->a[1], 0)) {
            PyErr_Format(PyExc_ValueError, "%s(): argument '%s': x_ptr[-1] must equal len(x_col)", fn, name);
            return -1;
        }
    }
    rw->x_ptr = OPTI64P(ta->a[0]);
    rw->x_col = OPTI32P(ta->a[1]);
    rw->x_val = OPTCF32(ta->a[2]);
    rw->idx = I32(ta->a[3]);
    return 0;
}

static int raise_check(const char *fn, int st, const char *msg) {
    PyErr_Format(st == CF_ERR_INDEX ? PyExc_IndexError : PyExc_ValueError, "%s(): %s", fn, msg);
    return -1;
}

PyDoc_STRVAR(bfm_run_doc,
"bfm_run(rmse, theta, hyper, theta_mean, hyper_mean, eval_mean, cache, counters, k, d0, group,\n"
"        blocks, train,\n"
"        eval, prior, n_sweeps, burn_in, seed, flags=0, n_threads=1, samples=None, stop=None,\n"
"        wishart=0)\n"
"--\n\n"
"Runs n_sweeps Gibbs sweeps of the Bayesian factorization machine in place (csrc/bfm.h).\n"
"rmse (n_sweeps,) float64 written: training RMSE after each sweep. theta (P,) float64,\n"
"P = 1 + d (1 + k): w0, w, V; hyper (H,) float64, H = 1 + 2 G (1 + k) (+ G k k with wishart=1:\n"
"the factors' Normal-Wishart precisions, csrc/bfm.h); theta_mean (P,),\n"
"hyper_mean (H,) and eval_mean (n_eval,) float64 running means over the kept sweeps; cache\n"
"(2 n + sum M (1 + 2 k),) float64 the residual, q and block caches; counters (3,) int64 (sweeps done,\n"
"kept, cache valid). group (d,) int32; blocks: tuple of (ptr int64 [M+1], col int32, val float32,\n"
"tptr int64 [n_feat+1], trow int32, tval float32, n_feat int64 [1]). train: (y float32 [n],\n"
"x_ptr, x_col, x_val, xt_ptr, xt_row, xt_val, idx int32 [R, n], gptr int64 [sum(M+1)], grow\n"
"int32 [R, n]); x*/xt* None without row-local features. eval: (x_ptr, x_col, x_val, idx) or\n"
"None. prior: (alpha_0, beta_0, gamma_0, mu_0, reg_0). flags: 1 fixes alpha, 2 the group\n"
"hyperparameters. samples (cap, P) float64 or None receives the kept samples. stop (1,) int64\n"
"or None: set it non-zero from another thread to end the call after the factor in progress\n"
"(the next call resumes there; counters[3] is the factor). Returns the sweeps completed.");

static PyObject *py_bfm_run(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"rmse", "theta", "hyper", "theta_mean", "hyper_mean", "eval_mean", "cache", "counters", "k",
                             "d0", "group", "blocks", "train", "eval", "prior", "n_sweeps",
                             "burn_in", "seed", "flags", "n_threads", "samples", "stop", "wishart", NULL};
    const char *fn = "bfm_run";
    argspec s[10] = {{0, "rmse", NPY_FLOAT64, 1}, {0, "theta", NPY_FLOAT64, 1},
                    {0, "hyper", NPY_FLOAT64, 1}, {0, "theta_mean", NPY_FLOAT64, 1},
                    {0, "eval_mean", NPY_FLOAT64, 1, 1}, {0, "counters", NPY_INT64, 1},
                    {0, "samples", NPY_FLOAT64, 1, 1}, {0, "hyper_mean", NPY_FLOAT64, 1}, {0, "cache", NPY_FLOAT64, 1},
                    {0, "stop", NPY_INT64, 0, 1}};
    long long k, d0, n_sweeps, burn_in, n_threads = 1;
    unsigned long long seed;
    int flags = 0, wishart = 0;
    PyObject *group, *blocks, *train, *evo, *prior;
    double pr[5];
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOOLLOOOOOLLK|iLOOp", kwlist, &s[0].obj, &s[1].obj,
                                     &s[2].obj, &s[3].obj, &s[7].obj, &s[4].obj, &s[8].obj, &s[5].obj, &k, &d0, &group,
                                     &blocks, &train, &evo, &prior, &n_sweeps, &burn_in, &seed,
                                     &flags, &n_threads, &s[6].obj, &s[9].obj, &wishart))
        return NULL;
    if (!PyArg_ParseTuple(prior, "ddddd", &pr[0], &pr[1], &pr[2], &pr[3], &pr[4])) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "%s(): argument 'prior' must be a tuple of 5 floats (alpha_0, beta_0, "
                     "gamma_0, mu_0, reg_0)", fn);
        return NULL;
    }
    for (int i = 0; i < 5; i++)
        if (check_finite(fn, "prior", pr[i]) < 0) return NULL;
    if (pr[0] <= 0 || pr[1] <= 0 || pr[2] <= 0 || pr[4] < 0) {
        PyErr_Format(PyExc_ValueError, "%s(): prior needs alpha_0, beta_0, gamma_0 > 0 and reg_0 >= 0", fn);
        return NULL;
    }
    if (n_sweeps < 0 || burn_in < 0) {
        PyErr_Format(PyExc_ValueError, "%s(): 'n_sweeps' and 'burn_in' must be >= 0", fn);
        return NULL;
    }
    if (positive(fn, "n_threads", n_threads) < 0) return NULL;
    if (check_args(fn, s, 10) < 0) return NULL;
    model_args ma;
    if (parse_model(fn, &ma, k, d0, group, blocks) < 0) return NULL;
    ma.m.wishart = wishart;
    const int64_t P = cf_bfm_n_params(&ma.m), H = cf_bfm_n_hyper(&ma.m);
    const int R = (int)ma.m.n_blocks;
    tuple_args tt = {"train", 10,
                     {{0, "y", NPY_FLOAT32}, {0, "x_ptr", NPY_INT64, 0, 1}, {0, "x_col", NPY_INT32, 0, 1},
                      {0, "x_val", NPY_FLOAT32, 0, 1}, {0, "xt_ptr", NPY_INT64, 0, 1},
                      {0, "xt_row", NPY_INT32, 0, 1}, {0, "xt_val", NPY_FLOAT32, 0, 1},
                      {0, "idx", NPY_INT32}, {0, "gptr", NPY_INT64}, {0, "grow", NPY_INT32}}};
    if (parse_tuple(fn, train, &tt) < 0) return NULL;
    if (check_shape1(fn, &tt.a[0], -1) < 0) return NULL;
    const int64_t n = DIM(tt.a[0], 0);
    if (n < 1 || n > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s(): the training set must have between 1 and 2^31 - 1 rows, got %lld",
                     fn, (long long)n);
        return NULL;
    }
    int64_t sumM1 = 0;
    for (int r = 0; r < R; r++) sumM1 += ma.b[r].n_rows + 1;
    if (check_shape2(fn, &tt.a[7], R, n) < 0 || check_shape1(fn, &tt.a[8], sumM1) < 0 ||
        check_shape2(fn, &tt.a[9], R, n) < 0)
        return NULL;
    cf_bfm_train t;
    memset(&t, 0, sizeof t);
    tuple_args rows_ta = {"train", 4, {tt.a[1], tt.a[2], tt.a[3], tt.a[7]}};
    {
        PyObject *tup = Py_BuildValue("(OOOO)", PyTuple_GET_ITEM(train, 1), PyTuple_GET_ITEM(train, 2),
                                      PyTuple_GET_ITEM(train, 3), PyTuple_GET_ITEM(train, 7));
        if (!tup) return NULL;
        int rc = parse_rows(fn, "train", tup, &ma, n, &rows_ta, &t.rows);
        Py_DECREF(tup); /* the arrays stay alive through the 'train' tuple */
        if (rc < 0) return NULL;
    }
    const int have_xt = tt.a[4].arr != NULL;
    if (have_xt != (t.rows.x_ptr != NULL) || (have_xt && (tt.a[5].arr == NULL || tt.a[6].arr == NULL))) {
        PyErr_Format(PyExc_ValueError, "%s(): argument 'train': xt_ptr, xt_row, xt_val go with x_ptr, x_col, x_val", fn);
        return NULL;
    }
    if (have_xt) {
        const int64_t nnz = DIM(tt.a[2], 0);
        if (check_shape1(fn, &tt.a[4], d0 + 1) < 0 || check_shape1(fn, &tt.a[5], nnz) < 0 ||
            check_shape1(fn, &tt.a[6], nnz) < 0)
            return NULL;
    }
    t.y = CF32(tt.a[0]);
    t.xt_ptr = OPTI64P(tt.a[4]);
    t.xt_row = OPTI32P(tt.a[5]);
    t.xt_val = OPTCF32(tt.a[6]);
    t.gptr = I64P(tt.a[8]);
    t.grow = I32(tt.a[9]);
    cf_bfm_rows ev, *evp = NULL;
    tuple_args eta;
    if (evo != Py_None) {
        if (parse_rows(fn, "eval", evo, &ma, -1, &eta, &ev) < 0) return NULL;
        evp = &ev;
    }
    if (check_shape1(fn, &s[0], n_sweeps) < 0 || check_shape1(fn, &s[1], P) < 0 ||
        check_shape1(fn, &s[2], H) < 0 || check_shape1(fn, &s[3], P) < 0 ||
        check_shape1(fn, &s[7], H) < 0 ||
        check_shape1(fn, &s[5], 4) < 0 || check_shape1(fn, &s[9], 1) < 0 || check_shape1(fn, &s[8], cf_bfm_cache_size(&ma.m, n)) < 0)
        return NULL;
    if (evp && !s[4].arr) {
        PyErr_Format(PyExc_ValueError, "%s(): 'eval_mean' is needed with 'eval'", fn);
        return NULL;
    }
    if (s[4].arr && check_shape1(fn, &s[4], evp ? evp->n : 0) < 0) return NULL;
    if (s[6].arr && check_shape2(fn, &s[6], -1, P) < 0) return NULL;
    const double *hy = CF64(s[2]);
    for (int64_t i = 0; i < H; i++)
        if (!isfinite(hy[i]) || (i == 0 && hy[0] <= 0)) {
            PyErr_Format(PyExc_ValueError, "%s(): 'hyper' must be finite with hyper[0] (alpha) > 0", fn);
            return NULL;
        }
    const int64_t *cnt = (const int64_t *)PyArray_DATA(s[5].arr);
    const int64_t sweeps0 = cnt[0];
    if (cnt[0] < 0 || cnt[1] < 0 || cnt[1] > cnt[0] || cnt[2] < 0 || cnt[2] > 1 || cnt[3] < 0 ||
        cnt[3] >= (k > 0 ? k : 1)) {
        PyErr_Format(PyExc_ValueError, "%s(): 'counters' must be (sweeps >= 0, kept <= sweeps, 0 or 1, a factor < k)", fn);
        return NULL;
    }
    char msg[256];
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_bfm_check(msg, sizeof msg, &ma.m, &t, evp, flags);
    Py_END_ALLOW_THREADS
    if (st == CF_ERR_NOMEM) return PyErr_NoMemory();
    if (st != CF_OK) return raise_check(fn, st, msg), NULL;
    Py_BEGIN_ALLOW_THREADS
    st = cf_bfm_run(F64(s[0]), F64(s[1]), F64(s[2]), F64(s[3]), F64(s[7]), s[4].arr ? F64(s[4]) : NULL,
                    s[6].arr ? F64(s[6]) : NULL, s[6].arr ? DIM(s[6], 0) : 0, F64(s[8]),
                    (int64_t *)PyArray_DATA(s[5].arr), &ma.m, &t, evp,
                    &(cf_bfm_prior){pr[0], pr[1], pr[2], pr[3], pr[4]}, n_sweeps, burn_in,
                    (uint64_t)seed, flags, (int)n_threads,
                    s[9].arr ? (const int64_t *)PyArray_DATA(s[9].arr) : NULL);
    Py_END_ALLOW_THREADS
    if (st == CF_ERR_NOMEM) return PyErr_NoMemory();
    if (st == CF_ERR_NONFINITE) {
        PyErr_Format(PyExc_FloatingPointError,
                     "%s(): the residuals became non-finite at sweep %lld (scale the targets or "
                     "features)", fn, (long long)cnt[0]);
        return NULL;
    }
    if (st != CF_OK && st != CF_BFM_STOPPED) {
        PyErr_Format(PyExc_RuntimeError, "%s(): internal error %d", fn, st);
        return NULL;
    }
    return PyLong_FromLongLong((long long)(cnt[0] - sweeps0));
}

PyDoc_STRVAR(bfm_predict_doc,
"bfm_predict(out, thetas, k, d0, group, blocks, rows, n_threads=1)\n--\n\n"
"out (n,) float64 written: the mean over the rows of thetas (S, P) float64 of the model's\n"
"prediction for rows = (x_ptr, x_col, x_val, idx int32 [R, n]) (see bfm_run).");

static PyObject *py_bfm_predict(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"out", "thetas", "k", "d0", "group", "blocks", "rows", "n_threads", NULL};
    const char *fn = "bfm_predict";
    argspec s[2] = {{0, "out", NPY_FLOAT64, 1}, {0, "thetas", NPY_FLOAT64}};
    long long k, d0, n_threads = 1;
    PyObject *group, *blocks, *rows;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOLLOOO|L", kwlist, &s[0].obj, &s[1].obj, &k, &d0,
                                     &group, &blocks, &rows, &n_threads))
        return NULL;
    if (positive(fn, "n_threads", n_threads) < 0 || check_args(fn, s, 2) < 0) return NULL;
    model_args ma;
    if (parse_model(fn, &ma, k, d0, group, blocks) < 0) return NULL;
    tuple_args ta;
    cf_bfm_rows rw;
    if (parse_rows(fn, "rows", rows, &ma, -1, &ta, &rw) < 0) return NULL;
    const int64_t P = cf_bfm_n_params(&ma.m);
    if (check_shape1(fn, &s[0], rw.n) < 0 || check_shape2(fn, &s[1], -1, P) < 0) return NULL;
    const int64_t S = DIM(s[1], 0);
    if (S < 1) {
        PyErr_Format(PyExc_ValueError, "%s(): argument 'thetas' has no row", fn);
        return NULL;
    }
    char msg[256];
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = cf_bfm_check(msg, sizeof msg, &ma.m, NULL, &rw, 0);
    if (st == CF_OK) st = cf_bfm_predict(F64(s[0]), CF64(s[1]), S, &ma.m, &rw, (int)n_threads);
    Py_END_ALLOW_THREADS
    if (st == CF_ERR_NOMEM) return PyErr_NoMemory();
    if (st != CF_OK) return raise_check(fn, st, msg), NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(bfm_random_doc,
"bfm_random(out, seed, sweep, slots, shape=None)\n--\n\n"
"The sampler's own draws: out[i] (float64, written) = the standard normal (shape None) or\n"
"Gamma(shape, 1) draw of the given seed, sweep and slots[i] (int64).");

static PyObject *py_bfm_random(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"out", "seed", "sweep", "slots", "shape", NULL};
    const char *fn = "bfm_random";
    argspec s[2] = {{0, "out", NPY_FLOAT64, 1}, {0, "slots", NPY_INT64}};
    unsigned long long seed;
    long long sweep;
    PyObject *shape_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OKLO|O", kwlist, &s[0].obj, &seed, &sweep, &s[1].obj,
                                     &shape_obj))
        return NULL;
    double shape = 0.0;
    if (shape_obj != Py_None) {
        shape = PyFloat_AsDouble(shape_obj);
        if (shape == -1.0 && PyErr_Occurred()) return NULL;
        if (!(shape > 0.0) || !isfinite(shape)) {
            PyErr_Format(PyExc_ValueError, "%s(): argument 'shape' must be a finite number > 0", fn);
            return NULL;
        }
    }
    if (check_args(fn, s, 2) < 0 || check_shape1(fn, &s[1], -1) < 0 ||
        check_shape1(fn, &s[0], DIM(s[1], 0)) < 0)
        return NULL;
    const int64_t N = DIM(s[1], 0);
    double *out = F64(s[0]);
    const int64_t *slots = I64P(s[1]);
    Py_BEGIN_ALLOW_THREADS
    for (int64_t i = 0; i < N; i++)
        out[i] = shape_obj == Py_None ? cf_bfm_std_normal((uint64_t)seed, sweep, slots[i])
                                      : cf_bfm_std_gamma((uint64_t)seed, sweep, slots[i], shape);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyDoc_STRVAR(bfm_stream_doc,
"bfm_stream(out, seed, sweep, slot, nu=None)\n--\n\n"
"The sampler's draws from one slot's stream (for tests of the Normal-Wishart step): with nu\n"
"None, out (n,) float64 receives the stream's first n standard normals; else out (k, k)\n"
"float64 receives the Bartlett factor of a Wishart(nu, I) draw (lower triangular, nu > k - 1).");

static PyObject *py_bfm_stream(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"out", "seed", "sweep", "slot", "nu", NULL};
    const char *fn = "bfm_stream";
    argspec s[1] = {{0, "out", NPY_FLOAT64, 1}};
    unsigned long long seed;
    long long sweep, slot;
    PyObject *nu_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OKLL|O", kwlist, &s[0].obj, &seed, &sweep, &slot, &nu_obj))
        return NULL;
    if (check_args(fn, s, 1) < 0) return NULL;
    if (nu_obj == Py_None) {
        if (check_shape1(fn, &s[0], -1) < 0) return NULL;
        cf_bfm_std_normals(F64(s[0]), DIM(s[0], 0), (uint64_t)seed, sweep, slot);
        Py_RETURN_NONE;
    }
    const double nu = PyFloat_AsDouble(nu_obj);
    if (nu == -1.0 && PyErr_Occurred()) return NULL;
    if (check_shape2(fn, &s[0], -1, -1) < 0) return NULL;
    const int64_t k = DIM(s[0], 0);
    if (DIM(s[0], 1) != k || !isfinite(nu) || !(nu > (double)k - 1.0)) {
        PyErr_Format(PyExc_ValueError, "%s(): 'out' must be square (k, k) and 'nu' a finite number > k - 1", fn);
        return NULL;
    }
    cf_bfm_bartlett(F64(s[0]), k, nu, (uint64_t)seed, sweep, slot);
    Py_RETURN_NONE;
}

PyMethodDef cf_bayes_methods[] = {
    {"bfm_run", (PyCFunction)(void (*)(void))py_bfm_run, METH_VARARGS | METH_KEYWORDS, bfm_run_doc},
    {"bfm_predict", (PyCFunction)(void (*)(void))py_bfm_predict, METH_VARARGS | METH_KEYWORDS, bfm_predict_doc},
    {"bfm_random", (PyCFunction)(void (*)(void))py_bfm_random, METH_VARARGS | METH_KEYWORDS, bfm_random_doc},
    {"bfm_stream", (PyCFunction)(void (*)(void))py_bfm_stream, METH_VARARGS | METH_KEYWORDS, bfm_stream_doc},
    {NULL, NULL, 0, NULL},
};
