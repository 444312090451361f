/* als.c - implicit ALS: CSR building, the Gramian and the conjugate-gradient half-step
 * (see als.h), on pthreads. Each row is solved by one thread with fixed arithmetic and the
 * per-chunk objectives are summed in chunk order, so results never depend on the number of
 * threads. The drivers allocate only their scratch, before writing anything. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "als.h"
#include "fpmode.h"
#include "simd.h"
#include "vec16.h"
#include "status.h"
#include "threads.h"

#define CF_ALS_CHUNK 8 /* rows a thread takes at a time (as implicit's dynamic schedule) */
#define CF_ALS_GATHER_BYTES ((int64_t)16 << 20) /* per thread: rows longer are read in place */

/* ---------------------------------------------------------------- CSR */

/* sorts cols[0..n) ascending, carrying w (may be NULL) along; stable merge sort through
 * tmp_c / tmp_w (n each), insertion sort for short runs */
static void sort_row(int32_t *c, float *w, int64_t n, int32_t *tc, float *tw) {
    const int64_t RUN = 24;
    for (int64_t a = 0; a < n; a += RUN) {
        int64_t e = a + RUN < n ? a + RUN : n;
        for (int64_t i = a + 1; i < e; i++) {
            int32_t v = c[i];
            float wv = w ? w[i] : 0.0f;
            int64_t j = i;
            while (j > a && c[j - 1] > v) {
                c[j] = c[j - 1];
                if (w) w[j] = w[j - 1];
                j--;
            }
            c[j] = v;
            if (w) w[j] = wv;
        }
    }
    for (int64_t width = RUN; width < n; width *= 2) {
        for (int64_t a = 0; a < n; a += 2 * width) {
            int64_t m = a + width < n ? a + width : n, e = a + 2 * width < n ? a + 2 * width : n;
            if (m >= e || c[m - 1] <= c[m]) continue;
            int64_t i = a, j = m, o = 0;
            while (i < m && j < e) {
                int take_j = c[j] < c[i];
                int64_t s = take_j ? j++ : i++;
                tc[o] = c[s];
                if (w) tw[o] = w[s];
                o++;
            }
            while (i < m) {
                tc[o] = c[i];
                if (w) tw[o] = w[i];
                o++, i++;
            }
            /* the tail [j, e) is already in place */
            memcpy(c + a, tc, sizeof(int32_t) * (size_t)o);
            if (w) memcpy(w + a, tw, sizeof(float) * (size_t)o);
        }
    }
}

typedef struct {
    int64_t *indptr;
    int32_t *indices;
    float *w;
    int64_t *len; /* [NR]: each row's length after merging repeats */
    int64_t NR, scratch;
    int32_t *tmp_c;
    float *tmp_w;
    atomic_llong next;
    atomic_int tid;
} csr_job;

static void *csr_worker(void *arg) {
    csr_job *j = arg;
    int t = atomic_fetch_add(&j->tid, 1);
    int32_t *tc = j->tmp_c + (int64_t)t * j->scratch;
    float *tw = j->tmp_w ? j->tmp_w + (int64_t)t * j->scratch : NULL;
    for (;;) {
        int64_t r0 = atomic_fetch_add(&j->next, 256);
        if (r0 >= j->NR) break;
        int64_t r1 = r0 + 256 < j->NR ? r0 + 256 : j->NR;
        for (int64_t r = r0; r < r1; r++) {
            int64_t s = j->indptr[r], n = j->indptr[r + 1] - s;
            int32_t *c = j->indices + s;
            float *w = j->w ? j->w + s : NULL;
            int sorted = 1;
            for (int64_t i = 1; i < n && sorted; i++) sorted = c[i - 1] < c[i];
            if (!sorted) sort_row(c, w, n, tc, tw);
            int64_t o = n ? 1 : 0; /* merge repeats */
            for (int64_t i = 1; i < n; i++) {
                if (c[i] == c[o - 1]) {
                    if (w) w[o - 1] += w[i];
                } else {
                    c[o] = c[i];
                    if (w) w[o] = w[i];
                    o++;
                }
            }
            j->len[r] = o;
        }
    }
    return NULL;
}

