// Sampler: argmax ties, temperature 0, the reference's top-p cutoff, seeded
// repeatability and a sanity check of the draw distribution.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampler.h"
#include "test.h"

static int draw(const float *logits, int n, float t, float top_p, sampler_rng *rng) {
    float tmp[16];
    int scratch[32];
    memcpy(tmp, logits, (size_t)n * sizeof(float));
    return sampler_sample(tmp, n, t, top_p, rng, scratch);
}

int main(void) {
    float tie[4] = {1, 3, 3, 2};
    CHECK(sampler_argmax(tie, 4) == 1);
    sampler_rng rng;
    sampler_rng_seed(&rng, 7);
    CHECK(draw(tie, 4, 0.0f, 0.3f, &rng) == 1);

    // probabilities 0.5, 0.3, 0.2: with top_p 0.5 the mass before token 1 is
    // 0.5 (not above 0.5) so it stays; before token 2 it is 0.8, so 2 is cut.
    float l3[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    int counts[3] = {0};
    for (int i = 0; i < 20000; i++) counts[draw(l3, 3, 1.0f, 0.5f, &rng)]++;
    CHECK(counts[2] == 0);
    CHECK_MSG(counts[0] > 11500 && counts[0] < 13500, "token 0 drawn %d times, expect ~12500", counts[0]);
    // The top token always survives, even with a tiny top_p.
    for (int i = 0; i < 1000; i++) CHECK(draw(l3, 3, 1.0f, 1e-6f, &rng) == 0);
    // top_p 1 keeps everything: ~50/30/20.
    memset(counts, 0, sizeof counts);
    for (int i = 0; i < 20000; i++) counts[draw(l3, 3, 1.0f, 1.0f, &rng)]++;
    CHECK(counts[2] > 3500 && counts[2] < 4500);
    // -inf logits (suppressed tokens) are never drawn.
    float sup[3] = {-INFINITY, 0.0f, 0.0f};
    for (int i = 0; i < 1000; i++) CHECK(draw(sup, 3, 0.7f, 1.0f, &rng) != 0);
    // Same seed, same draws; another seed, other draws.
    sampler_rng a, b, c;
    sampler_rng_seed(&a, 42);
    sampler_rng_seed(&b, 42);
    sampler_rng_seed(&c, 43);
    int same = 1, differ = 0;
    for (int i = 0; i < 200; i++) {
        int x = draw(l3, 3, 1.0f, 1.0f, &a), y = draw(l3, 3, 1.0f, 1.0f, &b), z = draw(l3, 3, 1.0f, 1.0f, &c);
        same &= x == y;
        differ |= x != z;
    }
    CHECK(same && differ);
    double u = sampler_rng_uniform(&a);
    CHECK(u >= 0.0 && u < 1.0);
    return test_report("test_sampler");
}
