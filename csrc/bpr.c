/* bpr.c - BPR over a grid of blocks on pthreads (see bpr.h): a mutex hands each thread the
 * first block whose earlier blocks of the same user group and item group are done; a
 * block's samples are a pure function of (seed, epoch, block id, sample number), and its
 * item biases and optimizer accumulators live in a private copy while it runs (neighbouring
 * ids belong to other groups and would share cache lines with the other threads' blocks). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "bpr.h"
#include "fpmode.h"
#include "simd.h"
#include "vec16.h"
#include "status.h"
#include "threads.h"

#define CF_BPR_MAX_DRAWS 64
#define CF_BPR_AHEAD 12 /* samples whose rows are prefetched ahead of the one being trained */

/* ---------------------------------------------------------------- random numbers */

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* a uniform integer in [0, m) from 64 random bits (m < 2^32: the high word times m) */
static inline int64_t below(uint64_t h, int64_t m) {
    if (m <= ((int64_t)1 << 32)) return (int64_t)(((h >> 32) * (uint64_t)m) >> 32);
    return (int64_t)(h % (uint64_t)m);
}

#define GOLD 0x9E3779B97F4A7C15ULL

/* ---------------------------------------------------------------- blocks */

int cf_bpr_blocks(int32_t *pairs, int64_t *starts, const int64_t *indptr,
                  const int32_t *indices, int64_t NU, int64_t NI, int64_t nb) {
    if (nb < 1 || NU < 0 || NI < 0 || nb > ((int64_t)1 << 20)) return CF_ERR_ARG;
    const int64_t nnz = indptr[NU], NB = nb * nb;
    for (int64_t p = 0; p < nnz; p++)
        if (indices[p] < 0 || indices[p] >= NI) return CF_ERR_INDEX;
    memset(starts, 0, sizeof(int64_t) * (size_t)(NB + 1));
    for (int64_t u = 0; u < NU; u++)
        for (int64_t p = indptr[u]; p < indptr[u + 1]; p++)
            starts[(u % nb) * nb + indices[p] % nb + 1]++;
    for (int64_t b = 0; b < NB; b++) starts[b + 1] += starts[b];
    /* users in order, each user's items in order: every block comes out sorted by user then
     * item; starts[b] is block b's write position, shifted back afterwards */
    for (int64_t u = 0; u < NU; u++)
        for (int64_t p = indptr[u]; p < indptr[u + 1]; p++) {
            int64_t q = starts[(u % nb) * nb + indices[p] % nb]++;
            pairs[2 * q] = (int32_t)u;
            pairs[2 * q + 1] = indices[p];
        }
    for (int64_t b = NB; b > 0; b--) starts[b] = starts[b - 1];
    starts[0] = 0;
    return CF_OK;
}

/* 1 when (u, j) is among the pairs [s, e) (sorted by user then item), searched outward from
 * position r (a pair of user u): galloping, then bisection */
static inline int has_pair(const int32_t *pairs, int64_t s, int64_t e, int64_t r, int32_t u,
                           int32_t j) {
    const uint64_t key = ((uint64_t)(uint32_t)u << 32) | (uint32_t)j;
#define KEY(q) (((uint64_t)(uint32_t)pairs[2 * (q)] << 32) | (uint32_t)pairs[2 * (q) + 1])
    uint64_t kr = KEY(r);
    if (kr == key) return 1;
    int64_t lo, hi; /* the key, if present, lies in [lo, hi) */
    if (key < kr) {
        int64_t step = 1;
        hi = r;
        while (r - step >= s && KEY(r - step) > key) {
            hi = r - step;
            step *= 2;
        }
        lo = r - step >= s ? r - step : s;
    } else {
        int64_t step = 1;
        lo = r + 1;
        while (r + step < e && KEY(r + step) < key) {
            lo = r + step + 1;
            step *= 2;
        }
        hi = r + step < e ? r + step + 1 : e;
    }
    while (lo < hi) {
        int64_t m = lo + (hi - lo) / 2;
        uint64_t km = KEY(m);
        if (km == key) return 1;
        if (km < key) lo = m + 1;
        else hi = m;
    }
    return 0;
#undef KEY
}

/* ---------------------------------------------------------------- one block */

