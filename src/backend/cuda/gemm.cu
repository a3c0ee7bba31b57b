// y = act(x · wᵀ + bias) on cuBLASLt. x (n, k) f32, w (m, k) bf16/f16/f32 in
// device memory, bias (1, m) any float dtype or none, y (n, m) f32.
//
// Numerics (NOTES.md): the tensor cores take both operands in one dtype, so
// for bf16 (f16) weights x is first rounded to bf16 (f16) into a scratch
// buffer; products are summed in f32 and y is written in f32. Against the CPU
// backend, which keeps x in f32, that is ~1e-3 relative on a row for random
// data (bf16 has 8 significant bits). f32 weights run in plain f32
// (CUBLAS_COMPUTE_32F, no TF32). By default bf16 weights go through
// matmul_split.cu, which calls this with x split into two bf16 halves.
//
// Speed (NOTES.md, "GEMM"): a decode step's GEMMs take a few µs each on the
// GPU, so what each call costs the host decides the step. A cuBLASLt plan
// (descriptor, layouts, the heuristic's algorithm) is built once per shape,
// strides, alignments and epilogue and kept in a hash map owned by the
// backend (2-3 µs a call saved on an H200). The bias and, with bf16/f16
// weights, the tanh GELU run in cuBLASLt's epilogue (BIAS, GELU, GELU_BIAS):
// one kernel launch (~4 µs of host time) and a pass over y fewer. The
// epilogue's bias is f32, so bf16/f16 biases (weights: activations are f32)
// are converted once into f32 copies kept per pointer until cuda_release
// frees the weight. The erf GELU, an f32 bias that is not 16-byte aligned and
// shapes cuBLASLt has no fused algorithm for take the bias/activation kernel
// after the GEMM; where cuBLASLt has no algorithm at all, a plain kernel (one
// thread per output, x in f32) computes the product.
#include <math.h>
#include <string.h>

#include "backend/cuda/cuda.h"

// x (n, k) f32 with a row stride -> packed (n, k) bf16 or f16.
template <typename T>
__global__ void round_rows(T *dst, const float *x, int64_t n, int64_t k, int64_t stride);
template <>
__global__ void round_rows<__nv_bfloat16>(__nv_bfloat16 *dst, const float *x, int64_t n, int64_t k, int64_t stride) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n * k) dst[i] = __float2bfloat16_rn(x[i / k * stride + i % k]);
}
template <>
__global__ void round_rows<__half>(__half *dst, const float *x, int64_t n, int64_t k, int64_t stride) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n * k) dst[i] = __float2half_rn(x[i / k * stride + i % k]);
}

__global__ void bias_act(float *y, int64_t n, int64_t m, int64_t stride, const void *bias, ty_dtype bdt, int act) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * m) return;
    int64_t r = i / m, j = i % m;
    float v = y[r * stride + j];
    if (bias) v += cuda_load(bias, bdt, j);
    y[r * stride + j] = cuda_activate(v, act);
}

__global__ void to_f32(float *dst, const void *src, ty_dtype dt, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = cuda_load(src, dt, i);
}

// The fallback product: one thread per output, x in f32, w in its dtype.
__global__ void gemm_plain(float *y, int64_t ys, const float *x, int64_t xs, const void *w, ty_dtype wdt, int64_t ws,
                           int64_t n, int64_t k, int64_t m) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * m) return;
    int64_t r = i / m, j = i % m;
    float s = 0.0f;
    for (int64_t p = 0; p < k; p++) s = fmaf(x[r * xs + p], cuda_load(w, wdt, j * ws + p), s);
    y[r * ys + j] = s;
}

// What makes two matmuls share a plan; all int64 so memcmp sees no padding.
typedef struct {
    int64_t n, m, k, lda, ldb, ldd;
    int64_t dtypes;      // w dtype | x dtype << 8 (x: as the GEMM reads it)
    int64_t alignments;  // A | B << 16 | D << 32 | bias << 48, in bytes
    int64_t epilogue;    // the cublasLtEpilogue_t asked for
} gemm_key;

typedef struct {
    gemm_key key;
    int used;
    int has_algo;                  // 0: cuBLASLt has none for this key: the plain kernel
    cublasLtEpilogue_t epilogue;   // what cuBLASLt applies: the asked one, or DEFAULT if it had no fused algorithm
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
} gemm_plan;

// An f32 copy of a bf16/f16 bias weight (the epilogue's bias is f32).
typedef struct {
    const void *src;
    ty_dtype dtype;
    int64_t m;
    float *f32;
} bias_copy;

