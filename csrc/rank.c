/* rank.c - top-n selection over every candidate of a table, for each query vector.
 *   z[q,c] = <qw[q], cw[c]> + qb[q] + cb[c]   (the sum over k in float, left to right,
 *   exactly as cf_dotbias_forward, so a recommended score equals the model's prediction)
 * Blocked like a small GEMM: MU queries x CF_RANK_NJ candidates per register tile, over
 * chunks of the packed candidate panel that stay in cache, each score fed at once into
 * its query's bounded min-heap (the output row itself), so nothing of size Q x NC exists.
 * Not here: threads (the binding releases the GIL; callers split the queries). */
#include <float.h>
#include <math.h>
#include <string.h>
#include "activation.h"
#include "simd.h"
#include "vec16.h"
#include "rank.h"
#include "status.h"
#include "checked.h"

#define NJ CF_RANK_NJ
#define MU 4            /* queries per register tile (score_tile is written for 4) */
#define QB 64           /* queries per block: heap counts, exclusion bounds on the stack */
#define CHUNK_BYTES (128 * 1024) /* packed candidates scored per pass over a query block */

/* Per-instruction-set versions (as simd.h, but AVX2 and generic only: AVX2 measured faster than
 * AVX-512 for these 16-wide tiles, so the AVX-512 level runs the AVX2 version), each with its
 * vector width (8 or 4 lanes, score_tile_w8 / _w4); rank_block's helpers are always inlined
 * into each version (a call from AVX code into baseline code costs more than the work). No FMA
 * contraction (-ffp-contract=off), so both versions give the same bits. Define
 * CF_NO_MULTIVERSION to build the generic version only. */

int64_t cf_rank_panel_size(int64_t NC, int64_t K) {
    int64_t size;
    if (NC < 0 || K < 0 || NC > INT64_MAX - NJ || !cf_mul((NC + NJ - 1) / NJ * NJ, K, &size)) return -1;
    return size;
}

void cf_rank_pack(float *panel, const float *cw, int64_t NC, int64_t K) {
    int64_t n_tiles = (NC + NJ - 1) / NJ;
    for (int64_t t = 0; t < n_tiles; t++) {
        float *p = panel + t * NJ * K;
        for (int64_t j = 0; j < NJ; j++) {
            int64_t c = t * NJ + j;
            if (c < NC)
                for (int64_t k = 0; k < K; k++) p[k * NJ + j] = cw[c * K + k];
            else
                for (int64_t k = 0; k < K; k++) p[k * NJ + j] = 0.0f;
        }
    }
}

/* the index of the lowest set bit of m != 0 */
CF_INLINE int lowest_bit(unsigned m) {
#if defined(__GNUC__)
    return __builtin_ctz(m);
#else
    int j = 0;
    while (!(m >> j & 1)) j++;
    return j;
#endif
}

/* a is a worse pick than b: lower score, or the same score and a larger index */
CF_INLINE int worse(float sa, int32_t ia, float sb, int32_t ib) {
    return sa < sb || (sa == sb && ia > ib);
}

/* min-heap on (score, index) with the worst pick at the root */
CF_INLINE void sift_down(float *s, int32_t *ix, int64_t cnt, int64_t pos) {
    float vs = s[pos];
    int32_t vi = ix[pos];
    for (;;) {
        int64_t c = 2 * pos + 1;
        if (c >= cnt) break;
        if (c + 1 < cnt && worse(s[c + 1], ix[c + 1], s[c], ix[c])) c++;
        if (!worse(s[c], ix[c], vs, vi)) break;
        s[pos] = s[c];
        ix[pos] = ix[c];
        pos = c;
    }
    s[pos] = vs;
    ix[pos] = vi;
}

