/* fexp.h - expf inline, for the hot loops of the FMA versions of the kernels (simd.h).
 *
 * The y_range sigmoid of the sparse path calls expf once per rating. As a call into libm it
 * took 10-12% of a profile of the sparse epoch (no speed-up could be measured on a noisy
 * machine, docs/performance.md), and the interleaved kernel must save its vector registers
 * around it (every vector register is caller-saved). cf_expf_fma
 * computes the same function inline: the algorithm of glibc's expf for x86-64 with FMA
 * (`__expf_fma`, which glibc's ifunc selects on every CPU with FMA, so on every CPU that runs the
 * avx2 or avx512 versions), operation for operation, so the result is the same float, bit for
 * bit (tests/c/test_fexp.c compares them over a sample of all float inputs; a run over all 2^32
 * inputs is recorded in docs/performance.md):
 *
 *   x = k ln2 / 32 + r ln2 / 32, |r| <= 1/2:  exp(x) = 2^(k/32) 2^(r/32)
 *   2^(r/32) ~ 1 + C2 r + C1 r^2 + C0 r^3 (a minimax fit of glibc's), evaluated in double
 *   2^(k/32) = a table of 2^(i/32), i = k mod 32, with the exponent bits of k / 32 added
 *
 * The table holds 2^(i/32) rounded to double, less i << 47 (so that adding k << 47 gives the
 * exponent); inputs with |x| >= 88 (or inf, NaN) go to libm's expf, where glibc's own special
 * cases start. Only for functions compiled with FMA (the fused multiply-adds are part of the
 * result): the generic version keeps calling expf, which on an FMA CPU is the same function. */
#ifndef CF_FEXP_H
#define CF_FEXP_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static const uint64_t cf_exp2_32_tab[32] = {
    0x3ff0000000000000u, 0x3fefd9b0d3158574u, 0x3fefb5586cf9890fu, 0x3fef9301d0125b51u,
    0x3fef72b83c7d517bu, 0x3fef54873168b9aau, 0x3fef387a6e756238u, 0x3fef1e9df51fdee1u,
    0x3fef06fe0a31b715u, 0x3feef1a7373aa9cbu, 0x3feedea64c123422u, 0x3feece086061892du,
    0x3feebfdad5362a27u, 0x3feeb42b569d4f82u, 0x3feeab07dd485429u, 0x3feea47eb03a5585u,
    0x3feea09e667f3bcdu, 0x3fee9f75e8ec5f74u, 0x3feea11473eb0187u, 0x3feea589994cce13u,
    0x3feeace5422aa0dbu, 0x3feeb737b0cdc5e5u, 0x3feec49182a3f090u, 0x3feed503b23e255du,
    0x3feee89f995ad3adu, 0x3feeff76f2fb5e47u, 0x3fef199bdd85529cu, 0x3fef3720dcef9069u,
    0x3fef5818dcfba487u, 0x3fef7c97337b9b5fu, 0x3fefa4afa2a490dau, 0x3fefd0765b6e4540u};

/* expf(x), inline; for functions compiled with FMA only (see above) */
static inline __attribute__((always_inline)) float cf_expf_fma(float x) {
    const double invln2_32 = 0x1.71547652b82fep+5; /* 32 / ln 2 */
    const double shift = 0x1.8p+52;                  /* rounds to an integer in the low bits */
    const double c0 = 0x1.c6af84b912394p-20, c1 = 0x1.ebfce50fac4f3p-13, c2 = 0x1.62e42ff0c52d6p-6;
    uint32_t ix;
    memcpy(&ix, &x, sizeof ix);
    if (__builtin_expect(((ix >> 20) & 0x7ff) >= 0x42b, 0)) return expf(x); /* |x| >= 88, inf, NaN */
    const double xd = (double)x;
    const double kd0 = __builtin_fma(invln2_32, xd, shift);
    uint64_t ki;
    memcpy(&ki, &kd0, sizeof ki);
    const double kd = kd0 - shift;
    const double r = __builtin_fma(invln2_32, xd, -kd);
    const uint64_t t = cf_exp2_32_tab[ki % 32] + (ki << 47);
    double s;
    memcpy(&s, &t, sizeof s);
    const double z = __builtin_fma(c0, r, c1);
    const double r2 = r * r;
    double y = __builtin_fma(r, c2, 1.0);
    y = __builtin_fma(z, r2, y);
    return (float)(y * s);
}

#endif