int cf_als_csr(int64_t *indptr, int32_t *indices, float *wout, int64_t *bad, const int32_t *rows,
               int64_t rstride, const int32_t *cols, int64_t cstride, const float *w, int64_t n,
               int64_t NR, int64_t NC, int n_threads) {
    if (n < 0 || NR < 0 || NC < 0 || rstride < 1 || cstride < 1) return CF_ERR_ARG;
    for (int64_t p = 0; p < n; p++)
        if (rows[p * rstride] < 0 || rows[p * rstride] >= NR || cols[p * cstride] < 0 ||
            cols[p * cstride] >= NC) {
            if (bad) *bad = p;
            return CF_ERR_INDEX;
        }
    if (n_threads < 1) n_threads = 1;
    if (n_threads > CF_MAX_THREADS) n_threads = CF_MAX_THREADS;
    int64_t *len = malloc(sizeof(int64_t) * (size_t)(NR > 0 ? NR : 1));
    if (!len) return CF_ERR_NOMEM;
    /* counting sort by row; the pairs keep their order inside a row */
    memset(indptr, 0, sizeof(int64_t) * (size_t)(NR + 1));
    for (int64_t p = 0; p < n; p++) indptr[rows[p * rstride] + 1]++;
    for (int64_t r = 0; r < NR; r++) indptr[r + 1] += indptr[r];
    int64_t longest = 0;
    for (int64_t r = 0; r < NR; r++) {
        len[r] = indptr[r]; /* the next free position of row r */
        if (indptr[r + 1] - indptr[r] > longest) longest = indptr[r + 1] - indptr[r];
    }
    int32_t *tmp_c = malloc(sizeof(int32_t) * (size_t)(longest * n_threads + 1));
    float *tmp_w = wout ? malloc(sizeof(float) * (size_t)(longest * n_threads + 1)) : NULL;
    if (!tmp_c || (wout && !tmp_w)) {
        free(len);
        free(tmp_c);
        free(tmp_w);
        return CF_ERR_NOMEM;
    }
    for (int64_t p = 0; p < n; p++) {
        int64_t q = len[rows[p * rstride]]++;
        indices[q] = cols[p * cstride];
        if (wout) wout[q] = w ? w[p] : 1.0f;
    }
    csr_job j = {.indptr = indptr, .indices = indices, .w = wout, .len = len, .NR = NR,
                 .scratch = longest, .tmp_c = tmp_c, .tmp_w = tmp_w};
    atomic_init(&j.next, 0);
    atomic_init(&j.tid, 0);
    cf_run_threads(n_threads, csr_worker, &j);
    /* close the gaps the merged repeats left */
    int64_t o = 0;
    for (int64_t r = 0; r < NR; r++) {
        int64_t s = indptr[r];
        if (o != s) {
            memmove(indices + o, indices + s, sizeof(int32_t) * (size_t)len[r]);
            if (wout) memmove(wout + o, wout + s, sizeof(float) * (size_t)len[r]);
        }
        indptr[r] = o;
        o += len[r];
    }
    indptr[NR] = o;
    free(len);
    free(tmp_c);
    free(tmp_w);
    return CF_OK;
}

void cf_als_transpose(int64_t *tindptr, int32_t *tindices, float *twout, const int64_t *indptr,
                      const int32_t *indices, const float *w, int64_t NR, int64_t NC) {
    const int64_t nnz = indptr[NR];
    memset(tindptr, 0, sizeof(int64_t) * (size_t)(NC + 1));
    for (int64_t p = 0; p < nnz; p++) tindptr[indices[p] + 1]++;
    for (int64_t c = 0; c < NC; c++) tindptr[c + 1] += tindptr[c];
    /* rows visited in order, so each transposed row comes out sorted; tindptr[c] serves as
     * row c's write position and is shifted back afterwards */
    for (int64_t r = 0; r < NR; r++)
        for (int64_t p = indptr[r]; p < indptr[r + 1]; p++) {
            int64_t q = tindptr[indices[p]]++;
            tindices[q] = (int32_t)r;
            if (twout) twout[q] = w ? w[p] : 1.0f;
        }
    for (int64_t c = NC; c > 0; c--) tindptr[c] = tindptr[c - 1];
    tindptr[0] = 0;
}

/* ---------------------------------------------------------------- Gramian */

typedef struct {
    float *G;
    double *diag;
    const float *T;
    int64_t N, K;
    double *acc; /* [n_threads][rows of G per thread * K] */
    int64_t per;
    atomic_int tid;
} gram_job;

