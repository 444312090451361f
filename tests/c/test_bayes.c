/* test_bayes.c - the Bayesian factorization machine's sampler (csrc/bfm.c) on its own:
 * its normal and gamma draws (moments), the structural check, the relation-block caches
 * against the same model written with row-local features only (the same chain up to
 * rounding), results independent of the thread count, the samples and running means, and the
 * rank-0 model's posterior mean against the closed-form Bayesian linear regression. */
#include "harness.h"
#include "bfm.h"
#include "status.h"

/* ---------------------------------------------------------------- draws */

static void test_normal_moments(void) {
    const int64_t n = 200000;
    double s = 0, s2 = 0, s4 = 0;
    for (int64_t i = 0; i < n; i++) {
        double z = cf_bfm_std_normal(7, 3, i);
        s += z;
        s2 += z * z;
        s4 += z * z * z * z;
    }
    NEAR(s / n, 0.0, 0.01);
    NEAR(s2 / n, 1.0, 0.015);
    NEAR(s4 / n, 3.0, 0.05);
    /* a pure function of (seed, sweep, slot) */
    SAME(cf_bfm_std_normal(7, 3, 11), cf_bfm_std_normal(7, 3, 11));
    CHECK(cf_bfm_std_normal(7, 3, 11) != cf_bfm_std_normal(7, 4, 11));
    CHECK(cf_bfm_std_normal(7, 3, 11) != cf_bfm_std_normal(8, 3, 11));
}

static void test_gamma_moments(void) {
    const double shapes[] = {0.3, 1.0, 3.5, 40000.5};
    for (int t = 0; t < 4; t++) {
        const double a = shapes[t];
        const int64_t n = 100000;
        double s = 0, s2 = 0;
        for (int64_t i = 0; i < n; i++) {
            double g = cf_bfm_std_gamma(1, t, i, a);
            CHECK(g > 0);
            s += g;
            s2 += g * g;
        }
        const double mean = s / n, var = s2 / n - mean * mean;
        NEAR(mean, a, 0.02);       /* Gamma(a, 1): mean a, variance a */
        NEAR(var, a, 0.05);
    }
}

/* ---------------------------------------------------------------- a small problem */

typedef struct {
    int64_t n, k, M[2], F[2], d0;
    /* blocks as CSR and CSC */
    int64_t *ptr[2], *tptr[2];
    int32_t *col[2], *trow[2];
    float *val[2], *tval[2];
    /* row-local CSR / CSC */
    int64_t *xptr, *xtptr;
    int32_t *xcol, *xtrow;
    float *xval, *xtval;
    int32_t *idx, *grow;
    int64_t *gptr;
    float *y;
    int32_t *group;
    int64_t G;
} problem;

/* the CSC of a CSR with n_cols columns */
static void transpose(int64_t **tptr, int32_t **trow, float **tval, const int64_t *ptr,
                      const int32_t *col, const float *val, int64_t n_rows, int64_t n_cols) {
    const int64_t nnz = ptr[n_rows];
    *tptr = xcalloc((size_t)n_cols + 1, sizeof(int64_t));
    *trow = izeros(nnz);
    *tval = fzeros(nnz);
    for (int64_t e = 0; e < nnz; e++) (*tptr)[col[e] + 1]++;
    for (int64_t c = 0; c < n_cols; c++) (*tptr)[c + 1] += (*tptr)[c];
    int64_t *fill = xcalloc((size_t)n_cols, sizeof(int64_t));
    for (int64_t r = 0; r < n_rows; r++)
        for (int64_t e = ptr[r]; e < ptr[r + 1]; e++) {
            const int64_t p = (*tptr)[col[e]] + fill[col[e]]++;
            (*trow)[p] = (int32_t)r;
            (*tval)[p] = val[e];
        }
    free(fill);
}

/* n ratings of M0 "users" x M1 "items"; block r row b holds its one-hot and, for the user
 * block, a few other features of random value; d0 row-local features, one or two per row */
