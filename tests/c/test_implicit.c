/* test_implicit.c - the pure-C tests of the implicit-feedback kernels (csrc/als.c, csrc/bpr.c):
 * CSR building and transposing, the Gramian, the CG half-step against a naive double-precision
 * CG, the objective it reports, thread-count independence of ALS and BPR, BPR against a naive
 * double replay of its own samples, negative sampling, fold-in, and every error status.
 * Built plainly, under ASan + UBSan, under valgrind and under TSan by tests/c/Makefile. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collabc.h"

#include "harness.h"

/* a random CSR: NR rows, each pair's column in [1, NC), weights in [0, 3) */
typedef struct {
    int64_t NR, NC, nnz;
    int64_t *indptr;
    int32_t *indices;
    float *w;
} csr;

static csr random_csr(int64_t NR, int64_t NC, int64_t n, int weighted) {
    int32_t *rows = izeros(n), *cols = izeros(n);
    float *w = fzeros(n);
    for (int64_t p = 0; p < n; p++) {
        rows[p] = (int32_t)(1 + rnd_int(NR - 1));
        cols[p] = (int32_t)(1 + rnd_int(NC - 1));
        w[p] = (float)(3.0 * rnd_unif());
    }
    csr c = {NR, NC, 0, xcalloc((size_t)NR + 1, sizeof(int64_t)), izeros(n), weighted ? fzeros(n) : NULL};
    int64_t bad = -1;
    CHECK(cf_als_csr(c.indptr, c.indices, c.w, &bad, rows, 1, cols, 1, weighted ? w : NULL, n, NR,
                     NC, 2) == CF_OK);
    c.nnz = c.indptr[NR];
    free(rows);
    free(cols);
    free(w);
    return c;
}

static void free_csr(csr *c) {
    free(c->indptr);
    free(c->indices);
    free(c->w);
}

/* ---------------------------------------------------------------- CSR */

static void test_csr_by_hand(void) {
    /* pairs as an (n, 2) array: (2,1) (0,3) (2,1) (2,0) (0,1), weights 1..5 */
    const int32_t x[10] = {2, 1, 0, 3, 2, 1, 2, 0, 0, 1};
    const float w[5] = {1, 2, 3, 4, 5};
    int64_t ip[4], bad = -1;
    int32_t ix[5];
    float iw[5];
    CHECK(cf_als_csr(ip, ix, iw, &bad, x, 2, x + 1, 2, w, 5, 3, 4, 1) == CF_OK);
    const int64_t want_ip[4] = {0, 2, 2, 4};
    const int32_t want_ix[4] = {1, 3, 0, 1};
    const float want_w[4] = {5, 2, 4, 4};
    CHECK(memcmp(ip, want_ip, sizeof want_ip) == 0);
    CHECK(memcmp(ix, want_ix, sizeof want_ix) == 0);
    CHECK(fsame(iw, want_w, 4));
    int64_t tp[5];
    int32_t tx[4];
    float tw[4];
    cf_als_transpose(tp, tx, tw, ip, ix, iw, 3, 4);
    const int64_t want_tp[5] = {0, 1, 3, 3, 4};
    const int32_t want_tx[4] = {2, 0, 2, 0};
    const float want_tw[4] = {4, 5, 4, 2};
    CHECK(memcmp(tp, want_tp, sizeof want_tp) == 0);
    CHECK(memcmp(tx, want_tx, sizeof want_tx) == 0);
    CHECK(fsame(tw, want_tw, 4));
    int32_t badx[4] = {0, 1, 3, 1};
    CHECK(cf_als_csr(ip, ix, iw, &bad, badx, 2, badx + 1, 2, w, 2, 3, 4, 1) == CF_ERR_INDEX);
    CHECK(bad == 1);
    CHECK(cf_als_csr(ip, ix, iw, &bad, badx, 0, badx + 1, 2, w, 2, 3, 4, 1) == CF_ERR_ARG);
}

