/* sparse.c - per-rating SGD / row-wise Adagrad / lazy Adam for the dot-product models over
 * a grid of blocks, with LibMF's scheduling on pthreads: a mutex hands each thread a block
 * whose user group and item group no other thread holds, in the order of the given strata
 * as far as the blocks' dependencies allow (see cf_dot_fit_blocks in sparse.h). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "fpmode.h"
#include "simd.h"
#include "fexp.h"
#include "vec16.h"
#include "sparse.h"
#include "status.h"
#include "checked.h"
#include "threads.h"

/* GCC (12) warns that the second rating of rate_two may be used uninitialized: it is used only
 * when rate_err returned RATE_OK, which it does only after filling it in, but GCC loses that
 * through the inlined status codes. Zeroing it would add stores to the hot loop for nothing,
 * so the (false) warning is silenced for this file only: diagnostics, no change to the code. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

typedef struct {
    float *params;
    cf_sparse_opt *opt;
    double *block_loss;
    const int32_t *x;
    const float *y;
    const int64_t *starts, *blocks;
    int64_t nb, n_sel;
    const double *lrs, *moms;
    const cf_dot_config *cfg;
    pthread_mutex_t lock;
    pthread_cond_t turn;
    unsigned char *state; /* [n_sel]: 0 not started, 1 running, 2 done */
    int64_t *dep;         /* [2 n_sel]: the positions block k waits for (its user group's and
                           * its item group's last earlier block), or -1 */
    int64_t next;         /* the first position not started */
    int64_t bad;          /* first block with a non-finite error or a bad id, or n_sel */
    int64_t bad_row;      /* the row of the first bad id found while training (x changed
                           * since it was checked, or rows outside their block), or -1 */
    int nomem;
} sparse_job;


#ifdef CF_VEC16
/* The rows as chunks of 16 lanes: the whole ones, then, if 16 does not divide n (n >= 16),
 * the chunk at n - 16 that ends the row, whose lanes of the last whole chunk the sums mask
 * out (tm: the lanes it adds) */
#define mask16(v, tm) ((cf_v16)((cf_v16i)(v) & *(const cf_v16i *)(tm)))
#endif
/* A version compiled for rows of nc chunks (nc > 0: 16 (nc - 1) < n <= 16 nc) takes the
 * whole chunks up to CF_WHOLE(nc), a constant, so its loops over the chunks unroll, and always
 * ends with the chunk at n - 16, whose mask then keeps all 16 lanes when 16 divides n (adding
 * or storing the same values as the last whole chunk would); nc = 0: any n, chunk by chunk */
#define CF_WHOLE(nc) ((int64_t)16 * ((nc) - 1))

/* sum_f a[f] b[f]: 16 lanes chunk by chunk, reduced pairwise (rows shorter than 16: the
 * first n lanes) */
CF_INLINE float row_dot16(const float *restrict a, const float *restrict b, int64_t n,
                          const void *tail, int nc) {
#ifdef CF_VEC16
    if (nc || n >= 16) {
        cf_v16 acc = ld16(a) * ld16(b);
        int64_t f = 16;
        for (; nc ? f < CF_WHOLE(nc) : f + 16 <= n; f += 16) acc += ld16(a + f) * ld16(b + f);
        if (nc || f < n) acc += mask16(ld16(a + n - 16) * ld16(b + n - 16), tail);
        return hsum16(&acc);
    }
#endif
    (void)tail;
    (void)nc;
    return cf_dot_f32(a, b, n);
}

/* row_dot(a, b) and, in the same pass, *aa = sum_f a[f]^2 and *bb = sum_f b[f]^2 (summed
 * the same way) */
CF_INLINE float row_dot3_16(const float *restrict a, const float *restrict b, int64_t n,
                            const void *tail, int nc, float *aa, float *bb) {
#ifdef CF_VEC16
    if (nc || n >= 16) {
        cf_v16 va = ld16(a), vb = ld16(b);
        cf_v16 ab = va * vb, a2 = va * va, b2 = vb * vb;
        int64_t f = 16;
        for (; nc ? f < CF_WHOLE(nc) : f + 16 <= n; f += 16) {
            va = ld16(a + f);
            vb = ld16(b + f);
            ab += va * vb;
            a2 += va * va;
            b2 += vb * vb;
        }
        if (nc || f < n) {
            va = ld16(a + n - 16);
            vb = ld16(b + n - 16);
            ab += mask16(va * vb, tail);
            a2 += mask16(va * va, tail);
            b2 += mask16(vb * vb, tail);
        }
        *aa = hsum16(&a2);
        *bb = hsum16(&b2);
        return hsum16(&ab);
    }
#endif
    (void)tail;
    (void)nc;
    *aa = cf_dot_f32(a, a, n);
    *bb = cf_dot_f32(b, b, n);
    return cf_dot_f32(a, b, n);
}

/* pu -= cu (dz qi + wd pu), qi -= ci (dz pu + wd qi), from the values before the update (the
 * chunk that ends the row is computed from them first, and stores the same values again in
 * the lanes it shares with the chunk before) */
CF_INLINE void scaled_step16(float *restrict pu, float *restrict qi, float dz, float wd,
                               float cu, float ci, int64_t n, int nc) {
    int64_t f = 0;
    (void)nc;
#ifdef CF_VEC16
    if (nc || n >= 16) {
        const cf_v16 oa = ld16(pu + n - 16), ob = ld16(qi + n - 16);
        const cf_v16 ta = oa - cu * (dz * ob + wd * oa), tb = ob - ci * (dz * oa + wd * ob);
        for (; nc ? f < CF_WHOLE(nc) : f + 16 <= n; f += 16) {
            cf_v16 a = ld16(pu + f), b = ld16(qi + f);
            st16(pu + f, a - cu * (dz * b + wd * a));
            st16(qi + f, b - ci * (dz * a + wd * b));
        }
        if (nc || f < n) {
            st16(pu + n - 16, ta);
            st16(qi + n - 16, tb);
        }
        return;
    }
#endif
    for (; f < n; f++) {
        float a = pu[f], b = qi[f];
        pu[f] = a - cu * (dz * b + wd * a);
        qi[f] = b - ci * (dz * a + wd * b);
    }
}

#ifdef CF_VEC16
/* The same sums and steps on vectors of W = 8 lanes (two per 16-lane chunk: the AVX2 version)
 * or 4 (four per chunk: SSE, NEON), lane for lane the same operations as the 16-lane code, so
 * the same bits: a 16-lane vector is no register there, and GCC then keeps it in memory,
 * which stored and reloaded every accumulator on every trip of the loops over the factors.
 * The sums keep the 16 lanes and their pairwise reduction (lanes l and l + 8, then l and
 * l + 4, ...); the steps are element-wise, so they run W lanes at a time and end with scalar
 * code (the same float operations). */
CF_INLINE float hsum_w8(const cf_v8 *acc) {
    const cf_v8 b = acc[0] + acc[1];
    cf_v4 c = __builtin_shufflevector(b, b, 0, 1, 2, 3) + __builtin_shufflevector(b, b, 4, 5, 6, 7);
    return (c[0] + c[2]) + (c[1] + c[3]);
}
CF_INLINE float hsum_w4(const cf_v4 *acc) {
    const cf_v4 c = (acc[0] + acc[2]) + (acc[1] + acc[3]);
    return (c[0] + c[2]) + (c[1] + c[3]);
}
/* Part h (lanes [h W, h W + W)) of the chunk at n - 16 lies wholly in the whole chunks that end
 * at f, so its mask is 0 in every lane and the 16-lane code adds +0 there. Adding +0 changes a
 * sum only when it is -0 (to +0). The sums of squares are never -0 (x * x is +0 at zero), so the
 * part is skipped for them. A dot product's sign at zero matters only without a y_range: with
 * one, the prediction is a sigmoid of it (exp(-0) = exp(+0) = 1), and Adagrad's norm adds
 * 2 dz wd (pu . qi) to dz^2 |qi|^2 >= +0, where +0 + -0 = +0. So the kernels for models
 * with biases and a y_range (CF_BR, the argument range) skip the part, and the others add a +0
 * vector (one add instead of two loads, a multiply and a mask; no test of the model's y_range
 * on every rating). For rows of 49 to 56 factors (fastai's 50) that is the lower half of the
 * last chunk in the 8-lane version, three quarters of it in the 4-lane one at 50. */