CF_INLINE void gram_rows_body(double *restrict acc, double *restrict row, const float *restrict T,
                              int64_t N, int64_t K, int64_t a0, int64_t a1) {
    for (int64_t r = 0; r < N; r++) {
        const float *t = T + r * K;
        for (int64_t b = 0; b < K; b++) row[b] = (double)t[b];
        for (int64_t a = a0; a < a1; a++) {
            const double ta = row[a];
            double *g = acc + (a - a0) * K;
            for (int64_t b = 0; b < K; b++) g[b] += ta * row[b];
        }
    }
}
CF_DISPATCH_PROC(static, gram_rows, (double *restrict acc, double *restrict row,
                                     const float *restrict T, int64_t N, int64_t K, int64_t a0,
                                     int64_t a1),
                 (acc, row, T, N, K, a0, a1))

static void *gram_worker(void *arg) {
    gram_job *j = arg;
    for (;;) {
        int t = atomic_fetch_add(&j->tid, 1);
        int64_t a0 = (int64_t)t * j->per;
        if (a0 >= j->K) break;
        int64_t a1 = a0 + j->per < j->K ? a0 + j->per : j->K;
        double *acc = j->acc + (int64_t)t * (j->per + 1) * j->K;
        double *row = acc + (a1 - a0) * j->K;
        memset(acc, 0, sizeof(double) * (size_t)((a1 - a0) * j->K));
        gram_rows(acc, row, j->T, j->N, j->K, a0, a1);
        for (int64_t a = a0; a < a1; a++) {
            for (int64_t b = 0; b < j->K; b++) j->G[a * j->K + b] = (float)acc[(a - a0) * j->K + b];
            j->diag[a] = acc[(a - a0) * j->K + a];
        }
    }
    return NULL;
}

int cf_als_gramian(float *G, double *sq_norm, const float *T, int64_t N, int64_t K,
                   int n_threads) {
    if (N < 0 || K < 1 || K > ((int64_t)1 << 24)) return CF_ERR_ARG; /* K^2 doubles must fit */
    if (n_threads < 1) n_threads = 1;
    if (n_threads > K) n_threads = (int)K;
    int64_t per = (K + n_threads - 1) / n_threads;
    /* each share of `per` rows of G gets per * K accumulators and a K-row buffer */
    const int64_t shares = (K + per - 1) / per;
    double *acc = malloc(sizeof(double) * (size_t)(shares * (per + 1) * K));
    double *diag = malloc(sizeof(double) * (size_t)K);
    if (!acc || !diag) {
        free(acc);
        free(diag);
        return CF_ERR_NOMEM;
    }
    gram_job j = {.G = G, .diag = diag, .T = T, .N = N, .K = K, .acc = acc, .per = per};
    atomic_init(&j.tid, 0);
    cf_run_threads(n_threads, gram_worker, &j);
    double tr = 0.0;
    for (int64_t a = 0; a < K; a++) tr += diag[a];
    if (sq_norm) *sq_norm = tr;
    free(acc);
    free(diag);
    return CF_OK;
}

/* ---------------------------------------------------------------- CG half-step */

typedef struct {
    float *X;
    const float *G, *Y, *w;
    const int64_t *indptr;
    const int32_t *indices;
    int64_t K, row0, row1;
    float alpha, reg;
    int cg_steps;
    double *chunk_obj;
    float *scratch; /* [n_threads][4 K + gath_rows K] */
    int64_t gath_rows;
    atomic_llong next;
    atomic_int tid;
} solve_job;

/* Row arithmetic: 16-lane vectors (vec16.h) when 16 divides K, else plain loops
 * (cf_dot_f32's order: 16 interleaved partial sums combined pairwise). */

/* sum_k a[k] b[k] */
CF_INLINE float dotk(const float *restrict a, const float *restrict b, int64_t K) {
#ifdef CF_VEC16
    if (K % 16 == 0) {
        cf_v16 acc = ld16(a) * ld16(b);
        for (int64_t k = 16; k < K; k += 16) acc += ld16(a + k) * ld16(b + k);
        return hsum16(&acc);
    }
#endif
    return cf_dot_f32(a, b, K);
}

/* out[k] += c * y[k] */
CF_INLINE void axpyk(float *restrict out, float c, const float *restrict y, int64_t K) {
#ifdef CF_VEC16
    if (K % 16 == 0) {
        for (int64_t k = 0; k < K; k += 16) st16(out + k, ld16(out + k) + c * ld16(y + k));
        return;
    }
#endif
    for (int64_t k = 0; k < K; k++) out[k] += c * y[k];
}

/* out = (G + reg I) v, G [K,K] symmetric: sum over a of v[a] * G[a,:] in order */
CF_INLINE void gram_mv(float *restrict out, const float *restrict G, const float *restrict v,
                       float reg, int64_t K) {
    for (int64_t b = 0; b < K; b++) out[b] = reg * v[b];
    for (int64_t a = 0; a < K; a++) axpyk(out, v[a], G + a * K, K);
}

