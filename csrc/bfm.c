/* bfm.c - Gibbs sampling for a factorization machine over grouped sparse features (Rendle,
 * "Bayesian factorization machines" / libFM's MCMC, with myFM's relation-block caches).
 * What it is: the sweep driver cf_bfm_run, its structural check, plug-in and sample-averaged
 * predictions, and the counter-based normal / gamma draws. What it is not: a data builder
 * (collabc/bayes.py lays out the features) or an optimiser (nothing here follows a gradient).
 * Threads (pthreads) share the passes over ratings and block rows in fixed chunks only. */
#define _POSIX_C_SOURCE 200809L
#include "bfm.h"
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "status.h"
#include "threads.h"

/* ---------------------------------------------------------------- random draws
 * A draw's stream is SplitMix64 started at key(seed, sweep, slot): the sampler's result does
 * not depend on which thread draws, nor in which order. */

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

typedef struct {
    uint64_t s;
} bfm_stream;

static inline bfm_stream stream_at(uint64_t seed, int64_t sweep, int64_t slot) {
    uint64_t k = mix64(seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL);
    k = mix64(k ^ ((uint64_t)sweep * 0xD1B54A32D192ED03ULL + 0x8CB92BA72F3D8DD7ULL));
    k = mix64(k ^ ((uint64_t)slot * 0xAEF17502108EF2D9ULL + 0x2545F4914F6CDD1DULL));
    bfm_stream st = {k};
    return st;
}

