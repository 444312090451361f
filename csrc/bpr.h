/* bpr.h - Bayesian personalised ranking (Rendle et al. 2009) for implicit feedback: user
 * factors U [NU,K], item factors V [NI,K] and item biases b [NI] trained so that a user's
 * positive item i outscores a sampled negative j, x_uij = U_u.(V_i - V_j) + b_i - b_j,
 * by SGD or row-wise Adagrad on -ln sigmoid(x_uij) + L2. The training pairs are grouped in
 * a grid of nb x nb blocks (user u in group u mod nb, item i in group i mod nb), and a
 * negative is drawn uniformly from the positive's item group, so a block reads and writes only
 * its own user group's and item group's rows: blocks that share no group train at once on
 * different threads with no locks and no races, and the result is that of training the
 * blocks one after the other in the given order, for any number of threads. Row 0 of each
 * table ('#na#') is never sampled. */
#ifndef CF_BPR_H
#define CF_BPR_H
#include <stdint.h>

enum { CF_BPR_SGD = 0, CF_BPR_ADAGRAD = 1 };

typedef struct {
    int64_t n_users, n_items, k; /* NU, NI (rows of the tables, '#na#' included), K */
    int64_t nb;                  /* groups per side: the grid has nb * nb blocks */
    int opt;                     /* CF_BPR_SGD or CF_BPR_ADAGRAD */
    double reg;                  /* L2 on the factor rows a sample touches */
    double reg_bias;             /* L2 on the item biases a sample touches */
    double eps;                  /* Adagrad: p -= lr g / sqrt(acc + eps) */
    uint64_t seed, epoch;        /* with a block's id they key its random numbers */
} cf_bpr_config;

/* pairs [nnz,2] (user, item) = the pairs of the CSR indptr [NU+1] / indices [nnz] (rows
 * sorted by item, no repeats) grouped by block b = (u mod nb) * nb + (i mod nb), each block
 * ordered by user then item; starts [nb*nb + 1]: block b is pairs [starts[b], starts[b+1]).
 * Returns CF_OK, CF_ERR_ARG (nb < 1, sizes), CF_ERR_INDEX (an item outside [0, NI)). */
int cf_bpr_blocks(int32_t *pairs, int64_t *starts, const int64_t *indptr,
                  const int32_t *indices, int64_t NU, int64_t NI, int64_t nb);

/* Trains the blocks blocks[0 .. n_sel) (grid ids, in this order; repeats allowed), block
 * position k at learning rate lrs[k]. A block of m pairs draws m samples: a positive pair
 * (u, i) uniformly from the block (with replacement, as LearnBPR's bootstrap) and a negative
 * item j uniformly from the items of i's group, redrawn while j is a positive of u (a
 * binary search among u's pairs in the block, which are u's positives of that group); a
 * sample whose user holds every item of the group (or after 64 draws that all hit
 * positives) is skipped. The random numbers are a hash of (seed, epoch, block id, sample),
 * so a block draws the same samples wherever it runs. Each sample updates U_u, V_i, V_j, b_i
 * and b_j from their values before it (implicit's update):
 *   z = 1 - sigmoid(x_uij) (x_uij clamped to [-40, 40], where z is within 5e-18 of its
 *   limit);  SGD: U_u += lr (z (V_i - V_j) - reg U_u),
 *   V_i += lr (z U_u - reg V_i), V_j += lr (-z U_u - reg V_j), b_i += lr (z - reg_bias b_i),
 *   b_j += lr (-z - reg_bias b_j); Adagrad (row-wise, as the sparse path): with g the
 *   gradient of each row, acc[row] += mean(g^2), row -= lr g / sqrt(acc[row] + eps); acc is
 *   [NU + 2 NI]: users, items, item biases.
 * Per block position k: loss[k] = the mean of -ln sigmoid(x_uij) over its samples (each
 * before its update), stats[2k] = samples with x_uij > 0, stats[2k+1] = samples skipped.
 * triples (may be NULL) receives each sample's (u, i, j) in order, j = -1 when skipped:
 * [sum of the selected blocks' sizes, 3], the blocks in position order.
 * A block waits only for the earlier positions that share its user or its item group.
 * reference: implicit.cpu.bpr.bpr_update (with a uniform negative from the same group)
 * Returns CF_OK; CF_ERR_NONFINITE (*bad = the first position where x_uij was not finite:
 * that sample and the rest of its block are not applied, later blocks may have been);
 * CF_ERR_INDEX (*bad = the first selected block id outside the grid, or the first pair of a
 * selected block with an id outside the tables or outside its block, checked first);
 * CF_ERR_ARG (sizes, hyperparameters, lrs); CF_ERR_NOMEM. */
int cf_bpr_fit_blocks(float *U, float *V, float *b, float *acc, double *loss, int64_t *stats,
                      int32_t *triples, int64_t *bad, const int32_t *pairs,
                      const int64_t *starts, const int64_t *blocks, int64_t n_sel,
                      const double *lrs, const cf_bpr_config *cfg, int n_threads);

/* A new user's factors from its positives with V and b frozen: x [K] (in: the start) takes
 * n_steps SGD steps of the BPR update on U_u alone, each with a positive drawn uniformly
 * from items [n] (sorted, no repeats, in [1, NI)) and a negative uniformly from [1, NI)
 * outside them, keyed by seed. Returns CF_OK, CF_ERR_ARG (no negative left, unsorted items,
 * sizes), CF_ERR_INDEX (an item outside [1, NI)), CF_ERR_NONFINITE (x became not finite). */
int cf_bpr_fold_in(float *x, const float *V, const float *b, const int32_t *items, int64_t n,
                   int64_t NI, int64_t K, int64_t n_steps, double lr, double reg,
                   uint64_t seed);

#endif
