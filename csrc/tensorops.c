/* tensorops.c - row gather / scatter-add / zeroing by int64 ids and the ordered row sum of the
 * generic tensor layer. Ids may be strided (a column of an (B,2) batch is read in place). */
#include <string.h>
#include "status.h"
#include "tensorops.h"

/* the first position whose id is outside [-N, N) (wrap) or [0, N); -1 if none. The loops
 * below check each id again as they read it (the binding releases the GIL, and another thread
 * may write the ids meanwhile): a changed id stops the call there, *bad = its position. */
static int64_t first_bad(const int64_t *idx, int64_t stride, int64_t B, int64_t N, int wrap) {
    const int64_t lo = wrap ? -N : 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t id = idx[b * stride];
        if (id < lo || id >= N) return b;
    }
    return -1;
}

int cf_tensor_gather_forward(float *out, const float *table, const int64_t *idx, int64_t stride,
                             int64_t B, int64_t K, int64_t N, int wrap, int64_t *bad) {
    *bad = first_bad(idx, stride, B, N, wrap);
    if (*bad >= 0) return CF_ERR_INDEX;
    for (int64_t b = 0; b < B; b++) {
        int64_t id = idx[b * stride];
        if (id < (wrap ? -N : 0) || id >= N) {
            *bad = b;
            return CF_ERR_INDEX;
        }
        if (id < 0) id += N;
        memcpy(out + b * K, table + id * K, (size_t)K * sizeof(float));
    }
    return CF_OK;
}

int cf_tensor_gather_backward(float *dtable, const float *dout, const int64_t *idx,
                              int64_t stride, int64_t B, int64_t K, int64_t N, int wrap,
                              int64_t *bad) {
    *bad = first_bad(idx, stride, B, N, wrap);
    if (*bad >= 0) return CF_ERR_INDEX;
    for (int64_t b = 0; b < B; b++) {
        int64_t id = idx[b * stride];
        if (id < (wrap ? -N : 0) || id >= N) {
            *bad = b;
            return CF_ERR_INDEX;
        }
        if (id < 0) id += N;
        float *row = dtable + id * K;
        const float *d = dout + b * K;
        for (int64_t k = 0; k < K; k++) row[k] += d[k];
    }
    return CF_OK;
}

int cf_tensor_zero_rows(float *table, const int64_t *idx, int64_t stride, int64_t B, int64_t K,
                        int64_t N, int wrap, int64_t *bad) {
    *bad = first_bad(idx, stride, B, N, wrap);
    if (*bad >= 0) return CF_ERR_INDEX;
    for (int64_t b = 0; b < B; b++) {
        int64_t id = idx[b * stride];
        if (id < (wrap ? -N : 0) || id >= N) {
            *bad = b;
            return CF_ERR_INDEX;
        }
        if (id < 0) id += N;
        memset(table + id * K, 0, (size_t)K * sizeof(float));
    }
    return CF_OK;
}

void cf_tensor_sum_rows_forward(float *out, const float *x, int64_t R, int64_t K) {
    for (int64_t r = 0; r < R; r++) {
        const float *row = x + r * K;
        float s = 0.0f;
        for (int64_t k = 0; k < K; k++) s += row[k];
        out[r] = s;
    }
}
