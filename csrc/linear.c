/* linear.c - Linear forward/backward over feature-major activations.
 * Batch-wise sums (dW, dbias) use 16 independent partial sums combined at the end: a fixed,
 * deterministic order that the compiler can keep in vector registers. */
#include <string.h>
#include "linear.h"
#include "simd.h"

/* Rows are processed in blocks of CF_LB so a block's accumulators stay in registers across
 * the whole sum over inputs; the order of every sum is unchanged (i = 0..DI-1). A block is
 * CF_LB / vw vectors of vw lanes, vw the width of the version (simd.h): an array of 32 floats
 * GCC kept in memory, loading and storing every accumulator on every input. */
#define CF_LB 32

#if defined(__GNUC__) && !defined(CF_NO_VECTOR_EXT)
#define CF_LIN_VEC 1
typedef float lv16 __attribute__((vector_size(64)));
typedef float lv8 __attribute__((vector_size(32)));
typedef float lv4 __attribute__((vector_size(16)));
/* acc[k] = init[k] (or 0) + sum_i c[i cs] x[i B + k], k < CF_LB, in W-lane vectors T; then
 * out[k] = acc[k] + *b0 (acc[k] when b0 is NULL: adding 0 would turn a -0 into +0) */
#define CF_LIN_BLOCK(W, T)                                                                     \
    CF_INLINE void lin_block_w##W(float *out, const float *init,                               \
                                  const float *restrict c, int64_t cs, const float *restrict x, \
                                  int64_t B, int64_t n, const float *b0) {                     \
        T acc[CF_LB / W];                                                                      \
        CF_UNROLL(8)                                                                           \
        for (int h = 0; h < CF_LB / W; h++) {                                                  \
            acc[h] = (T){0};                                                                   \
            if (init) __builtin_memcpy(&acc[h], init + h * W, sizeof acc[h]);                  \
        }                                                                                      \
        for (int64_t i = 0; i < n; i++) {                                                      \
            const float ci = c[i * cs];                                                        \
            CF_UNROLL(8)                                                                       \
            for (int h = 0; h < CF_LB / W; h++) {                                              \
                T xv;                                                                          \
                __builtin_memcpy(&xv, x + i * B + h * W, sizeof xv);                           \
                acc[h] += ci * xv;                                                             \
            }                                                                                  \
        }                                                                                      \
        CF_UNROLL(8)                                                                           \
        for (int h = 0; h < CF_LB / W; h++) {                                                  \
            const T o = b0 ? acc[h] + *b0 : acc[h];                                            \
            __builtin_memcpy(out + h * W, &o, sizeof o);                                       \
        }                                                                                      \
    }
CF_LIN_BLOCK(16, lv16)
CF_LIN_BLOCK(8, lv8)
CF_LIN_BLOCK(4, lv4)
#undef CF_LIN_BLOCK
#endif

/* one block of CF_LB rows at width vw (see lin_block_w*), or plain loops */
CF_INLINE void lin_block(int vw, float *out, const float *init,
                         const float *restrict c, int64_t cs, const float *restrict x, int64_t B,
                         int64_t n, const float *b0) {
#ifdef CF_LIN_VEC
    if (vw == 16) lin_block_w16(out, init, c, cs, x, B, n, b0);
    else if (vw == 8) lin_block_w8(out, init, c, cs, x, B, n, b0);
    else lin_block_w4(out, init, c, cs, x, B, n, b0);
#else
    float acc[CF_LB];
    for (int k = 0; k < CF_LB; k++) acc[k] = init ? init[k] : 0.0f;
    for (int64_t i = 0; i < n; i++) {
        const float ci = c[i * cs];
        for (int k = 0; k < CF_LB; k++) acc[k] += ci * x[i * B + k];
    }
    for (int k = 0; k < CF_LB; k++) out[k] = b0 ? acc[k] + *b0 : acc[k];
#endif
}

CF_INLINE void cf_linear_forward_body(int vw, float *restrict outT, const float *restrict xT, const float *restrict W,
                                      const float *restrict bias, int64_t B, int64_t DI, int64_t DO) {
    for (int64_t o = 0; o < DO; o++) {
        float *restrict out = outT + o * B;
        const float *w = W + o * DI;
        const float b0 = bias ? bias[o] : 0.0f;
        int64_t s = 0;
        for (; s + CF_LB <= B; s += CF_LB) lin_block(vw, out + s, NULL, w, 1, xT + s, B, DI, &b0);
        for (int64_t b = s; b < B; b++) {
            float a = 0.0f;
            for (int64_t i = 0; i < DI; i++) a += w[i] * xT[i * B + b];
            out[b] = a + b0;
        }
    }
}
CF_DISPATCH_LANES_PROC(, cf_linear_forward, (float *restrict outT, const float *restrict xT,
                                       const float *restrict W, const float *restrict bias,
                                       int64_t B, int64_t DI, int64_t DO),
                 (outT, xT, W, bias, B, DI, DO))

CF_INLINE void cf_linear_backward_body(int vw, float *restrict dxT, float *restrict dW, float *restrict dbias,
                                       const float *restrict doutT, const float *restrict xT,
                                       const float *restrict W, int64_t B, int64_t DI, int64_t DO) {
    for (int64_t o = 0; o < DO; o++) {
        const float *d = doutT + o * B;
        float *dw = dW + o * DI;
        for (int64_t i = 0; i < DI; i++) dw[i] += cf_dot_f32(d, xT + i * B, B);
        if (dbias) dbias[o] += cf_sum_f32(d, B);
    }
    if (!dxT) return;
    for (int64_t i = 0; i < DI; i++) {
        float *restrict dx = dxT + i * B;
        int64_t s = 0;
        for (; s + CF_LB <= B; s += CF_LB) lin_block(vw, dx + s, dx + s, W + i, DI, doutT + s, B, DO, NULL);
        for (int64_t b = s; b < B; b++) {
            float a = dx[b];
            for (int64_t o = 0; o < DO; o++) a += W[o * DI + i] * doutT[o * B + b];
            dx[b] = a;
        }
    }
}
CF_DISPATCH_LANES_PROC(, cf_linear_backward, (float *restrict dxT, float *restrict dW,
                                        float *restrict dbias, const float *restrict doutT,
                                        const float *restrict xT, const float *restrict W,
                                        int64_t B, int64_t DI, int64_t DO),
                 (dxT, dW, dbias, doutT, xT, W, B, DI, DO))
