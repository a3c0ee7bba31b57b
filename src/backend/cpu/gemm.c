// y = act(x · wᵀ + bias): x (n, k) f32, w (m, k) bf16/f16/f32 read in place.
// Kernel families: portable C, AVX2+FMA, AVX-512, NEON (chosen at backend init).
//
// Work is split over panels of PANEL weight rows. A panel is converted to f32
// once (when n > 1) and reused for every row of x; a 4x4 block of dot
// products then loads 8 vectors per 16 FMAs. With n == 1 (decode) the weight
// is streamed once and converted on the fly: that case is bandwidth-bound.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/cpu/vec.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TY_X86 1
#elif defined(__aarch64__)
#include <arm_neon.h>
#define TY_NEON 1
#endif

enum { PANEL = 16 };

typedef struct {
    ty_tensor y, x, w;
    const ty_tensor *bias;
    ty_activation act;
    ty_cpu_simd simd;
} gemm_job;

static float dot_portable(const float *a, const float *b, int64_t k) {
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= k; i += 8)
        for (int l = 0; l < 8; l++) s[l] += a[i + l] * b[i + l];
    float t = 0;
    for (; i < k; i++) t += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])) + t;
}

// out[i*4 + j] = dot(x_i, w_j) for the rows x[0..ni), w[0..nj), ni, nj <= 4.
static void block_portable(float *out, const float *const *x, int ni, const float *const *w, int nj, int64_t k) {
    for (int i = 0; i < ni; i++)
        for (int j = 0; j < nj; j++) out[i * 4 + j] = dot_portable(x[i], w[j], k);
}

#ifdef TY_X86
__attribute__((target("avx2,fma"))) static float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) static void block4x4_avx2(float *out, const float *const *x,
                                                             const float *const *w, int64_t k) {
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
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            float t = hsum256(acc[i][j]);
            for (int64_t q = p; q < k; q++) t += x[i][q] * w[j][q];
            out[i * 4 + j] = t;
        }
}

__attribute__((target("avx2,fma"))) static void block_avx2(float *out, const float *const *x, int ni,
                                                          const float *const *w, int nj, int64_t k) {
    if (ni == 4 && nj == 4) {
        block4x4_avx2(out, x, w, k);
        return;
    }
    for (int i = 0; i < ni; i++)
        for (int j = 0; j < nj; j++) {
            __m256 acc = _mm256_setzero_ps();
            int64_t p = 0;
            for (; p + 8 <= k; p += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(x[i] + p), _mm256_loadu_ps(w[j] + p), acc);
            float t = hsum256(acc);
            for (; p < k; p++) t += x[i][p] * w[j][p];
            out[i * 4 + j] = t;
        }
}

// Decode path: dot of an f32 row with a bf16 row, converting 8 lanes at a time.
__attribute__((target("avx2,fma"))) static float dot_bf16_avx2(const float *x, const uint16_t *w, int64_t k) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t p = 0;
    for (; p + 16 <= k; p += 16) {
        __m256i w0 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + p)));
        __m256i w1 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + p + 8)));
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p), _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16)), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p + 8), _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16)), a1);
    }
    float t = hsum256(_mm256_add_ps(a0, a1));
    for (; p < k; p++) t += x[p] * bf16_to_f32(w[p]);
    return t;
}

// AVX-512: the same blocking with 16 lanes; masked loads handle the k tail.
#define AVX512 __attribute__((target("avx512f")))

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
    if (p < k) {  // the k tail, masked
        __mmask16 m = (__mmask16)((1u << (k - p)) - 1);
        __m512 wv[4];
        for (int j = 0; j < 4; j++) wv[j] = _mm512_maskz_loadu_ps(m, w[j] + p);
        for (int i = 0; i < 4; i++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x[i] + p);
            for (int j = 0; j < 4; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) out[i * 4 + j] = _mm512_reduce_add_ps(acc[i][j]);
}

AVX512 static void block_avx512(float *out, const float *const *x, int ni, const float *const *w, int nj, int64_t k) {
    if (ni == 4 && nj == 4) {
        block4x4_avx512(out, x, w, k);
        return;
    }
    for (int i = 0; i < ni; i++)
        for (int j = 0; j < nj; j++) {
            __m512 acc = _mm512_setzero_ps();
            for (int64_t p = 0; p < k; p += 16) {
                __mmask16 m = k - p >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (k - p)) - 1);
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x[i] + p), _mm512_maskz_loadu_ps(m, w[j] + p), acc);
            }
            out[i * 4 + j] = _mm512_reduce_add_ps(acc);
        }
}

AVX512 static float dot_bf16_avx512(const float *x, const uint16_t *w, int64_t k) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t p = 0;
    for (; p + 32 <= k; p += 32) {
        __m512i w0 = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w + p)));
        __m512i w1 = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w + p + 16)));
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + p), _mm512_castsi512_ps(_mm512_slli_epi32(w0, 16)), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + p + 16), _mm512_castsi512_ps(_mm512_slli_epi32(w1, 16)), a1);
    }
    float t = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; p < k; p++) t += x[p] * bf16_to_f32(w[p]);
    return t;
}
#endif

