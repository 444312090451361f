/* sparse.c - per-rating SGD / row-wise Adagrad / lazy Adam for the dot-product models over
 * a grid of blocks, with LibMF's scheduling on pthreads: a mutex hands each thread a block
 * whose user group and item group no other thread holds. Each thread owns a scratch row of
 * gradients. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "fpmode.h"
#include "simd.h"
#include "sparse.h"
#include "status.h"

typedef struct {
    float *params;
    cf_sparse_opt *opt;
    double *block_loss;
    const int32_t *x;
    const float *y;
    const int64_t *starts, *blocks;
    int64_t nb, n_sel;
    const double *lrs;
    const cf_dot_config *cfg;
    int n_threads;
    pthread_mutex_t lock;
    pthread_cond_t turn;
    int64_t group;      /* stratum being trained: blocks [group*nb, group*nb + nb) */
    int64_t next;       /* next block position to hand out inside the stratum */
    int waiting;        /* threads done with the current stratum */
    int64_t bad;        /* first block with a non-finite error, or n_sel */
    int nomem;
} sparse_job;

#if defined(__GNUC__)
#define CF_INLINE static inline __attribute__((always_inline))
#else
#define CF_INLINE static inline
#endif

/* sum_k a[k] * b[k] in 16 interleaved partial sums combined pairwise: a fixed order that
 * vectorises (a plain left-to-right float sum cannot be, without reassociation). The lanes
 * are a GCC/Clang vector type, lowered to whatever width the target has; every clone adds
 * in the same order, so the result does not depend on the CPU. */
#if defined(__GNUC__)
typedef float cf_v16 __attribute__((vector_size(64)));
CF_INLINE float dot16(const float *a, const float *b, int64_t n) {
    cf_v16 acc = {0}, x, y;
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        memcpy(&x, a + k, sizeof x);
        memcpy(&y, b + k, sizeof y);
        acc += x * y;
    }
    float t[16];
    memcpy(t, &acc, sizeof t);
    for (int l = 0; k < n; k++, l++) t[l] += a[k] * b[k];
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) t[l] += t[l + w];
    return t[0];
}
#else
CF_INLINE float dot16(const float *a, const float *b, int64_t n) {
    float acc[16] = {0};
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
        for (int l = 0; l < 16; l++) acc[l] += a[k + l] * b[k + l];
    for (int l = 0; k < n; k++, l++) acc[l] += a[k] * b[k];
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    return acc[0];
}
#endif

/* updates the K factors p (and bias *b, may be NULL) of one row given their gradient
 * gp = dz * other_row (+ wd p), gb = dz (+ wd b) */
CF_INLINE void row_update(float *restrict p, float *restrict b, const float *restrict g,
                              float gb, int64_t K, int64_t row, float lr, const cf_sparse_opt *o,
                              int64_t n_rows_total, int64_t off) {
    if (o->kind == CF_SPARSE_SGD) {
        for (int64_t k = 0; k < K; k++) p[k] -= lr * g[k];
        if (b) *b -= lr * gb;
    } else if (o->kind == CF_SPARSE_ADAGRAD) {
        float ss = dot16(g, g, K);
        float *acc = o->v;
        acc[row] += ss / (float)K;
        float s = lr / sqrtf(acc[row] + (float)o->eps);
        for (int64_t k = 0; k < K; k++) p[k] -= s * g[k];
        if (b) {
            acc[n_rows_total + row] += gb * gb;
            *b -= lr * gb / sqrtf(acc[n_rows_total + row] + (float)o->eps);
        }
    } else {
        const float b1 = (float)o->beta1, b2 = (float)o->beta2, e = (float)o->eps;
        float p1 = o->pow1[row] * b1, p2 = o->pow2[row] * b2;
        o->pow1[row] = p1;
        o->pow2[row] = p2;
        const float a = lr / (1.0f - p1), r2 = 1.0f / sqrtf(1.0f - p2);
        float *restrict m = o->m + off, *restrict v = o->v + off;
        for (int64_t k = 0; k < K; k++) {
            m[k] = b1 * m[k] + (1.0f - b1) * g[k];
            v[k] = b2 * v[k] + (1.0f - b2) * (g[k] * g[k]);
            p[k] -= a * m[k] / (sqrtf(v[k]) * r2 + e);
        }
        if (b) {
            int64_t boff = (int64_t)(b - p) + off; /* same offset in m, v as the bias in params */
            float *mb = o->m + boff, *vb = o->v + boff;
            *mb = b1 * *mb + (1.0f - b1) * gb;
            *vb = b2 * *vb + (1.0f - b2) * (gb * gb);
            *b -= a * *mb / (sqrtf(*vb) * r2 + e);
        }
    }
}

