/* vec16.h - 16-lane float vectors for the row arithmetic of the sparse path, ALS and BPR
 * (GCC >= 12 / Clang vector extensions): one AVX-512 register, two AVX2 ones, four SSE ones in
 * the kernel versions of simd.h. CF_VEC16 is defined where they exist; elsewhere the kernels
 * use plain loops. Sums over 16 lanes reduce pairwise (hsum16), in cf_dot_f32's order. */
#ifndef CF_VEC16_H
#define CF_VEC16_H
#include <stdint.h>
#include "simd.h"

#if defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 12) && !defined(CF_NO_VECTOR_EXT)
#define CF_VEC16 1
#ifndef __clang__
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float cf_v16 __attribute__((vector_size(64)));
typedef float cf_v8 __attribute__((vector_size(32)));
typedef float cf_v4 __attribute__((vector_size(16)));
typedef int32_t cf_v16i __attribute__((vector_size(64)));
typedef int32_t cf_v8i __attribute__((vector_size(32)));
typedef int32_t cf_v4i __attribute__((vector_size(16)));
CF_INLINE cf_v16 ld16(const float *p) {
    cf_v16 v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}
/* 8 and 4 floats from any address (the kernels written per vector width) */
CF_INLINE cf_v8 ld_w8(const float *p) {
    cf_v8 v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}
CF_INLINE cf_v4 ld_w4(const float *p) {
    cf_v4 v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}
/* a macro: a 64-byte vector passed by value to a function draws a -Wpsabi note */
#define st16(p, v)                                                                             \
    do {                                                                                       \
        const cf_v16 v_ = (v);                                                                 \
        __builtin_memcpy((p), &v_, sizeof v_);                                                 \
    } while (0)
/* lanes l and l + 8, then l and l + 4, ... (the pairwise order of cf_dot_f32) */
CF_INLINE float hsum16(const cf_v16 *p) {
    const cf_v16 a = *p;
    cf_v8 b = __builtin_shufflevector(a, a, 0, 1, 2, 3, 4, 5, 6, 7) +
              __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15);
    cf_v4 c = __builtin_shufflevector(b, b, 0, 1, 2, 3) + __builtin_shufflevector(b, b, 4, 5, 6, 7);
    return (c[0] + c[2]) + (c[1] + c[3]);
}
#endif

#endif /* CF_VEC16_H */
