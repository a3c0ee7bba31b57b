// The dot-product kernels of every kernel family (portable C, AVX2+FMA,
// AVX-512, NEON): the GEMM micro-kernels, the decode GEMV and attention's P·V.
//
// Batch invariance rule: a dot product of length k is summed the same way by
// every kernel of a family, whatever else it is computed with (a 4x4 block, a
// lone row, four bf16 weight rows of a decode GEMV, or a P·V column sum):
//   - the family has W lanes (portable 8, AVX2 8, AVX-512 16, NEON 4);
//   - lane l starts at +0 and adds a[p]·b[p] for p ≡ l (mod W), p < k, in
//     increasing p, each step one fused multiply-add (portable C fuses only
//     where the hardware has FMA; never left to the compiler's choice);
//   - a k tail shorter than W goes into its lanes (masked or zero-padded
//     loads), never into a scalar sum on the side;
//   - the W lanes are then added in one fixed tree per family (reduce8,
//     hsum256, hsum512, hsum128; the *_across forms add the same trees
//     lane-wise over vectors of lanes).
// So each output depends only on its own two vectors, and a serving engine
// gets the same bits for a row however rows are batched.
//
// Zero terms: a lane starts at +0, and a sum in round-to-nearest is -0 only
// when both addends are (or, fused, when a negative product below the
// smallest subnormal meets a zero lane). So adding a term that is an exact
// zero (0 times a finite value) leaves a lane unchanged, except that a lane
// which is exactly -0 becomes +0: zero padding of either operand changes no
// result, apart from the sign of a result that is exactly zero.
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TY_X86 1
#elif defined(__aarch64__)
#include <arm_neon.h>
#define TY_NEON 1
#endif

// ---- portable C: 8 lanes ----

// One lane step: fused where the hardware has FMA (as the SIMD families), else
// a rounded product then a sum; fmaf is explicit so contraction flags don't matter.
static inline float lane_fma(float acc, float a, float b) {
#ifdef __FP_FAST_FMAF
    return fmaf(a, b, acc);
#else
    return acc + a * b;
#endif
}

// The portable tree: the same as AVX2's hsum256 below.
static float reduce8(const float *s) { return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7])); }

// Adds a[p]·b[p] for p < n into lane p % 8 of s (n elements from a lane-0 position).
static void lanes8(float *s, const float *a, const float *b, int64_t n) {
    int64_t p = 0;
    for (; p + 8 <= n; p += 8)
        for (int l = 0; l < 8; l++) s[l] = lane_fma(s[l], a[p + l], b[p + l]);
    for (int l = 0; p + l < n; l++) s[l] = lane_fma(s[l], a[p + l], b[p + l]);
}

static float dot_portable(const float *a, const float *b, int64_t k) {
    float s[8] = {0};
    lanes8(s, a, b, k);
    return reduce8(s);
}

static void block_portable(float *out, const float *const *x, int ni, const float *const *w, int nj, int64_t k) {
    for (int i = 0; i < ni; i++)
        for (int j = 0; j < nj; j++) out[i * 4 + j] = dot_portable(x[i], w[j], k);
}

// Widens the weights a chunk at a time (the chunk starts on a multiple of 8,
// so each element keeps its lane), then runs dot_portable's lane loop.
static void rows_bf16_portable(float *out, const float *x, const uint16_t *const *w, int64_t k) {
    enum { CHUNK = 256 };
    float s[4][8] = {{0}}, wt[CHUNK];
    for (int64_t c0 = 0; c0 < k; c0 += CHUNK) {
        int64_t c = k - c0 < CHUNK ? k - c0 : CHUNK;
        for (int j = 0; j < 4; j++) {
            for (int64_t p = 0; p < c; p++) wt[p] = bf16_to_f32(w[j][c0 + p]);
            lanes8(s[j], x + c0, wt, c);
        }
    }
    for (int j = 0; j < 4; j++) out[j] = reduce8(s[j]);
}

