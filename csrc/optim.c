/* optim.c - fastai SGD and Adam, elementwise over flat float32 ranges.
 * Hyperparameters arrive as doubles (as Python floats do in fastai) and the per-step
 * constants are formed in double, then rounded once to float for the vector loop. */
#include <math.h>
#include <stddef.h>
#include "optim.h"
#include "simd.h"
#include "threads.h"

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

/* a step's arguments, for the chunks of a step on threads */
typedef struct {
    const cf_optimizer *opt;
    float *params;
    const float *grads;
    double lr, mom;
} opt_run;

/* the step of parameters [a, a + len) with weight decay wd */
static void step_part(const opt_run *r, int64_t a, int64_t len, double wd) {
    const cf_optimizer *o = r->opt;
    if (o->kind == CF_OPT_ADAM)
        cf_adam_step(r->params + a, r->grads + a, o->m + a, o->v + a, len, r->lr, r->mom, o->beta2,
                     o->eps, wd, o->step, o->decouple_wd);
    else
        cf_sgd_step(r->params + a, r->grads + a, o->m ? o->m + a : NULL, len, r->lr, r->mom, wd,
                    o->decouple_wd);
}

/* the step of parameters [a, b): [0, n_wd) take weight decay, the rest none */
static void step_range(const opt_run *r, int64_t a, int64_t b) {
    const int64_t n_wd = r->opt->n_wd, w = b < n_wd ? b : n_wd, a2 = a > n_wd ? a : n_wd;
    if (a < w) step_part(r, a, w - a, r->opt->wd);
    if (a2 < b) step_part(r, a2, b - a2, 0.0);
}

static void step_chunk(void *arg, int64_t c) {
    const opt_run *r = arg;
    const int64_t a = c * CF_OPT_CHUNK, n = r->opt->n;
    step_range(r, a, n - a < CF_OPT_CHUNK ? n : a + CF_OPT_CHUNK);
}

void cf_optimizer_step(cf_optimizer *opt, float *params, const float *grads, double lr,
                       double mom) {
    opt->step += 1;
    opt_run r = {opt, params, grads, lr, mom};
    if (opt->team) cf_team_run(opt->team, &r);
    else step_range(&r, 0, opt->n);
}

void cf_optimizer_team_start(cf_optimizer *opt) {
    const int64_t n_chunks = (opt->n + CF_OPT_CHUNK - 1) / CF_OPT_CHUNK;
    opt->team = opt->n_threads > 1 && n_chunks >= 2 ? cf_team_start(opt->n_threads, step_chunk, n_chunks) : NULL;
}

void cf_optimizer_team_stop(cf_optimizer *opt) {
    cf_team_stop(opt->team);
    opt->team = NULL;
}
