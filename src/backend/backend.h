// The op interface between the model and a device. The model describes work
// as ops on 2-D row-major tensors; a backend (cpu, later cuda) runs them. A
// backend knows no model: it sees matrices, rows, positions and page tables.
//
// Tensors are (rows, cols) with a row stride in elements, so column slices
// (q, k, v inside a fused qkv row) are views, not copies. Weights keep their
// stored dtype (bf16/f16/f32); activations are f32 on the CPU backend.
#ifndef TYCHO_BACKEND_BACKEND_H
#define TYCHO_BACKEND_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/err.h"

typedef struct {
    ty_dtype dtype;
    int64_t rows, cols;
    int64_t stride;  // elements from one row to the next (>= cols)
    void *data;      // device memory of the owning backend
} ty_tensor;

// A column slice [col, col + n) of t (same rows, same stride).
static inline ty_tensor tensor_cols(ty_tensor t, int64_t col, int64_t n) {
    ty_tensor s = t;
    s.data = (char *)t.data + (size_t)col * dtype_size(t.dtype);
    s.cols = n;
    return s;
}

// A row slice [row, row + n) of t.
static inline ty_tensor tensor_rows(ty_tensor t, int64_t row, int64_t n) {
    ty_tensor s = t;
    s.data = (char *)t.data + (size_t)(row * t.stride) * dtype_size(t.dtype);
    s.rows = n;
    return s;
}

// How the rows of one forward map onto sequences, for attention and the KV
// cache: row r belongs to sequence seq[r] at absolute position pos[r]. Key j
// of sequence s is visible from a query at position p iff j <= p, or both j
// and p lie inside that sequence's bidirectional prefix (j, p < prefix[s]).
typedef struct {
    int n_rows;
    const int32_t *seq;  // (n_rows)
    const int32_t *pos;  // (n_rows)
    int n_seqs;
    const int32_t *prefix;   // (n_seqs) bidirectional prefix length (0 = causal)
    const int32_t *kv_len;   // (n_seqs) positions in the cache once this forward's rows are written
    const int32_t *const *pages;  // (n_seqs) page table: position p lives in page pages[s][p / page_size]
} ty_batch;

// One layer's paged KV cache: (n_pages, page_size, n_heads * head_dim) for K and for V.
typedef struct {
    ty_tensor k, v;  // rows = n_pages * page_size, cols = n_heads * head_dim
    int page_size;
} ty_kv_layer;

typedef enum { TY_ACT_NONE, TY_ACT_GELU_TANH, TY_ACT_GELU_ERF } ty_activation;

// One product of matmul_grouped: y = act(x · wᵀ + bias), shapes as for matmul.
typedef struct {
    ty_tensor y, x, w;
    const ty_tensor *bias;  // NULL: none
    ty_activation act;
} ty_matmul_group;

typedef struct ty_backend ty_backend;

