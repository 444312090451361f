/* rng.h - a small, fast, seedable generator (xoshiro128+ seeded by splitmix64) for dropout
 * masks. Deterministic for a given seed on every platform. */
#ifndef CF_RNG_H
#define CF_RNG_H
#include <stdint.h>

typedef struct {
    uint32_t s[4];
} cf_rng;

/* seeds the state from a 64-bit seed */
void cf_rng_seed(cf_rng *r, uint64_t seed);

/* uniform float in [0, 1) with 24 random bits */
float cf_rng_uniform(cf_rng *r);

/* mask[N]: 0 with probability p, else 1 / (1 - p) (inverted dropout). p in [0, 1).
 * reference: torch.nn.functional.dropout (bernoulli(1 - p) / (1 - p)) */
void cf_dropout_mask(float *mask, int64_t N, double p, cf_rng *r);

#endif
