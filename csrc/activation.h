/* activation.h - elementwise activations: sigmoid_range (the y_range squashing) and ReLU. */
#ifndef CF_ACTIVATION_H
#define CF_ACTIVATION_H
#include <stdint.h>

/* out[N] = sigmoid(x[N]) * (hi - lo) + lo. reference: fastai layers.py sigmoid_range */
void cf_sigmoid_range_forward(float *out, const float *x, int64_t N, float lo, float hi);

/* accumulates into dx[N]: dx += dout * (hi - lo) * s * (1 - s), s = sigmoid(x), recomputed
 * from the forward input x. reference: torch sigmoid backward (grad * (1 - y) * y) */
void cf_sigmoid_range_backward(float *dx, const float *dout, const float *x, int64_t N,
                               float lo, float hi);

/* out[N] = max(x, 0). reference: torch.nn.ReLU */
void cf_relu_forward(float *out, const float *x, int64_t N);

/* accumulates into dx[N]: dx += dout where x > 0. */
void cf_relu_backward(float *dx, const float *dout, const float *x, int64_t N);

/* out[N] = x * mask (mask from cf_dropout_mask: 0 or 1/(1-p)). reference: nn.Dropout */
void cf_dropout_forward(float *out, const float *x, const float *mask, int64_t N);

/* accumulates into dx[N]: dx += dout * mask. */
void cf_dropout_backward(float *dx, const float *dout, const float *mask, int64_t N);

#endif
