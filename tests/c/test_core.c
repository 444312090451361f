/* test_core.c - the pure-C tests of collabc's core (the csrc/ files): no Python, no NumPy.
 *
 * Every kernel family is checked on small hand-computed cases and on randomized inputs
 * against naive reimplementations written out below (mostly in double precision), and the
 * two epoch drivers against a naive epoch, finite differences, their NaN guard and their
 * index / argument errors. Built and run by tests/c/Makefile plain (-O2), under
 * AddressSanitizer + UndefinedBehaviorSanitizer, and under valgrind memcheck; every buffer
 * the tests allocate is freed, so a leak report can only come from the core.
 *
 * Output: one line per failed check on stderr, then exactly "N passed, M failed" on stdout;
 * the exit status is 0 only when M == 0. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collabc.h"

#include "harness.h"
#include "isa.h"
#include "simd.h"

/* ---------------------------------------------------------------- embedding */

static void test_embedding_forward_by_hand(void) {
    const float w[6] = {1, 2, 3, 4, 5, 6};
    const int32_t idx[3] = {2, 0, 2};
    float out[6] = {0};
    CHECK(cf_embedding_forward(out, w, idx, 3, 2, 3) == CF_OK);
    const float want[6] = {5, 6, 1, 2, 5, 6};
    CHECK(fsame(out, want, 6));
    CHECK(cf_embedding_forward(out, w, idx, 0, 2, 3) == CF_OK); /* empty batch */
}

static void test_embedding_ids_out_of_range(void) {
    const float w[6] = {1, 2, 3, 4, 5, 6};
    float out[4], dw[6] = {0};
    const int32_t bad_ids[] = {3, -1, INT32_MIN, INT32_MAX};
    for (int t = 0; t < 4; t++) {
        int32_t idx[2] = {1, bad_ids[t]};
        CHECK(cf_embedding_forward(out, w, idx, 2, 2, 3) == CF_ERR_INDEX);
        const float d[4] = {1, 1, 1, 1};
        CHECK(cf_embedding_backward(dw, d, idx, 2, 2, 3) == CF_ERR_INDEX);
        for (int i = 0; i < 6; i++) CHECK(dw[i] == 0.0f); /* nothing written */
    }
    const int32_t strided[6] = {0, 9, 2, 9, 3, 9};
    CHECK(cf_ids_first_bad(strided, 3, 2, 3) == 2);
    CHECK(cf_ids_first_bad(strided + 1, 3, 2, 10) == -1);
    CHECK(cf_ids_first_bad(strided + 1, 3, 2, 9) == 0);
    CHECK(cf_ids_first_bad(strided, 0, 2, 1) == -1);
}

static void test_embedding_backward_repeated_ids_accumulate(void) {
    float dw[6] = {10, 20, 30, 40, 50, 60};
    const float d[6] = {1, 2, 3, 4, 5, 6};
    const int32_t idx[3] = {1, 1, 0};
    CHECK(cf_embedding_backward(dw, d, idx, 3, 2, 3) == CF_OK);
    const float want[6] = {15, 26, 34, 46, 50, 60};
    CHECK(fsame(dw, want, 6));
}

static void test_embedding_random_vs_naive(void) {
    for (int rep = 0; rep < 20; rep++) {
        int64_t B = 1 + rnd_int(40), K = 1 + rnd_int(9), N = 1 + rnd_int(12);
        float *w = frand(N * K, 1.0), *out = fzeros(B * K), *d = frand(B * K, 1.0);
        float *dw = frand(N * K, 1.0), *dw_ref = fcopy(dw, N * K);
        int32_t *idx = irand(B, N);
        CHECK(cf_embedding_forward(out, w, idx, B, K, N) == CF_OK);
        for (int64_t b = 0; b < B; b++)
            for (int64_t k = 0; k < K; k++) SAME(out[b * K + k], w[idx[b] * K + k]);
        CHECK(cf_embedding_backward(dw, d, idx, B, K, N) == CF_OK);
        for (int64_t b = 0; b < B; b++)
            for (int64_t k = 0; k < K; k++) dw_ref[idx[b] * K + k] += d[b * K + k];
        CHECK(fsame(dw, dw_ref, N * K));
        free(w), free(out), free(d), free(dw), free(dw_ref), free(idx);
    }
}

static void test_embedding_concat(void) {
    /* E = 3 tables of widths 2, 1, 3 -> outT [6, B] */
    enum { E = 3, B = 5 };
    const int64_t rows[E] = {4, 2, 3}, dims[E] = {2, 1, 3};
    float *t[E], *dt[E], *dt_ref[E];
    for (int e = 0; e < E; e++) {
        t[e] = frand(rows[e] * dims[e], 1.0);
        dt[e] = frand(rows[e] * dims[e], 1.0);
        dt_ref[e] = fcopy(dt[e], rows[e] * dims[e]);
    }
    int32_t ids[E * B];
    for (int e = 0; e < E; e++)
        for (int b = 0; b < B; b++) ids[e * B + b] = (int32_t)rnd_int(rows[e]);
    ids[1] = ids[2]; /* a repeated id in table 0 */
    float outT[6 * B], doutT[6 * B];
    const float *ct[E] = {t[0], t[1], t[2]};
    CHECK(cf_embedding_concat_forward(outT, ct, rows, dims, ids, E, B) == CF_OK);
    int64_t off = 0;
    for (int e = 0; e < E; e++) {
        for (int64_t j = 0; j < dims[e]; j++)
            for (int b = 0; b < B; b++) SAME(outT[(off + j) * B + b], t[e][ids[e * B + b] * dims[e] + j]);
        off += dims[e];
    }
    for (int i = 0; i < 6 * B; i++) doutT[i] = (float)(i % 7) - 3.0f;
    CHECK(cf_embedding_concat_backward(dt, doutT, rows, dims, ids, E, B) == CF_OK);
    off = 0;
    for (int e = 0; e < E; e++) {
        for (int b = 0; b < B; b++)
            for (int64_t j = 0; j < dims[e]; j++)
                dt_ref[e][ids[e * B + b] * dims[e] + j] += doutT[(off + j) * B + b];
        off += dims[e];
        CHECK(fsame(dt[e], dt_ref[e], rows[e] * dims[e]));
    }
    /* a bad id in the last table: forward fails, backward writes nothing to any table */
    ids[2 * B + 4] = 3;
    CHECK(cf_embedding_concat_forward(outT, ct, rows, dims, ids, E, B) == CF_ERR_INDEX);
    CHECK(cf_embedding_concat_backward(dt, doutT, rows, dims, ids, E, B) == CF_ERR_INDEX);
    for (int e = 0; e < E; e++) CHECK(fsame(dt[e], dt_ref[e], rows[e] * dims[e]));
    ids[2 * B + 4] = -1;
    CHECK(cf_embedding_concat_backward(dt, doutT, rows, dims, ids, E, B) == CF_ERR_INDEX);
    for (int e = 0; e < E; e++) free(t[e]), free(dt[e]), free(dt_ref[e]);
}

/* ---------------------------------------------------------------- dotbias */

static void test_dotbias_by_hand(void) {
    const float uw[4] = {1, 2, 3, 4}, iw[2] = {5, 6}, ub[2] = {0.5f, -1}, ib[1] = {2};
    const int32_t users[2] = {0, 1}, items[2] = {0, 0};
    float out[2];
    CHECK(cf_dotbias_forward(out, uw, iw, ub, ib, users, items, 2, 2, 2, 1) == CF_OK);
    SAME(out[0], 19.5);
    SAME(out[1], 40.0);
    CHECK(cf_dotbias_forward(out, uw, iw, NULL, NULL, users, items, 2, 2, 2, 1) == CF_OK);
    SAME(out[0], 17.0);
    SAME(out[1], 39.0);
    float duw[4] = {0}, diw[2] = {0}, dub[2] = {0}, dib[1] = {0};
    const float dout[2] = {1, 2};
    CHECK(cf_dotbias_backward(duw, diw, dub, dib, dout, uw, iw, users, items, 2, 2, 2, 1) == CF_OK);
    const float w_duw[4] = {5, 6, 10, 12}, w_diw[2] = {7, 10}, w_dub[2] = {1, 2}, w_dib[1] = {3};
    CHECK(fsame(duw, w_duw, 4) && fsame(diw, w_diw, 2) && fsame(dub, w_dub, 2) && fsame(dib, w_dib, 1));
    /* no biases: the bias gradients may be NULL */
    CHECK(cf_dotbias_backward(duw, diw, NULL, NULL, dout, uw, iw, users, items, 2, 2, 2, 1) == CF_OK);
    SAME(duw[3], 24.0);
}

static void test_dotbias_random_vs_naive_and_index_errors(void) {
    for (int rep = 0; rep < 20; rep++) {
        int64_t B = 1 + rnd_int(50), K = 1 + rnd_int(20), NU = 1 + rnd_int(9), NI = 1 + rnd_int(9);
        int bias = rep % 2;
        float *uw = frand(NU * K, 1), *iw = frand(NI * K, 1), *ub = frand(NU, 1), *ib = frand(NI, 1);
        int32_t *users = irand(B, NU), *items = irand(B, NI);
        float *out = fzeros(B), *dout = frand(B, 1);
        CHECK(cf_dotbias_forward(out, uw, iw, bias ? ub : NULL, bias ? ib : NULL, users, items, B,
                                 K, NU, NI) == CF_OK);
        float *duw = frand(NU * K, 1), *diw = frand(NI * K, 1), *dub = frand(NU, 1), *dib = frand(NI, 1);
        double *r_duw = dzeros(NU * K), *r_diw = dzeros(NI * K), *r_dub = dzeros(NU), *r_dib = dzeros(NI);
        for (int64_t i = 0; i < NU * K; i++) r_duw[i] = duw[i];
        for (int64_t i = 0; i < NI * K; i++) r_diw[i] = diw[i];
        for (int64_t i = 0; i < NU; i++) r_dub[i] = dub[i];
        for (int64_t i = 0; i < NI; i++) r_dib[i] = dib[i];
        for (int64_t b = 0; b < B; b++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += (double)uw[users[b] * K + k] * iw[items[b] * K + k];
            if (bias) s += (double)ub[users[b]] + ib[items[b]];
            NEAR(out[b], s, 1e-5);
            for (int64_t k = 0; k < K; k++) {
                r_duw[users[b] * K + k] += (double)dout[b] * iw[items[b] * K + k];
                r_diw[items[b] * K + k] += (double)dout[b] * uw[users[b] * K + k];
            }
            r_dub[users[b]] += dout[b];
            r_dib[items[b]] += dout[b];
        }
        CHECK(cf_dotbias_backward(duw, diw, bias ? dub : NULL, bias ? dib : NULL, dout, uw, iw,
                                  users, items, B, K, NU, NI) == CF_OK);
        for (int64_t i = 0; i < NU * K; i++) NEAR(duw[i], r_duw[i], 1e-5);
        for (int64_t i = 0; i < NI * K; i++) NEAR(diw[i], r_diw[i], 1e-5);
        if (bias) {
            for (int64_t i = 0; i < NU; i++) NEAR(dub[i], r_dub[i], 1e-5);
            for (int64_t i = 0; i < NI; i++) NEAR(dib[i], r_dib[i], 1e-5);
        }
        /* an item id out of range in the last row: error, and backward writes nothing */
        float *snap = fcopy(duw, NU * K);
        items[B - 1] = (int32_t)NI;
        CHECK(cf_dotbias_forward(out, uw, iw, NULL, NULL, users, items, B, K, NU, NI) == CF_ERR_INDEX);
        CHECK(cf_dotbias_backward(duw, diw, NULL, NULL, dout, uw, iw, users, items, B, K, NU, NI) ==
              CF_ERR_INDEX);
        CHECK(fsame(duw, snap, NU * K));
        items[B - 1] = 0;
        users[0] = -7;
        CHECK(cf_dotbias_backward(duw, diw, NULL, NULL, dout, uw, iw, users, items, B, K, NU, NI) ==
              CF_ERR_INDEX);
        CHECK(fsame(duw, snap, NU * K));
        free(snap);
        free(uw), free(iw), free(ub), free(ib), free(users), free(items), free(out), free(dout);
        free(duw), free(diw), free(dub), free(dib), free(r_duw), free(r_diw), free(r_dub), free(r_dib);
    }
}

/* the forward's rows run W at a time (dot_rows: W = 8 in the AVX2 version, 4 in the generic
 * one), each vector lane a row's left-to-right sum: every version must give the bits of one
 * row at a time, here a plain float loop, for K below, at and above the widths (the last
 * K mod W factors from the masked chunk at K - W), row counts that leave rows over, NaN, inf,
 * -0 and products that cancel to 0 (a sum that must not become -0) */
static void test_dotbias_rows_same_bits_as_one_at_a_time(void) {
    const unsigned sup = cf_isa_supported();
    const int best = cf_isa_get();
    const int64_t Ks[] = {1, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 50, 64, 65};
    const int64_t Bs[] = {0, 1, 4, 7, 8, 9, 33, 200};
    for (int l = 0; l < CF_ISA_COUNT; l++) {
        if (!(sup >> l & 1u)) continue;
        CHECK(cf_isa_set(l) == 0);
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
            for (size_t bi = 0; bi < sizeof Bs / sizeof Bs[0]; bi++)
                for (int bias = 0; bias < 2; bias++) {
                    const int64_t K = Ks[ki], B = Bs[bi], NU = 13, NI = 11;
                    g_rs = 1000 + (uint64_t)(K * 31 + B * 7 + bias);
                    float *uw = frand(NU * K, 1), *iw = frand(NI * K, 1), *ub = frand(NU, 1), *ib = frand(NI, 1);
                    for (int64_t k = 0; k < K; k++) { /* user 1 cancels item 1: sums of +-0 */
                        uw[K + k] = k % 2 ? -0.0f : 0.0f;
                        iw[K + k] = -1.0f;
                    }
                    uw[2 * K] = NAN;
                    iw[2 * K + K - 1] = INFINITY;
                    iw[3 * K] = -0.0f;
                    uw[3 * K + K / 2] = 3e38f;
                    int32_t *users = irand(B, NU), *items = irand(B, NI);
                    if (B > 3) users[2] = 1, items[2] = 1, users[3] = 2, items[3] = 2;
                    float *out = fzeros(B), *want = fzeros(B);
                    CHECK(cf_dotbias_forward(out, uw, iw, bias ? ub : NULL, bias ? ib : NULL, users, items,
                                             B, K, NU, NI) == CF_OK);
                    for (int64_t b = 0; b < B; b++) {
                        float s = 0.0f;
                        for (int64_t k = 0; k < K; k++) s += uw[users[b] * K + k] * iw[items[b] * K + k];
                        if (bias) s += ub[users[b]];
                        if (bias) s += ib[items[b]];
                        want[b] = s;
                    }
                    CHECK(B == 0 || fsame(out, want, B));
                    free(uw), free(iw), free(ub), free(ib), free(users), free(items), free(out), free(want);
                }
    }
    CHECK(cf_isa_set(best) == 0);
}

/* ---------------------------------------------------------------- activations, dropout, loss */

static void test_sigmoid_range(void) {
    const float x[5] = {0.0f, INFINITY, -INFINITY, 100.0f, -100.0f};
    float out[5];
    cf_sigmoid_range_forward(out, x, 5, 0.0f, 5.5f);
    SAME(out[0], 2.75);
    SAME(out[1], 5.5);
    SAME(out[2], 0.0);
    SAME(out[3], 5.5);
    SAME(out[4], 0.0);
    float dx[5] = {1, 1, 1, 1, 1};
    const float dout[5] = {2, 2, 2, 2, 2};
    cf_sigmoid_range_backward(dx, dout, x, 5, 0.0f, 5.5f);
    SAME(dx[0], 1.0 + 2.0 * 5.5 * 0.25); /* accumulates; s(1-s) = 1/4 at 0 */
    for (int i = 1; i < 5; i++) SAME(dx[i], 1.0); /* saturated: no gradient, and no NaN */
    float nan_in = NAN, nan_out;
    cf_sigmoid_range_forward(&nan_out, &nan_in, 1, -1.0f, 1.0f);
    CHECK(isnan(nan_out));
    for (int rep = 0; rep < 10; rep++) {
        int64_t N = 1 + rnd_int(100);
        float lo = (float)(rnd_normal() * 3), hi = lo + 0.5f + (float)rnd_unif() * 5;
        float *xs = frand(N, 4), *o = fzeros(N), *d = frand(N, 1), *g = frand(N, 1), *g0 = fcopy(g, N);
        cf_sigmoid_range_forward(o, xs, N, lo, hi);
        cf_sigmoid_range_backward(g, d, xs, N, lo, hi);
        for (int64_t n = 0; n < N; n++) {
            double s = sigm(xs[n]);
            NEAR(o[n], s * ((double)hi - lo) + lo, 2e-6);
            NEAR(g[n], g0[n] + d[n] * ((double)hi - lo) * s * (1 - s), 2e-6);
        }
        free(xs), free(o), free(d), free(g), free(g0);
    }
}