CF_INLINE void heap_add(float *s, int32_t *ix, int64_t *cnt, int64_t n, float z, int32_t j) {
    if (*cnt < n) {
        int64_t pos = (*cnt)++;
        while (pos > 0) {
            int64_t p = (pos - 1) / 2;
            if (!worse(z, j, s[p], ix[p])) break;
            s[pos] = s[p];
            ix[pos] = ix[p];
            pos = p;
        }
        s[pos] = z;
        ix[pos] = j;
    } else {
        s[0] = z;
        ix[0] = j;
        sift_down(s, ix, n, 0);
    }
}

/* heap -> best first, in place */
CF_INLINE void heap_sort(float *s, int32_t *ix, int64_t cnt) {
    for (int64_t m = cnt - 1; m > 0; m--) {
        float ts = s[0];
        int32_t ti = ix[0];
        s[0] = s[m];
        ix[0] = ix[m];
        s[m] = ts;
        ix[m] = ti;
        sift_down(s, ix, m, 0);
    }
}

typedef struct {
    int32_t *top_idx;
    float *top_score;
    const float *qw, *qb, *panel, *cb;
    const int32_t *order; /* [panel position] -> candidate, or NULL (position = candidate) */
    const int64_t *indptr;
    const int32_t *indices;
    int64_t K, NC, n, first;
    int64_t nnz; /* the exclusion entries as validated: reads stay inside [0, nnz) */
} rank_job;

/* z[u][j] = (sum_k q[u][k] * tile[k][j]) + qb[u] + cb[j], k ascending; the bias terms are
 * skipped when qb / cb is NULL (qb: the biases of the nu queries, the last repeated past nu).
 * bits[u] gets bit j set where z[u][j] >= thr[u], so the caller visits only those
 * candidates; z is written only when some bit is set, or always when store is set.
 * One explicit accumulator row per query so that compilers vectorise over the NJ candidates
 * (unit stride in the panel) and keep the rows in registers. */
CF_INLINE void score_tile(float z[MU][NJ], const float *const q[MU], const float *tile,
                          int64_t K, const float *qb, int nu, const float *cb,
                          const float thr[MU], int store, unsigned bits[MU]) {
    float a0[NJ], a1[NJ], a2[NJ], a3[NJ];
    const float *q0 = q[0], *q1 = q[1], *q2 = q[2], *q3 = q[3];
    for (int j = 0; j < NJ; j++) a0[j] = a1[j] = a2[j] = a3[j] = 0.0f;
    for (int64_t k = 0; k < K; k++) {
        const float *v = tile + k * NJ;
        float s0 = q0[k], s1 = q1[k], s2 = q2[k], s3 = q3[k];
        for (int j = 0; j < NJ; j++) {
            a0[j] += s0 * v[j];
            a1[j] += s1 * v[j];
            a2[j] += s2 * v[j];
            a3[j] += s3 * v[j];
        }
    }
    if (qb)
        for (int j = 0; j < NJ; j++) {
            a0[j] += qb[0];
            a1[j] += qb[1 < nu ? 1 : nu - 1];
            a2[j] += qb[2 < nu ? 2 : nu - 1];
            a3[j] += qb[3 < nu ? 3 : nu - 1];
        }
    if (cb)
        for (int j = 0; j < NJ; j++) {
            a0[j] += cb[j];
            a1[j] += cb[j];
            a2[j] += cb[j];
            a3[j] += cb[j];
        }
    /* bit j of m_u: z[u][j] >= thr[u] (NaN never) */
    unsigned m0 = 0, m1 = 0, m2 = 0, m3 = 0;
    for (int j = 0; j < NJ; j++) {
        m0 |= (unsigned)(a0[j] >= thr[0]) << j;
        m1 |= (unsigned)(a1[j] >= thr[1]) << j;
        m2 |= (unsigned)(a2[j] >= thr[2]) << j;
        m3 |= (unsigned)(a3[j] >= thr[3]) << j;
    }
    bits[0] = m0;
    bits[1] = m1;
    bits[2] = m2;
    bits[3] = m3;
    if ((m0 | m1 | m2 | m3) || store)
        for (int j = 0; j < NJ; j++) {
            z[0][j] = a0[j];
            z[1][j] = a1[j];
            z[2][j] = a2[j];
            z[3][j] = a3[j];
        }
}

