/* nn.c - forward, backward and the epoch driver of the embedding + MLP model.
 * Activations are feature-major (features x batch) so every kernel loops over the batch
 * with unit stride. Slot k holds the input of op k; slot n_ops holds the model output.
 * The driver allocates its scratch once per call and frees it before returning. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "activation.h"
#include "batchnorm.h"
#include "embedding.h"
#include "linear.h"
#include "loss.h"
#include "nn.h"
#include "rng.h"
#include "status.h"
#include "checked.h"
#include "fpmode.h"

static int in_block(int64_t off, int64_t len, int64_t size) {
    return off >= 0 && len >= 0 && off <= size && len <= size - off;
}

int cf_nn_validate(const cf_nn_config *c) {
    if (c->n_emb < 1 || c->n_ops < 1) return CF_ERR_ARG;
    int64_t width = 0, size;
    for (int64_t e = 0; e < c->n_emb; e++) {
        if (c->emb_rows[e] < 1 || c->emb_dim[e] < 1 || !cf_mul(c->emb_rows[e], c->emb_dim[e], &size))
            return CF_ERR_ARG;
        if (!in_block(c->emb_off[e], size, c->n_params) || !cf_add(width, c->emb_dim[e], &width))
            return CF_ERR_ARG;
    }
    for (int64_t k = 0; k < c->n_ops; k++) {
        const cf_nn_op *op = &c->ops[k];
        if (op->n_in != width || op->n_out < 1) return CF_ERR_ARG;
        switch (op->kind) {
        case CF_NN_LINEAR:
            if (!cf_mul(op->n_out, op->n_in, &size) || !in_block(op->w, size, c->n_params)) return CF_ERR_ARG;
            if (op->b != -1 && !in_block(op->b, op->n_out, c->n_params)) return CF_ERR_ARG;
            break;
        case CF_NN_BATCHNORM:
            if (op->n_out != op->n_in || !in_block(op->w, op->n_in, c->n_params) ||
                !in_block(op->b, op->n_in, c->n_params) || !cf_mul(2, op->n_in, &size) ||
                !in_block(op->stat, size, c->n_stats))
                return CF_ERR_ARG;
            break;
        case CF_NN_RELU:
            if (op->n_out != op->n_in) return CF_ERR_ARG;
            break;
        case CF_NN_DROPOUT:
            if (op->n_out != op->n_in || !(op->p >= 0.0 && op->p < 1.0)) return CF_ERR_ARG;
            break;
        default:
            return CF_ERR_ARG;
        }
        width = op->n_out;
    }
    return width == 1 ? CF_OK : CF_ERR_ARG;
}

/* scratch laid out for batches of up to B rows */
typedef struct {
    float *act;      /* slots: act + slot_off[k] * B */
    float *dact;
    float *aux;      /* per op: BatchNorm mean/invstd, Dropout mask */
    float *pred, *dpred, *yb;
    int32_t *ids;    /* [n_emb, B] */
    const float **tables; /* [n_emb] table pointers into params / grads */
    float **dtables;
    int64_t *slot_off, *aux_off;
    int64_t B;
} nn_scratch;

static void nn_free(nn_scratch *s) {
    free(s->act);
    free(s->dact);
    free(s->aux);
    free(s->pred);
    free(s->ids);
    free(s->slot_off);
    free(s->tables);
}

/* the scratch for batches of up to B rows; CF_ERR_NOMEM when it cannot be had, including
 * when its size does not fit (every product below is overflow-checked: a network of many
 * wide layers times a large B must be refused, never given a wrapped, too-small buffer) */
