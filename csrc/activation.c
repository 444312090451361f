/* activation.c - sigmoid_range and ReLU, forward and backward, in float32.
 *   sigmoid_range(x) = sigmoid(x) * (hi - lo) + lo
 *   d/dx = (hi - lo) * s * (1 - s)
 * sigmoid is evaluated as 1 / (1 + exp(-x)), which saturates cleanly at both ends. */
#include <math.h>
#include "activation.h"
#include "simd.h"

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

CF_INLINE void cf_relu_backward_body(float *dx, const float *dout, const float *x, int64_t N) {
    for (int64_t n = 0; n < N; n++)
        if (x[n] > 0.0f) dx[n] += dout[n];
}
CF_DISPATCH_PROC(, cf_relu_backward, (float *dx, const float *dout, const float *x, int64_t N),
                 (dx, dout, x, N))

void cf_dropout_forward(float *out, const float *x, const float *mask, int64_t N) {
    for (int64_t n = 0; n < N; n++) out[n] = x[n] * mask[n];
}

void cf_dropout_backward(float *dx, const float *dout, const float *mask, int64_t N) {
    for (int64_t n = 0; n < N; n++) dx[n] += dout[n] * mask[n];
}