static void test_csr_long_rows_sorted_for_any_threads(void) {
    const int64_t n = 20000;
    int32_t *rows = izeros(n), *cols = izeros(n);
    for (int64_t p = 0; p < n; p++) {
        rows[p] = (int32_t)rnd_int(5); /* rows of ~4000 pairs: the merge sort */
        cols[p] = (int32_t)rnd_int(3000);
    }
    int64_t ip1[6], ip4[6], bad;
    int32_t *a = izeros(n), *b = izeros(n);
    CHECK(cf_als_csr(ip1, a, NULL, &bad, rows, 1, cols, 1, NULL, n, 5, 3000, 1) == CF_OK);
    CHECK(cf_als_csr(ip4, b, NULL, &bad, rows, 1, cols, 1, NULL, n, 5, 3000, 4) == CF_OK);
    CHECK(memcmp(ip1, ip4, sizeof ip1) == 0 && memcmp(a, b, sizeof(int32_t) * (size_t)ip1[5]) == 0);
    for (int64_t r = 0; r < 5; r++)
        for (int64_t q = ip1[r] + 1; q < ip1[r + 1]; q++) CHECK(a[q - 1] < a[q]);
    free(rows);
    free(cols);
    free(a);
    free(b);
}

/* ---------------------------------------------------------------- ALS */

static void test_gramian_matches_double(void) {
    const int64_t N = 300, K = 12;
    float *T = frand(N * K, 1.0), *G1 = fzeros(K * K), *G3 = fzeros(K * K);
    double sq1, sq3;
    CHECK(cf_als_gramian(G1, &sq1, T, N, K, 1) == CF_OK);
    CHECK(cf_als_gramian(G3, &sq3, T, N, K, 3) == CF_OK);
    CHECK(fsame(G1, G3, K * K) && sq1 == sq3);
    double tr = 0.0;
    for (int64_t a = 0; a < K; a++)
        for (int64_t b = 0; b < K; b++) {
            double s = 0.0;
            for (int64_t r = 0; r < N; r++) s += (double)T[r * K + a] * T[r * K + b];
            NEAR(G1[a * K + b], s, 1e-6);
            if (a == b) tr += s;
        }
    NEAR(sq1, tr, 1e-12);
    free(T);
    free(G1);
    free(G3);
}

/* naive double CG on one row (implicit's algorithm); x in/out */
static void naive_cg(double *x, const float *Y, int64_t NY, int64_t K, const int32_t *cols,
                     const float *w, int64_t n, double alpha, double reg, int steps) {
    double *A = dzeros(K * K), *b = dzeros(K), *r = dzeros(K), *p = dzeros(K), *Ap = dzeros(K);
    for (int64_t a = 0; a < K; a++) {
        for (int64_t c = 0; c < K; c++) {
            double s = 0.0;
            for (int64_t i = 0; i < NY; i++) s += (double)Y[i * K + a] * Y[i * K + c];
            A[a * K + c] = s + (a == c ? reg : 0.0);
        }
    }
    for (int64_t q = 0; q < n; q++) {
        const double c1 = alpha * (w ? w[q] : 1.0);
        const float *y = Y + (int64_t)cols[q] * K;
        for (int64_t a = 0; a < K; a++) {
            b[a] += (1.0 + c1) * y[a];
            for (int64_t c = 0; c < K; c++) A[a * K + c] += c1 * y[a] * y[c];
        }
    }
    double rs = 0.0;
    for (int64_t a = 0; a < K; a++) {
        double s = 0.0;
        for (int64_t c = 0; c < K; c++) s += A[a * K + c] * x[c];
        r[a] = p[a] = b[a] - s;
        rs += r[a] * r[a];
    }
    for (int it = 0; it < steps && rs >= 1e-20; it++) {
        double pap = 0.0;
        for (int64_t a = 0; a < K; a++) {
            Ap[a] = 0.0;
            for (int64_t c = 0; c < K; c++) Ap[a] += A[a * K + c] * p[c];
            pap += p[a] * Ap[a];
        }
        const double al = rs / pap;
        double rn = 0.0;
        for (int64_t a = 0; a < K; a++) {
            x[a] += al * p[a];
            r[a] -= al * Ap[a];
            rn += r[a] * r[a];
        }
        for (int64_t a = 0; a < K; a++) p[a] = r[a] + rn / rs * p[a];
        rs = rn;
    }
    free(A);
    free(b);
    free(r);
    free(p);
    free(Ap);
}