static int nn_alloc(nn_scratch *s, const cf_nn_config *c, int64_t B, int with_grads) {
    memset(s, 0, sizeof *s);
    s->B = B;
    int64_t n_off, slots = 0, aux = 0, act, n_ids, t;
    if (!cf_add(c->n_ops, 1, &n_off) || !cf_mul(n_off, 2, &n_off)) return CF_ERR_NOMEM;
    s->slot_off = cf_alloc(n_off, sizeof(int64_t));
    if (!s->slot_off) return CF_ERR_NOMEM;
    s->aux_off = s->slot_off + c->n_ops + 1;
    for (int64_t k = 0; k <= c->n_ops; k++) {
        s->slot_off[k] = slots;
        if (!cf_add(slots, k < c->n_ops ? c->ops[k].n_in : 1, &slots)) goto nomem;
        if (k < c->n_ops) {
            s->aux_off[k] = aux;
            t = 0;
            if (c->ops[k].kind == CF_NN_BATCHNORM && !cf_mul(2, c->ops[k].n_in, &t)) goto nomem;
            if (c->ops[k].kind == CF_NN_DROPOUT && !cf_mul(c->ops[k].n_in, B, &t)) goto nomem;
            if (!cf_add(aux, t, &aux)) goto nomem;
        }
    }
    if (!cf_mul(slots, B, &act) || !cf_mul(c->n_emb, B, &n_ids) || !cf_mul(3, B, &t)) goto nomem;
    s->act = cf_alloc(act, sizeof(float));
    s->dact = with_grads ? cf_alloc(act, sizeof(float)) : NULL;
    s->aux = cf_alloc(aux, sizeof(float));
    s->pred = cf_alloc(t, sizeof(float));
    s->ids = cf_alloc(n_ids, sizeof(int32_t));
    s->tables = c->n_emb <= INT64_MAX / 2 ? cf_alloc(2 * c->n_emb, sizeof(float *)) : NULL;
    if (!s->act || (with_grads && !s->dact) || !s->aux || !s->pred || !s->ids || !s->tables)
        goto nomem;
    s->dpred = s->pred + B;
    s->yb = s->pred + 2 * B;
    s->dtables = (float **)(s->tables + c->n_emb);
    return CF_OK;
nomem:
    nn_free(s);
    return CF_ERR_NOMEM;
}

/* points the scratch's table pointers at the embedding tables of params and grads */
static void nn_bind_tables(nn_scratch *s, const float *params, float *grads, const cf_nn_config *c) {
    for (int64_t e = 0; e < c->n_emb; e++) {
        s->tables[e] = params + c->emb_off[e];
        s->dtables[e] = grads ? grads + c->emb_off[e] : NULL;
    }
}

/* CF_ERR_INDEX (nothing else computed) when an id of s->ids is outside its table */
static int nn_forward(nn_scratch *s, const float *params, float *stats, const cf_nn_config *c,
                      int64_t B, int training, cf_rng *rng) {
    if (cf_embedding_concat_forward(s->act, s->tables, c->emb_rows, c->emb_dim, s->ids, c->n_emb,
                                    B) != CF_OK)
        return CF_ERR_INDEX;
    for (int64_t k = 0; k < c->n_ops; k++) {
        const cf_nn_op *op = &c->ops[k];
        const float *in = s->act + s->slot_off[k] * B;
        float *out = s->act + s->slot_off[k + 1] * B;
        float *aux = s->aux + s->aux_off[k];
        int64_t n = op->n_in;
        switch (op->kind) {
        case CF_NN_LINEAR:
            cf_linear_forward(out, in, params + op->w, op->b >= 0 ? params + op->b : NULL, B,
                              op->n_in, op->n_out);
            break;
        case CF_NN_RELU:
            cf_relu_forward(out, in, n * B);
            break;
        case CF_NN_BATCHNORM:
            if (training)
                cf_batchnorm_forward_train(out, aux, aux + n, in, params + op->w, params + op->b,
                                           stats + op->stat, stats + op->stat + n, B, n,
                                           c->bn_momentum, c->bn_eps);
            else
                cf_batchnorm_forward_eval(out, in, params + op->w, params + op->b,
                                          stats + op->stat, stats + op->stat + n, B, n,
                                          c->bn_eps);
            break;
        case CF_NN_DROPOUT:
            if (training && op->p > 0.0) {
                cf_dropout_mask(aux, n * B, op->p, rng);
                cf_dropout_forward(out, in, aux, n * B);
            } else {
                memcpy(out, in, sizeof(float) * (size_t)(n * B));
            }
            break;
        }
    }
    const float *z = s->act + s->slot_off[c->n_ops] * B;
    if (c->has_range) cf_sigmoid_range_forward(s->pred, z, B, c->lo, c->hi);
    else memcpy(s->pred, z, sizeof(float) * (size_t)B);
    return CF_OK;
}

