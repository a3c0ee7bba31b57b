#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void sampler_rng_seed(sampler_rng *rng, uint64_t seed) {
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

static uint64_t next_u64(sampler_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

double sampler_rng_uniform(sampler_rng *rng) { return (double)(next_u64(rng) >> 11) * 0x1.0p-53; }

int sampler_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

// Sort indices by probability, descending; ties keep the lower index first.
static int by_prob_desc(const void *a, const void *b, void *keys) {
    const float *p = keys;
    int i = *(const int *)a, j = *(const int *)b;
    if (p[i] != p[j]) return p[i] > p[j] ? -1 : 1;
    return i - j;
}

int sampler_sample(float *logits, int n, float temperature, float top_p, sampler_rng *rng, int *scratch) {
    if (temperature <= 0.0f) return sampler_argmax(logits, n);
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        logits[i] /= temperature;
        if (logits[i] > mx) mx = logits[i];
    }
    double sum = 0;
    for (int i = 0; i < n; i++) sum += logits[i] = expf(logits[i] - mx);
    for (int i = 0; i < n; i++) logits[i] = (float)(logits[i] / sum);
    // Only tokens with non-zero probability can be drawn; sort those.
    int m = 0;
    for (int i = 0; i < n; i++)
        if (logits[i] > 0) scratch[m++] = i;
    qsort_r(scratch, (size_t)m, sizeof *scratch, by_prob_desc, logits);
    double cum = 0, kept = 0;
    int k = 0;
    for (; k < m; k++) {
        float p = logits[scratch[k]];
        if (k > 0 && cum > top_p) break;  // mass before this token already exceeds top_p
        cum += p;
        kept += p;
    }
    double u = sampler_rng_uniform(rng) * kept, acc = 0;
    for (int i = 0; i < k; i++) {
        acc += logits[scratch[i]];
        if (u < acc) return scratch[i];
    }
    return scratch[k > 0 ? k - 1 : 0];
}
