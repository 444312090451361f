/* bfm.h - a Bayesian factorization machine fitted by Gibbs sampling (Rendle's MCMC for
 * factorization machines, as in libFM and myFM), over grouped sparse features: row-local
 * features (a CSR over the training rows, e.g. the rating's date) and relation blocks (rows
 * shared by many ratings: a user's one-hot, the items the user rated, the user's metadata).
 * Gaussian likelihood with a Gamma prior on the noise precision, Normal-Gamma hyperpriors per
 * feature group. Not an optimiser: every sweep draws every parameter once from its
 * conditional; predictions and parameters are averaged over the sweeps after burn-in. */
#ifndef CF_BFM_H
#define CF_BFM_H
#include <stddef.h>
#include <stdint.h>

/* A relation block: M rows of n_feat features, stored both ways (CSR rows, CSC columns).
 * A rating n refers to one of its rows, idx[r][n] (see cf_bfm_rows). */
typedef struct {
    int64_t n_rows;      /* M */
    int64_t n_feat;      /* its features (columns) */
    int64_t nnz;
    const int64_t *ptr;  /* [M + 1] */
    const int32_t *col;  /* [nnz] in [0, n_feat) */
    const float *val;    /* [nnz] */
    const int64_t *tptr; /* [n_feat + 1] the same matrix by column */
    const int32_t *trow; /* [nnz] in [0, M) */
    const float *tval;   /* [nnz] */
} cf_bfm_block;

/* The model's shape: k factors, d0 row-local features, then the features of each block in
 * order (d = d0 + sum n_feat features in all), each in one of n_groups groups. The prior of a
 * group's factor rows V[j, .]: with wishart 0, independent N(mu_V[g, f], 1 / lambda_V[g, f])
 * per coordinate with Normal-Gamma hyperpriors (myFM's, libFM's); with wishart 1,
 * N(mu_V[g], Lambda_V[g]^-1) over the k coordinates together with a Normal-Wishart hyperprior
 * (BPMF's, Salakhutdinov & Mnih 2008): Lambda ~ Wishart(nu_0 = k, W_0 = I),
 * mu | Lambda ~ N(mu_0, (gamma_0 Lambda)^-1). The linear weights w are Normal-Gamma in both. */
typedef struct {
    int64_t k, d0, n_blocks, n_groups;
    const cf_bfm_block *blocks; /* [n_blocks] */
    const int32_t *group;       /* [d] in [0, n_groups) */
    int64_t wishart;            /* 0 or 1 (above) */
} cf_bfm_model;

/* A set of rows (ratings): row-local features by row (CSR) and each row's block rows. */
typedef struct {
    int64_t n;
    const int64_t *x_ptr; /* [n + 1] (NULL when d0 == 0) */
    const int32_t *x_col; /* in [0, d0) */
    const float *x_val;
    const int32_t *idx;   /* [n_blocks * n]: idx[r * n + row], the row of block r */
} cf_bfm_rows;

/* The training rows: the rows, their targets, the row-local features by column, and for each
 * block its ratings grouped by block row: the ratings of row b of block r are
 * grow[r * n + gptr[o_r + b] .. r * n + gptr[o_r + b + 1]) with o_r = sum_{s<r} (M_s + 1). */
typedef struct {
    cf_bfm_rows rows;
    const float *y;        /* [n] */
    const int64_t *xt_ptr; /* [d0 + 1] */
    const int32_t *xt_row; /* in [0, n) */
    const float *xt_val;
    const int64_t *gptr;   /* [sum (M_r + 1)] */
    const int32_t *grow;   /* [n_blocks * n] */
} cf_bfm_train;

/* Hyperpriors (myFM's names and defaults): alpha, lambda ~ Gamma(alpha_0 / 2, rate beta_0 / 2);
 * mu ~ N(mu_0, 1 / (gamma_0 lambda)); w0 ~ N(0, 1 / reg_0). */
typedef struct {
    double alpha_0, beta_0, gamma_0, mu_0, reg_0;
} cf_bfm_prior;

enum {
    CF_BFM_FIX_ALPHA = 1, /* keep the noise precision hyper[0] as given */
    CF_BFM_FIX_GROUPS = 2, /* keep every mu and lambda as given */
    /* how a block's sums over its rows' ratings are taken (bfm.c): by default through the
     * grouping for the first block and below 2^20 ratings, else by stripes of ratings; these
     * force one way (for tests: the two differ in rounding only) */
    CF_BFM_GATHER = 4,
    CF_BFM_STRIPES = 8
};

/* cf_bfm_run's return when the caller's stop flag ended it early (not an error) */
#define CF_BFM_STOPPED 100

/* Parameter vector theta [P], P = 1 + d + d k: w0, w [d], V [d, k] (row-major).
 * Hyperparameters hyper [H], H = 1 + 2 G + 2 G k (+ G k k with wishart): alpha, mu_w [G],
 * lambda_w [G], mu_V [G, k], lambda_V [G, k], then with wishart Lambda_V [G, k, k], whose
 * diagonal lambda_V repeats. */
int64_t cf_bfm_n_params(const cf_bfm_model *m);
int64_t cf_bfm_n_hyper(const cf_bfm_model *m);
/* the doubles of cf_bfm_run's cache for n training rows */
int64_t cf_bfm_cache_size(const cf_bfm_model *m, int64_t n);