/* backward from s->dpred; accumulates into grads (which the caller zeroed) */
static void nn_backward(nn_scratch *s, float *grads, const float *params, const cf_nn_config *c,
                        int64_t B) {
    int64_t total = s->slot_off[c->n_ops] + 1;
    memset(s->dact, 0, sizeof(float) * (size_t)(total * B));
    float *dz = s->dact + s->slot_off[c->n_ops] * B;
    const float *z = s->act + s->slot_off[c->n_ops] * B;
    if (c->has_range) cf_sigmoid_range_backward(dz, s->dpred, z, B, c->lo, c->hi);
    else memcpy(dz, s->dpred, sizeof(float) * (size_t)B);
    for (int64_t k = c->n_ops - 1; k >= 0; k--) {
        const cf_nn_op *op = &c->ops[k];
        const float *in = s->act + s->slot_off[k] * B;
        float *din = s->dact + s->slot_off[k] * B;
        const float *dout = s->dact + s->slot_off[k + 1] * B;
        const float *aux = s->aux + s->aux_off[k];
        int64_t n = op->n_in;
        switch (op->kind) {
        case CF_NN_LINEAR:
            cf_linear_backward(din, grads + op->w, op->b >= 0 ? grads + op->b : NULL, dout, in,
                               params + op->w, B, op->n_in, op->n_out);
            break;
        case CF_NN_RELU:
            cf_relu_backward(din, dout, in, n * B);
            break;
        case CF_NN_BATCHNORM:
            cf_batchnorm_backward(din, grads + op->w, grads + op->b, dout, in, aux, aux + n,
                                  params + op->w, B, n);
            break;
        case CF_NN_DROPOUT:
            if (op->p > 0.0)
                cf_dropout_backward(din, dout, aux, n * B);
            else
                for (int64_t t = 0; t < n * B; t++) din[t] += dout[t];
            break;
        }
    }
    /* scatter slot 0's gradient into the embedding rows */
    cf_embedding_concat_backward(s->dtables, s->dact, c->emb_rows, c->emb_dim, s->ids, c->n_emb, B);
}

/* zero the gradient of every dense layer and of the embedding rows this batch touched */
static void nn_zero_grads(float *grads, const nn_scratch *s, const cf_nn_config *c, int64_t B) {
    for (int64_t k = 0; k < c->n_ops; k++) {
        const cf_nn_op *op = &c->ops[k];
        if (op->kind == CF_NN_LINEAR) {
            memset(grads + op->w, 0, sizeof(float) * (size_t)(op->n_in * op->n_out));
            if (op->b >= 0) memset(grads + op->b, 0, sizeof(float) * (size_t)op->n_out);
        } else if (op->kind == CF_NN_BATCHNORM) {
            memset(grads + op->w, 0, sizeof(float) * (size_t)op->n_in);
            memset(grads + op->b, 0, sizeof(float) * (size_t)op->n_in);
        }
    }
    for (int64_t e = 0; e < c->n_emb; e++) {
        int64_t d = c->emb_dim[e];
        const int32_t *ids = s->ids + e * B;
        for (int64_t b = 0; b < B; b++)
            memset(grads + c->emb_off[e] + (int64_t)ids[b] * d, 0, sizeof(float) * (size_t)d);
    }
}

static int64_t nn_first_bad_id(const int32_t *x, int64_t N, const cf_nn_config *c) {
    for (int64_t e = 0; e < c->n_emb; e++) {
        int64_t bad = cf_ids_first_bad(x + e, N, c->n_emb, c->emb_rows[e]);
        if (bad >= 0) return bad;
    }
    return -1;
}

/* copies the ids of rows rows[0..B) (or rows first..first+B when rows is NULL) of x into
 * s->ids, feature-major, and their ratings (when y is not NULL) into s->yb, checking each
 * row and id as it is read: x and rows may be changed by another thread while the GIL is
 * released, and only the checked copies are used. Returns the position b of the first row
 * that is outside [0, n_rows) or holds an id outside its table, or -1. */
static int64_t nn_gather(nn_scratch *s, const int32_t *x, const float *y, const int64_t *rows,
                         int64_t first, int64_t B, int64_t n_rows, const cf_nn_config *c) {
    const int64_t E = c->n_emb;
    for (int64_t b = 0; b < B; b++) {
        const int64_t r = rows ? rows[b] : first + b;
        if (r < 0 || r >= n_rows) return b;
        for (int64_t e = 0; e < E; e++) {
            const int32_t id = x[r * E + e];
            if (id < 0 || (int64_t)id >= c->emb_rows[e]) return b;
            s->ids[e * B + b] = id;
        }
        if (y) s->yb[b] = y[r];
    }
    return -1;
}