#ifdef CF_VEC16
/* score_tile on vectors of W lanes (8: AVX2, 4: SSE / NEON): the same operations lane for
 * lane (each score's sum over k in order, then qb, then cb), written out so that the bias
 * adds, the threshold tests and the stores are a few vector instructions (GCC made hundreds
 * of scalar moves of the plain version's epilogue). The candidates above a query's threshold
 * become bits by the lanes' own bit (bit j for candidate j) and an OR over the lanes: over
 * each query's vectors, then across the four queries at once (a 4 x 4 transpose of ORs). */
#define CF_RANK_TILE(W, T, TI)                                                                   \
    CF_INLINE void score_tile_w##W(float z[MU][NJ], const float *const q[MU], const float *tile, \
                                   int64_t K, const float *qb, int nu, const float *cb,        \
                                   const float thr[MU], int store, unsigned bits[MU]) {         \
        enum { NV = NJ / W };                                                                   \
        T a[MU][NV];                                                                            \
        for (int u = 0; u < MU; u++)                                                            \
            for (int h = 0; h < NV; h++) a[u][h] = (T){0};                                      \
        for (int64_t k = 0; k < K; k++) {                                                       \
            T v[NV];                                                                            \
            for (int h = 0; h < NV; h++) v[h] = ld_w##W(tile + k * NJ + h * W);                 \
            for (int u = 0; u < MU; u++) {                                                      \
                const float s = q[u][k];                                                        \
                for (int h = 0; h < NV; h++) a[u][h] += s * v[h];                               \
            }                                                                                   \
        }                                                                                       \
        if (qb)                                                                                 \
            for (int u = 0; u < MU; u++)                                                        \
                for (int h = 0; h < NV; h++) a[u][h] += qb[u < nu ? u : nu - 1];                \
        if (cb)                                                                                 \
            for (int h = 0; h < NV; h++) {                                                      \
                const T c = ld_w##W(cb + h * W);                                                \
                for (int u = 0; u < MU; u++) a[u][h] += c;                                      \
            }                                                                                   \
        cf_v4i m[MU];                                                                           \
        for (int u = 0; u < MU; u++) {                                                          \
            TI o = (TI){0};                                                                     \
            for (int h = 0; h < NV; h++) {                                                      \
                TI bit;                                                                         \
                for (int l = 0; l < W; l++) bit[l] = 1 << (h * W + l);                          \
                o |= (a[u][h] >= thr[u]) & bit; /* NaN never passes */                           \
            }                                                                                   \
            m[u] = CF_RANK_LOW4_##W(o);                                                         \
        }                                                                                       \
        const cf_v4i x01 = __builtin_shufflevector(m[0], m[1], 0, 4, 1, 5) |                    \
                           __builtin_shufflevector(m[0], m[1], 2, 6, 3, 7);                     \
        const cf_v4i x23 = __builtin_shufflevector(m[2], m[3], 0, 4, 1, 5) |                    \
                           __builtin_shufflevector(m[2], m[3], 2, 6, 3, 7);                     \
        const cf_v4i y = __builtin_shufflevector(x01, x23, 0, 1, 4, 5) |                        \
                         __builtin_shufflevector(x01, x23, 2, 3, 6, 7);                         \
        for (int u = 0; u < MU; u++) bits[u] = (unsigned)y[u];                                  \
        if ((bits[0] | bits[1] | bits[2] | bits[3]) || store)                                   \
            for (int u = 0; u < MU; u++)                                                        \
                for (int h = 0; h < NV; h++) __builtin_memcpy(&z[u][h * W], &a[u][h], sizeof(T)); \
    }
/* the OR of a vector's lanes folded into 4 lanes */
#define CF_RANK_LOW4_8(o) (__builtin_shufflevector(o, o, 0, 1, 2, 3) | __builtin_shufflevector(o, o, 4, 5, 6, 7))
#define CF_RANK_LOW4_4(o) (o)
CF_RANK_TILE(8, cf_v8, cf_v8i)
CF_RANK_TILE(4, cf_v4, cf_v4i)
#undef CF_RANK_TILE
#endif