typedef struct {
    float *U, *V, *b, *acc;
    double *loss;
    int64_t *stats;
    int32_t *triples;
    const int32_t *pairs;
    const int64_t *starts, *blocks, *toff; /* toff [n_sel]: each position's first triple */
    const double *lrs;
    const cf_bpr_config *cfg;
    int64_t n_sel, slots_u, slots_i;
    pthread_mutex_t lock;
    pthread_cond_t turn;
    unsigned char *state; /* [n_sel]: 0 waiting, 1 running, 2 done */
    int64_t *dep;         /* [2 n_sel]: the last earlier position of the same user / item group */
    int64_t next, bad;
    int nomem;
} bpr_job;

/* the private copies of a running block's per-id scalars, by slot (id = group + nb * slot) */
typedef struct {
    float *bi;  /* item biases */
    float *ai;  /* Adagrad: item rows' accumulators */
    float *abi; /* Adagrad: item biases' accumulators */
    float *au;  /* Adagrad: user rows' accumulators */
} block_priv;

/* Row arithmetic: 16-lane vectors (vec16.h) when 16 divides K, else plain loops.
 * Either way a sum over k is 16 interleaved partial sums combined pairwise (cf_dot_f32's order). */

/* returns U_u.(V_i - V_j) */
CF_INLINE float score_diff(const float *restrict pu, const float *restrict qi,
                           const float *restrict qj, int64_t K) {
#ifdef CF_VEC16
    if (K % 16 == 0) {
        cf_v16 acc = ld16(pu) * (ld16(qi) - ld16(qj));
        for (int64_t k = 16; k < K; k += 16) acc += ld16(pu + k) * (ld16(qi + k) - ld16(qj + k));
        return hsum16(&acc);
    }
#endif
    float acc[16] = {0};
    int64_t k = 0;
    for (; k + 16 <= K; k += 16)
        for (int l = 0; l < 16; l++) acc[l] += pu[k + l] * (qi[k + l] - qj[k + l]);
    for (int l = 0; k < K; k++, l++) acc[l] += pu[k] * (qi[k] - qj[k]);
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    return acc[0];
}

/* SGD on the three rows of a sample (from their values before it) */
CF_INLINE void sgd_rows(float *restrict pu, float *restrict qi, float *restrict qj, float z,
                        float lr, float reg, int64_t K) {
#ifdef CF_VEC16
    if (K % 16 == 0) {
        for (int64_t k = 0; k < K; k += 16) {
            const cf_v16 a = ld16(pu + k), bi = ld16(qi + k), bj = ld16(qj + k);
            st16(pu + k, a + lr * (z * (bi - bj) - reg * a));
            st16(qi + k, bi + lr * (z * a - reg * bi));
            st16(qj + k, bj + lr * (-z * a - reg * bj));
        }
        return;
    }
#endif
    for (int64_t k = 0; k < K; k++) {
        const float a = pu[k], bi = qi[k], bj = qj[k];
        pu[k] = a + lr * (z * (bi - bj) - reg * a);
        qi[k] = bi + lr * (z * a - reg * bi);
        qj[k] = bj + lr * (-z * a - reg * bj);
    }
}

/* row-wise Adagrad on the three rows: g = minus the SGD directions above */
CF_INLINE void adagrad_rows(float *restrict pu, float *restrict qi, float *restrict qj, float z,
                            float lr, float reg, float eps, float *acc_u, float *acc_i,
                            float *acc_j, int64_t K) {
    float su, si, sj;
#ifdef CF_VEC16
    if (K % 16 == 0) {
        cf_v16 au = {0}, ai = {0}, aj = {0};
        for (int64_t k = 0; k < K; k += 16) {
            const cf_v16 a = ld16(pu + k), bi = ld16(qi + k), bj = ld16(qj + k);
            const cf_v16 gu = reg * a - z * (bi - bj), gi = reg * bi - z * a, gj = reg * bj + z * a;
            au += gu * gu;
            ai += gi * gi;
            aj += gj * gj;
        }
        su = hsum16(&au);
        si = hsum16(&ai);
        sj = hsum16(&aj);
    } else
#endif
    {
        float vu[16] = {0}, vi[16] = {0}, vj[16] = {0};
        for (int64_t k = 0; k < K; k++) {
            const float a = pu[k], bi = qi[k], bj = qj[k];
            const float gu = reg * a - z * (bi - bj), gi = reg * bi - z * a, gj = reg * bj + z * a;
            vu[k % 16] += gu * gu;
            vi[k % 16] += gi * gi;
            vj[k % 16] += gj * gj;
        }
        for (int w = 8; w >= 1; w /= 2)
            for (int l = 0; l < w; l++) {
                vu[l] += vu[l + w];
                vi[l] += vi[l + w];
                vj[l] += vj[l + w];
            }
        su = vu[0];
        si = vi[0];
        sj = vj[0];
    }
    const float inv = 1.0f / (float)K;
    *acc_u += su * inv;
    *acc_i += si * inv;
    *acc_j += sj * inv;
    const float cu = lr / sqrtf(*acc_u + eps), ci = lr / sqrtf(*acc_i + eps),
                cj = lr / sqrtf(*acc_j + eps);
#ifdef CF_VEC16
    if (K % 16 == 0) {
        for (int64_t k = 0; k < K; k += 16) {
            const cf_v16 a = ld16(pu + k), bi = ld16(qi + k), bj = ld16(qj + k);
            st16(pu + k, a - cu * (reg * a - z * (bi - bj)));
            st16(qi + k, bi - ci * (reg * bi - z * a));
            st16(qj + k, bj - cj * (reg * bj + z * a));
        }
        return;
    }
#endif
    for (int64_t k = 0; k < K; k++) {
        const float a = pu[k], bi = qi[k], bj = qj[k];
        pu[k] = a - cu * (reg * a - z * (bi - bj));
        qi[k] = bi - ci * (reg * bi - z * a);
        qj[k] = bj - cj * (reg * bj + z * a);
    }
}