static void test_als_solve_matches_naive_cg_and_its_objective(void) {
    const int64_t NU = 30, NI = 25, K = 16;
    csr c = random_csr(NU, NI, 250, 1);
    float *X = frand(NU * K, 0.3), *Y = frand(NI * K, 0.3), *G = fzeros(K * K);
    for (int64_t k = 0; k < K; k++) X[k] = Y[k] = 0.0f; /* '#na#' */
    float *X0 = fcopy(X, NU * K);
    double sq, obj;
    int64_t bad;
    CHECK(cf_als_gramian(G, &sq, Y, NI, K, 1) == CF_OK);
    CHECK(cf_als_solve(X, &obj, &bad, G, Y, c.indptr, c.indices, c.w, NU, NI, K, 0, NU, 2.0, 0.1, 3,
                       2) == CF_OK);
    double *x = dzeros(K), loss = 0.0;
    for (int64_t u = 0; u < NU; u++) {
        for (int64_t k = 0; k < K; k++) x[k] = X0[u * K + k];
        const int64_t s = c.indptr[u], n = c.indptr[u + 1] - s;
        if (n == 0) {
            for (int64_t k = 0; k < K; k++) CHECK(X[u * K + k] == 0.0f);
            continue;
        }
        naive_cg(x, Y, NI, K, c.indices + s, c.w + s, n, 2.0, 0.1, 3);
        for (int64_t k = 0; k < K; k++) NEAR(X[u * K + k], x[k], 2e-4);
    }
    /* the objective: sum over every item of c (p - x.y)^2 plus reg |x|^2 */
    for (int64_t u = 0; u < NU; u++) {
        for (int64_t i = 0; i < NI; i++) {
            double s = 0.0, cf = 1.0, pr = 0.0;
            for (int64_t k = 0; k < K; k++) s += (double)X[u * K + k] * Y[i * K + k];
            for (int64_t q = c.indptr[u]; q < c.indptr[u + 1]; q++)
                if (c.indices[q] == i) cf = 1.0 + 2.0 * c.w[q], pr = 1.0;
            loss += cf * (pr - s) * (pr - s);
        }
        for (int64_t k = 0; k < K; k++) loss += 0.1 * (double)X[u * K + k] * X[u * K + k];
    }
    NEAR(obj, loss, 1e-5);
    free(x);
    free(X);
    free(X0);
    free(Y);
    free(G);
    free_csr(&c);
}

static void test_als_solve_same_for_any_threads_and_segments(void) {
    const int64_t NU = 500, NI = 200, K = 20;
    csr c = random_csr(NU, NI, 8000, 0);
    float *Y = frand(NI * K, 0.2), *G = fzeros(K * K), *X = frand(NU * K, 0.2);
    float *A = fcopy(X, NU * K), *B = fcopy(X, NU * K);
    double sq, oa, ob1, ob2;
    int64_t bad;
    cf_als_gramian(G, &sq, Y, NI, K, 2);
    CHECK(cf_als_solve(A, &oa, &bad, G, Y, c.indptr, c.indices, NULL, NU, NI, K, 0, NU, 5.0, 0.5, 3, 1) == CF_OK);
    CHECK(cf_als_solve(B, &ob1, &bad, G, Y, c.indptr, c.indices, NULL, NU, NI, K, 0, 123, 5.0, 0.5, 3, 4) == CF_OK);
    CHECK(cf_als_solve(B, &ob2, &bad, G, Y, c.indptr, c.indices, NULL, NU, NI, K, 123, NU, 5.0, 0.5, 3, 3) == CF_OK);
    CHECK(fsame(A, B, NU * K));
    NEAR(ob1 + ob2, oa, 1e-12);
    free(Y);
    free(G);
    free(X);
    free(A);
    free(B);
    free_csr(&c);
}

