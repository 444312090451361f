/* isa.h - which instruction-set version of the hot kernels runs (see simd.h).
 *
 * Each hot kernel is compiled once per instruction set this build supports (on x86-64 Linux
 * with GCC: AVX-512F, AVX2 and the x86-64 baseline, "generic"; elsewhere: generic only) and
 * a call goes to the version of the current level, chosen once: the best the CPU supports,
 * unless cf_isa_set() chose another (the binding does so from COLLABC_ISA at import). All
 * versions compute the same IEEE float32 operations in the same order, so the choice changes
 * speed only, never a bit of a result. */
#ifndef CF_ISA_H
#define CF_ISA_H

#include <stdatomic.h>

enum { CF_ISA_GENERIC = 0, CF_ISA_AVX2 = 1, CF_ISA_AVX512 = 2, CF_ISA_COUNT = 3 };

/* 1 when this build has per-instruction-set versions (x86-64, GCC, not CF_NO_MULTIVERSION) */
int cf_isa_multiversioned(void);

/* bit l set for each level l this build has and this CPU runs (bit 0 always) */
unsigned cf_isa_supported(void);

/* the level in use (the best supported one until cf_isa_set chose another) */
int cf_isa_get(void);

/* uses level l from now on; returns 0, or -1 (nothing changed) when l is not a level this build
 * has and this CPU runs. Meant for start-up, before kernels run (a call that is running keeps
 * the version it started with, which gives the same results anyway). */
int cf_isa_set(int l);

/* the level a name means ("avx512" / "avx512f", "avx2", "generic" / "scalar" / "default" /
 * "baseline", in any case; "auto" or "" = the best supported), or -1 for an unknown name */
int cf_isa_parse(const char *name);

/* "avx512", "avx2" or "generic" (NULL for a level out of range) */
const char *cf_isa_name(int l);

/* the dispatchers' read of the level: -1 until the first call detects it */
extern atomic_int cf_isa_level_;
static inline int cf_isa_current(void) {
    int l = atomic_load_explicit(&cf_isa_level_, memory_order_relaxed);
    return l >= 0 ? l : cf_isa_get();
}

#endif