/* the sample t of a block: its positive's position and its first negative slot draw */
typedef struct {
    int64_t r;
    uint64_t h;
} draw;

/* trains block position k; returns 1 when x_uij was not finite (the block stops there) */
CF_INLINE int run_block_body(bpr_job *j, int64_t k, block_priv *pv) {
    const cf_bpr_config *c = j->cfg;
    const int64_t K = c->k, nb = c->nb, id = j->blocks[k];
    const int64_t g = id / nb, h = id % nb, s = j->starts[id], e = j->starts[id + 1], m = e - s;
    const int adagrad = c->opt == CF_BPR_ADAGRAD;
    const float lr = (float)j->lrs[k], reg = (float)c->reg, regb = (float)c->reg_bias,
                eps = (float)c->eps;
    float *U = j->U, *V = j->V;
    const int32_t *pairs = j->pairs;
    int32_t *tri = j->triples ? j->triples + 3 * j->toff[k] : NULL;
    /* the group's items are h + nb t for t in [t0, nt); '#na#' (0) is never a negative */
    const int64_t nt = c->n_items > h ? (c->n_items - h + nb - 1) / nb : 0;
    const int64_t t0 = h == 0 ? 1 : 0, n_neg = nt > t0 ? nt - t0 : 0;
    const int64_t nu = c->n_users > g ? (c->n_users - g + nb - 1) / nb : 0;
    for (int64_t t = 0; t < nt; t++) pv->bi[t] = j->b[h + nb * t];
    if (adagrad) {
        const float *ai = j->acc + c->n_users, *abi = ai + c->n_items;
        for (int64_t t = 0; t < nt; t++) {
            pv->ai[t] = ai[h + nb * t];
            pv->abi[t] = abi[h + nb * t];
        }
        for (int64_t t = 0; t < nu; t++) pv->au[t] = j->acc[g + nb * t];
    }
    const uint64_t key = mix64(c->seed ^ mix64(c->epoch * GOLD + (uint64_t)id + 1));
    draw ring[CF_BPR_AHEAD];
    for (int64_t t = 0; t < CF_BPR_AHEAD && t < m; t++) {
        uint64_t hh = mix64(key + (uint64_t)(t + 1) * GOLD);
        ring[t].r = s + below(hh, m);
        ring[t].h = mix64(hh ^ 0xD1B54A32D192ED03ULL);
        CF_PREFETCH(pairs + 2 * ring[t].r, 0);
    }
    double loss = 0.0, prod = 1.0;
    int64_t correct = 0, skipped = 0, n_prod = 0;
    int status = 0;
    for (int64_t t = 0; t < m; t++) {
        const draw d = ring[t % CF_BPR_AHEAD];
        if (t + CF_BPR_AHEAD < m) { /* draw sample t + AHEAD and ask for its pair */
            uint64_t hh = mix64(key + (uint64_t)(t + CF_BPR_AHEAD + 1) * GOLD);
            draw *nd = &ring[t % CF_BPR_AHEAD];
            nd->r = s + below(hh, m);
            nd->h = mix64(hh ^ 0xD1B54A32D192ED03ULL);
            CF_PREFETCH(pairs + 2 * nd->r, 0);
        }
        if (t + CF_BPR_AHEAD / 2 < m) { /* ask for the rows of sample t + AHEAD / 2 */
            const draw *fd = &ring[(t + CF_BPR_AHEAD / 2) % CF_BPR_AHEAD];
            const int32_t *pr = pairs + 2 * fd->r;
            CF_PREFETCH_ROW(U + (int64_t)pr[0] * K, K, 1);
            CF_PREFETCH_ROW(V + (int64_t)pr[1] * K, K, 1);
            if (n_neg > 0) CF_PREFETCH_ROW(V + (h + nb * (t0 + below(fd->h, n_neg))) * K, K, 1);
        }
        const int32_t u = pairs[2 * d.r], i = pairs[2 * d.r + 1];
        int64_t tj = -1;
        if (n_neg > 0 && (e - s) > 0) {
            uint64_t hh = d.h;
            for (int a = 0; a < CF_BPR_MAX_DRAWS; a++) {
                int64_t cand = t0 + below(hh, n_neg);
                if (!has_pair(pairs, s, e, d.r, u, (int32_t)(h + nb * cand))) {
                    tj = cand;
                    break;
                }
                hh = mix64(hh + GOLD);
            }
        }
        if (tj < 0) {
            skipped++;
            if (tri) {
                tri[3 * t] = u;
                tri[3 * t + 1] = i;
                tri[3 * t + 2] = -1;
            }
            continue;
        }
        const int64_t jj = h + nb * tj, ti = (int64_t)((uint32_t)i / (uint32_t)nb);
        if (tri) {
            tri[3 * t] = u;
            tri[3 * t + 1] = i;
            tri[3 * t + 2] = (int32_t)jj;
        }
        float *pu = U + (int64_t)u * K, *qi = V + (int64_t)i * K, *qj = V + jj * K;
        const float x = score_diff(pu, qi, qj, K) + (pv->bi[ti] - pv->bi[tj]);
        if (!isfinite(x)) {
            status = 1;
            break;
        }
        correct += x > 0.0f;
        /* z = 1 - sigmoid(x) = 1 / (1 + e^x), x clamped to [-40, 40] (z within 5e-18 of its
         * limit there); -ln sigmoid(x) = ln((1 + e^x) / e^x), summed as the log of products
         * of 8 (each factor < 3e17) */
        const float xc = x < -40.0f ? -40.0f : (x > 40.0f ? 40.0f : x);
        const float ex = expf(xc), z = 1.0f / (1.0f + ex);
        prod *= (double)((1.0f + ex) / ex);
        if (++n_prod == 8) {
            loss += log(prod);
            prod = 1.0;
            n_prod = 0;
        }
        if (adagrad) {
            const int64_t tu = (int64_t)((uint32_t)u / (uint32_t)nb);
            adagrad_rows(pu, qi, qj, z, lr, reg, eps, &pv->au[tu], &pv->ai[ti], &pv->ai[tj], K);
            const float gi = regb * pv->bi[ti] - z, gj = regb * pv->bi[tj] + z;
            pv->abi[ti] += gi * gi;
            pv->abi[tj] += gj * gj;
            pv->bi[ti] -= lr * gi / sqrtf(pv->abi[ti] + eps);
            pv->bi[tj] -= lr * gj / sqrtf(pv->abi[tj] + eps);
        } else {
            sgd_rows(pu, qi, qj, z, lr, reg, K);
            const float bi = pv->bi[ti], bj = pv->bi[tj];
            pv->bi[ti] = bi + lr * (z - regb * bi);
            pv->bi[tj] = bj + lr * (-z - regb * bj);
        }
    }
    loss += log(prod);
    for (int64_t t = 0; t < nt; t++) j->b[h + nb * t] = pv->bi[t];
    if (adagrad) {
        float *ai = j->acc + c->n_users, *abi = ai + c->n_items;
        for (int64_t t = 0; t < nt; t++) {
            ai[h + nb * t] = pv->ai[t];
            abi[h + nb * t] = pv->abi[t];
        }
        for (int64_t t = 0; t < nu; t++) j->acc[g + nb * t] = pv->au[t];
    }
    const int64_t used = m - skipped;
    j->loss[k] = used > 0 ? loss / (double)used : 0.0;
    j->stats[2 * k] = correct;
    j->stats[2 * k + 1] = skipped;
    return status;
}
CF_DISPATCH_FN(static, int, run_block, (bpr_job *j, int64_t k, block_priv *pv),
               (j, k, pv))

