// The CPU backend's internals shared by its op files (one file per op family).
#ifndef TYCHO_BACKEND_CPU_CPU_H
#define TYCHO_BACKEND_CPU_CPU_H

#include "backend/backend.h"
#include "core/half.h"
#include "core/pool.h"

typedef struct {
    ty_backend base;
    pool *pool;
    ty_cpu_simd simd;  // the kernel family in use (never above what the CPU has)
} cpu_backend;

static inline cpu_backend *cpu_of(ty_backend *be) { return (cpu_backend *)be; }

// Whether the AVX2 vector helpers (vec.h) may run.
static inline int cpu_has_avx2(ty_backend *be) {
    ty_cpu_simd s = cpu_of(be)->simd;
    return s == TY_CPU_AVX2 || s == TY_CPU_AVX512;
}

// Row r of an f32 tensor.
static inline float *cpu_row(ty_tensor t, int64_t r) { return (float *)t.data + r * t.stride; }

// Asks for the cache lines of the n floats at p, ahead of their use: attention
// reads key and value rows of a paged cache a whole cache row apart (kilobytes),
// a stride the hardware prefetchers don't follow.
static inline void cpu_prefetch(const float *p, int64_t n) {
    const char *c = (const char *)p, *end = (const char *)(p + n);
    for (; c < end; c += 64) __builtin_prefetch(c);
    __builtin_prefetch(end - 1);
}

// How many key rows ahead attention prefetches.
enum { CPU_PREFETCH_ROWS = 16 };

// Converts n elements of a bf16/f16/f32 row to f32.
void cpu_convert_row(float *dst, const void *src, ty_dtype dtype, int64_t n);

// Per-op entry points, wired into the ops table by cpu.c.
void cpu_matmul(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor w, const ty_tensor *bias, ty_activation act);
void cpu_matmul_grouped(ty_backend *be, int n, const ty_matmul_group *groups);
void cpu_layernorm(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor gamma, ty_tensor beta, float eps);
void cpu_add(ty_backend *be, ty_tensor y, ty_tensor a, ty_tensor b);
void cpu_add_layernorm(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor a, const ty_tensor *b, ty_tensor gamma,
                       ty_tensor beta, float eps);
void cpu_embed(ty_backend *be, ty_tensor y, ty_tensor table, const int32_t *ids);
void cpu_activate(ty_backend *be, ty_tensor y, ty_tensor x, ty_activation act);
void cpu_scale_heads(ty_backend *be, ty_tensor x, ty_tensor s, int head_dim);
void cpu_mul_plus_one(ty_backend *be, ty_tensor y, ty_tensor a, ty_tensor b);
void cpu_rows_weighted_sum(ty_backend *be, ty_tensor y, ty_tensor x, const int32_t *rows, const float *w, int k);
void cpu_patches(ty_backend *be, ty_tensor y, const uint8_t *pixels, int n, int h, int w, int ch, int p,
                 const float lut[256]);
void cpu_rope(ty_backend *be, ty_tensor x, int n_heads, int head_dim, int rot_dims, float theta, const ty_batch *batch);
void cpu_kv_write(ty_backend *be, ty_kv_layer *kv, ty_tensor k, ty_tensor v, const ty_batch *batch);
void cpu_attention(ty_backend *be, ty_tensor out, ty_tensor q, const ty_kv_layer *kv, int n_heads, int n_kv_heads,
                   int head_dim, float scale, const ty_batch *batch);
void cpu_attention_dense(ty_backend *be, ty_tensor out, ty_tensor q, ty_tensor k, ty_tensor v, int n_heads,
                         int head_dim, float scale, int group);

// The dot-product kernels (dot.c). Within a kernel family every one of them
// sums a dot product of length k the same way (W lanes, lane l takes the
// terms p = l mod W in increasing p by FMA, then a fixed tree over the lanes),
// so a result never depends on what else is computed alongside it; and terms
// that are exact zeros change nothing (but the sign of a result that is exactly
// zero), so operands may be zero-padded.
// CPU_DOT_PAD is a multiple of every family's lane count W.
enum { CPU_DOT_PAD = 16 };

// out[i * 4 + j] = dot(x[i], w[j]) over k f32 values, for ni, nj <= 4 rows given
// by pointers: the GEMM micro-kernel, also used by attention.
void cpu_dot_block(float *out, const float *const *x, int ni, const float *const *w, int nj, int64_t k,
                   ty_cpu_simd simd);
// out[j] = dot(x, w[j]) over k for 4 bf16 rows converted on the fly (the decode
// GEMV): bitwise what cpu_dot_block gives for the rows converted to f32.
void cpu_dot_rows_bf16(float *out, const float *x, const uint16_t *const *w, int64_t k, ty_cpu_simd simd);
// o[d] = sum over t < n of p[t] * v[t][d], for d < hd (attention's P·V, value
// rows read in place): bitwise what cpu_dot_block gives for dot(p, column d of
// v). scratch: CPU_DOT_PAD * (hd rounded up to CPU_DOT_PAD) floats.
void cpu_dot_columns(float *o, const float *p, const float *const *v, int n, int hd, float *scratch,
                     ty_cpu_simd simd);

// Exact (erf) GELU of one value; GELU-tanh is vectorised in vec.h.
float cpu_gelu_erf(float x);

#endif
