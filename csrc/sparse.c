/* sparse.c - per-rating SGD / row-wise Adagrad / lazy Adam for the dot-product models over
 * a grid of blocks, with LibMF's scheduling on pthreads: a mutex hands each thread a block
 * whose user group and item group no other thread holds. */
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

/* sum over f of (dz * b[f] + wd * a[f])^2: the squared gradient of row a, in 16 lanes */
CF_INLINE float grad_sumsq(const float *a, const float *b, float dz, float wd, int64_t n) {
    float acc[16] = {0};
    int64_t f = 0;
    for (; f + 16 <= n; f += 16)
        for (int l = 0; l < 16; l++) {
            float g = dz * b[f + l] + wd * a[f + l];
            acc[l] += g * g;
        }
    for (int l = 0; f < n; f++, l++) {
        float g = dz * b[f] + wd * a[f];
        acc[l] += g * g;
    }
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    return acc[0];
}

/* One rating's update of its user row pu (bias *bu) and item row qi (bias *bi), given
 * dz = dL/dz: g_pu = dz qi + wd pu, g_qi = dz pu + wd qi, g_b = dz + wd b, all from the
 * values before the update. ru / ri are the rows' optimizer rows (items after users), ou /
 * oi their offsets in the parameter block. One fused pass per optimizer. */
CF_INLINE void update_pair(const cf_sparse_opt *o, float *restrict pu, float *restrict qi,
                           float *bu, float *bi, float dz, float wd, float lr, int64_t K,
                           int64_t ru, int64_t ri, int64_t n_rows, int64_t ou, int64_t oi) {
    float gbu = bu ? dz + wd * *bu : 0.0f, gbi = bi ? dz + wd * *bi : 0.0f;
    if (o->kind == CF_SPARSE_SGD) {
        for (int64_t f = 0; f < K; f++) {
            float a = pu[f], b = qi[f];
            pu[f] = a - lr * (dz * b + wd * a);
            qi[f] = b - lr * (dz * a + wd * b);
        }
        if (bu) *bu -= lr * gbu;
        if (bi) *bi -= lr * gbi;
    } else if (o->kind == CF_SPARSE_ADAGRAD) {
        float *acc = o->v;
        const float e = (float)o->eps;
        acc[ru] += grad_sumsq(pu, qi, dz, wd, K) / (float)K;
        acc[ri] += grad_sumsq(qi, pu, dz, wd, K) / (float)K;
        const float cu = lr / sqrtf(acc[ru] + e), ci = lr / sqrtf(acc[ri] + e);
        for (int64_t f = 0; f < K; f++) {
            float a = pu[f], b = qi[f];
            pu[f] = a - cu * (dz * b + wd * a);
            qi[f] = b - ci * (dz * a + wd * b);
        }
        if (bu) {
            acc[n_rows + ru] += gbu * gbu;
            *bu -= lr * gbu / sqrtf(acc[n_rows + ru] + e);
        }
        if (bi) {
            acc[n_rows + ri] += gbi * gbi;
            *bi -= lr * gbi / sqrtf(acc[n_rows + ri] + e);
        }
    } else {
        const float b1 = (float)o->beta1, b2 = (float)o->beta2, e = (float)o->eps;
        const float c1 = 1.0f - b1, c2 = 1.0f - b2;
        float pu1 = o->pow1[ru] * b1, pu2 = o->pow2[ru] * b2;
        float pi1 = o->pow1[ri] * b1, pi2 = o->pow2[ri] * b2;
        o->pow1[ru] = pu1;
        o->pow2[ru] = pu2;
        o->pow1[ri] = pi1;
        o->pow2[ri] = pi2;
        const float au = lr / (1.0f - pu1), su = 1.0f / sqrtf(1.0f - pu2);
        const float ai = lr / (1.0f - pi1), si = 1.0f / sqrtf(1.0f - pi2);
        float *restrict mu = o->m + ou, *restrict vu = o->v + ou;
        float *restrict mi = o->m + oi, *restrict vi = o->v + oi;
        for (int64_t f = 0; f < K; f++) {
            float a = pu[f], b = qi[f];
            float gu = dz * b + wd * a, gi = dz * a + wd * b;
            float m1 = b1 * mu[f] + c1 * gu, v1 = b2 * vu[f] + c2 * (gu * gu);
            float m2 = b1 * mi[f] + c1 * gi, v2 = b2 * vi[f] + c2 * (gi * gi);
            mu[f] = m1;
            vu[f] = v1;
            mi[f] = m2;
            vi[f] = v2;
            pu[f] = a - au * m1 / (sqrtf(v1) * su + e);
            qi[f] = b - ai * m2 / (sqrtf(v2) * si + e);
        }
        float *params = pu - ou; /* the bias of a row sits at the same offset in m and v */
        if (bu) {
            int64_t ob = bu - params;
            float m1 = b1 * o->m[ob] + c1 * gbu, v1 = b2 * o->v[ob] + c2 * (gbu * gbu);
            o->m[ob] = m1;
            o->v[ob] = v1;
            *bu -= au * m1 / (sqrtf(v1) * su + e);
        }
        if (bi) {
            int64_t ob = bi - params;
            float m2 = b1 * o->m[ob] + c1 * gbi, v2 = b2 * o->v[ob] + c2 * (gbi * gbi);
            o->m[ob] = m2;
            o->v[ob] = v2;
            *bi -= ai * m2 / (sqrtf(v2) * si + e);
        }
    }
}

