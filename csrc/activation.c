/* activation.c - sigmoid_range and ReLU, forward and backward, in float32.
 *   sigmoid_range(x) = sigmoid(x) * (hi - lo) + lo
 *   d/dx = (hi - lo) * s * (1 - s)
 * sigmoid is evaluated as 1 / (1 + exp(-x)), which saturates cleanly at both ends. */
#include <math.h>
#include "activation.h"
#include "simd.h"
#include "vec16.h"

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

void cf_sigmoid_range_forward(float *out, const float *x, int64_t N, float lo, float hi) {
    float span = hi - lo;
    for (int64_t n = 0; n < N; n++) out[n] = sigmoidf(x[n]) * span + lo;
}

void cf_sigmoid_range_backward(float *dx, const float *dout, const float *x, int64_t N,
                               float lo, float hi) {
    float span = hi - lo;
    for (int64_t n = 0; n < N; n++) {
        float s = sigmoidf(x[n]);
        dx[n] += (dout[n] * span) * ((1.0f - s) * s);
    }
}

CF_INLINE void cf_relu_forward_body(float *out, const float *x, int64_t N) {
    for (int64_t n = 0; n < N; n++) out[n] = x[n] > 0.0f ? x[n] : 0.0f;
}
CF_DISPATCH_PROC(, cf_relu_forward, (float *out, const float *x, int64_t N),
                 (out, x, N))

#ifdef CF_VEC16
/* dx += dout where x > 0 on vectors of W lanes: the sum in every lane, then each lane takes the
 * sum or its old dx by a bit mask, so the bits are the scalar loop's (a branch on the sign of
 * each input, mispredicted about half the time, took 6.6% of the NN fit on Zen 3; GCC keeps
 * that branch for any scalar form, even dx + (x > 0 ? dout : -0)). Returns the elements done. */
#define CF_RELU_BACKWARD(W, T, TI, LD)                                                          \
    CF_INLINE int64_t relu_backward_w##W(float *dx, const float *dout, const float *x,          \
                                         int64_t N) {                                           \
        int64_t n = 0;                                                                          \
        for (; n + W <= N; n += W) {                                                            \
            const T a = LD(dx + n), s = a + LD(dout + n);                                       \
            const TI m = LD(x + n) > 0.0f;                                                      \
            const T r = (T)((m & (TI)s) | (~m & (TI)a));                                        \
            __builtin_memcpy(dx + n, &r, sizeof r);                                             \
        }                                                                                       \
        return n;                                                                               \
    }
CF_RELU_BACKWARD(16, cf_v16, cf_v16i, ld16)
CF_RELU_BACKWARD(8, cf_v8, cf_v8i, ld_w8)
CF_RELU_BACKWARD(4, cf_v4, cf_v4i, ld_w4)
#undef CF_RELU_BACKWARD
#endif

CF_INLINE void cf_relu_backward_body(int vw, float *dx, const float *dout, const float *x,
                                     int64_t N) {
    int64_t n = 0;
#ifdef CF_VEC16
    /* W elements at a time, unless dx overlaps dout or x other than exactly (the scalar loop's
     * order then matters) */
    const int apart = (dx + N <= dout || dout + N <= dx || dx == dout) &&
                      (dx + N <= x || x + N <= dx || dx == x);
    if (apart) n = vw == 16 ? relu_backward_w16(dx, dout, x, N)
                   : vw == 8 ? relu_backward_w8(dx, dout, x, N) : relu_backward_w4(dx, dout, x, N);
#else
    (void)vw;
#endif
    for (; n < N; n++)
        if (x[n] > 0.0f) dx[n] += dout[n];
}
CF_DISPATCH_LANES_PROC(, cf_relu_backward, (float *dx, const float *dout, const float *x, int64_t N),
                       (dx, dout, x, N))

void cf_dropout_forward(float *out, const float *x, const float *mask, int64_t N) {
    for (int64_t n = 0; n < N; n++) out[n] = x[n] * mask[n];
}

void cf_dropout_backward(float *dx, const float *dout, const float *mask, int64_t N) {
    for (int64_t n = 0; n < N; n++) dx[n] += dout[n] * mask[n];
}
