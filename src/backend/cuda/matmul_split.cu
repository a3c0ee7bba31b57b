// matmul with bf16 weights and f32 activations kept f32: x is split into two
// bf16 parts, x = hi + lo (hi = bf16(x), lo = bf16(x - hi): together ~16
// significant bits, relative error ~2^-17), and one GEMM of 2n rows computes
// W·hi and W·lo (tensor-core products of bf16 values are exact, sums are
// f32); a second pass adds the halves, the bias and the activation.
//
// Why: rounding x to bf16 once (cuda_matmul) gives ~3e-3 relative error in
// the logits, enough to flip greedy tokens whose margin is well above the
// golden near-tie threshold (1e-3): measured on an H200, md2-tiny golden cases
// f_300x200_gray.caption.short/normal and d_1024x768.detect. The split costs
// twice the tensor-core work (prefill, vision) but reads W once, so decode
// (bandwidth-bound) pays little. backend_cuda_set_bf16_activations(be, 1)
// selects the single rounding for speed. Up to 8 rows (decode) take the f32
// GEMV of gemv.cu instead, exact as well, in either mode.
#include "backend/cuda/cuda.h"

// x (n, k) f32 with a row stride -> x2 (2n, k) f32: rows [0, n) hi, [n, 2n) lo.
__global__ void split_rows(float *x2, const float *x, int64_t n, int64_t k, int64_t xs) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * k) return;
    int64_t r = i / k, j = i % k;
    float v = x[r * xs + j], hi = __bfloat162float(__float2bfloat16_rn(v));
    x2[i] = hi;
    x2[n * k + i] = v - hi;  // exact in f32; cuda_matmul rounds it to bf16
}

// y (n, m) = act(y2[0, n) + y2[n, 2n) + bias).
__global__ void join_rows(float *y, int64_t ys, const float *y2, int64_t n, int64_t m, const void *bias,
                          ty_dtype bdt, int act) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * m) return;
    int64_t r = i / m, j = i % m;
    float v = y2[i] + y2[n * m + i];
    if (bias) v += cuda_load(bias, bdt, j);
    y[r * ys + j] = cuda_activate(v, act);
}

void cuda_matmul_exact(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor w, const ty_tensor *bias,
                       ty_activation act) {
    cuda_backend *c = cuda_of(be);
    int64_t n = x.rows, k = x.cols, m = w.rows;
    if (w.dtype != TY_DTYPE_BF16 || n == 0 || m == 0 || k == 0) {
        cuda_matmul(be, y, x, w, bias, act);
        return;
    }
    CUDA_CHECK(cudaSetDevice(c->device));
    // Decode rows: exact without a split (gemv.cu), in both precisions: one
    // bandwidth-bound launch instead of a rounding kernel and a GEMM.
    if (cuda_gemv(c, y, x, w, bias, act)) return;
    if (c->bf16_activations) {
        cuda_matmul(be, y, x, w, bias, act);
        return;
    }
    float *x2, *y2;  // (2n, k), (2n, m): stream-ordered scratch from the backend's pool
    CUDA_CHECK(cudaMallocFromPoolAsync((void **)&x2, (size_t)(2 * n * k) * sizeof(float), c->pool, c->stream));
    CUDA_CHECK(cudaMallocFromPoolAsync((void **)&y2, (size_t)(2 * n * m) * sizeof(float), c->pool, c->stream));
    enum { T = 256 };
    split_rows<<<cuda_blocks(n * k, T), T, 0, c->stream>>>(x2, (const float *)x.data, n, k, x.stride);
    CUDA_LAUNCHED();
    ty_tensor xt = {TY_DTYPE_F32, 2 * n, k, k, x2}, yt = {TY_DTYPE_F32, 2 * n, m, m, y2};
    cuda_matmul(be, yt, xt, w, NULL, TY_ACT_NONE);
    join_rows<<<cuda_blocks(n * m, T), T, 0, c->stream>>>((float *)y.data, y.stride, y2, n, m,
                                                         bias ? bias->data : NULL,
                                                         bias ? bias->dtype : TY_DTYPE_F32, (int)act);
    CUDA_LAUNCHED();
    CUDA_CHECK(cudaFreeAsync(x2, c->stream));
    CUDA_CHECK(cudaFreeAsync(y2, c->stream));
}

extern "C" void backend_cuda_set_bf16_activations(ty_backend *be, int on) { cuda_of(be)->bf16_activations = on; }