/* the candidates listed in the sorted exclusion entries [a, b): is c one of them? (a binary
 * search without branches on the data: the last entry <= c) */
CF_INLINE int excluded(const int32_t *ix, int64_t a, int64_t b, int32_t c) {
    int64_t len = b - a;
    if (len <= 0) return 0;
    const int32_t *p = ix + a;
    while (len > 1) {
        const int64_t half = len >> 1;
        p = p[half] <= c ? p + half : p;
        len -= half;
    }
    return *p == c;
}

/* queries [q0, q1), at most QB of them. Panel position p holds candidate order[p] (p without
 * an order): the positions run in order, and a candidate enters a query's heap when it beats
 * the worst kept (a higher score, or the same score and a smaller index), so the result does
 * not depend on the order; an order that puts likely high scores first raises the thresholds
 * early, and fewer candidates pass them. */
CF_INLINE void rank_block_body(int vw, const rank_job *J, int64_t q0, int64_t q1) {
    int64_t cnt[QB], ea[QB], eb[QB];
    for (int64_t q = q0; q < q1; q++) {
        /* clamped to the entries validated: the CSR may change under a call that released
         * the GIL, which can then skip the wrong candidates but never read outside it */
        int64_t a = J->indptr ? J->indptr[q] : 0, b = J->indptr ? J->indptr[q + 1] : 0;
        b = b < 0 ? 0 : b > J->nnz ? J->nnz : b;
        a = a < 0 ? 0 : a > b ? b : a;
        cnt[q - q0] = 0;
        ea[q - q0] = a;
        eb[q - q0] = b;
    }
    const int64_t K = J->K, NC = J->NC, n = J->n;
    int64_t n_tiles = (NC + NJ - 1) / NJ;
    int64_t chunk = CHUNK_BYTES / (int64_t)(NJ * sizeof(float)) / (K > 0 ? K : 1);
    if (chunk < 1) chunk = 1;
    /* without an order, the tiles wholly below first hold no candidate */
    int64_t t_first = J->order ? 0 : J->first / NJ;
    float z[MU][NJ];
    unsigned bits[MU];
    for (int64_t t0 = t_first; t0 < n_tiles; t0 += chunk) {
        int64_t t1 = t0 + chunk < n_tiles ? t0 + chunk : n_tiles;
        for (int64_t qm = q0; qm < q1; qm += MU) {
            const float *q[MU];
            int nu = (int)(q1 - qm < MU ? q1 - qm : MU);
            for (int u = 0; u < MU; u++) q[u] = J->qw + (qm + (u < nu ? u : nu - 1)) * K;
            float thr[MU];
            for (int64_t t = t0; t < t1; t++) {
                int64_t base = t * NJ;
                int jn = (int)(NC - base < NJ ? NC - base : NJ);
                /* a partial last tile adds its item biases below, past the panel's padding */
                int whole = jn == NJ;
                /* a candidate passes at z >= thr: the worst kept score once the heap is full
                 * (a tie may still win by its index), else the lowest finite float (NaN and
                 * -inf never pass); no candidate of a query past nu is visited */
                for (int u = 0; u < MU; u++) {
                    int64_t b = qm + (u < nu ? u : nu - 1) - q0;
                    thr[u] = u < nu && cnt[b] == n ? J->top_score[(q0 + b) * n] : -FLT_MAX;
                }
                const float *tile = J->panel + base * K, *qbp = J->qb ? J->qb + qm : NULL;
                const float *cbp = whole && J->cb ? J->cb + base : NULL;
#ifdef CF_VEC16
                if (vw == 8) score_tile_w8(z, q, tile, K, qbp, nu, cbp, thr, !whole, bits);
                else if (vw == 4) score_tile_w4(z, q, tile, K, qbp, nu, cbp, thr, !whole, bits);
                else
#endif
                    score_tile(z, q, tile, K, qbp, nu, cbp, thr, !whole, bits);
                if (!whole)
                    for (int u = 0; u < nu; u++) {
                        bits[u] = 0;
                        for (int j = 0; j < jn; j++) {
                            if (J->cb) z[u][j] += J->cb[base + j];
                            if (z[u][j] >= thr[u]) bits[u] |= 1u << j;
                        }
                    }
                for (int u = 0; u < nu; u++) {
                    if (!bits[u]) continue;
                    int64_t qq = qm + u, b = qq - q0;
                    float *hs = J->top_score + qq * n;
                    int32_t *hi = J->top_idx + qq * n;
                    for (unsigned m = bits[u]; m; m &= m - 1) {   /* the set bits, lowest first */
                        int j = lowest_bit(m);
                        const float zj = z[u][j];
                        const int32_t c = J->order ? J->order[base + j] : (int32_t)(base + j);
                        /* better than the worst kept (ties to the smaller index) */
                        if (cnt[b] == n && !worse(hs[0], hi[0], zj, c)) continue;
                        if (c < J->first || excluded(J->indices, ea[b], eb[b], c)) continue;
                        heap_add(hs, hi, &cnt[b], n, zj, c);
                        if (cnt[b] == n) thr[u] = hs[0];
                    }
                }
            }
        }
    }
    for (int64_t q = q0; q < q1; q++) {
        float *hs = J->top_score + q * n;
        int32_t *hi = J->top_idx + q * n;
        int64_t c = cnt[q - q0];
        heap_sort(hs, hi, c);
        for (int64_t m = c; m < n; m++) {
            hs[m] = NAN;
            hi[m] = -1;
        }
    }
}
CF_DISPATCH2_LANES_(static, void, , rank_block, (const rank_job *J, int64_t q0, int64_t q1), (J, q0, q1))

