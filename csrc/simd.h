/* simd.h - CF_VECTOR_CLONES (and the lane-wise dot product the hot loops share): compile a hot loop for AVX-512, AVX2 and the x86-64 baseline
 * and let the loader pick the best the CPU has (GCC target_clones, x86-64 Linux only). The
 * arithmetic is the same IEEE float32 in each clone (no fast-math, no contraction), so
 * results do not depend on the choice. Define CF_NO_MULTIVERSION to turn it off. */
#ifndef CF_SIMD_H
#define CF_SIMD_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(CF_NO_MULTIVERSION)
#define CF_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CF_VECTOR_CLONES
#endif

#if defined(__GNUC__)
#define CF_INLINE static inline __attribute__((always_inline))
#else
#define CF_INLINE static inline
#endif

#include <stdint.h>

/* asks the cache for the row of K floats at p, to be read (rw 0) or written (rw 1) soon: one
 * request per 64-byte line and one for the row's end. No effect on results; nothing without
 * GCC or clang. */
#if defined(__GNUC__)
#define CF_PREFETCH_ROW(p, K, rw)                                                   \
    do {                                                                            \
        const float *cf_p_ = (p);                                                   \
        const int64_t cf_k_ = (K);                                                  \
        for (int64_t cf_f_ = 0; cf_f_ < cf_k_; cf_f_ += 16)                         \
            __builtin_prefetch(cf_p_ + cf_f_, rw);                                  \
        if (cf_k_ > 0) __builtin_prefetch(cf_p_ + cf_k_ - 1, rw);                   \
    } while (0)
#define CF_PREFETCH(p, rw) __builtin_prefetch(p, rw)
#else
#define CF_PREFETCH_ROW(p, K, rw) ((void)(p), (void)(K))
#define CF_PREFETCH(p, rw) ((void)(p))
#endif

/* sum_k a[k] * b[k] in 16 interleaved partial sums combined pairwise: a fixed summation order
 * that vectorises (a plain left-to-right float sum cannot be, without reassociation) and
 * gives the same result in every clone. */
CF_INLINE float cf_dot_f32(const float *a, const float *b, int64_t n) {
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