// acc: (8 lanes, hd); lane t % 8 takes key t, as dot_portable's lanes take p % 8.
static void columns_portable(float *o, const float *p, const float *const *v, int n, int hd, float *acc) {
    memset(acc, 0, (size_t)8 * hd * sizeof(float));
    for (int t = 0; t < n; t++) {
        if (t + CPU_PREFETCH_ROWS < n) cpu_prefetch(v[t + CPU_PREFETCH_ROWS], hd);
        float *a = acc + (size_t)(t & 7) * hd;
        const float *vt = v[t];
        for (int d = 0; d < hd; d++) a[d] = lane_fma(a[d], p[t], vt[d]);
    }
    for (int d = 0; d < hd; d++) {
        float s[8];
        for (int l = 0; l < 8; l++) s[l] = acc[(size_t)l * hd + d];
        o[d] = reduce8(s);
    }
}

#ifdef TY_X86
// ---- AVX2 + FMA: 8 lanes ----
#define AVX2 __attribute__((target("avx2,fma")))

// ((a0+a4)+(a2+a6))+((a1+a5)+(a3+a7)), the tree every 8-lane family uses.
AVX2 static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// hsum256 of 8 vectors lane by lane: out lane d = hsum256 of (a[0][d], ..., a[7][d]).
AVX2 static inline __m256 reduce256_across(const __m256 *a) {
    return _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[2], a[6])),
                         _mm256_add_ps(_mm256_add_ps(a[1], a[5]), _mm256_add_ps(a[3], a[7])));
}

// Lanes [0, r) set (r <= 8), for masked loads and stores of a tail.
AVX2 static inline __m256i mask256(int64_t r) {
    static const int32_t bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(bits + 8 - r));
}

AVX2 static inline __m256 bf16x8(const uint16_t *w) {
    __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)w));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
}

