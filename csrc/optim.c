/* optim.c - fastai SGD and Adam, elementwise over flat float32 ranges.
 * Hyperparameters arrive as doubles (as Python floats do in fastai) and the per-step
 * constants are formed in double, then rounded once to float for the vector loop. */
#include <math.h>
#include <stddef.h>
#include "optim.h"
#include "simd.h"

/* The Adam and SGD loops are the hot path of the exact trainer (every parameter, every
 * step): see simd.h. */

CF_INLINE void cf_adam_step_body(float *restrict p, const float *restrict g, float *restrict m,
                                 float *restrict v, int64_t N, double lr, double beta1, double beta2,
                                 double eps, double wd, int64_t step, int decouple_wd) {
    const float decay = (decouple_wd && wd != 0.0) ? (float)(1.0 - lr * wd) : 1.0f;
    const float l2 = (!decouple_wd && wd != 0.0) ? (float)wd : 0.0f;
    const float b1 = (float)beta1, c1 = (float)(1.0 - beta1);
    const float b2 = (float)beta2, c2 = (float)(1.0 - beta2);
    /* sqrt(v / debias2) is evaluated as sqrt(v) * (1 / sqrt(debias2)): one divide fewer per
     * element (the divider is this loop's bottleneck), within an ulp of the direct form. */
    const float inv_sqrt_debias2 = (float)(1.0 / sqrt(1.0 - pow(beta2, (double)step)));
    const float alpha = (float)(-lr / (1.0 - pow(beta1, (double)step)));
    const float e = (float)eps;
    for (int64_t n = 0; n < N; n++) {
        float pn = p[n] * decay;
        float gn = g[n] + l2 * pn;
        float mn = m[n] * b1 + gn * c1;
        float vn = v[n] * b2 + c2 * (gn * gn);
        m[n] = mn;
        v[n] = vn;
        p[n] = pn + alpha * (mn / (sqrtf(vn) * inv_sqrt_debias2 + e));
    }
}
CF_DISPATCH_PROC(, cf_adam_step, (float *restrict p, const float *restrict g, float *restrict m,
                                  float *restrict v, int64_t N, double lr, double beta1,
                                  double beta2, double eps, double wd, int64_t step,
                                  int decouple_wd),
                 (p, g, m, v, N, lr, beta1, beta2, eps, wd, step, decouple_wd))

CF_INLINE void cf_sgd_step_body(float *restrict p, const float *restrict g, float *restrict buf, int64_t N,
                                double lr, double mom, double wd, int decouple_wd) {
    const float decay = (decouple_wd && wd != 0.0) ? (float)(1.0 - lr * wd) : 1.0f;
    const float l2 = (!decouple_wd && wd != 0.0) ? (float)wd : 0.0f;
    const float step = (float)(-lr), mu = (float)mom;
    if (buf) {
        for (int64_t n = 0; n < N; n++) {
            float pn = p[n] * decay;
            float bn = buf[n] * mu + (g[n] + l2 * pn);
            buf[n] = bn;
            p[n] = pn + step * bn;
        }
    } else {
        for (int64_t n = 0; n < N; n++) {
            float pn = p[n] * decay;
            p[n] = pn + step * (g[n] + l2 * pn);
        }
    }
}
CF_DISPATCH_PROC(, cf_sgd_step, (float *restrict p, const float *restrict g, float *restrict buf,
                                 int64_t N, double lr, double mom, double wd, int decouple_wd),
                 (p, g, buf, N, lr, mom, wd, decouple_wd))

void cf_optimizer_step(cf_optimizer *opt, float *params, const float *grads, double lr,
                       double mom) {
    int64_t n_wd = opt->n_wd, rest = opt->n - opt->n_wd;
    opt->step += 1;
    if (opt->kind == CF_OPT_ADAM) {
        cf_adam_step(params, grads, opt->m, opt->v, n_wd, lr, mom, opt->beta2, opt->eps,
                     opt->wd, opt->step, opt->decouple_wd);
        if (rest > 0)
            cf_adam_step(params + n_wd, grads + n_wd, opt->m + n_wd, opt->v + n_wd, rest, lr,
                         mom, opt->beta2, opt->eps, 0.0, opt->step, opt->decouple_wd);
    } else {
        cf_sgd_step(params, grads, opt->m, n_wd, lr, mom, opt->wd, opt->decouple_wd);
        if (rest > 0)
            cf_sgd_step(params + n_wd, grads + n_wd, opt->m ? opt->m + n_wd : NULL, rest, lr,
                        mom, 0.0, opt->decouple_wd);
    }
}
