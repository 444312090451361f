/* embedding.c - gather / scatter-add over embedding tables.
 * Not a training loop: drivers (train.c) call these or fuse the same arithmetic.
 * Every id is read once and checked where it is used: an id array changed by another thread
 * during a call (the binding releases the GIL) can stop the call, never send it outside a
 * table. The backward kernels also check every id first, so a bad array writes nothing. */
#include <string.h>
#include "embedding.h"
#include "status.h"

int64_t cf_ids_first_bad(const int32_t *idx, int64_t n, int64_t stride, int64_t N) {
    for (int64_t i = 0; i < n; i++) {
        int32_t id = idx[i * stride];
        if (id < 0 || (int64_t)id >= N) return i;
    }
    return -1;
}

int cf_embedding_forward(float *out, const float *weight, const int32_t *idx,
                         int64_t B, int64_t K, int64_t N) {
    for (int64_t b = 0; b < B; b++) {
        int32_t id = idx[b];
        if (id < 0 || (int64_t)id >= N) return CF_ERR_INDEX;
        memcpy(out + b * K, weight + (int64_t)id * K, (size_t)K * sizeof(float));
    }
    return CF_OK;
}

int cf_embedding_backward(float *dweight, const float *dout, const int32_t *idx,
                          int64_t B, int64_t K, int64_t N) {
    if (cf_ids_first_bad(idx, B, 1, N) >= 0) return CF_ERR_INDEX;
    for (int64_t b = 0; b < B; b++) {
        const int32_t id = idx[b];
        if (id < 0 || (int64_t)id >= N) return CF_ERR_INDEX;
        float *row = dweight + (int64_t)id * K;
        const float *d = dout + b * K;
        for (int64_t k = 0; k < K; k++) row[k] += d[k];
    }
    return CF_OK;
}

int cf_embedding_concat_forward(float *outT, const float *const *tables, const int64_t *rows,
                                const int64_t *dims, const int32_t *ids, int64_t E, int64_t B) {
    int64_t off = 0;
    for (int64_t e = 0; e < E; e++) {
        const int32_t *id = ids + e * B;
        int64_t d = dims[e];
        if (cf_ids_first_bad(id, B, 1, rows[e]) >= 0) return CF_ERR_INDEX;
        for (int64_t b = 0; b < B; b++) {
            const int32_t i = id[b];
            if (i < 0 || (int64_t)i >= rows[e]) return CF_ERR_INDEX;
            const float *r = tables[e] + (int64_t)i * d;
            for (int64_t j = 0; j < d; j++) outT[(off + j) * B + b] = r[j];
        }
        off += d;
    }
    return CF_OK;
}

int cf_embedding_concat_backward(float *const *dtables, const float *doutT, const int64_t *rows,
                                 const int64_t *dims, const int32_t *ids, int64_t E, int64_t B) {
    for (int64_t e = 0; e < E; e++)
        if (cf_ids_first_bad(ids + e * B, B, 1, rows[e]) >= 0) return CF_ERR_INDEX;
    int64_t off = 0;
    for (int64_t e = 0; e < E; e++) {
        const int32_t *id = ids + e * B;
        int64_t d = dims[e];
        for (int64_t b = 0; b < B; b++) {
            const int32_t i = id[b];
            if (i < 0 || (int64_t)i >= rows[e]) return CF_ERR_INDEX;
            float *r = dtables[e] + (int64_t)i * d;
            for (int64_t j = 0; j < d; j++) r[j] += doutT[(off + j) * B + b];
        }
        off += d;
    }
    return CF_OK;
}
