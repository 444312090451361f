/* loss.c - mean squared error forward (double accumulator) and backward. */
#include "loss.h"

double cf_mse_forward(const float *pred, const float *y, int64_t N) {
    double s = 0.0;
    for (int64_t n = 0; n < N; n++) {
        double d = (double)pred[n] - (double)y[n];
        s += d * d;
    }
    return N > 0 ? s / (double)N : 0.0;
}

void cf_mse_backward(float *dpred, const float *pred, const float *y, int64_t N) {
    float scale = 2.0f / (float)N;
    for (int64_t n = 0; n < N; n++) dpred[n] += scale * (pred[n] - y[n]);
}
