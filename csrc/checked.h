/* checked.h - overflow-checked size arithmetic for the drivers' scratch allocations.
 * Every size a driver computes from its arguments (rows x width, a sum of layer widths, a
 * count of elements times their size in bytes) goes through these, so a product that does
 * not fit is a refusal (CF_ERR_NOMEM from the caller), never a wrapped, too-small buffer.
 * Sizes are int64_t and never negative; no function here allocates except cf_alloc. */
#ifndef CF_CHECKED_H
#define CF_CHECKED_H
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* *out = a * b; returns 1, or 0 (out unchanged) when a or b is negative or the product
 * does not fit int64_t */
static inline int cf_mul(int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0) return 0;
#if defined(__GNUC__) || defined(__clang__)
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r)) return 0;
    *out = r;
#else
    if (a != 0 && b > INT64_MAX / a) return 0;
    *out = a * b;
#endif
    return 1;
}

/* *out = a + b; returns 1, or 0 when a or b is negative or the sum does not fit int64_t */
static inline int cf_add(int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0 || a > INT64_MAX - b) return 0;
    *out = a + b;
    return 1;
}

/* malloc of n elements of size bytes (at least one byte, so n = 0 is not NULL); NULL when
 * n is negative or n * size does not fit a size_t or PTRDIFF_MAX */
static inline void *cf_alloc(int64_t n, size_t size) {
    int64_t bytes;
    if (size > (size_t)PTRDIFF_MAX || !cf_mul(n, (int64_t)size, &bytes) ||
        (uint64_t)bytes > (uint64_t)PTRDIFF_MAX || (uint64_t)bytes > (uint64_t)SIZE_MAX)
        return NULL;
    return malloc(bytes > 0 ? (size_t)bytes : 1);
}

/* calloc of the same (zeroed) */
static inline void *cf_calloc(int64_t n, size_t size) {
    int64_t bytes;
    if (size > (size_t)PTRDIFF_MAX || !cf_mul(n, (int64_t)size, &bytes) ||
        (uint64_t)bytes > (uint64_t)PTRDIFF_MAX || (uint64_t)bytes > (uint64_t)SIZE_MAX)
        return NULL;
    return calloc(bytes > 0 ? (size_t)bytes : 1, 1);
}

#endif
