/* linear.c - Linear forward/backward over feature-major activations.
 * Batch-wise sums (dW, dbias) use 16 independent partial sums combined at the end: a fixed,
 * deterministic order that the compiler can keep in vector registers. */
#include <string.h>
#include "linear.h"
#include "simd.h"

/* sum_b a[b] * c[b] with 16 interleaved partial sums, combined pairwise */
static float dot_f32(const float *a, const float *c, int64_t n) {
    float acc[16] = {0};
    int64_t b = 0;
    for (; b + 16 <= n; b += 16)
        for (int k = 0; k < 16; k++) acc[k] += a[b + k] * c[b + k];
    for (int64_t k = 0; b < n; b++, k++) acc[k] += a[b] * c[b];
    for (int w = 8; w >= 1; w /= 2)
        for (int k = 0; k < w; k++) acc[k] += acc[k + w];
    return acc[0];
}

static float sum_f32(const float *a, int64_t n) {
    float acc[16] = {0};
    int64_t b = 0;
    for (; b + 16 <= n; b += 16)
        for (int k = 0; k < 16; k++) acc[k] += a[b + k];
    for (int64_t k = 0; b < n; b++, k++) acc[k] += a[b];
    for (int w = 8; w >= 1; w /= 2)
        for (int k = 0; k < w; k++) acc[k] += acc[k + w];
    return acc[0];
}

CF_VECTOR_CLONES
void cf_linear_forward(float *restrict outT, const float *restrict xT, const float *restrict W,
                       const float *restrict bias, int64_t B, int64_t DI, int64_t DO) {
    for (int64_t o = 0; o < DO; o++) {
        float *restrict out = outT + o * B;
        const float *w = W + o * DI;
        float b0 = bias ? bias[o] : 0.0f;
        for (int64_t b = 0; b < B; b++) out[b] = 0.0f;
        for (int64_t i = 0; i < DI; i++) {
            const float wi = w[i];
            const float *restrict x = xT + i * B;
            for (int64_t b = 0; b < B; b++) out[b] += wi * x[b];
        }
        for (int64_t b = 0; b < B; b++) out[b] += b0;
    }
}

CF_VECTOR_CLONES
void cf_linear_backward(float *restrict dxT, float *restrict dW, float *restrict dbias,
                        const float *restrict doutT, const float *restrict xT,
                        const float *restrict W, int64_t B, int64_t DI, int64_t DO) {
    for (int64_t o = 0; o < DO; o++) {
        const float *d = doutT + o * B;
        float *dw = dW + o * DI;
        for (int64_t i = 0; i < DI; i++) dw[i] += dot_f32(d, xT + i * B, B);
        if (dbias) dbias[o] += sum_f32(d, B);
    }
    if (!dxT) return;
    for (int64_t i = 0; i < DI; i++) {
        float *restrict dx = dxT + i * B;
        for (int64_t o = 0; o < DO; o++) {
            const float w = W[o * DI + i];
            const float *restrict d = doutT + o * B;
            for (int64_t b = 0; b < B; b++) dx[b] += w * d[b];
        }
    }
}