#define CF_MASKED_PART(n, f, h, W) ((n) - 16 + ((h) + 1) * (W) <= (f))
#define CF_SPLIT_LANES(W, T, TI)                                                                 \
    /* lanes [h W, h W + W) of the 16-lane mask tm */                                            \
    CF_INLINE T mask_w##W(T v, const void *tm, int h) {                                          \
        TI m;                                                                                    \
        __builtin_memcpy(&m, (const int32_t *)tm + h * W, sizeof m);                             \
        return (T)((TI)v & m);                                                                   \
    }                                                                                            \
    CF_INLINE float row_dot_w##W(const float *restrict a, const float *restrict b, int64_t n,    \
                                 const void *tail, int nc, int range) {                          \
        T acc[16 / W];                                                                           \
        for (int h = 0; h < 16 / W; h++) acc[h] = ld_w##W(a + h * W) * ld_w##W(b + h * W);       \
        int64_t f = 16;                                                                          \
        for (; nc ? f < CF_WHOLE(nc) : f + 16 <= n; f += 16)                                     \
            for (int h = 0; h < 16 / W; h++)                                                     \
                acc[h] += ld_w##W(a + f + h * W) * ld_w##W(b + f + h * W);                       \
        if (nc || f < n)                                                                         \
            for (int h = 0; h < 16 / W; h++) {                                                   \
                if (CF_MASKED_PART(n, f, h, W)) {                                                \
                    if (!range) acc[h] += (T){0}; /* the masked part's +0 (see CF_MASKED_PART) */ \
                    continue;                                                                    \
                }                                                                                \
                acc[h] += mask_w##W(ld_w##W(a + n - 16 + h * W) * ld_w##W(b + n - 16 + h * W),  \
                                    tail, h);                                                    \
            }                                                                                    \
        return hsum_w##W(acc);                                                                   \
    }                                                                                            \
    CF_INLINE float row_dot3_w##W(const float *restrict a, const float *restrict b, int64_t n,   \
                                  const void *tail, int nc, int range, float *aa, float *bb) {   \
        T ab[16 / W], a2[16 / W], b2[16 / W];                                                    \
        for (int h = 0; h < 16 / W; h++) {                                                       \
            const T va = ld_w##W(a + h * W), vb = ld_w##W(b + h * W);                            \
            ab[h] = va * vb;                                                                     \
            a2[h] = va * va;                                                                     \
            b2[h] = vb * vb;                                                                     \
        }                                                                                        \
        int64_t f = 16;                                                                          \
        for (; nc ? f < CF_WHOLE(nc) : f + 16 <= n; f += 16)                                     \
            for (int h = 0; h < 16 / W; h++) {                                                   \
                const T va = ld_w##W(a + f + h * W), vb = ld_w##W(b + f + h * W);                \
                ab[h] += va * vb;                                                                \
                a2[h] += va * va;                                                                \
                b2[h] += vb * vb;                                                                \
            }                                                                                    \
        if (nc || f < n)                                                                         \
            for (int h = 0; h < 16 / W; h++) {                                                   \
                if (CF_MASKED_PART(n, f, h, W)) {                                                \
                    if (!range) ab[h] += (T){0}; /* (squares are never -0: nothing to add) */    \
                    continue;                                                                    \
                }                                                                                \
                const T va = ld_w##W(a + n - 16 + h * W), vb = ld_w##W(b + n - 16 + h * W);      \
                ab[h] += mask_w##W(va * vb, tail, h);                                            \
                a2[h] += mask_w##W(va * va, tail, h);                                            \
                b2[h] += mask_w##W(vb * vb, tail, h);                                            \
            }                                                                                    \
        *aa = hsum_w##W(a2);                                                                     \
        *bb = hsum_w##W(b2);                                                                     \
        return hsum_w##W(ab);                                                                    \
    }                                                                                            \
    /* as scaled_step16: the chunk that ends the row first, from the values before the update */ \
    CF_INLINE void scaled_step_w##W(float *restrict pu, float *restrict qi, float dz, float wd,  \
                                    float cu, float ci, int64_t n, int nc) {                     \
        int64_t f = 0;                                                                           \
        if (nc || n >= W) {                                                                      \
            const T oa = ld_w##W(pu + n - W), ob = ld_w##W(qi + n - W);                          \
            const T ta = oa - cu * (dz * ob + wd * oa), tb = ob - ci * (dz * oa + wd * ob);      \
            for (; f + W <= n; f += W) {                                                         \
                const T a = ld_w##W(pu + f), b = ld_w##W(qi + f);                                \
                const T na = a - cu * (dz * b + wd * a), nb = b - ci * (dz * a + wd * b);        \
                __builtin_memcpy(pu + f, &na, sizeof na);                                        \
                __builtin_memcpy(qi + f, &nb, sizeof nb);                                        \
            }                                                                                    \
            if (f < n) {                                                                         \
                __builtin_memcpy(pu + n - W, &ta, sizeof ta);                                    \
                __builtin_memcpy(qi + n - W, &tb, sizeof tb);                                    \
            }                                                                                    \
            return;                                                                              \
        }                                                                                        \
        for (; f < n; f++) {                                                                     \
            const float a = pu[f], b = qi[f];                                                    \
            pu[f] = a - cu * (dz * b + wd * a);                                                  \
            qi[f] = b - ci * (dz * a + wd * b);                                                  \
        }                                                                                        \
    }
CF_SPLIT_LANES(8, cf_v8, cf_v8i)
CF_SPLIT_LANES(4, cf_v4, cf_v4i)
#undef CF_SPLIT_LANES
#endif

/* the sums and the step at vector width vw (a constant in each version: CF_LANES of simd.h) */
CF_INLINE float row_dot(int vw, int nc, const float *restrict a, const float *restrict b,
                        int64_t n, const void *tail, int range) {
#ifdef CF_VEC16
    if ((nc || n >= 16) && vw == 8) return row_dot_w8(a, b, n, tail, nc, range);
    if ((nc || n >= 16) && vw == 4) return row_dot_w4(a, b, n, tail, nc, range);
#endif
    return row_dot16(a, b, n, tail, nc);
}
CF_INLINE float row_dot3(int vw, int nc, const float *restrict a, const float *restrict b,
                         int64_t n, const void *tail, int range, float *aa, float *bb) {
#ifdef CF_VEC16
    if ((nc || n >= 16) && vw == 8) return row_dot3_w8(a, b, n, tail, nc, range, aa, bb);
    if ((nc || n >= 16) && vw == 4) return row_dot3_w4(a, b, n, tail, nc, range, aa, bb);
#endif
    return row_dot3_16(a, b, n, tail, nc, aa, bb);
}
CF_INLINE void scaled_step(int vw, int nc, float *restrict pu, float *restrict qi, float dz,
                           float wd, float cu, float ci, int64_t n) {
#ifdef CF_VEC16
    if (vw == 8) {
        scaled_step_w8(pu, qi, dz, wd, cu, ci, n, nc);
        return;
    }
    if (vw == 4) {
        scaled_step_w4(pu, qi, dz, wd, cu, ci, n, nc);
        return;
    }
#endif
    scaled_step16(pu, qi, dz, wd, cu, ci, n, nc);
}

/* Adam's moments and step for the K factors of both rows of a rating (gradients as in
 * rate_one); a function of its own, where the compiler vectorises the loop */
CF_INLINE void adam_rows_body(float *restrict pu, float *restrict qi, float *restrict mu,
                              float *restrict vu, float *restrict mi, float *restrict vi, float dz,
                              float wd, float b1, float b2, float au, float su, float ai, float si,
                              float e, int64_t K) {
    const float c1 = 1.0f - b1, c2 = 1.0f - b2;
    /* two passes, the moments, then the rows (which the first leaves as they were): one pass
     * needs 11 constants at once, more than AVX2's and SSE's 16 registers hold beside its values */
    for (int64_t f = 0; f < K; f++) {
        const float a = pu[f], b = qi[f];
        const float gu = dz * b + wd * a, gi = dz * a + wd * b;
        mu[f] = b1 * mu[f] + c1 * gu;
        vu[f] = b2 * vu[f] + c2 * (gu * gu);
        mi[f] = b1 * mi[f] + c1 * gi;
        vi[f] = b2 * vi[f] + c2 * (gi * gi);
    }
    for (int64_t f = 0; f < K; f++) {
        pu[f] = pu[f] - au * mu[f] / (sqrtf(vu[f]) * su + e);
        qi[f] = qi[f] - ai * mi[f] / (sqrtf(vi[f]) * si + e);
    }
}
CF_DISPATCH_PROC(static, adam_rows, (float *restrict pu, float *restrict qi, float *restrict mu,
                                     float *restrict vu, float *restrict mi, float *restrict vi,
                                     float dz, float wd, float b1, float b2, float au, float su,
                                     float ai, float si, float e, int64_t K),
                 (pu, qi, mu, vu, mi, vi, dz, wd, b1, b2, au, su, ai, si, e, K))

/* item i of the block (i = ig + nb t) -> slot t, by a multiply (exact for i < 2^31) */
typedef struct {
    uint64_t m;
    int s;
    int64_t nb;
} slot_div;

/* Granlund-Montgomery: with l = ceil(log2 nb) and m = floor(2^(32+l) / nb) + 1,
 * floor(i / nb) = (i m) >> (32 + l) for all i < 2^32, and i m < 2^64 for i < 2^31. A grid
 * of more than 2^30 groups (never in practice) divides (s = -1). */
static slot_div slot_div_make(int64_t nb) {
    int l = 0;
    while (l < 62 && ((int64_t)1 << l) < nb) l++;
    slot_div d = {(uint64_t)nb, -1, nb};
    if (l <= 30) {
        d.m = ((uint64_t)1 << (32 + l)) / (uint64_t)nb + 1;
        d.s = 32 + l;
    }
    return d;
}

CF_INLINE int64_t slot_of(slot_div d, int32_t i) {
    return d.s < 0 ? (int64_t)((uint64_t)i / d.m) : (int64_t)(((uint64_t)i * d.m) >> d.s);
}

/* slot_of for a grid of at most 2^30 groups (cf_dot_fit_blocks refuses more): a multiply */
CF_INLINE int64_t slot_mul(slot_div d, int32_t i) { return (int64_t)(((uint64_t)(uint32_t)i * d.m) >> d.s); }