/* uniform in (0, 1): 53 random bits, never 0 */
static inline double next_unif(bfm_stream *st) {
    st->s += 0x9E3779B97F4A7C15ULL;
    return ((double)(mix64(st->s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* standard normal, Marsaglia's polar method */
static double next_normal(bfm_stream *st) {
    for (;;) {
        double u = 2.0 * next_unif(st) - 1.0, v = 2.0 * next_unif(st) - 1.0;
        double s = u * u + v * v;
        if (s < 1.0 && s > 0.0) return u * sqrt(-2.0 * log(s) / s);
    }
}

/* Gamma(shape, 1): Marsaglia & Tsang (2000) for shape >= 1; G(a) = G(a + 1) U^(1/a) below */
static double next_gamma(bfm_stream *st, double shape) {
    double boost = 1.0;
    if (shape < 1.0) {
        boost = pow(next_unif(st), 1.0 / shape);
        shape += 1.0;
    }
    const double dd = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * dd);
    for (;;) {
        double x, v;
        do {
            x = next_normal(st);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        double u = next_unif(st);
        if (u < 1.0 - 0.0331 * (x * x) * (x * x)) return dd * v * boost;
        if (log(u) < 0.5 * x * x + dd * (1.0 - v + log(v))) return dd * v * boost;
    }
}

double cf_bfm_std_normal(uint64_t seed, int64_t sweep, int64_t slot) {
    bfm_stream st = stream_at(seed, sweep, slot);
    return next_normal(&st);
}

double cf_bfm_std_gamma(uint64_t seed, int64_t sweep, int64_t slot, double shape) {
    bfm_stream st = stream_at(seed, sweep, slot);
    return next_gamma(&st, shape);
}

void cf_bfm_std_normals(double *out, int64_t n, uint64_t seed, int64_t sweep, int64_t slot) {
    bfm_stream st = stream_at(seed, sweep, slot);
    for (int64_t i = 0; i < n; i++) out[i] = next_normal(&st);
}

void cf_bfm_bartlett(double *A, int64_t k, double nu, uint64_t seed, int64_t sweep, int64_t slot) {
    bfm_stream st = stream_at(seed, sweep, slot);
    for (int64_t i = 0; i < k * k; i++) A[i] = 0.0;
    for (int64_t i = 0; i < k; i++) A[i * k + i] = sqrt(2.0 * next_gamma(&st, (nu - (double)i) / 2.0));
    for (int64_t i = 1; i < k; i++)
        for (int64_t c = 0; c < i; c++) A[i * k + c] = next_normal(&st);
}

/* a draw from N(lin / quad, 1 / quad): the conditional whose log density is
 * -quad/2 x^2 + lin x + const */
static inline double draw_normal(uint64_t seed, int64_t sweep, int64_t slot, double quad,
                                 double lin) {
    return lin / quad + cf_bfm_std_normal(seed, sweep, slot) / sqrt(quad);
}

/* ---------------------------------------------------------------- sizes */

static int64_t n_features(const cf_bfm_model *m) {
    int64_t d = m->d0;
    for (int64_t r = 0; r < m->n_blocks; r++) d += m->blocks[r].n_feat;
    return d;
}

int64_t cf_bfm_n_params(const cf_bfm_model *m) { return 1 + n_features(m) * (1 + m->k); }

int64_t cf_bfm_n_hyper(const cf_bfm_model *m) {
    return 1 + 2 * m->n_groups * (1 + m->k) + (m->wishart ? m->n_groups * m->k * m->k : 0);
}

/* The sums over a block row's ratings are taken in one of two ways, chosen from the data alone
 * (never from the thread count): gathered through the grouping, row by row, when the ratings
 * are in block-row order or few; else (the item block of a large set, whose ratings lie all
 * over the arrays) each of NSTRIPE fixed stripes of ratings is read in order and added into its
 * own accumulators, and the stripes' accumulators are summed in stripe order: reads in
 * sequence and writes to a small table instead of one cache miss per rating. The grouping's
 * row lists (grow) are then not read at all, only its counts (gptr). */
#define NSTRIPE 16
#define SCATTER_MIN_ROWS (1 << 20)

static int uses_stripes(const cf_bfm_train *t, int64_t r, int flags) {
    const int64_t n = t->rows.n;
    if (flags & CF_BFM_GATHER) return 0;
    if (!(flags & CF_BFM_STRIPES) && n < SCATTER_MIN_ROWS) return 0;
    const int32_t *gr = t->grow + r * n;
    for (int64_t i = 0; i < n; i++)
        if (gr[i] != i) return 1;
    return 0;
}

/* ---------------------------------------------------------------- structural check */

#define FAIL(code, ...)                                                                        \
    do {                                                                                       \
        if (msg && msg_len) snprintf(msg, msg_len, __VA_ARGS__);                               \
        return (code);                                                                         \
    } while (0)

/* a CSR/CSC of n_outer lines over n_inner: ptr monotone from 0 to nnz, indices in range */
static int check_sparse(char *msg, size_t msg_len, const char *what, const int64_t *ptr,
                        const int32_t *ind, const float *val, int64_t n_outer, int64_t n_inner,
                        int64_t nnz) {
    if (!ptr || (nnz > 0 && (!ind || !val))) FAIL(CF_ERR_ARG, "%s: missing arrays", what);
    if (ptr[0] != 0 || ptr[n_outer] != nnz)
        FAIL(CF_ERR_ARG, "%s: pointers must run from 0 to %lld", what, (long long)nnz);
    for (int64_t o = 0; o < n_outer; o++)
        if (ptr[o + 1] < ptr[o]) FAIL(CF_ERR_ARG, "%s: pointers decrease at %lld", what, (long long)o);
    for (int64_t e = 0; e < nnz; e++) {
        if (ind[e] < 0 || ind[e] >= n_inner)
            FAIL(CF_ERR_INDEX, "%s: index %d at entry %lld outside [0, %lld)", what, (int)ind[e],
                 (long long)e, (long long)n_inner);
        if (!isfinite(val[e]))
            FAIL(CF_ERR_ARG, "%s: non-finite value at entry %lld", what, (long long)e);
    }
    return CF_OK;
}

static int check_rows(char *msg, size_t msg_len, const char *what, const cf_bfm_model *m,
                      const cf_bfm_rows *rw) {
    if (rw->n < 0) FAIL(CF_ERR_ARG, "%s: negative row count", what);
    if (m->d0 > 0 || rw->x_ptr) {
        if (!rw->x_ptr) FAIL(CF_ERR_ARG, "%s: row-local features missing", what);
        int s = check_sparse(msg, msg_len, what, rw->x_ptr, rw->x_col, rw->x_val, rw->n, m->d0,
                             rw->x_ptr[rw->n]);
        if (s) return s;
    }
    if (m->n_blocks > 0 && rw->n > 0 && !rw->idx) FAIL(CF_ERR_ARG, "%s: block rows missing", what);
    for (int64_t r = 0; r < m->n_blocks; r++)
        for (int64_t n = 0; n < rw->n; n++) {
            int32_t b = rw->idx[r * rw->n + n];
            if (b < 0 || b >= m->blocks[r].n_rows)
                FAIL(CF_ERR_INDEX, "%s: row %lld refers to row %d of block %lld, outside [0, %lld)",
                     what, (long long)n, (int)b, (long long)r, (long long)m->blocks[r].n_rows);
        }
    return CF_OK;
}

int cf_bfm_check(char *msg, size_t msg_len, const cf_bfm_model *m, const cf_bfm_train *t,
                 const cf_bfm_rows *ev, int flags) {
    if (m->k < 0 || m->d0 < 0 || m->n_blocks < 0 || m->n_groups < 1)
        FAIL(CF_ERR_ARG, "model: negative size or no group");
    if (m->wishart != 0 && m->wishart != 1) FAIL(CF_ERR_ARG, "model: wishart must be 0 or 1");
    const int64_t d = n_features(m);
    for (int64_t j = 0; j < d; j++)
        if (m->group[j] < 0 || m->group[j] >= m->n_groups)
            FAIL(CF_ERR_INDEX, "group: feature %lld is in group %d, outside [0, %lld)",
                 (long long)j, (int)m->group[j], (long long)m->n_groups);
    for (int64_t r = 0; r < m->n_blocks; r++) {
        const cf_bfm_block *b = &m->blocks[r];
        char what[64];
        if (b->n_rows < 0 || b->n_feat < 0 || b->nnz < 0)
            FAIL(CF_ERR_ARG, "block %lld: negative size", (long long)r);
        snprintf(what, sizeof what, "block %lld rows", (long long)r);
        int s = check_sparse(msg, msg_len, what, b->ptr, b->col, b->val, b->n_rows, b->n_feat, b->nnz);
        if (s) return s;
        snprintf(what, sizeof what, "block %lld columns", (long long)r);
        s = check_sparse(msg, msg_len, what, b->tptr, b->trow, b->tval, b->n_feat, b->n_rows, b->nnz);
        if (s) return s;
    }
    if (t) {
        int s = check_rows(msg, msg_len, "train", m, &t->rows);
        if (s) return s;
        const int64_t n = t->rows.n;
        if (n < 1) FAIL(CF_ERR_ARG, "train: no rows");
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(t->y[i])) FAIL(CF_ERR_ARG, "train: non-finite target at row %lld", (long long)i);
        if (m->d0 > 0) {
            s = check_sparse(msg, msg_len, "train columns", t->xt_ptr, t->xt_row, t->xt_val, m->d0,
                             n, t->rows.x_ptr[n]);
            if (s) return s;
        }
        int64_t o = 0;
        for (int64_t r = 0; r < m->n_blocks; r++) {
            const int64_t M = m->blocks[r].n_rows;
            const int64_t *gp = t->gptr + o;
            const int32_t *gr = t->grow + r * n;
            if (gp[0] != 0 || gp[M] != n)
                FAIL(CF_ERR_ARG, "train: grouping of block %lld must run from 0 to %lld", (long long)r,
                     (long long)n);
            for (int64_t b = 0; b < M; b++)
                if (gp[b + 1] < gp[b])
                    FAIL(CF_ERR_ARG, "train: grouping of block %lld decreases at %lld", (long long)r,
                         (long long)b);
            if (uses_stripes(t, r, flags)) {
                /* only the counts are used: they must be those of idx */
                int64_t *cnt = calloc((size_t)(M > 0 ? M : 1), sizeof(int64_t));
                if (!cnt) FAIL(CF_ERR_NOMEM, "out of memory");
                for (int64_t i = 0; i < n; i++) cnt[t->rows.idx[r * n + i]]++;
                int64_t bad = -1;
                for (int64_t b = 0; b < M && bad < 0; b++)
                    if (cnt[b] != gp[b + 1] - gp[b]) bad = b;
                free(cnt);
                if (bad >= 0)
                    FAIL(CF_ERR_INDEX, "train: grouping of block %lld counts block row %lld wrong",
                         (long long)r, (long long)bad);
            } else {
                for (int64_t b = 0; b < M; b++)
                    for (int64_t p = gp[b]; p < gp[b + 1]; p++)
                        if (gr[p] < 0 || gr[p] >= n || t->rows.idx[r * n + gr[p]] != b)
                            FAIL(CF_ERR_INDEX,
                                 "train: grouping of block %lld lists row %d under block row %lld",
                                 (long long)r, (int)gr[p], (long long)b);
            }
            o += M + 1;
        }
    }
    if (ev) {
        int s = check_rows(msg, msg_len, "eval", m, ev);
        if (s) return s;
    }
    return CF_OK;
}

/* ---------------------------------------------------------------- a pool of threads
 * The driver's passes are split into fixed chunks (of rows or block rows); whoever takes a
 * chunk, the chunk's result is the same, so the sweep does not depend on the thread count.
 * The threads are started by cf_run_threads (threads.h): the calling thread leads (runs the
 * driver's sequential code, handing each pass to the pool), the others serve the passes. */

typedef void (*task_fn)(void *ctx, int64_t chunk);

typedef struct bfm_pool bfm_pool;
typedef void (*lead_fn)(bfm_pool *pool, void *ctx);

struct bfm_pool {
    pthread_mutex_t lock;
    pthread_cond_t go, done;
    int n_started, quit, busy; /* n_started: workers asked for (0: every pass runs inline) */
    uint64_t gen;
    task_fn fn;
    void *ctx;
    int64_t n_chunks, next;
    pthread_t caller;          /* the leader */
    lead_fn lead;
    void *lead_ctx;
};

static void *pool_worker(bfm_pool *p) {
    uint64_t seen = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->gen == seen && !p->quit) pthread_cond_wait(&p->go, &p->lock);
        if (p->quit) break;
        seen = p->gen;
        p->busy++;
        while (p->next < p->n_chunks) {
            int64_t c = p->next++;
            pthread_mutex_unlock(&p->lock);
            p->fn(p->ctx, c);
            pthread_mutex_lock(&p->lock);
        }
        if (--p->busy == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* every thread of cf_run_threads: the caller leads, then lets the workers go */
static void *pool_thread(void *arg) {
    bfm_pool *p = arg;
    if (!pthread_equal(pthread_self(), p->caller)) return pool_worker(p);
    p->lead(p, p->lead_ctx);
    pthread_mutex_lock(&p->lock);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* runs lead(pool, ctx) on the calling thread with n_threads - 1 workers serving its passes
 * (fewer if the system refuses threads, none if the pool's locks cannot be made: the result
 * is the same) */
static void with_pool(int n_threads, lead_fn lead, void *ctx) {
    bfm_pool p;
    memset(&p, 0, sizeof p);
    if (n_threads < 2 || pthread_mutex_init(&p.lock, NULL)) {
        lead(NULL, ctx);
        return;
    }
    if (pthread_cond_init(&p.go, NULL)) {
        pthread_mutex_destroy(&p.lock);
        lead(NULL, ctx);
        return;
    }
    if (pthread_cond_init(&p.done, NULL)) {
        pthread_cond_destroy(&p.go);
        pthread_mutex_destroy(&p.lock);
        lead(NULL, ctx);
        return;
    }
    p.n_started = (n_threads > CF_MAX_THREADS ? CF_MAX_THREADS : n_threads) - 1;
    p.caller = pthread_self();
    p.lead = lead;
    p.lead_ctx = ctx;
    cf_run_threads(n_threads, pool_thread, &p);
    pthread_cond_destroy(&p.done);
    pthread_cond_destroy(&p.go);
    pthread_mutex_destroy(&p.lock);
}

/* a pass of fewer chunks runs on the calling thread: waking the workers would cost more than
 * the work (the result is the same either way) */
#define MIN_PAR_CHUNKS 16

/* runs fn(ctx, c) for every chunk c < n_chunks, the caller taking part; returns when all are done */
static void pool_run(bfm_pool *p, task_fn fn, void *ctx, int64_t n_chunks) {
    if (!p || p->n_started == 0 || n_chunks < MIN_PAR_CHUNKS) {
        for (int64_t c = 0; c < n_chunks; c++) fn(ctx, c);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->ctx = ctx;
    p->n_chunks = n_chunks;
    p->next = 0;
    p->gen++;
    p->busy++;
    pthread_cond_broadcast(&p->go);
    while (p->next < p->n_chunks) {
        int64_t c = p->next++;
        pthread_mutex_unlock(&p->lock);
        fn(ctx, c);
        pthread_mutex_lock(&p->lock);
    }
    p->busy--;
    while (p->busy > 0) pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

#define ROW_CHUNK 8192
#define BROW_CHUNK 1024

static inline int64_t n_chunks_of(int64_t n, int64_t size) { return (n + size - 1) / size; }

/* ---------------------------------------------------------------- predictions
 * For block r and its row b, with the block's features j (value x_bj):
 *   lin_r[b]     = sum_j x_bj w_j
 *   qk_r[b, f]   = sum_j x_bj V_jf
 *   sk_r[b, f]   = sum_j x_bj^2 V_jf^2
 * and a rating n with row-local features x_nj and block rows b_r = idx_r[n]:
 *   yhat_n = w0 + sum_j x_nj w_j + sum_r lin_r[b_r]
 *            + 1/2 sum_f [ (sum_j x_nj V_jf + sum_r qk_r[b_r, f])^2
 *                          - (sum_j x_nj^2 V_jf^2 + sum_r sk_r[b_r, f]) ]
 * which is the factorization machine over all the rating's features (row-local and blocks'). */

typedef struct {
    const cf_bfm_model *m;
    const double *theta;
    double **lin, **qk, **sk; /* per block: [M], [M k], [M k] */
    int64_t r;                /* the block of block_cache_task */
    const cf_bfm_rows *rows;
    double *out;              /* predict_task: += scale * yhat */
    double scale;
    const float *y;           /* resid_task: e = yhat - y, chunk sums of e^2 in part */
    double *e, *part;
} pred_job;

static int64_t feat_off(const cf_bfm_model *m, int64_t r) {
    int64_t o = m->d0;
    for (int64_t s = 0; s < r; s++) o += m->blocks[s].n_feat;
    return o;
}

static void block_cache_task(void *ctx, int64_t c) {
    pred_job *j = ctx;
    const cf_bfm_model *m = j->m;
    const cf_bfm_block *B = &m->blocks[j->r];
    const int64_t k = m->k, d = n_features(m), off = feat_off(m, j->r);
    const double *w = j->theta + 1, *V = j->theta + 1 + d;
    double *lin = j->lin[j->r], *qk = j->qk[j->r], *sk = j->sk[j->r];
    const int64_t b0 = c * BROW_CHUNK, b1 = b0 + BROW_CHUNK < B->n_rows ? b0 + BROW_CHUNK : B->n_rows;
    for (int64_t b = b0; b < b1; b++) {
        double l = 0.0;
        double *qb = qk + b * k, *sb = sk + b * k;
        for (int64_t f = 0; f < k; f++) qb[f] = sb[f] = 0.0;
        for (int64_t p = B->ptr[b]; p < B->ptr[b + 1]; p++) {
            const int64_t jj = off + B->col[p];
            const double x = B->val[p];
            const double *v = V + jj * k;
            l += x * w[jj];
            for (int64_t f = 0; f < k; f++) {
                qb[f] += x * v[f];
                sb[f] += x * x * v[f] * v[f];
            }
        }
        lin[b] = l;
    }
}

static double predict_one(const pred_job *j, int64_t n) {
    const cf_bfm_model *m = j->m;
    const cf_bfm_rows *rw = j->rows;
    const int64_t k = m->k, d = n_features(m);
    const double *w = j->theta + 1, *V = j->theta + 1 + d;
    double s = j->theta[0];
    int64_t p0 = 0, p1 = 0;
    if (rw->x_ptr) {
        p0 = rw->x_ptr[n];
        p1 = rw->x_ptr[n + 1];
    }
    for (int64_t p = p0; p < p1; p++) s += rw->x_val[p] * w[rw->x_col[p]];
    for (int64_t r = 0; r < m->n_blocks; r++) s += j->lin[r][rw->idx[r * rw->n + n]];
    double inter = 0.0;
    for (int64_t f = 0; f < k; f++) {
        double a = 0.0, q = 0.0;
        for (int64_t r = 0; r < m->n_blocks; r++) {
            const int64_t b = rw->idx[r * rw->n + n];
            a += j->qk[r][b * k + f];
            q += j->sk[r][b * k + f];
        }
        for (int64_t p = p0; p < p1; p++) {
            const double x = rw->x_val[p], v = V[(int64_t)rw->x_col[p] * k + f];
            a += x * v;
            q += x * x * v * v;
        }
        inter += a * a - q;
    }
    return s + 0.5 * inter;
}

static void predict_task(void *ctx, int64_t c) {
    pred_job *j = ctx;
    const int64_t n0 = c * ROW_CHUNK, n1 = n0 + ROW_CHUNK < j->rows->n ? n0 + ROW_CHUNK : j->rows->n;
    for (int64_t n = n0; n < n1; n++) j->out[n] += j->scale * predict_one(j, n);
}

static void resid_task(void *ctx, int64_t c) {
    pred_job *j = ctx;
    const int64_t n0 = c * ROW_CHUNK, n1 = n0 + ROW_CHUNK < j->rows->n ? n0 + ROW_CHUNK : j->rows->n;
    double s = 0.0;
    for (int64_t n = n0; n < n1; n++) {
        const double e = predict_one(j, n) - (double)j->y[n];
        j->e[n] = e;
        s += e * e;
    }
    j->part[c] = s;
}

/* the per-block caches of theta (lin, qk, sk) */
static void block_caches(bfm_pool *pool, pred_job *j) {
    for (int64_t r = 0; r < j->m->n_blocks; r++) {
        j->r = r;
        pool_run(pool, block_cache_task, j, n_chunks_of(j->m->blocks[r].n_rows, BROW_CHUNK));
    }
}

/* the block caches lin [M], qk, sk [M k] of every block laid out in buf */
static void lay_caches(const cf_bfm_model *m, double *buf, double **lin, double **qk, double **sk) {
    double *p = buf;
    for (int64_t r = 0; r < m->n_blocks; r++) {
        const int64_t M = m->blocks[r].n_rows;
        lin[r] = p;
        qk[r] = p + M;
        sk[r] = p + M + M * m->k;
        p += M * (1 + 2 * m->k);
    }
}

static int64_t caches_size(const cf_bfm_model *m) {
    int64_t tot = 0;
    for (int64_t r = 0; r < m->n_blocks; r++) tot += m->blocks[r].n_rows * (1 + 2 * m->k);
    return tot;
}

int64_t cf_bfm_cache_size(const cf_bfm_model *m, int64_t n) { return 2 * n + caches_size(m); }

/* scratch for the block caches, in one allocation */
static double *alloc_caches(const cf_bfm_model *m, double **lin, double **qk, double **sk) {
    const int64_t tot = caches_size(m);
    double *buf = malloc(sizeof(double) * (size_t)(tot > 0 ? tot : 1));
    if (buf) lay_caches(m, buf, lin, qk, sk);
    return buf;
}

#define MAX_BLOCKS 16

typedef struct {
    pred_job *j;
    const double *thetas;
    int64_t S, P;
} predict_lead_ctx;

/* the mean prediction over the S parameter vectors */
static void predict_lead(bfm_pool *pool, void *arg) {
    predict_lead_ctx *c = arg;
    for (int64_t s = 0; s < c->S; s++) {
        c->j->theta = c->thetas + s * c->P;
        block_caches(pool, c->j);
        pool_run(pool, predict_task, c->j, n_chunks_of(c->j->rows->n, ROW_CHUNK));
    }
}

int cf_bfm_predict(double *out, const double *thetas, int64_t S, const cf_bfm_model *m,
                   const cf_bfm_rows *rows, int n_threads) {
    if (S < 1 || m->n_blocks > MAX_BLOCKS || n_threads < 1 || rows->n < 0) return CF_ERR_ARG;
    double *lin[MAX_BLOCKS], *qk[MAX_BLOCKS], *sk[MAX_BLOCKS];
    double *buf = alloc_caches(m, lin, qk, sk);
    if (!buf) return CF_ERR_NOMEM;
    for (int64_t n = 0; n < rows->n; n++) out[n] = 0.0;
    pred_job j = {m, NULL, lin, qk, sk, 0, rows, out, 1.0 / (double)S, NULL, NULL, NULL};
    predict_lead_ctx c = {&j, thetas, S, cf_bfm_n_params(m)};
    with_pool(n_threads, predict_lead, &c);
    free(buf);
    return CF_OK;
}

/* ---------------------------------------------------------------- the sweep
 * Notation (myFM's): e_n = yhat_n - y_n (the residual cache), alpha the noise precision.
 * A parameter t enters yhat_n linearly: yhat_n = g_n + t h_n. Its conditional is normal with
 *   quad = alpha sum_n h_n^2 + lambda,   lin = alpha sum_n h_n (t h_n - e_n) + lambda mu,
 *   t ~ N(lin / quad, 1 / quad),  then e_n += (t_new - t_old) h_n.
 * For w_j, h_n = x_nj; for V_jf, h_n = x_nj (q_nf - x_nj V_jf) with q_nf = sum_j x_nj V_jf.
 * Inside block r (for factor f) every sum over ratings is one over block rows b, through
 *   t_n = q_n - qB_b (the part of q_n outside the block), card_b, c_b = sum t_n,
 *   cS_b = sum t_n^2, E_b = sum e_n, EQ_b = sum e_n t_n  (sums over the ratings of row b),
 * which stay exact while the block's features are drawn (t_n does not change), so a feature
 * costs O(its non-zeros in the block), and the ratings are brought up to date once after. */

/* what a sweep keeps per block row: qB, qS the block's part of q and of the squares (for the
 * factor column drawn; for w, qB is the block's linear part and qBo its value before), the sums
 * c, cS, E, EQ over the row's ratings (see above) and card, the number of its ratings. One cache
 * line per row: a feature's non-zeros visit rows at random. */
typedef struct {
    double qB, qS, c, cS, E, EQ, card, qBo;
} brow;

typedef struct {
    const cf_bfm_model *m;
    const cf_bfm_train *t;
    double *theta;
    int64_t n, k, d, f, r;
    double *e, *q;    /* [n] */
    double *part;     /* chunk sums [2 chunks] */
    brow *br;         /* [M] of the block in use */
    double **lin, **qk, **sk; /* every block's caches (see predict_one), kept up to date */
    double *col[MAX_BLOCKS];  /* [M]: column f of each block's qk, contiguous */
    double *coef;             /* [2 maxM]: per block row, the change of q and of e (apply) */
    const int32_t *idx; /* idx of block r */
    const int64_t *gptr;
    const int32_t *grow;
    int64_t M, off;
    int scatter[MAX_BLOCKS]; /* sum block r's rows by stripes of ratings (see below) */
    double *stripes;         /* [NSTRIPE, maxM, 4] */
} sweep_job;



/* sums of e and e^2 per chunk of ratings */
static void esum_task(void *ctx, int64_t c) {
    sweep_job *j = ctx;
    const int64_t n0 = c * ROW_CHUNK, n1 = n0 + ROW_CHUNK < j->n ? n0 + ROW_CHUNK : j->n;
    double s = 0.0, s2 = 0.0;
    for (int64_t n = n0; n < n1; n++) {
        s += j->e[n];
        s2 += j->e[n] * j->e[n];
    }
    j->part[2 * c] = s;
    j->part[2 * c + 1] = s2;
}

/* e += *part (a constant shift: w0's change) */
static void eshift_task(void *ctx, int64_t c) {
    sweep_job *j = ctx;
    const int64_t n0 = c * ROW_CHUNK, n1 = n0 + ROW_CHUNK < j->n ? n0 + ROW_CHUNK : j->n;
    const double delta = j->part[0];
    for (int64_t n = n0; n < n1; n++) j->e[n] += delta;
}

/* block r's linear part: qB = qBo = lin[b], E = sum over its ratings of e_n, card */
static void wblock_sum_task(void *ctx, int64_t c) {
    sweep_job *j = ctx;
    const double *lin = j->lin[j->r];
    const int64_t b0 = c * BROW_CHUNK, b1 = b0 + BROW_CHUNK < j->M ? b0 + BROW_CHUNK : j->M;
    for (int64_t b = b0; b < b1; b++) {
        const double l = lin[b];
        double s = 0.0;
        for (int64_t p = j->gptr[b]; p < j->gptr[b + 1]; p++) s += j->e[j->grow[p]];
        brow *r = &j->br[b];
        r->qB = r->qBo = l;
        r->E = s;
        r->card = (double)(j->gptr[b + 1] - j->gptr[b]);
    }
}

/* stripe c: acc[c][b][0] = sum of e_n over its ratings of block row b */
static void wstripe_task(void *ctx, int64_t c) {
    sweep_job *j = ctx;
    const int64_t len = (j->n + NSTRIPE - 1) / NSTRIPE, n0 = c * len;
    const int64_t n1 = n0 + len < j->n ? n0 + len : j->n;
    double *acc = j->stripes + c * j->M * 4;
    for (int64_t b = 0; b < j->M; b++) acc[4 * b] = 0.0;
    for (int64_t n = n0; n < n1; n++) acc[4 * (int64_t)j->idx[n]] += j->e[n];
}

/* block rows: qB = qBo = lin[b], E = the stripes' sums in order, card */
static void wstripe_sum_task(void *ctx, int64_t c) {
    sweep_job *j = ctx;
    const double *lin = j->lin[j->r];
    const int64_t b0 = c * BROW_CHUNK, b1 = b0 + BROW_CHUNK < j->M ? b0 + BROW_CHUNK : j->M;
    for (int64_t b = b0; b < b1; b++) {
        double s = 0.0;
        for (int64_t t = 0; t < NSTRIPE; t++) s += j->stripes[(t * j->M + b) * 4];
        brow *r = &j->br[b];
        r->qB = r->qBo = lin[b];
        r->E = s;
        r->card = (double)(j->gptr[b + 1] - j->gptr[b]);
    }
}

/* e_n += qB - qBo of its row: the ratings catch up with block r's new linear part */
static void wblock_apply_task(void *ctx, int64_t c) {
    sweep_job *j = ctx;
    const int64_t n0 = c * ROW_CHUNK, n1 = n0 + ROW_CHUNK < j->n ? n0 + ROW_CHUNK : j->n;
    for (int64_t n = n0; n < n1; n++) {
        const brow *r = &j->br[j->idx[n]];
        j->e[n] += r->qB - r->qBo;
    }
}

/* q_n = sum of the rating's row-local x V[., f] + sum_r qk_r[b_r, f] */
static void qrow_task(void *ctx, int64_t c) {
    sweep_job *j = ctx;
    const cf_bfm_rows *rw = &j->t->rows;
    const double *V = j->theta + 1 + j->d;
    const int64_t n0 = c * ROW_CHUNK, n1 = n0 + ROW_CHUNK < j->n ? n0 + ROW_CHUNK : j->n;
    for (int64_t n = n0; n < n1; n++) {
        double a = 0.0;
        if (rw->x_ptr)
            for (int64_t p = rw->x_ptr[n]; p < rw->x_ptr[n + 1]; p++)
                a += rw->x_val[p] * V[(int64_t)rw->x_col[p] * j->k + j->f];
        for (int64_t r = 0; r < j->m->n_blocks; r++) a += j->col[r][rw->idx[r * j->n + n]];
        j->q[n] = a;
    }
}

/* block row b of the block in use, for the factor being drawn */
static inline void set_brow(sweep_job *j, int64_t b, double qB, double qS, double c, double cS,
                            double E, double EQ) {
    brow *r = &j->br[b];
    r->qB = qB;
    r->qS = qS;
    r->c = c;
    r->cS = cS;
    r->E = E;
    r->EQ = EQ;
    r->card = (double)(j->gptr[b + 1] - j->gptr[b]);
}

/* block r, factor f: every block row's qB, qS and the sums c, cS, E, EQ over its ratings */
static void vblock_sum_task(void *ctx, int64_t c) {
    sweep_job *j = ctx;
    const double *qc = j->col[j->r], *sk = j->sk[j->r] + j->f;
    const int64_t k = j->k;
    const int64_t b0 = c * BROW_CHUNK, b1 = b0 + BROW_CHUNK < j->M ? b0 + BROW_CHUNK : j->M;
    for (int64_t b = b0; b < b1; b++) {
        const double qb = qc[b];
        double s1 = 0.0, s2 = 0.0, se = 0.0, seq = 0.0;
        for (int64_t p = j->gptr[b]; p < j->gptr[b + 1]; p++) {
            const int32_t n = j->grow[p];
            const double tn = j->q[n] - qb, en = j->e[n];
            s1 += tn;
            s2 += tn * tn;
            se += en;
            seq += en * tn;
        }
        set_brow(j, b, qb, sk[b * k], s1, s2, se, seq);
    }
}

/* stripe c: acc[c][b] = the sums of t_n, t_n^2, e_n, e_n t_n over its ratings of block row b */
static void vstripe_task(void *ctx, int64_t c) {
    sweep_job *j = ctx;
    const double *qc = j->col[j->r];
    const int64_t len = (j->n + NSTRIPE - 1) / NSTRIPE, n0 = c * len;
    const int64_t n1 = n0 + len < j->n ? n0 + len : j->n;
    double *acc = j->stripes + c * j->M * 4;
    memset(acc, 0, sizeof(double) * (size_t)(4 * j->M));
    for (int64_t n = n0; n < n1; n++) {
        const int64_t b = j->idx[n];
        const double tn = j->q[n] - qc[b], en = j->e[n];
        double *a = acc + 4 * b;
        a[0] += tn;
        a[1] += tn * tn;
        a[2] += en;
        a[3] += en * tn;
    }
}

/* block rows: qB, qS and the stripes' sums c, cS, E, EQ in stripe order */
static void vstripe_sum_task(void *ctx, int64_t c) {
    sweep_job *j = ctx;
    const double *qc = j->col[j->r], *sk = j->sk[j->r] + j->f;
    const int64_t k = j->k;
    const int64_t b0 = c * BROW_CHUNK, b1 = b0 + BROW_CHUNK < j->M ? b0 + BROW_CHUNK : j->M;
    for (int64_t b = b0; b < b1; b++) {
        double s1 = 0.0, s2 = 0.0, se = 0.0, seq = 0.0;
        for (int64_t t = 0; t < NSTRIPE; t++) {
            const double *a = j->stripes + (t * j->M + b) * 4;
            s1 += a[0];
            s2 += a[1];
            se += a[2];
            seq += a[3];
        }
        set_brow(j, b, qc[b], sk[b * k], s1, s2, se, seq);
    }
}

/* column f of block r's qk into col[r] (before the block rows change it) */
static void col_task(void *ctx, int64_t c) {
    sweep_job *j = ctx;
    const double *qk = j->qk[j->r] + j->f;
    double *qc = j->col[j->r];
    const int64_t b0 = c * BROW_CHUNK, b1 = b0 + BROW_CHUNK < j->M ? b0 + BROW_CHUNK : j->M;
    for (int64_t b = b0; b < b1; b++) qc[b] = qk[b * j->k];
}

/* After block r's features for factor f, with qBo = col[r][b], qSo the old sk:
 *   e_n += t_n (qB - qBo) + (qB^2 - qBo^2) / 2 - (qS - qSo) / 2,  q_n += qB - qBo,
 * t_n = q_n - qBo, i.e. e_n += q_n dq + a with dq = qB - qBo and
 *   a = dq (qB + qBo) / 2 - (qS - qSo) / 2 - qBo dq  (coef[2b], coef[2b + 1]);
 * then qk, sk take the new values. */
static void prep_task(void *ctx, int64_t c) {
    sweep_job *j = ctx;
    double *qk = j->qk[j->r] + j->f, *sk = j->sk[j->r] + j->f;
    const double *qc = j->col[j->r];
    const int64_t b0 = c * BROW_CHUNK, b1 = b0 + BROW_CHUNK < j->M ? b0 + BROW_CHUNK : j->M;
    for (int64_t b = b0; b < b1; b++) {
        const brow *r = &j->br[b];
        const double qbo = qc[b], dq = r->qB - qbo;
        j->coef[2 * b] = dq;
        j->coef[2 * b + 1] = 0.5 * dq * (r->qB + qbo) - 0.5 * (r->qS - sk[b * j->k]) - qbo * dq;
        qk[b * j->k] = r->qB;
        sk[b * j->k] = r->qS;
    }
}

static void vblock_apply_task(void *ctx, int64_t c) {
    sweep_job *j = ctx;
    const double *cf = j->coef;
    const int64_t n0 = c * ROW_CHUNK, n1 = n0 + ROW_CHUNK < j->n ? n0 + ROW_CHUNK : j->n;
    for (int64_t n = n0; n < n1; n++) {
        const int64_t b = j->idx[n];
        const double dq = cf[2 * b], q = j->q[n];
        j->e[n] += q * dq + cf[2 * b + 1];
        j->q[n] = q + dq;
    }
}

/* the block's linear cache takes its new values (w step) */
static void writeback_task(void *ctx, int64_t c) {
    sweep_job *j = ctx;
    const int64_t b0 = c * BROW_CHUNK, b1 = b0 + BROW_CHUNK < j->M ? b0 + BROW_CHUNK : j->M;
    double *lin = j->lin[j->r];
    for (int64_t b = b0; b < b1; b++) lin[b] = j->br[b].qB;
}

static void set_block(sweep_job *j, int64_t r) {
    const int64_t M = j->m->blocks[r].n_rows;
    int64_t go = 0;
    for (int64_t s = 0; s < r; s++) go += j->m->blocks[s].n_rows + 1;
    j->r = r;
    j->M = M;
    j->off = feat_off(j->m, r);
    j->idx = j->t->rows.idx + r * j->n;
    j->gptr = j->t->gptr + go;
    j->grow = j->t->grow + r * j->n;
}

/* sum over chunk partials p[stride c + o], c < nc, in chunk order */
static double chunk_sum(const double *p, int64_t nc, int64_t stride, int64_t o) {
    double s = 0.0;
    for (int64_t c = 0; c < nc; c++) s += p[stride * c + o];
    return s;
}

/* lambda and mu of every group for the values vals[j * stride] (the w's or one column of V),
 * drawn at slots lam_slot + g * slot_stride and mu_slot + g * slot_stride; acc [3 G] scratch */
static void draw_group_hyper(double *mu, double *lam, int64_t hstride, const double *vals,
                             int64_t vstride, const cf_bfm_model *m, int64_t d,
                             const cf_bfm_prior *pr, uint64_t seed, int64_t sweep,
                             int64_t lam_slot, int64_t mu_slot, int64_t slot_stride, double *acc) {
    const int64_t G = m->n_groups;
    for (int64_t g = 0; g < 3 * G; g++) acc[g] = 0.0;
    for (int64_t j = 0; j < d; j++) {
        const int64_t g = m->group[j];
        const double dev = vals[j * vstride] - mu[g * hstride];
        acc[g] += 1.0;
        acc[G + g] += dev * dev;
    }
    for (int64_t g = 0; g < G; g++) {
        const double shape = (pr->alpha_0 + acc[g]) / 2.0, rate = (pr->beta_0 + acc[G + g]) / 2.0;
        lam[g * hstride] = cf_bfm_std_gamma(seed, sweep, lam_slot + g * slot_stride, shape) / rate;
    }
    for (int64_t j = 0; j < d; j++) acc[2 * G + m->group[j]] += vals[j * vstride];
    for (int64_t g = 0; g < G; g++) {
        const double l = lam[g * hstride];
        const double quad = l * (pr->gamma_0 + acc[g]);
        const double lin = l * (pr->gamma_0 * pr->mu_0 + acc[2 * G + g]);
        mu[g * hstride] = draw_normal(seed, sweep, mu_slot + g * slot_stride, quad, lin);
    }
}

/* The Normal-Wishart hyperparameters of every group's factor rows (model->wishart): with n
 * rows x_j = V[j, .] in group g, their mean xb and scatter S = sum (x_j - xb)(x_j - xb)',
 *   W_n^-1 = I + S + (gamma_0 n / (gamma_0 + n)) (xb - mu_0)(xb - mu_0)',  nu_n = k + n,
 *   Lambda ~ Wishart(nu_n, W_n),  mu ~ N((gamma_0 mu_0 + n xb) / (gamma_0 + n), ((gamma_0 + n) Lambda)^-1).
 * With R R' = W_n^-1 (Cholesky) and A the Bartlett factor: Lambda = M M', M = R^-T A; and
 * mu = its mean + R A^-T z / sqrt(gamma_0 + n) (covariance R A^-T A^-1 R' = Lambda^-1).
 * Writes mu_V [G, k], lambda_V [G, k] (Lambda's diagonal) and Lambda_V [G, k, k];
 * acc [G (1 + k + k k) + 3 k k] scratch. */
static void draw_group_wishart(double *mu_v, double *lam_v, double *Lam, const double *V,
                               const cf_bfm_model *m, int64_t d, const cf_bfm_prior *pr,
                               uint64_t seed, int64_t sweep, int64_t lam_slot, int64_t mu_slot,
                               double *acc) {
    const int64_t G = m->n_groups, k = m->k, kk = k * k;
    double *cnt = acc, *sum = cnt + G, *sq = sum + G * k, *R = sq + G * kk, *A = R + kk, *M = A + kk;
    for (int64_t i = 0; i < G * (1 + k + kk); i++) acc[i] = 0.0;
    for (int64_t j = 0; j < d; j++) {
        const int64_t g = m->group[j];
        const double *x = V + j * k;
        cnt[g] += 1.0;
        for (int64_t a = 0; a < k; a++) {
            sum[g * k + a] += x[a];
            for (int64_t b = 0; b <= a; b++) sq[g * kk + a * k + b] += x[a] * x[b];
        }
    }
    for (int64_t g = 0; g < G; g++) {
        const double n = cnt[g], bn = pr->gamma_0 + n, c = pr->gamma_0 * n / bn;
        const double *s = sum + g * k, *q = sq + g * kk;
        /* W_n^-1 (lower triangle) = I + sum x x' - n xb xb' + c (xb - mu_0)(xb - mu_0)' */
        for (int64_t a = 0; a < k; a++)
            for (int64_t b = 0; b <= a; b++) {
                const double xa = n > 0 ? s[a] / n : 0.0, xb = n > 0 ? s[b] / n : 0.0;
                R[a * k + b] = (a == b) + q[a * k + b] - n * xa * xb +
                               c * (xa - pr->mu_0) * (xb - pr->mu_0);
            }
        /* in place Cholesky: R lower with R R' = W_n^-1 (positive definite: >= I) */
        for (int64_t a = 0; a < k; a++) {
            for (int64_t b = 0; b <= a; b++) {
                double v = R[a * k + b];
                for (int64_t e = 0; e < b; e++) v -= R[a * k + e] * R[b * k + e];
                R[a * k + b] = a == b ? sqrt(v) : v / R[b * k + b];
            }
            for (int64_t b = a + 1; b < k; b++) R[a * k + b] = 0.0;
        }
        cf_bfm_bartlett(A, k, (double)k + n, seed, sweep, lam_slot + g * k);
        /* M = R^-T A: R' M = A, back substitution (R' upper), column by column */
        for (int64_t col = 0; col < k; col++)
            for (int64_t a = k - 1; a >= 0; a--) {
                double v = A[a * k + col];
                for (int64_t e = a + 1; e < k; e++) v -= R[e * k + a] * M[e * k + col];
                M[a * k + col] = v / R[a * k + a];
            }
        double *L = Lam + g * kk;
        for (int64_t a = 0; a < k; a++)
            for (int64_t b = 0; b < k; b++) {
                double v = 0.0;
                for (int64_t e = 0; e < k; e++) v += M[a * k + e] * M[b * k + e];
                L[a * k + b] = v;
            }
        for (int64_t a = 0; a < k; a++) {
            for (int64_t b = 0; b < a; b++) L[a * k + b] = L[b * k + a]; /* exactly symmetric */
            lam_v[g * k + a] = L[a * k + a];
        }
        /* mu: y = A^-T z (A' y = z, back substitution), then mean + R y / sqrt(bn) */
        double *y = M; /* M is no longer needed */
        cf_bfm_std_normals(y, k, seed, sweep, mu_slot + g * k);
        for (int64_t a = k - 1; a >= 0; a--) {
            double v = y[a];
            for (int64_t e = a + 1; e < k; e++) v -= A[e * k + a] * y[e];
            y[a] = v / A[a * k + a];
        }
        for (int64_t a = 0; a < k; a++) {
            double v = 0.0;
            for (int64_t e = 0; e <= a; e++) v += R[a * k + e] * y[e];
            mu_v[g * k + a] = (pr->gamma_0 * pr->mu_0 + s[a]) / bn + v / sqrt(bn);
        }
    }
}

/* The prior's part of V[j, f]'s conditional, for j in group g: quad += Lambda_ff,
 * lin += Lambda_ff mu_f - sum_{c != f} Lambda_fc (V_jc - mu_c) (Normal-Gamma: Lambda diagonal). */
static inline void factor_prior(const double *hyper, const cf_bfm_model *m, const double *vj,
                                int64_t g, int64_t f, double *quad, double *lin) {
    const int64_t G = m->n_groups, k = m->k;
    const double *mu = hyper + 1 + 2 * G + g * k;
    const double lff = hyper[1 + 2 * G + G * k + g * k + f];
    double l = lff * mu[f];
    if (m->wishart) {
        const double *L = hyper + 1 + 2 * G + 2 * G * k + (g * k + f) * k;
        for (int64_t c = 0; c < k; c++)
            if (c != f) l -= L[c] * (vj[c] - mu[c]);
    }
    *quad += lff;
    *lin += l;
}

/* whether the caller asked the driver to stop (a flag another thread may set at any time) */
static inline int stop_requested(const int64_t *stop) {
#if defined(__GNUC__)
    return stop && __atomic_load_n(stop, __ATOMIC_RELAXED) != 0;
#else
    return stop && *(const volatile int64_t *)stop != 0;
#endif
}

/* one Gibbs sweep (number `sweep` of the chain) from factor f0 on (f0 > 0: the sweep was
 * stopped before factor f0, everything before it is drawn); e holds the residuals of theta on
 * entry and on exit; se, se2 = sum e, sum e^2 on entry. Returns k when the sweep is complete,
 * or the factor it stopped before (a stop request, checked after each factor but the last). */
static int64_t sweep_once(sweep_job *j, double *hyper, bfm_pool *pool, const cf_bfm_prior *pr,
                          uint64_t seed, int64_t sweep, int flags, double se, double se2,
                          double *acc, int64_t f0, const int64_t *stop) {
    const cf_bfm_model *m = j->m;
    const cf_bfm_train *t = j->t;
    const int64_t n = j->n, k = j->k, d = j->d, G = m->n_groups, nrc = n_chunks_of(n, ROW_CHUNK);
    double *theta = j->theta, *w = theta + 1, *V = theta + 1 + d;
    double *mu_w = hyper + 1, *lam_w = hyper + 1 + G, *mu_v = hyper + 1 + 2 * G,
           *lam_v = hyper + 1 + 2 * G + G * k;
    const int64_t s_lw = 2, s_mw = 2 + G, s_w = 2 + 2 * G, s_lv = 2 + 2 * G + d,
                  s_mv = s_lv + G * k, s_v = s_mv + G * k;
    double alpha = hyper[0]; /* this sweep's, already drawn when resuming at f0 > 0 */
    if (f0 > 0) goto factors;

    /* alpha ~ Gamma((alpha_0 + n) / 2, rate (beta_0 + sum e^2) / 2) */
    if (!(flags & CF_BFM_FIX_ALPHA))
        hyper[0] = cf_bfm_std_gamma(seed, sweep, 0, (pr->alpha_0 + (double)n) / 2.0) /
                   ((pr->beta_0 + se2) / 2.0);
    alpha = hyper[0];

    /* w0: h_n = 1 */
    {
        const double w0 = theta[0];
        const double quad = alpha * (double)n + pr->reg_0;
        const double lin = alpha * ((double)n * w0 - se);
        theta[0] = draw_normal(seed, sweep, 1, quad, lin);
        j->part[0] = theta[0] - w0;
        pool_run(pool, eshift_task, j, nrc);
    }

    if (!(flags & CF_BFM_FIX_GROUPS))
        draw_group_hyper(mu_w, lam_w, 1, w, 1, m, d, pr, seed, sweep, s_lw, s_mw, 1, acc);

    /* w, row-local features: h_n = x_nj */
    for (int64_t jj = 0; jj < m->d0; jj++) {
        const int64_t g = m->group[jj];
        double quad = 0.0, lin = 0.0;
        for (int64_t p = t->xt_ptr[jj]; p < t->xt_ptr[jj + 1]; p++) {
            const double x = t->xt_val[p];
            quad += x * x;
            lin += x * (x * w[jj] - j->e[t->xt_row[p]]);
        }
        quad = alpha * quad + lam_w[g];
        lin = alpha * lin + lam_w[g] * mu_w[g];
        const double wn = draw_normal(seed, sweep, s_w + jj, quad, lin), delta = wn - w[jj];
        w[jj] = wn;
        for (int64_t p = t->xt_ptr[jj]; p < t->xt_ptr[jj + 1]; p++)
            j->e[t->xt_row[p]] += t->xt_val[p] * delta;
    }
    /* w, block features: sum_n h_n^2 = sum_b x_bj^2 card_b, sum_n h_n e_n = sum_b x_bj E_b */
    j->f = -1;
    for (int64_t r = 0; r < m->n_blocks; r++) {
        set_block(j, r);
        const cf_bfm_block *B = &m->blocks[r];
        if (j->scatter[r]) {
            pool_run(pool, wstripe_task, j, NSTRIPE);
            pool_run(pool, wstripe_sum_task, j, n_chunks_of(j->M, BROW_CHUNK));
        } else {
            pool_run(pool, wblock_sum_task, j, n_chunks_of(j->M, BROW_CHUNK));
        }
        for (int64_t jl = 0; jl < B->n_feat; jl++) {
            const int64_t jj = j->off + jl, g = m->group[jj];
            double quad = 0.0, lin = 0.0;
            for (int64_t p = B->tptr[jl]; p < B->tptr[jl + 1]; p++) {
                const brow *rb = &j->br[B->trow[p]];
                const double x = B->tval[p];
                quad += x * x * rb->card;
                lin -= x * rb->E;
            }
            lin += quad * w[jj];
            quad = alpha * quad + lam_w[g];
            lin = alpha * lin + lam_w[g] * mu_w[g];
            const double wn = draw_normal(seed, sweep, s_w + jj, quad, lin), delta = wn - w[jj];
            w[jj] = wn;
            for (int64_t p = B->tptr[jl]; p < B->tptr[jl + 1]; p++) {
                brow *rb = &j->br[B->trow[p]];
                const double x = B->tval[p];
                rb->E += x * rb->card * delta;
                rb->qB += x * delta;
            }
        }
        pool_run(pool, wblock_apply_task, j, nrc);
        pool_run(pool, writeback_task, j, n_chunks_of(j->M, BROW_CHUNK));
    }

    if (!(flags & CF_BFM_FIX_GROUPS)) {
        if (m->wishart)
            draw_group_wishart(mu_v, lam_v, lam_v + G * k, V, m, d, pr, seed, sweep, s_lv, s_mv, acc);
        else
            for (int64_t f = 0; f < k; f++)
                draw_group_hyper(mu_v + f, lam_v + f, k, V + f, k, m, d, pr, seed, sweep, s_lv + f,
                                 s_mv + f, k, acc);
    }

factors:
    for (int64_t f = f0; f < k; f++) {
        j->f = f;
        /* every rating's q for factor f */
        for (int64_t r = 0; r < m->n_blocks; r++) {
            set_block(j, r);
            pool_run(pool, col_task, j, n_chunks_of(j->M, BROW_CHUNK));
        }
        pool_run(pool, qrow_task, j, nrc);

        /* row-local features: h_n = x_nj (q_n - x_nj V_jf) */
        for (int64_t jj = 0; jj < m->d0; jj++) {
            const int64_t g = m->group[jj];
            const double vo = V[jj * k + f];
            double quad = 0.0, lin = 0.0;
            for (int64_t p = t->xt_ptr[jj]; p < t->xt_ptr[jj + 1]; p++) {
                const int32_t nn = t->xt_row[p];
                const double x = t->xt_val[p], h = x * (j->q[nn] - x * vo);
                quad += h * h;
                lin += h * (vo * h - j->e[nn]);
            }
            quad *= alpha;
            lin *= alpha;
            factor_prior(hyper, m, V + jj * k, g, f, &quad, &lin);
            const double vn = draw_normal(seed, sweep, s_v + jj * k + f, quad, lin), delta = vn - vo;
            V[jj * k + f] = vn;
            for (int64_t p = t->xt_ptr[jj]; p < t->xt_ptr[jj + 1]; p++) {
                const int32_t nn = t->xt_row[p];
                const double x = t->xt_val[p], h = x * (j->q[nn] - x * vo);
                j->q[nn] += x * delta;
                j->e[nn] += h * delta;
            }
        }

        /* each block's features */
        for (int64_t r = 0; r < m->n_blocks; r++) {
            set_block(j, r);
            const cf_bfm_block *B = &m->blocks[r];
            if (j->scatter[r]) {
                pool_run(pool, vstripe_task, j, NSTRIPE);
                pool_run(pool, vstripe_sum_task, j, n_chunks_of(j->M, BROW_CHUNK));
            } else {
                pool_run(pool, vblock_sum_task, j, n_chunks_of(j->M, BROW_CHUNK));
            }
            for (int64_t jl = 0; jl < B->n_feat; jl++) {
                const int64_t jj = j->off + jl, g = m->group[jj];
                const double vo = V[jj * k + f];
                /* two interleaved partial sums (even and odd non-zeros): the loads of
                 * random block rows overlap instead of waiting on one chain of additions */
                double quad = 0.0, lin = 0.0, quad2 = 0.0, lin2 = 0.0;
                int64_t q = B->tptr[jl];
                for (; q + 1 < B->tptr[jl + 1]; q += 2) {
                    const brow *ra = &j->br[B->trow[q]], *rc = &j->br[B->trow[q + 1]];
                    const double xa = B->tval[q], xc = B->tval[q + 1];
                    const double ha = ra->qB - xa * vo, hc = rc->qB - xc * vo;
                    quad += xa * xa * (ha * ha * ra->card + 2.0 * ra->c * ha + ra->cS);
                    lin -= xa * (ra->E * ha + ra->EQ);
                    quad2 += xc * xc * (hc * hc * rc->card + 2.0 * rc->c * hc + rc->cS);
                    lin2 -= xc * (rc->E * hc + rc->EQ);
                }
                if (q < B->tptr[jl + 1]) {
                    const brow *ra = &j->br[B->trow[q]];
                    const double xa = B->tval[q], ha = ra->qB - xa * vo;
                    quad += xa * xa * (ha * ha * ra->card + 2.0 * ra->c * ha + ra->cS);
                    lin -= xa * (ra->E * ha + ra->EQ);
                }
                quad += quad2;
                lin += lin2;
                lin += quad * vo;
                quad *= alpha;
                lin *= alpha;
                factor_prior(hyper, m, V + jj * k, g, f, &quad, &lin);
                const double vn = draw_normal(seed, sweep, s_v + jj * k + f, quad, lin),
                             delta = vn - vo;
                V[jj * k + f] = vn;
                for (q = B->tptr[jl]; q < B->tptr[jl + 1]; q++) {
                    brow *rb = &j->br[B->trow[q]];
                    const double x = B->tval[q];
                    const double hB = rb->qB - x * vo;
                    rb->qB += delta * x;
                    rb->qS += delta * (vn + vo) * x * x;
                    rb->E += x * delta * (hB * rb->card + rb->c);
                    rb->EQ += x * delta * (hB * rb->c + rb->cS);
                }
            }
            pool_run(pool, prep_task, j, n_chunks_of(j->M, BROW_CHUNK));
            pool_run(pool, vblock_apply_task, j, nrc);
        }
        if (f + 1 < k && stop_requested(stop)) return f + 1;
    }
    return k;
}

/* the residuals are recomputed from scratch every RESYNC sweeps (and when resid is not valid):
 * between, they are kept up to date in place, and rounding does not build up */
#define RESYNC 16

typedef struct {
    sweep_job *j;
    pred_job *pj;
    double *rmse, *theta, *hyper, *theta_mean, *hyper_mean, *eval_mean, *samples;
    int64_t samples_cap;
    int64_t *counters;
    const cf_bfm_rows *ev;
    const cf_bfm_prior *prior;
    int64_t n_sweeps, burn_in;
    uint64_t seed;
    int flags;
    const int64_t *stop;
    double *acc;
    int status;
} run_lead_ctx;

/* the sweeps of cf_bfm_run, on the leading thread */
static void run_lead(bfm_pool *pool, void *arg) {
    run_lead_ctx *c = arg;
    sweep_job *j = c->j;
    pred_job *pj = c->pj;
    const int64_t k = j->k, nrc = n_chunks_of(j->n, ROW_CHUNK);
    const int64_t P = cf_bfm_n_params(j->m), H = cf_bfm_n_hyper(j->m);
    for (int64_t s = 0; s < c->n_sweeps; s++) {
        const int64_t sweep = c->counters[0], f0 = c->counters[3];
        if (s > 0 && stop_requested(c->stop)) {
            c->status = CF_BFM_STOPPED;
            break;
        }
        double se = 0.0, se2 = 0.0;
        if (f0 == 0) {
            if (!c->counters[2] || sweep % RESYNC == 0) {
                block_caches(pool, pj);
                pool_run(pool, resid_task, pj, nrc);
                c->counters[2] = 1;
            }
            pool_run(pool, esum_task, j, nrc);
            se = chunk_sum(j->part, nrc, 2, 0);
            se2 = chunk_sum(j->part, nrc, 2, 1);
        }
        const int64_t f_end = sweep_once(j, c->hyper, pool, c->prior, c->seed, sweep, c->flags,
                                         se, se2, c->acc, f0, c->stop);
        if (f_end < k) {
            c->counters[3] = f_end;
            c->status = CF_BFM_STOPPED;
            break;
        }
        c->counters[3] = 0;
        pool_run(pool, esum_task, j, nrc);
        const double sse = chunk_sum(j->part, nrc, 2, 1);
        c->rmse[s] = sqrt(sse / (double)j->n);
        if (!isfinite(sse) || !isfinite(c->hyper[0])) {
            c->counters[2] = 0;
            c->status = CF_ERR_NONFINITE;
            break;
        }
        c->counters[0] = sweep + 1;
        if (sweep >= c->burn_in) {
            const int64_t kept = ++c->counters[1];
            const double wgt = 1.0 / (double)kept;
            for (int64_t i = 0; i < P; i++) c->theta_mean[i] += (c->theta[i] - c->theta_mean[i]) * wgt;
            for (int64_t i = 0; i < H; i++) c->hyper_mean[i] += (c->hyper[i] - c->hyper_mean[i]) * wgt;
            if (c->samples && kept <= c->samples_cap)
                memcpy(c->samples + (kept - 1) * P, c->theta, sizeof(double) * (size_t)P);
            if (c->ev && c->ev->n > 0) {
                /* eval_mean += (yhat - eval_mean) / kept, as out += wgt * yhat after scaling */
                for (int64_t i = 0; i < c->ev->n; i++) c->eval_mean[i] *= 1.0 - wgt;
                pred_job ej = *pj;
                ej.rows = c->ev;
                ej.out = c->eval_mean;
                ej.scale = wgt;
                pool_run(pool, predict_task, &ej, n_chunks_of(c->ev->n, ROW_CHUNK));
            }
        }
    }
}

int cf_bfm_run(double *rmse, double *theta, double *hyper, double *theta_mean,
               double *hyper_mean, double *eval_mean, double *samples, int64_t samples_cap,
               double *cache, int64_t *counters, const cf_bfm_model *m, const cf_bfm_train *t,
               const cf_bfm_rows *ev, const cf_bfm_prior *prior, int64_t n_sweeps,
               int64_t burn_in, uint64_t seed, int flags, int n_threads, const int64_t *stop) {
    if (n_sweeps < 0 || burn_in < 0 || n_threads < 1 || m->k < 0 || m->n_blocks > MAX_BLOCKS ||
        (m->wishart != 0 && m->wishart != 1) ||
        t->rows.n < 1 || (samples && samples_cap < 0) || counters[3] < 0 ||
        counters[3] >= (m->k > 0 ? m->k : 1))
        return CF_ERR_ARG;
    if (n_sweeps == 0) return CF_OK;
    const int64_t n = t->rows.n, k = m->k, d = n_features(m);
    const int64_t G = m->n_groups, nrc = n_chunks_of(n, ROW_CHUNK);
    int64_t maxM = 0, sumM = 0;
    for (int64_t r = 0; r < m->n_blocks; r++) {
        if (m->blocks[r].n_rows > maxM) maxM = m->blocks[r].n_rows;
        sumM += m->blocks[r].n_rows;
    }
    /* scratch: chunk partials [2 nrc]; group accumulators [nacc]; the blocks' columns [sum M];
     * the apply coefficients [2 maxM]; the block rows [maxM] (q lives in the cache: no
     * allocation of the size of the data per call) */
    const int64_t nacc = m->wishart ? G * (1 + k + k * k) + 3 * k * k : 3 * G;
    const int64_t nd = 2 * nrc + nacc + sumM + 2 * maxM;
    double *buf = malloc(sizeof(double) * (size_t)nd);
    brow *br = malloc(sizeof(brow) * (size_t)(maxM > 0 ? maxM : 1));
    int scatter[MAX_BLOCKS] = {0}, any_scatter = 0;
    for (int64_t r = 0; r < m->n_blocks; r++) {
        scatter[r] = uses_stripes(t, r, flags);
        any_scatter |= scatter[r];
    }
    double *stripes = any_scatter ? malloc(sizeof(double) * (size_t)(NSTRIPE * 4 * maxM)) : NULL;
    if (!buf || !br || (any_scatter && !stripes)) {
        free(buf);
        free(br);
        free(stripes);
        return CF_ERR_NOMEM;
    }
    double *resid = cache, *lin[MAX_BLOCKS], *qk[MAX_BLOCKS], *sk[MAX_BLOCKS];
    lay_caches(m, cache + 2 * n, lin, qk, sk);

    sweep_job j;
    memset(&j, 0, sizeof j);
    j.m = m;
    j.t = t;
    j.theta = theta;
    j.n = n;
    j.k = k;
    j.d = d;
    j.e = resid;
    j.q = cache + n;
    j.part = buf;
    j.br = br;
    j.stripes = stripes;
    memcpy(j.scatter, scatter, sizeof scatter);
    j.lin = lin;
    j.qk = qk;
    j.sk = sk;
    double *acc = buf + 2 * nrc;
    {
        double *p = acc + nacc;
        for (int64_t r = 0; r < m->n_blocks; r++) {
            j.col[r] = p;
            p += m->blocks[r].n_rows;
        }
        j.coef = p;
    }

    pred_job pj = {m, theta, lin, qk, sk, 0, &t->rows, NULL, 1.0, t->y, resid, j.part};
    run_lead_ctx c = {&j, &pj, rmse, theta, hyper, theta_mean, hyper_mean, eval_mean, samples,
                      samples_cap, counters, ev, prior, n_sweeps, burn_in, seed, flags, stop, acc,
                      CF_OK};
    with_pool(n_threads, run_lead, &c);
    const int status = c.status;
    free(stripes);
    free(br);
    free(buf);
    return status;
}