int cf_rank_dot_topk(int32_t *top_idx, float *top_score, const float *qw, const float *qb,
                     const float *panel, const int32_t *order, const float *cb,
                     const int64_t *excl_indptr,
                     const int32_t *excl_indices, int64_t Q, int64_t K, int64_t NC, int64_t n,
                     int64_t first, int has_range, float lo, float hi) {
    if (n < 1 || NC < 1 || K < 1 || first < 0 || first > NC || NC > INT32_MAX) return CF_ERR_ARG;
    if ((excl_indptr == NULL) != (excl_indices == NULL)) return CF_ERR_ARG;
    int64_t nnz = 0;
    if (excl_indptr) {
        if (excl_indptr[0] < 0) return CF_ERR_ARG;
        nnz = excl_indptr[Q];
        for (int64_t q = 0; q < Q; q++) {
            if (excl_indptr[q + 1] < excl_indptr[q]) return CF_ERR_ARG;
            for (int64_t e = excl_indptr[q]; e < excl_indptr[q + 1]; e++) {
                int32_t c = excl_indices[e];
                if (c < 0 || c >= NC) return CF_ERR_ARG;
                if (e > excl_indptr[q] && c < excl_indices[e - 1]) return CF_ERR_ARG;
            }
        }
    }
    if (order)
        for (int64_t p = 0; p < NC; p++)
            if (order[p] < 0 || order[p] >= NC) return CF_ERR_ARG;
    rank_job J = {top_idx, top_score, qw, qb, panel, cb, order, excl_indptr, excl_indices,
                  K, NC, n, first, nnz};
    for (int64_t q0 = 0; q0 < Q; q0 += QB) rank_block(&J, q0, q0 + QB < Q ? q0 + QB : Q);
    if (has_range)
        for (int64_t q = 0; q < Q; q++) {
            float *s = top_score + q * n;
            int64_t m = 0;
            while (m < n && top_idx[q * n + m] >= 0) m++;
            cf_sigmoid_range_forward(s, s, m, lo, hi);
        }
    return CF_OK;
}