static void test_als_solve_errors_write_nothing(void) {
    const int64_t NU = 10, NI = 8, K = 4;
    csr c = random_csr(NU, NI, 40, 1);
    float *Y = frand(NI * K, 0.2), *G = fzeros(K * K), *X = frand(NU * K, 0.2);
    float *X0 = fcopy(X, NU * K);
    double obj;
    int64_t bad;
    cf_als_gramian(G, NULL, Y, NI, K, 1);
    CHECK(cf_als_solve(X, &obj, &bad, G, Y, c.indptr, c.indices, c.w, NU, NI, K, 0, NU, 0.0, 0.1, 3, 1) == CF_ERR_ARG);
    CHECK(cf_als_solve(X, &obj, &bad, G, Y, c.indptr, c.indices, c.w, NU, NI, K, 0, NU, 1.0, -1.0, 3, 1) == CF_ERR_ARG);
    CHECK(cf_als_solve(X, &obj, &bad, G, Y, c.indptr, c.indices, c.w, NU, NI, K, 3, 2, 1.0, 0.1, 3, 1) == CF_ERR_ARG);
    CHECK(cf_als_solve(X, &obj, &bad, G, Y, c.indptr, c.indices, c.w, NU, NI, K, 0, NU, 1.0, 0.1, 0, 1) == CF_ERR_ARG);
    c.w[7] = NAN;
    CHECK(cf_als_solve(X, &obj, &bad, G, Y, c.indptr, c.indices, c.w, NU, NI, K, 0, NU, 1.0, 0.1, 3, 2) == CF_ERR_ARG);
    CHECK(bad == 7);
    c.w[7] = -1.0f;
    CHECK(cf_als_solve(X, &obj, &bad, G, Y, c.indptr, c.indices, c.w, NU, NI, K, 0, NU, 1.0, 0.1, 3, 2) == CF_ERR_ARG);
    c.w[7] = 1.0f;
    c.indices[5] = (int32_t)NI;
    CHECK(cf_als_solve(X, &obj, &bad, G, Y, c.indptr, c.indices, c.w, NU, NI, K, 0, NU, 1.0, 0.1, 3, 2) == CF_ERR_INDEX);
    CHECK(bad == 5);
    CHECK(fsame(X, X0, NU * K));
    free(Y);
    free(G);
    free(X);
    free(X0);
    free_csr(&c);
}

/* ---------------------------------------------------------------- BPR */

typedef struct {
    float *U, *V, *b, *acc;
    double *loss;
    int64_t *stats;
    int32_t *tri;
    int64_t n_tri;
} bpr_out;

static bpr_out bpr_epoch(const csr *c, int64_t K, int64_t nb, int opt, int threads,
                         const int32_t *pairs, const int64_t *starts, const float *U0,
                         const float *V0) {
    const int64_t S = nb * nb;
    int64_t *blocks = xcalloc((size_t)S, sizeof(int64_t));
    double *lrs = dzeros(S);
    for (int64_t s = 0, k = 0; s < nb; s++)
        for (int64_t g = 0; g < nb; g++, k++) {
            blocks[k] = g * nb + (g + s) % nb;
            lrs[k] = 0.05 - 0.001 * (double)k / (double)S;
        }
    bpr_out o = {fcopy(U0, c->NR * K), fcopy(V0, c->NC * K), fzeros(c->NC),
                 opt == CF_BPR_ADAGRAD ? fzeros(c->NR + 2 * c->NC) : NULL, dzeros(S),
                 xcalloc((size_t)(2 * S), sizeof(int64_t)), izeros(3 * c->nnz), c->nnz};
    cf_bpr_config cfg = {c->NR, c->NC, K, nb, opt, 0.01, 0.002, 1e-8, 42, 3};
    int64_t bad;
    CHECK(cf_bpr_fit_blocks(o.U, o.V, o.b, o.acc, o.loss, o.stats, o.tri, &bad, pairs, starts,
                            blocks, S, lrs, &cfg, threads) == CF_OK);
    /* replay the samples in double, block by block */
    double *U = dzeros(c->NR * K), *V = dzeros(c->NC * K), *b = dzeros(c->NC);
    double *acc = dzeros(c->NR + 2 * c->NC);
    for (int64_t q = 0; q < c->NR * K; q++) U[q] = U0[q];
    for (int64_t q = 0; q < c->NC * K; q++) V[q] = V0[q];
    int64_t t = 0;
    for (int64_t k = 0; k < S; k++) {
        const int64_t m = starts[blocks[k] + 1] - starts[blocks[k]];
        for (int64_t e = 0; e < m; e++, t++) {
            const int32_t u = o.tri[3 * t], i = o.tri[3 * t + 1], j = o.tri[3 * t + 2];
            if (j < 0) continue;
            double x = b[i] - b[j];
            for (int64_t f = 0; f < K; f++) x += U[u * K + f] * (V[i * K + f] - V[j * K + f]);
            const double z = 1.0 / (1.0 + exp(x)), lr = lrs[k];
            double gu[64], gi[64], gj[64], su = 0, si = 0, sj = 0;
            for (int64_t f = 0; f < K; f++) {
                gu[f] = 0.01 * U[u * K + f] - z * (V[i * K + f] - V[j * K + f]);
                gi[f] = 0.01 * V[i * K + f] - z * U[u * K + f];
                gj[f] = 0.01 * V[j * K + f] + z * U[u * K + f];
                su += gu[f] * gu[f];
                si += gi[f] * gi[f];
                sj += gj[f] * gj[f];
            }
            double cu = lr, ci = lr, cj = lr, cbi = lr, cbj = lr;
            const double gbi = 0.002 * b[i] - z, gbj = 0.002 * b[j] + z;
            if (opt == CF_BPR_ADAGRAD) {
                acc[u] += su / K;
                acc[c->NR + i] += si / K;
                acc[c->NR + j] += sj / K;
                acc[c->NR + c->NC + i] += gbi * gbi;
                acc[c->NR + c->NC + j] += gbj * gbj;
                cu = lr / sqrt(acc[u] + 1e-8);
                ci = lr / sqrt(acc[c->NR + i] + 1e-8);
                cj = lr / sqrt(acc[c->NR + j] + 1e-8);
                cbi = lr / sqrt(acc[c->NR + c->NC + i] + 1e-8);
                cbj = lr / sqrt(acc[c->NR + c->NC + j] + 1e-8);
            }
            for (int64_t f = 0; f < K; f++) {
                U[u * K + f] -= cu * gu[f];
                V[i * K + f] -= ci * gi[f];
                V[j * K + f] -= cj * gj[f];
            }
            b[i] -= cbi * gbi;
            b[j] -= cbj * gbj;
        }
    }
    for (int64_t q = 0; q < c->NR * K; q++) NEAR(o.U[q], U[q], 1e-5);
    for (int64_t q = 0; q < c->NC * K; q++) NEAR(o.V[q], V[q], 1e-5);
    for (int64_t q = 0; q < c->NC; q++) NEAR(o.b[q], b[q], 1e-5);
    free(U);
    free(V);
    free(b);
    free(acc);
    free(blocks);
    free(lrs);
    return o;
}