int cf_nn_predict(float *out, const float *params, const float *stats, const int32_t *x,
                  int64_t N, const cf_nn_config *c) {
    enum { CHUNK = 256 };
    if (cf_nn_validate(c) != CF_OK) return CF_ERR_ARG;
    if (nn_first_bad_id(x, N, c) >= 0) return CF_ERR_INDEX;
    nn_scratch s;
    if (nn_alloc(&s, c, CHUNK, 0) != CF_OK) return CF_ERR_NOMEM;
    nn_bind_tables(&s, params, NULL, c);
    int status = CF_OK;
    for (int64_t start = 0; start < N; start += CHUNK) {
        int64_t B = N - start < CHUNK ? N - start : CHUNK;
        if (nn_gather(&s, x, NULL, NULL, start, B, N, c) >= 0 ||
            nn_forward(&s, params, (float *)stats, c, B, 0, NULL) != CF_OK) {
            status = CF_ERR_INDEX;
            break;
        }
        memcpy(out + start, s.pred, sizeof(float) * (size_t)B);
    }
    nn_free(&s);
    return status;
}

int cf_nn_fit_epoch(float *params, float *grads, float *stats, cf_optimizer *opt,
                    double *losses, int64_t *bad_batch, const int32_t *x, const float *y,
                    const int64_t *order, int64_t n_order, int64_t n_rows, int64_t bs, int64_t n_batches,
                    const double *lrs, const double *moms, uint64_t seed,
                    const cf_nn_config *c) {
    *bad_batch = -1;
    if (cf_nn_validate(c) != CF_OK || opt->n != c->n_params) return CF_ERR_ARG;
    if (bs < 1 || n_batches < 0 || (n_batches > 0 && (n_order == 0 || n_batches - 1 > (n_order - 1) / bs)))
        return CF_ERR_ARG;
    int has_bn = 0;
    for (int64_t k = 0; k < c->n_ops; k++) has_bn |= c->ops[k].kind == CF_NN_BATCHNORM;
    int64_t used = n_batches == 0 ? 0 : (n_order - (n_batches - 1) * bs > bs ? n_batches * bs : n_order);
    for (int64_t r = 0; r < used; r++) {
        int64_t row = order[r];
        if (row < 0 || row >= n_rows || nn_first_bad_id(x + row * c->n_emb, 1, c) >= 0) {
            *bad_batch = r;
            return CF_ERR_INDEX;
        }
    }
    /* BatchNorm needs two rows per batch to have a variance */
    if (has_bn && n_batches > 0 && (used - (n_batches - 1) * bs < 2 || bs < 2)) return CF_ERR_ARG;
    if (bs > used) bs = used > 0 ? used : 1; /* one batch holds at most every row used */
    nn_scratch s;
    if (nn_alloc(&s, c, bs, 1) != CF_OK) return CF_ERR_NOMEM;
    nn_bind_tables(&s, params, grads, c);
    cf_rng rng;
    cf_rng_seed(&rng, seed);
    memset(grads, 0, sizeof(float) * (size_t)c->n_params);
    cf_fp_mode mode = cf_fp_flush_subnormals();
    int status = CF_OK;
    for (int64_t j = 0; j < n_batches; j++) {
        int64_t start = j * bs;
        int64_t B = used - start < bs ? used - start : bs;
        /* the batch's rows and ids are checked again as they are copied (order and x may
         * change under a call that released the GIL); only the copies are used */
        int64_t b_bad = nn_gather(&s, x, y, order + start, 0, B, n_rows, c);
        if (b_bad >= 0 || nn_forward(&s, params, stats, c, B, 1, &rng) != CF_OK) {
            *bad_batch = start + (b_bad >= 0 ? b_bad : 0);
            status = CF_ERR_INDEX;
            break;
        }
        double loss = cf_mse_forward(s.pred, s.yb, B);
        losses[j] = loss;
        if (!isfinite(loss)) { *bad_batch = j; status = CF_ERR_NONFINITE; break; }
        memset(s.dpred, 0, sizeof(float) * (size_t)B);
        cf_mse_backward(s.dpred, s.pred, s.yb, B);
        nn_backward(&s, grads, params, c, B);
        cf_optimizer_step(opt, params, grads, lrs[j], moms[j]);
        nn_zero_grads(grads, &s, c, B);
    }
    cf_fp_restore(mode);
    nn_free(&s);
    return status;
}