static problem make_problem(int64_t n, int64_t M0, int64_t M1, int64_t d0, int64_t k) {
    problem p;
    memset(&p, 0, sizeof p);
    p.n = n;
    p.k = k;
    p.M[0] = M0;
    p.M[1] = M1;
    p.F[0] = M0 + 3;
    p.F[1] = M1;
    p.d0 = d0;
    for (int r = 0; r < 2; r++) {
        const int64_t M = p.M[r];
        p.ptr[r] = xcalloc((size_t)M + 1, sizeof(int64_t));
        p.col[r] = izeros(3 * M);
        p.val[r] = fzeros(3 * M);
        int64_t e = 0;
        for (int64_t b = 0; b < M; b++) {
            p.col[r][e] = (int32_t)b;
            p.val[r][e++] = 1.0f;
            if (r == 0) {
                const int32_t a = (int32_t)(M0 + rnd_int(3));
                p.col[r][e] = a;
                p.val[r][e++] = (float)(0.5 + rnd_unif());
                if (b % 2) {
                    int32_t c = (int32_t)(M0 + (a - M0 + 1) % 3);
                    if (c < a) { int32_t t = a; p.col[r][e - 1] = c; c = t; p.val[r][e - 1] = 0.7f; }
                    p.col[r][e] = c;
                    p.val[r][e++] = -0.4f;
                }
            }
            p.ptr[r][b + 1] = e;
        }
        transpose(&p.tptr[r], &p.trow[r], &p.tval[r], p.ptr[r], p.col[r], p.val[r], M, p.F[r]);
    }
    p.idx = izeros(2 * n);
    p.y = fzeros(n);
    p.xptr = xcalloc((size_t)n + 1, sizeof(int64_t));
    p.xcol = izeros(2 * n);
    p.xval = fzeros(2 * n);
    int64_t e = 0;
    for (int64_t i = 0; i < n; i++) {
        p.idx[i] = (int32_t)rnd_int(M0);
        p.idx[n + i] = (int32_t)rnd_int(M1);
        p.y[i] = (float)(1 + rnd_int(5));
        if (d0 > 0) {
            int32_t a = (int32_t)rnd_int(d0);
            p.xcol[e] = a;
            p.xval[e++] = 1.0f;
            if (i % 3 == 0 && a + 1 < d0) {
                p.xcol[e] = a + 1;
                p.xval[e++] = 0.5f;
            }
        }
        p.xptr[i + 1] = e;
    }
    if (d0 > 0) transpose(&p.xtptr, &p.xtrow, &p.xtval, p.xptr, p.xcol, p.xval, n, d0);
    p.gptr = xcalloc((size_t)(M0 + M1 + 2), sizeof(int64_t));
    p.grow = izeros(2 * n);
    int64_t o = 0;
    for (int r = 0; r < 2; r++) {
        const int64_t M = p.M[r];
        int64_t *gp = p.gptr + o;
        for (int64_t i = 0; i < n; i++) gp[p.idx[r * n + i] + 1]++;
        for (int64_t b = 0; b < M; b++) gp[b + 1] += gp[b];
        int64_t *fill = xcalloc((size_t)M, sizeof(int64_t));
        for (int64_t i = 0; i < n; i++) {
            const int32_t b = p.idx[r * n + i];
            p.grow[r * n + gp[b] + fill[b]++] = (int32_t)i;
        }
        free(fill);
        o += M + 1;
    }
    const int64_t d = d0 + p.F[0] + p.F[1];
    p.group = izeros(d);
    p.G = 4;
    for (int64_t j = 0; j < d; j++)
        p.group[j] = j < d0 ? 0 : j < d0 + M0 ? 1 : j < d0 + p.F[0] ? 2 : 3;
    return p;
}

static void free_problem(problem *p) {
    for (int r = 0; r < 2; r++) {
        free(p->ptr[r]); free(p->col[r]); free(p->val[r]);
        free(p->tptr[r]); free(p->trow[r]); free(p->tval[r]);
    }
    free(p->xptr); free(p->xcol); free(p->xval);
    free(p->xtptr); free(p->xtrow); free(p->xtval);
    free(p->idx); free(p->grow); free(p->gptr); free(p->y); free(p->group);
}

typedef struct {
    cf_bfm_block b[2];
    cf_bfm_model m;
    cf_bfm_train t;
} views;

