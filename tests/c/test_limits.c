/* test_limits.c - issue 14's guarantees of the C core, as a standalone program (see harness.h):
 * checked size arithmetic (csrc/checked.h) and the drivers that use it refusing sizes that
 * do not fit instead of allocating a wrapped, too-small buffer; the sparse driver checking
 * every rating's ids as it reads them (inside the tables and in its block's groups) and
 * validating its own copies of the block starts. */
#include "harness.h"
#include "collabc.h"
#include "checked.h"

static void test_checked_arithmetic(void) {
    int64_t r = 7;
    CHECK(cf_mul(3, 4, &r) && r == 12);
    CHECK(cf_mul(0, INT64_MAX, &r) && r == 0);
    CHECK(cf_mul(INT64_MAX, 1, &r) && r == INT64_MAX);
    r = 7;
    CHECK(!cf_mul(INT64_MAX / 2 + 1, 2, &r) && r == 7); /* 2**63 does not fit */
    CHECK(!cf_mul((int64_t)1 << 40 | 1, (int64_t)1 << 24, &r)); /* (2**40 + 1) 2**24 */
    CHECK(!cf_mul(-1, 2, &r) && !cf_mul(2, -1, &r));
    CHECK(cf_add(INT64_MAX - 1, 1, &r) && r == INT64_MAX);
    CHECK(!cf_add(INT64_MAX, 1, &r) && !cf_add(-1, 1, &r));
    CHECK(cf_alloc(-1, 4) == NULL);
    CHECK(cf_alloc(INT64_MAX / 2, 4) == NULL); /* the byte count overflows: no malloc at all */
    CHECK(cf_alloc((int64_t)1 << 62, 4) == NULL);
    CHECK(cf_calloc(INT64_MAX / 8 + 1, 16) == NULL);
    void *p = cf_alloc(0, 4), *q = cf_calloc(3, 8);
    CHECK(p != NULL && q != NULL && ((int64_t *)q)[2] == 0);
    free(p), free(q);
}

static void test_sizes_that_do_not_fit_are_refused(void) {
    cf_dot_config c = {(int64_t)1 << 40, (int64_t)1 << 40, (int64_t)1 << 30, 1, 0, 0, 0};
    CHECK(cf_dot_n_params(&c) == -1);
    c.k = 3;
    CHECK(cf_dot_n_params(&c) == ((int64_t)1 << 41) * 4);
    CHECK(cf_rank_panel_size(INT64_MAX - 3, 2) == -1);
    CHECK(cf_rank_panel_size((int64_t)1 << 40, (int64_t)1 << 30) == -1);
    CHECK(cf_rank_panel_size(17, 3) == 32 * 3);
}

/* An embedding of width 2**61 through a ReLU and a Linear: every offset is inside the claimed
 * block sizes (cf_nn_validate passes), but the activations of even two rows need
 * (2**62 + 1) x 2 floats, more than int64_t counts. The drivers must refuse with CF_ERR_NOMEM
 * before allocating or touching any buffer (the small ones passed here would be overrun). */
static void test_nn_scratch_that_does_not_fit_is_refused(void) {
    const int64_t W = (int64_t)1 << 61;
    int64_t rows[1] = {1}, dims[1] = {W}, offs[1] = {0};
    cf_nn_op ops[2] = {{CF_NN_RELU, W, W, -1, -1, -1, 0.0}, {CF_NN_LINEAR, W, 1, W, -1, -1, 0.0}};
    cf_nn_config c = {1, rows, dims, offs, 2, ops, 0, 0.0f, 0.0f, 0.1, 1e-5, 2 * W, 0};
    CHECK(cf_nn_validate(&c) == CF_OK);
    float params[4] = {0}, grads[4] = {0}, m[4] = {0}, v[4] = {0}, stats[1] = {0}, out[2] = {0};
    float y[2] = {1, 2};
    int32_t x[2] = {0, 0};
    int64_t order[2] = {0, 1}, bad = 7;
    double lrs[1] = {1e-3}, moms[1] = {0.9}, losses[1] = {0};
    cf_optimizer opt = {CF_OPT_ADAM, m, v, 2 * W, 2 * W, 0.0, 0.99, 1e-5, 1, 0};
    CHECK(cf_nn_fit_epoch(params, grads, stats, &opt, losses, &bad, x, y, order, 2, 2, 2, 1, lrs,
                          moms, 0, &c) == CF_ERR_NOMEM);
    CHECK(cf_nn_predict(out, params, stats, x, 2, &c) == CF_ERR_NOMEM);
    CHECK(params[0] == 0 && grads[0] == 0 && m[0] == 0 && opt.step == 0); /* nothing touched */
}

