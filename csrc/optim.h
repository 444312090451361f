/* optim.h - fastai's optimizers written out: SGD (with optional momentum) and Adam with
 * decoupled weight decay, over flat float32 parameter blocks. No state lives here: the
 * caller owns params, grads and the moment buffers, and passes the step count. */
#ifndef CF_OPTIM_H
#define CF_OPTIM_H
#include <stdint.h>

/* One Adam step on N parameters. p, g, m, v are [N]; step is the 1-based step count after
 * this update.
 *   decouple_wd: p *= 1 - lr*wd          else: g' = g + wd*p  (L2)
 *   m = beta1*m + (1-beta1)*g'           (dampened first moment)
 *   v = beta2*v + (1-beta2)*g'^2
 *   p -= lr / (1 - beta1^step) * m / (sqrt(v / (1 - beta2^step)) + eps)
 * beta1 is the current (scheduled) momentum, so debiasing uses it too.
 * reference: fastai optimizer.py weight_decay/l2_reg, average_grad(dampening=True),
 * average_sqr_grad, step_stat, adam_step */
void cf_adam_step(float *p, const float *g, float *m, float *v, int64_t N, double lr,
                  double beta1, double beta2, double eps, double wd, int64_t step,
                  int decouple_wd);

/* One SGD step on N parameters. buf [N] is the momentum buffer, or NULL for plain SGD.
 *   decouple_wd: p *= 1 - lr*wd          else: g' = g + wd*p  (L2)
 *   with buf:  buf = mom*buf + g';  p -= lr*buf        (no dampening)
 *   without:   p -= lr*g'
 * reference: fastai optimizer.py SGD (average_grad(dampening=False), momentum_step, sgd_step) */
void cf_sgd_step(float *p, const float *g, float *buf, int64_t N, double lr, double mom,
                 double wd, int decouple_wd);

enum { CF_OPT_SGD = 0, CF_OPT_ADAM = 1 };

/* An optimizer over one parameter block of n floats: [0, n_wd) take weight decay,
 * [n_wd, n) do not (fastai wd_bn_bias=False puts BatchNorm and biases there). */
typedef struct {
    int kind;        /* CF_OPT_SGD or CF_OPT_ADAM */
    float *m;        /* Adam first moment, or SGD momentum buffer (NULL: plain SGD) */
    float *v;        /* Adam second moment (unused by SGD) */
    int64_t n;       /* parameters in the block */
    int64_t n_wd;    /* leading parameters that take weight decay */
    double wd, beta2, eps;
    int decouple_wd;
    int64_t step;    /* optimizer steps taken so far; cf_optimizer_step increments it */
} cf_optimizer;

/* One step of opt on params/grads [n] with learning rate lr and momentum (Adam beta1) mom;
 * increments opt->step first, as fastai's step_stat does before adam_step. */
void cf_optimizer_step(cf_optimizer *opt, float *params, const float *grads, double lr,
                       double mom);

#endif
