/* dotbias.c - dot product plus user and item biases, forward and backward.
 *   res_b = <U[u_b], I[i_b]> + bu[u_b] + bi[i_b]
 *   dU[u_b] += g_b I[i_b];  dI[i_b] += g_b U[u_b];  dbu[u_b] += g_b;  dbi[i_b] += g_b
 * The sum over K runs in float, left to right, for each row: the forward runs W rows at once
 * (dot_rows), one row per vector lane, each lane doing its row's additions in that order. */
#include "dotbias.h"
#include "embedding.h"
#include "simd.h"
#include "status.h"
#include "vec16.h"

#define CF_PREFETCH_ROWS 8

/* asks the cache for the rows (and biases) of row b + CF_PREFETCH_ROWS of the batch, if there
 * is one and its ids are in range: random rows, fetched a few ahead (no effect on results) */
CF_INLINE void prefetch_ahead(const float *uw, const float *iw, const float *ub, const float *ib,
                              const int32_t *users, const int32_t *items, int64_t b, int64_t B,
                              int64_t K, int64_t NU, int64_t NI) {
    if (b + CF_PREFETCH_ROWS >= B) return;
    const int32_t un = users[b + CF_PREFETCH_ROWS], in = items[b + CF_PREFETCH_ROWS];
    if ((uint32_t)un >= (uint64_t)NU || (uint32_t)in >= (uint64_t)NI) return;
    CF_PREFETCH_ROW(uw + (int64_t)un * K, K, 0);
    CF_PREFETCH_ROW(iw + (int64_t)in * K, K, 0);
    if (ub) CF_PREFETCH(ub + un, 0);
    if (ib) CF_PREFETCH(ib + in, 0);
}

#ifdef CF_VEC16
/* The forward's sums W rows at a time (W = 8 in the AVX2 version, which the AVX-512 level runs
 * too; 4 in the generic one, SSE or NEON). For a chunk of W factors, p[g] holds row g's W
 * products u[k] * i[k]; transposed, p[j] holds the products of factor k + j of the W rows, and
 * acc += p[0], ..., acc += p[W - 1] is, in lane g, row g's left-to-right sum: the same float
 * operations as one row at a time, so the same bits, with W sums in flight instead of one (a
 * row's sum is a chain of K dependent additions). The last K mod W factors come from the chunk
 * at K - W, its lanes already summed masked to +0: a running sum is never -0 (it starts at
 * +0, and x + y is -0 only when both are), so adding +0 changes nothing. Needs K >= W. */
CF_INLINE void transpose_w4(cf_v4 *p) {
    const cf_v4 t0 = __builtin_shufflevector(p[0], p[1], 0, 4, 1, 5);
    const cf_v4 t1 = __builtin_shufflevector(p[0], p[1], 2, 6, 3, 7);
    const cf_v4 t2 = __builtin_shufflevector(p[2], p[3], 0, 4, 1, 5);
    const cf_v4 t3 = __builtin_shufflevector(p[2], p[3], 2, 6, 3, 7);
    p[0] = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
    p[1] = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
    p[2] = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
    p[3] = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
}
/* pairs interleaved within 128-bit halves, then pairs of pairs, then the halves swapped */
#define CF_LO2(a, b) __builtin_shufflevector(a, b, 0, 8, 1, 9, 4, 12, 5, 13)
#define CF_HI2(a, b) __builtin_shufflevector(a, b, 2, 10, 3, 11, 6, 14, 7, 15)
#define CF_LO4(a, b) __builtin_shufflevector(a, b, 0, 1, 8, 9, 4, 5, 12, 13)
#define CF_HI4(a, b) __builtin_shufflevector(a, b, 2, 3, 10, 11, 6, 7, 14, 15)
#define CF_LO8(a, b) __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11)
#define CF_HI8(a, b) __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15)
CF_INLINE void transpose_w8(cf_v8 *p) {
    const cf_v8 t0 = CF_LO2(p[0], p[1]), t1 = CF_HI2(p[0], p[1]), t2 = CF_LO2(p[2], p[3]),
                t3 = CF_HI2(p[2], p[3]), t4 = CF_LO2(p[4], p[5]), t5 = CF_HI2(p[4], p[5]),
                t6 = CF_LO2(p[6], p[7]), t7 = CF_HI2(p[6], p[7]);
    const cf_v8 s0 = CF_LO4(t0, t2), s1 = CF_HI4(t0, t2), s2 = CF_LO4(t1, t3), s3 = CF_HI4(t1, t3),
                s4 = CF_LO4(t4, t6), s5 = CF_HI4(t4, t6), s6 = CF_LO4(t5, t7), s7 = CF_HI4(t5, t7);
    p[0] = CF_LO8(s0, s4);
    p[1] = CF_LO8(s1, s5);
    p[2] = CF_LO8(s2, s6);
    p[3] = CF_LO8(s3, s7);
    p[4] = CF_HI8(s0, s4);
    p[5] = CF_HI8(s1, s5);
    p[6] = CF_HI8(s2, s6);
    p[7] = CF_HI8(s3, s7);
}
#undef CF_LO2
#undef CF_HI2
#undef CF_LO4
#undef CF_HI4
#undef CF_LO8
#undef CF_HI8
/* out[b] for the rows b < B - B mod W (returned), or -1 at a bad id (an id array changed since
 * it was checked) */
