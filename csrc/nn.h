/* nn.h - the neural collaborative model (fastai's EmbeddingNN / TabularModel and the book's
 * CollabNN) as data: embedding tables whose rows are concatenated, then a list of ops
 * (Linear, ReLU, BatchNorm1d, Dropout) applied in order down to one output, then an
 * optional sigmoid_range. One call trains an epoch (exact, dense Adam/SGD) or predicts. */
#ifndef CF_NN_H
#define CF_NN_H
#include <stdint.h>
#include "optim.h"

enum { CF_NN_LINEAR = 0, CF_NN_RELU = 1, CF_NN_BATCHNORM = 2, CF_NN_DROPOUT = 3 };

typedef struct {
    int64_t kind;     /* CF_NN_* */
    int64_t n_in;     /* input features */
    int64_t n_out;    /* output features (== n_in for ReLU, BatchNorm, Dropout) */
    int64_t w;        /* params offset: Linear weight [n_out,n_in] / BatchNorm gamma [n]; -1 none */
    int64_t b;        /* params offset: Linear bias [n_out] / BatchNorm beta [n]; -1 none */
    int64_t stat;     /* BatchNorm: stats offset of running_mean [n]; running_var follows */
    double p;         /* Dropout probability in [0, 1) */
} cf_nn_op;

typedef struct {
    int64_t n_emb;            /* embedding tables, one per column of x */
    const int64_t *emb_rows;  /* [n_emb] rows of each table */
    const int64_t *emb_dim;   /* [n_emb] width of each table */
    const int64_t *emb_off;   /* [n_emb] params offset of each table [rows, dim] */
    int64_t n_ops;
    const cf_nn_op *ops;
    int has_range;
    float lo, hi;
    double bn_momentum, bn_eps;
    int64_t n_params, n_stats; /* sizes of the params and stats blocks */
} cf_nn_config;

/* CF_OK when the op chain is consistent (widths chain from sum(emb_dim) down to 1, every
 * offset range lies inside its block, probabilities in [0, 1)); CF_ERR_ARG otherwise. */
int cf_nn_validate(const cf_nn_config *c);

/* out[N] = eval-mode predictions (running BatchNorm statistics, no dropout) for the rows of
 * x [N, n_emb]. Returns CF_ERR_INDEX for an id out of range (checked first, and again as
 * each chunk of ids is copied: out is then partly written), CF_ERR_NOMEM. */
int cf_nn_predict(float *out, const float *params, const float *stats, const int32_t *x,
                  int64_t N, const cf_nn_config *c);

/* One training epoch, as cf_dot_fit_epoch (train.h) but for this model: batch j is the rows
 * order[j*bs .. ) (order has n_order entries) of x [n_rows, n_emb] / y; BatchNorm uses batch statistics and updates the
 * running ones in stats; dropout masks come from a generator seeded with seed.
 * Every order entry and id is checked before the first step and again as each batch is
 * copied to scratch (only the copies are used, so x or order changed by another thread
 * during the call cannot make it index outside a table): CF_ERR_INDEX with *bad_batch = the
 * order position, the model as it was after the batches before it. CF_ERR_NOMEM when the
 * scratch cannot be allocated or its size does not fit (checked products). */
int cf_nn_fit_epoch(float *params, float *grads, float *stats, cf_optimizer *opt,
                    double *losses, int64_t *bad_batch, const int32_t *x, const float *y,
                    const int64_t *order, int64_t n_order, int64_t n_rows, int64_t bs, int64_t n_batches,
                    const double *lrs, const double *moms, uint64_t seed,
                    const cf_nn_config *c);

#endif
