// Token choice from logits as the reference does it: argmax (first index wins
// ties) at temperature 0, otherwise softmax(logits / T), the reference's
// top-p cutoff (drop a token when the mass before it already exceeds top_p,
// so the top token always survives), and a draw from a per-request seeded
// generator, so a seed makes a run repeatable.
#ifndef TYCHO_ENGINE_SAMPLER_H
#define TYCHO_ENGINE_SAMPLER_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];  // xoshiro256** state
} sampler_rng;

void sampler_rng_seed(sampler_rng *rng, uint64_t seed);
// Uniform double in [0, 1).
double sampler_rng_uniform(sampler_rng *rng);

// Index of the largest of n values, lowest index on ties.
int sampler_argmax(const float *x, int n);

// Chooses a token from n logits (modified in place: scaled, softmaxed).
// scratch holds 2n ints; temperature 0 means argmax.
int sampler_sample(float *logits, int n, float temperature, float top_p, sampler_rng *rng, int *scratch);

#endif