/* what every rating of a block needs */
typedef struct {
    float *U, *I, *BU, *BI;
    const cf_sparse_opt *o;
    const int32_t *x;
    const float *y;
    int64_t K, NU, NI;
    int64_t ug, ig; /* the block's user and item groups: every rating's ids must be in them */
    uint32_t nu32, ni32; /* NU, NI capped to 2^31: an id (as unsigned) below them is in range */
    float lr, wd, span, lo;
    double beta1; /* Adam: this block's scheduled first-moment decay */
    int has_range;
    slot_div d;
    /* SGD and Adagrad: the block's item rows, and the optimizer state and biases of its
     * items and users, copied to the thread by slot for the block (the rows of the blocks
     * other threads train share cache lines with them) */
    float *Ip;
    const int64_t *lastv; /* the lanes' last rows of each item slot (see lane) */
    /* [slot][3]: an item's or a user's Adagrad accumulator, its bias's, and its bias, side by
     * side (one base pointer a row for a rating) */
    float *ist, *ust;
#ifdef CF_VEC16
    cf_v16i tail; /* the lanes of the chunk at K - 16 that no whole chunk holds */
#endif
} block_ctx;

#ifdef CF_VEC16
#define CF_TAIL(c) (&(c)->tail)
#else
#define CF_TAIL(c) NULL
#endif

#ifdef CF_VEC16
/* lane-wise square root: one SQRTPS on x86 (IEEE, the same as four sqrtf) */
CF_INLINE cf_v4 sqrt4(cf_v4 v) {
#if defined(__x86_64__) && !defined(__clang__)
    return __builtin_ia32_sqrtps(v);
#else
    cf_v4 s = {sqrtf(v[0]), sqrtf(v[1]), sqrtf(v[2]), sqrtf(v[3])};
    return s;
#endif
}
#endif

/* One lane of a block: the rows [r, end) of one user. Up to CF_LANES lanes hold as many
 * users (taken in row order), and run_rows runs two of their ratings at a time; a rating of a
 * later user runs before rows of the earlier users only when its item is none of their
 * remaining items, so it shares no row with them and the result is that of row order.
 * Each id is read from x once and checked before it indexes anything (inside the tables and
 * in the block's groups, so no other thread's rows), whatever x holds by then (it may have
 * changed since cf_dot_fit_blocks checked it, or not be grouped as starts says): the user
 * when the lane takes it (all its rows are the rows that follow with the same id), an item
 * when the lane reaches the row before it (its slot then prefetched). */
typedef struct {
    int64_t r, end;
    int64_t *last; /* [CF_LANES item slot]: the last row of the lane's users that rates the
                    * item (the lanes' entries of an item side by side, in one cache line) */
    int64_t u, su; /* the user and its slot */
    int64_t s, s_next; /* the item slots of rows r and r + 1 (-1: an id outside the table or the
                        * block, or, for row r, a user outside them) */
} lane;
/* the lanes of run_rows */
#define CF_LANES 4

/* One rating (the lane's row r), in two parts: rate_err measures its error before the update
 * (returns 1 on a non-finite error), rate_apply then updates its user row and item row (and
 * biases, and their optimizer state) at learning rate lr. g_pu = dz qi + wd pu, g_qi = dz pu
 * + wd qi, g_b = dz + wd b, all from the values before the update. kind is a constant after
 * inlining: one loop per optimizer. */
typedef struct {
    int64_t u, i, s, su; /* s, su: the item's and the user's slots */
    float err, dz;
    float ab, aa, bb; /* Adagrad: pu . qi, |pu|^2, |qi|^2 */
} rating;

/* The kernels' kind argument: the optimizer (CF_SPARSE_*), plus CF_BR when the model is
 * known to have biases and a y_range (the lesson's shape; a version of its own, without the
 * tests of both on every rating) */
enum { CF_BR = 4 };
#define CF_KIND(kind_br) ((kind_br) & 3)
/* and, in bits 3 and up, the chunks of a row when the version is compiled for one count (see
 * CF_WHOLE), or 0 */
#define CF_NC_SHIFT 3
#define CF_NC(kind_br) ((kind_br) >> CF_NC_SHIFT)
#define CF_BIAS(kind_br, c) (((kind_br) & CF_BR) || (c)->BU != NULL)
#define CF_RANGE(kind_br, c) (((kind_br) & CF_BR) || (c)->has_range)

/* what rate_err returns: applied, a non-finite error, an id outside the tables or the block */
enum { RATE_OK = 0, RATE_NONFINITE = 1, RATE_INDEX = 2 };

CF_INLINE int rate_err(const block_ctx *c, int kind_br, int vw, const lane *l, rating *t) {
    const int kind = CF_KIND(kind_br), bias = CF_BIAS(kind_br, c), range = CF_RANGE(kind_br, c);
    if (l->s < 0) return RATE_INDEX;
    const int64_t K = c->K, u = l->u, s = l->s, su = l->su, i = c->ig + s * c->d.nb, r = l->r;
    const int priv = kind != CF_SPARSE_ADAM;
    const float *pu = c->U + u * K, *qi = priv ? c->Ip + s * K : c->I + i * K;
    float z;
    if (kind == CF_SPARSE_ADAGRAD) {
        z = row_dot3(vw, CF_NC(kind_br), pu, qi, K, CF_TAIL(c), kind_br & CF_BR, &t->aa, &t->bb);
        t->ab = z;
    } else {
        z = row_dot(vw, CF_NC(kind_br), pu, qi, K, CF_TAIL(c), kind_br & CF_BR);
    }
    if (bias) z += priv ? c->ust[3 * su + 2] + c->ist[3 * s + 2] : c->BU[u] + c->BI[i];
    float pred = z, dpred = 1.0f;
    if (range) {
        /* the FMA versions inline the same expf (fexp.h): no call, no registers saved */
        float sg = 1.0f / (1.0f + (vw >= 8 ? cf_expf_fma(-z) : expf(-z)));
        pred = sg * c->span + c->lo;
        dpred = c->span * sg * (1.0f - sg);
    }
    float err = pred - c->y[r];
    t->u = u;
    t->i = i;
    t->s = s;
    t->su = su;
    t->err = err;
    t->dz = 2.0f * err * dpred;
    return !isfinite(err); /* RATE_OK or RATE_NONFINITE */
}

CF_INLINE void rate_apply(const block_ctx *c, int kind_br, int vw, const rating *t) {
    const int kind = CF_KIND(kind_br), bias = CF_BIAS(kind_br, c);
    const int64_t K = c->K, u = t->u, i = t->i;
    const int64_t ru = u, ri = c->NU + i;
    const int priv = kind != CF_SPARSE_ADAM;
    float *restrict pu = c->U + u * K, *restrict qi = priv ? c->Ip + t->s * K : c->I + i * K;
    float *bu = bias ? (priv ? c->ust + 3 * t->su + 2 : c->BU + u) : NULL;
    float *bi = bias ? (priv ? c->ist + 3 * t->s + 2 : c->BI + i) : NULL;
    const float lr = c->lr, wd = c->wd, dz = t->dz;
    const cf_sparse_opt *o = c->o;
    float gbu = bias ? dz + wd * *bu : 0.0f, gbi = bias ? dz + wd * *bi : 0.0f;
    if (kind == CF_SPARSE_SGD) {
        scaled_step(vw, CF_NC(kind_br), pu, qi, dz, wd, lr, lr, K);
        if (bias) {
            *bu -= lr * gbu;
            *bi -= lr * gbi;
        }
    } else if (kind == CF_SPARSE_ADAGRAD) {
        float *acc_u = c->ust + 3 * t->su, *acc_bu = acc_u + 1;
        float *acc_i = c->ist + 3 * t->s, *acc_bi = acc_i + 1;
        const float e = (float)o->eps;
        /* sum_f (dz qi + wd pu)^2 = dz^2 |qi|^2 + 2 dz wd pu.qi + wd^2 |pu|^2, from the norms
         * measured with the dot product: off the chain from one rating of a user to the next */
        const float cross = 2.0f * dz * wd * t->ab;
        float su = dz * dz * t->bb + cross + wd * wd * t->aa;
        float si = dz * dz * t->aa + cross + wd * wd * t->bb;
        su = su > 0.0f ? su : 0.0f; /* rounding can leave a tiny negative */
        si = si > 0.0f ? si : 0.0f;
        const float au = *acc_u + su / (float)K, ai = *acc_i + si / (float)K;
        *acc_u = au;
        *acc_i = ai;
#ifdef CF_VEC16
        /* the four steps' divisions and square roots at once, lane-wise (same values) */
        /* num = lr {1, 1, gbu, gbi}: lr itself in lanes 0 and 1 (lr * 1 is lr) */
        cf_v4 a = {au, ai, 1.0f, 1.0f}, g = {1.0f, 1.0f, 0.0f, 0.0f};
        if (bias) {
            a[2] = *acc_bu + gbu * gbu;
            a[3] = *acc_bi + gbi * gbi;
            *acc_bu = a[2];
            *acc_bi = a[3];
            g[2] = gbu;
            g[3] = gbi;
        }
        cf_v4 step = (lr * g) / sqrt4(a + e);
        scaled_step(vw, CF_NC(kind_br), pu, qi, dz, wd, step[0], step[1], K);
        if (bias) {
            *bu -= step[2];
            *bi -= step[3];
        }
#else
        scaled_step(vw, CF_NC(kind_br), pu, qi, dz, wd, lr / sqrtf(au + e), lr / sqrtf(ai + e), K);
        if (bias) {
            const float abu = *acc_bu + gbu * gbu, abi = *acc_bi + gbi * gbi;
            *acc_bu = abu;
            *acc_bi = abi;
            *bu -= lr * gbu / sqrtf(abu + e);
            *bi -= lr * gbi / sqrtf(abi + e);
        }
#endif
    } else {
        const int64_t ou = u * K, oi = c->NU * K + i * K;
        const float b1 = (float)c->beta1, b2 = (float)o->beta2, e = (float)o->eps;
        const float c1 = 1.0f - b1, c2 = 1.0f - b2;
        float pu1 = o->pow1[ru] * b1, pu2 = o->pow2[ru] * b2;
        float pi1 = o->pow1[ri] * b1, pi2 = o->pow2[ri] * b2;
        o->pow1[ru] = pu1;
        o->pow2[ru] = pu2;
        o->pow1[ri] = pi1;
        o->pow2[ri] = pi2;
        const float au = lr / (1.0f - pu1), su = 1.0f / sqrtf(1.0f - pu2);
        const float ai = lr / (1.0f - pi1), si = 1.0f / sqrtf(1.0f - pi2);
        adam_rows(pu, qi, o->m + ou, o->v + ou, o->m + oi, o->v + oi, dz, wd, b1, b2, au, su,
                  ai, si, e, K);
        if (bias) {
            int64_t ob = bu - c->U; /* the bias of a row sits at the same offset in m and v */
            float m1 = b1 * o->m[ob] + c1 * gbu, v1 = b2 * o->v[ob] + c2 * (gbu * gbu);
            o->m[ob] = m1;
            o->v[ob] = v1;
            *bu -= au * m1 / (sqrtf(v1) * su + e);
        }
        if (bias) {
            int64_t ob = bi - c->U;
            float m2 = b1 * o->m[ob] + c1 * gbi, v2 = b2 * o->v[ob] + c2 * (gbi * gbi);
            o->m[ob] = m2;
            o->v[ob] = v2;
            *bi -= ai * m2 / (sqrtf(v2) * si + e);
        }
    }
}


