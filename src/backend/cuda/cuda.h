// The CUDA backend's internals shared by its op files (one .cu per op family).
// C++ (nvcc) only.
#ifndef TYCHO_BACKEND_CUDA_CUDA_H
#define TYCHO_BACKEND_CUDA_CUDA_H

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

extern "C" {
#include "backend/backend.h"
}
#include "backend/cuda/backend_cuda.h"

// A device buffer that only grows (scratch for converted activations, attention's
// gathered keys and scores). Reused by consecutive ops on the one stream.
typedef struct {
    void *p;
    size_t bytes;
} cuda_scratch;

typedef struct {
    void *p;
    int pooled;  // from the stream-ordered pool (activations), else cudaMalloc (weights)
} cuda_alloc_rec;

// Every host->device copy of an op (metadata, cuda_write) goes through this ring
// (upload.cu): pinned host memory, so the copy is a DMA ordered on the stream, into
// a device region no queued kernel still reads. A region is reused only after an
// event shows the work queued while it was in use has finished.
enum { CUDA_RING_CHUNKS = 8 };
typedef struct {
    char *host;    // pinned, (CUDA_RING_CHUNKS, chunk) bytes
    char *dev;     // device, the same layout
    size_t chunk;  // bytes per chunk
    int cur;       // chunk being filled
    size_t used;   // bytes of it taken
    cudaEvent_t ev[CUDA_RING_CHUNKS];  // recorded when the ring leaves the chunk
    int pending[CUDA_RING_CHUNKS];     // ev recorded and not yet waited for
    uint64_t laps;                     // chunks left so far (+ CUDA_RING_CHUNKS when the ring is remade)
} cuda_ring;

// The last bytes one call site uploaded, so a repeat (the same batch metadata for
// every layer of a forward) reuses the device copy instead of another upload.
typedef struct {
    void *host;        // malloc'd copy of the bytes
    size_t n, cap;
    const void *dev;   // where they are on the device
    uint64_t laps;     // the ring's laps when uploaded: valid while fewer than CUDA_RING_CHUNKS since
} cuda_meta_cache;
enum { CUDA_META_ROPE, CUDA_META_KV_WRITE, CUDA_META_ATTENTION, CUDA_META_SITES };

typedef struct {
    ty_backend base;
    int device;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *workspace;  // cuBLASLt's (CUDA_LT_WORKSPACE bytes)
    cuda_scratch act;   // matmul: x rounded to the weight dtype
    cuda_ring up;       // host->device copies: batch metadata (ids, positions, page tables), cuda_write
    cuda_meta_cache meta[CUDA_META_SITES];  // per call site: its last upload (rope, kv_write, attention)
    cuda_scratch att;   // attention: gathered keys and values, scores, split-K partial results
    size_t smem_optin;  // shared memory a block may ask for
    cudaMemPool_t pool;  // activations and KV caches
    struct cuda_profile *prof;  // TYCHO_CUDA_PROFILE (profile.cu), else NULL
    int bf16_activations;  // 1: bf16-weight GEMMs round x to bf16 once; 0: exact split (matmul_split.cu)
    // Every device allocation (alloc and weight), freed with the backend.
    cuda_alloc_rec *allocs;
    int n_allocs, cap_allocs;
    // gemm.cu's caches: cuBLASLt plans per shape and f32 copies of biases (made on first use).
    struct cuda_gemm_state *gemm;
} cuda_backend;

enum { CUDA_LT_WORKSPACE = 32 << 20 };

static inline cuda_backend *cuda_of(ty_backend *be) { return (cuda_backend *)be; }

