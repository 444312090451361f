/* simd.h - CF_VECTOR_CLONES: compile a hot loop for AVX-512, AVX2 and the x86-64 baseline
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

#endif
