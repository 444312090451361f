/* dotbias.h - the dot-product model's core: per rating, the dot product of a user row and
 * an item row plus the two biases. sigmoid_range is separate (activation.h); the fused
 * epoch driver (train.h) strings these together. */
#ifndef CF_DOTBIAS_H
#define CF_DOTBIAS_H
#include <stdint.h>

/* out[B] = sum_k uw[users[b],k] * iw[items[b],k] + ub[users[b]] + ib[items[b]].
 * uw [NU,K], iw [NI,K], ub [NU], ib [NI]; ub and ib may both be NULL (plain dot product).
 * Returns CF_ERR_INDEX if an id is out of range. reference: fastai collab.py
 * EmbeddingDotBias.forward (without y_range) and fastbook DotProduct.forward */
int cf_dotbias_forward(float *out, const float *uw, const float *iw, const float *ub,
                       const float *ib, const int32_t *users, const int32_t *items,
                       int64_t B, int64_t K, int64_t NU, int64_t NI);

/* accumulates into duw [NU,K], diw [NI,K], dub [NU], dib [NI] (dub/dib NULL when there
 * are no biases): duw[u] += dout[b]*iw[i], diw[i] += dout[b]*uw[u], dub[u] += dout[b],
 * dib[i] += dout[b]. Returns CF_ERR_INDEX (nothing written) if an id is out of range. */
int cf_dotbias_backward(float *duw, float *diw, float *dub, float *dib, const float *dout,
                        const float *uw, const float *iw, const int32_t *users,
                        const int32_t *items, int64_t B, int64_t K, int64_t NU, int64_t NI);

#endif