/* 4 users x 4 items, nb = 2: block (ug, ig) holds the ratings with u % 2 == ug, i % 2 == ig */
static void test_sparse_checks_every_rating_as_it_reads_it(void) {
    enum { NU = 4, NI = 4, K = 3, R = 6 };
    cf_dot_config c = {NU, NI, K, 1, 0, 0, 0};
    int64_t P = cf_dot_n_params(&c);
    for (int kind = CF_SPARSE_SGD; kind <= CF_SPARSE_ADAM; kind++) {
        /* rows 0-1: block 0 (u even, i even); rows 2-5: block 3 (u odd, i odd), but row 4
         * holds item 2 (even): in range, so the check before training passes, yet it is not
         * in block 3's item group, and training it would write a row another thread owns */
        int32_t x[2 * R] = {0, 0, 2, 2, 1, 1, 1, 3, 3, 2, 3, 3};
        float y[R] = {1, 2, 3, 4, 5, 1};
        int64_t starts[5] = {0, 2, 2, 2, 6}, blocks[2] = {0, 3}, bad = -1;
        double lrs[2] = {0.1, 0.1}, moms[2] = {0.9, 0.9}, loss[2] = {0, 0};
        float *params = frand(P, 0.1), *m = fzeros(P), *v = fzeros(2 * P), *p1 = fzeros(NU + NI),
              *p2 = fzeros(NU + NI);
        for (int64_t r = 0; r < NU + NI; r++) p1[r] = p2[r] = 1.0f;
        cf_sparse_opt opt = {kind, m, v, p1, p2, 0.9, 0.99, 1e-8, 0.01};
        float *before = fcopy(params, P);
        CHECK(cf_dot_fit_blocks(params, &opt, loss, &bad, x, y, R, starts, 2, blocks, 2, lrs, moms,
                                &c, 1) == CF_ERR_INDEX);
        CHECK(bad == 4);
        /* user 3's ratings (rows 4-5) were not applied, user 1's (rows 2-3, before it in row
         * order) and block 0's were */
        CHECK(fsame(params + 3 * K, before + 3 * K, K));
        CHECK(!fsame(params + 1 * K, before + 1 * K, K) && !fsame(params, before, K));
        x[2 * 4 + 1] = 1; /* now in its group: the same call trains */
        CHECK(cf_dot_fit_blocks(params, &opt, loss, &bad, x, y, R, starts, 2, blocks, 2, lrs, moms,
                                &c, 2) == CF_OK);
        /* the block starts are validated as the driver's own copy */
        int64_t bad_starts[5] = {1, 2, 2, 2, 6}, shuffled[5] = {0, 4, 2, 2, 6};
        CHECK(cf_dot_fit_blocks(params, &opt, loss, &bad, x, y, R, bad_starts, 2, blocks, 2, lrs,
                                moms, &c, 1) == CF_ERR_ARG);
        CHECK(cf_dot_fit_blocks(params, &opt, loss, &bad, x, y, R, shuffled, 2, blocks, 2, lrs,
                                moms, &c, 1) == CF_ERR_ARG);
        free(params), free(m), free(v), free(p1), free(p2), free(before);
    }
}

/* the training drivers check the rows they copy; out-of-range ids found then stop the epoch
 * before the batch that holds them (here found by the check before the first step) */
static void test_epoch_drivers_refuse_rows_outside_x(void) {
    cf_dot_config c = {3, 3, 2, 1, 0, 0, 0};
    int64_t P = cf_dot_n_params(&c), bad = -1;
    int32_t x[6] = {0, 1, 2, 2, 1, 0};
    float y[3] = {1, 2, 3};
    int64_t order[3] = {0, 1, 5}; /* row 5 of a 3-row x */
    double lrs[2] = {1e-3, 1e-3}, moms[2] = {0.9, 0.9}, losses[2] = {0};
    float *params = frand(P, 0.1), *grads = fzeros(P), *m = fzeros(P), *v = fzeros(P);
    cf_optimizer opt = {CF_OPT_ADAM, m, v, P, P, 0.0, 0.99, 1e-5, 1, 0};
    CHECK(cf_dot_fit_epoch(params, grads, &opt, losses, &bad, x, y, order, 3, 3, 2, 2, lrs, moms,
                           &c) == CF_ERR_INDEX);
    CHECK(bad == 2 && opt.step == 0);
    free(params), free(grads), free(m), free(v);
}

int main(void) {
    RUN(test_checked_arithmetic);
    RUN(test_sizes_that_do_not_fit_are_refused);
    RUN(test_nn_scratch_that_does_not_fit_is_refused);
    RUN(test_sparse_checks_every_rating_as_it_reads_it);
    RUN(test_epoch_drivers_refuse_rows_outside_x);
    return harness_report();
}