static void make_views(views *v, const problem *p) {
    for (int r = 0; r < 2; r++)
        v->b[r] = (cf_bfm_block){p->M[r], p->F[r], p->ptr[r][p->M[r]], p->ptr[r], p->col[r],
                                 p->val[r], p->tptr[r], p->trow[r], p->tval[r]};
    v->m = (cf_bfm_model){p->k, p->d0, 2, p->G, v->b, p->group};
    v->t.rows = (cf_bfm_rows){p->n, p->d0 ? p->xptr : NULL, p->xcol, p->xval, p->idx};
    v->t.y = p->y;
    v->t.xt_ptr = p->xtptr;
    v->t.xt_row = p->xtrow;
    v->t.xt_val = p->xtval;
    v->t.gptr = p->gptr;
    v->t.grow = p->grow;
}

/* the same model with every block feature written out as a row-local feature of each rating
 * (feature order unchanged: row-local, block 0's, block 1's), no blocks */
typedef struct {
    int64_t *xptr, *xtptr;
    int32_t *xcol, *xtrow;
    float *xval, *xtval;
    cf_bfm_model m;
    cf_bfm_train t;
} flat;

static void make_flat(flat *f, const problem *p) {
    const int64_t n = p->n, d = p->d0 + p->F[0] + p->F[1];
    int64_t cap = p->xptr[n] + n * 4;
    f->xptr = xcalloc((size_t)n + 1, sizeof(int64_t));
    f->xcol = izeros(cap);
    f->xval = fzeros(cap);
    int64_t e = 0;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t q = p->xptr[i]; q < p->xptr[i + 1]; q++) {
            f->xcol[e] = p->xcol[q];
            f->xval[e++] = p->xval[q];
        }
        int64_t off = p->d0;
        for (int r = 0; r < 2; r++) {
            const int32_t b = p->idx[r * n + i];
            for (int64_t q = p->ptr[r][b]; q < p->ptr[r][b + 1]; q++) {
                f->xcol[e] = (int32_t)(off + p->col[r][q]);
                f->xval[e++] = p->val[r][q];
            }
            off += p->F[r];
        }
        f->xptr[i + 1] = e;
    }
    transpose(&f->xtptr, &f->xtrow, &f->xtval, f->xptr, f->xcol, f->xval, n, d);
    f->m = (cf_bfm_model){p->k, d, 0, p->G, NULL, p->group};
    f->t.rows = (cf_bfm_rows){n, f->xptr, f->xcol, f->xval, NULL};
    f->t.y = p->y;
    f->t.xt_ptr = f->xtptr;
    f->t.xt_row = f->xtrow;
    f->t.xt_val = f->xtval;
    f->t.gptr = NULL;
    f->t.grow = NULL;
}

static void free_flat(flat *f) {
    free(f->xptr); free(f->xcol); free(f->xval); free(f->xtptr); free(f->xtrow); free(f->xtval);
}

static const cf_bfm_prior PRIOR = {1.0, 1.0, 1.0, 0.0, 1.0};

typedef struct {
    double *theta, *hyper, *tm, *hm, *rmse, *e;
    int64_t cnt[4];
    int64_t P, H;
} chain;

static chain new_chain(const cf_bfm_model *m, int64_t n_sweeps, int64_t n) {
    chain c;
    c.P = cf_bfm_n_params(m);
    c.H = cf_bfm_n_hyper(m);
    c.theta = dzeros(c.P);
    c.hyper = dzeros(c.H);
    c.tm = dzeros(c.P);
    c.hm = dzeros(c.H);
    c.rmse = dzeros(n_sweeps);
    c.cnt[0] = c.cnt[1] = c.cnt[2] = c.cnt[3] = 0;
    c.e = dzeros(cf_bfm_cache_size(m, n));
    const int64_t d = (c.P - 1) / (1 + m->k);
    g_rs = 99;
    for (int64_t i = 1 + d; i < c.P; i++) c.theta[i] = 0.1 * rnd_normal();
    c.hyper[0] = 1.0;
    for (int64_t i = 1; i < c.H; i++) c.hyper[i] = (i - 1) % 2 ? 0.5 : 0.1;
    return c;
}

/* n_sweeps sweeps of chain c (no eval rows, no samples) */
static int run_chain(chain *c, double *rmse, const cf_bfm_model *m, const cf_bfm_train *t,
                     const cf_bfm_prior *pr, int64_t n_sweeps, int64_t burn, uint64_t seed,
                     int flags, int threads) {
    return cf_bfm_run(rmse, c->theta, c->hyper, c->tm, c->hm, NULL, NULL, 0, c->e, c->cnt, m, t,
                      NULL, pr, n_sweeps, burn, seed, flags, threads, NULL);
}

