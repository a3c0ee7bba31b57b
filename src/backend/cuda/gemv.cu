// Decode-sized matmul (a few rows) with bf16 weights and f32 activations:
// memory-bound, so a SIMT kernel that streams each weight row once and
// multiplies by x in f32 beats cuBLASLt's tensor-core path here (measured on
// an H200 before this kernel: 22-29 us per decode GEMM of 8-34 MB, ~3x the
// bandwidth time) and needs no split of x into bf16 halves: the products
// bf16 w x f32 x are the CPU backend's, summed in f32 in another order.
//
// One warp per output column j: lanes read 8 consecutive bf16 of w's row j
// (16 bytes) per step, multiply by x's rows, reduce across the warp; lane 0
// adds the bias and applies the activation.
#include "backend/cuda/cuda.h"

enum { GEMV_MAX_ROWS = 8, GEMV_WARPS = 8, GEMV_UNROLL = 4 };

__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_bf16(float *y, int64_t ys, const float *x, int64_t xs, const __nv_bfloat16 *w, int64_t ws, int n, int64_t k,
              int64_t m, const void *bias, ty_dtype bdt, int act) {
    int lane = threadIdx.x % 32;
    int64_t j = (int64_t)blockIdx.x * GEMV_WARPS + threadIdx.x / 32;
    if (j >= m) return;
    const uint4 *wr = (const uint4 *)(w + j * ws);
    float acc[GEMV_MAX_ROWS] = {0};
    int64_t chunks = k / 8;  // of 8 bf16 (16 bytes)
    // GEMV_UNROLL loads in flight per lane before any is used: one load at a
    // time leaves the memory system idle (first version: ~1.3 TB/s).
    for (int64_t c0 = lane; c0 < chunks; c0 += 32 * GEMV_UNROLL) {
        uint4 raw[GEMV_UNROLL];
        for (int u = 0; u < GEMV_UNROLL; u++) {
            int64_t c = c0 + 32 * u;
            raw[u] = c < chunks ? __ldg(wr + c) : make_uint4(0, 0, 0, 0);
        }
        for (int u = 0; u < GEMV_UNROLL; u++) {
            int64_t c = c0 + 32 * u;
            if (c >= chunks) break;
            const __nv_bfloat162 *h = (const __nv_bfloat162 *)&raw[u];
            float wf[8];
            for (int i = 0; i < 4; i++) {
                float2 f = __bfloat1622float2(h[i]);
                wf[2 * i] = f.x, wf[2 * i + 1] = f.y;
            }
            for (int r = 0; r < n; r++) {
                const float4 *xr = (const float4 *)(x + r * xs) + 2 * c;
                float4 a = xr[0], b = xr[1];
                acc[r] += wf[0] * a.x + wf[1] * a.y + wf[2] * a.z + wf[3] * a.w + wf[4] * b.x + wf[5] * b.y +
                          wf[6] * b.z + wf[7] * b.w;
            }
        }
    }
    for (int r = 0; r < n; r++) {
        float v = acc[r];
        for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) {
            if (bias) v += cuda_load(bias, bdt, j);
            y[r * ys + j] = cuda_activate(v, act);
        }
    }
}

int cuda_gemv(cuda_backend *c, ty_tensor y, ty_tensor x, ty_tensor w, const ty_tensor *bias, ty_activation act) {
    int64_t n = x.rows, k = x.cols, m = w.rows;
    // 16-byte loads of w's rows and x's rows.
    if (w.dtype != TY_DTYPE_BF16 || n < 1 || n > GEMV_MAX_ROWS || k % 8 || w.stride % 8 || x.stride % 4 ||
        (uintptr_t)w.data % 16 || (uintptr_t)x.data % 16)
        return 0;
    gemv_bf16<<<cuda_blocks(m, GEMV_WARPS), GEMV_WARPS * 32, 0, c->stream>>>(
        (float *)y.data, y.stride, (const float *)x.data, x.stride, (const __nv_bfloat16 *)w.data, w.stride, (int)n, k,
        m, bias ? bias->data : NULL, bias ? bias->dtype : TY_DTYPE_F32, (int)act);
    CUDA_LAUNCHED();
    return 1;
}