/* the slot of the item of row r, read once and checked (in the table and the block's item
 * group), or -1; with a prefetch of its row */
CF_INLINE int64_t read_item(const block_ctx *c, int kind, int64_t r) {
    const uint32_t i32 = (uint32_t)c->x[2 * r + 1];
    const int64_t s = slot_mul(c->d, (int32_t)i32);
    if ((i32 >= c->ni32) | ((int64_t)i32 - s * c->d.nb != c->ig)) return -1;
    /* the row's 64-byte lines (CF_PREFETCH_ROW's, with one compare a line) */
    const float *p = c->Ip ? c->Ip + s * c->K : c->I + (int64_t)i32 * c->K;
    const char *a = (const char *)p, *z = (const char *)(p + c->K - 1);
    const int nc = CF_NC(kind);
    CF_PREFETCH(a, 1);
    if (nc) /* every 64 bytes of the row's 16 (nc - 1) < K <= 16 nc floats, then its last */
        for (int h = 1; h < nc; h++) CF_PREFETCH(a + 64 * h, 1);
    else
        for (const char *q = a + 64; q < z; q += 64) CF_PREFETCH(q, 1);
    CF_PREFETCH(z, 1);
    CF_PREFETCH(c->lastv + CF_LANES * s, 0); /* the lanes' entries of the item (see lane) */
    return s;
}

/* moves lane l to its next row (the next item read, see lane) */
CF_INLINE void lane_next(const block_ctx *c, int kind, lane *l, int64_t end) {
    l->r++;
    l->s = l->s_next;
    l->s_next = l->r + 1 < end ? read_item(c, kind, l->r + 1) : -1;
}

/* a measured rating t of lane l: its squared error counted, the update made, the lane moved on */
CF_INLINE void rate_commit(const block_ctx *c, int kind, int vw, lane *l, const rating *t, int64_t end,
                           double *sse) {
    *sse += (double)t->err * (double)t->err;
    rate_apply(c, kind, vw, t);
    lane_next(c, kind, l, end);
}

/* the lane's rating at row r, then the lane moves on: RATE_OK (applied), or RATE_NONFINITE /
 * RATE_INDEX (not applied; *at = r) */
CF_INLINE int rate(const block_ctx *c, int kind, int vw, lane *l, int64_t end, double *sse, int64_t *at) {
    rating t;
    int st = rate_err(c, kind, vw, l, &t);
    if (st) {
        *at = l->r;
        return st;
    }
    rate_commit(c, kind, vw, l, &t, end, sse);
    return RATE_OK;
}

/* the ratings of lanes a, then b, which share no row, their work interleaved, then both move
 * on: RATE_OK, or the status of the first that failed, *at = its row (a failed: nothing
 * applied; b failed: a applied, and lane a moved on) */
CF_INLINE int rate_two(const block_ctx *c, int kind, int vw, lane *a, lane *b, int64_t end,
                       double *sse, int64_t *at) {
    rating ta, tb;
    int st_a = rate_err(c, kind, vw, a, &ta), st_b = rate_err(c, kind, vw, b, &tb);
    if (st_a) {
        *at = a->r;
        return st_a;
    }
    rate_commit(c, kind, vw, a, &ta, end, sse);
    if (st_b) {
        *at = b->r;
        return st_b;
    }
    rate_commit(c, kind, vw, b, &tb, end, sse);
    return RATE_OK;
}

/* the slot of a checked item slot s for the scheduling of run_rows: an id outside the table
 * or the block (which rate_err refuses when the rating runs) counts as slot 0 */
CF_INLINE int64_t sched_slot(int64_t s) { return s < 0 ? 0 : s; }

/* how far ahead of the lanes' takes their ids and ratings are prefetched, in rows (the lanes
 * read x and y in row order, but four at a time, which the hardware's prefetch did not follow
 * at the 25M shape; 64 and 256 measured alike there, docs/performance.md) */
#define CF_ROWS_AHEAD 256
/* starts lane l on the next user's rows at *next (before end), marking its items; returns 0
 * when no user is left */
CF_INLINE int lane_take(const block_ctx *c, int kind, lane *l, int64_t *next, int64_t end) {
    int64_t a = *next, b = a;
    if (a >= end) return 0;
    const int32_t u = c->x[2 * a];
    const uint32_t u32 = (uint32_t)u;
    const int64_t su = slot_mul(c->d, u);
    for (; b < end && c->x[2 * b] == u; b++) {
        const uint32_t i32 = (uint32_t)c->x[2 * b + 1];
        l->last[CF_LANES * (i32 < c->ni32 ? slot_mul(c->d, (int32_t)i32) : 0)] = b;
    }
    l->r = a;
    l->end = b;
    l->u = u32;
    l->su = su;
    /* a user outside the table or the block's user group: its first rating fails (and ends
     * the block), as if its item were bad */
    const int bad_user = (u32 >= c->nu32) | ((int64_t)u32 - su * c->d.nb != c->ug);
    l->s = bad_user ? -1 : read_item(c, kind, a);
    l->s_next = a + 1 < end ? read_item(c, kind, a + 1) : -1;
    *next = b;
    /* the ids and ratings CF_ROWS_AHEAD rows on: users are taken in row order, so each take
     * asks for the 64-byte lines of as many rows as its own, and the takes cover every row */
    const int64_t ahead_end = b + CF_ROWS_AHEAD < end ? b + CF_ROWS_AHEAD : end;
    for (int64_t q = a + CF_ROWS_AHEAD; q < ahead_end; q += 8) CF_PREFETCH(c->x + 2 * q, 0);
    for (int64_t q = a + CF_ROWS_AHEAD; q < ahead_end; q += 16) CF_PREFETCH(c->y + q, 0);
    if (b < end) { /* the next user */
        const int32_t un = c->x[2 * b];
        if ((uint32_t)un < c->nu32) CF_PREFETCH_ROW(c->U + (int64_t)un * c->K, c->K, 1);
    }
    return 1;
}

/* the rest of lane l's rows, one after the other: RATE_OK or the first failure */
CF_INLINE int finish_lane(const block_ctx *c, int kind, int vw, lane *l, int64_t end, double *sse,
                          int64_t *at) {
    while (l->r < l->end) {
        int st = rate(c, kind, vw, l, end, sse, at);
        if (st) return st;
    }
    return RATE_OK;
}

/* the rest of lanes E, then F, then G (the first n of them), after a later lane's rating
 * failed with status st at row at_x: in row order the earlier users' ratings come first. Cold
 * (it runs once, when a block stops), so a function of its own, out of run_rows' hot loop, and
 * compiled once, for the baseline: kind and vw are arguments here (the same arithmetic at any
 * width, so the same values as the version that calls it) */
static __attribute__((noinline, cold)) int finish_before(const block_ctx *c, int kind, int vw, lane E,
                                                         lane F, lane G, int n, int64_t end, double *sse,
                                                         int64_t *at, int st, int64_t at_x) {
    lane *const ls[3] = {&E, &F, &G};
    for (int k = 0; k < n; k++) {
        const int s2 = finish_lane(c, kind, vw, ls[k], end, sse, at);
        if (s2) return s2;
    }
    *at = at_x;
    return st;
}

/* the rows of lane E's user, then the users after it (from row next) one after the other: plain
 * row order, for tests (cf_sparse_max_lanes(1)); like finish_before, outside run_rows */
static __attribute__((noinline, cold)) int in_row_order(const block_ctx *c, int kind, int vw, lane E,
                                                        int64_t next, int64_t end, double *sse, int64_t *at) {
    int st;
    do st = finish_lane(c, kind, vw, &E, end, sse, at);
    while (!st && lane_take(c, kind, &E, &next, end));
    return st;
}

/* the most lanes run_rows uses (see cf_sparse_max_lanes) */
static int g_max_lanes = CF_LANES;
void cf_sparse_max_lanes(int n) { g_max_lanes = n < 1 ? 1 : n > CF_LANES ? CF_LANES : n; }

