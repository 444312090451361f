/* batchnorm.c - BatchNorm1d forward (train/eval) and backward; per-feature statistics are
 * accumulated in double over the batch, b = 0..B-1 in order. Each such sum is a chain of
 * dependent double adds (64 of them for fastai's batches, about 3 cycles each), so the sums of
 * CF_BN_G features run side by side: the same adds in the same order per feature, several
 * chains in flight (the features' sums one after the other left the adder waiting). */
#include <math.h>
#include <stddef.h>
#include "batchnorm.h"

#define CF_BN_G 8

#if defined(__GNUC__)
#define CF_BN_INLINE static inline __attribute__((always_inline))
#else
#define CF_BN_INLINE static inline
#endif

/* a[q] = sum_b x[q B + b], or with mu sum_b (x[q B + b] - mu[q])^2, for q < g, each in order
 * over b; inlined with g = CF_BN_G a constant, so the loop over q unrolls */
CF_BN_INLINE void bn_sums_g(double *a, const double *mu, const float *x, int64_t B, int g) {
    double t[CF_BN_G] = {0.0};
    for (int64_t b = 0; b < B; b++)
        for (int q = 0; q < g; q++) {
            const double v = mu ? (double)x[q * B + b] - mu[q] : (double)x[q * B + b];
            t[q] += mu ? v * v : v;
        }
    for (int q = 0; q < g; q++) a[q] = t[q];
}

static void bn_sums(double *a, const double *mu, const float *x, int64_t B, int g) {
    if (g == CF_BN_G) bn_sums_g(a, mu, x, B, CF_BN_G);
    else bn_sums_g(a, mu, x, B, g);
}

void cf_batchnorm_forward_train(float *outT, float *mean, float *invstd, const float *xT,
                                const float *gamma, const float *beta, float *running_mean,
                                float *running_var, int64_t B, int64_t N, double momentum,
                                double eps) {
    for (int64_t n0 = 0; n0 < N; n0 += CF_BN_G) {
        const int g = N - n0 < CF_BN_G ? (int)(N - n0) : CF_BN_G;
        double s[CF_BN_G], mus[CF_BN_G], ss[CF_BN_G];
        bn_sums(s, NULL, xT + n0 * B, B, g);
        for (int q = 0; q < g; q++) mus[q] = s[q] / (double)B;
        bn_sums(ss, mus, xT + n0 * B, B, g);
        for (int q = 0; q < g; q++) {
            const int64_t n = n0 + q;
            const float *x = xT + n * B;
            const double mu = mus[q], var = ss[q] / (double)B;
            float is = (float)(1.0 / sqrt(var + eps));
            float m = (float)mu, gm = gamma[n], bt = beta[n];
            float *out = outT + n * B;
            for (int64_t b = 0; b < B; b++) out[b] = (x[b] - m) * is * gm + bt;
            mean[n] = m;
            invstd[n] = is;
            double unbiased = B > 1 ? ss[q] / (double)(B - 1) : var;
            running_mean[n] = (float)((1.0 - momentum) * running_mean[n] + momentum * mu);
            running_var[n] = (float)((1.0 - momentum) * running_var[n] + momentum * unbiased);
        }
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
    for (int64_t n0 = 0; n0 < N; n0 += CF_BN_G) {
        const int g = N - n0 < CF_BN_G ? (int)(N - n0) : CF_BN_G;
        /* sum_b dout and sum_b dout xhat of g features side by side, each in order over b */
        double sd[CF_BN_G] = {0.0}, sdx[CF_BN_G] = {0.0};
        float m[CF_BN_G], is[CF_BN_G];
        for (int q = 0; q < g; q++) {
            m[q] = mean[n0 + q];
            is[q] = invstd[n0 + q];
        }
        const float *d = doutT + n0 * B, *x = xT + n0 * B;
        for (int64_t b = 0; b < B; b++)
            for (int q = 0; q < g; q++) {
                sd[q] += d[q * B + b];
                sdx[q] += (double)d[q * B + b] * (double)((x[q * B + b] - m[q]) * is[q]);
            }
        for (int q = 0; q < g; q++) {
            const int64_t n = n0 + q;
            dgamma[n] += (float)sdx[q];
            dbeta[n] += (float)sd[q];
            float k = gamma[n] * is[q] / (float)B;
            float fsd = (float)sd[q], fsdx = (float)sdx[q], fB = (float)B;
            float *dx = dxT + n * B;
            const float *dn = doutT + n * B, *xn = xT + n * B;
            for (int64_t b = 0; b < B; b++) dx[b] += k * (fB * dn[b] - fsd - (xn[b] - m[q]) * is[q] * fsdx);
        }
    }
}