static void test_relu(void) {
    const float x[5] = {-2, -0.0f, 0, 1.5f, 3};
    float out[5], dx[5] = {10, 10, 10, 10, 10};
    const float d[5] = {1, 2, 3, 4, 5};
    cf_relu_forward(out, x, 5);
    const float want[5] = {0, 0, 0, 1.5f, 3};
    for (int i = 0; i < 5; i++) SAME(out[i], want[i]);
    cf_relu_backward(dx, d, x, 5);
    const float wdx[5] = {10, 10, 10, 14, 15};
    CHECK(fsame(dx, wdx, 5));
    /* a long random vector crosses every vector width of every clone */
    int64_t N = 1001;
    float *xs = frand(N, 1), *o = fzeros(N), *g = frand(N, 1), *g0 = fcopy(g, N), *dd = frand(N, 1);
    cf_relu_forward(o, xs, N);
    cf_relu_backward(g, dd, xs, N);
    for (int64_t n = 0; n < N; n++) {
        SAME(o[n], xs[n] > 0 ? xs[n] : 0.0f);
        SAME(g[n], xs[n] > 0 ? g0[n] + dd[n] : g0[n]);
    }
    free(xs), free(o), free(g), free(g0), free(dd);
}

static void test_dropout_kernels_and_mask(void) {
    const float x[4] = {1, 2, 3, 4}, mask[4] = {0, 2, 2, 0};
    float out[4], dx[4] = {1, 1, 1, 1};
    const float d[4] = {5, 6, 7, 8};
    cf_dropout_forward(out, x, mask, 4);
    const float w_out[4] = {0, 4, 6, 0}, w_dx[4] = {1, 13, 15, 1};
    CHECK(fsame(out, w_out, 4));
    cf_dropout_backward(dx, d, mask, 4);
    CHECK(fsame(dx, w_dx, 4));

    enum { N = 100000 };
    float *m = fzeros(N), *m2 = fzeros(N);
    cf_rng r, r2;
    const double ps[4] = {0.0, 0.1, 0.5, 0.9};
    for (int t = 0; t < 4; t++) {
        double p = ps[t];
        float keep = (float)(1.0 / (1.0 - p));
        cf_rng_seed(&r, 1234);
        cf_dropout_mask(m, N, p, &r);
        int64_t zeros = 0, other = 0;
        for (int64_t n = 0; n < N; n++) {
            if (m[n] == 0.0f) zeros++;
            else if (m[n] != keep) other++;
        }
        CHECK(other == 0);
        NEAR((double)zeros / N, p, 0.01); /* 100k draws: 3 sigma < 0.005 */
        cf_rng_seed(&r2, 1234);
        cf_dropout_mask(m2, N, p, &r2);
        CHECK(fsame(m, m2, N)); /* deterministic for a seed */
    }
    cf_rng_seed(&r, 1);
    cf_dropout_mask(m, N, 0.5, &r);
    cf_rng_seed(&r2, 2);
    cf_dropout_mask(m2, N, 0.5, &r2);
    CHECK(!fsame(m, m2, N));
    free(m), free(m2);
}

static void test_rng(void) {
    cf_rng r;
    const uint64_t seeds[3] = {0, 1, UINT64_MAX};
    for (int s = 0; s < 3; s++) {
        cf_rng_seed(&r, seeds[s]);
        CHECK((r.s[0] | r.s[1] | r.s[2] | r.s[3]) != 0);
        double sum = 0;
        int in_range = 1;
        for (int i = 0; i < 100000; i++) {
            float u = cf_rng_uniform(&r);
            in_range &= u >= 0.0f && u < 1.0f;
            sum += u;
        }
        CHECK(in_range);
        NEAR(sum / 100000, 0.5, 0.01);
    }
}

static void test_mse(void) {
    const float p[3] = {1, 2, 3}, y[3] = {1, 1, 1};
    SAME(cf_mse_forward(p, y, 3), 5.0 / 3.0);
    SAME(cf_mse_forward(p, y, 0), 0.0);
    float d[3] = {1, 1, 1};
    cf_mse_backward(d, p, y, 3);
    NEAR(d[0], 1.0, 1e-7);
    NEAR(d[1], 1.0 + 2.0 / 3.0, 1e-7);
    NEAR(d[2], 1.0 + 4.0 / 3.0, 1e-7);
    const float big[2] = {3e38f, -3e38f}, zero[2] = {0, 0};
    double b2 = (double)big[0] * (double)big[0];
    SAME(cf_mse_forward(big, zero, 2), b2); /* double accumulator: no float overflow */
    float pn[2] = {NAN, 0};
    CHECK(isnan(cf_mse_forward(pn, zero, 2)));
    for (int rep = 0; rep < 10; rep++) {
        int64_t N = 1 + rnd_int(300);
        float *a = frand(N, 2), *b = frand(N, 2);
        double s = 0;
        for (int64_t n = 0; n < N; n++) s += ((double)a[n] - b[n]) * ((double)a[n] - b[n]);
        NEAR(cf_mse_forward(a, b, N), s / N, 1e-12);
        free(a), free(b);
    }
}

/* ---------------------------------------------------------------- optimizers */

/* fastai Adam in double: one step on one parameter */
static void ref_adam(double *p, double g, double *m, double *v, double lr, double b1, double b2,
                     double eps, double wd, int64_t step, int decouple) {
    if (decouple) *p *= 1 - lr * wd;
    else g += wd * *p;
    *m = b1 * *m + (1 - b1) * g;
    *v = b2 * *v + (1 - b2) * g * g;
    *p -= lr / (1 - pow(b1, (double)step)) * *m / (sqrt(*v / (1 - pow(b2, (double)step))) + eps);
}

static void ref_sgd(double *p, double g, double *buf, double lr, double mom, double wd, int decouple) {
    if (decouple) *p *= 1 - lr * wd;
    else g += wd * *p;
    if (buf) {
        *buf = mom * *buf + g;
        *p -= lr * *buf;
    } else {
        *p -= lr * g;
    }
}

static void test_adam_by_hand(void) {
    float p = 1.0f, g = 0.5f, m = 0.0f, v = 0.0f;
    cf_adam_step(&p, &g, &m, &v, 1, 0.1, 0.9, 0.99, 1e-5, 0.0, 1, 1);
    NEAR(m, 0.05, 1e-7);
    NEAR(v, 0.0025, 1e-7);
    NEAR(p, 1.0 - 0.1 * 0.5 / (0.5 + 1e-5), 1e-7);
    /* decoupled weight decay multiplies first; L2 adds wd*p to the gradient */
    for (int decouple = 0; decouple < 2; decouple++) {
        float fp = 2.0f, fg = -0.25f, fm = 0.01f, fv = 0.02f;
        double dp = 2.0, dm = 0.01, dv = 0.02;
        cf_adam_step(&fp, &fg, &fm, &fv, 1, 0.01, 0.8, 0.95, 1e-3, 0.3, 3, decouple);
        ref_adam(&dp, -0.25, &dm, &dv, 0.01, 0.8, 0.95, 1e-3, 0.3, 3, decouple);
        NEAR(fp, dp, 1e-6);
        NEAR(fm, dm, 1e-6);
        NEAR(fv, dv, 1e-6);
    }
}

static void test_adam_and_sgd_random_vs_naive(void) {
    for (int rep = 0; rep < 8; rep++) {
        int64_t N = 1 + rnd_int(200);
        int decouple = rep & 1, momentum = (rep >> 1) & 1;
        double wd = (rep >> 2) ? 0.05 : 0.0;
        float *p = frand(N, 1), *m = fzeros(N), *v = fzeros(N), *g = fzeros(N);
        float *sp = fcopy(p, N), *buf = fzeros(N);
        double *dp = dzeros(N), *dm = dzeros(N), *dv = dzeros(N), *dsp = dzeros(N), *dbuf = dzeros(N);
        for (int64_t n = 0; n < N; n++) dp[n] = dsp[n] = p[n];
        for (int64_t step = 1; step <= 30; step++) {
            double lr = 1e-3 * (1 + step % 3), mom = 0.85 + 0.01 * (double)(step % 5);
            for (int64_t n = 0; n < N; n++) g[n] = (float)(dp[n] * 0.5 + 0.1 * rnd_normal());
            cf_adam_step(p, g, m, v, N, lr, mom, 0.99, 1e-5, wd, step, decouple);
            cf_sgd_step(sp, g, momentum ? buf : NULL, N, lr, mom, wd, decouple);
            for (int64_t n = 0; n < N; n++) {
                ref_adam(&dp[n], g[n], &dm[n], &dv[n], lr, mom, 0.99, 1e-5, wd, step, decouple);
                ref_sgd(&dsp[n], g[n], momentum ? &dbuf[n] : NULL, lr, mom, wd, decouple);
            }
        }
        for (int64_t n = 0; n < N; n++) {
            NEAR(p[n], dp[n], 1e-5);
            NEAR(m[n], dm[n], 1e-5);
            NEAR(v[n], dv[n], 1e-5);
            NEAR(sp[n], dsp[n], 1e-5);
        }
        free(p), free(m), free(v), free(g), free(sp), free(buf);
        free(dp), free(dm), free(dv), free(dsp), free(dbuf);
    }
}

static void test_sgd_by_hand(void) {
    float p = 1.0f, g = 0.5f;
    cf_sgd_step(&p, &g, NULL, 1, 0.1, 0.0, 0.0, 1);
    NEAR(p, 0.95, 1e-7);
    float b = 1.0f;
    p = 1.0f;
    cf_sgd_step(&p, &g, &b, 1, 0.1, 0.9, 0.0, 1); /* buf = 0.9 + 0.5, no dampening */
    NEAR(b, 1.4, 1e-7);
    NEAR(p, 1.0 - 0.14, 1e-7);
    p = 2.0f;
    cf_sgd_step(&p, &g, NULL, 1, 0.1, 0.0, 0.5, 0); /* L2: g' = 0.5 + 0.5*2 */
    NEAR(p, 2.0 - 0.15, 1e-7);
    p = 2.0f;
    cf_sgd_step(&p, &g, NULL, 1, 0.1, 0.0, 0.5, 1); /* decoupled: p *= 0.95, then - 0.05 */
    NEAR(p, 1.9 - 0.05, 1e-7);
}

static void test_optimizer_step_weight_decay_ranges(void) {
    enum { N = 10 };
    const int64_t n_wds[3] = {0, 4, N};
    for (int kind = 0; kind < 2; kind++)
        for (int t = 0; t < 3; t++)
            for (int decouple = 0; decouple < 2; decouple++) {
                float p[N], g[N] = {0}, m[N] = {0}, v[N] = {0};
                for (int i = 0; i < N; i++) p[i] = (float)(i + 1);
                cf_optimizer opt = {kind, m, v, N, n_wds[t], 0.5, 0.99, 1e-5, decouple, 7};
                cf_optimizer_step(&opt, p, g, 0.1, 0.9);
                CHECK(opt.step == 8);
                for (int i = 0; i < N; i++) {
                    double dp = i + 1, dm = 0, dv = 0, db = 0;
                    double wd = i < n_wds[t] ? 0.5 : 0.0;
                    if (kind == CF_OPT_ADAM) ref_adam(&dp, 0.0, &dm, &dv, 0.1, 0.9, 0.99, 1e-5, wd, 8, decouple);
                    else ref_sgd(&dp, 0.0, &db, 0.1, 0.9, wd, decouple);
                    NEAR(p[i], dp, 1e-6);
                    if (i >= n_wds[t]) SAME(p[i], i + 1.0); /* no decay, zero gradient: still */
                }
            }
    /* plain SGD (no momentum buffer) over both ranges */
    float p[N], g[N];
    for (int i = 0; i < N; i++) p[i] = 1.0f, g[i] = 1.0f;
    cf_optimizer sgd = {CF_OPT_SGD, NULL, NULL, N, 3, 0.0, 0.0, 0.0, 1, 0};
    cf_optimizer_step(&sgd, p, g, 0.25, 0.9);
    for (int i = 0; i < N; i++) SAME(p[i], 0.75);
    CHECK(sgd.step == 1);
}

/* ---------------------------------------------------------------- schedule */

static void test_schedule(void) {
    SAME(cf_sched_cos(1.0, 3.0, 0.0), 1.0);
    NEAR(cf_sched_cos(1.0, 3.0, 1.0), 3.0, 1e-15);
    NEAR(cf_sched_cos(1.0, 3.0, 0.5), 2.0, 1e-15);
    const double s = 2e-4, mid = 5e-3, e = 5e-8, pct = 0.25;
    SAME(cf_onecycle_value(0.0, s, mid, e, pct), s);
    NEAR(cf_onecycle_value(pct, s, mid, e, pct), mid, 1e-15);
    NEAR(cf_onecycle_value(1.0, s, mid, e, pct), e, 1e-12);
    NEAR(cf_onecycle_value(pct / 2, s, mid, e, pct), (s + mid) / 2, 1e-12);
    NEAR(cf_onecycle_value(pct + (1 - pct) / 2, s, mid, e, pct), (mid + e) / 2, 1e-12);
    NEAR(cf_onecycle_value(0.0, s, mid, e, 0.0), mid, 1e-15); /* no warm-up */
    NEAR(cf_onecycle_value(1.0, s, mid, e, 1.0), mid, 1e-15); /* no annealing */
    double pos[50], out[50];
    for (int i = 0; i < 50; i++) pos[i] = i / 50.0;
    cf_onecycle_fill(out, pos, 50, s, mid, e, pct);
    int monotone_up = 1, monotone_down = 1;
    for (int i = 0; i < 50; i++) {
        SAME(out[i], cf_onecycle_value(pos[i], s, mid, e, pct));
        if (i > 0 && pos[i] <= pct) monotone_up &= out[i] >= out[i - 1];
        if (i > 0 && pos[i - 1] >= pct) monotone_down &= out[i] <= out[i - 1];
    }
    CHECK(monotone_up && monotone_down);
    cf_onecycle_fill(out, pos, 0, s, mid, e, pct); /* empty is fine */
}

/* ---------------------------------------------------------------- linear */

