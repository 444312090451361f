/* rank.h - top-n ranking for dot-product models: score every candidate row of a table
 * against a query vector and keep the n best, without ever materialising the Q x NC
 * score matrix. Used for recommendations (queries = users, candidates = items), for
 * "most similar" (normalised tables, no biases) and for folded-in users or items.
 * The candidate table is first packed into panels (cf_rank_pack) by the caller. */
#ifndef CF_RANK_H
#define CF_RANK_H
#include <stdint.h>

/* candidates per panel: the packed layout is panel[t][k][j] = cw[(t*CF_RANK_NJ + j)*K + k]
 * for tile t, factor k and lane j, zero-padded past NC. */
#define CF_RANK_NJ 16

/* number of floats cf_rank_pack writes for an (NC, K) candidate table; -1 when it does not
 * fit int64_t. */
int64_t cf_rank_panel_size(int64_t NC, int64_t K);

/* panel[cf_rank_panel_size(NC, K)] = cw [NC,K] re-laid out in tiles of CF_RANK_NJ rows,
 * factor-major inside a tile, so the scoring loop reads it with unit stride. */
void cf_rank_pack(float *panel, const float *cw, int64_t NC, int64_t K);

/* For each query q < Q, the n best candidates c in [first, NC) by
 *     z[q,c] = sum_k qw[q,k] * cw[c,k] + qb[q] + cb[c]        (sum over k left to right)
 * The panel holds the candidates in any order: order[p] is the candidate at position p of
 * cw as packed (panel = cf_rank_pack(cw[order])) and cb is in that order too (cb[p] is the
 * bias of candidate order[p]); order NULL: position p is candidate p. The result does not
 * depend on the order; its speed does: candidates likely to score high first (for instance by
 * the mean query's score) raise each query's threshold early, and fewer candidates reach
 * the selection heaps. order must be a permutation of [0, NC): an entry outside it is
 * refused (CF_ERR_ARG), a repeated one repeats that candidate.
 * skipping the candidates listed in excl_indices[excl_indptr[q] .. excl_indptr[q+1])
 * (a CSR structure, each row sorted ascending; both pointers may be NULL for none).
 * qb [Q] and cb [NC] may each be NULL (no bias term). z is the same float, bit for bit,
 * as cf_dotbias_forward computes for that pair. Candidates are ordered by z descending,
 * ties by index ascending; NaN and -inf scores are never selected.
 * Writes top_idx [Q,n] (candidate indices) and top_score [Q,n]: z, or
 * sigmoid_range(z, lo, hi) when has_range (monotonic, so the order is that of z).
 * Rows with fewer than n eligible candidates end with index -1 and score NaN.
 * qw [Q,K]; panel from cf_rank_pack(cw, NC, K). Uses no heap memory: the two outputs
 * hold each query's selection heap while it runs.
 * Returns CF_ERR_ARG (nothing guaranteed written) if n < 1, first is outside [0, NC],
 * an exclusion list is out of range or unsorted, or an order entry is outside [0, NC). */
int cf_rank_dot_topk(int32_t *top_idx, float *top_score, const float *qw, const float *qb,
                     const float *panel, const int32_t *order, const float *cb,
                     const int64_t *excl_indptr,
                     const int32_t *excl_indices, int64_t Q, int64_t K, int64_t NC, int64_t n,
                     int64_t first, int has_range, float lo, float hi);

#endif