/* whether lane l's rating may run before the rows left of lane e (its item is none of them) */
CF_INLINE int clear_of(const lane *e, const lane *l) { return e->last[CF_LANES * sched_slot(l->s)] < e->r; }

#define CF_ROT2(A, B) do { const lane t_ = A; A = B; B = t_; } while (0)
#define CF_ROT3(A, B, C) do { const lane t_ = A; A = B; B = C; C = t_; } while (0)
#define CF_ROT4(A, B, C, D) do { const lane t_ = A; A = B; B = C; C = D; D = t_; } while (0)

/* the ratings of rows [start, end) of a block, ordered by user, with the result of row order
 * (see lane); slots [CF_LANES n_slots] is scratch. The four lanes E, F, G, H hold users in row
 * order, and each step runs E's next rating with that of the first later lane whose item is
 * none of the earlier lanes' items left (a later lane's rating waits while it is), or E's alone
 * when all wait. (With two lanes, the later one waited for about 30% of the ratings of the 1M
 * benchmark shape, which then ran one at a time; with four, 9%: docs/performance.md.) Returns RATE_OK, or RATE_NONFINITE /
 * RATE_INDEX with *at = the row of the rating that gave a non-finite error or held a bad id:
 * that rating and the rows after it in row order are not applied, except that ratings of
 * later users, which share no row with it, may have been; all the rows before it are. */
CF_INLINE int run_rows(const block_ctx *c, int kind, int vw, int64_t start, int64_t end, int64_t *slots,
                       int64_t n_slots, double *sse, int64_t *at) {
    for (int64_t t = 0; t < CF_LANES * n_slots; t++) slots[t] = -1;
    lane E = {0}, F = {0}, G = {0}, H = {0}; /* (variables, not an array indexed by position:
                                              * the compiler keeps the fields it uses most in
                                              * registers) */
    E.last = slots; /* (a lane keeps its column of slots as it moves up) */
    F.last = slots + 1;
    G.last = slots + 2;
    H.last = slots + 3;
    int64_t next = start;
    if (!lane_take(c, kind, &E, &next, end)) return RATE_OK;
    const int max_lanes = g_max_lanes;
    if (max_lanes == 1) return in_row_order(c, kind, vw, E, next, end, sse, at);
    int n = 1 + lane_take(c, kind, &F, &next, end); /* the lanes holding a user */
    if (n == 2 && max_lanes > 2) n += lane_take(c, kind, &G, &next, end);
    if (n == 3 && max_lanes > 3) n += lane_take(c, kind, &H, &next, end);
    while (n > 1) {
        int st;
        if (clear_of(&E, &F)) {
            st = rate_two(c, kind, vw, &E, &F, end, sse, at);
            if (st && *at != E.r) return finish_before(c, kind, vw, E, F, G, 1, end, sse, at, st, *at);
        } else if (n > 2 && clear_of(&E, &G) && clear_of(&F, &G)) {
            st = rate_two(c, kind, vw, &E, &G, end, sse, at);
            if (st && *at != E.r) return finish_before(c, kind, vw, E, F, G, 2, end, sse, at, st, *at);
        } else if (n > 3 && clear_of(&E, &H) && clear_of(&F, &H) && clear_of(&G, &H)) {
            st = rate_two(c, kind, vw, &E, &H, end, sse, at);
            if (st && *at != E.r) return finish_before(c, kind, vw, E, F, G, 3, end, sse, at, st, *at);
        } else {
            st = rate(c, kind, vw, &E, end, sse, at);
        }
        if (st) return st;
        /* a lane whose user is done: the lanes after it move up, and the last takes the next
         * user, or is left empty when no user is left (last lane first: lanes that move up
         * are never done) */
        if (n == 4 && H.r == H.end) n -= !lane_take(c, kind, &H, &next, end);
        if (n >= 3 && G.r == G.end) {
            if (n == 4) {
                CF_ROT2(G, H);
                n -= !lane_take(c, kind, &H, &next, end);
            } else {
                n -= !lane_take(c, kind, &G, &next, end);
            }
        }
        if (F.r == F.end) {
            if (n == 4) {
                CF_ROT3(F, G, H);
                n -= !lane_take(c, kind, &H, &next, end);
            } else if (n == 3) {
                CF_ROT2(F, G);
                n -= !lane_take(c, kind, &G, &next, end);
            } else {
                n -= !lane_take(c, kind, &F, &next, end);
            }
        }
        if (E.r == E.end) {
            if (n == 4) {
                CF_ROT4(E, F, G, H);
                n -= !lane_take(c, kind, &H, &next, end);
            } else if (n == 3) {
                CF_ROT3(E, F, G);
                n -= !lane_take(c, kind, &G, &next, end);
            } else {
                CF_ROT2(E, F);
                n -= !lane_take(c, kind, &F, &next, end);
            }
        }
    }
    return finish_lane(c, kind, vw, &E, end, sse, at);
}
#undef CF_ROT2
#undef CF_ROT3
#undef CF_ROT4

/* copies the state of the block's rows (items of group ig, users of group ug) to the
 * thread (to_thread) or back */
static void block_state(block_ctx *c, int64_t ug, int64_t ig, int to_thread) {
    const int64_t nb = c->d.nb, n_rows = c->NU + c->NI, K = c->K;
    float *acc = c->o->kind == CF_SPARSE_ADAGRAD ? c->o->v : NULL;
#define CF_MOVE(thread, shared) \
    do { if (to_thread) (thread) = (shared); else (shared) = (thread); } while (0)
    for (int64_t t = 0, i = ig; i < c->NI; t++, i += nb) {
        if (to_thread) memcpy(c->Ip + t * K, c->I + i * K, sizeof(float) * (size_t)K);
        else memcpy(c->I + i * K, c->Ip + t * K, sizeof(float) * (size_t)K);
        if (acc) {
            CF_MOVE(c->ist[3 * t], acc[c->NU + i]);
            CF_MOVE(c->ist[3 * t + 1], acc[n_rows + c->NU + i]);
        }
        if (c->BI) CF_MOVE(c->ist[3 * t + 2], c->BI[i]);
    }
    for (int64_t t = 0, u = ug; u < c->NU; t++, u += nb) {
        if (acc) {
            CF_MOVE(c->ust[3 * t], acc[u]);
            CF_MOVE(c->ust[3 * t + 1], acc[n_rows + u]);
        }
        if (c->BU) CF_MOVE(c->ust[3 * t + 2], c->BU[u]);
    }
#undef CF_MOVE
}

static void block_ctx_init(block_ctx *c, const sparse_job *j, int64_t k, float *priv,
                           int64_t n_slots, int private_items) {
    const cf_dot_config *cfg = j->cfg;
    c->K = cfg->k;
    c->NU = cfg->n_users;
    c->NI = cfg->n_items;
    c->ug = j->blocks[k] / j->nb;
    c->ig = j->blocks[k] % j->nb;
    c->nu32 = (uint32_t)(c->NU < ((int64_t)1 << 31) ? c->NU : ((int64_t)1 << 31));
    c->ni32 = (uint32_t)(c->NI < ((int64_t)1 << 31) ? c->NI : ((int64_t)1 << 31));
    const cf_dot_views w = cf_dot_split(j->params, cfg);
    c->U = w.uw;
    c->I = w.iw;
    c->BU = w.ub;
    c->BI = w.ib;
    c->o = j->opt;
    c->x = j->x;
    c->y = j->y;
    c->lr = (float)j->lrs[k];
    c->beta1 = j->moms ? j->moms[k] : j->opt->beta1;
    c->wd = (float)j->opt->wd;
    c->span = cfg->hi - cfg->lo;
    c->lo = cfg->lo;
    c->has_range = cfg->has_range;
    c->d = slot_div_make(j->nb);
    /* priv: [K n_slots] item rows, [n_slots] x 3 item state, then the user state (3 a user
     * slot: worker sizes it) */
    c->Ip = private_items ? priv : NULL;
    c->ist = priv + c->K * n_slots;
    c->ust = c->ist + 3 * n_slots;
    if (private_items) block_state(c, j->blocks[k] / j->nb, j->blocks[k] % j->nb, 1);
#ifdef CF_VEC16
    /* the lanes of the chunk at K - 16 past the whole chunks before it: all 16 when 16
     * divides K (used then by the versions for rows of nc chunks only) */
    const int64_t past = c->K - 16 * ((c->K + 15) / 16 - 1);
    for (int l = 0; l < 16; l++) c->tail[l] = l >= 16 - past ? -1 : 0;
#endif
}

/* trains block position k (kind: a constant in each caller, see CF_KIND; vw: the version's
 * vector width) */
CF_INLINE int run_kind(int vw, int kind, const sparse_job *j, int64_t k, int64_t *slots,
                       int64_t n_slots, float *priv, double *sse, int64_t *at) {
    block_ctx c;
    block_ctx_init(&c, j, k, priv, n_slots, CF_KIND(kind) != CF_SPARSE_ADAM);
    int64_t start = j->starts[j->blocks[k]], end = j->starts[j->blocks[k] + 1];
    c.lastv = slots;
    int st = run_rows(&c, kind, vw, start, end, slots, n_slots, sse, at);
    if (CF_KIND(kind) != CF_SPARSE_ADAM) block_state(&c, j->blocks[k] / j->nb, j->blocks[k] % j->nb, 0);
    return st;
}

/* one block-training function per optimizer (kind is a constant in each), in a version per
 * instruction set, each with its vector width vw (simd.h) */