/* trains the ratings of block position k; returns 0, or 1 on a non-finite error */
CF_VECTOR_CLONES
static int run_block(sparse_job *j, int64_t k) {
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
        float z = cf_dot_f32(pu, qi, K);
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
        update_pair(j->opt, pu, qi, BU ? BU + u : NULL, BI ? BI + i : NULL, dz, wd, lr, K, u,
                    NU + i, NU + NI, u * K, NU * K + i * K);
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
    cf_fp_mode mode = cf_fp_flush_subnormals();
    for (;;) {
        int64_t k = take_block(j);
        if (k < 0) break;
        if (run_block(j, k)) stop_with(j, k, 0);
    }
    cf_fp_restore(mode);
    return NULL;
}

/* in-place American flag sort of rows [lo, hi) into n_keys buckets of key(row) */
static void flag_sort(int32_t *x, float *y, char *extra, size_t esz, int64_t lo, int64_t hi,
                      int64_t n_keys, int64_t *start, int64_t *next, int64_t nb, int by_user) {
#define CF_KEY(r) (by_user ? (int64_t)x[2 * (r)] / nb \
                           : (int64_t)(x[2 * (r)] % nb) * nb + x[2 * (r) + 1] % nb)
    for (int64_t b = 0; b <= n_keys; b++) start[b] = 0;
    for (int64_t r = lo; r < hi; r++) start[CF_KEY(r) + 1]++;
    start[0] = lo;
    for (int64_t b = 0; b < n_keys; b++) start[b + 1] += start[b];
    for (int64_t b = 0; b < n_keys; b++) next[b] = start[b];
    for (int64_t b = 0; b < n_keys; b++) {
        while (next[b] < start[b + 1]) {
            int64_t r = next[b], t = CF_KEY(r);
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
                char e[8];
                memcpy(e, extra + r * esz, esz);
                memcpy(extra + r * esz, extra + d * esz, esz);
                memcpy(extra + d * esz, e, esz);
            }
        }
    }
#undef CF_KEY
}

int cf_block_sort(int32_t *x, float *y, void *extra, int64_t extra_size, int64_t n, int64_t nb,
                  int64_t *starts) {
    if (nb < 1 || n < 0 || (extra && extra_size != 4 && extra_size != 8)) return CF_ERR_ARG;
    size_t esz = (size_t)extra_size;
    int64_t NB = nb * nb, max_u = 0;
    for (int64_t r = 0; r < n; r++) {
        if (x[2 * r] < 0 || x[2 * r + 1] < 0) return CF_ERR_INDEX;
        if (x[2 * r] > max_u) max_u = x[2 * r];
    }
    /* inside a block, rows are then ordered by user: consecutive ratings share the user's row,
     * which stays in the first-level cache (LibMF orders its blocks the same way) */
    int64_t n_t = max_u / nb + 1, cap = NB > n_t ? NB : n_t;
    int64_t *tmp = malloc(sizeof(int64_t) * (size_t)(2 * cap + 1));
    if (!tmp) return CF_ERR_NOMEM;
    flag_sort(x, y, extra, esz, 0, n, NB, starts, tmp, nb, 0);
    for (int64_t b = 0; b < NB; b++)
        if (starts[b + 1] - starts[b] > 1)
            flag_sort(x, y, extra, esz, starts[b], starts[b + 1], n_t, tmp + cap, tmp, nb, 1);
    free(tmp);
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
