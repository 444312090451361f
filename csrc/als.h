/* als.h - implicit-feedback alternating least squares (Hu, Koren & Volinsky 2008) solved row by
 * row with a few conjugate-gradient steps warm-started from the current factors (Takacs,
 * Pilaszy & Tikk 2011), as the `implicit` library does. Not a rating model: every (user, item)
 * pair counts, the observed ones with preference 1 and confidence 1 + alpha * weight, the rest
 * with preference 0 and confidence 1. Also the CSR builders the implicit models share.
 * Rows are users or items: a half-step solves the rows of one table (X, NX rows) against the
 * other, fixed table (Y, NY rows) through the CSR of X's interactions. */
#ifndef CF_ALS_H
#define CF_ALS_H
#include <stdint.h>

/* The CSR of n (row, col) pairs: counts rows, then places each pair, then sorts every row by
 * column and merges repeated pairs (their weights summed). Writes indptr [NR+1] and, for the
 * first nnz = indptr[NR] positions, indices [n] (columns) and wout [n] (summed weights; wout
 * may be NULL, and w NULL means weight 1 for every pair). Pair p is (rows[p * rstride],
 * cols[p * cstride]), int32 in [0, NR) and [0, NC) (so an (n, 2) array of pairs is rows = x,
 * cols = x + 1, strides 2). Rows are sorted by n_threads threads; the result does not depend
 * on that number. Returns CF_OK, CF_ERR_ARG (sizes), CF_ERR_INDEX (*bad = the first pair out
 * of range; nothing written), CF_ERR_NOMEM (nothing written). */
int cf_als_csr(int64_t *indptr, int32_t *indices, float *wout, int64_t *bad, const int32_t *rows,
               int64_t rstride, const int32_t *cols, int64_t cstride, const float *w, int64_t n,
               int64_t NR, int64_t NC, int n_threads);

/* The transpose of a CSR [NR, NC] (rows sorted by column, no repeats): tindptr [NC+1],
 * tindices [nnz] (each row sorted), twout [nnz] (may be NULL; w NULL: no weights). O(nnz). */
void cf_als_transpose(int64_t *tindptr, int32_t *tindices, float *twout, const int64_t *indptr,
                      const int32_t *indices, const float *w, int64_t NR, int64_t NC);

/* G [K,K] = T^T T for T [N,K] (float32), each entry summed over the rows in order in double
 * and rounded once; *sq_norm = trace (sum of squared entries of T, in double). Threads split
 * G's rows, so the result does not depend on n_threads. Returns CF_OK, CF_ERR_ARG (N < 0, K
 * outside [1, 2^24]) or CF_ERR_NOMEM. */
int cf_als_gramian(float *G, double *sq_norm, const float *T, int64_t N, int64_t K,
                   int n_threads);

/* One half-step of implicit ALS over the rows [row0, row1) of X [NX,K]: for each row u with
 * items I(u) = indices[indptr[u] .. indptr[u+1]) (weights w, NULL for all 1) and fixed Y [NY,K],
 *     A_u = G + reg I + sum_{i in I(u)} alpha w_ui y_i y_i^T      (G = Y^T Y, cf_als_gramian)
 *     b_u = sum_{i in I(u)} (1 + alpha w_ui) y_i
 * x_u is improved by cg_steps conjugate-gradient steps on A_u x = b_u starting from x_u
 * (fewer if the residual's squared norm falls below 1e-20); a row without items becomes 0.
 * The cost per step is O(K^2 + |I(u)| K): A_u is never formed.
 *     objective: *obj = sum over the rows of f_u(x_u), the row's part of the training loss
 *     f_u(x) = sum_{all i} c_ui (p_ui - x.y_i)^2 + reg |x|^2 = sum_{I(u)} c_ui - 2 b.x + x^T A x,
 * tracked through the CG steps at O(K) a step (exact up to float32 rounding); adding
 * reg * |Y|^2 gives the whole loss of (X, Y). Rows are split over n_threads threads in
 * chunks; each row's arithmetic and the order of the sum are fixed, so X and *obj do not
 * depend on the number of threads. All ids and weights of the rows are checked first.
 * reference: implicit.cpu._als._least_squares_cg (with confidence 1 + alpha * w)
 * Returns CF_OK; CF_ERR_ARG (*bad = -1: sizes, reg < 0, alpha <= 0, cg_steps < 1; *bad = p:
 * the weight at position p is negative or not finite; or indptr is not increasing at row p);
 * CF_ERR_INDEX (*bad = the position of an index outside [0, NY)); CF_ERR_NOMEM. Nothing is
 * written on an error. */
int cf_als_solve(float *X, double *obj, int64_t *bad, const float *G, const float *Y,
                 const int64_t *indptr, const int32_t *indices, const float *w, int64_t NX,
                 int64_t NY, int64_t K, int64_t row0, int64_t row1, double alpha, double reg,
                 int cg_steps, int n_threads);

#endif
