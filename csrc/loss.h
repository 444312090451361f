/* loss.h - mean squared error, the loss of every collabc regression model. */
#ifndef CF_LOSS_H
#define CF_LOSS_H
#include <stdint.h>

/* returns mean((pred - y)^2) over N values, accumulated in double.
 * reference: fastai losses.py MSELossFlat (nn.MSELoss, reduction='mean') */
double cf_mse_forward(const float *pred, const float *y, int64_t N);

/* accumulates into dpred[N]: dpred += 2 * (pred - y) / N. */
void cf_mse_backward(float *dpred, const float *pred, const float *y, int64_t N);

#endif
