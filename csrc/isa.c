/* isa.c - the level of the hot kernels' versions (see isa.h) */
#include <stddef.h>
#include "isa.h"
#include "simd.h"

atomic_int cf_isa_level_ = -1;

int cf_isa_multiversioned(void) {
#ifdef CF_MULTIVERSION
    return 1;
#else
    return 0;
#endif
}

unsigned cf_isa_supported(void) {
    unsigned m = 1u << CF_ISA_GENERIC;
#ifdef CF_MULTIVERSION
    __builtin_cpu_init();
    /* both levels are compiled with FMA too (fexp.h); every CPU with AVX2 or AVX-512F has it */
    const int fma = __builtin_cpu_supports("fma");
    if (fma && __builtin_cpu_supports("avx2")) m |= 1u << CF_ISA_AVX2;
    if (fma && __builtin_cpu_supports("avx512f")) m |= 1u << CF_ISA_AVX512;
#endif
    return m;
}

int cf_isa_get(void) {
    int l = atomic_load_explicit(&cf_isa_level_, memory_order_relaxed);
    if (l >= 0) return l;
    const unsigned m = cf_isa_supported();
    l = CF_ISA_GENERIC;
    for (int k = CF_ISA_COUNT - 1; k > CF_ISA_GENERIC; k--)
        if (m & (1u << k)) {
            l = k;
            break;
        }
    /* the first detection wins; every thread detects the same */
    int expected = -1;
    atomic_compare_exchange_strong(&cf_isa_level_, &expected, l);
    return atomic_load(&cf_isa_level_);
}

int cf_isa_set(int l) {
    if (l < 0 || l >= CF_ISA_COUNT || !(cf_isa_supported() & (1u << l))) return -1;
    atomic_store(&cf_isa_level_, l);
    return 0;
}

static int same_word(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        char c = *a >= 'A' && *a <= 'Z' ? (char)(*a - 'A' + 'a') : *a;
        if (c != *b) return 0;
    }
    return *a == *b;
}

int cf_isa_parse(const char *name) {
    static const struct {
        const char *word;
        int level;
    } names[] = {{"avx512", CF_ISA_AVX512}, {"avx512f", CF_ISA_AVX512}, {"avx2", CF_ISA_AVX2},
                 {"generic", CF_ISA_GENERIC}, {"scalar", CF_ISA_GENERIC},
                 {"default", CF_ISA_GENERIC}, {"baseline", CF_ISA_GENERIC}};
    if (!name) return -1;
    if (!*name || same_word(name, "auto")) {
        const unsigned m = cf_isa_supported();
        for (int k = CF_ISA_COUNT - 1; k > CF_ISA_GENERIC; k--)
            if (m & (1u << k)) return k;
        return CF_ISA_GENERIC;
    }
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (same_word(name, names[k].word)) return names[k].level;
    return -1;
}

const char *cf_isa_name(int l) {
    static const char *const names[CF_ISA_COUNT] = {"generic", "avx2", "avx512"};
    return l >= 0 && l < CF_ISA_COUNT ? names[l] : NULL;
}