static void free_chain(chain *c) {
    free(c->theta); free(c->hyper); free(c->tm); free(c->hm); free(c->rmse); free(c->e);
}

static void test_check_catches_bad_structure(void) {
    g_rs = 1;
    problem p = make_problem(40, 5, 4, 3, 2);
    views v;
    make_views(&v, &p);
    char msg[200];
    CHECK(cf_bfm_check(msg, sizeof msg, &v.m, &v.t, NULL, 0) == CF_OK);
    const int32_t orig = p.idx[p.n + 7];
    p.idx[p.n + 7] = 4; /* item block row 4 of 4 */
    CHECK(cf_bfm_check(msg, sizeof msg, &v.m, &v.t, NULL, 0) == CF_ERR_INDEX);
    CHECK(strstr(msg, "block 1") != NULL);
    p.idx[p.n + 7] = (orig + 1) % 4; /* in range, but the grouping lists the rating elsewhere */
    CHECK(cf_bfm_check(msg, sizeof msg, &v.m, &v.t, NULL, 0) == CF_ERR_INDEX);
    CHECK(strstr(msg, "grouping") != NULL);
    p.idx[p.n + 7] = orig;
    CHECK(cf_bfm_check(msg, sizeof msg, &v.m, &v.t, NULL, 0) == CF_OK);
    /* with stripes only the grouping's counts are read: a wrong list passes, a wrong count not */
    const int32_t g0 = p.grow[p.n], g1 = p.grow[p.n + 1];
    p.grow[p.n] = g1;
    p.grow[p.n + 1] = g0;
    CHECK(cf_bfm_check(msg, sizeof msg, &v.m, &v.t, NULL, CF_BFM_STRIPES) == CF_OK);
    CHECK(cf_bfm_check(msg, sizeof msg, &v.m, &v.t, NULL, 0) != CF_OK || p.idx[p.n + g0] == p.idx[p.n + g1]);
    p.grow[p.n] = g0;
    p.grow[p.n + 1] = g1;
    p.idx[p.n + 7] = (orig + 1) % 4;
    CHECK(cf_bfm_check(msg, sizeof msg, &v.m, &v.t, NULL, CF_BFM_STRIPES) == CF_ERR_INDEX);
    CHECK(strstr(msg, "counts") != NULL);
    p.idx[p.n + 7] = orig;
    p.y[3] = NAN;
    CHECK(cf_bfm_check(msg, sizeof msg, &v.m, &v.t, NULL, 0) == CF_ERR_ARG);
    free_problem(&p);
    g_rs = 1;
    problem q = make_problem(40, 5, 4, 3, 2);
    make_views(&v, &q);
    q.group[2] = 9;
    CHECK(cf_bfm_check(msg, sizeof msg, &v.m, &v.t, NULL, 0) == CF_ERR_INDEX);
    q.group[2] = 0;
    q.col[0][1] = 99;
    CHECK(cf_bfm_check(msg, sizeof msg, &v.m, &v.t, NULL, 0) == CF_ERR_INDEX);
    free_problem(&q);
}