#define CF_RUN_ARGS (const sparse_job *j, int64_t k, int64_t *slots, int64_t n_slots, float *priv, \
                     double *sse, int64_t *at)
#define CF_RUN_KIND(name, KIND)                                                                \
    CF_INLINE int name##_body(int vw, const sparse_job *j, int64_t k, int64_t *slots,          \
                              int64_t n_slots, float *priv, double *sse, int64_t *at) {        \
        return run_kind(vw, KIND, j, k, slots, n_slots, priv, sse, at);                        \
    }                                                                                          \
    CF_DISPATCH_LANES_FN(static, int, name, CF_RUN_ARGS, (j, k, slots, n_slots, priv, sse, at))
CF_RUN_KIND(run_rows_sgd, CF_SPARSE_SGD)
CF_RUN_KIND(run_rows_sgd_br, CF_SPARSE_SGD | CF_BR)
CF_RUN_KIND(run_rows_adagrad, CF_SPARSE_ADAGRAD)
CF_RUN_KIND(run_rows_adagrad_br, CF_SPARSE_ADAGRAD | CF_BR)
CF_RUN_KIND(run_rows_adam, CF_SPARSE_ADAM)
#undef CF_RUN_KIND
#ifdef CF_MULTIVERSION
/* SGD and Adagrad for rows of 49 to 64 factors (fastai's default 50): functions of their own
 * whose loops over a row's chunks unroll (CF_WHOLE; the same values), about 5% less time a
 * rating on one thread (docs/performance.md). run_block picks them on AVX2 and up; their
 * generic version, never called, forwards to the chunk-by-chunk one. */