/* Every draw is a pure function of (seed, sweep, slot): a SplitMix64 stream keyed by the
 * three, so a draw does not depend on the order or the thread it is made in. The slots of
 * one sweep, in the order the sweep draws them:
 *   0 alpha (gamma), 1 w0, 2 + g lambda_w[g] (gamma), 2 + G + g mu_w[g], 2 + 2G + j w[j],
 *   2 + 2G + d + g k + f lambda_V[g, f] (gamma), 2 + 2G + d + Gk + g k + f mu_V[g, f],
 *   2 + 2G + d + 2Gk + j k + f V[j, f].
 * With wishart, group g's Lambda_V is drawn from the stream of slot 2 + 2G + d + g k (its
 * Bartlett factor, cf_bfm_bartlett) and its mu_V from that of slot 2 + 2G + d + Gk + g k (k
 * normals, cf_bfm_std_normals); the other slots of lambda_V and mu_V go unused. */
double cf_bfm_std_normal(uint64_t seed, int64_t sweep, int64_t slot);
/* a Gamma(shape, scale 1) draw (Marsaglia-Tsang; shape < 1 by boosting), shape > 0 */
double cf_bfm_std_gamma(uint64_t seed, int64_t sweep, int64_t slot, double shape);

/* the first n standard normals of the stream of (seed, sweep, slot) */
void cf_bfm_std_normals(double *out, int64_t n, uint64_t seed, int64_t sweep, int64_t slot);
/* The Bartlett factor of a Wishart(nu, I) draw in k dimensions, A [k, k] lower triangular
 * (A A' ~ Wishart(nu, I)), from the stream of (seed, sweep, slot): first the diagonal,
 * A_ii = sqrt(2 Gamma((nu - i) / 2, 1)) for i = 0 .. k-1, then the standard normals below it
 * row by row (A_10, A_20, A_21, ...). nu > k - 1. */
void cf_bfm_bartlett(double *A, int64_t k, double nu, uint64_t seed, int64_t sweep, int64_t slot);

/* Structural checks of the model, the training rows (may be NULL) and the eval rows (may be
 * NULL): sizes, pointer arrays, every index in range, the groupings consistent with idx (their
 * row lists where cf_bfm_run with these flags reads them, else their counts). Writes a message
 * naming the first problem into msg and returns CF_ERR_ARG, CF_ERR_INDEX or CF_ERR_NOMEM;
 * CF_OK otherwise. O(nnz + n). */
int cf_bfm_check(char *msg, size_t msg_len, const cf_bfm_model *m, const cf_bfm_train *t,
                 const cf_bfm_rows *ev, int flags);

/* Runs n_sweeps Gibbs sweeps from the state (theta, hyper) on the training rows, in place.
 *   rmse [n_sweeps]         written: the training RMSE of the sample after each sweep
 *   theta [P], hyper [H]    the chain's state, read and written
 *   theta_mean [P]          running mean of theta over the kept sweeps (sweep >= burn_in)
 *   hyper_mean [H]          running mean of hyper over the kept sweeps
 *   eval_mean [ev->n]       running mean of the predictions for the eval rows (ev may be NULL)
 *   samples [cap, P]        optional (NULL): the kept samples, kept sample c at row c - 1
 *   cache [cf_bfm_cache_size(m, n)]  the residual cache e = yhat - y of the state, the q
 *                           terms [n] (scratch), then each block's caches (lin [M], qk [M k],
 *                           sk [M k]: see bfm.c), kept between calls
 *   counters [4]            sweeps done so far (the chain's sweep index), kept sweeps so far,
 *                           1 when cache holds the caches of theta (0: recompute them), the
 *                           factor the unfinished sweep counters[0] resumes at (0: none)
 *   stop                    NULL, or a flag another thread may set: the driver then stops
 *                           after the factor or sweep in progress and returns CF_BFM_STOPPED;
 *                           the next call resumes where it stopped, and the chain is the same
 *                           bit for bit as without the stop
 * A sweep (myFM's order): alpha; w0; lambda_w, mu_w; w (row-local features, then each
 * block's); lambda_V, mu_V; for each factor f: V[., f] (row-local, then each block's); then
 * the sample is averaged in. Residuals and the
 * q terms are kept per rating and, inside a block, per block row (myFM's relation caches), so
 * a sweep costs O(k (n + nnz)). n_threads threads share the passes over ratings and block
 * rows (fixed chunks, fixed summation order): the result is the same for every n_threads,
 * bit for bit. The features of one kind are drawn one after another (they share ratings).
 * Returns CF_OK, CF_BFM_STOPPED, CF_ERR_ARG (a size), CF_ERR_NONFINITE (a residual became NaN
 * or inf: the state is that of the sweep that failed, counters not advanced for it),
 * CF_ERR_NOMEM. Call
 * cf_bfm_check first: this function trusts the indices. */
int cf_bfm_run(double *rmse, double *theta, double *hyper, double *theta_mean,
               double *hyper_mean, double *eval_mean, double *samples, int64_t samples_cap,
               double *cache, int64_t *counters,
               const cf_bfm_model *m, const cf_bfm_train *t, const cf_bfm_rows *ev,
               const cf_bfm_prior *prior, int64_t n_sweeps, int64_t burn_in, uint64_t seed,
               int flags, int n_threads, const int64_t *stop);

/* Predictions for rows: out[n] = the mean over the S parameter vectors thetas [S, P] of the
 * model's prediction (S = 1: a plug-in prediction). Returns CF_OK, CF_ERR_ARG, CF_ERR_NOMEM. */
int cf_bfm_predict(double *out, const double *thetas, int64_t S, const cf_bfm_model *m,
                   const cf_bfm_rows *rows, int n_threads);

#endif
