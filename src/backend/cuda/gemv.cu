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

// N rows of x, a compile-time count, so acc[] stays in registers (with a
// runtime count it lived in local memory). Kernel alone on an H100 (rotating
// weights, not in L2), k 2048 x m 6144, one row: 12.0 us, 2.1 TB/s, with 4
// loads in flight per lane; 8 or 16 in flight measured slower (15.1, 13.8 us),
// as did x staged in shared memory (14.7 us) and 4 or 2 warps per block.
template <int N>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_bf16(float *y, int64_t ys, const float *x, int64_t xs, const __nv_bfloat16 *w, int64_t ws, int64_t k,
              int64_t m, const void *bias, ty_dtype bdt, int act) {
    int lane = threadIdx.x % 32;
    int64_t j = (int64_t)blockIdx.x * GEMV_WARPS + threadIdx.x / 32;
    if (j >= m) return;
    const uint4 *wr = (const uint4 *)(w + j * ws);
    float acc[N];
#pragma unroll
    for (int r = 0; r < N; r++) acc[r] = 0.0f;
    int64_t chunks = k / 8;  // of 8 bf16 (16 bytes)
    // GEMV_UNROLL loads in flight per lane before any is used: one load at a
    // time leaves the memory system idle (first version: ~1.3 TB/s).
    for (int64_t c0 = lane; c0 < chunks; c0 += 32 * GEMV_UNROLL) {
        uint4 raw[GEMV_UNROLL];
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            int64_t c = c0 + 32 * u;
            raw[u] = c < chunks ? __ldg(wr + c) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            int64_t c = c0 + 32 * u;
            if (c >= chunks) break;
            const __nv_bfloat162 *h = (const __nv_bfloat162 *)&raw[u];
            float wf[8];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float2 f = __bfloat1622float2(h[i]);
                wf[2 * i] = f.x, wf[2 * i + 1] = f.y;
            }
#pragma unroll
            for (int r = 0; r < N; r++) {
                const float4 *xr = (const float4 *)(x + r * xs) + 2 * c;
                float4 a = __ldg(xr), b = __ldg(xr + 1);
                acc[r] += wf[0] * a.x + wf[1] * a.y + wf[2] * a.z + wf[3] * a.w + wf[4] * b.x + wf[5] * b.y +
                          wf[6] * b.z + wf[7] * b.w;
            }
        }
    }
#pragma unroll
    for (int r = 0; r < N; r++) {
        float v = acc[r];
        for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) {
            if (bias) v += cuda_load(bias, bdt, j);
            y[r * ys + j] = cuda_activate(v, act);
        }
    }
}

template <int N>
static void launch(cuda_backend *c, ty_tensor y, ty_tensor x, ty_tensor w, const ty_tensor *bias, ty_activation act) {
    gemv_bf16<N><<<cuda_blocks(w.rows, GEMV_WARPS), GEMV_WARPS * 32, 0, c->stream>>>(
        (float *)y.data, y.stride, (const float *)x.data, x.stride, (const __nv_bfloat16 *)w.data, w.stride, x.cols,
        w.rows, bias ? bias->data : NULL, bias ? bias->dtype : TY_DTYPE_F32, (int)act);
}

int cuda_gemv(cuda_backend *c, ty_tensor y, ty_tensor x, ty_tensor w, const ty_tensor *bias, ty_activation act) {
    int64_t n = x.rows, k = x.cols;
    // 16-byte loads of w's rows and x's rows.
    if (w.dtype != TY_DTYPE_BF16 || n < 1 || n > GEMV_MAX_ROWS || k % 8 || w.stride % 8 || x.stride % 4 ||
        (uintptr_t)w.data % 16 || (uintptr_t)x.data % 16)
        return 0;
    switch (n) {
    case 1: launch<1>(c, y, x, w, bias, act); break;
    case 2: launch<2>(c, y, x, w, bias, act); break;
    case 3: launch<3>(c, y, x, w, bias, act); break;
    case 4: launch<4>(c, y, x, w, bias, act); break;
    case 5: launch<5>(c, y, x, w, bias, act); break;
    case 6: launch<6>(c, y, x, w, bias, act); break;
    case 7: launch<7>(c, y, x, w, bias, act); break;
    default: launch<8>(c, y, x, w, bias, act); break;
    }
    CUDA_LAUNCHED();
    return 1;
}