/* ---------------------------------------------------------------- scheduling */

/* the first position, below the first failed one, whose dependencies are done, marked
 * running; -1 when none is left */
static int64_t take_block(bpr_job *j) {
    pthread_mutex_lock(&j->lock);
    for (;;) {
        while (j->next < j->n_sel && j->state[j->next]) j->next++;
        if (j->nomem || j->next >= j->bad) {
            pthread_mutex_unlock(&j->lock);
            return -1;
        }
        for (int64_t k = j->next; k < j->bad; k++) {
            const int64_t du = j->dep[2 * k], di = j->dep[2 * k + 1];
            if (!j->state[k] && (du < 0 || j->state[du] == 2) && (di < 0 || j->state[di] == 2)) {
                j->state[k] = 1;
                pthread_mutex_unlock(&j->lock);
                return k;
            }
        }
        pthread_cond_wait(&j->turn, &j->lock);
    }
}

static void finish_block(bpr_job *j, int64_t k, int failed, int nomem) {
    pthread_mutex_lock(&j->lock);
    if (nomem) j->nomem = 1;
    if (k >= 0) j->state[k] = 2;
    if (failed && k < j->bad) j->bad = k;
    pthread_cond_broadcast(&j->turn);
    pthread_mutex_unlock(&j->lock);
}