#define CF_RUN_KIND_NC4(name, KIND)                                                            \
    CF_INLINE int name##_nc4_body(int vw, const sparse_job *j, int64_t k, int64_t *slots,      \
                                  int64_t n_slots, float *priv, double *sse, int64_t *at) {    \
        return vw >= 8 ? run_kind(vw, KIND | 4 << CF_NC_SHIFT, j, k, slots, n_slots, priv, sse, at) \
                       : name##_generic(j, k, slots, n_slots, priv, sse, at);                  \
    }                                                                                          \
    CF_DISPATCH_LANES_FN(static, int, name##_nc4, CF_RUN_ARGS, (j, k, slots, n_slots, priv, sse, at))
CF_RUN_KIND_NC4(run_rows_sgd, CF_SPARSE_SGD)
CF_RUN_KIND_NC4(run_rows_sgd_br, CF_SPARSE_SGD | CF_BR)
CF_RUN_KIND_NC4(run_rows_adagrad, CF_SPARSE_ADAGRAD)
CF_RUN_KIND_NC4(run_rows_adagrad_br, CF_SPARSE_ADAGRAD | CF_BR)
#undef CF_RUN_KIND_NC4
#endif
#undef CF_RUN_ARGS

typedef int (*run_rows_fn)(const sparse_job *, int64_t, int64_t *, int64_t, float *, double *,
                           int64_t *);

/* trains the ratings of block position k; returns RATE_OK, or RATE_NONFINITE / RATE_INDEX
 * with *at = the row (see run_rows) */
static int run_block(sparse_job *j, int64_t k, int64_t *slots, int64_t n_slots, float *priv,
                     int64_t *at) {
    int64_t start = j->starts[j->blocks[k]], end = j->starts[j->blocks[k] + 1];
    double sse = 0.0;
    const int br = j->cfg->has_bias && j->cfg->has_range, kind = j->opt->kind;
    run_rows_fn run = kind == CF_SPARSE_SGD ? (br ? run_rows_sgd_br : run_rows_sgd)
                      : kind == CF_SPARSE_ADAGRAD ? (br ? run_rows_adagrad_br : run_rows_adagrad)
                                                  : run_rows_adam;
#ifdef CF_MULTIVERSION
    if (kind != CF_SPARSE_ADAM && j->cfg->k > 48 && j->cfg->k <= 64 && cf_isa_current() >= CF_ISA_AVX2)
        run = kind == CF_SPARSE_SGD ? (br ? run_rows_sgd_br_nc4 : run_rows_sgd_nc4)
                                    : (br ? run_rows_adagrad_br_nc4 : run_rows_adagrad_nc4);
#endif
    int status = run(j, k, slots, n_slots, priv, &sse, at);
    j->block_loss[k] = end > start ? sse / (double)(end - start) : 0.0;
    return status;
}

/* the first position (below the first bad block) whose blocks sharing a user or item
 * group with it in earlier positions are done, marked running; -1 when none is left to
 * start. Positions are taken in order where possible, and a block never waits for a barrier
 * at the end of its stratum, only for the (at most two) blocks it shares rows with. */
static int64_t take_block(sparse_job *j) {
    pthread_mutex_lock(&j->lock);
    for (;;) {
        while (j->next < j->n_sel && j->state[j->next]) j->next++;
        if (j->nomem || j->next >= j->bad) {
            pthread_mutex_unlock(&j->lock);
            return -1;
        }
        for (int64_t k = j->next; k < j->bad; k++) {
            const int64_t du = j->dep[2 * k], di = j->dep[2 * k + 1];
            if (!j->state[k] && (du < 0 || j->state[du] == 2) && (di < 0 || j->state[di] == 2)) {
                j->state[k] = 1;
                pthread_mutex_unlock(&j->lock);
                return k;
            }
        }
        pthread_cond_wait(&j->turn, &j->lock);
    }
}

/* block k is done (status: RATE_OK, or RATE_NONFINITE / RATE_INDEX at row `at`; nomem: it
 * could not start). Nothing after the first failed position starts. */
static void finish_block(sparse_job *j, int64_t k, int status, int64_t at, int nomem) {
    pthread_mutex_lock(&j->lock);
    if (nomem) j->nomem = 1;
    if (k >= 0) j->state[k] = 2;
    if (status == RATE_INDEX && j->bad_row < 0) j->bad_row = at;
    if (status != RATE_OK && k < j->bad) j->bad = k;
    pthread_cond_broadcast(&j->turn);
    pthread_mutex_unlock(&j->lock);
}

static void *worker(void *arg) {
    sparse_job *j = arg;
    /* item slots of a block: its items are ig + nb t, t < n_slots */
    const int64_t n_slots = (j->cfg->n_items + j->nb - 1) / j->nb + 1;
    const int64_t n_uslots = (j->cfg->n_users + j->nb - 1) / j->nb + 1;
    int64_t n_priv, t;
    int sized = cf_add(j->cfg->k, 3, &n_priv) && cf_mul(n_priv, n_slots, &n_priv) &&
                cf_mul(3, n_uslots, &t) && cf_add(n_priv, t, &n_priv) && n_slots <= INT64_MAX / CF_LANES - 8;
    /* the lanes' slots (see lane), from a 64-byte boundary: an item's four entries in one line */
    int64_t *slots_mem = sized ? cf_alloc(CF_LANES * n_slots + 8, sizeof(int64_t)) : NULL;
    int64_t *slots = slots_mem ? (int64_t *)(((uintptr_t)slots_mem + 63) & ~(uintptr_t)63) : NULL;
    float *priv = sized ? cf_alloc(n_priv, sizeof(float)) : NULL;
    if (!slots || !priv) {
        free(slots_mem);
        free(priv);
        finish_block(j, -1, RATE_OK, -1, 1);
        return NULL;
    }
    cf_fp_mode mode = cf_fp_flush_subnormals();
    for (;;) {
        int64_t k = take_block(j);
        if (k < 0) break;
        int64_t at = -1;
        int st = run_block(j, k, slots, n_slots, priv, &at);
        finish_block(j, k, st, at, 0);
    }
    cf_fp_restore(mode);
    free(slots_mem);
    free(priv);
    return NULL;
}

/* swaps rows r and d of x / y / extra */
CF_INLINE void swap_rows(int32_t *x, float *y, char *extra, size_t esz, int64_t r, int64_t d) {
    int32_t u = x[2 * r], i = x[2 * r + 1];
    x[2 * r] = x[2 * d];
    x[2 * r + 1] = x[2 * d + 1];
    x[2 * d] = u;
    x[2 * d + 1] = i;
    float v = y[r];
    y[r] = y[d];
    y[d] = v;
    if (extra) {
        char e[8];
        memcpy(e, extra + r * esz, esz);
        memcpy(extra + r * esz, extra + d * esz, esz);
        memcpy(extra + d * esz, e, esz);
    }
}

/* the heap key of row r: its item, or with by_user its (user, item) pair */
CF_INLINE uint64_t row_key(const int32_t *x, int64_t r, int by_user) {
    const uint64_t i = (uint32_t)x[2 * r + 1];
    return by_user ? (uint64_t)(uint32_t)x[2 * r] << 32 | i : i;
}

/* sifts heap position p down among the first m rows of [lo, ...), keyed by row_key */
static void sift_down(int32_t *x, float *y, char *extra, size_t esz, int64_t lo, int64_t p,
                      int64_t m, int by_user) {
    for (;;) {
        int64_t c = 2 * p + 1;
        if (c >= m) break;
        if (c + 1 < m && row_key(x, lo + c + 1, by_user) > row_key(x, lo + c, by_user)) c++;
        if (row_key(x, lo + c, by_user) <= row_key(x, lo + p, by_user)) break;
        swap_rows(x, y, extra, esz, lo + p, lo + c);
        p = c;
    }
}

/* in-place heapsort of rows [lo, hi) by item, or with by_user by user, then item (O(n log n)
 * for any run length and any range of ids; ids are non-negative, so unsigned order is theirs) */
static void heap_sort_rows(int32_t *x, float *y, char *extra, size_t esz, int64_t lo, int64_t hi,
                           int by_user) {
    int64_t n = hi - lo;
    for (int64_t s = n / 2; s-- > 0;) sift_down(x, y, extra, esz, lo, s, n, by_user);
    for (int64_t m = n - 1; m > 0; m--) {
        swap_rows(x, y, extra, esz, lo, lo + m);
        sift_down(x, y, extra, esz, lo, 0, m, by_user);
    }
}

/* the block of (u, i): (u mod nb) nb + i mod nb */
CF_INLINE int64_t grid_cell(slot_div d, int32_t u, int32_t i) {
    return ((int64_t)u - slot_of(d, u) * d.nb) * d.nb + ((int64_t)i - slot_of(d, i) * d.nb);
}

/* k if it is a key in [0, n), else n - 1: the sorts read x many times, and x may be changed
 * by another thread during the call (the binding releases the GIL), so a key computed from
 * it is clamped before it indexes a count; a sort that then finds a bucket overfull stops */
CF_INLINE int64_t clamp_key(int64_t k, int64_t n) { return (uint64_t)k < (uint64_t)n ? k : n - 1; }

/* in-place American flag sort of rows [lo, hi) into n_keys buckets of key(row) (the rows
 * CF_AHEAD ahead of each bucket's fill point are prefetched: 4x faster on 25M rows).
 * Returns CF_OK, or CF_ERR_ARG when the keys changed while it ran (x written by another
 * thread: a bucket overfull), the rows then permuted but not grouped. */
#define CF_AHEAD 16
static int flag_sort(int32_t *x, float *y, char *extra, size_t esz, int64_t lo, int64_t hi,
                     int64_t n_keys, int64_t *start, int64_t *next, int64_t nb, int by_user) {
    const slot_div d = slot_div_make(nb);
#define CF_KEY(r) clamp_key(by_user ? slot_of(d, x[2 * (r)]) : grid_cell(d, x[2 * (r)], x[2 * (r) + 1]), n_keys)
    for (int64_t b = 0; b <= n_keys; b++) start[b] = 0;
    for (int64_t r = lo; r < hi; r++) start[CF_KEY(r) + 1]++;
    start[0] = lo;
    for (int64_t b = 0; b < n_keys; b++) start[b + 1] += start[b];
    for (int64_t b = 0; b < n_keys; b++) next[b] = start[b];
    for (int64_t b = 0; b < n_keys; b++) {
        while (next[b] < start[b + 1]) {
            int64_t r = next[b], t = CF_KEY(r);
            if (t == b) {
                next[b]++;
                continue;
            }
            if (next[t] >= start[t + 1]) return CF_ERR_ARG; /* x changed: t is full */
            const int64_t d = next[t]++;
            /* each bucket fills front to back: fetch its rows ahead of the swaps */
            if (d + CF_AHEAD < hi) {
                CF_PREFETCH(x + 2 * (d + CF_AHEAD), 1);
                CF_PREFETCH(y + d + CF_AHEAD, 1);
                if (extra) CF_PREFETCH(extra + (size_t)(d + CF_AHEAD) * esz, 1);
            }
            swap_rows(x, y, extra, esz, r, d);
        }
    }
#undef CF_KEY
    return CF_OK;
}

/* the number of bits of v (at least 1) */
static int bit_width(uint64_t v) {
    int b = 1;
    while (b < 64 && (v >> b)) b++;
    return b;
}

/* what the threads sorting the blocks share */
typedef struct {
    int32_t *x;
    float *y;
    char *extra;
    size_t esz;
    const int64_t *starts;
    int64_t NB, n_ut, n_it, cap; /* user and item slots; cap: the most rows a radix buffer holds */
    slot_div d;
    pthread_mutex_t lock;
    int64_t next; /* the next block to sort */
    int nomem;
    int changed; /* x changed under a sort (see flag_sort) */
} sort_job;

/* sorts the m rows at a of one block by user, then item, through buf (2 m words): an LSD
 * radix sort (11-bit digits, stable) of (user slot, item slot, position) packed in 64 bits,
 * then x, y and extra each gathered in the new order through half of buf. Returns 0, or -1
 * when the key and the position do not fit 64 bits (nothing changed). */
static int radix_block(const sort_job *s, int64_t a, int64_t m, uint64_t *buf) {
    const int ib = bit_width((uint64_t)(m - 1)), kb = bit_width((uint64_t)(s->n_ut * s->n_it - 1));
    if (ib + kb > 64) return -1;
    uint64_t *A = buf, *B = buf + m;
    const int32_t *xa = s->x + 2 * a;
    for (int64_t j = 0; j < m; j++) {
        const uint64_t key = (uint64_t)(clamp_key(slot_of(s->d, xa[2 * j]), s->n_ut) * s->n_it +
                                        clamp_key(slot_of(s->d, xa[2 * j + 1]), s->n_it));
        A[j] = key << ib | (uint64_t)j;
    }
    int64_t count[2048];
    for (int sh = ib; sh < ib + kb; sh += 11) {
        const int w = ib + kb - sh < 11 ? ib + kb - sh : 11;
        const uint64_t mask = ((uint64_t)1 << w) - 1;
        memset(count, 0, sizeof(int64_t) * ((size_t)1 << w));
        for (int64_t j = 0; j < m; j++) count[(A[j] >> sh) & mask]++;
        if (count[(A[0] >> sh) & mask] == m) continue; /* one digit value: already in order */
        for (int64_t v = 0, sum = 0; v <= (int64_t)mask; v++) {
            const int64_t c = count[v];
            count[v] = sum;
            sum += c;
        }
        for (int64_t j = 0; j < m; j++) B[count[(A[j] >> sh) & mask]++] = A[j];
        uint64_t *t = A;
        A = B;
        B = t;
    }
    const uint64_t pos = ((uint64_t)1 << ib) - 1;
    memcpy(B, xa, sizeof(int32_t) * 2 * (size_t)m);
    const int32_t *bx = (const int32_t *)B;
    for (int64_t j = 0; j < m; j++) {
        const int64_t o = (int64_t)(A[j] & pos);
        s->x[2 * (a + j)] = bx[2 * o];
        s->x[2 * (a + j) + 1] = bx[2 * o + 1];
    }
    memcpy(B, s->y + a, sizeof(float) * (size_t)m);
    const float *by = (const float *)B;
    for (int64_t j = 0; j < m; j++) s->y[a + j] = by[A[j] & pos];
    if (s->extra) {
        char *e = s->extra + (size_t)a * s->esz;
        memcpy(B, e, s->esz * (size_t)m);
        for (int64_t j = 0; j < m; j++)
            memcpy(e + (size_t)j * s->esz, (const char *)B + (A[j] & pos) * s->esz, s->esz);
    }
    return 0;
}

/* sorts the rows of block b by user, then item: by radix_block when it fits buf (n_buf rows),
 * else in place: an American flag sort by user, then a heapsort of each user's rows by item
 * (*tmp: 2 n_ut + 1 words, allocated here on first use), or, when the block has fewer rows
 * than user slots (ids far larger than the rows: the flag sort's time and memory would grow
 * with the largest id, not with the rows), one heapsort by (user, item). Returns CF_OK,
 * CF_ERR_NOMEM, or CF_ERR_ARG when x changed under the sort. */
static int sort_block(const sort_job *s, int64_t b, uint64_t *buf, int64_t n_buf, int64_t **tmp) {
    const int64_t a = s->starts[b], e = s->starts[b + 1], m = e - a;
    if (m < 2) return CF_OK;
    if (m <= n_buf && radix_block(s, a, m, buf) == 0) return CF_OK;
    if (s->n_ut > m) {
        heap_sort_rows(s->x, s->y, s->extra, s->esz, a, e, 1);
        return CF_OK;
    }
    if (!*tmp && (s->n_ut > INT64_MAX / 2 || !(*tmp = cf_alloc(2 * s->n_ut + 1, sizeof(int64_t)))))
        return CF_ERR_NOMEM;
    if (flag_sort(s->x, s->y, s->extra, s->esz, a, e, s->n_ut, *tmp + s->n_ut, *tmp, s->d.nb, 1) != CF_OK)
        return CF_ERR_ARG;
    for (int64_t r = a, q; r < e; r = q) {
        for (q = r + 1; q < e && s->x[2 * q] == s->x[2 * r]; q++) {}
        if (q - r > 1) heap_sort_rows(s->x, s->y, s->extra, s->esz, r, q, 0);
    }
    return CF_OK;
}

static void *sort_worker(void *arg) {
    sort_job *s = arg;
    int64_t most = 0; /* the largest block this thread may sort through a buffer */
    for (int64_t b = 0; b < s->NB; b++)
        if (s->starts[b + 1] - s->starts[b] > most) most = s->starts[b + 1] - s->starts[b];
    int64_t n_buf = most < s->cap ? most : s->cap;
    uint64_t *buf = n_buf <= INT64_MAX / 2 ? cf_alloc(2 * n_buf + 1, sizeof(uint64_t)) : NULL;
    int64_t *tmp = NULL; /* the in-place sort's counts, when a block needs them */
    if (!buf) n_buf = 0; /* every block in place */
    int st = CF_OK;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        if (st == CF_ERR_NOMEM) s->nomem = 1;
        if (st == CF_ERR_ARG) s->changed = 1;
        const int64_t b = s->nomem || s->changed ? s->NB : s->next++;
        pthread_mutex_unlock(&s->lock);
        if (b >= s->NB) break;
        st = sort_block(s, b, buf, n_buf, &tmp);
    }
    free(buf);
    free(tmp);
    return NULL;
}

