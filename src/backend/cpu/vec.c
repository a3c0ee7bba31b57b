#include "backend/cpu/vec.h"

#include <math.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TY_X86 1
#endif

#ifdef TY_X86
#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// exp(x) for x <= 88 (softmax inputs after the max shift are <= 0): 2^k * p(r) with
// x = k ln2 + r, |r| <= ln2/2, p a degree-6 polynomial (Cephes expf's).
AVX2 static __m256 exp256(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// exp for any x: clamps large inputs too (exp256 is written for x <= 0).
AVX2 static void gelu_tanh_avx2(float *x, int64_t n) {
    const __m256 k = _mm256_set1_ps(0.7978845608028654f), c = _mm256_set1_ps(0.044715f);
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 z = _mm256_mul_ps(k, _mm256_fmadd_ps(_mm256_mul_ps(c, v), _mm256_mul_ps(v, v), v));
        z = _mm256_min_ps(_mm256_max_ps(z, _mm256_set1_ps(-9.0f)), _mm256_set1_ps(9.0f));  // tanh is +-1 beyond
        __m256 e = exp256(_mm256_add_ps(z, z));
        __m256 t = _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(e, one)));
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, t)));
    }
    for (; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    }
}

AVX2 static void axpy_avx2(float *y, float a, const float *x, int64_t n) {
    __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

AVX2 static float dot_avx2(const float *x, const float *y, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

AVX2 static float exp_sum_avx2(float *x, float shift, int64_t n) {
    __m256 sv = _mm256_set1_ps(shift), acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), sv));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float s = hsum(acc);
    for (; i < n; i++) s += x[i] = expf(x[i] - shift);
    return s;
}
AVX2 static void attend_one64_avx2(const float *q, const float *const *k, const float *const *v, int n,
                                    float scale, float *scores, float *o) {
    __m256 qv[8];
    for (int d = 0; d < 8; d++) qv[d] = _mm256_mul_ps(_mm256_loadu_ps(q + 8 * d), _mm256_set1_ps(scale));
    float mx = -INFINITY;
    for (int t = 0; t < n; t++) {
        __m256 a = _mm256_mul_ps(qv[0], _mm256_loadu_ps(k[t]));
        __m256 b = _mm256_mul_ps(qv[1], _mm256_loadu_ps(k[t] + 8));
        for (int d = 2; d < 8; d += 2) {
            a = _mm256_fmadd_ps(qv[d], _mm256_loadu_ps(k[t] + 8 * d), a);
            b = _mm256_fmadd_ps(qv[d + 1], _mm256_loadu_ps(k[t] + 8 * d + 8), b);
        }
        scores[t] = hsum(_mm256_add_ps(a, b));
        mx = scores[t] > mx ? scores[t] : mx;
    }
    float inv = 1.0f / exp_sum_avx2(scores, mx, n);
    __m256 acc[8];
    for (int d = 0; d < 8; d++) acc[d] = _mm256_setzero_ps();
    for (int t = 0; t < n; t++) {
        __m256 p = _mm256_set1_ps(scores[t]);
        for (int d = 0; d < 8; d++) acc[d] = _mm256_fmadd_ps(p, _mm256_loadu_ps(v[t] + 8 * d), acc[d]);
    }
    for (int d = 0; d < 8; d++) _mm256_storeu_ps(o + 8 * d, _mm256_mul_ps(acc[d], _mm256_set1_ps(inv)));
}

#endif

void vec_axpy(float *y, float a, const float *x, int64_t n, int avx2) {
#ifdef TY_X86
    if (avx2) {
        axpy_avx2(y, a, x, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

float vec_dot(const float *x, const float *y, int64_t n, int avx2) {
#ifdef TY_X86
    if (avx2) return dot_avx2(x, y, n);
#endif
    float s[4] = {0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int l = 0; l < 4; l++) s[l] += x[i + l] * y[i + l];
    float t = (s[0] + s[2]) + (s[1] + s[3]);
    for (; i < n; i++) t += x[i] * y[i];
    return t;
}

float vec_exp_sum(float *x, float shift, int64_t n, int avx2) {
#ifdef TY_X86
    if (avx2) return exp_sum_avx2(x, shift, n);
#endif
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i] = expf(x[i] - shift);
    return s;
}

void vec_gelu_tanh(float *x, int64_t n, int avx2) {
#ifdef TY_X86
    if (avx2) {
        gelu_tanh_avx2(x, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    }
}

void vec_attend_one(const float *q, const float *const *k, const float *const *v, int n, int hd, float scale,
                    float *scores, float *o, int avx2) {
#ifdef TY_X86
    if (avx2 && hd == 64) {
        attend_one64_avx2(q, k, v, n, scale, scores, o);
        return;
    }
#endif
    for (int t = 0; t < n; t++) scores[t] = vec_dot(q, k[t], hd, avx2) * scale;
    float sum = vec_exp_sum(scores, vec_max(scores, n), n, avx2);
    for (int d = 0; d < hd; d++) o[d] = 0.0f;
    for (int t = 0; t < n; t++) vec_axpy(o, scores[t] / sum, v[t], hd, avx2);
}

float vec_max(const float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}
