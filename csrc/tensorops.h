/* tensorops.h - the kernels of the generic tensor layer (collabc/tensor.py) that NumPy cannot
 * run without Python loops or large temporaries: gathering rows of a table by int64 ids
 * (embedding lookup, `table[ids]`) and its scatter-add, which must accumulate repeated ids,
 * plus a row sum in the fixed left-to-right order of cf_dotbias_forward, so that a model
 * written as `(u * i).sum(dim=1)` does the fused driver's float32 arithmetic.
 * Not an autograd engine: the tape, shapes and dtypes live in Python. */
#ifndef CF_TENSOROPS_H
#define CF_TENSOROPS_H
#include <stdint.h>

/* out[B,K] = table[idx[b * stride], :] for b < B; table [N,K]. With wrap, ids in [-N, 0)
 * count from the end (as NumPy and PyTorch indexing do); without it they are errors (as
 * torch.nn.Embedding). Every id is checked before anything is written: returns CF_ERR_INDEX
 * with *bad = the first position b whose id is outside the table, else CF_OK.
 * reference: torch.nn.functional.embedding, torch.Tensor.__getitem__ with a LongTensor */
int cf_tensor_gather_forward(float *out, const float *table, const int64_t *idx, int64_t stride,
                             int64_t B, int64_t K, int64_t N, int wrap, int64_t *bad);

/* accumulates into dtable [N,K]: dtable[idx[b * stride], :] += dout[b, :], b = 0..B-1 in
 * order, so repeated ids add up. Ids are checked first, as in the forward (nothing written
 * on CF_ERR_INDEX). reference: torch embedding_backward (dense) */
int cf_tensor_gather_backward(float *dtable, const float *dout, const int64_t *idx,
                              int64_t stride, int64_t B, int64_t K, int64_t N, int wrap,
                              int64_t *bad);

/* table[idx[b * stride], :] = 0 for b < B (the rows a scatter-add wrote, so a gradient block is
 * re-zeroed without a pass over every row). Ids as in cf_tensor_gather_forward; returns
 * CF_ERR_INDEX with *bad (nothing written) for an id outside the table. */
int cf_tensor_zero_rows(float *table, const int64_t *idx, int64_t stride, int64_t B, int64_t K,
                        int64_t N, int wrap, int64_t *bad);

/* out[R] = x[r,0] + x[r,1] + ... + x[r,K-1], summed in float32 from 0 left to right: the order
 * of cf_dotbias_forward's dot product, so mul-then-sum here equals the fused kernel bit for bit.
 * x [R,K]. reference: torch.sum(x, dim=-1) */
void cf_tensor_sum_rows_forward(float *out, const float *x, int64_t R, int64_t K);

#endif