static void *bpr_worker(void *arg) {
    bpr_job *j = arg;
    const int64_t ni = j->slots_i, nu = j->slots_u;
    float *mem = malloc(sizeof(float) * (size_t)(3 * ni + nu + 1));
    if (!mem) {
        finish_block(j, -1, 0, 1);
        return NULL;
    }
    block_priv pv = {mem, mem + ni, mem + 2 * ni, mem + 3 * ni};
    cf_fp_mode mode = cf_fp_flush_subnormals();
    for (;;) {
        int64_t k = take_block(j);
        if (k < 0) break;
        finish_block(j, k, run_block(j, k, &pv), 0);
    }
    cf_fp_restore(mode);
    free(mem);
    return NULL;
}

int cf_bpr_fit_blocks(float *U, float *V, float *b, float *acc, double *loss, int64_t *stats,
                      int32_t *triples, int64_t *bad, const int32_t *pairs,
                      const int64_t *starts, const int64_t *blocks, int64_t n_sel,
                      const double *lrs, const cf_bpr_config *cfg, int n_threads) {
    if (bad) *bad = -1;
    const int64_t nb = cfg->nb, NU = cfg->n_users, NI = cfg->n_items;
    if (nb < 1 || nb > ((int64_t)1 << 20) || NU < 0 || NI < 0 || cfg->k < 1 || n_sel < 0 ||
        !(cfg->reg >= 0) || !isfinite(cfg->reg) || !(cfg->reg_bias >= 0) ||
        !isfinite(cfg->reg_bias) || (cfg->opt != CF_BPR_SGD && cfg->opt != CF_BPR_ADAGRAD) ||
        (cfg->opt == CF_BPR_ADAGRAD && (!acc || !(cfg->eps > 0) || !isfinite(cfg->eps))))
        return CF_ERR_ARG;
    for (int64_t k = 0; k < n_sel; k++)
        if (!(lrs[k] >= 0) || !isfinite(lrs[k])) return CF_ERR_ARG;
    /* every pair a selected block reads is checked before anything is written */
    for (int64_t k = 0; k < n_sel; k++) {
        if (blocks[k] < 0 || blocks[k] >= nb * nb) {
            if (bad) *bad = k;
            return CF_ERR_INDEX;
        }
        const int64_t id = blocks[k], g = id / nb, h = id % nb;
        for (int64_t q = starts[id]; q < starts[id + 1]; q++) {
            const int32_t u = pairs[2 * q], i = pairs[2 * q + 1];
            if (u < 0 || u >= NU || i < 0 || i >= NI || u % nb != g || i % nb != h) {
                if (bad) *bad = q;
                return CF_ERR_INDEX;
            }
        }
    }
    bpr_job j;
    memset(&j, 0, sizeof j);
    j.state = calloc((size_t)n_sel + 1, 1);
    j.dep = malloc(sizeof(int64_t) * (size_t)(2 * n_sel + 2 * nb + 1));
    int64_t *toff = malloc(sizeof(int64_t) * (size_t)(n_sel + 1));
    if (!j.state || !j.dep || !toff) {
        free(j.state);
        free(j.dep);
        free(toff);
        return CF_ERR_NOMEM;
    }
    int64_t *last = j.dep + 2 * n_sel; /* by user group, then by item group */
    for (int64_t q = 0; q < 2 * nb; q++) last[q] = -1;
    int64_t off = 0;
    for (int64_t k = 0; k < n_sel; k++) {
        const int64_t ug = blocks[k] / nb, ig = nb + blocks[k] % nb;
        j.dep[2 * k] = last[ug];
        j.dep[2 * k + 1] = last[ig];
        last[ug] = last[ig] = k;
        toff[k] = off;
        off += starts[blocks[k] + 1] - starts[blocks[k]];
    }
    j.U = U;
    j.V = V;
    j.b = b;
    j.acc = acc;
    j.loss = loss;
    j.stats = stats;
    j.triples = triples;
    j.pairs = pairs;
    j.starts = starts;
    j.blocks = blocks;
    j.toff = toff;
    j.lrs = lrs;
    j.cfg = cfg;
    j.n_sel = n_sel;
    j.bad = n_sel;
    j.slots_i = (NI + nb - 1) / nb + 1;
    j.slots_u = (NU + nb - 1) / nb + 1;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > nb) n_threads = (int)nb; /* at most nb blocks can run at once */
    if (n_threads > CF_MAX_THREADS) n_threads = CF_MAX_THREADS;
    int st = CF_OK;
    if (pthread_mutex_init(&j.lock, NULL) != 0) {
        st = CF_ERR_NOMEM;
        goto done;
    }
    if (pthread_cond_init(&j.turn, NULL) != 0) {
        pthread_mutex_destroy(&j.lock);
        st = CF_ERR_NOMEM;
        goto done;
    }
    cf_run_threads(n_threads, bpr_worker, &j);
    pthread_cond_destroy(&j.turn);
    pthread_mutex_destroy(&j.lock);
    if (j.nomem) {
        st = CF_ERR_NOMEM;
    } else if (j.bad < n_sel) {
        if (bad) *bad = j.bad;
        st = CF_ERR_NONFINITE;
    }
