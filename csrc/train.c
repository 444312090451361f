/* train.c - the exact epoch driver for the dot-product family.
 * Per batch: gather ids -> z = dot + biases -> pred = sigmoid_range(z) -> MSE ->
 * backward into the dense gradient block -> one optimizer step over every parameter
 * (fastai's dense Adam moves rows that are not in the batch too) -> re-zero only the
 * gradient rows the batch touched. The driver allocates only its per-batch scratch. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "activation.h"
#include "dotbias.h"
#include "embedding.h"
#include "loss.h"
#include "status.h"
#include "train.h"
#include "checked.h"
#include "fpmode.h"
#include "threads.h"

int64_t cf_dot_n_params(const cf_dot_config *c) {
    int64_t rows, n;
    if (!cf_add(c->n_users, c->n_items, &rows) || !cf_mul(rows, c->k, &n) ||
        (c->has_bias && !cf_add(n, rows, &n)))
        return -1;
    return n;
}

void cf_dot_offsets(int64_t off[4], const cf_dot_config *c) {
    off[0] = 0;
    off[1] = c->n_users * c->k;
    off[2] = c->has_bias ? off[1] + c->n_items * c->k : -1;
    off[3] = c->has_bias ? off[2] + c->n_users : -1;
}

cf_dot_views cf_dot_split(float *block, const cf_dot_config *c) {
    int64_t off[4];
    cf_dot_offsets(off, c);
    cf_dot_views v = {block + off[0], block + off[1], off[2] < 0 ? NULL : block + off[2],
                      off[3] < 0 ? NULL : block + off[3]};
    return v;
}

/* z[B] = dot + biases for the rows users/items; pred[B] = z or sigmoid_range(z). */
static int dot_forward(float *pred, float *z, cf_dot_views w, const int32_t *users,
                       const int32_t *items, int64_t B, const cf_dot_config *c) {
    int st = cf_dotbias_forward(z, w.uw, w.iw, w.ub, w.ib, users, items, B, c->k, c->n_users,
                                c->n_items);
    if (st != CF_OK) return st;
    if (c->has_range) cf_sigmoid_range_forward(pred, z, B, c->lo, c->hi);
    else memcpy(pred, z, (size_t)B * sizeof(float));
    return CF_OK;
}

/* rows handed to a thread at a time, and the fewest rows per thread worth starting one for */
enum { PREDICT_CHUNK = 1024, PREDICT_CLAIM = 4 * PREDICT_CHUNK, PREDICT_MIN_ROWS = 8192 };

typedef struct {
    float *out;
    cf_dot_views w;
    const int32_t *x;
    int64_t N;
    const cf_dot_config *cfg;
    pthread_mutex_t lock;
    int64_t next; /* the first row no thread has claimed */
    int status;   /* CF_OK, or the first error: no thread claims rows after it */
} predict_job;

static void *predict_worker(void *arg) {
    predict_job *j = arg;
    int32_t users[PREDICT_CHUNK], items[PREDICT_CHUNK];
    float z[PREDICT_CHUNK];
    for (;;) {
        pthread_mutex_lock(&j->lock);
        const int64_t a = j->status == CF_OK ? j->next : j->N;
        const int64_t e = j->N - a < PREDICT_CLAIM ? j->N : a + PREDICT_CLAIM;
        j->next = e;
        pthread_mutex_unlock(&j->lock);
        if (a >= j->N) return NULL;
        for (int64_t s = a; s < e; s += PREDICT_CHUNK) {
            const int64_t B = e - s < PREDICT_CHUNK ? e - s : PREDICT_CHUNK;
            for (int64_t b = 0; b < B; b++) {
                users[b] = j->x[2 * (s + b)];
                items[b] = j->x[2 * (s + b) + 1];
            }
            int st = dot_forward(j->out + s, z, j->w, users, items, B, j->cfg);
            if (st != CF_OK) {
                pthread_mutex_lock(&j->lock);
                if (j->status == CF_OK) j->status = st;
                pthread_mutex_unlock(&j->lock);
                return NULL;
            }
        }
    }
}

int cf_dot_predict(float *out, const float *params, const int32_t *x, int64_t N,
                   const cf_dot_config *cfg, int n_threads) {
    predict_job j = {out, cf_dot_split((float *)params, cfg), x, N, cfg};
    j.status = CF_OK;
    const int64_t most = N / PREDICT_MIN_ROWS > 0 ? N / PREDICT_MIN_ROWS : 1;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > most) n_threads = (int)most;
    if (pthread_mutex_init(&j.lock, NULL) != 0) return CF_ERR_NOMEM;
    cf_run_threads(n_threads, predict_worker, &j); /* the calling thread works too */
    pthread_mutex_destroy(&j.lock);
    return j.status;
}