static void free_out(bpr_out *o) {
    free(o->U);
    free(o->V);
    free(o->b);
    free(o->acc);
    free(o->loss);
    free(o->stats);
    free(o->tri);
}

static void test_bpr_matches_replay_and_any_threads(void) {
    const int64_t NU = 120, NI = 90, K = 16, nb = 3;
    csr c = random_csr(NU, NI, 3000, 0);
    int32_t *pairs = izeros(2 * c.nnz);
    int64_t starts[10];
    CHECK(cf_bpr_blocks(pairs, starts, c.indptr, c.indices, NU, NI, nb) == CF_OK);
    CHECK(starts[0] == 0 && starts[9] == c.nnz);
    float *U0 = frand(NU * K, 0.1), *V0 = frand(NI * K, 0.1);
    for (int opt = CF_BPR_SGD; opt <= CF_BPR_ADAGRAD; opt++) {
        bpr_out a = bpr_epoch(&c, K, nb, opt, 1, pairs, starts, U0, V0);
        bpr_out b = bpr_epoch(&c, K, nb, opt, 3, pairs, starts, U0, V0);
        CHECK(fsame(a.U, b.U, NU * K) && fsame(a.V, b.V, NI * K) && fsame(a.b, b.b, NI));
        CHECK(memcmp(a.tri, b.tri, sizeof(int32_t) * 3 * (size_t)c.nnz) == 0);
        /* every positive is a pair, every negative is not, shares its group and is not '#na#' */
        for (int64_t t = 0; t < c.nnz; t++) {
            const int32_t u = a.tri[3 * t], i = a.tri[3 * t + 1], j = a.tri[3 * t + 2];
            int has_i = 0, has_j = 0;
            for (int64_t q = c.indptr[u]; q < c.indptr[u + 1]; q++) {
                has_i |= c.indices[q] == i;
                has_j |= c.indices[q] == j;
            }
            CHECK(has_i);
            CHECK(j < 0 || (!has_j && j != 0 && j % nb == i % nb));
        }
        free_out(&a);
        free_out(&b);
    }
    free(pairs);
    free(U0);
    free(V0);
    free_csr(&c);
}