typedef struct {
    const char *name;
    void (*free)(ty_backend *be);
    // Memory.
    ty_status (*alloc)(ty_backend *be, ty_tensor *t, ty_dtype dtype, int64_t rows, int64_t cols, ty_err *err);
    void (*release)(ty_backend *be, ty_tensor *t);
    // A weight from host memory (an mmapped checkpoint): the CPU uses it in place.
    ty_status (*weight)(ty_backend *be, ty_tensor *t, ty_dtype dtype, int64_t rows, int64_t cols,
                        const void *host, ty_err *err);
    void (*write)(ty_backend *be, ty_tensor dst, const float *host);  // (rows, cols) f32 host rows -> dst
    void (*read)(ty_backend *be, ty_tensor src, float *host);         // src -> (rows, cols) f32 host rows
    // y = act(x · wᵀ + bias). x (n, k), w (m, k), bias (1, m) or NULL, y (n, m).
    void (*matmul)(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor w, const ty_tensor *bias, ty_activation act);
    // matmul for each of n independent groups in one call (a MoE layer: every chosen
    // expert's rows against that expert's weights), so a step costs one round of the
    // backend's workers, not one per expert. Each group's y is bitwise what matmul gives
    // it. May be NULL in a backend: callers then run matmul group by group.
    void (*matmul_grouped)(ty_backend *be, int n, const ty_matmul_group *groups);
    // y = LayerNorm(x) · gamma + beta over each row.
    void (*layernorm)(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor gamma, ty_tensor beta, float eps);
    // y = a + b; b may have fewer rows (repeated: row r adds b[r % b.rows]) and any float dtype.
    void (*add)(ty_backend *be, ty_tensor y, ty_tensor a, ty_tensor b);
    // The residual adds fused with the LayerNorm that reads their sum (one pass over the
    // rows, not three): x = x + a, then x = x + b when b is not NULL, each add rounded to
    // f32 as add does; then y = LayerNorm(x) · gamma + beta as layernorm. x stays the
    // residual stream (updated in place); a, b: f32 with x's shape. y may be a or b (a
    // row of both is read before that row of y is written), never x. Bitwise what add,
    // add, layernorm give on the same backend.
    void (*add_layernorm)(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor a, const ty_tensor *b, ty_tensor gamma,
                          ty_tensor beta, float eps);
    // y[r] = table[ids[r]] for a (vocab, dim) table.
    void (*embed)(ty_backend *be, ty_tensor y, ty_tensor table, const int32_t *ids);
    // Rotary embedding on the first rot_dims of each head of x (rows = batch rows),
    // half-split pairs (d, d + rot_dims/2), angle pos * theta^(-2j/rot_dims).
    void (*rope)(ty_backend *be, ty_tensor x, int n_heads, int head_dim, int rot_dims, float theta,
                 const ty_batch *batch);
    // Writes k, v rows (n_rows, n_heads*head_dim) into the cache at their sequences' positions.
    void (*kv_write)(ty_backend *be, ty_kv_layer *kv, ty_tensor k, ty_tensor v, const ty_batch *batch);
    // out = softmax(q·kᵀ · scale, masked per the batch) · v over each sequence's cached keys.
    void (*attention)(ty_backend *be, ty_tensor out, ty_tensor q, const ty_kv_layer *kv, int n_heads,
                      int n_kv_heads, int head_dim, float scale, const ty_batch *batch);
    // Full bidirectional attention inside groups of `group` consecutive rows (the vision tower:
    // one group per crop); q, k, v (n_rows, n_heads*head_dim).
    void (*attention_dense)(ty_backend *be, ty_tensor out, ty_tensor q, ty_tensor k, ty_tensor v, int n_heads,
                            int head_dim, float scale, int group);
    // y = act(x), element-wise (GELU in the tanh or the erf form).
    void (*activate)(ty_backend *be, ty_tensor y, ty_tensor x, ty_activation act);
    // x[r, h·head_dim + i] *= s[r, h] for every head h of each row (per-token, per-head scales).
    void (*scale_heads)(ty_backend *be, ty_tensor x, ty_tensor s, int head_dim);
    // Mixture-of-experts helpers (Moondream 3), so expert blocks never leave the device:
    // y = a ⊙ (b + 1), element-wise (the GeGLU after the GELU'd half);
    void (*mul_plus_one)(ty_backend *be, ty_tensor y, ty_tensor a, ty_tensor b);
    // y[r] = Σ_{j<k} w[r·k + j] · x[rows[r·k + j]], terms added in j order from 0 (y overwritten).
    void (*rows_weighted_sum)(ty_backend *be, ty_tensor y, ty_tensor x, const int32_t *rows, const float *w, int k);
    // Device memory in bytes: used by this process's device (all of it, not only this
    // backend) and the total. May be NULL (the CPU backend: host memory is the OS's).
    void (*memory)(ty_backend *be, size_t *used, size_t *total);
    // Image patches from 8-bit host pixels (a conv's im2col): pixels are n images of
    // (h, w, ch) bytes, row-major, channels last; y (n·(h/p)·(w/p), ch·p·p) gets one row
    // per p×p patch (each image's patch grid row-major), its columns channel-major, then
    // dy, then dx, each byte v as lut[v]. h and w are multiples of p. The bytes cross to
    // a device as bytes (a quarter of the f32 patches) and are expanded there.
    void (*patches)(ty_backend *be, ty_tensor y, const uint8_t *pixels, int n, int h, int w, int ch, int p,
                    const float lut[256]);
} ty_backend_ops;

struct ty_backend {
    const ty_backend_ops *ops;
};

// CPU kernel families, each used only when the CPU has the instructions.
// On x86 the families are ordered (each implies the one before); NEON is arm64's.
typedef enum { TY_CPU_PORTABLE, TY_CPU_AVX2, TY_CPU_AVX512, TY_CPU_NEON } ty_cpu_simd;

// The CPU backend with its fastest kernels for this CPU; n_threads <= 0 uses every core.
// max_simd TY_CPU_PORTABLE forces the portable C kernels anywhere.
ty_status backend_cpu_init(ty_backend **out, int n_threads, ty_err *err);
// The same with kernels up to max_simd (tests and benchmarks compare the families).
ty_status backend_cpu_init_simd(ty_backend **out, int n_threads, ty_cpu_simd max_simd, ty_err *err);
// The kernel family a CPU backend runs.
ty_cpu_simd backend_cpu_simd(const ty_backend *be);

#endif