/* the relation-block caches give the chain of the flat model (every feature row-local) */
static void test_blocks_match_flat_model(void) {
    g_rs = 5;
    problem p = make_problem(300, 12, 9, 4, 3);
    views v;
    make_views(&v, &p);
    flat f;
    make_flat(&f, &p);
    char msg[200];
    CHECK(cf_bfm_check(msg, sizeof msg, &v.m, &v.t, NULL, 0) == CF_OK);
    CHECK(cf_bfm_check(msg, sizeof msg, &f.m, &f.t, NULL, 0) == CF_OK);
    const int64_t S = 5;
    for (int w = 0; w < 2; w++) { /* Normal-Gamma, then Normal-Wishart factor priors */
        v.m.wishart = f.m.wishart = w;
        chain a = new_chain(&v.m, S, p.n), b = new_chain(&f.m, S, p.n);
        CHECK(a.P == b.P && a.H == b.H);
        CHECK(a.H == 1 + 2 * p.G * (1 + p.k) + w * p.G * p.k * p.k);
        CHECK(run_chain(&a, a.rmse, &v.m, &v.t, &PRIOR, S, 2, 42, 0, 1) == CF_OK);
        CHECK(run_chain(&b, b.rmse, &f.m, &f.t, &PRIOR, S, 2, 42, 0, 1) == CF_OK);
        double worst = 0;
        for (int64_t i = 0; i < a.P; i++) {
            const double dlt = fabs(a.theta[i] - b.theta[i]) / (1 + fabs(b.theta[i]));
            if (dlt > worst) worst = dlt;
        }
        CHECK(worst < 1e-9);
        for (int64_t i = 0; i < a.H; i++) NEAR(a.hyper[i], b.hyper[i], 1e-9);
        for (int64_t s = 0; s < S; s++) NEAR(a.rmse[s], b.rmse[s], 1e-10);
        CHECK(a.cnt[0] == S && a.cnt[1] == S - 2);
        if (w) { /* Lambda_V symmetric, its diagonal in lambda_V */
            const int64_t G = p.G, k = p.k;
            const double *lam = a.hyper + 1 + 2 * G + G * k, *L = lam + G * k;
            for (int64_t g = 0; g < G; g++)
                for (int64_t r = 0; r < k; r++) {
                    CHECK(lam[g * k + r] == L[(g * k + r) * k + r] && lam[g * k + r] > 0);
                    for (int64_t c = 0; c < k; c++)
                        CHECK(L[(g * k + r) * k + c] == L[(g * k + c) * k + r]);
                }
        }
        free_chain(&a);
        free_chain(&b);
    }
    v.m.wishart = 2;
    CHECK(cf_bfm_check(msg, sizeof msg, &v.m, &v.t, NULL, 0) == CF_ERR_ARG);
    free_flat(&f);
    free_problem(&p);
}

/* bit for bit the same chain for 1, 2 and 3 threads, and for 4 + 3 sweeps as for 7, with every
 * pass of the sweep run by the pool */
static void test_threads_and_segments(void) {
    g_rs = 11;
    /* enough ratings and block rows for every pass to be shared out (>= 16 chunks each) */
    problem p = make_problem(140000, 17000, 2500, 50, 2);
    views v;
    make_views(&v, &p);
    const int64_t S = 7;
    chain c[4];
    for (int w = 0; w < 2; w++) { /* Normal-Gamma, then Normal-Wishart factor priors */
        v.m.wishart = w;
        for (int t = 0; t < 3; t++) {
            c[t] = new_chain(&v.m, S, p.n);
            CHECK(run_chain(&c[t], c[t].rmse, &v.m, &v.t, &PRIOR, S, 3, 5, 0, t + 1) == CF_OK);
        }
        c[3] = new_chain(&v.m, S, p.n);
        CHECK(run_chain(&c[3], c[3].rmse, &v.m, &v.t, &PRIOR, 4, 3, 5, 0, 2) == CF_OK);
        CHECK(run_chain(&c[3], c[3].rmse + 4, &v.m, &v.t, &PRIOR, 3, 3, 5, 0, 2) == CF_OK);
        for (int t = 1; t < 4; t++) {
            CHECK(memcmp(c[0].theta, c[t].theta, sizeof(double) * (size_t)c[0].P) == 0);
            CHECK(memcmp(c[0].tm, c[t].tm, sizeof(double) * (size_t)c[0].P) == 0);
            CHECK(memcmp(c[0].hyper, c[t].hyper, sizeof(double) * (size_t)c[0].H) == 0);
            CHECK(memcmp(c[0].rmse, c[t].rmse, sizeof(double) * (size_t)S) == 0);
        }
        CHECK(c[0].rmse[S - 1] < c[0].rmse[0]);
        for (int t = 0; t < 4; t++) free_chain(&c[t]);
    }
    free_problem(&p);
}

/* sums by stripes of ratings give the chain of sums through the grouping, up to rounding, and
 * the same chain bit for bit for any thread count */