#ifdef TY_NEON
// NEON: 4x4 blocks of dot products with 4-lane FMAs, and the bf16 GEMV widening
// 16-bit weights to f32 by a shift.
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
    for (int i = 0; i < ni; i++)
        for (int j = 0; j < nj; j++) {
            float t = vaddvq_f32(acc[i][j]);
            for (int64_t q = p; q < k; q++) t += x[i][q] * w[j][q];
            out[i * 4 + j] = t;
        }
}

static float dot_bf16_neon(const float *x, const uint16_t *w, int64_t k) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    int64_t p = 0;
    for (; p + 8 <= k; p += 8) {
        uint16x8_t h = vld1q_u16(w + p);
        float32x4_t w0 = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16));
        float32x4_t w1 = vreinterpretq_f32_u32(vshll_n_u16(vget_high_u16(h), 16));
        a0 = vfmaq_f32(a0, vld1q_f32(x + p), w0);
        a1 = vfmaq_f32(a1, vld1q_f32(x + p + 4), w1);
    }
    float t = vaddvq_f32(vaddq_f32(a0, a1));
    for (; p < k; p++) t += x[p] * bf16_to_f32(w[p]);
    return t;
}
#endif

static void activate_span(float *y, int64_t n, const gemm_job *g) {
    if (g->act == TY_ACT_GELU_TANH)
        vec_gelu_tanh(y, n, g->simd == TY_CPU_AVX2 || g->simd == TY_CPU_AVX512);
    else if (g->act == TY_ACT_GELU_ERF)
        for (int64_t i = 0; i < n; i++) y[i] = cpu_gelu_erf(y[i]);
}

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

static const void *weight_row(ty_tensor w, int64_t r) {
    return (const char *)w.data + (size_t)(r * w.stride) * dtype_size(w.dtype);
}

static void gemm_panel(void *ctx, int panel) {
    const gemm_job *g = ctx;
    int64_t k = g->x.cols, m = g->w.rows, n = g->x.rows;
    int64_t j0 = (int64_t)panel * PANEL, nj = m - j0 < PANEL ? m - j0 : PANEL;
    float bias[PANEL] = {0};
    if (g->bias) cpu_convert_row(bias, (const char *)g->bias->data + (size_t)j0 * dtype_size(g->bias->dtype),
                                 g->bias->dtype, nj);
#ifdef TY_NEON
    if (n == 1 && g->simd == TY_CPU_NEON && g->w.dtype == TY_DTYPE_BF16) {
        const float *x = cpu_row(g->x, 0);
        float *y = cpu_row(g->y, 0);
        for (int64_t j = 0; j < nj; j++)
            y[j0 + j] = dot_bf16_neon(x, weight_row(g->w, j0 + j), k) + bias[j];
        activate_span(y + j0, nj, g);
        return;
    }
#endif
#ifdef TY_X86
    if (n == 1 && g->simd >= TY_CPU_AVX2 && g->w.dtype == TY_DTYPE_BF16) {
        const float *x = cpu_row(g->x, 0);
        float *y = cpu_row(g->y, 0);
        for (int64_t j = 0; j < nj; j++) {
            const uint16_t *w = weight_row(g->w, j0 + j);
            float d = g->simd >= TY_CPU_AVX512 ? dot_bf16_avx512(x, w, k) : dot_bf16_avx2(x, w, k);
            y[j0 + j] = d + bias[j];
        }
        activate_span(y + j0, nj, g);
        return;
    }
#endif
    // Convert the panel to f32 once (or point straight at f32 weights).
    float *panel_buf = NULL;
    const float *wrows[PANEL];
    if (g->w.dtype == TY_DTYPE_F32) {
        for (int64_t j = 0; j < nj; j++) wrows[j] = weight_row(g->w, j0 + j);
    } else {
        panel_buf = malloc((size_t)(nj * k) * sizeof(float));
        if (!panel_buf) abort();  // a few hundred KB; failure here means the machine is out of memory
        for (int64_t j = 0; j < nj; j++) {
            cpu_convert_row(panel_buf + j * k, weight_row(g->w, j0 + j), g->w.dtype, k);
            wrows[j] = panel_buf + j * k;
        }
    }
    float out[16];
    for (int64_t i0 = 0; i0 < n; i0 += 4) {
        int ni = n - i0 < 4 ? (int)(n - i0) : 4;
        const float *xrows[4];
        for (int i = 0; i < ni; i++) xrows[i] = cpu_row(g->x, i0 + i);
        for (int64_t jb = 0; jb < nj; jb += 4) {
            int nb = nj - jb < 4 ? (int)(nj - jb) : 4;
            cpu_dot_block(out, xrows, ni, wrows + jb, nb, k, g->simd);
            for (int i = 0; i < ni; i++) {
                float *y = cpu_row(g->y, i0 + i) + j0 + jb;
                for (int j = 0; j < nb; j++) y[j] = out[i * 4 + j] + bias[jb + j];
            }
        }
        // The activation over the panel's outputs of these rows, vectorised.
        for (int i = 0; i < ni; i++) activate_span(cpu_row(g->y, i0 + i) + j0, nj, g);
    }
    free(panel_buf);
}

void cpu_matmul(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor w, const ty_tensor *bias, ty_activation act) {
    cpu_backend *c = cpu_of(be);
    gemm_job g = {y, x, w, bias, act, c->simd};
    int n_panels = (int)((w.rows + PANEL - 1) / PANEL);
    pool_run(c->pool, n_panels, gemm_panel, &g);
}