static inline double ddot(const float *a, const float *b, int64_t K) {
    double s = 0.0;
    for (int64_t k = 0; k < K; k++) s += (double)a[k] * (double)b[k];
    return s;
}

/* the CG of als.h on one row; returns f_u(x) - sum_{I(u)} c_ui (tracked). The first pass over
 * the row's items copies their rows to gath [n,K] (when not NULL), which the CG steps then read
 * in order instead of gathering them from Y again. */
CF_INLINE double solve_row_body(float *restrict x, float *restrict scratch, float *restrict gath,
                                const float *restrict G, const float *restrict Y,
                                const int32_t *restrict idx, const float *restrict w, int64_t n,
                                int64_t K, float alpha, float reg, int cg_steps, double *sum_c) {
    float *restrict r = scratch, *restrict p = r + K, *restrict ap = p + K;
    /* r = b - A x with b.x = sum c_i s_i, s_i = y_i.x, taken along for the objective */
    gram_mv(ap, G, x, reg, K);
    for (int64_t k = 0; k < K; k++) r[k] = -ap[k];
    double bx = 0.0, sc = 0.0;
    for (int64_t q = 0; q < n; q++) {
        if (q + 12 < n) CF_PREFETCH_ROW(Y + (int64_t)idx[q + 12] * K, K, 0);
        const float *y = Y + (int64_t)idx[q] * K;
        if (gath) memcpy(gath + q * K, y, sizeof(float) * (size_t)K);
        const float c1 = w ? alpha * w[q] : alpha, c = 1.0f + c1;
        const float s = dotk(y, x, K);
        axpyk(r, c - c1 * s, y, K);
        bx += (double)c * (double)s;
        sc += (double)c;
    }
    *sum_c = sc;
    /* f(x) = x^T A x - 2 b.x = -x.r - b.x, then each step changes it by
     * -2 a (p.r) + a^2 (p.Ap) */
    double f = -ddot(x, r, K) - bx;
    memcpy(p, r, sizeof(float) * (size_t)K);
    float rsold = dotk(r, r, K);
    if (!(rsold >= 1e-20f)) return f;
    for (int it = 0; it < cg_steps; it++) {
        gram_mv(ap, G, p, reg, K);
        if (gath)
            for (int64_t q = 0; q < n; q++) {
                const float *y = gath + q * K;
                const float c1 = w ? alpha * w[q] : alpha;
                axpyk(ap, c1 * dotk(y, p, K), y, K);
            }
        else
            for (int64_t q = 0; q < n; q++) {
                if (q + 12 < n) CF_PREFETCH_ROW(Y + (int64_t)idx[q + 12] * K, K, 0);
                const float *y = Y + (int64_t)idx[q] * K;
                const float c1 = w ? alpha * w[q] : alpha;
                axpyk(ap, c1 * dotk(y, p, K), y, K);
            }
        const float pap = dotk(p, ap, K);
        if (!(pap > 0.0f)) break;
        const float a = rsold / pap;
        f += -2.0 * (double)a * ddot(p, r, K) + (double)a * (double)a * (double)pap;
        axpyk(x, a, p, K);
        axpyk(r, -a, ap, K);
        const float rsnew = dotk(r, r, K);
        if (rsnew < 1e-20f) break;
        const float beta = rsnew / rsold;
        for (int64_t k = 0; k < K; k++) p[k] = r[k] + beta * p[k];
        rsold = rsnew;
    }
    return f;
}
CF_DISPATCH_FN(static, double, solve_row, (float *restrict x, float *restrict scratch,
                                           float *restrict gath, const float *restrict G,
                                           const float *restrict Y, const int32_t *restrict idx,
                                           const float *restrict w, int64_t n, int64_t K,
                                           float alpha, float reg, int cg_steps, double *sum_c),
               (x, scratch, gath, G, Y, idx, w, n, K, alpha, reg, cg_steps, sum_c))