static void test_stripes(void) {
    g_rs = 13;
    problem p = make_problem(30000, 700, 900, 20, 3);
    views v;
    make_views(&v, &p);
    const int64_t S = 4;
    chain a = new_chain(&v.m, S, p.n), b = new_chain(&v.m, S, p.n), c = new_chain(&v.m, S, p.n);
    CHECK(run_chain(&a, a.rmse, &v.m, &v.t, &PRIOR, S, 1, 9, CF_BFM_GATHER, 1) == CF_OK);
    CHECK(run_chain(&b, b.rmse, &v.m, &v.t, &PRIOR, S, 1, 9, CF_BFM_STRIPES, 1) == CF_OK);
    CHECK(run_chain(&c, c.rmse, &v.m, &v.t, &PRIOR, S, 1, 9, CF_BFM_STRIPES, 3) == CF_OK);
    CHECK(memcmp(a.theta, b.theta, sizeof(double) * (size_t)a.P) != 0);
    for (int64_t i = 0; i < a.P; i++) NEAR(b.theta[i], a.theta[i], 1e-8);
    CHECK(memcmp(b.theta, c.theta, sizeof(double) * (size_t)a.P) == 0);
    CHECK(memcmp(b.rmse, c.rmse, sizeof(double) * (size_t)S) == 0);
    free_chain(&a);
    free_chain(&b);
    free_chain(&c);
    free_problem(&p);
}

/* a stop request ends the call after the factor in progress; the next call resumes there and
 * the chain is the one without stops, bit for bit */
static void test_stop_and_resume(void) {
    g_rs = 17;
    problem p = make_problem(3000, 40, 30, 8, 3);
    views v;
    make_views(&v, &p);
    const int64_t S = 5;
    chain a = new_chain(&v.m, S, p.n), b = new_chain(&v.m, S, p.n);
    CHECK(run_chain(&a, a.rmse, &v.m, &v.t, &PRIOR, S, 1, 4, 0, 2) == CF_OK);
    int64_t stop = 1;
    double rm[8];
    int64_t got = 0, calls = 0;
    while (b.cnt[0] < S && calls < 40) {
        const int64_t before = b.cnt[0];
        int st = cf_bfm_run(rm, b.theta, b.hyper, b.tm, b.hm, NULL, NULL, 0, b.e, b.cnt, &v.m, &v.t,
                            NULL, &PRIOR, S - before, 1, 4, 0, 2, &stop);
        CHECK(st == CF_BFM_STOPPED || st == CF_OK);
        for (int64_t s = 0; s < b.cnt[0] - before; s++) b.rmse[got++] = rm[s];
        calls++;
    }
    CHECK(calls > S); /* every sweep was cut after its first factor */
    CHECK(b.cnt[0] == S && b.cnt[3] == 0 && got == S);
    CHECK(memcmp(a.theta, b.theta, sizeof(double) * (size_t)a.P) == 0);
    CHECK(memcmp(a.tm, b.tm, sizeof(double) * (size_t)a.P) == 0);
    CHECK(memcmp(a.rmse, b.rmse, sizeof(double) * (size_t)S) == 0);
    free_chain(&a);
    free_chain(&b);
    free_problem(&p);
}

/* the kept samples, their mean and the eval rows' running mean agree with predictions */
static void test_samples_and_eval_mean(void) {
    g_rs = 21;
    problem p = make_problem(500, 20, 15, 6, 3);
    views v;
    make_views(&v, &p);
    const int64_t S = 9, burn = 4, kept = S - burn;
    chain c = new_chain(&v.m, S, p.n);
    double *samples = dzeros(kept * c.P), *ev = dzeros(p.n), *pred = dzeros(p.n), *pm = dzeros(c.P);
    CHECK(cf_bfm_run(c.rmse, c.theta, c.hyper, c.tm, c.hm, ev, samples, kept, c.e, c.cnt, &v.m, &v.t,
                     &v.t.rows, &PRIOR, S, burn, 3, 0, 2, NULL) == CF_OK);
    CHECK(c.cnt[1] == kept);
    CHECK(memcmp(samples + (kept - 1) * c.P, c.theta, sizeof(double) * (size_t)c.P) == 0);
    for (int64_t s = 0; s < kept; s++)
        for (int64_t i = 0; i < c.P; i++) pm[i] += samples[s * c.P + i] / (double)kept;
    for (int64_t i = 0; i < c.P; i++) NEAR(c.tm[i], pm[i], 1e-12);
    CHECK(cf_bfm_predict(pred, samples, kept, &v.m, &v.t.rows, 2) == CF_OK);
    for (int64_t i = 0; i < p.n; i++) NEAR(ev[i], pred[i], 1e-12);
    /* the last sample's training RMSE from its own predictions */
    CHECK(cf_bfm_predict(pred, c.theta, 1, &v.m, &v.t.rows, 1) == CF_OK);
    double sse = 0;
    for (int64_t i = 0; i < p.n; i++) sse += (pred[i] - p.y[i]) * (pred[i] - p.y[i]);
    NEAR(c.rmse[S - 1], sqrt(sse / p.n), 1e-12);
    free(samples); free(ev); free(pred); free(pm);
    free_chain(&c);
    free_problem(&p);
}