// Open addressing, linear probing, at most half full. A serving run meets one
// key per (weight shape, row count): bounded by max_batch_tokens, so the map
// is simply emptied if it ever reaches CUDA_GEMM_MAX_PLANS.
enum { CUDA_GEMM_MAX_PLANS = 4096 };

struct cuda_gemm_state {
    int flags;  // CUDA_GEMM_NO_*: benchmarks
    gemm_plan *plans;
    int n_plans, cap_plans;  // cap_plans: a power of two (or 0)
    // A few hundred biases per model: a linear scan costs less than hashing would save.
    bias_copy *biases;
    int n_biases, cap_biases;
};

static cuda_gemm_state *gemm_state(cuda_backend *c) {
    if (!c->gemm) {
        c->gemm = (cuda_gemm_state *)calloc(1, sizeof *c->gemm);
        if (!c->gemm) abort();
    }
    return c->gemm;
}

static cudaDataType_t cuda_type(ty_dtype dt) {
    return dt == TY_DTYPE_BF16 ? CUDA_R_16BF : dt == TY_DTYPE_F16 ? CUDA_R_16F : CUDA_R_32F;
}

// The largest power of two (up to 256) that divides the address.
static uint32_t alignment(const void *p) {
    uintptr_t a = (uintptr_t)p;
    uint32_t al = 256;
    while (al > 1 && a % al) al /= 2;
    return al;
}

static void plan_destroy(gemm_plan *p) {
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->ld) cublasLtMatrixLayoutDestroy(p->ld);
    memset(p, 0, sizeof *p);
}

static int heuristic(cuda_backend *c, gemm_plan *p, const void *bias) {
    cublasLtMatmulPreference_t pref;
    LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t wsb = CUDA_LT_WORKSPACE;
    uint32_t aa = (uint32_t)(p->key.alignments & 0xffff), ab = (uint32_t)(p->key.alignments >> 16 & 0xffff),
             ad = (uint32_t)(p->key.alignments >> 32 & 0xffff);
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ad, sizeof ad));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ad, sizeof ad));
    LT_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &p->epilogue, sizeof p->epilogue));
    if (p->epilogue & CUBLASLT_EPILOGUE_BIAS) {
        // The heuristic reads the bias pointer's alignment (part of the key).
        cudaDataType_t bt = CUDA_R_32F;
        LT_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
        LT_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    }
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->la, p->lb, p->ld, p->ld, pref, 1, &res,
                                                       &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) return 0;
    p->algo = res.algo;
    return 1;
}

// In cuBLAS (column-major) terms: y is (m, n) column-major with ld y.stride;
// w (m, k) row-major is A = (k, m) column-major, transposed; x (n, k)
// row-major is B = (k, n) column-major. If cuBLASLt has no algorithm with the
// asked epilogue, the plan falls back to none (the caller's kernel does it).
static void plan_build(cuda_backend *c, gemm_plan *p, const gemm_key *key, ty_dtype wdt, ty_dtype xdt,
                       const void *bias) {
    memset(p, 0, sizeof *p);
    p->key = *key;
    p->used = 1;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    LT_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LT_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    LT_CHECK(cublasLtMatrixLayoutCreate(&p->la, cuda_type(wdt), (uint64_t)key->k, (uint64_t)key->m, key->lda));
    LT_CHECK(cublasLtMatrixLayoutCreate(&p->lb, cuda_type(xdt), (uint64_t)key->k, (uint64_t)key->n, key->ldb));
    LT_CHECK(cublasLtMatrixLayoutCreate(&p->ld, CUDA_R_32F, (uint64_t)key->m, (uint64_t)key->n, key->ldd));
    p->epilogue = (cublasLtEpilogue_t)key->epilogue;
    p->has_algo = heuristic(c, p, bias);
    if (!p->has_algo && p->epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
        p->epilogue = CUBLASLT_EPILOGUE_DEFAULT;
        p->has_algo = heuristic(c, p, NULL);
    }
}

static uint64_t key_hash(const gemm_key *k) {  // FNV-1a over the key's words
    const uint64_t *w = (const uint64_t *)k;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof *k / 8; i++) h = (h ^ w[i]) * 1099511628211ull;
    return h ^ h >> 29;
}

static void plans_clear(cuda_gemm_state *g) {
    for (int i = 0; i < g->cap_plans; i++)
        if (g->plans[i].used) plan_destroy(&g->plans[i]);
    g->n_plans = 0;
}