static void test_linear_random_vs_naive(void) {
    const int64_t Bs[7] = {1, 5, 15, 16, 31, 32, 70};
    for (int t = 0; t < 7; t++)
        for (int has_bias = 0; has_bias < 2; has_bias++) {
            int64_t B = Bs[t], DI = 1 + rnd_int(12), DO = 1 + rnd_int(7);
            float *xT = frand(DI * B, 1), *W = frand(DO * DI, 1), *bias = frand(DO, 1);
            float *outT = fzeros(DO * B), *doutT = frand(DO * B, 1);
            float *dxT = frand(DI * B, 1), *dW = frand(DO * DI, 1), *db = frand(DO, 1);
            float *dxT0 = fcopy(dxT, DI * B), *dW0 = fcopy(dW, DO * DI), *db0 = fcopy(db, DO);
            cf_linear_forward(outT, xT, W, has_bias ? bias : NULL, B, DI, DO);
            for (int64_t o = 0; o < DO; o++)
                for (int64_t b = 0; b < B; b++) {
                    double s = has_bias ? bias[o] : 0.0;
                    for (int64_t i = 0; i < DI; i++) s += (double)W[o * DI + i] * xT[i * B + b];
                    NEAR(outT[o * B + b], s, 1e-5);
                }
            cf_linear_backward(dxT, dW, has_bias ? db : NULL, doutT, xT, W, B, DI, DO);
            for (int64_t o = 0; o < DO; o++) {
                double sb = db0[o];
                for (int64_t b = 0; b < B; b++) sb += doutT[o * B + b];
                if (has_bias) NEAR(db[o], sb, 1e-5);
                else SAME(db[o], db0[o]);
                for (int64_t i = 0; i < DI; i++) {
                    double s = dW0[o * DI + i];
                    for (int64_t b = 0; b < B; b++) s += (double)doutT[o * B + b] * xT[i * B + b];
                    NEAR(dW[o * DI + i], s, 1e-5);
                }
            }
            for (int64_t i = 0; i < DI; i++)
                for (int64_t b = 0; b < B; b++) {
                    double s = dxT0[i * B + b];
                    for (int64_t o = 0; o < DO; o++) s += (double)W[o * DI + i] * doutT[o * B + b];
                    NEAR(dxT[i * B + b], s, 1e-5);
                }
            /* dxT may be NULL (the first layer needs no input gradient) */
            float *dW1 = fcopy(dW0, DO * DI);
            cf_linear_backward(NULL, dW1, NULL, doutT, xT, W, B, DI, DO);
            for (int64_t i = 0; i < DO * DI; i++) NEAR(dW1[i], dW[i], 1e-6);
            free(xT), free(W), free(bias), free(outT), free(doutT), free(dxT), free(dW), free(db);
            free(dxT0), free(dW0), free(db0), free(dW1);
        }
}

/* the same bits, any NaN matching any NaN (the compiler may swap the operands of an add,
 * which picks a NaN's payload) */
static int fsame_nan(const float *a, const float *b, int64_t n) {
    for (int64_t k = 0; k < n; k++)
        if (!(isnan(a[k]) && isnan(b[k])) && memcmp(a + k, b + k, sizeof(float)) != 0) return 0;
    return 1;
}

/* ReLU's backward, bit for bit, in every version this CPU runs, against the branch it is
 * written for (dx += dout where x > 0): lengths around each vector width, dx of -0 (which
 * adding +0 would turn into +0), NaN, inf and x of -0, +0 and NaN; in place (dx == dout) and
 * with dx overlapping dout by one element (the scalar order then matters) */
static void test_relu_backward_same_bits(void) {
    const unsigned sup = cf_isa_supported();
    const int best = cf_isa_get();
    const int64_t Ns[] = {0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 100};
    for (int l = 0; l < CF_ISA_COUNT; l++) {
        if (!(sup >> l & 1u)) continue;
        CHECK(cf_isa_set(l) == 0);
        for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++)
            for (int mode = 0; mode < 3; mode++) { /* apart, in place, overlapping by one */
                const int64_t N = Ns[ni];
                g_rs = 2000 + (uint64_t)(N * 3 + mode);
                float *buf = frand(N + 1, 1), *x = frand(N, 1);
                float *other = frand(N + 1, 1);
                for (int64_t n = 0; n < N; n++) {
                    if (n % 5 == 1) buf[n] = -0.0f;
                    if (n % 7 == 2) x[n] = -0.0f;
                    if (n % 7 == 3) x[n] = 0.0f;
                    if (n % 11 == 4) x[n] = NAN;
                    if (n % 13 == 5) buf[n] = INFINITY;
                    if (n % 17 == 6) other[n] = NAN;
                    if (n % 3 == 0) x[n] = fabsf(x[n]) + 0.5f; /* many positive inputs */
                }
                float *dx = buf, *dout = mode == 0 ? other : mode == 1 ? buf : buf + 1;
                float *ref = fcopy(buf, N + 1);
                const float *rdout = mode == 0 ? other : mode == 1 ? ref : ref + 1;
                for (int64_t n = 0; n < N; n++)
                    if (x[n] > 0.0f) ref[n] += rdout[n];
                cf_relu_backward(dx, dout, x, N);
                CHECK(fsame_nan(dx, ref, N + 1));
                free(buf), free(x), free(other), free(ref);
            }
    }
    CHECK(cf_isa_set(best) == 0);
}

/* a linear layer, bit for bit, in every version this CPU runs, against plain loops in the
 * documented order: the forward's and the input gradient's sums left to right over the
 * inputs / outputs (whatever blocks of rows a version runs), and the weight gradient's and
 * the bias's dW[o, i] + cf_dot_f32 (16 partial sums combined pairwise). Batches with and
 * without a partial block of 64, 32 and 16 rows, inputs around the versions' groups of 16
 * and 4 dots, -0, infinities and NaNs among the values. It failed when one level of the
 * combination of several dots at once paired the wrong lanes. */
static void test_linear_same_bits(void) {
    const unsigned sup = cf_isa_supported();
    const int best = cf_isa_get();
    const int64_t Bs[] = {1, 7, 16, 17, 31, 32, 48, 64, 70, 100, 128};
    const int64_t DIs[] = {1, 3, 4, 5, 15, 16, 17, 20, 33, 176};
    for (size_t bi = 0; bi < sizeof Bs / sizeof Bs[0]; bi++)
        for (size_t di = 0; di < sizeof DIs / sizeof DIs[0]; di++)
            for (int special = 0; special < 2; special++) {
                const int64_t B = Bs[bi], DI = DIs[di], DO = 1 + (int64_t)((bi + di) % 5);
                g_rs = 1000 + 10 * bi + di;
                float *xT = frand(DI * B, 1), *doutT = frand(DO * B, 1), *W = frand(DO * DI, 1);
                float *bias = frand(DO, 1), *dW0 = frand(DO * DI, 1), *db0 = frand(DO, 1);
                float *dx0 = frand(DI * B, 1);
                if (special) {
                    const float sp[4] = {-0.0f, INFINITY, -INFINITY, NAN};
                    for (int t = 0; t < 6; t++) {
                        xT[rnd_int(DI * B)] = sp[rnd_int(4)];
                        doutT[rnd_int(DO * B)] = sp[rnd_int(4)];
                        W[rnd_int(DO * DI)] = sp[rnd_int(4)];
                    }
                    dW0[rnd_int(DO * DI)] = sp[rnd_int(4)];
                }
                float *out = fzeros(DO * B), *dW = fcopy(dW0, DO * DI), *db = fcopy(db0, DO);
                float *dx = fcopy(dx0, DI * B);
                for (int64_t o = 0; o < DO; o++) {
                    for (int64_t b = 0; b < B; b++) {
                        float a = 0.0f;
                        for (int64_t i = 0; i < DI; i++) a += W[o * DI + i] * xT[i * B + b];
                        out[o * B + b] = a + bias[o];
                    }
                    for (int64_t i = 0; i < DI; i++) dW[o * DI + i] += cf_dot_f32(doutT + o * B, xT + i * B, B);
                    db[o] += cf_sum_f32(doutT + o * B, B);
                }
                for (int64_t i = 0; i < DI; i++)
                    for (int64_t b = 0; b < B; b++) {
                        float a = dx[i * B + b];
                        for (int64_t o = 0; o < DO; o++) a += W[o * DI + i] * doutT[o * B + b];
                        dx[i * B + b] = a;
                    }
                for (int l = 0; l < CF_ISA_COUNT; l++) {
                    if (!(sup >> l & 1u)) continue;
                    CHECK(cf_isa_set(l) == 0);
                    float *out_l = fzeros(DO * B), *dW_l = fcopy(dW0, DO * DI), *db_l = fcopy(db0, DO);
                    float *dx_l = fcopy(dx0, DI * B);
                    cf_linear_forward(out_l, xT, W, bias, B, DI, DO);
                    cf_linear_backward(dx_l, dW_l, db_l, doutT, xT, W, B, DI, DO);
                    CHECK(fsame_nan(out_l, out, DO * B));
                    CHECK(fsame_nan(dW_l, dW, DO * DI));
                    CHECK(fsame_nan(db_l, db, DO));
                    CHECK(fsame_nan(dx_l, dx, DI * B));
                    free(out_l), free(dW_l), free(db_l), free(dx_l);
                }
                free(xT), free(doutT), free(W), free(bias), free(dW0), free(db0), free(dx0);
                free(out), free(dW), free(db), free(dx);
            }
    CHECK(cf_isa_set(best) == 0);
}

/* ---------------------------------------------------------------- batchnorm */

/* BatchNorm forward (training statistics) in double; returns sum(dout * out) as a scalar
 * loss for finite differences when dout is given */
static double ref_bn_train(double *out, const double *x, const double *g, const double *bt,
                           int64_t B, int64_t N, double eps, const float *dout) {
    double loss = 0;
    for (int64_t n = 0; n < N; n++) {
        double mu = 0, var = 0;
        for (int64_t b = 0; b < B; b++) mu += x[n * B + b];
        mu /= (double)B;
        for (int64_t b = 0; b < B; b++) var += (x[n * B + b] - mu) * (x[n * B + b] - mu);
        var /= (double)B;
        for (int64_t b = 0; b < B; b++) {
            double o = (x[n * B + b] - mu) / sqrt(var + eps) * g[n] + bt[n];
            if (out) out[n * B + b] = o;
            if (dout) loss += dout[n * B + b] * o;
        }
    }
    return loss;
}

/* the batch statistics one feature at a time, in order over the batch (batchnorm.c before it
 * summed several features side by side): the reference for test_batchnorm_same_bits */
static void ref_bn_forward_train(float *outT, float *mean, float *invstd, const float *xT, const float *gamma,
                                 const float *beta, float *rm, float *rv, int64_t B, int64_t N, double momentum,
                                 double eps) {
    for (int64_t n = 0; n < N; n++) {
        const float *x = xT + n * B;
        double s = 0.0;
        for (int64_t b = 0; b < B; b++) s += x[b];
        double mu = s / (double)B, ss = 0.0;
        for (int64_t b = 0; b < B; b++) {
            double d = (double)x[b] - mu;
            ss += d * d;
        }
        double var = ss / (double)B;
        float is = (float)(1.0 / sqrt(var + eps)), m = (float)mu;
        for (int64_t b = 0; b < B; b++) outT[n * B + b] = (x[b] - m) * is * gamma[n] + beta[n];
        mean[n] = m;
        invstd[n] = is;
        double unbiased = B > 1 ? ss / (double)(B - 1) : var;
        rm[n] = (float)((1.0 - momentum) * rm[n] + momentum * mu);
        rv[n] = (float)((1.0 - momentum) * rv[n] + momentum * unbiased);
    }
}

static void ref_bn_backward(float *dxT, float *dgamma, float *dbeta, const float *doutT, const float *xT,
                            const float *mean, const float *invstd, const float *gamma, int64_t B, int64_t N) {
    for (int64_t n = 0; n < N; n++) {
        const float *d = doutT + n * B, *x = xT + n * B;
        float m = mean[n], is = invstd[n];
        double sd = 0.0, sdx = 0.0;
        for (int64_t b = 0; b < B; b++) {
            sd += d[b];
            sdx += (double)d[b] * (double)((x[b] - m) * is);
        }
        dgamma[n] += (float)sdx;
        dbeta[n] += (float)sd;
        float k = gamma[n] * is / (float)B, fsd = (float)sd, fsdx = (float)sdx, fB = (float)B;
        for (int64_t b = 0; b < B; b++) dxT[n * B + b] += k * (fB * d[b] - fsd - (x[b] - m) * is * fsdx);
    }
}

/* BatchNorm's training forward and backward, bit for bit, against one feature at a time: every
 * output, the cached statistics, the running ones, and the three gradients. Feature counts
 * around the groups of features summed side by side (1 to 9), batches of 1 to 64 rows. */
static void test_batchnorm_same_bits(void) {
    const int64_t Bs[] = {1, 2, 7, 64};
    for (size_t bi = 0; bi < sizeof Bs / sizeof Bs[0]; bi++)
        for (int64_t N = 1; N <= 9; N++) {
            const int64_t B = Bs[bi];
            g_rs = 300 + 10 * (uint64_t)bi + (uint64_t)N;
            float *xT = frand(N * B, 2), *g = frand(N, 1), *bt = frand(N, 1), *d = frand(N * B, 1);
            float *rm = frand(N, 1), *rv = frand(N, 1), *dx = frand(N * B, 1), *dg = frand(N, 1), *db = frand(N, 1);
            /* magnitudes from 2^-12 to 2^12, and each feature's first and last value +-2^30: the
             * double sums round, and differently in another order (reversing either sum's order
             * over the batch fails this test) */
            for (int64_t k = 0; k < N * B; k++) {
                xT[k] = ldexpf(xT[k], (int)rnd_int(25) - 12);
                d[k] = ldexpf(d[k], (int)rnd_int(25) - 12);
            }
            for (int64_t n = 0; B > 2 && n < N; n++) {
                xT[n * B] = d[n * B] = 0x1p30f;
                xT[n * B + B - 1] = d[n * B + B - 1] = -0x1p30f;
            }
            float *rm1 = fcopy(rm, N), *rv1 = fcopy(rv, N), *dx1 = fcopy(dx, N * B), *dg1 = fcopy(dg, N), *db1 = fcopy(db, N);
            float *out = fzeros(N * B), *out1 = fzeros(N * B), *mean = fzeros(N), *mean1 = fzeros(N);
            float *inv = fzeros(N), *inv1 = fzeros(N);
            cf_batchnorm_forward_train(out, mean, inv, xT, g, bt, rm, rv, B, N, 0.1, 1e-5);
            ref_bn_forward_train(out1, mean1, inv1, xT, g, bt, rm1, rv1, B, N, 0.1, 1e-5);
            CHECK(fsame(out, out1, N * B) && fsame(mean, mean1, N) && fsame(inv, inv1, N));
            CHECK(fsame(rm, rm1, N) && fsame(rv, rv1, N));
            cf_batchnorm_backward(dx, dg, db, d, xT, mean, inv, g, B, N);
            ref_bn_backward(dx1, dg1, db1, d, xT, mean1, inv1, g, B, N);
            CHECK(fsame(dx, dx1, N * B) && fsame(dg, dg1, N) && fsame(db, db1, N));
            free(xT), free(g), free(bt), free(d), free(rm), free(rv), free(dx), free(dg), free(db);
            free(rm1), free(rv1), free(dx1), free(dg1), free(db1), free(out), free(out1), free(mean), free(mean1);
            free(inv), free(inv1);
        }
}

