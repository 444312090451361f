/* train.h - whole-epoch drivers: one C call trains a model over every batch of an epoch
 * (gather, forward, loss, backward, optimizer step), so the binding releases the GIL once.
 * This is the exact, dense path that matches fastai step for step; a sparse, threaded
 * path for large data belongs beside it as separate drivers over the same kernels. */
#ifndef CF_TRAIN_H
#define CF_TRAIN_H
#include <stdint.h>
#include "optim.h"

/* The dot-product family: DotProduct (no biases, no range), DotProductBias and
 * EmbeddingDotBias (biases, optional y_range). The parameter block is laid out as
 *   u_weight [NU,K] | i_weight [NI,K] | u_bias [NU] | i_bias [NI]   (biases only if has_bias)
 * and all of it takes weight decay (fastai decays bias *embeddings*). */
typedef struct {
    int64_t n_users, n_items, k;
    int has_bias;
    int has_range;
    float lo, hi;
} cf_dot_config;

/* number of floats in the parameter block described by cfg; -1 when it does not fit int64_t. */
int64_t cf_dot_n_params(const cf_dot_config *cfg);

/* The dot model's tables inside its block (or inside any buffer of the same layout: the
 * gradients, Adam's moments): the one place the layout above is derived. The binding hands
 * the same offsets to Python (`_core.dot_layout`), which builds the model's views from them. */
typedef struct {
    float *uw, *iw, *ub, *ib; /* ub, ib: NULL without biases */
} cf_dot_views;
/* off[0..3] = the offsets of u_weight, i_weight, u_bias, i_bias in the block (-1 for the
 * biases of a model without them) */
void cf_dot_offsets(int64_t off[4], const cf_dot_config *cfg);
cf_dot_views cf_dot_split(float *block, const cf_dot_config *cfg);

/* out[N] = the model's prediction for each (user, item) row of x [N,2], on up to n_threads
 * threads (the caller's among them; one for every 8192 rows at most): each row's value does
 * not depend on the count. Returns CF_ERR_INDEX if an id is out of range (out partly
 * written), CF_ERR_NOMEM if the threads' lock cannot be made. */
int cf_dot_predict(float *out, const float *params, const int32_t *x, int64_t N,
                   const cf_dot_config *cfg, int n_threads);

/* Trains n_batches batches (an epoch, or a part of one). Batch j is the rows
 * order[j*bs .. min((j+1)*bs, n_order)) of x [n_rows,2] / y [n_rows]; it uses learning rate
 * lrs[j] and momentum moms[j].
 * Writes the batch's MSE, measured before its step, to losses[j]. grads [n_params] is
 * scratch owned by the caller; it is zero again on return.
 * Returns CF_OK; CF_ERR_NONFINITE with *bad_batch = j when batch j's loss is NaN or inf
 * (the model is left as it was after batch j-1); CF_ERR_INDEX with *bad_batch = the order
 * position whose entry or row ids are out of range (checked before any step, and again as
 * each batch is copied to scratch, which is all the batch reads: order or x changed by
 * another thread during the call stop it there, the model as it was after batch j-1);
 * CF_ERR_ARG if the batch layout does not fit n_rows; CF_ERR_NOMEM. */
int cf_dot_fit_epoch(float *params, float *grads, cf_optimizer *opt, double *losses,
                     int64_t *bad_batch, const int32_t *x, const float *y, const int64_t *order,
                     int64_t n_order, int64_t n_rows, int64_t bs, int64_t n_batches, const double *lrs,
                     const double *moms, const cf_dot_config *cfg);

#endif
