/* dotbias.c - dot product plus user and item biases, forward and backward.
 *   res_b = <U[u_b], I[i_b]> + bu[u_b] + bi[i_b]
 *   dU[u_b] += g_b I[i_b];  dI[i_b] += g_b U[u_b];  dbu[u_b] += g_b;  dbi[i_b] += g_b
 * Plain loops over rows; the sum over K runs in float, left to right. */
#include "dotbias.h"
#include "embedding.h"
#include "simd.h"
#include "status.h"

#define CF_PREFETCH_ROWS 8

int cf_dotbias_forward(float *out, const float *uw, const float *iw, const float *ub,
                       const float *ib, const int32_t *users, const int32_t *items,
                       int64_t B, int64_t K, int64_t NU, int64_t NI) {
    if (cf_ids_first_bad(users, B, 1, NU) >= 0 || cf_ids_first_bad(items, B, 1, NI) >= 0)
        return CF_ERR_INDEX;
    for (int64_t b = 0; b < B; b++) {
        /* each id read once and checked where it is used (the arrays may change under a
         * call that released the GIL; the check above makes a bad call write nothing) */
        const int32_t ui = users[b], ii = items[b];
        if (ui < 0 || ui >= NU || ii < 0 || ii >= NI) return CF_ERR_INDEX;
        const float *u = uw + (int64_t)ui * K;
        const float *it = iw + (int64_t)ii * K;
        if (b + CF_PREFETCH_ROWS < B) { /* random rows: fetch a few ahead */
            const int32_t u_next = users[b + CF_PREFETCH_ROWS], i_next = items[b + CF_PREFETCH_ROWS];
            if ((uint32_t)u_next < (uint64_t)NU && (uint32_t)i_next < (uint64_t)NI) {
                CF_PREFETCH_ROW(uw + (int64_t)u_next * K, K, 0);
                CF_PREFETCH_ROW(iw + (int64_t)i_next * K, K, 0);
                if (ub) CF_PREFETCH(ub + u_next, 0);
                if (ib) CF_PREFETCH(ib + i_next, 0);
            }
        }
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
