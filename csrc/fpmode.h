/* fpmode.h - flush subnormals to zero for the duration of a training call (drivers only).
 * Adam's moments of rows that no batch touches decay geometrically (m by beta1, v by beta2
 * every step) until they are subnormal, where x86 arithmetic is ~100x slower. Their effect
 * on a parameter is below 1e-30 (eps = 1e-5 dominates the denominator), so the epoch
 * drivers set FTZ/DAZ on entry and restore the caller's mode on exit. Kernels never
 * change the mode. Elsewhere than x86 this does nothing. */
#ifndef CF_FPMODE_H
#define CF_FPMODE_H

#if defined(__SSE__) || defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#define CF_HAVE_MXCSR 1
#endif

typedef struct {
    unsigned int saved;
} cf_fp_mode;

static inline cf_fp_mode cf_fp_flush_subnormals(void) {
    cf_fp_mode m = {0};
#ifdef CF_HAVE_MXCSR
    m.saved = _mm_getcsr();
    _mm_setcsr(m.saved | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
#endif
    return m;
}

static inline void cf_fp_restore(cf_fp_mode m) {
#ifdef CF_HAVE_MXCSR
    _mm_setcsr(m.saved);
#else
    (void)m;
#endif
}

#endif
