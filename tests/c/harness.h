/* harness.h - the tiny test harness shared by the pure-C test programs in tests/c
 * (test_*.c, each its own program): CHECK / NEAR / SAME, RUN, zeroed allocations that exit on
 * failure, and deterministic test randomness (splitmix64) independent of the core's generator.
 * Each program prints one line per failed check on stderr, then exactly "N passed, M failed"
 * on stdout (see harness_report), and exits 0 only when M == 0. */
#ifndef CF_TEST_HARNESS_H
#define CF_TEST_HARNESS_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- a tiny test harness */

static const char *g_test;
static int g_fail_in_test, g_passed, g_failed;

static inline void check_(int ok, const char *what, const char *file, int line) {
    if (ok) return;
    if (g_fail_in_test < 8) fprintf(stderr, "FAIL %s (%s:%d): %s\n", g_test, file, line, what);
    g_fail_in_test++;
}

static inline void near_(double got, double want, double tol, const char *a, const char *b,
                  const char *file, int line) {
    int ok = (isnan(got) && isnan(want)) || (got == want) ||
             (isfinite(got) && isfinite(want) && fabs(got - want) <= tol * (1.0 + fabs(want)));
    if (ok) return;
    if (g_fail_in_test < 8)
        fprintf(stderr, "FAIL %s (%s:%d): %s = %.9g, expected %s = %.9g (tol %g)\n", g_test,
                file, line, a, got, b, want, tol);
    g_fail_in_test++;
}

#define CHECK(c) check_(!!(c), #c, __FILE__, __LINE__)
#define NEAR(a, b, tol) near_((double)(a), (double)(b), (tol), #a, #b, __FILE__, __LINE__)
/* exact equality, NaN == NaN */
#define SAME(a, b) near_((double)(a), (double)(b), 0.0, #a, #b, __FILE__, __LINE__)

static inline void run_(const char *name, void (*fn)(void)) {
    g_test = name;
    g_fail_in_test = 0;
    fn();
    if (g_fail_in_test) g_failed++;
    else g_passed++;
}
#define RUN(t) run_(#t, t)

static inline void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}
static inline float *fzeros(int64_t n) { return xcalloc((size_t)n, sizeof(float)); }
static inline double *dzeros(int64_t n) { return xcalloc((size_t)n, sizeof(double)); }
static inline int32_t *izeros(int64_t n) { return xcalloc((size_t)n, sizeof(int32_t)); }
static inline float *fcopy(const float *a, int64_t n) {
    float *r = fzeros(n);
    memcpy(r, a, sizeof(float) * (size_t)n);
    return r;
}
static inline int fsame(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, sizeof(float) * (size_t)n) == 0;
}

/* deterministic test randomness (splitmix64), independent of the core's generator */
static uint64_t g_rs = 0x2545F4914F6CDD1DULL;
static inline uint64_t rnd_u64(void) {
    uint64_t z = (g_rs += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static inline double rnd_unif(void) { return (double)(rnd_u64() >> 11) * (1.0 / 9007199254740992.0); }
static inline int64_t rnd_int(int64_t n) { return (int64_t)(rnd_u64() % (uint64_t)n); }
static inline double rnd_normal(void) {
    double u = rnd_unif(), v = rnd_unif();
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}
static inline float *frand(int64_t n, double scale) {
    float *r = fzeros(n);
    for (int64_t i = 0; i < n; i++) r[i] = (float)(rnd_normal() * scale);
    return r;
}
static inline int32_t *irand(int64_t n, int64_t limit) {
    int32_t *r = izeros(n);
    for (int64_t i = 0; i < n; i++) r[i] = (int32_t)rnd_int(limit);
    return r;
}
static inline double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

static inline int harness_report(void) {
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}

#endif
