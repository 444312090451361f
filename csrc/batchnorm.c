/* batchnorm.c - BatchNorm1d forward (train/eval) and backward; per-feature statistics are
 * accumulated in double over the batch. */
#include <math.h>
#include "batchnorm.h"

void cf_batchnorm_forward_train(float *outT, float *mean, float *invstd, const float *xT,
                                const float *gamma, const float *beta, float *running_mean,
                                float *running_var, int64_t B, int64_t N, double momentum,
                                double eps) {
    for (int64_t n = 0; n < N; n++) {
        const float *x = xT + n * B;
        double s = 0.0;
        for (int64_t b = 0; b < B; b++) s += x[b];
        double mu = s / (double)B;
        double ss = 0.0;
        for (int64_t b = 0; b < B; b++) {
            double d = (double)x[b] - mu;
            ss += d * d;
        }
        double var = ss / (double)B;
        float is = (float)(1.0 / sqrt(var + eps));
        float m = (float)mu, g = gamma[n], bt = beta[n];
        float *out = outT + n * B;
        for (int64_t b = 0; b < B; b++) out[b] = (x[b] - m) * is * g + bt;
        mean[n] = m;
        invstd[n] = is;
        double unbiased = B > 1 ? ss / (double)(B - 1) : var;
        running_mean[n] = (float)((1.0 - momentum) * running_mean[n] + momentum * mu);
        running_var[n] = (float)((1.0 - momentum) * running_var[n] + momentum * unbiased);
    }
}

void cf_batchnorm_forward_eval(float *outT, const float *xT, const float *gamma,
                               const float *beta, const float *running_mean,
                               const float *running_var, int64_t B, int64_t N, double eps) {
    for (int64_t n = 0; n < N; n++) {
        float is = (float)(1.0 / sqrt((double)running_var[n] + eps));
        float m = running_mean[n], g = gamma[n], bt = beta[n];
        const float *x = xT + n * B;
        float *out = outT + n * B;
        for (int64_t b = 0; b < B; b++) out[b] = (x[b] - m) * is * g + bt;
    }
}

void cf_batchnorm_backward(float *dxT, float *dgamma, float *dbeta, const float *doutT,
                           const float *xT, const float *mean, const float *invstd,
                           const float *gamma, int64_t B, int64_t N) {
    for (int64_t n = 0; n < N; n++) {
        const float *d = doutT + n * B, *x = xT + n * B;
        float m = mean[n], is = invstd[n];
        double sd = 0.0, sdx = 0.0;
        for (int64_t b = 0; b < B; b++) {
            sd += d[b];
            sdx += (double)d[b] * (double)((x[b] - m) * is);
        }
        dgamma[n] += (float)sdx;
        dbeta[n] += (float)sd;
        float k = gamma[n] * is / (float)B;
        float fsd = (float)sd, fsdx = (float)sdx, fB = (float)B;
        float *dx = dxT + n * B;
        for (int64_t b = 0; b < B; b++) dx[b] += k * (fB * d[b] - fsd - (x[b] - m) * is * fsdx);
    }
}
