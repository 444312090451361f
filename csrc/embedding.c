/* embedding.c - gather / scatter-add over embedding tables.
 * Not a training loop: drivers (train.c) call these or fuse the same arithmetic. */
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
        float *row = dweight + (int64_t)idx[b] * K;
        const float *d = dout + b * K;
        for (int64_t k = 0; k < K; k++) row[k] += d[k];
    }
    return CF_OK;
}