static void zero_touched(cf_dot_views g, const int32_t *users, const int32_t *items, int64_t B,
                         int64_t K) {
    for (int64_t b = 0; b < B; b++) {
        memset(g.uw + (int64_t)users[b] * K, 0, (size_t)K * sizeof(float));
        memset(g.iw + (int64_t)items[b] * K, 0, (size_t)K * sizeof(float));
        if (g.ub) g.ub[users[b]] = 0.0f;
        if (g.ib) g.ib[items[b]] = 0.0f;
    }
}

int cf_dot_fit_epoch(float *params, float *grads, cf_optimizer *opt, double *losses,
                     int64_t *bad_batch, const int32_t *x, const float *y, const int64_t *order,
                     int64_t n_order, int64_t n_rows, int64_t bs, int64_t n_batches, const double *lrs,
                     const double *moms, const cf_dot_config *cfg) {
    *bad_batch = -1;
    if (bs < 1 || n_batches < 0 || (n_batches > 0 && (n_order == 0 || n_batches - 1 > (n_order - 1) / bs)))
        return CF_ERR_ARG;
    if (cf_dot_n_params(cfg) < 0 || opt->n != cf_dot_n_params(cfg)) return CF_ERR_ARG;
    /* every order entry the batches use, and the ids of its row, are checked before the
     * first step, so a bad row can never leave the model half-trained */
    int64_t used = n_batches == 0 ? 0 : (n_order - (n_batches - 1) * bs > bs ? n_batches * bs : n_order);
    for (int64_t r = 0; r < used; r++) {
        int64_t row = order[r];
        if (row < 0 || row >= n_rows || x[2 * row] < 0 || x[2 * row] >= cfg->n_users ||
            x[2 * row + 1] < 0 || x[2 * row + 1] >= cfg->n_items) {
            *bad_batch = r;
            return CF_ERR_INDEX;
        }
    }
    if (bs > used) bs = used > 0 ? used : 1; /* one batch holds at most every row used */
    int32_t *users = bs <= INT64_MAX / 5 ? cf_alloc(2 * bs, sizeof(int32_t)) : NULL;
    float *fbuf = bs <= INT64_MAX / 5 ? cf_alloc(5 * bs, sizeof(float)) : NULL;
    if (!users || !fbuf) { free(users); free(fbuf); return CF_ERR_NOMEM; }
    int32_t *items = users + bs;
    float *yb = fbuf, *z = fbuf + bs, *pred = fbuf + 2 * bs, *dpred = fbuf + 3 * bs,
          *dz = fbuf + 4 * bs;

    memset(grads, 0, (size_t)opt->n * sizeof(float));
    cf_fp_mode mode = cf_fp_flush_subnormals();
    cf_dot_views w = cf_dot_split(params, cfg), g = cf_dot_split(grads, cfg);
    int status = CF_OK;
    for (int64_t j = 0; j < n_batches; j++) {
        int64_t start = j * bs;
        int64_t B = used - start < bs ? used - start : bs;
        int64_t b_bad = -1;
        for (int64_t b = 0; b < B && b_bad < 0; b++) {
            int64_t r = order[start + b];
            if (r < 0 || r >= n_rows) {
                b_bad = b;
                break;
            }
            users[b] = x[2 * r];
            items[b] = x[2 * r + 1];
            yb[b] = y[r];
            if (users[b] < 0 || users[b] >= cfg->n_users || items[b] < 0 || items[b] >= cfg->n_items)
                b_bad = b;
        }
        /* the batch's rows and ids are checked as they are read and used from these copies
         * only: order or x changed by another thread after the check above can give a wrong
         * batch, or stop here, but never an index outside x or the tables */
        if (b_bad >= 0 || dot_forward(pred, z, w, users, items, B, cfg) != CF_OK) {
            *bad_batch = start + (b_bad >= 0 ? b_bad : 0);
            status = CF_ERR_INDEX;
            break;
        }
        double loss = cf_mse_forward(pred, yb, B);
        losses[j] = loss;
        if (!isfinite(loss)) { *bad_batch = j; status = CF_ERR_NONFINITE; break; }

        memset(dpred, 0, (size_t)B * sizeof(float));
        cf_mse_backward(dpred, pred, yb, B);
        if (cfg->has_range) {
            memset(dz, 0, (size_t)B * sizeof(float));
            cf_sigmoid_range_backward(dz, dpred, z, B, cfg->lo, cfg->hi);
        } else {
            memcpy(dz, dpred, (size_t)B * sizeof(float));
        }
        cf_dotbias_backward(g.uw, g.iw, g.ub, g.ib, dz, w.uw, w.iw, users, items, B, cfg->k,
                            cfg->n_users, cfg->n_items);
        cf_optimizer_step(opt, params, grads, lrs[j], moms[j]);
        zero_touched(g, users, items, B, cfg->k);
    }
    cf_fp_restore(mode);
    free(users);
    free(fbuf);
    return status;
}