// Ops return nothing: a CUDA failure inside one is a broken device or a bug,
// so it is reported and the process stops (as the CPU backend aborts on OOM).
#define CUDA_CHECK(call)                                                                          \
    do {                                                                                          \
        cudaError_t e_ = (call);                                                                  \
        if (e_ != cudaSuccess) {                                                                  \
            fprintf(stderr, "tycho cuda: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,             \
                    cudaGetErrorString(e_));                                                      \
            abort();                                                                              \
        }                                                                                         \
    } while (0)
#define CUDA_LAUNCHED() CUDA_CHECK(cudaGetLastError())
#define LT_CHECK(call)                                                                            \
    do {                                                                                          \
        cublasStatus_t s_ = (call);                                                               \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                        \
            fprintf(stderr, "tycho cuda: %s:%d: %s: cublas status %d\n", __FILE__, __LINE__,      \
                    #call, (int)s_);                                                              \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

// The scratch buffer grown to at least `bytes` (stream-ordered: the old one is
// freed only after the stream's work that may read it is done).
void *cuda_scratch_get(cuda_backend *c, cuda_scratch *s, size_t bytes);

// The upload ring (upload.cu). init: 0 or the CUDA error; free: with the backend.
cudaError_t cuda_upload_init(cuda_backend *c);
void cuda_upload_free(cuda_backend *c);
// Copies n bytes of host data (an op's metadata) to a fresh 256-byte aligned device
// region, ordered on the stream; returns its device address, valid for the work
// queued next. The host copy may be reused as soon as this returns.
void *cuda_meta_upload(cuda_backend *c, const void *host, size_t n);
// cuda_meta_upload unless site's last upload had the same n bytes and its device
// copy is still live: then that copy (no copy queued, nothing on the stream).
const void *cuda_meta_upload_cached(cuda_backend *c, int site, const void *host, size_t n);
// dst (f32 rows with a stride) = host (dst.rows, dst.cols) f32, ordered on the stream.
void cuda_upload_rows(cuda_backend *c, ty_tensor dst, const float *host);

// Element reads of a bf16/f16/f32 array as f32.
__device__ __forceinline__ float cuda_load(const void *p, ty_dtype dt, int64_t i) {
    if (dt == TY_DTYPE_F32) return ((const float *)p)[i];
    unsigned short h = ((const unsigned short *)p)[i];
    if (dt == TY_DTYPE_BF16) return __uint_as_float((unsigned)h << 16);
    return __half2float(__ushort_as_half(h));
}

// The activations of matmul, in f32 (CUDA's tanhf / erff, as the CPU's).
__device__ __forceinline__ float cuda_activate(float v, int act) {
    if (act == TY_ACT_GELU_TANH) return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    if (act == TY_ACT_GELU_ERF) return 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
    return v;
}

static inline unsigned cuda_blocks(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

// gemm.cu's caches. forget drops what was made from device memory [p, p + bytes)
// (cuda_release calls it before freeing a weight); cache_free frees them all
// (with the backend). set_flags (benchmarks) turns the plan cache, the fused
// epilogues or only the fused GELU off to measure the path without them.
enum { CUDA_GEMM_NO_CACHE = 1, CUDA_GEMM_NO_EPILOGUE = 2, CUDA_GEMM_NO_GELU_EPILOGUE = 4 };
void cuda_gemm_forget(cuda_backend *c, const void *p, size_t bytes);
void cuda_gemm_cache_free(cuda_backend *c);
void cuda_gemm_set_flags(cuda_backend *c, int flags);

// TYCHO_CUDA_PROFILE=1: replaces c's ops with timed ones (profile.cu); a no-op otherwise.
typedef struct cuda_profile cuda_profile;
void cuda_profile_wrap(cuda_backend *c);

// Per-op entry points, wired into the ops table by cuda.cu.
void cuda_matmul(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor w, const ty_tensor *bias, ty_activation act);
// y = act(x · wᵀ + bias) for up to 8 rows of x, bf16 w, x in f32 (gemv.cu); 0 when the shape or
// alignment is not its (the caller then runs a GEMM).
int cuda_gemv(cuda_backend *c, ty_tensor y, ty_tensor x, ty_tensor w, const ty_tensor *bias, ty_activation act);
// The backend's matmul: cuda_matmul, or for bf16 weights with f32 activations the split of matmul_split.cu.
void cuda_matmul_exact(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor w, const ty_tensor *bias,
                       ty_activation act);
void cuda_layernorm(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor gamma, ty_tensor beta, float eps);
void cuda_add(ty_backend *be, ty_tensor y, ty_tensor a, ty_tensor b);
void cuda_add_layernorm(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor a, const ty_tensor *b, ty_tensor gamma,
                        ty_tensor beta, float eps);
void cuda_embed(ty_backend *be, ty_tensor y, ty_tensor table, const int32_t *ids);
void cuda_activate_op(ty_backend *be, ty_tensor y, ty_tensor x, ty_activation act);
void cuda_scale_heads(ty_backend *be, ty_tensor x, ty_tensor s, int head_dim);
void cuda_mul_plus_one(ty_backend *be, ty_tensor y, ty_tensor a, ty_tensor b);
void cuda_rows_weighted_sum(ty_backend *be, ty_tensor y, ty_tensor x, const int32_t *rows, const float *w, int k);
void cuda_patches(ty_backend *be, ty_tensor y, const uint8_t *pixels, int n, int h, int w, int ch, int p,
                  const float lut[256]);
void cuda_rope(ty_backend *be, ty_tensor x, int n_heads, int head_dim, int rot_dims, float theta,
               const ty_batch *batch);
void cuda_kv_write(ty_backend *be, ty_kv_layer *kv, ty_tensor k, ty_tensor v, const ty_batch *batch);
void cuda_attention(ty_backend *be, ty_tensor out, ty_tensor q, const ty_kv_layer *kv, int n_heads, int n_kv_heads,
                    int head_dim, float scale, const ty_batch *batch);
void cuda_attention_dense(ty_backend *be, ty_tensor out, ty_tensor q, ty_tensor k, ty_tensor v, int n_heads,
                          int head_dim, float scale, int group);

#endif
