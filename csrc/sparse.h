/* sparse.h - the fast training path for large data sets (dot-product models only).
 * Not fastai-exact: every rating updates only its own user and item rows (a batch of one,
 * as LibMF does), weight decay is applied to those rows only, and the data is grouped into
 * a grid of user-group x item-group blocks that several threads train at once without ever
 * sharing a row (LibMF's block scheduling), or that one thread trains in order
 * (deterministic, bit-for-bit repeatable). The exact, dense path that matches fastai step
 * for step is train.h. */
#ifndef CF_SPARSE_H
#define CF_SPARSE_H
#include <stdint.h>
#include "train.h"

enum { CF_SPARSE_SGD = 0, CF_SPARSE_ADAGRAD = 1, CF_SPARSE_ADAM = 2 };

/* Optimizer state of the sparse path. A "row" is one user or one item: its K factors and,
 * if the model has biases, its bias (rows 0..NU-1 are users, NU..NU+NI-1 items).
 *   SGD:      p -= lr * g
 *   Adagrad:  row-wise (LibMF): acc[row] += mean(g^2 over the row); p -= lr g / sqrt(acc + eps)
 *             (the bias has its own accumulator acc[NU+NI+row])
 *   Adam:     lazy: m, v per parameter, updated only for the rows of a rating;
 *             p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps), t counted per row
 * g includes weight decay as L2 on the row's own parameters: g = dL/dp + wd * p. */
typedef struct {
    int kind;
    float *m;        /* Adam: [n_params] first moments */
    float *v;        /* Adam: [n_params] second moments; Adagrad: [2 * (NU + NI)] accumulators */
    float *pow1;     /* Adam: [NU + NI] beta1^t per row (start at 1) */
    float *pow2;     /* Adam: [NU + NI] beta2^t per row (start at 1) */
    double beta1, beta2, eps, wd;
} cf_sparse_opt;

/* Groups the rows of x [n,2] / y [n] (and of extra [n] elements of extra_size = 4 or 8
 * bytes, if not NULL) in place by block: block(u, i) = (u mod nb) * nb + (i mod nb); writes
 * starts [nb*nb + 1] so block b is rows [starts[b], starts[b+1]). Inside a block the rows are
 * ordered by user, and each user's rows by item. The grouping is an in-place American flag sort,
 * O(n); then n_threads threads sort the blocks, each by a radix sort through a buffer (16
 * bytes a row of the largest block, up to max(65536, n / 8) rows), or in place (O(m log m)
 * per user's m rows) when a block is larger or the buffer cannot be had. No copy of the
 * data. Returns CF_OK, CF_ERR_ARG, CF_ERR_INDEX (a negative id), CF_ERR_NOMEM (the rows are
 * then grouped, but maybe not sorted inside their blocks). x written by another thread during
 * the call never sends the sort outside its buffers (every key is clamped); when it changes
 * the grouping the sort returns CF_ERR_ARG, the rows permuted but not grouped. */
int cf_block_sort(int32_t *x, float *y, void *extra, int64_t extra_size, int64_t n, int64_t nb,
                  int64_t *starts, int n_threads);

/* Trains the blocks blocks[0..n_sel) of a block-sorted x / y (see cf_block_sort), taken as
 * strata of nb consecutive positions: the nb blocks of a stratum must share no user group
 * and no item group (e.g. {(g, (g + s) mod nb)}), so n_threads threads train them at once
 * without ever writing the same row (DSGD / LibMF style; no locks on the tables, no races).
 * There is no barrier between strata: a block starts as soon as the (at most two) earlier
 * blocks that share its user group or its item group are done, so a thread runs ahead into
 * the next stratum instead of waiting for the slowest block of this one. Blocks that share
 * no group commute, so the result is that of running the blocks in the given order, for any
 * number of threads, bit for bit. Inside a block the result is that of visiting the ratings
 * in row order, each updating only its own user and item rows at learning rate lrs[k]
 * (k = the block's position). (Up to four users' ratings are interleaved, a rating of a
 * later user running early only when it shares no row with any rating of the earlier users
 * left, so the parameters are the same as in row order; only the order of the block's sum of
 * squared errors differs.) Lazy Adam's first-moment decay is moms[k] for block k (opt->beta1
 * for every block when moms is NULL), so a momentum schedule is per block, like lrs.
 * block_loss[k] receives the block's mean squared error, each
 * rating measured just before its update.
 * Returns CF_OK; CF_ERR_NONFINITE with *bad = k when a rating of block k gave a non-finite
 * error (k is the first such position; that rating and the ones after it in row order are
 * not applied, except that some ratings of later users of the block, which share no row with
 * it, may have been; all the blocks before position k are applied, and some after it may
 * have been); CF_ERR_INDEX with *bad = the first bad block position or the first row of the
 * selected blocks with an id outside the tables, CF_ERR_ARG with *bad = the first position
 * that breaks its stratum (all checked before any update), or starts that are not nb*nb + 1
 * increasing offsets from 0 to n_rows, or nb > 2^30; CF_ERR_NOMEM. starts and blocks are copied and checked
 * once, and every id of a rating is read once more and checked before it indexes anything,
 * inside the tables and in its block's user and item groups (a user once for the run of rows
 * that repeat its id), so a thread never writes another's rows: x
 * written by another thread during the call, or rows outside their block, give CF_ERR_INDEX
 * with *bad = that row, every update before it in its block (and in the blocks before) made. */
int cf_dot_fit_blocks(float *params, cf_sparse_opt *opt, double *block_loss, int64_t *bad,
                      const int32_t *x, const float *y, int64_t n_rows, const int64_t *starts,
                      int64_t nb, const int64_t *blocks, int64_t n_sel, const double *lrs,
                      const double *moms, const cf_dot_config *cfg, int n_threads);

/* For tests: the most users whose ratings cf_dot_fit_blocks interleaves inside a block (1 to 4,
 * default 4; 1 is plain row order, one user's ratings after the other), whose parameters the
 * interleaved runs must match bit for bit. Process-wide and not synchronised: set it only while
 * no training runs. */
void cf_sparse_max_lanes(int n);

#endif