int cf_block_sort(int32_t *x, float *y, void *extra, int64_t extra_size, int64_t n, int64_t nb,
                  int64_t *starts, int n_threads) {
    int64_t NB, max_u = 0, max_i = 0;
    if (nb < 1 || n < 0 || n_threads < 1 || (extra && extra_size != 4 && extra_size != 8) ||
        !cf_mul(nb, nb, &NB) || NB == INT64_MAX)
        return CF_ERR_ARG;
    for (int64_t r = 0; r < n; r++) {
        if (x[2 * r] < 0 || x[2 * r + 1] < 0) return CF_ERR_INDEX;
        if (x[2 * r] > max_u) max_u = x[2 * r];
        if (x[2 * r + 1] > max_i) max_i = x[2 * r + 1];
    }
    int64_t *tmp = cf_alloc(NB, sizeof(int64_t));
    if (!tmp) return CF_ERR_NOMEM;
    int st = flag_sort(x, y, extra, (size_t)extra_size, 0, n, NB, starts, tmp, nb, 0);
    free(tmp);
    if (st != CF_OK) return st;
    /* inside a block, rows are then ordered by user: consecutive ratings share the user's row,
     * which stays in the first-level cache (LibMF orders its blocks the same way); and each
     * user's rows by item, so that in run_rows a later user's ratings rarely need an item
     * the earlier user has yet to rate (the later user trails in item order). The blocks are
     * independent: n_threads threads sort them, each through a buffer of at most 16 bytes
     * a row of the largest block, or max(65536, n / 8) rows (larger blocks sort in place). */
    sort_job s;
    memset(&s, 0, sizeof s);
    s.x = x;
    s.y = y;
    s.extra = extra;
    s.esz = (size_t)extra_size;
    s.starts = starts;
    s.NB = NB;
    s.d = slot_div_make(nb);
    s.n_ut = max_u / nb + 1;
    s.n_it = max_i / nb + 1;
    s.cap = n / 8 > 65536 ? n / 8 : 65536;
    if (pthread_mutex_init(&s.lock, NULL) != 0) return CF_ERR_NOMEM;
    if (n_threads > NB) n_threads = (int)NB;
    cf_run_threads(n_threads, sort_worker, &s);
    pthread_mutex_destroy(&s.lock);
    return s.nomem ? CF_ERR_NOMEM : s.changed ? CF_ERR_ARG : CF_OK;
}

/* the first row of [a, b) whose user id is outside [0, NU) or item id outside [0, NI), or
 * -1: one branch-free pass that vectorises (it runs over every selected row per call) */
CF_INLINE int64_t first_bad_id_body(const int32_t *x, int64_t a, int64_t b, int64_t NU, int64_t NI) {
    /* as unsigned, a negative id is >= 2^31 >= the limit */
    const int64_t cap = (int64_t)1 << 31;
    const uint32_t lu = (uint32_t)(NU < cap ? NU : cap), li = (uint32_t)(NI < cap ? NI : cap);
    const uint32_t *p = (const uint32_t *)x;
    uint32_t any = 0;
    for (int64_t r = a; r < b; r++) any |= (uint32_t)(p[2 * r] >= lu) | (uint32_t)(p[2 * r + 1] >= li);
    if (!any) return -1;
    for (int64_t r = a; r < b; r++)
        if (p[2 * r] >= lu || p[2 * r + 1] >= li) return r;
    return -1;
}
CF_DISPATCH_FN(static, int64_t, first_bad_id, (const int32_t *x, int64_t a, int64_t b, int64_t NU,
                                               int64_t NI),
               (x, a, b, NU, NI))

int cf_dot_fit_blocks(float *params, cf_sparse_opt *opt, double *block_loss, int64_t *bad,
                      const int32_t *x, const float *y, int64_t n_rows, const int64_t *starts_in,
                      int64_t nb, const int64_t *blocks_in, int64_t n_sel, const double *lrs,
                      const double *moms, const cf_dot_config *cfg, int n_threads) {
    *bad = -1;
    int64_t NB, n_starts, n_dep;
    if (nb < 1 || nb > ((int64_t)1 << 30) || n_sel < 0 || n_threads < 1 || cfg->k < 1 || n_rows < 0 || !cf_mul(nb, nb, &NB) ||
        !cf_add(NB, 1, &n_starts) || cf_dot_n_params(cfg) < 0)
        return CF_ERR_ARG;
    if (opt->kind == CF_SPARSE_ADAM && (!opt->m || !opt->v || !opt->pow1 || !opt->pow2))
        return CF_ERR_ARG;
    if (opt->kind == CF_SPARSE_ADAGRAD && !opt->v) return CF_ERR_ARG;
    /* the block starts and the selection are copied and checked here, and only the copies
     * are read: arrays another thread changes during the call cannot move a block outside x */
    int64_t *own = n_sel <= INT64_MAX - n_starts ? cf_alloc(n_starts + n_sel, sizeof(int64_t)) : NULL;
    if (!own) return CF_ERR_NOMEM;
    int64_t *starts = own, *blocks = own + n_starts;
    memcpy(starts, starts_in, sizeof(int64_t) * (size_t)n_starts);
    memcpy(blocks, blocks_in, sizeof(int64_t) * (size_t)n_sel);
    sparse_job j;
    memset(&j, 0, sizeof j);
    int st = CF_OK;
    if (starts[0] != 0 || starts[NB] != n_rows) st = CF_ERR_ARG;
    for (int64_t b = 0; st == CF_OK && b < NB; b++)
        if (starts[b + 1] < starts[b]) st = CF_ERR_ARG;
    for (int64_t k = 0; st == CF_OK && k < n_sel; k++)
        if (blocks[k] < 0 || blocks[k] >= NB) {
            *bad = k;
            st = CF_ERR_INDEX;
        }
    for (int64_t k = 0; st == CF_OK && k < n_sel; k++) {
        int64_t r = first_bad_id(x, starts[blocks[k]], starts[blocks[k] + 1], cfg->n_users,
                                 cfg->n_items);
        if (r >= 0) {
            *bad = r;
            st = CF_ERR_INDEX;
        }
    }
    /* each stratum (group of nb consecutive positions) must hold nb blocks that share no
     * user group and no item group, so its blocks can run at once */
    if (st == CF_OK && n_sel % nb != 0) st = CF_ERR_ARG;
    unsigned char *seen = st == CF_OK ? cf_calloc(2 * nb, 1) : NULL;
    if (st == CF_OK && !seen) st = CF_ERR_NOMEM;
    for (int64_t g0 = 0; st == CF_OK && g0 < n_sel; g0 += nb) {
        memset(seen, 0, (size_t)(2 * nb));
        for (int64_t k = g0; k < g0 + nb; k++) {
            int64_t ug = blocks[k] / nb, ig = nb + blocks[k] % nb;
            if (seen[ug] || seen[ig]) {
                *bad = k;
                st = CF_ERR_ARG;
                break;
            }
            seen[ug] = seen[ig] = 1;
        }
    }
    free(seen);
    if (st != CF_OK) goto done;
    /* block k waits only for the last earlier block of its user group and of its item group:
     * blocks that share neither commute, so any order that keeps these gives the result of
     * the given order, for any number of threads */
    j.state = cf_calloc(n_sel + 1, 1);
    j.dep = cf_mul(2, n_sel + nb, &n_dep) && cf_add(n_dep, 1, &n_dep) ? cf_alloc(n_dep, sizeof(int64_t)) : NULL;
    if (!j.state || !j.dep) {
        st = CF_ERR_NOMEM;
        goto done;
    }
    int64_t *last = j.dep + 2 * n_sel; /* [2 nb]: by user group, then by item group */
    for (int64_t g = 0; g < 2 * nb; g++) last[g] = -1;
    for (int64_t k = 0; k < n_sel; k++) {
        int64_t ug = blocks[k] / nb, ig = nb + blocks[k] % nb;
        j.dep[2 * k] = last[ug];
        j.dep[2 * k + 1] = last[ig];
        last[ug] = last[ig] = k;
    }
    j.params = params;
    j.opt = opt;
    j.block_loss = block_loss;
    j.x = x;
    j.y = y;
    j.starts = starts;
    j.blocks = blocks;
    j.nb = nb;
    j.n_sel = n_sel;
    j.lrs = lrs;
    j.moms = moms;
    j.cfg = cfg;
    j.bad = n_sel;
    j.bad_row = -1;
    if (n_threads > nb) n_threads = (int)nb; /* a stratum has nb blocks */
    if (pthread_mutex_init(&j.lock, NULL) != 0) {
        st = CF_ERR_NOMEM;
        goto done;
    }
    if (pthread_cond_init(&j.turn, NULL) != 0) {
        pthread_mutex_destroy(&j.lock);
        st = CF_ERR_NOMEM;
        goto done;
    }
    cf_run_threads(n_threads, worker, &j); /* the calling thread works too */
    pthread_cond_destroy(&j.turn);
    pthread_mutex_destroy(&j.lock);
    if (j.nomem) {
        st = CF_ERR_NOMEM;
    } else if (j.bad_row >= 0) {
        *bad = j.bad_row;
        st = CF_ERR_INDEX;
    } else if (j.bad < n_sel) {
        *bad = j.bad;
        st = CF_ERR_NONFINITE;
    }
done:
    free(j.state);
    free(j.dep);
    free(own);
    return st;
}