static void test_bpr_errors(void) {
    const int64_t NU = 20, NI = 15, K = 4, nb = 2;
    csr c = random_csr(NU, NI, 100, 0);
    int32_t *pairs = izeros(2 * c.nnz);
    int64_t starts[5], blocks[1] = {0}, stats[2], bad;
    double lrs[1] = {0.1}, loss[1];
    CHECK(cf_bpr_blocks(pairs, starts, c.indptr, c.indices, NU, NI, 0) == CF_ERR_ARG);
    CHECK(cf_bpr_blocks(pairs, starts, c.indptr, c.indices, NU, 5, nb) == CF_ERR_INDEX);
    CHECK(cf_bpr_blocks(pairs, starts, c.indptr, c.indices, NU, NI, nb) == CF_OK);
    float *U = frand(NU * K, 0.1), *V = frand(NI * K, 0.1), *b = fzeros(NI);
    cf_bpr_config cfg = {NU, NI, K, nb, CF_BPR_SGD, 0.01, 0.01, 1e-8, 1, 0};
    blocks[0] = 4;
    CHECK(cf_bpr_fit_blocks(U, V, b, NULL, loss, stats, NULL, &bad, pairs, starts, blocks, 1, lrs, &cfg, 1) == CF_ERR_INDEX);
    blocks[0] = 0;
    cfg.opt = CF_BPR_ADAGRAD;
    CHECK(cf_bpr_fit_blocks(U, V, b, NULL, loss, stats, NULL, &bad, pairs, starts, blocks, 1, lrs, &cfg, 1) == CF_ERR_ARG);
    cfg.opt = CF_BPR_SGD;
    lrs[0] = NAN;
    CHECK(cf_bpr_fit_blocks(U, V, b, NULL, loss, stats, NULL, &bad, pairs, starts, blocks, 1, lrs, &cfg, 1) == CF_ERR_ARG);
    lrs[0] = 0.1;
    pairs[1] += 1; /* the first pair's item leaves its block */
    CHECK(cf_bpr_fit_blocks(U, V, b, NULL, loss, stats, NULL, &bad, pairs, starts, blocks, 1, lrs, &cfg, 1) == CF_ERR_INDEX);
    pairs[1] -= 1;
    V[K + 1] = INFINITY;
    int64_t all[4] = {0, 3, 1, 2};
    double lr4[4] = {0.1, 0.1, 0.1, 0.1}, loss4[4];
    int64_t stats4[8];
    int st = cf_bpr_fit_blocks(U, V, b, NULL, loss4, stats4, NULL, &bad, pairs, starts, all, 4, lr4, &cfg, 2);
    CHECK(st == CF_ERR_NONFINITE && bad >= 0 && bad < 4);
    free(U);
    free(V);
    free(b);
    free(pairs);
    free_csr(&c);
}

static void test_bpr_fold_in(void) {
    const int64_t NI = 30, K = 8;
    float *V = frand(NI * K, 0.5), *b = fzeros(NI), *x = fzeros(K), *y = fzeros(K);
    const int32_t items[3] = {2, 7, 11};
    CHECK(cf_bpr_fold_in(x, V, b, items, 3, NI, K, 500, 0.1, 0.01, 9) == CF_OK);
    CHECK(cf_bpr_fold_in(y, V, b, items, 3, NI, K, 500, 0.1, 0.01, 9) == CF_OK);
    CHECK(fsame(x, y, K));
    /* the positives now outscore the average item */
    double pos = 0.0, all = 0.0;
    for (int64_t i = 1; i < NI; i++) {
        double s = 0.0;
        for (int64_t k = 0; k < K; k++) s += (double)x[k] * V[i * K + k];
        all += s / (double)(NI - 1);
        if (i == 2 || i == 7 || i == 11) pos += s / 3.0;
    }
    CHECK(pos > all);
    const int32_t unsorted[2] = {7, 2}, zero[1] = {0};
    CHECK(cf_bpr_fold_in(x, V, b, unsorted, 2, NI, K, 5, 0.1, 0.0, 1) == CF_ERR_ARG);
    CHECK(cf_bpr_fold_in(x, V, b, zero, 1, NI, K, 5, 0.1, 0.0, 1) == CF_ERR_INDEX);
    CHECK(cf_bpr_fold_in(x, V, b, items, 3, 4, K, 5, 0.1, 0.0, 1) == CF_ERR_ARG);
    free(V);
    free(b);
    free(x);
    free(y);
}

int main(void) {
    RUN(test_csr_by_hand);
    RUN(test_csr_long_rows_sorted_for_any_threads);
    RUN(test_gramian_matches_double);
    RUN(test_als_solve_matches_naive_cg_and_its_objective);
    RUN(test_als_solve_same_for_any_threads_and_segments);
    RUN(test_als_solve_errors_write_nothing);
    RUN(test_bpr_matches_replay_and_any_threads);
    RUN(test_bpr_errors);
    RUN(test_bpr_fold_in);
    return harness_report();
}
