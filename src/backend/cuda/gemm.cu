// y = act(x · wᵀ + bias) on cuBLASLt. x (n, k) f32, w (m, k) bf16/f16/f32 in
// device memory, bias (1, m) any float dtype or none, y (n, m) f32.
//
// Numerics (decided for this first slice; NOTES.md): the tensor cores take
// both operands in one dtype, so for bf16 (f16) weights x is first rounded to
// bf16 (f16) into a scratch buffer; products are summed in f32 and y is
// written in f32. Against the CPU backend, which keeps x in f32, that is a
// relative error of about 2^-9 per product term, ~1e-3 relative on a whole
// row for random data (bf16 has 8 significant bits). f32 weights run in
// plain f32 (CUBLAS_COMPUTE_32F, no TF32).
//
// The bias and the activation run in one kernel after the GEMM (a pass over
// y). cuBLASLt's own BIAS/GELU epilogues would save that pass, but its GELU is
// the tanh form only and its bias must be the output dtype; they come with the
// speed work. Where cuBLASLt has no algorithm for a shape or alignment, a
// plain kernel (one thread per output, x in f32) computes the product.
#include <math.h>

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

__device__ __forceinline__ float activate(float v, int act) {
    if (act == TY_ACT_GELU_TANH) return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    if (act == TY_ACT_GELU_ERF) return 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
    return v;
}

__global__ void bias_act(float *y, int64_t n, int64_t m, int64_t stride, const void *bias, ty_dtype bdt, int act) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * m) return;
    int64_t r = i / m, j = i % m;
    float v = y[r * stride + j];
    if (bias) v += cuda_load(bias, bdt, j);
    y[r * stride + j] = activate(v, act);
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

// In cuBLAS (column-major) terms: y is (m, n) column-major with
// ld y.stride; w (m, k) row-major is A = (k, m) column-major, transposed; x
// (n, k) row-major is B = (k, n) column-major. Returns 0 if no algorithm fits.
static int lt_matmul(cuda_backend *c, ty_tensor y, const void *xd, int64_t ldx, ty_dtype xdt, ty_tensor w) {
    int64_t n = y.rows, m = y.cols, k = w.cols;
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    LT_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LT_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    LT_CHECK(cublasLtMatrixLayoutCreate(&la, cuda_type(w.dtype), (uint64_t)k, (uint64_t)m, w.stride));
    LT_CHECK(cublasLtMatrixLayoutCreate(&lb, cuda_type(xdt), (uint64_t)k, (uint64_t)n, ldx));
    LT_CHECK(cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, (uint64_t)m, (uint64_t)n, y.stride));
    LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t wsb = CUDA_LT_WORKSPACE;
    uint32_t aa = alignment(w.data), ab = alignment(xd), ad = alignment(y.data);
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ad, sizeof ad));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ad, sizeof ad));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(c->lt, desc, la, lb, ld, ld, pref, 1, &res, &found);
    int ok = st == CUBLAS_STATUS_SUCCESS && found > 0;
    if (ok) {
        float alpha = 1.0f, beta = 0.0f;
        LT_CHECK(cublasLtMatmul(c->lt, desc, &alpha, w.data, la, xd, lb, &beta, y.data, ld, y.data, ld, &res.algo,
                                c->workspace, CUDA_LT_WORKSPACE, c->stream));
    }
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(ld);
    cublasLtMatmulDescDestroy(desc);
    return ok;
}

void cuda_matmul(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor w, const ty_tensor *bias, ty_activation act) {
    cuda_backend *c = cuda_of(be);
    CUDA_CHECK(cudaSetDevice(c->device));
    int64_t n = x.rows, k = x.cols, m = w.rows;
    if (n == 0 || m == 0) return;
    enum { T = 256 };
    const void *xd = x.data;
    int64_t ldx = x.stride;
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
    }
    if (k == 0 || !lt_matmul(c, y, xd, ldx, w.dtype, w)) {
        gemm_plain<<<cuda_blocks(n * m, T), T, 0, c->stream>>>((float *)y.data, y.stride, (const float *)x.data,
                                                              x.stride, w.data, w.dtype, w.stride, n, k, m);
        CUDA_LAUNCHED();
    }
    if (bias || act != TY_ACT_NONE) {
        bias_act<<<cuda_blocks(n * m, T), T, 0, c->stream>>>((float *)y.data, n, m, y.stride,
                                                            bias ? bias->data : NULL,
                                                            bias ? bias->dtype : TY_DTYPE_F32, (int)act);
        CUDA_LAUNCHED();
    }
}
