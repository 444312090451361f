/* simd.h - per-instruction-set versions of the hot kernels (and the lane-wise dot product the
 * hot loops share).
 *
 * A hot kernel is written once, as a CF_INLINE function NAME_body, and CF_DISPATCH_FN /
 * CF_DISPATCH_PROC (a value / void) then define NAME(params): on x86-64 Linux with GCC it
 * compiles the body three times, as NAME_avx512 (target "avx512f,fma"), NAME_avx2 (target "avx2,fma")
 * and NAME_generic (the x86-64 baseline), and calls the version of the level in use (isa.h:
 * the best the CPU runs, or the one COLLABC_ISA named at import). Elsewhere, or with
 * CF_NO_MULTIVERSION defined (the sanitizer builds), only the generic version exists and
 * NAME calls the body directly: no target_clones, no ifunc. The arithmetic is the same IEEE
 * float32 in each version (no fast-math, no contraction), so results do not depend on the
 * choice. scripts/check_spills.py finds the versions by these names. */
#ifndef CF_SIMD_H
#define CF_SIMD_H

#include "isa.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(CF_NO_MULTIVERSION)
#define CF_MULTIVERSION 1
#endif

/* one version: noinline and noclone keep it a function of its own under its own name */
#define CF_VERSION_(ret, RET, name, sfx, tgt, params, args, extra)                            \
    __attribute__((noinline, noclone)) tgt extra static ret name##sfx params {                \
        RET name##_body args;                                                                 \
    }
#define CF_TGT_AVX512 __attribute__((target("avx512f,fma")))
#define CF_TGT_AVX2 __attribute__((target("avx2,fma")))
#define CF_TGT_GENERIC

/* the vector width (float lanes) of each version, for kernels written per width */
#define CF_LANES_AVX512 16
#define CF_LANES_AVX2 8
#define CF_LANES_GENERIC 4
#define CF_UNPAREN_(...) __VA_ARGS__
/* a version that passes its width as the body's first argument */
#define CF_VERSION_LANES_(ret, RET, name, sfx, tgt, lanes, params, args)                       \
    __attribute__((noinline, noclone)) tgt static ret name##sfx params {                      \
        RET name##_body(lanes, CF_UNPAREN_ args);                                             \
    }

#ifdef CF_MULTIVERSION
/* the call of the version of the level in use */
#define CF_PICK_(RET, name, args)                                                             \
    const int l_ = cf_isa_current();                                                          \
    if (l_ == CF_ISA_AVX512) RET name##_avx512 args;                                          \
    else if (l_ == CF_ISA_AVX2) RET name##_avx2 args;                                         \
    else RET name##_generic args;
/* three versions (extra: more attributes for each, or nothing) */
#define CF_DISPATCH_(linkage, ret, RET, name, params, args, extra)                            \
    CF_VERSION_(ret, RET, name, _avx512, CF_TGT_AVX512, params, args, extra)                  \
    CF_VERSION_(ret, RET, name, _avx2, CF_TGT_AVX2, params, args, extra)                      \
    CF_VERSION_(ret, RET, name, _generic, CF_TGT_GENERIC, params, args, extra)                \
    linkage ret name params { CF_PICK_(RET, name, args) }
/* two versions, AVX2 and generic (the AVX-512 level runs the AVX2 one) */
#define CF_DISPATCH2_(linkage, ret, RET, name, params, args, extra)                           \
    CF_VERSION_(ret, RET, name, _avx2, CF_TGT_AVX2, params, args, extra)                      \
    CF_VERSION_(ret, RET, name, _generic, CF_TGT_GENERIC, params, args, extra)                \
    linkage ret name params {                                                                 \
        if (cf_isa_current() >= CF_ISA_AVX2) RET name##_avx2 args;                            \
        else RET name##_generic args;                                                         \
    }
/* two versions, AVX2 and generic, each calling name##_body(its width, args) (the AVX-512
 * level runs the AVX2 one) */
#define CF_DISPATCH2_LANES_(linkage, ret, RET, name, params, args)                            \
    CF_VERSION_LANES_(ret, RET, name, _avx2, CF_TGT_AVX2, CF_LANES_AVX2, params, args)        \
    CF_VERSION_LANES_(ret, RET, name, _generic, CF_TGT_GENERIC, CF_LANES_GENERIC, params, args) \
    linkage ret name params {                                                                 \
        if (cf_isa_current() >= CF_ISA_AVX2) RET name##_avx2 args;                            \
        else RET name##_generic args;                                                         \
    }