// The slot holding key, or the empty slot where it belongs.
static gemm_plan *plan_slot(cuda_gemm_state *g, const gemm_key *key) {
    int mask = g->cap_plans - 1;
    for (int i = (int)(key_hash(key) & (uint64_t)mask);; i = (i + 1) & mask)
        if (!g->plans[i].used || memcmp(&g->plans[i].key, key, sizeof *key) == 0) return &g->plans[i];
}

static gemm_plan *plan_get(cuda_backend *c, const gemm_key *key, ty_dtype wdt, ty_dtype xdt, const void *bias) {
    cuda_gemm_state *g = gemm_state(c);
    if (g->cap_plans) {
        gemm_plan *p = plan_slot(g, key);
        if (p->used) return p;
    }
    if (g->n_plans >= CUDA_GEMM_MAX_PLANS) plans_clear(g);
    if (2 * (g->n_plans + 1) > g->cap_plans) {  // grow, rehashing the plans kept
        int old_cap = g->cap_plans;
        gemm_plan *old = g->plans;
        g->cap_plans = old_cap ? old_cap * 2 : 64;
        g->plans = (gemm_plan *)calloc((size_t)g->cap_plans, sizeof *g->plans);
        if (!g->plans) abort();
        for (int i = 0; i < old_cap; i++)
            if (old[i].used) *plan_slot(g, &old[i].key) = old[i];
        free(old);
    }
    gemm_plan *p = plan_slot(g, key);
    plan_build(c, p, key, wdt, xdt, bias);
    g->n_plans++;
    return p;
}

// The bias as the f32 vector the epilogue reads, or NULL where it cannot (an
// unaligned f32 view: the bias kernel takes it).
static const float *bias_f32(cuda_backend *c, const ty_tensor *bias, int64_t m) {
    if (bias->dtype == TY_DTYPE_F32) return alignment(bias->data) >= 16 ? (const float *)bias->data : NULL;
    cuda_gemm_state *g = gemm_state(c);
    for (int i = 0; i < g->n_biases; i++)
        if (g->biases[i].src == bias->data && g->biases[i].dtype == bias->dtype && g->biases[i].m == m)
            return g->biases[i].f32;
    if (g->n_biases == g->cap_biases) {
        int cap = g->cap_biases ? g->cap_biases * 2 : 64;
        bias_copy *b = (bias_copy *)realloc(g->biases, (size_t)cap * sizeof *b);
        if (!b) abort();
        g->biases = b;
        g->cap_biases = cap;
    }
    bias_copy *b = &g->biases[g->n_biases];
    if (cudaMalloc(&b->f32, (size_t)m * sizeof(float)) != cudaSuccess) {
        cudaGetLastError();  // out of memory: the bias kernel reads the bf16 bias instead
        return NULL;
    }
    g->n_biases++;
    b->src = bias->data, b->dtype = bias->dtype, b->m = m;
    to_f32<<<cuda_blocks(m, 256), 256, 0, c->stream>>>(b->f32, bias->data, bias->dtype, m);
    CUDA_LAUNCHED();
    return b->f32;
}

void cuda_gemm_forget(cuda_backend *c, const void *p, size_t bytes) {
    cuda_gemm_state *g = c->gemm;
    if (!g) return;
    const char *lo = (const char *)p, *hi = lo + bytes;
    for (int i = g->n_biases - 1; i >= 0; i--) {
        const char *s = (const char *)g->biases[i].src;
        if (s >= lo && s < hi) {
            CUDA_CHECK(cudaStreamSynchronize(c->stream));  // matmuls queued on it may still read the copy
            CUDA_CHECK(cudaFree(g->biases[i].f32));
            g->biases[i] = g->biases[--g->n_biases];
        }
    }
}

void cuda_gemm_cache_free(cuda_backend *c) {
    cuda_gemm_state *g = c->gemm;
    if (!g) return;
    if (g->plans) plans_clear(g);
    free(g->plans);
    for (int i = 0; i < g->n_biases; i++) cudaFree(g->biases[i].f32);
    free(g->biases);
    free(g);
    c->gemm = NULL;
}

void cuda_gemm_set_flags(cuda_backend *c, int flags) {
    cuda_gemm_state *g = gemm_state(c);
    g->flags = flags;
    plans_clear(g);
}

// The epilogue that does what is asked, as far as cuBLASLt does it closely
// enough. Its GELU is the tanh form (the erf GELU stays in the kernel) and
// differs from tanhf's by ~2e-6 relative (measured on an H200: NOTES.md):
// noise beside bf16/f16 weights' ~1e-3, but the largest error f32 weights
// would carry (~1e-7 otherwise), so with those the kernel applies it.
static cublasLtEpilogue_t epilogue_for(int has_bias, ty_activation act, ty_dtype wdt, int flags) {
    if (act == TY_ACT_GELU_TANH && wdt != TY_DTYPE_F32 && !(flags & CUDA_GEMM_NO_GELU_EPILOGUE))
        return has_bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
    return has_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
}

