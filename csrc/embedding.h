/* embedding.h - embedding lookup: gather rows of a table (forward) and scatter-add
 * gradients back into it (backward). Ids are int32; tables are row-major float32. */
#ifndef CF_EMBEDDING_H
#define CF_EMBEDDING_H
#include <stdint.h>

/* out[B,K] = weight[idx[b], :]. Returns CF_ERR_INDEX (out partly written) if any idx is
 * outside [0, N). reference: torch.nn.Embedding.forward */
int cf_embedding_forward(float *out, const float *weight, const int32_t *idx,
                         int64_t B, int64_t K, int64_t N);

/* accumulates into dweight[N,K]: dweight[idx[b], :] += dout[b, :]; repeated ids add up.
 * Returns CF_ERR_INDEX (nothing written) if any idx is outside [0, N).
 * reference: torch.nn.Embedding backward (dense, sparse=False) */
int cf_embedding_backward(float *dweight, const float *dout, const int32_t *idx,
                          int64_t B, int64_t K, int64_t N);

/* Concatenated lookup of E tables into feature-major columns: for each row b,
 * outT[off_e + j, b] = table_e[ids[e*B + b], j] with off_e = dims[0] + ... + dims[e-1].
 * tables[e] is [rows[e], dims[e]]; ids [E,B]; outT [sum(dims), B]. Returns CF_ERR_INDEX
 * (out partly written) for an id outside its table. reference: fastai TabularModel.forward
 * torch.cat([e(x[:, i]) for i, e in enumerate(self.embeds)], 1), transposed */
int cf_embedding_concat_forward(float *outT, const float *const *tables, const int64_t *rows,
                                const int64_t *dims, const int32_t *ids, int64_t E, int64_t B);

/* accumulates into each dtables[e] [rows[e], dims[e]] the rows of doutT [sum(dims), B]
 * (scatter-add; repeated ids add up). Returns CF_ERR_INDEX (nothing written) for a bad id. */
int cf_embedding_concat_backward(float *const *dtables, const float *doutT, const int64_t *rows,
                                 const int64_t *dims, const int32_t *ids, int64_t E, int64_t B);

/* index of the first id outside [0, N), or -1 when all are in range. */
int64_t cf_ids_first_bad(const int32_t *idx, int64_t n, int64_t stride, int64_t N);

#endif