static void test_batchnorm(void) {
    const int64_t shapes[4][2] = {{2, 1}, {5, 3}, {17, 4}, {64, 2}};
    for (int t = 0; t < 4; t++) {
        int64_t B = shapes[t][0], N = shapes[t][1];
        float *xT = frand(N * B, 2), *g = frand(N, 1), *bt = frand(N, 1);
        for (int64_t i = 0; i < N * B; i++) xT[i] += 1.0f;
        float *rm = frand(N, 1), *rv = fzeros(N), *outT = fzeros(N * B), *mean = fzeros(N), *inv = fzeros(N);
        for (int64_t n = 0; n < N; n++) rv[n] = 0.5f + (float)rnd_unif();
        float *rm0 = fcopy(rm, N), *rv0 = fcopy(rv, N);
        cf_batchnorm_forward_train(outT, mean, inv, xT, g, bt, rm, rv, B, N, 0.1, 1e-5);
        double *x64 = dzeros(N * B), *g64 = dzeros(N), *b64 = dzeros(N), *o64 = dzeros(N * B);
        for (int64_t i = 0; i < N * B; i++) x64[i] = xT[i];
        for (int64_t n = 0; n < N; n++) g64[n] = g[n], b64[n] = bt[n];
        ref_bn_train(o64, x64, g64, b64, B, N, 1e-5, NULL);
        for (int64_t i = 0; i < N * B; i++) NEAR(outT[i], o64[i], 1e-4);
        for (int64_t n = 0; n < N; n++) {
            double mu = 0, ss = 0;
            for (int64_t b = 0; b < B; b++) mu += xT[n * B + b];
            mu /= (double)B;
            for (int64_t b = 0; b < B; b++) ss += (xT[n * B + b] - mu) * (xT[n * B + b] - mu);
            NEAR(mean[n], mu, 1e-6);
            NEAR(inv[n], 1 / sqrt(ss / (double)B + 1e-5), 1e-6);
            NEAR(rm[n], 0.9 * rm0[n] + 0.1 * mu, 1e-6);
            NEAR(rv[n], 0.9 * rv0[n] + 0.1 * ss / (double)(B - 1), 1e-6); /* unbiased */
        }
        /* eval: running statistics */
        float *ev = fzeros(N * B);
        cf_batchnorm_forward_eval(ev, xT, g, bt, rm, rv, B, N, 1e-5);
        for (int64_t n = 0; n < N; n++)
            for (int64_t b = 0; b < B; b++)
                NEAR(ev[n * B + b], ((double)xT[n * B + b] - rm[n]) / sqrt((double)rv[n] + 1e-5) * g[n] + bt[n], 1e-5);
        /* backward vs central finite differences of sum(dout * out) in double */
        float *d = frand(N * B, 1), *dx = frand(N * B, 1), *dg = frand(N, 1), *db = frand(N, 1);
        float *dx0 = fcopy(dx, N * B), *dg0 = fcopy(dg, N), *db0 = fcopy(db, N);
        cf_batchnorm_backward(dx, dg, db, d, xT, mean, inv, g, B, N);
        const double h = 1e-5;
        double scale = 1.0;
        for (int64_t i = 0; i < N * B; i++) {
            double keep = x64[i];
            x64[i] = keep + h;
            double lp = ref_bn_train(NULL, x64, g64, b64, B, N, 1e-5, d);
            x64[i] = keep - h;
            double lm = ref_bn_train(NULL, x64, g64, b64, B, N, 1e-5, d);
            x64[i] = keep;
            NEAR(dx[i] - dx0[i], (lp - lm) / (2 * h), 2e-3 * scale);
        }
        for (int64_t n = 0; n < N; n++) {
            double keep = g64[n];
            g64[n] = keep + h;
            double lp = ref_bn_train(NULL, x64, g64, b64, B, N, 1e-5, d);
            g64[n] = keep - h;
            double lm = ref_bn_train(NULL, x64, g64, b64, B, N, 1e-5, d);
            g64[n] = keep;
            NEAR(dg[n] - dg0[n], (lp - lm) / (2 * h), 2e-3);
            double sd = 0;
            for (int64_t b = 0; b < B; b++) sd += d[n * B + b];
            NEAR(db[n] - db0[n], sd, 1e-4);
        }
        free(xT), free(g), free(bt), free(rm), free(rv), free(outT), free(mean), free(inv);
        free(rm0), free(rv0), free(x64), free(g64), free(b64), free(o64), free(ev);
        free(d), free(dx), free(dg), free(db), free(dx0), free(dg0), free(db0);
    }
}

/* ---------------------------------------------------------------- the dot-product epoch driver */

typedef struct {
    cf_dot_config cfg;
    int64_t P, R;
    float *params;
    int32_t *x;
    float *y;
} dot_problem;

static dot_problem dot_make(int64_t nu, int64_t ni, int64_t k, int bias, int range, int64_t R) {
    dot_problem d;
    memset(&d, 0, sizeof d);
    d.cfg.n_users = nu;
    d.cfg.n_items = ni;
    d.cfg.k = k;
    d.cfg.has_bias = bias;
    d.cfg.has_range = range;
    d.cfg.lo = 0.0f;
    d.cfg.hi = 5.5f;
    d.P = cf_dot_n_params(&d.cfg);
    d.R = R;
    d.params = frand(d.P, 0.3);
    d.x = izeros(2 * R);
    d.y = fzeros(R);
    for (int64_t r = 0; r < R; r++) {
        d.x[2 * r] = (int32_t)rnd_int(nu);
        d.x[2 * r + 1] = (int32_t)rnd_int(ni);
        d.y[r] = (float)(1 + rnd_int(5));
    }
    return d;
}

static void dot_free(dot_problem *d) { free(d->params), free(d->x), free(d->y); }

/* the model's prediction for row r and dpred/dz, in double */
static double ref_dot_z(const double *p, const cf_dot_config *c, int64_t u, int64_t i) {
    const double *uw = p, *iw = p + c->n_users * c->k;
    double z = 0;
    for (int64_t k = 0; k < c->k; k++) z += uw[u * c->k + k] * iw[i * c->k + k];
    if (c->has_bias) z += iw[c->n_items * c->k + u] + iw[c->n_items * c->k + c->n_users + i];
    return z;
}

/* a naive, dense epoch in double with fastai's Adam (or SGD when adam == 0, momentum buffer) */
static void ref_dot_epoch(double *p, double *m, double *v, const dot_problem *d, const int64_t *order,
                          int64_t n_order, int64_t bs, int64_t J, const double *lrs, const double *moms,
                          int adam, double wd, int64_t n_wd, int64_t *step, double *losses) {
    const cf_dot_config *c = &d->cfg;
    int64_t P = d->P, K = c->k;
    double *g = dzeros(P);
    for (int64_t j = 0; j < J; j++) {
        int64_t B = n_order - j * bs < bs ? n_order - j * bs : bs;
        memset(g, 0, sizeof(double) * (size_t)P);
        double loss = 0;
        for (int64_t b = 0; b < B; b++) {
            int64_t r = order[j * bs + b], u = d->x[2 * r], i = d->x[2 * r + 1];
            double z = ref_dot_z(p, c, u, i), s = sigm(z);
            double pred = c->has_range ? s * (c->hi - c->lo) + c->lo : z;
            double diff = pred - d->y[r];
            loss += diff * diff;
            double dz = 2 * diff / (double)B;
            if (c->has_range) dz *= (c->hi - c->lo) * s * (1 - s);
            for (int64_t k = 0; k < K; k++) {
                g[u * K + k] += dz * p[c->n_users * K + i * K + k];
                g[c->n_users * K + i * K + k] += dz * p[u * K + k];
            }
            if (c->has_bias) {
                g[(c->n_users + c->n_items) * K + u] += dz;
                g[(c->n_users + c->n_items) * K + c->n_users + i] += dz;
            }
        }
        losses[j] = loss / (double)B;
        ++*step;
        for (int64_t n = 0; n < P; n++) {
            double w = n < n_wd ? wd : 0.0;
            if (adam) ref_adam(&p[n], g[n], &m[n], &v[n], lrs[j], moms[j], 0.99, 1e-5, w, *step, 1);
            else ref_sgd(&p[n], g[n], &m[n], lrs[j], moms[j], w, 1);
        }
    }
    free(g);
}

static int64_t *perm(int64_t n) {
    int64_t *o = xcalloc((size_t)n, sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) o[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = rnd_int(i + 1), t = o[i];
        o[i] = o[j];
        o[j] = t;
    }
    return o;
}

typedef struct {
    float *grads, *m, *v;
    double *losses, *lrs, *moms;
    cf_optimizer opt;
} dot_run;

static dot_run dot_run_make(const dot_problem *d, int64_t J, int kind, double wd, int64_t n_wd) {
    dot_run r;
    r.grads = fzeros(d->P);
    r.m = fzeros(d->P);
    r.v = fzeros(d->P);
    r.losses = dzeros(J);
    r.lrs = dzeros(J);
    r.moms = dzeros(J);
    for (int64_t j = 0; j < J; j++) {
        r.lrs[j] = 1e-2 * (1.0 + 0.5 * (double)(j % 3));
        r.moms[j] = 0.9 - 0.01 * (double)(j % 4);
    }
    cf_optimizer o = {kind, r.m, kind == CF_OPT_ADAM ? r.v : NULL, d->P, n_wd, wd, 0.99, 1e-5, 1, 0};
    r.opt = o;
    return r;
}

static void dot_run_free(dot_run *r) {
    free(r->grads), free(r->m), free(r->v), free(r->losses), free(r->lrs), free(r->moms);
}

static int dot_fit(dot_problem *d, dot_run *r, const int64_t *order, int64_t n_order, int64_t bs,
                   int64_t J, int64_t *bad) {
    return cf_dot_fit_epoch(d->params, r->grads, &r->opt, r->losses, bad, d->x, d->y, order, n_order,
                            d->R, bs, J, r->lrs, r->moms, &d->cfg);
}

static void test_dot_fit_epoch_vs_naive(void) {
    for (int rep = 0; rep < 8; rep++) {
        int bias = rep & 1, range = (rep >> 1) & 1, kind = (rep >> 2) ? CF_OPT_SGD : CF_OPT_ADAM;
        dot_problem d = dot_make(7, 5, 3, bias, range, 37);
        int64_t bs = 8, J = (d.R + bs - 1) / bs, n_wd = d.P / 2;
        int64_t *order = perm(d.R);
        dot_run r = dot_run_make(&d, J, kind, 0.1, n_wd);
        double *p = dzeros(d.P), *m = dzeros(d.P), *v = dzeros(d.P), *losses = dzeros(J);
        for (int64_t n = 0; n < d.P; n++) p[n] = d.params[n];
        int64_t bad = 123, step = 0;
        CHECK(dot_fit(&d, &r, order, d.R, bs, J, &bad) == CF_OK);
        CHECK(bad == -1);
        CHECK(r.opt.step == J);
        ref_dot_epoch(p, m, v, &d, order, d.R, bs, J, r.lrs, r.moms, kind == CF_OPT_ADAM, 0.1, n_wd,
                      &step, losses);
        for (int64_t j = 0; j < J; j++) NEAR(r.losses[j], losses[j], 1e-4);
        for (int64_t n = 0; n < d.P; n++) NEAR(d.params[n], p[n], 1e-4);
        for (int64_t n = 0; n < d.P; n++) CHECK(r.grads[n] == 0.0f); /* scratch zero again */
        free(order), free(p), free(m), free(v), free(losses);
        dot_run_free(&r);
        dot_free(&d);
    }
}

static void test_dot_fit_epoch_nan_guard(void) {
    for (int kind = 0; kind < 2; kind++) {
        dot_problem d = dot_make(6, 4, 2, 1, 1, 30);
        int64_t bs = 7, J = 5, *order = perm(d.R);
        d.y[order[2 * bs + 3]] = NAN; /* batch 2 */
        float *p0 = fcopy(d.params, d.P);
        /* the reference: the same epoch stopped after two batches */
        dot_run ref = dot_run_make(&d, J, kind, 0.01, d.P);
        int64_t bad = 0;
        CHECK(dot_fit(&d, &ref, order, d.R, bs, 2, &bad) == CF_OK && bad == -1);
        float *p2 = fcopy(d.params, d.P), *m2 = fcopy(ref.m, d.P);
        memcpy(d.params, p0, sizeof(float) * (size_t)d.P);
        dot_run r = dot_run_make(&d, J, kind, 0.01, d.P);
        CHECK(dot_fit(&d, &r, order, d.R, bs, J, &bad) == CF_ERR_NONFINITE);
        CHECK(bad == 2);
        CHECK(isnan(r.losses[2]));
        CHECK(r.opt.step == 2);
        CHECK(fsame(d.params, p2, d.P)); /* left as after batch 1: bit for bit */
        CHECK(fsame(r.m, m2, d.P));
        for (int64_t n = 0; n < d.P; n++) CHECK(r.grads[n] == 0.0f);
        /* an infinite rating in the very first batch: nothing moves at all */
        memcpy(d.params, p0, sizeof(float) * (size_t)d.P);
        d.y[order[0]] = INFINITY;
        dot_run r0 = dot_run_make(&d, J, kind, 0.01, d.P);
        CHECK(dot_fit(&d, &r0, order, d.R, bs, J, &bad) == CF_ERR_NONFINITE && bad == 0);
        CHECK(fsame(d.params, p0, d.P) && r0.opt.step == 0);
        free(order), free(p0), free(p2), free(m2);
        dot_run_free(&ref), dot_run_free(&r), dot_run_free(&r0);
        dot_free(&d);
    }
}

static void test_dot_fit_epoch_index_and_argument_errors(void) {
    dot_problem d = dot_make(6, 4, 2, 1, 0, 20);
    int64_t bs = 5, J = 4, *order = perm(d.R), bad = 0;
    float *p0 = fcopy(d.params, d.P);
    dot_run r = dot_run_make(&d, J, CF_OPT_ADAM, 0.01, d.P);
    /* an order entry outside [0, n_rows) at position 13 */
    const int64_t bad_rows[3] = {-1, 20, INT64_MAX};
    for (int t = 0; t < 3; t++) {
        int64_t keep = order[13];
        order[13] = bad_rows[t];
        CHECK(dot_fit(&d, &r, order, d.R, bs, J, &bad) == CF_ERR_INDEX);
        CHECK(bad == 13);
        order[13] = keep;
    }
    /* a user id and an item id out of range in the row at order position 9 */
    int64_t row = order[9];
    const int32_t bad_ids[4] = {6, -1, INT32_MAX, INT32_MIN};
    for (int col = 0; col < 2; col++)
        for (int t = 0; t < 4; t++) {
            int32_t keep = d.x[2 * row + col];
            d.x[2 * row + col] = col == 1 && t == 0 ? 4 : bad_ids[t];
            CHECK(dot_fit(&d, &r, order, d.R, bs, J, &bad) == CF_ERR_INDEX);
            CHECK(bad == 9);
            d.x[2 * row + col] = keep;
        }
    CHECK(fsame(d.params, p0, d.P) && r.opt.step == 0); /* checked before any step */
    /* layouts that do not fit */
    CHECK(dot_fit(&d, &r, order, d.R, 0, J, &bad) == CF_ERR_ARG);
    CHECK(dot_fit(&d, &r, order, d.R, -3, J, &bad) == CF_ERR_ARG);
    CHECK(dot_fit(&d, &r, order, d.R, bs, 5, &bad) == CF_ERR_ARG); /* 5 batches of 5 > 20 rows */
    CHECK(dot_fit(&d, &r, order, d.R, bs, -1, &bad) == CF_ERR_ARG);
    CHECK(dot_fit(&d, &r, order, 0, bs, 1, &bad) == CF_ERR_ARG);
    r.opt.n = d.P - 1;
    CHECK(dot_fit(&d, &r, order, d.R, bs, J, &bad) == CF_ERR_ARG);
    r.opt.n = d.P;
    CHECK(fsame(d.params, p0, d.P));
    /* zero batches: a no-op */
    CHECK(dot_fit(&d, &r, order, d.R, bs, 0, &bad) == CF_OK && bad == -1);
    CHECK(fsame(d.params, p0, d.P));
    /* a huge batch size: one batch of every row, no huge allocation */
    dot_run big = dot_run_make(&d, 1, CF_OPT_ADAM, 0.01, d.P);
    CHECK(dot_fit(&d, &big, order, d.R, (int64_t)1 << 62, 1, &bad) == CF_OK && bad == -1);
    float *p_big = fcopy(d.params, d.P);
    memcpy(d.params, p0, sizeof(float) * (size_t)d.P);
    dot_run exact = dot_run_make(&d, 1, CF_OPT_ADAM, 0.01, d.P);
    CHECK(dot_fit(&d, &exact, order, d.R, d.R, 1, &bad) == CF_OK);
    CHECK(fsame(d.params, p_big, d.P));
    free(order), free(p0), free(p_big);
    dot_run_free(&r), dot_run_free(&big), dot_run_free(&exact);
    dot_free(&d);
}

