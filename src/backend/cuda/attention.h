// Attention internals shared by its three files:
//   attention.cu       entry points, the batch's metadata, which rows take which path
//   attention_rows.cu  the f32 path: a block per (query row, head[, slice of keys])
//   attention_gemm.cu  the tensor-core path: batched TF32 GEMMs around an f32 softmax
//   attention_flash.cu the same arithmetic fused in one kernel (head_dim 64 and 72)
//   attention_mma.cu   bf16 mode: a one-pass bf16 flash kernel (head_dim 64 and 72)
// C++ (nvcc) only.
#ifndef TYCHO_BACKEND_CUDA_ATTENTION_H
#define TYCHO_BACKEND_CUDA_ATTENTION_H

#include "backend/cuda/cuda.h"

// Which path attention takes; TYCHO_CUDA_ATTENTION picks one (tests, benchmarks).
typedef enum {
    ATT_PATH_ROWS,   // "rows": the first kernel, a block per (row, head), everywhere (exact f32)
    ATT_PATH_SPLIT,  // "split": the f32 row kernel, keys split across blocks when rows are few
    ATT_PATH_GEMM,   // "gemm": TF32 GEMMs + softmax for dense groups and prefill sequences, split rows elsewhere
    ATT_PATH_FLASH,  // "flash": as gemm, with the fused kernel wherever it applies
    ATT_PATH_TC,     // "tc" (default): as gemm, with the fused kernel where it measured faster (att_flash_wins);
                     //   in bf16 mode (c->bf16_activations) the bf16 kernel (att_mma) first
    ATT_PATH_MMA,    // "mma": as tc, with the bf16 kernel wherever it applies, in either mode
} att_path;

// A sequence takes the tensor-core path when this forward has at least this many of its
// rows (TYCHO_CUDA_ATTENTION_PREFILL_ROWS overrides; NOTES.md has the measurement).
enum { ATT_PREFILL_ROWS = 16 };

// Where a row's keys live: paged (seq/page tables) or dense (group g's rows).
typedef struct {
    const float *k, *v;
    int64_t ks, vs;
    const int32_t *seq, *visible, *page_off, *pages;  // paged, indexed by the launch's row ids; NULL when dense
    int ps, group;
} att_keys;

// Cache row of position t of sequence s.
__device__ __forceinline__ int64_t att_cache_row(const int32_t *page_off, const int32_t *pages, int s, int t, int ps) {
    return (int64_t)pages[page_off[s] + t / ps] * ps + t % ps;
}

// ---- attention_rows.cu -----------------------------------------------------------------

// Blocks per query row and head (1: no split) for n rows over up to max_keys keys: enough
// to fill the GPU when n * n_heads blocks would not, each slice at least a few dozen keys.
int att_rows_splits(cuda_backend *c, int n, int n_heads, int max_keys);
// Floats of scratch att_rows needs for the partial results of a split launch.
size_t att_rows_scratch(int n, int n_heads, int head_dim, int splits);
// out[r, h] for the launch's rows: row ids rows[0, n) on the device (NULL: 0 .. n-1),
// each over its visible keys (src). splits > 1 needs part (att_rows_scratch floats).
void att_rows(cuda_backend *c, ty_tensor out, ty_tensor q, att_keys src, const int32_t *rows, int n, int n_heads,
              int head_dim, int kv_group, float scale, int max_keys, int splits, float *part);

// ---- attention_gemm.cu -----------------------------------------------------------------

// cuBLASLt plans made during one op call (every group of a dense call shares its shapes).
typedef struct att_gemm_plans att_gemm_plans;
att_gemm_plans *att_gemm_plans_new(void);
void att_gemm_plans_free(att_gemm_plans *p);

// Floats of score scratch that att_gemm uses for nq rows over nk keys (whole, or capped:
// then the rows run in chunks).
size_t att_gemm_scratch(int nq, int nk, int n_heads);
// out (nq, n_heads*hd) = softmax(Q·Kᵀ · scale, row i over its first visible[i] keys, or all
// nk when visible is NULL) · V on tensor cores (TF32 products, f32 sums and softmax).
// q (nq, n_heads*hd), k and v (nk, n_kv_heads*hd), each with its row stride; scores is
// att_gemm_scratch floats of device memory. Returns 0, having launched nothing, where
// cuBLASLt offers no algorithm for these shapes and alignments.
int att_gemm(cuda_backend *c, att_gemm_plans *plans, float *scores, size_t scores_floats, float *out, int64_t os,
             const float *q, int64_t qs, const float *k, int64_t ks, const float *v, int64_t vs, int nq, int nk,
             int n_heads, int n_kv_heads, int hd, float scale, const int32_t *visible);
// ---- attention_flash.cu ----------------------------------------------------------------

// att_gemm's result (the same TF32 products, softmax and rounding of p) from one fused
// kernel, for `groups` groups at once: group z's rows are q/out rows [z*nq, (z+1)*nq) and
// its keys k/v rows [z*nk, (z+1)*nk). Returns 0, having launched nothing, where it does not
// apply (head_dim other than 64 and 72, key rows not 16-byte aligned).
// Where the fused kernel beats the GEMM path (measured, NOTES.md): nq rows per group.
int att_flash_wins(int nq, int groups);
int att_flash(cuda_backend *c, float *out, int64_t os, const float *q, int64_t qs, const float *k, int64_t ks,
              const float *v, int64_t vs, int nq, int nk, int n_heads, int n_kv_heads, int hd, float scale,
              const int32_t *visible, int groups);

// ---- attention_mma.cu ------------------------------------------------------------------

// The backend's bf16 mode (c->bf16_activations; TYCHO_CUDA_ATTENTION=mma forces it): att_flash's
// arguments and result, on bf16 tensor cores (mma.sync m16n8k16, f32 accumulators) in one pass
// with an online softmax: q, k, v and p rounded to bf16 (nearest), the rest f32. Returns 0,
// having launched nothing, where it does not apply (head_dim other than 64 and 72, key rows
// not 16-byte aligned, q or out rows not 8-byte aligned).
int att_mma(cuda_backend *c, float *out, int64_t os, const float *q, int64_t qs, const float *k, int64_t ks,
            const float *v, int64_t vs, int nq, int nk, int n_heads, int n_kv_heads, int hd, float scale,
            const int32_t *visible, int groups);

// Positions [0, n) of sequence s copied from the paged cache into contiguous rows
// k_dst, v_dst (n, cols).
void att_gather(cuda_backend *c, float *k_dst, float *v_dst, const ty_kv_layer *kv, int cols, const int32_t *page_off,
                const int32_t *pages, int s, int n);

#endif