AVX2 static void block4x4_avx2(float *out, const float *const *x, const float *const *w, int64_t k) {
    __m256 acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = _mm256_setzero_ps();
    int64_t p = 0;
    for (; p + 8 <= k; p += 8) {
        __m256 wv[4];
        for (int j = 0; j < 4; j++) wv[j] = _mm256_loadu_ps(w[j] + p);
        for (int i = 0; i < 4; i++) {
            __m256 xv = _mm256_loadu_ps(x[i] + p);
            for (int j = 0; j < 4; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    if (p < k) {  // the k tail, masked into the lanes
        __m256i m = mask256(k - p);
        __m256 wv[4];
        for (int j = 0; j < 4; j++) wv[j] = _mm256_maskload_ps(w[j] + p, m);
        for (int i = 0; i < 4; i++) {
            __m256 xv = _mm256_maskload_ps(x[i] + p, m);
            for (int j = 0; j < 4; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) out[i * 4 + j] = hsum256(acc[i][j]);
}

// One f32 row against 4 weight rows, f32 or bf16 (widened by a shift): the
// decode GEMV, and attention's scores of one query. Four independent chains.
__attribute__((always_inline)) AVX2 static inline void rows4_avx2(float *out, const float *x, const void *const *w,
                                                                  int64_t k, int bf16) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t p = 0;
    for (; p + 8 <= k; p += 8) {
        __m256 xv = _mm256_loadu_ps(x + p);
        for (int j = 0; j < 4; j++) {
            __m256 wv = bf16 ? bf16x8((const uint16_t *)w[j] + p) : _mm256_loadu_ps((const float *)w[j] + p);
            acc[j] = _mm256_fmadd_ps(xv, wv, acc[j]);
        }
    }
    if (p < k) {  // zero-padded copies of the tail
        float xt[8] = {0}, wt[8];
        uint16_t ht[8];
        memcpy(xt, x + p, (size_t)(k - p) * sizeof(float));
        for (int j = 0; j < 4; j++) {
            __m256 wv;
            if (bf16) {
                memset(ht, 0, sizeof ht);
                memcpy(ht, (const uint16_t *)w[j] + p, (size_t)(k - p) * sizeof(uint16_t));
                wv = bf16x8(ht);
            } else {
                memset(wt, 0, sizeof wt);
                memcpy(wt, (const float *)w[j] + p, (size_t)(k - p) * sizeof(float));
                wv = _mm256_loadu_ps(wt);
            }
            acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(xt), wv, acc[j]);
        }
    }
    for (int j = 0; j < 4; j++) out[j] = hsum256(acc[j]);
}

AVX2 static void rows4_f32_avx2(float *out, const float *x, const void *const *w, int64_t k) {
    rows4_avx2(out, x, w, k, 0);
}

AVX2 static void rows4_bf16_avx2(float *out, const float *x, const void *const *w, int64_t k) {
    rows4_avx2(out, x, w, k, 1);
}

AVX2 static void block_avx2(float *out, const float *const *x, int ni, const float *const *w, int nj, int64_t k) {
    if (ni == 4 && nj == 4) {
        block4x4_avx2(out, x, w, k);
        return;
    }
    if (nj == 4) {
        for (int i = 0; i < ni; i++) rows4_f32_avx2(out + i * 4, x[i], (const void *const *)w, k);
        return;
    }
    for (int i = 0; i < ni; i++)
        for (int j = 0; j < nj; j++) {
            __m256 acc = _mm256_setzero_ps();
            int64_t p = 0;
            for (; p + 8 <= k; p += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(x[i] + p), _mm256_loadu_ps(w[j] + p), acc);
            if (p < k) {
                __m256i m = mask256(k - p);
                acc = _mm256_fmadd_ps(_mm256_maskload_ps(x[i] + p, m), _mm256_maskload_ps(w[j] + p, m), acc);
            }
            out[i * 4 + j] = hsum256(acc);
        }
}

// acc: (8 lanes, hp), hp = hd rounded up to 8; lane t % 8 takes key t. One
// pass over the value rows, each read once: in decode they come from memory,
// a latency-bound walk, and a pass per head_dim chunk (accumulators in
// registers) measured slower than keeping the accumulators in L1.
AVX2 static void columns_avx2(float *o, const float *p, const float *const *v, int n, int hd, float *acc) {
    int hp = (hd + 7) & ~7;
    __m256i last = mask256(hd % 8 ? hd % 8 : 8);
    for (int i = 0; i < 8 * hp; i += 8) _mm256_storeu_ps(acc + i, _mm256_setzero_ps());
    for (int t = 0; t < n; t++) {
        if (t + CPU_PREFETCH_ROWS < n) cpu_prefetch(v[t + CPU_PREFETCH_ROWS], hd);
        float *a = acc + (size_t)(t & 7) * hp;
        const float *vt = v[t];
        __m256 pt = _mm256_set1_ps(p[t]);
        int d = 0;
        for (; d + 8 <= hd; d += 8)
            _mm256_storeu_ps(a + d, _mm256_fmadd_ps(pt, _mm256_loadu_ps(vt + d), _mm256_loadu_ps(a + d)));
        if (d < hd)
            _mm256_storeu_ps(a + d, _mm256_fmadd_ps(pt, _mm256_maskload_ps(vt + d, last), _mm256_loadu_ps(a + d)));
    }
    for (int d = 0; d < hd; d += 8) {
        __m256 lanes[8];
        for (int l = 0; l < 8; l++) lanes[l] = _mm256_loadu_ps(acc + (size_t)l * hp + d);
        __m256 r = reduce256_across(lanes);
        if (d + 8 <= hd) _mm256_storeu_ps(o + d, r);
        else _mm256_maskstore_ps(o + d, last, r);
    }
}

// ---- AVX-512: 16 lanes; masked loads take the k tail ----
#define AVX512 __attribute__((target("avx512f,avx2,fma")))

// Lanes i and i + 8 first, then hsum256's tree.
AVX512 static inline float hsum512(__m512 v) {
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return hsum256(_mm256_add_ps(_mm512_castps512_ps256(v), hi));
}

AVX512 static inline __m512 reduce512_across(const __m512 *a) {
    __m512 m[8];
    for (int l = 0; l < 8; l++) m[l] = _mm512_add_ps(a[l], a[l + 8]);
    return _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(m[0], m[4]), _mm512_add_ps(m[2], m[6])),
                         _mm512_add_ps(_mm512_add_ps(m[1], m[5]), _mm512_add_ps(m[3], m[7])));
}

// hsum512 of 16 vectors at once: out[q] = hsum512(a[q]), the same tree (each
// level adds the upper half of a lane group to its lower half: 16 -> 8 -> 4
// -> 2 -> 1), with two vectors' halves shuffled into one add per level, so
// 45 instructions instead of ~130 and one store. a is overwritten.
AVX512 static inline void hsum512_x16(float *out, __m512 *a) {
    for (int p = 0; p < 8; p++)  // lanes i and i + 8: [a[2p] (8), a[2p+1] (8)]
        a[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    for (int p = 0; p < 4; p++)  // then i and i + 4: quarter t holds vector 4p + t
        a[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    for (int p = 0; p < 2; p++)  // then i and i + 2: quarter t holds [8p + t (2), 8p + 4 + t (2)]
        a[p] = _mm512_add_ps(_mm512_shuffle_ps(a[2 * p], a[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(a[2 * p], a[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    // then i and i + 1: quarter t holds vectors t, 4 + t, 8 + t, 12 + t
    __m512 r = _mm512_add_ps(_mm512_shuffle_ps(a[0], a[1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_ps(a[0], a[1], _MM_SHUFFLE(3, 1, 3, 1)));
    // r[4t + u] = hsum512(a[4u + t]): a 4x4 transpose of the order wanted
    const __m512i to_out = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_storeu_ps(out, _mm512_permutexvar_ps(to_out, r));
}

AVX512 static inline __mmask16 mask512(int64_t r) { return (__mmask16)((1u << r) - 1); }

AVX512 static inline __m512 bf16x16(const uint16_t *w) {
    __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)w));
    return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
}

AVX512 static void block4x4_avx512(float *out, const float *const *x, const float *const *w, int64_t k) {
    __m512 acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    int64_t p = 0;
    for (; p + 16 <= k; p += 16) {
        __m512 wv[4];
        for (int j = 0; j < 4; j++) wv[j] = _mm512_loadu_ps(w[j] + p);
        for (int i = 0; i < 4; i++) {
            __m512 xv = _mm512_loadu_ps(x[i] + p);
            for (int j = 0; j < 4; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    if (p < k) {
        __mmask16 m = mask512(k - p);
        __m512 wv[4];
        for (int j = 0; j < 4; j++) wv[j] = _mm512_maskz_loadu_ps(m, w[j] + p);
        for (int i = 0; i < 4; i++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x[i] + p);
            for (int j = 0; j < 4; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    hsum512_x16(out, &acc[0][0]);
}

__attribute__((always_inline)) AVX512 static inline void rows4_avx512(float *out, const float *x,
                                                                      const void *const *w, int64_t k, int bf16) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int64_t p = 0;
    for (; p + 16 <= k; p += 16) {
        __m512 xv = _mm512_loadu_ps(x + p);
        for (int j = 0; j < 4; j++) {
            __m512 wv = bf16 ? bf16x16((const uint16_t *)w[j] + p) : _mm512_loadu_ps((const float *)w[j] + p);
            acc[j] = _mm512_fmadd_ps(xv, wv, acc[j]);
        }
    }
    if (p < k) {
        __mmask16 m = mask512(k - p);
        __m512 xv = _mm512_maskz_loadu_ps(m, x + p);
        uint16_t ht[16];
        for (int j = 0; j < 4; j++) {
            __m512 wv;
            if (bf16) {
                memset(ht, 0, sizeof ht);
                memcpy(ht, (const uint16_t *)w[j] + p, (size_t)(k - p) * sizeof(uint16_t));
                wv = bf16x16(ht);
            } else {
                wv = _mm512_maskz_loadu_ps(m, (const float *)w[j] + p);
            }
            acc[j] = _mm512_fmadd_ps(xv, wv, acc[j]);
        }
    }
    for (int j = 0; j < 4; j++) out[j] = hsum512(acc[j]);
}

AVX512 static void rows4_f32_avx512(float *out, const float *x, const void *const *w, int64_t k) {
    rows4_avx512(out, x, w, k, 0);
}

AVX512 static void rows4_bf16_avx512(float *out, const float *x, const void *const *w, int64_t k) {
    rows4_avx512(out, x, w, k, 1);
}

AVX512 static void block_avx512(float *out, const float *const *x, int ni, const float *const *w, int nj, int64_t k) {
    if (ni == 4 && nj == 4) {
        block4x4_avx512(out, x, w, k);
        return;
    }
    if (nj == 4) {
        for (int i = 0; i < ni; i++) rows4_f32_avx512(out + i * 4, x[i], (const void *const *)w, k);
        return;
    }
    for (int i = 0; i < ni; i++)
        for (int j = 0; j < nj; j++) {
            __m512 acc = _mm512_setzero_ps();
            int64_t p = 0;
            for (; p + 16 <= k; p += 16)
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(x[i] + p), _mm512_loadu_ps(w[j] + p), acc);
            if (p < k) {
                __mmask16 m = mask512(k - p);
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x[i] + p), _mm512_maskz_loadu_ps(m, w[j] + p), acc);
            }
            out[i * 4 + j] = hsum512(acc);
        }
}

// As columns_avx2, 16 lanes.
AVX512 static void columns_avx512(float *o, const float *p, const float *const *v, int n, int hd, float *acc) {
    int hp = (hd + 15) & ~15;
    __mmask16 last = mask512(hd % 16 ? hd % 16 : 16);
    for (int i = 0; i < 16 * hp; i += 16) _mm512_storeu_ps(acc + i, _mm512_setzero_ps());
    for (int t = 0; t < n; t++) {
        if (t + CPU_PREFETCH_ROWS < n) cpu_prefetch(v[t + CPU_PREFETCH_ROWS], hd);
        float *a = acc + (size_t)(t & 15) * hp;
        const float *vt = v[t];
        __m512 pt = _mm512_set1_ps(p[t]);
        int d = 0;
        for (; d + 16 <= hd; d += 16)
            _mm512_storeu_ps(a + d, _mm512_fmadd_ps(pt, _mm512_loadu_ps(vt + d), _mm512_loadu_ps(a + d)));
        if (d < hd)
            _mm512_storeu_ps(a + d, _mm512_fmadd_ps(pt, _mm512_maskz_loadu_ps(last, vt + d), _mm512_loadu_ps(a + d)));
    }
    for (int d = 0; d < hd; d += 16) {
        __m512 lanes[16];
        for (int l = 0; l < 16; l++) lanes[l] = _mm512_loadu_ps(acc + (size_t)l * hp + d);
        _mm512_mask_storeu_ps(o + d, d + 16 <= hd ? (__mmask16)0xffff : last, reduce512_across(lanes));
    }
}
#endif

#ifdef TY_NEON
// ---- NEON: 4 lanes; the k tail goes through zero-padded copies ----

// (a0+a1)+(a2+a3), pairwise as FADDP adds.
static inline float hsum128(float32x4_t v) {
    float32x4_t s = vpaddq_f32(v, v);
    return vgetq_lane_f32(s, 0) + vgetq_lane_f32(s, 1);
}

static inline float32x4_t bf16x4(const uint16_t *w) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(w), 16)); }

static inline float32x4_t load_tail4(const float *x, int64_t r) {
    float t[4] = {0};
    memcpy(t, x, (size_t)r * sizeof(float));
    return vld1q_f32(t);
}

static void block_neon(float *out, const float *const *x, int ni, const float *const *w, int nj, int64_t k) {
    float32x4_t acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = vdupq_n_f32(0.0f);
    int64_t p = 0;
    for (; p + 4 <= k; p += 4) {
        float32x4_t wv[4];
        for (int j = 0; j < nj; j++) wv[j] = vld1q_f32(w[j] + p);
        for (int i = 0; i < ni; i++) {
            float32x4_t xv = vld1q_f32(x[i] + p);
            for (int j = 0; j < nj; j++) acc[i][j] = vfmaq_f32(acc[i][j], xv, wv[j]);
        }
    }
    if (p < k) {
        float32x4_t wv[4];
        for (int j = 0; j < nj; j++) wv[j] = load_tail4(w[j] + p, k - p);
        for (int i = 0; i < ni; i++) {
            float32x4_t xv = load_tail4(x[i] + p, k - p);
            for (int j = 0; j < nj; j++) acc[i][j] = vfmaq_f32(acc[i][j], xv, wv[j]);
        }
    }
    for (int i = 0; i < ni; i++)
        for (int j = 0; j < nj; j++) out[i * 4 + j] = hsum128(acc[i][j]);
}

static void rows_bf16_neon(float *out, const float *x, const uint16_t *const *w, int64_t k) {
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    int64_t p = 0;
    for (; p + 4 <= k; p += 4) {
        float32x4_t xv = vld1q_f32(x + p);
        for (int j = 0; j < 4; j++) acc[j] = vfmaq_f32(acc[j], xv, bf16x4(w[j] + p));
    }
    if (p < k) {
        float32x4_t xv = load_tail4(x + p, k - p);
        for (int j = 0; j < 4; j++) {
            uint16_t h[4] = {0};
            memcpy(h, w[j] + p, (size_t)(k - p) * sizeof(uint16_t));
            acc[j] = vfmaq_f32(acc[j], xv, bf16x4(h));
        }
    }
    for (int j = 0; j < 4; j++) out[j] = hsum128(acc[j]);
}

// acc: (4 lanes, hd); head dims past a multiple of 4 use scalar fmaf, the
// same fused step as a vector lane.
static void columns_neon(float *o, const float *p, const float *const *v, int n, int hd, float *acc) {
    memset(acc, 0, (size_t)4 * hd * sizeof(float));
    for (int t = 0; t < n; t++) {
        if (t + CPU_PREFETCH_ROWS < n) cpu_prefetch(v[t + CPU_PREFETCH_ROWS], hd);
        float *a = acc + (size_t)(t & 3) * hd;
        const float *vt = v[t];
        float32x4_t pt = vdupq_n_f32(p[t]);
        int d = 0;
        for (; d + 4 <= hd; d += 4) vst1q_f32(a + d, vfmaq_f32(vld1q_f32(a + d), pt, vld1q_f32(vt + d)));
        for (; d < hd; d++) a[d] = fmaf(p[t], vt[d], a[d]);
    }
    for (int d = 0; d < hd; d++) {
        const float *a = acc + d;
        o[d] = (a[0] + a[hd]) + (a[2 * hd] + a[3 * hd]);
    }
}
#endif

void cpu_dot_block(float *out, const float *const *x, int ni, const float *const *w, int nj, int64_t k,
                   ty_cpu_simd simd) {
#ifdef TY_X86
    if (simd == TY_CPU_AVX512) {
        block_avx512(out, x, ni, w, nj, k);
        return;
    }
    if (simd == TY_CPU_AVX2) {
        block_avx2(out, x, ni, w, nj, k);
        return;
    }
#endif
#ifdef TY_NEON
    if (simd == TY_CPU_NEON) {
        block_neon(out, x, ni, w, nj, k);
        return;
    }
#endif
    block_portable(out, x, ni, w, nj, k);
}

void cpu_dot_rows_bf16(float *out, const float *x, const uint16_t *const *w, int64_t k, ty_cpu_simd simd) {
#ifdef TY_X86
    if (simd == TY_CPU_AVX512) {
        rows4_bf16_avx512(out, x, (const void *const *)w, k);
        return;
    }
    if (simd == TY_CPU_AVX2) {
        rows4_bf16_avx2(out, x, (const void *const *)w, k);
        return;
    }
#endif
#ifdef TY_NEON
    if (simd == TY_CPU_NEON) {
        rows_bf16_neon(out, x, w, k);
        return;
    }
#endif
    rows_bf16_portable(out, x, w, k);
}

void cpu_dot_columns(float *o, const float *p, const float *const *v, int n, int hd, float *scratch,
                     ty_cpu_simd simd) {
#ifdef TY_X86
    if (simd == TY_CPU_AVX512) {
        columns_avx512(o, p, v, n, hd, scratch);
        return;
    }
    if (simd == TY_CPU_AVX2) {
        columns_avx2(o, p, v, n, hd, scratch);
        return;
    }
#endif
#ifdef TY_NEON
    if (simd == TY_CPU_NEON) {
        columns_neon(o, p, v, n, hd, scratch);
        return;
    }
#endif
    columns_portable(o, p, v, n, hd, scratch);
}