static void test_dot_predict(void) {
    for (int rep = 0; rep < 4; rep++) {
        dot_problem d = dot_make(9, 11, 4, rep & 1, rep >> 1, 1500); /* > one 1024-row chunk */
        float *out = fzeros(d.R);
        CHECK(cf_dot_predict(out, d.params, d.x, d.R, &d.cfg, 1) == CF_OK);
        double *p = dzeros(d.P);
        for (int64_t n = 0; n < d.P; n++) p[n] = d.params[n];
        for (int64_t r = 0; r < d.R; r++) {
            double z = ref_dot_z(p, &d.cfg, d.x[2 * r], d.x[2 * r + 1]);
            NEAR(out[r], d.cfg.has_range ? sigm(z) * 5.5 : z, 1e-5);
        }
        d.x[2 * 1400 + 1] = 11;
        CHECK(cf_dot_predict(out, d.params, d.x, d.R, &d.cfg, 1) == CF_ERR_INDEX);
        CHECK(cf_dot_predict(out, d.params, d.x, 0, &d.cfg, 2) == CF_OK);
        free(out), free(p);
        dot_free(&d);
    }
    /* on threads (one for every 8192 rows at most): the same bits for any count, and a bad id
     * anywhere is reported */
    for (int rep = 0; rep < 2; rep++) {
        dot_problem d = dot_make(300, 200, 50, rep, rep, 70000);
        float *one = fzeros(d.R), *out = fzeros(d.R);
        CHECK(cf_dot_predict(one, d.params, d.x, d.R, &d.cfg, 1) == CF_OK);
        for (int t = 2; t <= 5; t++) {
            memset(out, 0, sizeof(float) * (size_t)d.R);
            CHECK(cf_dot_predict(out, d.params, d.x, d.R, &d.cfg, t) == CF_OK);
            CHECK(fsame(out, one, d.R));
        }
        const int64_t at[3] = {0, 40000, d.R - 1};
        for (int a = 0; a < 3; a++) {
            const int32_t keep = d.x[2 * at[a]];
            d.x[2 * at[a]] = a == 1 ? -1 : 300;
            CHECK(cf_dot_predict(out, d.params, d.x, d.R, &d.cfg, 4) == CF_ERR_INDEX);
            d.x[2 * at[a]] = keep;
        }
        free(one), free(out);
        dot_free(&d);
    }
}

/* ---------------------------------------------------------------- the neural model driver */

/* emb 5x3 | emb 4x2 -> Linear(5,4)+bias -> ReLU -> BatchNorm(4) -> Dropout(p) -> Linear(4,1)+bias
 * -> sigmoid_range(0, 5.5). params: emb0 @0 (15), emb1 @15 (8), W1 @23 (20), b1 @43 (4),
 * gamma @47 (4), beta @51 (4), W2 @55 (4), b2 @59 (1) = 60; stats: mean @0, var @4 = 8. */
enum { NN_P = 60, NN_S = 8, NN_OPS = 5 };
typedef struct {
    int64_t rows[2], dims[2], offs[2];
    cf_nn_op ops[NN_OPS];
    cf_nn_config c;
} nn_model;

static void nn_make(nn_model *m, double p_drop) {
    memset(m, 0, sizeof *m);
    m->rows[0] = 5, m->rows[1] = 4;
    m->dims[0] = 3, m->dims[1] = 2;
    m->offs[0] = 0, m->offs[1] = 15;
    cf_nn_op ops[NN_OPS] = {
        {CF_NN_LINEAR, 5, 4, 23, 43, -1, 0.0},   {CF_NN_RELU, 4, 4, -1, -1, -1, 0.0},
        {CF_NN_BATCHNORM, 4, 4, 47, 51, 0, 0.0}, {CF_NN_DROPOUT, 4, 4, -1, -1, -1, p_drop},
        {CF_NN_LINEAR, 4, 1, 55, 59, -1, 0.0}};
    memcpy(m->ops, ops, sizeof ops);
    m->c.n_emb = 2;
    m->c.emb_rows = m->rows;
    m->c.emb_dim = m->dims;
    m->c.emb_off = m->offs;
    m->c.n_ops = NN_OPS;
    m->c.ops = m->ops;
    m->c.has_range = 1;
    m->c.lo = 0.0f;
    m->c.hi = 5.5f;
    m->c.bn_momentum = 0.1;
    m->c.bn_eps = 1e-5;
    m->c.n_params = NN_P;
    m->c.n_stats = NN_S;
}

static void nn_init(float *params, float *stats) {
    for (int i = 0; i < NN_P; i++) params[i] = (float)(rnd_normal() * 0.5);
    for (int i = 47; i < 51; i++) params[i] = 1.0f + (float)(rnd_normal() * 0.1);
    for (int i = 0; i < 4; i++) stats[i] = (float)(rnd_normal() * 0.1), stats[4 + i] = 1.0f + (float)rnd_unif();
}

/* the model in double over B rows (ids [B,2] as (user, item) pairs at rows[]); training mode
 * uses batch statistics and mask (feature-major [4,B], may be NULL for none); returns the MSE
 * against y, writes predictions to pred when given */
static double ref_nn(const double *p, const float *stats, const int32_t *x, const int64_t *rows,
                     const float *y, int64_t B, int training, const float *mask, double *pred) {
    double loss = 0;
    double *h = dzeros(4 * B);
    for (int64_t o = 0; o < 4; o++)
        for (int64_t b = 0; b < B; b++) {
            int64_t r = rows ? rows[b] : b, u = x[2 * r], i = x[2 * r + 1];
            double in[5] = {p[u * 3], p[u * 3 + 1], p[u * 3 + 2], p[15 + i * 2], p[15 + i * 2 + 1]};
            double s = p[43 + o];
            for (int k = 0; k < 5; k++) s += p[23 + o * 5 + k] * in[k];
            h[o * B + b] = s > 0 ? s : 0; /* ReLU */
        }
    for (int64_t n = 0; n < 4; n++) {
        double mu, var;
        if (training) {
            mu = 0, var = 0;
            for (int64_t b = 0; b < B; b++) mu += h[n * B + b];
            mu /= (double)B;
            for (int64_t b = 0; b < B; b++) var += (h[n * B + b] - mu) * (h[n * B + b] - mu);
            var /= (double)B;
        } else {
            mu = stats[n], var = stats[4 + n];
        }
        for (int64_t b = 0; b < B; b++) {
            double v = (h[n * B + b] - mu) / sqrt(var + 1e-5) * p[47 + n] + p[51 + n];
            if (training && mask) v *= mask[n * B + b];
            h[n * B + b] = v;
        }
    }
    for (int64_t b = 0; b < B; b++) {
        double z = p[59];
        for (int64_t n = 0; n < 4; n++) z += p[55 + n] * h[n * B + b];
        double pr = sigm(z) * 5.5;
        if (pred) pred[b] = pr;
        if (y) {
            int64_t r = rows ? rows[b] : b;
            loss += (pr - y[r]) * (pr - y[r]);
        }
    }
    free(h);
    return loss / (double)B;
}

static void test_nn_validate_rejections(void) {
    nn_model m;
    nn_make(&m, 0.25);
    CHECK(cf_nn_validate(&m.c) == CF_OK);
#define REJECT(mutation)                              \
    do {                                              \
        nn_make(&m, 0.25);                            \
        mutation;                                     \
        CHECK(cf_nn_validate(&m.c) == CF_ERR_ARG);    \
    } while (0)
    REJECT(m.c.n_emb = 0);
    REJECT(m.c.n_ops = 0);
    REJECT(m.rows[1] = 0);
    REJECT(m.dims[0] = 0);
    REJECT(m.dims[0] = -3);
    REJECT(m.offs[1] = 53);                /* table 1 runs past params */
    REJECT(m.offs[0] = -1);
    REJECT(m.c.n_params = 59);             /* the last bias falls outside */
    REJECT(m.ops[0].n_in = 6);             /* widths do not chain */
    REJECT(m.ops[1].n_out = 3);            /* ReLU changes width */
    REJECT(m.ops[4].n_out = 2);            /* does not end at 1 */
    REJECT(m.ops[0].n_out = 0);
    REJECT(m.ops[0].w = NN_P - 19);        /* Linear weight past the end */
    REJECT(m.ops[0].w = INT64_MAX);
    REJECT(m.ops[0].b = -2);
    REJECT(m.ops[0].b = NN_P);
    REJECT(m.ops[2].stat = 1);             /* stats [1, 9) > 8 */
    REJECT(m.ops[2].stat = -1);
    REJECT(m.ops[2].w = -1);
    REJECT(m.c.n_stats = 7);
    REJECT(m.ops[3].p = 1.0);
    REJECT(m.ops[3].p = -0.1);
    REJECT(m.ops[3].p = NAN);
    REJECT(m.ops[1].kind = 4);
    REJECT(m.ops[1].kind = -1);
    /* an overflowing table size must not wrap into range: rows * 3 = 2**64 + 2 wraps to 2 */
    REJECT(m.rows[0] = (int64_t)6148914691236517206LL);
#undef REJECT
    nn_make(&m, 0.25);
    m.ops[4].b = -1; /* no final bias is allowed */
    CHECK(cf_nn_validate(&m.c) == CF_OK);
}

static void test_nn_predict_vs_naive(void) {
    nn_model m;
    nn_make(&m, 0.3);
    float params[NN_P], stats[NN_S];
    nn_init(params, stats);
    double p64[NN_P];
    for (int i = 0; i < NN_P; i++) p64[i] = params[i];
    int64_t N = 300; /* > one 256-row chunk */
    int32_t *x = izeros(2 * N);
    for (int64_t r = 0; r < N; r++) x[2 * r] = (int32_t)rnd_int(5), x[2 * r + 1] = (int32_t)rnd_int(4);
    float *out = fzeros(N);
    double *want = dzeros(N);
    CHECK(cf_nn_predict(out, params, stats, x, N, &m.c) == CF_OK);
    ref_nn(p64, stats, x, NULL, NULL, N, 0, NULL, want);
    for (int64_t r = 0; r < N; r++) NEAR(out[r], want[r], 1e-5);
    x[2 * 299 + 1] = 4;
    CHECK(cf_nn_predict(out, params, stats, x, N, &m.c) == CF_ERR_INDEX);
    x[2 * 299 + 1] = -1;
    CHECK(cf_nn_predict(out, params, stats, x, N, &m.c) == CF_ERR_INDEX);
    x[2 * 299 + 1] = 0;
    m.ops[0].n_in = 4;
    CHECK(cf_nn_predict(out, params, stats, x, N, &m.c) == CF_ERR_ARG);
    nn_make(&m, 0.3);
    CHECK(cf_nn_predict(out, params, stats, x, 0, &m.c) == CF_OK);
    free(x), free(out), free(want);
}

typedef struct {
    float params[NN_P], grads[NN_P], stats[NN_S], m[NN_P], v[NN_P];
    double losses[16], lrs[16], moms[16];
    cf_optimizer opt;
} nn_state;

static void nn_state_init(nn_state *s, const float *params, const float *stats, int kind, double lr) {
    memset(s, 0, sizeof *s);
    memcpy(s->params, params, sizeof s->params);
    memcpy(s->stats, stats, sizeof s->stats);
    for (int j = 0; j < 16; j++) s->lrs[j] = lr, s->moms[j] = kind == CF_OPT_ADAM ? 0.9 : 0.0;
    cf_optimizer o = {kind, kind == CF_OPT_ADAM ? s->m : NULL, kind == CF_OPT_ADAM ? s->v : NULL,
                      NN_P, 23 + 20 + 4, 0.0, 0.99, 1e-5, 1, 0};
    s->opt = o;
}

static int nn_fit(nn_state *s, const nn_model *m, const int32_t *x, const float *y, const int64_t *order,
                  int64_t n_order, int64_t n_rows, int64_t bs, int64_t J, uint64_t seed, int64_t *bad) {
    return cf_nn_fit_epoch(s->params, s->grads, s->stats, &s->opt, s->losses, bad, x, y, order,
                           n_order, n_rows, bs, J, s->lrs, s->moms, seed, &m->c);
}

static void test_nn_fit_epoch_gradient_and_statistics(void) {
    nn_model m;
    nn_make(&m, 0.25);
    float params[NN_P], stats[NN_S];
    nn_init(params, stats);
    enum { R = 12, BS = 6 };
    int32_t x[2 * R];
    float y[R];
    for (int r = 0; r < R; r++) {
        x[2 * r] = (int32_t)rnd_int(5), x[2 * r + 1] = (int32_t)rnd_int(4);
        y[r] = (float)(1 + rnd_int(5));
    }
    int64_t *order = perm(R), bad = 7;
    const uint64_t seed = 99;
    /* plain SGD with lr = 1 and no decay: params - params' is the gradient of batch 0 */
    nn_state s;
    nn_state_init(&s, params, stats, CF_OPT_SGD, 1.0);
    CHECK(nn_fit(&s, &m, x, y, order, R, R, BS, 1, seed, &bad) == CF_OK && bad == -1);
    /* the dropout mask of batch 0, drawn exactly as the driver draws it */
    float mask[4 * BS];
    cf_rng rng;
    cf_rng_seed(&rng, seed);
    cf_dropout_mask(mask, 4 * BS, 0.25, &rng);
    double p64[NN_P];
    for (int i = 0; i < NN_P; i++) p64[i] = params[i];
    double loss = ref_nn(p64, stats, x, order, y, BS, 1, mask, NULL);
    NEAR(s.losses[0], loss, 1e-5);
    double gmax = 0, fd[NN_P];
    for (int i = 0; i < NN_P; i++) {
        const double h = 1e-6;
        double keep = p64[i];
        p64[i] = keep + h;
        double lp = ref_nn(p64, stats, x, order, y, BS, 1, mask, NULL);
        p64[i] = keep - h;
        double lm = ref_nn(p64, stats, x, order, y, BS, 1, mask, NULL);
        p64[i] = keep;
        fd[i] = (lp - lm) / (2 * h);
        gmax = fmax(gmax, fabs(fd[i]));
    }
    CHECK(gmax > 1e-3); /* the check is not vacuous */
    for (int i = 0; i < NN_P; i++) {
        double g = (double)params[i] - (double)s.params[i];
        if (!(fabs(g - fd[i]) <= 1e-4 * (1 + gmax))) {
            fprintf(stderr, "  param %d: driver gradient %.8g, finite differences %.8g\n", i, g, fd[i]);
            CHECK(!"nn gradient matches finite differences");
        }
    }
    /* running statistics: (1 - momentum) r + momentum * batch statistic (unbiased variance) */
    for (int n = 0; n < 4; n++) {
        double vals[BS], mu = 0, ss = 0;
        for (int b = 0; b < BS; b++) {
            int64_t r = order[b], u = x[2 * r], it = x[2 * r + 1];
            double in[5] = {params[u * 3], params[u * 3 + 1], params[u * 3 + 2], params[15 + it * 2],
                            params[15 + it * 2 + 1]};
            double a = params[43 + n];
            for (int k = 0; k < 5; k++) a += (double)params[23 + n * 5 + k] * in[k];
            vals[b] = a > 0 ? a : 0;
            mu += vals[b];
        }
        mu /= BS;
        for (int b = 0; b < BS; b++) ss += (vals[b] - mu) * (vals[b] - mu);
        NEAR(s.stats[n], 0.9 * stats[n] + 0.1 * mu, 1e-5);
        NEAR(s.stats[4 + n], 0.9 * stats[4 + n] + 0.1 * ss / (BS - 1), 1e-5);
    }
    for (int i = 0; i < NN_P; i++) CHECK(s.grads[i] == 0.0f);
    /* a whole epoch with Adam is deterministic for a seed, and the seed matters */
    nn_state a, b, c;
    nn_state_init(&a, params, stats, CF_OPT_ADAM, 1e-2);
    nn_state_init(&b, params, stats, CF_OPT_ADAM, 1e-2);
    nn_state_init(&c, params, stats, CF_OPT_ADAM, 1e-2);
    CHECK(nn_fit(&a, &m, x, y, order, R, R, 5, 3, 5, &bad) == CF_OK); /* batches 5, 5, 2 */
    CHECK(nn_fit(&b, &m, x, y, order, R, R, 5, 3, 5, &bad) == CF_OK);
    CHECK(nn_fit(&c, &m, x, y, order, R, R, 5, 3, 6, &bad) == CF_OK);
    CHECK(a.opt.step == 3);
    CHECK(fsame(a.params, b.params, NN_P) && fsame(a.stats, b.stats, NN_S));
    CHECK(!fsame(a.params, c.params, NN_P));
    for (int j = 0; j < 3; j++) CHECK(isfinite(a.losses[j]));
    free(order);
}