done:
    free(j.state);
    free(j.dep);
    free(toff);
    return st;
}

/* ---------------------------------------------------------------- fold-in */

static int sorted_has(const int32_t *a, int64_t n, int32_t v) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t m = lo + (hi - lo) / 2;
        if (a[m] == v) return 1;
        if (a[m] < v) lo = m + 1;
        else hi = m;
    }
    return 0;
}

int cf_bpr_fold_in(float *x, const float *V, const float *b, const int32_t *items, int64_t n,
                   int64_t NI, int64_t K, int64_t n_steps, double lr, double reg,
                   uint64_t seed) {
    if (n < 1 || K < 1 || n_steps < 0 || !(lr >= 0) || !isfinite(lr) || !(reg >= 0) ||
        !isfinite(reg) || n >= NI - 1)
        return CF_ERR_ARG;
    for (int64_t q = 0; q < n; q++) {
        if (items[q] < 1 || items[q] >= NI) return CF_ERR_INDEX;
        if (q > 0 && items[q] <= items[q - 1]) return CF_ERR_ARG;
    }
    const float flr = (float)lr, freg = (float)reg;
    const uint64_t key = mix64(seed ^ 0x5851F42D4C957F2DULL);
    for (int64_t t = 0; t < n_steps; t++) {
        uint64_t hh = mix64(key + (uint64_t)(t + 1) * GOLD);
        const int32_t i = items[below(hh, n)];
        int32_t jj;
        do { /* terminates: at least two items are not positives */
            hh = mix64(hh + GOLD);
            jj = (int32_t)(1 + below(hh, NI - 1));
        } while (sorted_has(items, n, jj));
        const float *qi = V + (int64_t)i * K, *qj = V + (int64_t)jj * K;
        const float xs = score_diff(x, qi, qj, K) + (b ? b[i] - b[jj] : 0.0f);
        if (!isfinite(xs)) return CF_ERR_NONFINITE;
        const float z = 1.0f / (1.0f + expf(xs));
        for (int64_t k = 0; k < K; k++) x[k] += flr * (z * (qi[k] - qj[k]) - freg * x[k]);
    }
    for (int64_t k = 0; k < K; k++)
        if (!isfinite(x[k])) return CF_ERR_NONFINITE;
    return CF_OK;
}