void cuda_matmul(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor w, const ty_tensor *bias, ty_activation act) {
    cuda_backend *c = cuda_of(be);
    CUDA_CHECK(cudaSetDevice(c->device));
    int64_t n = x.rows, k = x.cols, m = w.rows;
    if (n == 0 || m == 0) return;
    enum { T = 256 };
    cuda_gemm_state *g = gemm_state(c);
    const void *xd = x.data;
    int64_t ldx = x.stride;
    ty_dtype xdt = TY_DTYPE_F32;
    if (w.dtype == TY_DTYPE_BF16 || w.dtype == TY_DTYPE_F16) {
        void *dst = cuda_scratch_get(c, &c->act, (size_t)(n * k) * 2);
        if (w.dtype == TY_DTYPE_BF16)
            round_rows<__nv_bfloat16><<<cuda_blocks(n * k, T), T, 0, c->stream>>>((__nv_bfloat16 *)dst,
                                                                                (const float *)x.data, n, k, x.stride);
        else
            round_rows<__half><<<cuda_blocks(n * k, T), T, 0, c->stream>>>((__half *)dst, (const float *)x.data, n, k,
                                                                        x.stride);
        CUDA_LAUNCHED();
        xd = dst;
        ldx = k;
        xdt = w.dtype;
    }
    const float *bias32 = bias && !(g->flags & CUDA_GEMM_NO_EPILOGUE) ? bias_f32(c, bias, m) : NULL;
    // A bias the epilogue cannot take leaves the activation to the kernel too (bias comes first).
    cublasLtEpilogue_t want = (g->flags & CUDA_GEMM_NO_EPILOGUE) || (bias && !bias32)
                                  ? CUBLASLT_EPILOGUE_DEFAULT
                                  : epilogue_for(bias32 != NULL, act, w.dtype, g->flags);
    // bias32 is NULL exactly when the epilogue has no bias: its alignment 0 then.
    gemm_key key = {n, m, k, w.stride, ldx, y.stride, (int64_t)w.dtype | (int64_t)xdt << 8,
                    (int64_t)alignment(w.data) | (int64_t)alignment(xd) << 16 | (int64_t)alignment(y.data) << 32 |
                        (int64_t)(bias32 ? alignment(bias32) : 0) << 48,
                    (int64_t)want};
    gemm_plan once, *p = NULL;
    if (k > 0) {
        if (g->flags & CUDA_GEMM_NO_CACHE)
            plan_build(c, p = &once, &key, w.dtype, xdt, bias32);
        else
            p = plan_get(c, &key, w.dtype, xdt, bias32);
    }
    int fused_bias = 0, fused_act = 0;
    if (p && p->has_algo) {
        if (p->epilogue & CUBLASLT_EPILOGUE_BIAS) {
            LT_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias32,
                                                    sizeof bias32));
            fused_bias = 1;
        }
        fused_act = (p->epilogue & CUBLASLT_EPILOGUE_GELU) != 0;
        float alpha = 1.0f, beta = 0.0f;
        LT_CHECK(cublasLtMatmul(c->lt, p->desc, &alpha, w.data, p->la, xd, p->lb, &beta, y.data, p->ld, y.data, p->ld,
                                &p->algo, c->workspace, CUDA_LT_WORKSPACE, c->stream));
    } else {
        gemm_plain<<<cuda_blocks(n * m, T), T, 0, c->stream>>>((float *)y.data, y.stride, (const float *)x.data,
                                                              x.stride, w.data, w.dtype, w.stride, n, k, m);
        CUDA_LAUNCHED();
    }
    if (p == &once) plan_destroy(&once);
    const ty_tensor *rest_bias = fused_bias ? NULL : bias;
    ty_activation rest_act = fused_act ? TY_ACT_NONE : act;
    if (rest_bias || rest_act != TY_ACT_NONE) {
        bias_act<<<cuda_blocks(n * m, T), T, 0, c->stream>>>((float *)y.data, n, m, y.stride,
                                                            rest_bias ? rest_bias->data : NULL,
                                                            rest_bias ? rest_bias->dtype : TY_DTYPE_F32,
                                                            (int)rest_act);
        CUDA_LAUNCHED();
    }
}