/* three versions, each calling name##_body(its width, args) */
#define CF_DISPATCH_LANES_(linkage, ret, RET, name, params, args)                             \
    CF_VERSION_LANES_(ret, RET, name, _avx512, CF_TGT_AVX512, CF_LANES_AVX512, params, args)  \
    CF_VERSION_LANES_(ret, RET, name, _avx2, CF_TGT_AVX2, CF_LANES_AVX2, params, args)        \
    CF_VERSION_LANES_(ret, RET, name, _generic, CF_TGT_GENERIC, CF_LANES_GENERIC, params, args) \
    linkage ret name params { CF_PICK_(RET, name, args) }
#else
#define CF_DISPATCH_(linkage, ret, RET, name, params, args, extra)                            \
    linkage ret name params { RET name##_body args; }
#define CF_DISPATCH2_ CF_DISPATCH_
#define CF_DISPATCH2_LANES_ CF_DISPATCH_LANES_
/* the generic version: 4 lanes (SSE on x86-64, NEON on aarch64) */
#define CF_DISPATCH_LANES_(linkage, ret, RET, name, params, args)                             \
    linkage ret name params { RET name##_body(CF_LANES_GENERIC, CF_UNPAREN_ args); }
#endif
/* the same, for bodies written per vector width (their first parameter) */
#define CF_DISPATCH_LANES_FN(linkage, ret, name, params, args)                                \
    CF_DISPATCH_LANES_(linkage, ret, return, name, params, args)
#define CF_DISPATCH_LANES_PROC(linkage, name, params, args)                                   \
    CF_DISPATCH_LANES_(linkage, void, , name, params, args)
#define CF_DISPATCH2_LANES_FN(linkage, ret, name, params, args)                               \
    CF_DISPATCH2_LANES_(linkage, ret, return, name, params, args)

/* NAME(params) returning ret, from NAME_body(args) */
#define CF_DISPATCH_FN(linkage, ret, name, params, args)                                      \
    CF_DISPATCH_(linkage, ret, return, name, params, args, )
/* NAME(params) returning nothing */
#define CF_DISPATCH_PROC(linkage, name, params, args) CF_DISPATCH_(linkage, void, , name, params, args, )

#if defined(__GNUC__)
#define CF_INLINE static inline __attribute__((always_inline))
#else
#define CF_INLINE static inline
#endif

#include <stddef.h>
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

#if defined(__GNUC__)
#define CF_UNROLL(n) _Pragma(CF_STR_(GCC unroll n))
#define CF_STR_(x) #x
#else
#define CF_UNROLL(n)
#endif

/* sum_k a[k] * b[k] (b NULL: sum_k a[k]) in 16 interleaved partial sums combined pairwise
 * (lanes l and l + 8, then l and l + 4, ...): a fixed summation order that vectorises (a
 * plain left-to-right float sum cannot be, without reassociation) and gives the same result in
 * every version. Partial sum l holds the elements k = l (mod 16); with the vector extensions
 * the 16 sums are four 4-lane vectors, kept in registers by every version (and NEON), and the
 * last n mod 16 elements are added as a zero-padded chunk: a partial sum is never -0 (it starts
 * at +0, and x + y is -0 only when both are), so adding +0 to it changes nothing. */
#if defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 12) && !defined(CF_NO_VECTOR_EXT)
typedef float cf_q4 __attribute__((vector_size(16)));
CF_INLINE cf_q4 cf_q4_load(const float *p) {
    cf_q4 v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}
CF_INLINE float cf_sum16_(const float *a, const float *b, int64_t n) {
    cf_q4 acc[4] = {{0}, {0}, {0}, {0}};
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
        CF_UNROLL(4)
        for (int j = 0; j < 4; j++)
            acc[j] += b ? cf_q4_load(a + k + 4 * j) * cf_q4_load(b + k + 4 * j) : cf_q4_load(a + k + 4 * j);
    if (k < n) { /* the last n - k < 16 elements into partial sums 0, 1, ...: zero-padded */
        float t[16] = {0};
        for (int l = 0; k < n; k++, l++) t[l] = b ? a[k] * b[k] : a[k];
        CF_UNROLL(4)
        for (int j = 0; j < 4; j++) acc[j] += cf_q4_load(t + 4 * j);
    }
    const cf_q4 c = (acc[0] + acc[2]) + (acc[1] + acc[3]);
    return (c[0] + c[2]) + (c[1] + c[3]);
}
#else
CF_INLINE float cf_sum16_(const float *a, const float *b, int64_t n) {
    float acc[16] = {0};
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
        for (int l = 0; l < 16; l++) acc[l] += b ? a[k + l] * b[k + l] : a[k + l];
    for (int l = 0; k < n; k++, l++) acc[l] += b ? a[k] * b[k] : a[k];
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    return acc[0];
}
#endif
CF_INLINE float cf_dot_f32(const float *a, const float *b, int64_t n) { return cf_sum16_(a, b, n); }
CF_INLINE float cf_sum_f32(const float *a, int64_t n) { return cf_sum16_(a, NULL, n); }

#endif
