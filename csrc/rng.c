/* rng.c - xoshiro128+ (Blackman & Vigna) for dropout masks, seeded through splitmix64. */
#include "rng.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

void cf_rng_seed(cf_rng *r, uint64_t seed) {
    uint64_t a = splitmix64(&seed), b = splitmix64(&seed);
    r->s[0] = (uint32_t)a;
    r->s[1] = (uint32_t)(a >> 32);
    r->s[2] = (uint32_t)b;
    r->s[3] = (uint32_t)(b >> 32);
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1;
}

float cf_rng_uniform(cf_rng *r) {
    uint32_t *s = r->s;
    uint32_t result = s[0] + s[3];
    uint32_t t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return (float)(result >> 8) * (1.0f / 16777216.0f);
}

void cf_dropout_mask(float *mask, int64_t N, double p, cf_rng *r) {
    float keep = (float)(1.0 / (1.0 - p)), fp = (float)p;
    for (int64_t n = 0; n < N; n++) mask[n] = cf_rng_uniform(r) < fp ? 0.0f : keep;
}
