/* test_fexp.c - csrc/fexp.h: cf_expf_fma, the inline expf of the FMA kernel versions, gives
 * the same float as libm's expf, bit for bit. On x86-64 with GCC and an FMA CPU, that is glibc's
 * __expf_fma; the whole 2^32 inputs take about 40 s (docs/performance.md records that run), so
 * this program checks every 4,099th bit pattern (about 1.05 million inputs, all signs and
 * exponents, NaN payloads and infinities among them), 163,840 floats with |x| in [2^-10, 1)
 * (the last 10 mantissa bits zero) and the edges of the fast path. Elsewhere (no FMA instructions: the
 * sanitizer and aarch64 builds) it checks nothing and says so. */
#include "harness.h"
#include "fexp.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(CF_NO_MULTIVERSION)
#define HAVE_FMA_VERSION 1
__attribute__((target("fma"), noinline)) static float expf_fma(float x) { return cf_expf_fma(x); }

static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static int same_bits(float a, float b) {
    uint32_t ua, ub;
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    return ua == ub || (isnan(a) && isnan(b));
}
#endif

static void test_inline_expf_matches_libm(void) {
#ifdef HAVE_FMA_VERSION
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("fma")) {
        printf("(no FMA on this CPU: cf_expf_fma not checked)\n");
        return;
    }
    int64_t bad = 0, n = 0;
    for (uint64_t b = 0; b <= 0xffffffffu; b += 4099, n++)
        bad += !same_bits(expf_fma(from_bits((uint32_t)b)), expf(from_bits((uint32_t)b)));
    for (uint32_t e = 117; e < 127; e++) /* |x| in [2^-10, 1): the sigmoid's busiest range */
        for (uint32_t m = 0; m < (1u << 23); m += 1u << 10)
            for (uint32_t sign = 0; sign < 2; sign++, n++) {
                const uint32_t u = sign << 31 | e << 23 | m;
                bad += !same_bits(expf_fma(from_bits(u)), expf(from_bits(u)));
            }
    const float edges[] = {0.0f, -0.0f, 88.0f, -88.0f, 87.99999f, -87.99999f, 88.72283f,
                           88.72284f, -103.97207f, -103.97208f, -150.0f, 1e-30f, -1e-30f,
                           INFINITY, -INFINITY, NAN, 0x1p-149f, 127.9999f, -0.5f, 0.5f};
    for (size_t k = 0; k < sizeof edges / sizeof edges[0]; k++, n++)
        bad += !same_bits(expf_fma(edges[k]), expf(edges[k]));
    CHECK(bad == 0);
    CHECK(n > 1200000);
#else
    printf("(a build without FMA versions: cf_expf_fma is not used, not checked)\n");
#endif
}

int main(void) {
    RUN(test_inline_expf_matches_libm);
    return harness_report();
}
