/* test_tensor.c - the pure-C tests of csrc/tensorops.c, the kernels of the generic tensor layer:
 * row gather by int64 ids (strided, with and without negative-id wrapping), its scatter-add
 * (repeated ids accumulate, nothing written on a bad id), row zeroing, and the ordered row sum, which must
 * equal cf_dotbias_forward's dot product bit for bit when fed the elementwise product.
 * Output: failed checks on stderr, then "N passed, M failed" on stdout (exit 0 only if M == 0). */
#include <stdint.h>
#include <string.h>

#include "collabc.h"

#include "harness.h"

static void test_gather_by_hand_strided(void) {
    const float w[6] = {1, 2, 3, 4, 5, 6};          /* 3 rows of 2 */
    const int64_t batch[6] = {2, 9, 0, 9, 2, 9};    /* column 0 of a (3, 2) batch */
    float out[6] = {0};
    int64_t bad = 7;
    CHECK(cf_tensor_gather_forward(out, w, batch, 2, 3, 2, 3, 0, &bad) == CF_OK);
    CHECK(bad == -1);
    const float want[6] = {5, 6, 1, 2, 5, 6};
    CHECK(fsame(out, want, 6));
    CHECK(cf_tensor_gather_forward(out, w, batch, 2, 0, 2, 3, 0, &bad) == CF_OK); /* empty */
    const int64_t same[1] = {1}; /* stride 0: the same id B times */
    CHECK(cf_tensor_gather_forward(out, w, same, 0, 3, 2, 3, 0, &bad) == CF_OK);
    const float want0[6] = {3, 4, 3, 4, 3, 4};
    CHECK(fsame(out, want0, 6));
}

static void test_gather_wrap_and_errors(void) {
    const float w[6] = {1, 2, 3, 4, 5, 6};
    float out[4] = {0}, dw[6] = {0};
    int64_t bad;
    const int64_t neg[2] = {-1, -3};
    CHECK(cf_tensor_gather_forward(out, w, neg, 1, 2, 2, 3, 1, &bad) == CF_OK);
    const float want[4] = {5, 6, 1, 2};
    CHECK(fsame(out, want, 4));
    CHECK(cf_tensor_gather_forward(out, w, neg, 1, 2, 2, 3, 0, &bad) == CF_ERR_INDEX && bad == 0);
    const int64_t bads[] = {3, -4, INT64_MIN, INT64_MAX};
    for (int t = 0; t < 4; t++) {
        int64_t idx[3] = {0, 1, bads[t]};
        float big[6] = {0};
        CHECK(cf_tensor_gather_forward(big, w, idx, 1, 3, 2, 3, 1, &bad) == CF_ERR_INDEX);
        CHECK(bad == 2);
        for (int i = 0; i < 6; i++) CHECK(big[i] == 0.0f); /* checked before anything is written */
        const float d[6] = {1, 1, 1, 1, 1, 1};
        CHECK(cf_tensor_gather_backward(dw, d, idx, 1, 3, 2, 3, 1, &bad) == CF_ERR_INDEX && bad == 2);
        for (int i = 0; i < 6; i++) CHECK(dw[i] == 0.0f);
    }
}

static void test_scatter_add_repeated_ids_accumulate(void) {
    float dw[6] = {10, 20, 30, 40, 50, 60};
    const float d[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const int64_t idx[4] = {1, 1, -3, 1};
    int64_t bad;
    CHECK(cf_tensor_gather_backward(dw, d, idx, 1, 4, 2, 3, 1, &bad) == CF_OK);
    const float want[6] = {15, 26, 30 + 1 + 3 + 7, 40 + 2 + 4 + 8, 50, 60};
    CHECK(fsame(dw, want, 6));
}

static void test_gather_random_vs_naive(void) {
    const int64_t N = 37, K = 13, B = 200;
    float *w = frand(N * K, 1.0), *out = fzeros(B * K), *dw = fzeros(N * K), *naive = fzeros(N * K);
    float *d = frand(B * K, 1.0);
    int64_t *idx = xcalloc((size_t)(2 * B), sizeof(int64_t)), bad;
    for (int64_t b = 0; b < B; b++) idx[2 * b + 1] = rnd_int(N); /* column 1 of a (B, 2) batch */
    CHECK(cf_tensor_gather_forward(out, w, idx + 1, 2, B, K, N, 0, &bad) == CF_OK);
    CHECK(cf_tensor_gather_backward(dw, d, idx + 1, 2, B, K, N, 0, &bad) == CF_OK);
    int ok = 1;
    for (int64_t b = 0; b < B; b++)
        for (int64_t k = 0; k < K; k++) {
            ok &= out[b * K + k] == w[idx[2 * b + 1] * K + k];
            naive[idx[2 * b + 1] * K + k] += d[b * K + k];
        }
    CHECK(ok);
    CHECK(fsame(dw, naive, N * K)); /* same order of additions: identical */
    free(w), free(out), free(dw), free(naive), free(d), free(idx);
}

static void test_zero_rows(void) {
    float w[8] = {1, 2, 3, 4, 5, 6, 7, 8}; /* 4 rows of 2 */
    const int64_t batch[6] = {3, 9, -4, 9, 3, 9}; /* column 0 of a (3, 2) batch */
    int64_t bad;
    CHECK(cf_tensor_zero_rows(w, batch, 2, 3, 2, 4, 0, &bad) == CF_ERR_INDEX && bad == 1);
    CHECK(w[0] == 1 && w[7] == 8); /* nothing written */
    CHECK(cf_tensor_zero_rows(w, batch, 2, 3, 2, 4, 1, &bad) == CF_OK && bad == -1);
    const float want[8] = {0, 0, 3, 4, 5, 6, 0, 0};
    CHECK(fsame(w, want, 8));
}

static void test_sum_rows_equals_dotbias(void) {
    const int64_t NU = 11, NI = 7, K = 50, B = 64;
    float *uw = frand(NU * K, 0.3), *iw = frand(NI * K, 0.3), *prod = fzeros(B * K);
    float *s = fzeros(B), *z = fzeros(B);
    int32_t *u = irand(B, NU), *i = irand(B, NI);
    for (int64_t b = 0; b < B; b++)
        for (int64_t k = 0; k < K; k++) prod[b * K + k] = uw[u[b] * K + k] * iw[i[b] * K + k];
    cf_tensor_sum_rows_forward(s, prod, B, K);
    CHECK(cf_dotbias_forward(z, uw, iw, NULL, NULL, u, i, B, K, NU, NI) == CF_OK);
    CHECK(fsame(s, z, B));
    const float x[6] = {1, 2, 3, 0.5f, 0.25f, 0.125f};
    float r[3] = {9, 9, 9};
    cf_tensor_sum_rows_forward(r, x, 2, 3);
    CHECK(r[0] == 6.0f && r[1] == 0.875f);
    cf_tensor_sum_rows_forward(r, x, 3, 0); /* empty rows sum to 0 */
    CHECK(r[0] == 0.0f && r[1] == 0.0f && r[2] == 0.0f);
    free(uw), free(iw), free(prod), free(s), free(z), free(u), free(i);
}

int main(void) {
    RUN(test_gather_by_hand_strided);
    RUN(test_gather_wrap_and_errors);
    RUN(test_scatter_add_repeated_ids_accumulate);
    RUN(test_gather_random_vs_naive);
    RUN(test_zero_rows);
    RUN(test_sum_rows_equals_dotbias);
    return harness_report();
}