/* trains the ratings of block position k; returns 0, or 1 on a non-finite error */
CF_VECTOR_CLONES
static int run_block(sparse_job *j, int64_t k, float *gu, float *gi) {
    const cf_dot_config *c = j->cfg;
    const int64_t K = c->k, NU = c->n_users, NI = c->n_items;
    float *U = j->params, *I = U + NU * K;
    float *BU = c->has_bias ? I + NI * K : NULL, *BI = c->has_bias ? BU + NU : NULL;
    const float lr = (float)j->lrs[k], wd = (float)j->opt->wd;
    const float span = c->hi - c->lo;
    int64_t start = j->starts[j->blocks[k]], end = j->starts[j->blocks[k] + 1];
    double sse = 0.0;
    int status = 0;
    for (int64_t r = start; r < end; r++) {
        int64_t u = j->x[2 * r], i = j->x[2 * r + 1];
        float *restrict pu = U + u * K, *restrict qi = I + i * K;
        float z = dot16(pu, qi, K);
        if (BU) z += BU[u] + BI[i];
        float pred = z, dpred = 1.0f;
        if (c->has_range) {
            float s = 1.0f / (1.0f + expf(-z));
            pred = s * span + c->lo;
            dpred = span * s * (1.0f - s);
        }
        float err = pred - j->y[r];
        if (!isfinite(err)) {
            status = 1;
            break;
        }
        sse += (double)err * (double)err;
        float dz = 2.0f * err * dpred;
        for (int64_t f = 0; f < K; f++) {
            gu[f] = dz * qi[f] + wd * pu[f];
            gi[f] = dz * pu[f] + wd * qi[f];
        }
        float gbu = BU ? dz + wd * BU[u] : 0.0f, gbi = BI ? dz + wd * BI[i] : 0.0f;
        row_update(pu, BU ? BU + u : NULL, gu, gbu, K, u, lr, j->opt, NU + NI, u * K);
        row_update(qi, BI ? BI + i : NULL, gi, gbi, K, NU + i, lr, j->opt, NU + NI, NU * K + i * K);
    }
    j->block_loss[k] = end > start ? sse / (double)(end - start) : 0.0;
    return status;
}

/* next block position of the current stratum, or -1 when the stratum is exhausted or
 * training stopped; the last thread to finish a stratum opens the next one */
static int64_t take_block(sparse_job *j) {
    pthread_mutex_lock(&j->lock);
    for (;;) {
        int64_t end = (j->group + 1) * j->nb;
        if (j->bad < j->n_sel || j->nomem || j->group * j->nb >= j->n_sel) {
            pthread_mutex_unlock(&j->lock);
            return -1;
        }
        if (j->next < end) {
            int64_t k = j->next++;
            pthread_mutex_unlock(&j->lock);
            return k;
        }
        /* stratum exhausted: wait for the others (a barrier), then move on */
        int64_t g = j->group;
        if (++j->waiting == j->n_threads) {
            j->waiting = 0;
            j->group++;
            j->next = j->group * j->nb;
            pthread_cond_broadcast(&j->turn);
        } else {
            while (j->group == g && !(j->bad < j->n_sel) && !j->nomem)
                pthread_cond_wait(&j->turn, &j->lock);
        }
    }
}

static void stop_with(sparse_job *j, int64_t k, int nomem) {
    pthread_mutex_lock(&j->lock);
    if (nomem) j->nomem = 1;
    else if (k < j->bad) j->bad = k;
    pthread_cond_broadcast(&j->turn);
    pthread_mutex_unlock(&j->lock);
}

static void *worker(void *arg) {
    sparse_job *j = arg;
    float *g = malloc(sizeof(float) * (size_t)(2 * j->cfg->k));
    if (!g) {
        stop_with(j, 0, 1);
        return NULL;
    }
    cf_fp_mode mode = cf_fp_flush_subnormals();
    for (;;) {
        int64_t k = take_block(j);
        if (k < 0) break;
        if (run_block(j, k, g, g + j->cfg->k)) stop_with(j, k, 0);
    }
    cf_fp_restore(mode);
    free(g);
    return NULL;
}