static void test_nn_fit_epoch_nan_guard_and_errors(void) {
    nn_model m;
    nn_make(&m, 0.0);
    float params[NN_P], stats[NN_S];
    nn_init(params, stats);
    enum { R = 20 };
    int32_t x[2 * R];
    float y[R];
    for (int r = 0; r < R; r++) {
        x[2 * r] = (int32_t)rnd_int(5), x[2 * r + 1] = (int32_t)rnd_int(4);
        y[r] = (float)(1 + rnd_int(5));
    }
    int64_t *order = perm(R), bad = 0;
    nn_state ref, s;
    nn_state_init(&ref, params, stats, CF_OPT_ADAM, 1e-2);
    CHECK(nn_fit(&ref, &m, x, y, order, R, R, 4, 2, 1, &bad) == CF_OK);
    y[order[2 * 4 + 1]] = NAN; /* batch 2 */
    nn_state_init(&s, params, stats, CF_OPT_ADAM, 1e-2);
    CHECK(nn_fit(&s, &m, x, y, order, R, R, 4, 5, 1, &bad) == CF_ERR_NONFINITE);
    CHECK(bad == 2 && s.opt.step == 2 && isnan(s.losses[2]));
    CHECK(fsame(s.params, ref.params, NN_P) && fsame(s.m, ref.m, NN_P));
    for (int i = 0; i < NN_P; i++) CHECK(s.grads[i] == 0.0f);
    y[order[2 * 4 + 1]] = 3.0f;
    /* index errors, checked before any step */
    nn_state_init(&s, params, stats, CF_OPT_ADAM, 1e-2);
    int64_t keep = order[6];
    order[6] = R;
    CHECK(nn_fit(&s, &m, x, y, order, R, R, 4, 5, 1, &bad) == CF_ERR_INDEX && bad == 6);
    order[6] = -1;
    CHECK(nn_fit(&s, &m, x, y, order, R, R, 4, 5, 1, &bad) == CF_ERR_INDEX && bad == 6);
    order[6] = keep;
    int32_t keep_id = x[2 * order[11] + 1];
    x[2 * order[11] + 1] = 4;
    CHECK(nn_fit(&s, &m, x, y, order, R, R, 4, 5, 1, &bad) == CF_ERR_INDEX && bad == 11);
    x[2 * order[11] + 1] = keep_id;
    keep_id = x[2 * order[0]];
    x[2 * order[0]] = -5;
    CHECK(nn_fit(&s, &m, x, y, order, R, R, 4, 5, 1, &bad) == CF_ERR_INDEX && bad == 0);
    x[2 * order[0]] = keep_id;
    CHECK(fsame(s.params, params, NN_P) && fsame(s.stats, stats, NN_S) && s.opt.step == 0);
    /* argument errors */
    CHECK(nn_fit(&s, &m, x, y, order, R, R, 0, 5, 1, &bad) == CF_ERR_ARG);
    CHECK(nn_fit(&s, &m, x, y, order, R, R, 4, 6, 1, &bad) == CF_ERR_ARG);
    CHECK(nn_fit(&s, &m, x, y, order, R, R, 1, 3, 1, &bad) == CF_ERR_ARG);  /* BatchNorm, bs 1 */
    CHECK(nn_fit(&s, &m, x, y, order, R, R, 19, 2, 1, &bad) == CF_ERR_ARG); /* last batch 1 row */
    s.opt.n = NN_P + 1;
    CHECK(nn_fit(&s, &m, x, y, order, R, R, 4, 5, 1, &bad) == CF_ERR_ARG);
    s.opt.n = NN_P;
    m.ops[3].p = 1.5;
    CHECK(nn_fit(&s, &m, x, y, order, R, R, 4, 5, 1, &bad) == CF_ERR_ARG);
    nn_make(&m, 0.0);
    CHECK(fsame(s.params, params, NN_P) && fsame(s.stats, stats, NN_S));
    /* zero batches and a huge batch size */
    CHECK(nn_fit(&s, &m, x, y, order, R, R, 4, 0, 1, &bad) == CF_OK && bad == -1);
    CHECK(fsame(s.params, params, NN_P));
    CHECK(nn_fit(&s, &m, x, y, order, R, R, (int64_t)1 << 62, 1, 1, &bad) == CF_OK && bad == -1);
    nn_state t;
    nn_state_init(&t, params, stats, CF_OPT_ADAM, 1e-2);
    CHECK(nn_fit(&t, &m, x, y, order, R, R, R, 1, 1, &bad) == CF_OK);
    CHECK(fsame(s.params, t.params, NN_P));
    free(order);
}

/* ---------------------------------------------------------------- ranking */

typedef struct {
    float z;
    int32_t c;
} scored;

static int by_score(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->z != y->z) return x->z > y->z ? -1 : 1;
    return (x->c > y->c) - (x->c < y->c);
}

static void test_rank_pack_layout(void) {
    CHECK(cf_rank_panel_size(1, 3) == CF_RANK_NJ * 3);
    CHECK(cf_rank_panel_size(CF_RANK_NJ, 2) == CF_RANK_NJ * 2);
    CHECK(cf_rank_panel_size(CF_RANK_NJ + 1, 2) == 2 * CF_RANK_NJ * 2);
    int64_t NC = 21, K = 3, size = cf_rank_panel_size(NC, K);
    float *cw = frand(NC * K, 1), *panel = frand(size, 1);
    cf_rank_pack(panel, cw, NC, K);
    for (int64_t t = 0; t < size / (CF_RANK_NJ * K); t++)
        for (int64_t k = 0; k < K; k++)
            for (int64_t j = 0; j < CF_RANK_NJ; j++) {
                int64_t c = t * CF_RANK_NJ + j;
                SAME(panel[t * CF_RANK_NJ * K + k * CF_RANK_NJ + j], c < NC ? cw[c * K + k] : 0.0f);
            }
    free(cw), free(panel);
}

static void test_rank_topk_vs_brute_force(void) {
    for (int rep = 0; rep < 24; rep++) {
        int64_t Q = 1 + rnd_int(rep < 4 ? 150 : 9), K = 1 + rnd_int(6), NC = 1 + rnd_int(60);
        int64_t n = 1 + rnd_int(NC + 3), first = rnd_int(NC + 1);
        int use_qb = rep & 1, use_cb = (rep >> 1) & 1, use_excl = (rep >> 2) & 1, range = rep % 3 == 0;
        float *qw = frand(Q * K, 1), *qb = frand(Q, 1), *cw = frand(NC * K, 1), *cb = frand(NC, 1);
        /* ties (a duplicated candidate), a NaN candidate and a -inf bias */
        if (NC > 3) {
            memcpy(cw + 3 * K, cw + 1 * K, sizeof(float) * (size_t)K);
            cb[3] = cb[1];
            cw[0] = NAN;
            cb[2] = -INFINITY;
        }
        int64_t *indptr = xcalloc((size_t)Q + 1, sizeof(int64_t));
        int32_t *indices = izeros(Q * NC);
        for (int64_t q = 0; q < Q; q++) {
            indptr[q + 1] = indptr[q];
            for (int64_t c = 0; c < NC; c++)
                if (rnd_unif() < 0.2) indices[indptr[q + 1]++] = (int32_t)c;
        }
        float *panel = fzeros(cf_rank_panel_size(NC, K));
        int32_t *top = izeros(Q * n);
        float *score = fzeros(Q * n);
        scored *all = xcalloc((size_t)NC, sizeof(scored));
        /* the candidates packed as they are (no order), reversed (the duplicate, 3, comes
         * before the one it ties with, 1, and must lose to it), and shuffled: the same result */
        int32_t *order = izeros(NC);
        float *cwo = fzeros(NC * K), *cbo = fzeros(NC);
        for (int ord = 0; ord < 3; ord++) {
            for (int64_t p = 0; p < NC; p++) order[p] = (int32_t)(ord == 1 ? NC - 1 - p : p);
            for (int64_t p = NC - 1; ord == 2 && p > 0; p--) {
                int64_t r = rnd_int(p + 1);
                int32_t t = order[p];
                order[p] = order[r];
                order[r] = t;
            }
            for (int64_t p = 0; p < NC; p++) {
                memcpy(cwo + p * K, cw + order[p] * K, sizeof(float) * (size_t)K);
                cbo[p] = cb[order[p]];
            }
            cf_rank_pack(panel, cwo, NC, K);
            int st = cf_rank_dot_topk(top, score, qw, use_qb ? qb : NULL, panel, ord ? order : NULL,
                                      use_cb ? cbo : NULL, use_excl ? indptr : NULL,
                                      use_excl ? indices : NULL, Q, K, NC, n, first, range, 1.0f, 5.0f);
            CHECK(st == CF_OK);
            for (int64_t q = 0; q < Q; q++) {
                int64_t cnt = 0, e = indptr[q];
                for (int64_t c = first; c < NC; c++) {
                    while (use_excl && e < indptr[q + 1] && indices[e] < c) e++;
                    if (use_excl && e < indptr[q + 1] && indices[e] == c) continue;
                    float z = 0.0f;
                    for (int64_t k = 0; k < K; k++) z += qw[q * K + k] * cw[c * K + k];
                    if (use_qb) z += qb[q];
                    if (use_cb) z += cb[c];
                    if (isnan(z) || z == -INFINITY) continue;
                    all[cnt].z = z;
                    all[cnt++].c = (int32_t)c;
                }
                qsort(all, (size_t)cnt, sizeof(scored), by_score);
                for (int64_t r = 0; r < n; r++) {
                    if (r < cnt) {
                        CHECK(top[q * n + r] == all[r].c);
                        float want = range ? 1.0f / (1.0f + expf(-all[r].z)) * 4.0f + 1.0f : all[r].z;
                        SAME(score[q * n + r], want);
                    } else {
                        CHECK(top[q * n + r] == -1);
                        CHECK(isnan(score[q * n + r]));
                    }
                }
            }
        }
        free(qw), free(qb), free(cw), free(cb), free(indptr), free(indices), free(panel), free(top);
        free(score), free(all), free(order), free(cwo), free(cbo);
    }
}

static void test_rank_argument_errors(void) {
    int64_t Q = 2, K = 2, NC = 5;
    float qw[4] = {1, 2, 3, 4}, cw[10] = {0}, score[6];
    int32_t top[6];
    float *panel = fzeros(cf_rank_panel_size(NC, K));
    cf_rank_pack(panel, cw, NC, K);
    CHECK(cf_rank_dot_topk(top, score, qw, NULL, panel, NULL, NULL, NULL, NULL, Q, K, NC, 0, 0, 0, 0, 0) == CF_ERR_ARG);
    CHECK(cf_rank_dot_topk(top, score, qw, NULL, panel, NULL, NULL, NULL, NULL, Q, K, NC, 3, 6, 0, 0, 0) == CF_ERR_ARG);
    CHECK(cf_rank_dot_topk(top, score, qw, NULL, panel, NULL, NULL, NULL, NULL, Q, K, NC, 3, -1, 0, 0, 0) == CF_ERR_ARG);
    CHECK(cf_rank_dot_topk(top, score, qw, NULL, panel, NULL, NULL, NULL, NULL, Q, 0, NC, 3, 0, 0, 0, 0) == CF_ERR_ARG);
    int64_t ptr[3] = {0, 2, 3};
    int32_t unsorted[3] = {3, 1, 0}, outside[3] = {0, 1, 5}, negative[3] = {-1, 1, 2};
    CHECK(cf_rank_dot_topk(top, score, qw, NULL, panel, NULL, NULL, ptr, unsorted, Q, K, NC, 3, 0, 0, 0, 0) == CF_ERR_ARG);
    CHECK(cf_rank_dot_topk(top, score, qw, NULL, panel, NULL, NULL, ptr, outside, Q, K, NC, 3, 0, 0, 0, 0) == CF_ERR_ARG);
    CHECK(cf_rank_dot_topk(top, score, qw, NULL, panel, NULL, NULL, ptr, negative, Q, K, NC, 3, 0, 0, 0, 0) == CF_ERR_ARG);
    CHECK(cf_rank_dot_topk(top, score, qw, NULL, panel, NULL, NULL, ptr, NULL, Q, K, NC, 3, 0, 0, 0, 0) == CF_ERR_ARG);
    int64_t backwards[3] = {0, 2, 1};
    int32_t ok_idx[3] = {1, 2, 0};
    CHECK(cf_rank_dot_topk(top, score, qw, NULL, panel, NULL, NULL, backwards, ok_idx, Q, K, NC, 3, 0, 0, 0, 0) == CF_ERR_ARG);
    int32_t order_out[5] = {0, 1, 2, 3, 5}, order_neg[5] = {0, -1, 2, 3, 4};
    CHECK(cf_rank_dot_topk(top, score, qw, NULL, panel, order_out, NULL, NULL, NULL, Q, K, NC, 3, 0, 0, 0, 0) == CF_ERR_ARG);
    CHECK(cf_rank_dot_topk(top, score, qw, NULL, panel, order_neg, NULL, NULL, NULL, Q, K, NC, 3, 0, 0, 0, 0) == CF_ERR_ARG);
    /* first == NC: no candidate at all, every slot -1 / NaN */
    CHECK(cf_rank_dot_topk(top, score, qw, NULL, panel, NULL, NULL, NULL, NULL, Q, K, NC, 3, NC, 0, 0, 0) == CF_OK);
    for (int i = 0; i < 6; i++) CHECK(top[i] == -1 && isnan(score[i]));
    free(panel);
}

/* ---------------------------------------------------------------- the sparse (block) driver */

/* sorts n random rows (users < nu, items < ni) into nb x nb blocks with `threads` threads
 * and checks: every row once (extra: its old position, esz bytes), in its block, ordered by
 * user then item inside the block */
static void check_block_sort(int64_t n, int64_t nb, int32_t nu, int32_t ni, int esz, int threads) {
    int64_t NB = nb * nb;
    int32_t *x = izeros(2 * n), *x0 = izeros(2 * n);
    float *y = fzeros(n), *y0 = fzeros(n);
    char *extra = xcalloc((size_t)n + 1, (size_t)esz);
    int64_t *starts = xcalloc((size_t)NB + 1, sizeof(int64_t));
    for (int64_t r = 0; r < n; r++) {
        x[2 * r] = x0[2 * r] = (int32_t)rnd_int(nu);
        x[2 * r + 1] = x0[2 * r + 1] = (int32_t)rnd_int(ni);
        y[r] = y0[r] = (float)r;
        if (esz == 8) ((int64_t *)extra)[r] = r;
        else ((int32_t *)extra)[r] = (int32_t)r;
    }
    CHECK(cf_block_sort(x, y, extra, esz, n, nb, starts, threads) == CF_OK);
    CHECK(starts[0] == 0 && starts[NB] == n);
    unsigned char *seen = xcalloc((size_t)n + 1, 1);
    int64_t fails = 0;
    for (int64_t b = 0; b < NB; b++) {
        CHECK(starts[b] <= starts[b + 1]);
        for (int64_t r = starts[b]; r < starts[b + 1]; r++) {
            int64_t o = esz == 8 ? ((int64_t *)extra)[r] : ((int32_t *)extra)[r];
            int ok = (x[2 * r] % nb) * nb + x[2 * r + 1] % nb == b && o >= 0 && o < n && !seen[o];
            if (ok) {
                seen[o] = 1;
                ok = x[2 * r] == x0[2 * o] && x[2 * r + 1] == x0[2 * o + 1] && y[r] == y0[o];
            }
            if (ok && r > starts[b]) /* by user, then item */
                ok = x[2 * (r - 1)] < x[2 * r] ||
                     (x[2 * (r - 1)] == x[2 * r] && x[2 * (r - 1) + 1] <= x[2 * r + 1]);
            fails += !ok;
        }
    }
    CHECK(fails == 0);
    free(x), free(x0), free(y), free(y0), free(extra), free(starts), free(seen);
}