static void *solve_worker(void *arg) {
    solve_job *j = arg;
    const int64_t K = j->K;
    float *scratch = j->scratch + (int64_t)atomic_fetch_add(&j->tid, 1) * (4 + j->gath_rows) * K;
    cf_fp_mode mode = cf_fp_flush_subnormals();
    for (;;) {
        int64_t c = atomic_fetch_add(&j->next, 1);
        int64_t u0 = j->row0 + c * CF_ALS_CHUNK;
        if (u0 >= j->row1) break;
        int64_t u1 = u0 + CF_ALS_CHUNK < j->row1 ? u0 + CF_ALS_CHUNK : j->row1;
        double obj = 0.0;
        for (int64_t u = u0; u < u1; u++) {
            const int64_t s = j->indptr[u], n = j->indptr[u + 1] - s;
            float *x = j->X + u * K;
            if (n == 0) {
                memset(x, 0, sizeof(float) * (size_t)K);
                continue;
            }
            double sum_c;
            double f = solve_row(x, scratch, n <= j->gath_rows ? scratch + 4 * K : NULL, j->G, j->Y,
                                 j->indices + s, j->w ? j->w + s : NULL, n, K, j->alpha, j->reg,
                                 j->cg_steps, &sum_c);
            obj += sum_c + f;
        }
        j->chunk_obj[c] = obj;
    }
    cf_fp_restore(mode);
    return NULL;
}

int cf_als_solve(float *X, double *obj, int64_t *bad, const float *G, const float *Y,
                 const int64_t *indptr, const int32_t *indices, const float *w, int64_t NX,
                 int64_t NY, int64_t K, int64_t row0, int64_t row1, double alpha, double reg,
                 int cg_steps, int n_threads) {
    if (bad) *bad = -1;
    if (K < 1 || NX < 0 || NY < 0 || row0 < 0 || row1 < row0 || row1 > NX || !(alpha > 0) ||
        !isfinite(alpha) || !(reg >= 0) || !isfinite(reg) || cg_steps < 1)
        return CF_ERR_ARG;
    /* everything the rows read is checked before any row is written */
    for (int64_t u = row0; u < row1; u++)
        if (indptr[u + 1] < indptr[u] || indptr[u] < 0) {
            if (bad) *bad = u;
            return CF_ERR_ARG;
        }
    const int64_t p0 = row1 > row0 ? indptr[row0] : 0, p1 = row1 > row0 ? indptr[row1] : 0;
    for (int64_t p = p0; p < p1; p++)
        if (indices[p] < 0 || indices[p] >= NY) {
            if (bad) *bad = p;
            return CF_ERR_INDEX;
        }
    if (w)
        for (int64_t p = p0; p < p1; p++)
            if (!(w[p] >= 0.0f) || !isfinite(w[p])) {
                if (bad) *bad = p;
                return CF_ERR_ARG;
            }
    const int64_t n_chunks = (row1 - row0 + CF_ALS_CHUNK - 1) / CF_ALS_CHUNK;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > CF_MAX_THREADS) n_threads = CF_MAX_THREADS;
    if (n_threads > n_chunks) n_threads = n_chunks > 0 ? (int)n_chunks : 1;
    /* each thread copies a row's item rows once, up to CF_ALS_GATHER_BYTES of them */
    int64_t longest = 0;
    for (int64_t u = row0; u < row1; u++)
        if (indptr[u + 1] - indptr[u] > longest) longest = indptr[u + 1] - indptr[u];
    int64_t gath_rows = CF_ALS_GATHER_BYTES / (int64_t)sizeof(float) / K;
    if (gath_rows > longest) gath_rows = longest;
    double *chunk_obj = malloc(sizeof(double) * (size_t)(n_chunks + 1));
    float *scratch = malloc(sizeof(float) * (size_t)((4 + gath_rows) * K * n_threads));
    if (!scratch && gath_rows > 0) { /* go without the copies */
        gath_rows = 0;
        scratch = malloc(sizeof(float) * (size_t)(4 * K * n_threads));
    }
    if (!chunk_obj || !scratch) {
        free(chunk_obj);
        free(scratch);
        return CF_ERR_NOMEM;
    }
    solve_job j = {.X = X, .G = G, .Y = Y, .w = w, .indptr = indptr, .indices = indices, .K = K,
                   .row0 = row0, .row1 = row1, .alpha = (float)alpha, .reg = (float)reg,
                   .cg_steps = cg_steps, .chunk_obj = chunk_obj, .scratch = scratch,
                   .gath_rows = gath_rows};
    atomic_init(&j.next, 0);
    atomic_init(&j.tid, 0);
    cf_run_threads(n_threads, solve_worker, &j);
    double total = 0.0;
    for (int64_t c = 0; c < n_chunks; c++) total += chunk_obj[c];
    if (obj) *obj = total;
    free(chunk_obj);
    free(scratch);
    return CF_OK;
}