#define CF_DOT_ROWS(W, T, TI)                                                                   \
    CF_INLINE int64_t dot_rows_w##W(float *out, const float *uw, const float *iw,               \
                                    const float *ub, const float *ib, const int32_t *users,     \
                                    const int32_t *items, int64_t B, int64_t K, int64_t NU,     \
                                    int64_t NI) {                                               \
        if (K < W) return 0;                                                                    \
        TI tail; /* the lanes of the chunk at K - W past the whole chunks */                    \
        for (int l = 0; l < W; l++) tail[l] = l >= W - K % W ? -1 : 0;                          \
        int64_t b = 0;                                                                          \
        for (; b + W <= B; b += W) {                                                            \
            const float *u[W], *it[W];                                                          \
            int32_t ui[W], ii[W];                                                               \
            for (int g = 0; g < W; g++) {                                                       \
                ui[g] = users[b + g];                                                           \
                ii[g] = items[b + g];                                                           \
                if (ui[g] < 0 || ui[g] >= NU || ii[g] < 0 || ii[g] >= NI) return -1;            \
                u[g] = uw + (int64_t)ui[g] * K;                                                 \
                it[g] = iw + (int64_t)ii[g] * K;                                                \
                prefetch_ahead(uw, iw, ub, ib, users, items, b + g, B, K, NU, NI);              \
            }                                                                                   \
            T acc = {0}, p[W];                                                                  \
            int64_t k = 0;                                                                      \
            for (; k + W <= K; k += W) {                                                        \
                for (int g = 0; g < W; g++) p[g] = ld_w##W(u[g] + k) * ld_w##W(it[g] + k);      \
                transpose_w##W(p);                                                              \
                for (int j = 0; j < W; j++) acc += p[j];                                        \
            }                                                                                   \
            if (k < K) {                                                                        \
                for (int g = 0; g < W; g++)                                                     \
                    p[g] = (T)((TI)(ld_w##W(u[g] + K - W) * ld_w##W(it[g] + K - W)) & tail);    \
                transpose_w##W(p);                                                              \
                for (int j = 0; j < W; j++) acc += p[j];                                        \
            }                                                                                   \
            if (ub) {                                                                           \
                T v;                                                                            \
                for (int g = 0; g < W; g++) v[g] = ub[ui[g]];                                   \
                acc += v;                                                                       \
            }                                                                                   \
            if (ib) {                                                                           \
                T v;                                                                            \
                for (int g = 0; g < W; g++) v[g] = ib[ii[g]];                                   \
                acc += v;                                                                       \
            }                                                                                   \
            __builtin_memcpy(out + b, &acc, sizeof acc);                                        \
        }                                                                                       \
        return b;                                                                               \
    }
CF_DOT_ROWS(8, cf_v8, cf_v8i)
CF_DOT_ROWS(4, cf_v4, cf_v4i)
#undef CF_DOT_ROWS
CF_INLINE int64_t dot_rows_body(int W, float *out, const float *uw, const float *iw,
                                const float *ub, const float *ib, const int32_t *users,
                                const int32_t *items, int64_t B, int64_t K, int64_t NU, int64_t NI) {
    return W == 8 ? dot_rows_w8(out, uw, iw, ub, ib, users, items, B, K, NU, NI)
                  : dot_rows_w4(out, uw, iw, ub, ib, users, items, B, K, NU, NI);
}
CF_DISPATCH2_LANES_FN(static, int64_t, dot_rows,
                      (float *out, const float *uw, const float *iw, const float *ub,
                       const float *ib, const int32_t *users, const int32_t *items, int64_t B,
                       int64_t K, int64_t NU, int64_t NI),
                      (out, uw, iw, ub, ib, users, items, B, K, NU, NI))
#else
static int64_t dot_rows(float *out, const float *uw, const float *iw, const float *ub,
                        const float *ib, const int32_t *users, const int32_t *items, int64_t B,
                        int64_t K, int64_t NU, int64_t NI) {
    (void)out, (void)uw, (void)iw, (void)ub, (void)ib, (void)users, (void)items, (void)B,
        (void)K, (void)NU, (void)NI;
    return 0;
}
#endif

int cf_dotbias_forward(float *out, const float *uw, const float *iw, const float *ub,
                       const float *ib, const int32_t *users, const int32_t *items,
                       int64_t B, int64_t K, int64_t NU, int64_t NI) {
    if (cf_ids_first_bad(users, B, 1, NU) >= 0 || cf_ids_first_bad(items, B, 1, NI) >= 0)
        return CF_ERR_INDEX;
    int64_t b = dot_rows(out, uw, iw, ub, ib, users, items, B, K, NU, NI);
    if (b < 0) return CF_ERR_INDEX;
    for (; b < B; b++) { /* the rows dot_rows left, one at a time */
        /* each id read once and checked where it is used (the arrays may change under a
         * call that released the GIL; the check above makes a bad call write nothing) */
        const int32_t ui = users[b], ii = items[b];
        if (ui < 0 || ui >= NU || ii < 0 || ii >= NI) return CF_ERR_INDEX;
        const float *u = uw + (int64_t)ui * K;
        const float *it = iw + (int64_t)ii * K;
        prefetch_ahead(uw, iw, ub, ib, users, items, b, B, K, NU, NI);
        float s = 0.0f;
        for (int64_t k = 0; k < K; k++) s += u[k] * it[k];
        if (ub) s += ub[ui];
        if (ib) s += ib[ii];
        out[b] = s;
    }
    return CF_OK;
}

int cf_dotbias_backward(float *duw, float *diw, float *dub, float *dib, const float *dout,
                        const float *uw, const float *iw, const int32_t *users,
                        const int32_t *items, int64_t B, int64_t K, int64_t NU, int64_t NI) {
    if (cf_ids_first_bad(users, B, 1, NU) >= 0 || cf_ids_first_bad(items, B, 1, NI) >= 0)
        return CF_ERR_INDEX;
    for (int64_t b = 0; b < B; b++) {
        int64_t u = users[b], i = items[b];
        if (u < 0 || u >= NU || i < 0 || i >= NI) return CF_ERR_INDEX; /* changed since checked */
        float g = dout[b];
        const float *ur = uw + u * K, *ir = iw + i * K;
        float *du = duw + u * K, *di = diw + i * K;
        for (int64_t k = 0; k < K; k++) {
            du[k] += g * ir[k];
            di[k] += g * ur[k];
        }
        if (dub) dub[u] += g;
        if (dib) dib[i] += g;
    }
    return CF_OK;
}