static void test_block_sort(void) {
    for (int rep = 0; rep < 6; rep++) /* small blocks: each sorted through a buffer */
        check_block_sort(rnd_int(200), 1 + rnd_int(4), 13, 7, rep % 2 ? 8 : 4, 1 + rep % 3);
    check_block_sort(20000, 3, 2000, 500, 8, 2);
    /* one block larger than the buffer may be (max(65536, n / 8) rows): sorted in place */
    check_block_sort(70000, 1, 300, 4000, 8, 2);
    check_block_sort(70000, 1, 3, 40000, 4, 1); /* long runs of one user */
    int64_t n = 50, starts[17];
    int32_t *x = izeros(2 * n);
    float *y = fzeros(n);
    x[2 * (n - 1) + 1] = -1;
    CHECK(cf_block_sort(x, y, NULL, 0, n, 4, starts, 1) == CF_ERR_INDEX);
    x[2 * (n - 1) + 1] = 0;
    CHECK(cf_block_sort(x, y, NULL, 0, n, 0, starts, 1) == CF_ERR_ARG);
    CHECK(cf_block_sort(x, y, NULL, 0, n, 4, starts, 0) == CF_ERR_ARG);
    CHECK(cf_block_sort(x, y, NULL, 0, n, 4, starts, 3) == CF_OK && starts[16] == n);
    free(x), free(y);
}

/* per-rating updates in double, in block order (one thread) */
static void ref_sparse(double *p, double *m, double *v, double *pw1, double *pw2, int kind,
                       const dot_problem *d, const int64_t *starts, const int64_t *blocks, int64_t n_sel,
                       const double *lrs, double wd, double b1, double b2, double eps, double *loss) {
    const cf_dot_config *c = &d->cfg;
    int64_t K = c->k, NU = c->n_users, NI = c->n_items;
    for (int64_t s = 0; s < n_sel; s++) {
        double sse = 0;
        int64_t a = starts[blocks[s]], e = starts[blocks[s] + 1];
        for (int64_t r = a; r < e; r++) {
            int64_t u = d->x[2 * r], i = d->x[2 * r + 1];
            double z = ref_dot_z(p, c, u, i), pred = z, dp = 1;
            if (c->has_range) {
                double sg = sigm(z);
                pred = sg * (c->hi - c->lo) + c->lo;
                dp = (c->hi - c->lo) * sg * (1 - sg);
            }
            double err = pred - d->y[r], dz = 2 * err * dp;
            sse += err * err;
            double gu[16], gi[16];
            for (int64_t k = 0; k < K; k++) {
                gu[k] = dz * p[NU * K + i * K + k] + wd * p[u * K + k];
                gi[k] = dz * p[u * K + k] + wd * p[NU * K + i * K + k];
            }
            for (int side = 0; side < 2; side++) {
                int64_t row = side ? NU + i : u, off = side ? NU * K + i * K : u * K;
                int64_t boff = c->has_bias ? (NU + NI) * K + (side ? NU + i : u) : -1;
                double *g = side ? gi : gu;
                double gb = boff >= 0 ? dz + wd * p[boff] : 0;
                if (kind == CF_SPARSE_SGD) {
                    for (int64_t k = 0; k < K; k++) p[off + k] -= lrs[s] * g[k];
                    if (boff >= 0) p[boff] -= lrs[s] * gb;
                } else if (kind == CF_SPARSE_ADAGRAD) {
                    double ss = 0;
                    for (int64_t k = 0; k < K; k++) ss += g[k] * g[k];
                    v[row] += ss / (double)K;
                    for (int64_t k = 0; k < K; k++) p[off + k] -= lrs[s] * g[k] / sqrt(v[row] + eps);
                    if (boff >= 0) {
                        v[NU + NI + row] += gb * gb;
                        p[boff] -= lrs[s] * gb / sqrt(v[NU + NI + row] + eps);
                    }
                } else {
                    pw1[row] *= b1;
                    pw2[row] *= b2;
                    double al = lrs[s] / (1 - pw1[row]), r2 = 1 / sqrt(1 - pw2[row]);
                    for (int64_t k = 0; k < K; k++) {
                        m[off + k] = b1 * m[off + k] + (1 - b1) * g[k];
                        v[off + k] = b2 * v[off + k] + (1 - b2) * g[k] * g[k];
                        p[off + k] -= al * m[off + k] / (sqrt(v[off + k]) * r2 + eps);
                    }
                    if (boff >= 0) {
                        m[boff] = b1 * m[boff] + (1 - b1) * gb;
                        v[boff] = b2 * v[boff] + (1 - b2) * gb * gb;
                        p[boff] -= al * m[boff] / (sqrt(v[boff]) * r2 + eps);
                    }
                }
            }
        }
        loss[s] = e > a ? sse / (double)(e - a) : 0.0;
    }
}

typedef struct {
    float *m, *v, *pow1, *pow2;
    cf_sparse_opt opt;
} sparse_state;

/* all nb*nb blocks in nb strata of nb blocks that share no user group and no item group:
 * stratum s holds the blocks (g, (g + shift_s) mod nb), in a random order */
static int64_t *strata_blocks(int64_t nb) {
    int64_t *shift = perm(nb), *out = xcalloc((size_t)(nb * nb), sizeof(int64_t));
    for (int64_t s = 0; s < nb; s++) {
        int64_t *g = perm(nb);
        for (int64_t t = 0; t < nb; t++) out[s * nb + t] = g[t] * nb + (g[t] + shift[s]) % nb;
        free(g);
    }
    free(shift);
    return out;
}

static sparse_state sparse_make(const dot_problem *d, int kind, double wd) {
    sparse_state s;
    int64_t rows = d->cfg.n_users + d->cfg.n_items;
    s.m = fzeros(d->P);
    s.v = fzeros(d->P > 2 * rows ? d->P : 2 * rows);
    s.pow1 = fzeros(rows);
    s.pow2 = fzeros(rows);
    for (int64_t r = 0; r < rows; r++) s.pow1[r] = s.pow2[r] = 1.0f;
    cf_sparse_opt o = {kind, s.m, s.v, s.pow1, s.pow2, 0.9, 0.99, 1e-8, wd};
    s.opt = o;
    return s;
}

static void sparse_free(sparse_state *s) { free(s->m), free(s->v), free(s->pow1), free(s->pow2); }

static void test_dot_fit_blocks_vs_naive(void) {
    for (int rep = 0; rep < 12; rep++) {
        int kind = rep % 3, bias = (rep / 3) & 1, range = rep / 6;
        dot_problem d = dot_make(9, 8, 3, bias, range, 120);
        int64_t nb = 3, NB = nb * nb, starts[10];
        CHECK(cf_block_sort(d.x, d.y, NULL, 0, d.R, nb, starts, 1) == CF_OK);
        int64_t *blocks = strata_blocks(nb), n_sel = NB;
        double lrs[9], loss[9], rloss[9];
        for (int k = 0; k < 9; k++) lrs[k] = kind == CF_SPARSE_SGD ? 0.02 : 0.05;
        int64_t rows = d.cfg.n_users + d.cfg.n_items, nv = d.P > 2 * rows ? d.P : 2 * rows;
        double *p = dzeros(d.P), *m = dzeros(d.P), *v = dzeros(nv), *pw1 = dzeros(rows), *pw2 = dzeros(rows);
        double *init = dzeros(d.P);
        for (int64_t n = 0; n < d.P; n++) init[n] = p[n] = d.params[n];
        for (int64_t r = 0; r < rows; r++) pw1[r] = pw2[r] = 1;
        sparse_state s = sparse_make(&d, kind, 0.01);
        int64_t bad = 5;
        CHECK(cf_dot_fit_blocks(d.params, &s.opt, loss, &bad, d.x, d.y, d.R, starts, nb, blocks, n_sel,
                                lrs, NULL, &d.cfg, 1) == CF_OK);
        CHECK(bad == -1);
        ref_sparse(p, m, v, pw1, pw2, kind, &d, starts, blocks, n_sel, lrs, 0.01, 0.9, 0.99, 1e-8, rloss);
        for (int64_t k = 0; k < n_sel; k++) NEAR(loss[k], rloss[k], 1e-4);
        for (int64_t n = 0; n < d.P; n++) NEAR(d.params[n], p[n], 2e-4);
        /* the same call again from the same start is bit-for-bit repeatable with one thread */
        float *once = fcopy(d.params, d.P);
        for (int64_t n = 0; n < d.P; n++) d.params[n] = (float)init[n];
        sparse_state s2 = sparse_make(&d, kind, 0.01);
        CHECK(cf_dot_fit_blocks(d.params, &s2.opt, loss, &bad, d.x, d.y, d.R, starts, nb, blocks, n_sel,
                                lrs, NULL, &d.cfg, 1) == CF_OK);
        CHECK(fsame(d.params, once, d.P));
        free(p), free(m), free(v), free(pw1), free(pw2), free(once), free(init);
        sparse_free(&s), sparse_free(&s2);
        free(blocks);
        dot_free(&d);
    }
}

/* The users whose ratings a block interleaves (up to four lanes, csrc/sparse.c run_rows) give
 * the parameters and optimizer state of plain row order (cf_sparse_max_lanes(1)) bit for bit:
 * SGD, Adagrad and Adam, with biases and a y_range and without, at K = 5 and 50 (the unrolled
 * kernels), on few items (users then rate the same items in their turn: a later lane's item is
 * often among an earlier one's left, and it waits, or the next lane runs) and on many, with
 * repeated (user, item) pairs, users of many and of few ratings, one thread and two. */
static void test_dot_fit_blocks_lanes_same_bits_as_row_order(void) {
    const int64_t Ks[] = {5, 50}, nis[] = {12, 300};
    for (int kind = 0; kind < 3; kind++)
        for (size_t ki = 0; ki < 2; ki++)
            for (size_t ii = 0; ii < 2; ii++)
                for (int br = 0; br < 2; br++) {
                    float *want = NULL, *want_v = NULL, *want_m = NULL;
                    for (int lanes = 1; lanes <= 5; lanes++) {
                        g_rs = 17 + (uint64_t)(kind * 8 + ki * 4 + ii * 2 + br);
                        dot_problem d = dot_make(70, nis[ii], Ks[ki], br, br, 4000);
                        /* users of many and of few ratings: a third of the rows to user 0..9 */
                        for (int64_t r = 0; r < d.R; r += 3) d.x[2 * r] = (int32_t)rnd_int(10);
                        int64_t nb = 2, starts[5], bad = 5, *blocks = strata_blocks(nb);
                        double lrs[4] = {0.02, 0.02, 0.01, 0.01}, loss[4];
                        CHECK(cf_block_sort(d.x, d.y, NULL, 0, d.R, nb, starts, 1) == CF_OK);
                        sparse_state s = sparse_make(&d, kind, 0.01);
                        cf_sparse_max_lanes(lanes < 5 ? lanes : 4);
                        CHECK(cf_dot_fit_blocks(d.params, &s.opt, loss, &bad, d.x, d.y, d.R, starts, nb,
                                                blocks, 4, lrs, NULL, &d.cfg, lanes < 5 ? 1 : 2) == CF_OK);
                        CHECK(bad == -1);
                        const int64_t nv = kind == CF_SPARSE_ADAM ? d.P : 2 * (d.cfg.n_users + d.cfg.n_items);
                        if (!want) {
                            want = fcopy(d.params, d.P);
                            want_v = fcopy(s.v, nv);
                            want_m = fcopy(s.m, d.P);
                        } else {
                            CHECK(fsame(d.params, want, d.P) && fsame(s.v, want_v, nv) && fsame(s.m, want_m, d.P));
                        }
                        sparse_free(&s);
                        free(blocks);
                        dot_free(&d);
                    }
                    free(want), free(want_v), free(want_m);
                }
    cf_sparse_max_lanes(4);
}

/* ---------------------------------------------------------------- instruction-set versions */

static void test_isa_names_and_levels(void) {
    CHECK(cf_isa_parse("avx512") == CF_ISA_AVX512 && cf_isa_parse("AVX512F") == CF_ISA_AVX512);
    CHECK(cf_isa_parse("avx2") == CF_ISA_AVX2 && cf_isa_parse("Avx2") == CF_ISA_AVX2);
    CHECK(cf_isa_parse("generic") == CF_ISA_GENERIC && cf_isa_parse("scalar") == CF_ISA_GENERIC);
    CHECK(cf_isa_parse("sse9") == -1 && cf_isa_parse("avx") == -1 && cf_isa_parse(NULL) == -1);
    CHECK(cf_isa_parse("auto") == cf_isa_parse("") && cf_isa_parse("auto") >= CF_ISA_GENERIC);
    CHECK(!strcmp(cf_isa_name(CF_ISA_AVX512), "avx512") && cf_isa_name(CF_ISA_COUNT) == NULL);
    const unsigned sup = cf_isa_supported();
    CHECK(sup & 1u);
    if (!cf_isa_multiversioned()) CHECK(sup == 1u && cf_isa_set(CF_ISA_AVX2) == -1);
    CHECK(cf_isa_get() == cf_isa_parse("auto")); /* the best supported, until set */
    CHECK(cf_isa_set(-1) == -1 && cf_isa_set(CF_ISA_COUNT) == -1);
    for (int l = 0; l < CF_ISA_COUNT; l++)
        if (sup >> l & 1u) CHECK(cf_isa_set(l) == 0 && cf_isa_get() == l);
        else CHECK(cf_isa_set(l) == -1);
    cf_isa_set(cf_isa_parse("auto"));
}

/* one epoch of the sparse driver over problem d on a 2 x 2 grid (both strata, learning rates
 * 0.02 then 0.01, weight decay 0.01), which must finish without a bad row */
static void fit_grid2(dot_problem *d, int kind, int n_threads) {
    int64_t nb = 2, starts[5], bad = 0, *blocks = strata_blocks(nb);
    double lrs[4] = {0.02, 0.02, 0.01, 0.01}, loss[4];
    CHECK(cf_block_sort(d->x, d->y, NULL, 0, d->R, nb, starts, 1) == CF_OK);
    sparse_state s = sparse_make(d, kind, 0.01);
    CHECK(cf_dot_fit_blocks(d->params, &s.opt, loss, &bad, d->x, d->y, d->R, starts, nb, blocks, 4,
                            lrs, NULL, &d->cfg, n_threads) == CF_OK);
    CHECK(bad == -1);
    sparse_free(&s);
    free(blocks);
}

/* every version this CPU runs gives the generic version's bits: the sparse driver (each
 * optimizer; K with and without a partial 16-lane chunk, and at and around 49..64, the rows
 * of the versions whose chunk loops unroll; with biases and a y_range, whose kernels are
 * versions of their own, and without), a linear layer, Adam's step */
static void test_isa_versions_same_bits(void) {
    const unsigned sup = cf_isa_supported();
    const int best = cf_isa_get();
    const int64_t Ks[] = {8, 32, 48, 49, 56, 64, 65};
    for (int kind = 0; kind < 3; kind++)
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
            for (int br = 0; br < 2; br++) {
                const int64_t K = Ks[ki];
                float *want = NULL;
                for (int l = 0; l < CF_ISA_COUNT; l++) {
                    if (!(sup >> l & 1u)) continue;
                    CHECK(cf_isa_set(l) == 0);
                    g_rs = 77;
                    dot_problem d = dot_make(50, 40, K, br, br, 4000);
                    fit_grid2(&d, kind, 2);
                    if (!want) want = fcopy(d.params, d.P);
                    else CHECK(fsame(d.params, want, d.P));
                    dot_free(&d);
                }
                free(want);
            }
    float *want_lin = NULL, *want_p = NULL;
    for (int l = 0; l < CF_ISA_COUNT; l++) {
        if (!(sup >> l & 1u)) continue;
        CHECK(cf_isa_set(l) == 0);
        g_rs = 5;
        const int64_t B = 37, DI = 29, DO = 13, N = 1001;
        float *xT = frand(DI * B, 1.0), *W = frand(DO * DI, 1.0), *bias = frand(DO, 1.0);
        float *out = fzeros(DO * B), *p = frand(N, 1.0), *g = frand(N, 1.0), *m = fzeros(N), *v = fzeros(N);
        cf_linear_forward(out, xT, W, bias, B, DI, DO);
        for (int step = 1; step <= 3; step++) cf_adam_step(p, g, m, v, N, 1e-3, 0.9, 0.99, 1e-5, 0.01, step, 1);
        if (!want_lin) {
            want_lin = fcopy(out, DO * B);
            want_p = fcopy(p, N);
        } else {
            CHECK(fsame(out, want_lin, DO * B));
            CHECK(fsame(p, want_p, N));
        }
        free(xT), free(W), free(bias), free(out), free(p), free(g), free(m), free(v);
    }
    free(want_lin), free(want_p);
    CHECK(cf_isa_set(best) == 0);
}

