/* batchnorm.h - BatchNorm1d over feature-major activations xT [N,B] (N features, B rows):
 * batch statistics in training (biased variance to normalise, unbiased to update the running
 * variance), running statistics in evaluation. */
#ifndef CF_BATCHNORM_H
#define CF_BATCHNORM_H
#include <stdint.h>

/* outT[n,b] = (xT[n,b] - mean[n]) * invstd[n] * gamma[n] + beta[n], with the batch mean and
 * biased variance; writes the cache mean[N], invstd[N] for backward and updates
 * running_mean/var [N]: r = (1 - momentum) r + momentum * stat (unbiased variance, B/(B-1)).
 * Needs B >= 2. reference: torch.nn.BatchNorm1d training mode */
void cf_batchnorm_forward_train(float *outT, float *mean, float *invstd, const float *xT,
                                const float *gamma, const float *beta, float *running_mean,
                                float *running_var, int64_t B, int64_t N, double momentum,
                                double eps);

/* outT[n,b] = (xT[n,b] - running_mean[n]) / sqrt(running_var[n] + eps) * gamma[n] + beta[n].
 * reference: torch.nn.BatchNorm1d eval mode */
void cf_batchnorm_forward_eval(float *outT, const float *xT, const float *gamma,
                               const float *beta, const float *running_mean,
                               const float *running_var, int64_t B, int64_t N, double eps);

/* accumulates into dxT [N,B], dgamma [N], dbeta [N] given doutT [N,B], the forward input xT
 * and the cached mean/invstd:
 *   xhat = (x - mean) invstd;  dgamma += sum_b dout xhat;  dbeta += sum_b dout;
 *   dx += gamma invstd / B * (B dout - sum_b dout - xhat sum_b dout xhat) */
void cf_batchnorm_backward(float *dxT, float *dgamma, float *dbeta, const float *doutT,
                           const float *xT, const float *mean, const float *invstd,
                           const float *gamma, int64_t B, int64_t N);

#endif