int cf_block_sort(int32_t *x, float *y, int64_t *extra, int64_t n, int64_t nb, int64_t *starts) {
    if (nb < 1 || n < 0) return CF_ERR_ARG;
    int64_t NB = nb * nb;
    int64_t *next = malloc(sizeof(int64_t) * (size_t)NB);
    if (!next) return CF_ERR_NOMEM;
    for (int64_t b = 0; b <= NB; b++) starts[b] = 0;
    for (int64_t r = 0; r < n; r++) {
        if (x[2 * r] < 0 || x[2 * r + 1] < 0) { free(next); return CF_ERR_INDEX; }
        starts[(x[2 * r] % nb) * nb + x[2 * r + 1] % nb + 1]++;
    }
    for (int64_t b = 0; b < NB; b++) starts[b + 1] += starts[b];
    for (int64_t b = 0; b < NB; b++) next[b] = starts[b];
    /* in-place bucket permutation (American flag sort): each swap puts one row home */
    for (int64_t b = 0; b < NB; b++) {
        while (next[b] < starts[b + 1]) {
            int64_t r = next[b];
            int64_t t = (x[2 * r] % nb) * nb + x[2 * r + 1] % nb;
            if (t == b) {
                next[b]++;
                continue;
            }
            int64_t d = next[t]++;
            int32_t u = x[2 * r], i = x[2 * r + 1];
            x[2 * r] = x[2 * d];
            x[2 * r + 1] = x[2 * d + 1];
            x[2 * d] = u;
            x[2 * d + 1] = i;
            float v = y[r];
            y[r] = y[d];
            y[d] = v;
            if (extra) {
                int64_t e = extra[r];
                extra[r] = extra[d];
                extra[d] = e;
            }
        }
    }
    free(next);
    return CF_OK;
}

int cf_dot_fit_blocks(float *params, cf_sparse_opt *opt, double *block_loss, int64_t *bad,
                      const int32_t *x, const float *y, int64_t n_rows, const int64_t *starts,
                      int64_t nb, const int64_t *blocks, int64_t n_sel, const double *lrs,
                      const cf_dot_config *cfg, int n_threads) {
    *bad = -1;
    if (nb < 1 || n_sel < 0 || n_threads < 1 || cfg->k < 1 || starts[nb * nb] != n_rows)
        return CF_ERR_ARG;
    if (opt->kind == CF_SPARSE_ADAM && (!opt->m || !opt->v || !opt->pow1 || !opt->pow2))
        return CF_ERR_ARG;
    if (opt->kind == CF_SPARSE_ADAGRAD && !opt->v) return CF_ERR_ARG;
    for (int64_t k = 0; k < n_sel; k++) {
        if (blocks[k] < 0 || blocks[k] >= nb * nb) { *bad = k; return CF_ERR_INDEX; }
        for (int64_t r = starts[blocks[k]]; r < starts[blocks[k] + 1]; r++)
            if (x[2 * r] < 0 || x[2 * r] >= cfg->n_users || x[2 * r + 1] < 0 ||
                x[2 * r + 1] >= cfg->n_items) {
                *bad = r;
                return CF_ERR_INDEX;
            }
    }
    /* each stratum (group of nb consecutive positions) must hold nb blocks that share no
     * user group and no item group, so its blocks can run at once */
    if (n_sel % nb != 0) return CF_ERR_ARG;
    unsigned char *seen = calloc((size_t)(2 * nb), 1);
    if (!seen) return CF_ERR_NOMEM;
    for (int64_t g0 = 0; g0 < n_sel; g0 += nb) {
        memset(seen, 0, (size_t)(2 * nb));
        for (int64_t k = g0; k < g0 + nb; k++) {
            int64_t ug = blocks[k] / nb, ig = nb + blocks[k] % nb;
            if (seen[ug] || seen[ig]) { free(seen); *bad = k; return CF_ERR_ARG; }
            seen[ug] = seen[ig] = 1;
        }
    }
    free(seen);
    sparse_job j;
    memset(&j, 0, sizeof j);
    j.params = params;
    j.opt = opt;
    j.block_loss = block_loss;
    j.x = x;
    j.y = y;
    j.starts = starts;
    j.blocks = blocks;
    j.nb = nb;
    j.n_sel = n_sel;
    j.lrs = lrs;
    j.cfg = cfg;
    j.bad = n_sel;
    if (n_threads > nb) n_threads = (int)nb; /* a stratum has nb blocks */
    if (n_threads > 64) n_threads = 64;
    if (pthread_mutex_init(&j.lock, NULL) != 0) return CF_ERR_NOMEM;
    if (pthread_cond_init(&j.turn, NULL) != 0) {
        pthread_mutex_destroy(&j.lock);
        return CF_ERR_NOMEM;
    }
    pthread_t tid[64];
    int started = 0;
    /* workers wait on the lock until the count of threads that really started is known */
    pthread_mutex_lock(&j.lock);
    for (int t = 1; t < n_threads; t++) {
        if (pthread_create(&tid[started], NULL, worker, &j) != 0) break;
        started++;
    }
    j.n_threads = started + 1;
    pthread_mutex_unlock(&j.lock);
    worker(&j); /* the calling thread works too */
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
    pthread_cond_destroy(&j.turn);
    pthread_mutex_destroy(&j.lock);
    if (j.nomem) return CF_ERR_NOMEM;
    if (j.bad < n_sel) {
        *bad = j.bad;
        return CF_ERR_NONFINITE;
    }
    return CF_OK;
}