/* Signed zeros in the sparse kernels' sums. The 16-lane code adds the masked lanes of a row's
 * last chunk as +0, so a dot product over lanes that are all -0 comes out +0 when 16 does not
 * divide K, and -0 when it does. The 8- and 4-lane versions skip the parts of that chunk whose
 * lanes are all masked (CF_MASKED_PART in sparse.c); without a y_range they must still add +0
 * there. User rows of -0 against positive item rows, ratings 0, no biases, no y_range: the
 * reference's error is then +0 and leaves the user rows at -0 (dz qi + wd pu = +0 + -0 = +0),
 * but -0 where 16 divides K, which turns them into +0 at a user's first rating. Every version,
 * SGD and Adagrad, K around the sizes where 1, 2 or 3 of the 4-lane parts are skipped; with a
 * y_range as well, where the versions must agree with each other. Skipping the +0 without a
 * y_range fails here. */
static void test_isa_versions_signed_zero_sums(void) {
    const unsigned sup = cf_isa_supported();
    const int best = cf_isa_get();
    const int64_t Ks[] = {17, 20, 24, 28, 32, 40, 49, 50, 52, 56, 60, 64, 65};
    for (int kind = 0; kind < 2; kind++)
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
            for (int range = 0; range < 2; range++) {
                const int64_t K = Ks[ki], NU = 30, NI = 20;
                float *want = NULL;
                for (int l = 0; l < CF_ISA_COUNT; l++) {
                    if (!(sup >> l & 1u)) continue;
                    CHECK(cf_isa_set(l) == 0);
                    g_rs = 91;
                    dot_problem d = dot_make(NU, NI, K, 0, range, 600);
                    for (int64_t n = 0; n < NU * K; n++) d.params[n] = -0.0f;
                    for (int64_t n = NU * K; n < (NU + NI) * K; n++) d.params[n] = fabsf(d.params[n]) + 0.01f;
                    if (!range)
                        for (int64_t r = 0; r < d.R; r++) d.y[r] = 0.0f;
                    int rated[30] = {0};
                    for (int64_t r = 0; r < d.R; r++) rated[d.x[2 * r]] = 1;
                    fit_grid2(&d, kind, 1);
                    if (!range) {
                        int ok = 1;
                        for (int64_t u = 0; u < NU; u++)
                            for (int64_t k = 0; k < K; k++) {
                                const float w = d.params[u * K + k];
                                ok &= w == 0.0f && (signbit(w) != 0) == (K % 16 != 0 || !rated[u]);
                            }
                        CHECK(ok);
                    }
                    if (!want) want = fcopy(d.params, d.P);
                    else CHECK(fsame(d.params, want, d.P));
                    dot_free(&d);
                }
                free(want);
            }
    CHECK(cf_isa_set(best) == 0);
}

/* a block that stops at a bad row (a NaN rating, or an item moved to another group) leaves
 * the same parameters in every version this CPU runs: the ratings before it applied (among
 * them those of the user whose run the bad row ends), those after it not; and so does a block
 * whose rows are not grouped by user (two rows of different users swapped: each user's rows
 * in two runs, which two lanes may hold at once). SGD and Adagrad, at K = 50 and 64 (the
 * unrolled kernels) and 32, with biases and a y_range and without (one thread: with more,
 * which blocks after the bad one ran depends on timing). A version that kept a lane's user row
 * in a copy without writing it back on every way out failed here. */
static void test_isa_versions_same_bits_on_errors(void) {
    const unsigned sup = cf_isa_supported();
    const int best = cf_isa_get();
    const int64_t Ks[] = {32, 50, 64};
    for (int kind = 0; kind < 2; kind++)
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
            for (int br = 0; br < 2; br++)
                for (int err = 0; err < 3; err++) {
                    float *want = NULL;
                    int64_t want_bad = -2;
                    for (int l = 0; l < CF_ISA_COUNT; l++) {
                        if (!(sup >> l & 1u)) continue;
                        CHECK(cf_isa_set(l) == 0);
                        g_rs = 91;
                        dot_problem d = dot_make(60, 50, Ks[ki], br, br, 5000);
                        int64_t nb = 2, starts[5], bad = 0, *blocks = strata_blocks(nb);
                        double lrs[4] = {0.02, 0.02, 0.01, 0.01}, loss[4];
                        CHECK(cf_block_sort(d.x, d.y, NULL, 0, d.R, nb, starts, 1) == CF_OK);
                        /* the bad row: inside the second block's rows, past its first user */
                        const int64_t b = blocks[1], r = starts[b] + (starts[b + 1] - starts[b]) / 3;
                        const int64_t r2 = starts[b] + (starts[b + 1] - starts[b]) / 2;
                        if (err == 2) {
                            CHECK(d.x[2 * r] != d.x[2 * r2]);
                            for (int col = 0; col < 2; col++) {
                                const int32_t keep = d.x[2 * r + col];
                                d.x[2 * r + col] = d.x[2 * r2 + col];
                                d.x[2 * r2 + col] = keep;
                            }
                            const float y_r = d.y[r];
                            d.y[r] = d.y[r2];
                            d.y[r2] = y_r;
                        } else if (err) {
                            d.x[2 * r + 1] = (int32_t)((d.x[2 * r + 1] + 1) % d.cfg.n_items);
                        } else {
                            d.y[r] = NAN;
                        }
                        sparse_state s = sparse_make(&d, kind, 0.01);
                        const int st = cf_dot_fit_blocks(d.params, &s.opt, loss, &bad, d.x, d.y, d.R, starts,
                                                         nb, blocks, 4, lrs, NULL, &d.cfg, 1);
                        CHECK(err == 2 ? st == CF_OK && bad == -1
                                       : st == (err ? CF_ERR_INDEX : CF_ERR_NONFINITE) && bad == (err ? r : 1));
                        if (!want) {
                            want = fcopy(d.params, d.P);
                            want_bad = bad;
                        } else {
                            CHECK(fsame(d.params, want, d.P) && bad == want_bad);
                        }
                        sparse_free(&s);
                        free(blocks);
                        dot_free(&d);
                    }
                    free(want);
                }
    CHECK(cf_isa_set(best) == 0);
}

static void test_dot_fit_blocks_threads_errors_and_nan(void) {
    dot_problem d = dot_make(40, 30, 4, 1, 1, 3000);
    int64_t nb = 4, NB = 16, starts[17];
    CHECK(cf_block_sort(d.x, d.y, NULL, 0, d.R, nb, starts, 1) == CF_OK);
    int64_t *blocks = strata_blocks(nb), bad = 0;
    double lrs[16], loss[16];
    for (int k = 0; k < 16; k++) lrs[k] = 0.01;
    float *p0 = fcopy(d.params, d.P);
    /* two threads (and more threads than the grid allows): every block trained, all finite */
    for (int t = 2; t <= 8; t *= 4) {
        memcpy(d.params, p0, sizeof(float) * (size_t)d.P);
        sparse_state s = sparse_make(&d, CF_SPARSE_ADAM, 0.01);
        for (int k = 0; k < 16; k++) loss[k] = NAN;
        CHECK(cf_dot_fit_blocks(d.params, &s.opt, loss, &bad, d.x, d.y, d.R, starts, nb, blocks, NB, lrs,
                                NULL, &d.cfg, t) == CF_OK && bad == -1);
        for (int k = 0; k < 16; k++) CHECK(isfinite(loss[k]));
        for (int64_t n = 0; n < d.P; n++) CHECK(isfinite(d.params[n]));
        CHECK(!fsame(d.params, p0, d.P));
        sparse_free(&s);
    }
    /* Adam's momentum per block: moms all equal to beta1 is the scalar beta1 bit for bit; a
     * schedule changes the result, and the same schedule repeats it for any thread count */
    {
        double same[16], sched[16];
        for (int k = 0; k < 16; k++) same[k] = 0.9, sched[k] = 0.95 - 0.1 * k / 15.0;
        float *ref = NULL, *run = NULL;
        for (int v = 0; v < 4; v++) {
            memcpy(d.params, p0, sizeof(float) * (size_t)d.P);
            sparse_state sa = sparse_make(&d, CF_SPARSE_ADAM, 0.01);
            sa.opt.beta1 = 0.9;
            const double *moms = v == 0 ? NULL : v == 1 ? same : sched;
            CHECK(cf_dot_fit_blocks(d.params, &sa.opt, loss, &bad, d.x, d.y, d.R, starts, nb, blocks, NB,
                                    lrs, moms, &d.cfg, v == 3 ? 3 : 1) == CF_OK);
            if (v == 0) ref = fcopy(d.params, d.P);
            else if (v == 1) CHECK(fsame(d.params, ref, d.P));
            else if (v == 2) { CHECK(!fsame(d.params, ref, d.P)); run = fcopy(d.params, d.P); }
            else CHECK(fsame(d.params, run, d.P));
            sparse_free(&sa);
        }
        free(ref), free(run);
    }
    sparse_state s = sparse_make(&d, CF_SPARSE_SGD, 0.0);
    memcpy(d.params, p0, sizeof(float) * (size_t)d.P);
    /* argument and index errors: nothing trained */
    CHECK(cf_dot_fit_blocks(d.params, &s.opt, loss, &bad, d.x, d.y, d.R + 1, starts, nb, blocks, NB, lrs,
                            NULL, &d.cfg, 1) == CF_ERR_ARG);
    CHECK(cf_dot_fit_blocks(d.params, &s.opt, loss, &bad, d.x, d.y, d.R, starts, nb, blocks, NB, lrs,
                            NULL, &d.cfg, 0) == CF_ERR_ARG);
    sparse_state no_m = sparse_make(&d, CF_SPARSE_ADAM, 0.0);
    no_m.opt.m = NULL;
    CHECK(cf_dot_fit_blocks(d.params, &no_m.opt, loss, &bad, d.x, d.y, d.R, starts, nb, blocks, NB, lrs,
                            NULL, &d.cfg, 1) == CF_ERR_ARG);
    no_m.opt.m = no_m.m;
    int64_t keep = blocks[5];
    blocks[5] = NB;
    CHECK(cf_dot_fit_blocks(d.params, &s.opt, loss, &bad, d.x, d.y, d.R, starts, nb, blocks, NB, lrs,
                            NULL, &d.cfg, 1) == CF_ERR_INDEX && bad == 5);
    blocks[5] = -1;
    CHECK(cf_dot_fit_blocks(d.params, &s.opt, loss, &bad, d.x, d.y, d.R, starts, nb, blocks, NB, lrs,
                            NULL, &d.cfg, 1) == CF_ERR_INDEX && bad == 5);
    blocks[5] = keep;
    int64_t row = starts[blocks[7]];
    int32_t keep_id = d.x[2 * row];
    d.x[2 * row] = 40;
    CHECK(cf_dot_fit_blocks(d.params, &s.opt, loss, &bad, d.x, d.y, d.R, starts, nb, blocks, NB, lrs,
                            NULL, &d.cfg, 1) == CF_ERR_INDEX && bad == row);
    d.x[2 * row] = keep_id;
    CHECK(fsame(d.params, p0, d.P));
    /* a row outside its block (its user, or its item, moved to another group; the ids inside
     * the tables, so only the kernel sees it, when it reads the row): CF_ERR_INDEX at that row,
     * the updates before it made and finite, with one thread or more */
    for (int col = 0; col < 2; col++) {
        const int64_t b = blocks[6], lo = starts[b], hi = starts[b + 1], r = lo + (hi - lo) / 2;
        const int64_t n_ids = col ? d.cfg.n_items : d.cfg.n_users;
        CHECK(hi - lo >= 3 && n_ids % nb != 1);
        const int32_t keep_r = d.x[2 * r + col];
        d.x[2 * r + col] = (int32_t)((keep_r + 1) % n_ids); /* the next group */
        for (int t = 1; t <= 2; t++) {
            memcpy(d.params, p0, sizeof(float) * (size_t)d.P);
            CHECK(cf_dot_fit_blocks(d.params, &s.opt, loss, &bad, d.x, d.y, d.R, starts, nb, blocks,
                                    NB, lrs, NULL, &d.cfg, t) == CF_ERR_INDEX && bad == r);
            CHECK(!fsame(d.params, p0, d.P));
            for (int64_t n = 0; n < d.P; n++) CHECK(isfinite(d.params[n]));
        }
        d.x[2 * r + col] = keep_r;
    }
    /* a NaN rating in block position 9: CF_ERR_NONFINITE at 9, blocks 0..8 trained, with any
     * number of threads (a thread may run ahead into later strata, never leave a gap) */
    d.y[starts[blocks[9]] + (starts[blocks[9] + 1] - starts[blocks[9]]) / 2] = NAN;
    CHECK(starts[blocks[9] + 1] > starts[blocks[9]]);
    for (int t = 1; t <= 3; t++) {
        memcpy(d.params, p0, sizeof(float) * (size_t)d.P);
        for (int k = 0; k < 16; k++) loss[k] = NAN;
        CHECK(cf_dot_fit_blocks(d.params, &s.opt, loss, &bad, d.x, d.y, d.R, starts, nb, blocks, NB,
                                lrs, NULL, &d.cfg, t) == CF_ERR_NONFINITE && bad == 9);
        for (int64_t n = 0; n < d.P; n++) CHECK(isfinite(d.params[n]));
        for (int k = 0; k < 9; k++) CHECK(isfinite(loss[k]));
    }
    /* zero blocks selected: nothing happens */
    memcpy(d.params, p0, sizeof(float) * (size_t)d.P);
    CHECK(cf_dot_fit_blocks(d.params, &s.opt, loss, &bad, d.x, d.y, d.R, starts, nb, blocks, 0, lrs,
                            NULL, &d.cfg, 2) == CF_OK && bad == -1);
    CHECK(fsame(d.params, p0, d.P));
    sparse_free(&s), sparse_free(&no_m);
    free(blocks), free(p0);
    dot_free(&d);
}

/* ---------------------------------------------------------------- main */

int main(void) {
    RUN(test_isa_names_and_levels);
    RUN(test_isa_versions_same_bits);
    RUN(test_isa_versions_same_bits_on_errors);
    RUN(test_isa_versions_signed_zero_sums);
    RUN(test_embedding_forward_by_hand);
    RUN(test_embedding_ids_out_of_range);
    RUN(test_embedding_backward_repeated_ids_accumulate);
    RUN(test_embedding_random_vs_naive);
    RUN(test_embedding_concat);
    RUN(test_dotbias_by_hand);
    RUN(test_dotbias_random_vs_naive_and_index_errors);
    RUN(test_dotbias_rows_same_bits_as_one_at_a_time);
    RUN(test_sigmoid_range);
    RUN(test_relu);
    RUN(test_relu_backward_same_bits);
    RUN(test_dropout_kernels_and_mask);
    RUN(test_rng);
    RUN(test_mse);
    RUN(test_adam_by_hand);
    RUN(test_adam_and_sgd_random_vs_naive);
    RUN(test_sgd_by_hand);
    RUN(test_optimizer_step_weight_decay_ranges);
    RUN(test_schedule);
    RUN(test_linear_random_vs_naive);
    RUN(test_linear_same_bits);
    RUN(test_batchnorm);
    RUN(test_batchnorm_same_bits);
    RUN(test_dot_fit_epoch_vs_naive);
    RUN(test_dot_fit_epoch_nan_guard);
    RUN(test_dot_fit_epoch_index_and_argument_errors);
    RUN(test_dot_predict);
    RUN(test_nn_validate_rejections);
    RUN(test_nn_predict_vs_naive);
    RUN(test_nn_fit_epoch_gradient_and_statistics);
    RUN(test_nn_fit_epoch_nan_guard_and_errors);
    RUN(test_rank_pack_layout);
    RUN(test_rank_topk_vs_brute_force);
    RUN(test_rank_argument_errors);
    RUN(test_block_sort);
    RUN(test_dot_fit_blocks_vs_naive);
    RUN(test_dot_fit_blocks_lanes_same_bits_as_row_order);
    RUN(test_dot_fit_blocks_threads_errors_and_nan);
    return harness_report();
}
