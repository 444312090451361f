/* linear.c - Linear forward/backward over feature-major activations.
 * Batch-wise sums (dW, dbias) use 16 independent partial sums combined at the end: a fixed,
 * deterministic order that the compiler can keep in vector registers. */
#include <string.h>
#include "linear.h"
#include "simd.h"

/* sum_b a[b] * c[b] with 16 interleaved partial sums, combined pairwise */
CF_INLINE float sum_f32(const float *a, int64_t n) {
    float acc[16] = {0};
    int64_t b = 0;
    for (; b + 16 <= n; b += 16)
        for (int k = 0; k < 16; k++) acc[k] += a[b + k];
    for (int64_t k = 0; b < n; b++, k++) acc[k] += a[b];
    for (int w = 8; w >= 1; w /= 2)
        for (int k = 0; k < w; k++) acc[k] += acc[k + w];
    return acc[0];
}

/* Rows are processed in blocks of CF_LB so a block's accumulators stay in registers across
 * the whole sum over inputs; the order of every sum is unchanged (i = 0..DI-1). */
#define CF_LB 32

CF_INLINE void cf_linear_forward_body(float *restrict outT, const float *restrict xT, const float *restrict W,
                                      const float *restrict bias, int64_t B, int64_t DI, int64_t DO) {
    for (int64_t o = 0; o < DO; o++) {
        float *restrict out = outT + o * B;
        const float *w = W + o * DI;
        const float b0 = bias ? bias[o] : 0.0f;
        int64_t s = 0;
        for (; s + CF_LB <= B; s += CF_LB) {
            float acc[CF_LB] = {0};
            for (int64_t i = 0; i < DI; i++) {
                const float wi = w[i];
                const float *restrict x = xT + i * B + s;
                for (int k = 0; k < CF_LB; k++) acc[k] += wi * x[k];
            }
            for (int k = 0; k < CF_LB; k++) out[s + k] = acc[k] + b0;
        }
        for (int64_t b = s; b < B; b++) {
            float a = 0.0f;
            for (int64_t i = 0; i < DI; i++) a += w[i] * xT[i * B + b];
            out[b] = a + b0;
        }
    }
}
CF_DISPATCH_PROC(, cf_linear_forward, (float *restrict outT, const float *restrict xT,
                                       const float *restrict W, const float *restrict bias,
                                       int64_t B, int64_t DI, int64_t DO),
                 (outT, xT, W, bias, B, DI, DO))

CF_INLINE void cf_linear_backward_body(float *restrict dxT, float *restrict dW, float *restrict dbias,
                                       const float *restrict doutT, const float *restrict xT,
                                       const float *restrict W, int64_t B, int64_t DI, int64_t DO) {
    for (int64_t o = 0; o < DO; o++) {
        const float *d = doutT + o * B;
        float *dw = dW + o * DI;
        for (int64_t i = 0; i < DI; i++) dw[i] += cf_dot_f32(d, xT + i * B, B);
        if (dbias) dbias[o] += sum_f32(d, B);
    }
    if (!dxT) return;
    for (int64_t i = 0; i < DI; i++) {
        float *restrict dx = dxT + i * B;
        int64_t s = 0;
        for (; s + CF_LB <= B; s += CF_LB) {
            float acc[CF_LB];
            for (int k = 0; k < CF_LB; k++) acc[k] = dx[s + k];
            for (int64_t o = 0; o < DO; o++) {
                const float w = W[o * DI + i];
                const float *restrict d = doutT + o * B + s;
                for (int k = 0; k < CF_LB; k++) acc[k] += w * d[k];
            }
            for (int k = 0; k < CF_LB; k++) dx[s + k] = acc[k];
        }
        for (int64_t b = s; b < B; b++) {
            float a = dx[b];
            for (int64_t o = 0; o < DO; o++) a += W[o * DI + i] * doutT[o * B + b];
            dx[b] = a;
        }
    }
}
CF_DISPATCH_PROC(, cf_linear_backward, (float *restrict dxT, float *restrict dW,
                                        float *restrict dbias, const float *restrict doutT,
                                        const float *restrict xT, const float *restrict W,
                                        int64_t B, int64_t DI, int64_t DO),
                 (dxT, dW, dbias, doutT, xT, W, B, DI, DO))