/* rank 0, fixed hyperparameters: y = w0 + X w + noise is a Bayesian linear regression whose
 * posterior mean is (alpha A'A + L)^-1 (alpha A'y + L m), A = [1, X]; the running mean of the
 * chain converges to it */
static void solve(double *a, double *b, int64_t n) { /* Gaussian elimination, a SPD */
    for (int64_t c = 0; c < n; c++) {
        for (int64_t r = c + 1; r < n; r++) {
            const double f = a[r * n + c] / a[c * n + c];
            for (int64_t q = c; q < n; q++) a[r * n + q] -= f * a[c * n + q];
            b[r] -= f * b[c];
        }
    }
    for (int64_t c = n - 1; c >= 0; c--) {
        for (int64_t q = c + 1; q < n; q++) b[c] -= a[c * n + q] * b[q];
        b[c] /= a[c * n + c];
    }
}

static void test_rank0_posterior_mean(void) {
    g_rs = 31;
    problem p = make_problem(60, 4, 3, 3, 0);
    views v;
    make_views(&v, &p);
    flat f;
    make_flat(&f, &p);
    const int64_t d = f.m.d0, D = d + 1, S = 100000;
    chain c = new_chain(&v.m, S, p.n);
    c.hyper[0] = 2.0;                      /* alpha */
    const double mu[4] = {0.3, -0.2, 0.1, 0.0}, lam[4] = {2.0, 3.0, 4.0, 2.5};
    for (int g = 0; g < 4; g++) {
        c.hyper[1 + g] = mu[g];
        c.hyper[1 + 4 + g] = lam[g];
    }
    cf_bfm_prior pr = PRIOR;
    pr.reg_0 = 4.0;
    CHECK(run_chain(&c, c.rmse, &v.m, &v.t, &pr, S, 200, 8, CF_BFM_FIX_ALPHA | CF_BFM_FIX_GROUPS, 1) ==
          CF_OK);
    /* the closed form from the flat design */
    double *A = dzeros(D * D), *b = dzeros(D);
    for (int64_t i = 0; i < p.n; i++) {
        double row[64] = {0};
        row[0] = 1;
        for (int64_t q = f.xptr[i]; q < f.xptr[i + 1]; q++) row[1 + f.xcol[q]] += f.xval[q];
        for (int64_t a = 0; a < D; a++) {
            b[a] += 2.0 * row[a] * p.y[i];
            for (int64_t e = 0; e < D; e++) A[a * D + e] += 2.0 * row[a] * row[e];
        }
    }
    A[0] += pr.reg_0;
    for (int64_t j = 0; j < d; j++) {
        A[(1 + j) * D + 1 + j] += lam[p.group[j]];
        b[1 + j] += lam[p.group[j]] * mu[p.group[j]];
    }
    solve(A, b, D);
    double worst = 0;
    for (int64_t a = 0; a < D; a++) {
        const double dlt = fabs(c.tm[a] - b[a]);
        if (dlt > worst) worst = dlt;
    }
    CHECK(worst < 0.02);
    NEAR(c.hyper[0], 2.0, 0.0);
    free(A); free(b);
    free_chain(&c);
    free_flat(&f);
    free_problem(&p);
}

int main(void) {
    RUN(test_normal_moments);
    RUN(test_gamma_moments);
    RUN(test_check_catches_bad_structure);
    RUN(test_blocks_match_flat_model);
    RUN(test_threads_and_segments);
    RUN(test_stripes);
    RUN(test_stop_and_resume);
    RUN(test_samples_and_eval_mean);
    RUN(test_rank0_posterior_mean);
    return harness_report();
}
