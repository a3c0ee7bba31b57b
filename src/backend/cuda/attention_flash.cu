// The fused tensor-core attention kernel: the GEMM path's arithmetic (TF32
// products rounded to nearest, f32 sums, the same f32 softmax) without the
// scores ever leaving the SM. Used for head_dim 64 and 72 (the text decoder's
// and the vision tower's); the GEMM path (attention_gemm.cu) stays the
// reference and takes every other shape.
//
// A block is 64 query rows of one head (4 warps of 16 rows) of one group; it
// walks the keys in tiles of 64 held in shared memory, on mma.sync m16n8k8
// TF32 (fragment layouts: PTX ISA, "Matrix Fragments for mma.m16n8k8").
// Two passes over the keys: the first takes each row's max and exp-sum (online,
// as the GEMM path's softmax kernel), the second forms p = e^(s·scale − m) / l,
// rounds it to TF32 and accumulates p·V. The second recomputes Q·Kᵀ (1.5x the
// products of one pass) so that p is rounded after normalisation, exactly as
// the GEMM path rounds P: both then match one double reference (test_cuda_ops).
// Tiles arrive by cp.async into two buffers (the next tile lands while this one
// is used) in f32; operands are rounded to TF32 as they enter the mma.
#include <math.h>

#include "backend/cuda/attention.h"

enum { FLASH_ROWS = 64, FLASH_KEYS = 64, FLASH_THREADS = 128 };

__device__ __forceinline__ uint32_t to_tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

// d (16x8, f32) += a (16x8, tf32, row) · b (8x8, tf32, col).
__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <int HD>
struct flash_shape {
    static constexpr int KS = HD + 4;                    // K tile row stride ≡ 4 (mod 8): B loads conflict-free
    static constexpr int VS = HD + (40 - HD % 32) % 32;  // V tile row stride ≡ 8 (mod 32): likewise
    static constexpr int PS = FLASH_KEYS + 4;            // a warp's p rows
    static constexpr int K_TILE = FLASH_KEYS * KS, V_TILE = FLASH_KEYS * VS;
    static constexpr size_t smem = sizeof(float) * (2 * K_TILE + 2 * V_TILE + 4 * 16 * PS);
};

// 16 bytes global -> shared without passing through registers; zeros when !ok.
__device__ __forceinline__ void cp_async16(float *dst, const float *src, bool ok) {
    unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(ok ? 16 : 0));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_wait_all_but_last() { asm volatile("cp.async.wait_group 1;\n" ::); }

// Starts copying keys [j0, j0 + FLASH_KEYS) of one kv head into a tile, zeros past nk.
template <int HD>
__device__ __forceinline__ void issue_tile(float *dst, int stride, const float *src, int64_t ss, int j0, int nk) {
    for (int i = threadIdx.x; i < FLASH_KEYS * HD / 4; i += FLASH_THREADS) {
        int r = i / (HD / 4), c = i % (HD / 4) * 4;
        bool ok = j0 + r < nk;
        cp_async16(dst + r * stride + c, ok ? src + (int64_t)(j0 + r) * ss + c : src, ok);
    }
}

// s (16 rows x 64 keys of this warp) = Q · K_tileᵀ · scale.
template <int HD>
__device__ __forceinline__ void tile_scores(float (&s)[8][4], const uint32_t (&qa)[HD / 8][4], const float *kt, int g,
                                            int t, float scale) {
    constexpr int KS = flash_shape<HD>::KS;
#pragma unroll
    for (int n = 0; n < 8; n++) {
        s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < HD / 8; kk++) {
            const float *kr = kt + (n * 8 + g) * KS + kk * 8 + t;
            mma_tf32(s[n], qa[kk], to_tf32(kr[0]), to_tf32(kr[4]));
        }
#pragma unroll
        for (int e = 0; e < 4; e++) s[n][e] *= scale;
    }
}

// Grid (row tiles, heads, groups). Group z's rows are q/out rows [z*nq, (z+1)*nq), its keys
// k/v rows [z*nk, (z+1)*nk). visible (nq) or NULL: row i sees keys [0, visible[i]).
template <int HD>
__global__ void __launch_bounds__(FLASH_THREADS) flash_tf32(float *out, int64_t os, const float *q, int64_t qs,
                                                              const float *k, int64_t ks, const float *v, int64_t vs,
                                                              int nq, int nk, int kv_group, float scale,
                                                              const int32_t *visible) {
    using F = flash_shape<HD>;
    extern __shared__ float4 sm4[];  // float4: 16-byte aligned for cp.async
    __shared__ int block_keys;
    float *sm = (float *)sm4;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    int h = blockIdx.y, kvh = h / kv_group, z = blockIdx.z;
    float *kt = sm, *vt = kt + 2 * F::K_TILE, *pt = vt + 2 * F::V_TILE + warp * 16 * F::PS;  // (2 tiles), (2), (16, PS)
    q += (int64_t)z * nq * qs + (int64_t)h * HD;
    out += (int64_t)z * nq * os + (int64_t)h * HD;
    k += (int64_t)z * nk * ks + (int64_t)kvh * HD;
    v += (int64_t)z * nk * vs + (int64_t)kvh * HD;
    int ra = blockIdx.x * FLASH_ROWS + warp * 16 + g, rb = ra + 8;  // this thread's two rows
    int nva = ra < nq ? (visible && visible[ra] < nk ? visible[ra] : nk) : 0;
    int nvb = rb < nq ? (visible && visible[rb] < nk ? visible[rb] : nk) : 0;
    if (threadIdx.x == 0) block_keys = 0;
    __syncthreads();
    atomicMax(&block_keys, nva > nvb ? nva : nvb);
    uint32_t qa[HD / 8][4];
#pragma unroll
    for (int kk = 0; kk < HD / 8; kk++) {
        int d = kk * 8 + t;
        qa[kk][0] = to_tf32(ra < nq ? q[(int64_t)ra * qs + d] : 0.0f);
        qa[kk][1] = to_tf32(rb < nq ? q[(int64_t)rb * qs + d] : 0.0f);
        qa[kk][2] = to_tf32(ra < nq ? q[(int64_t)ra * qs + d + 4] : 0.0f);
        qa[kk][3] = to_tf32(rb < nq ? q[(int64_t)rb * qs + d + 4] : 0.0f);
    }
    __syncthreads();
    int n_tiles = (block_keys + FLASH_KEYS - 1) / FLASH_KEYS;
    float s[8][4];
    // Pass 1: each row's max m and sum l of e^(x − m), a tile at a time (the tile's max
    // first, so its 16 exponentials per row are independent), then over the quad.
    float ma = -INFINITY, la = 0.0f, mb = -INFINITY, lb = 0.0f;
    if (n_tiles) issue_tile<HD>(kt, F::KS, k, ks, 0, nk);
    cp_commit();
    for (int it = 0; it < n_tiles; it++) {
        int j0 = it * FLASH_KEYS;
        if (it + 1 < n_tiles) issue_tile<HD>(kt + ((it + 1) & 1) * F::K_TILE, F::KS, k, ks, j0 + FLASH_KEYS, nk);
        cp_commit();
        cp_wait_all_but_last();  // tile it has landed (this thread's copies) ...
        __syncthreads();         // ... and every thread's
        tile_scores<HD>(s, qa, kt + (it & 1) * F::K_TILE, g, t, scale);
        float xa = -INFINITY, xb = -INFINITY;
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int j = j0 + n * 8 + 2 * t + (e & 1);
                if (j >= (e < 2 ? nva : nvb)) s[n][e] = -INFINITY;
                if (e < 2) xa = fmaxf(xa, s[n][e]);
                else xb = fmaxf(xb, s[n][e]);
            }
        float na = fmaxf(ma, xa), nb = fmaxf(mb, xb), sa = 0.0f, sb = 0.0f;
#pragma unroll
        for (int n = 0; n < 8; n++) {  // e^(-inf) = 0 for the masked keys
            sa += expf(s[n][0] - na) + expf(s[n][1] - na);
            sb += expf(s[n][2] - nb) + expf(s[n][3] - nb);
        }
        if (na > -INFINITY) la = (la > 0.0f ? la * expf(ma - na) : 0.0f) + sa, ma = na;
        if (nb > -INFINITY) lb = (lb > 0.0f ? lb * expf(mb - nb) : 0.0f) + sb, mb = nb;
        __syncthreads();  // tile it is read: the next iteration refills its buffer
    }
#pragma unroll
    for (int o = 1; o <= 2; o *= 2) {
        float m2 = __shfl_xor_sync(0xffffffffu, ma, o), l2 = __shfl_xor_sync(0xffffffffu, la, o), mm = fmaxf(ma, m2);
        la = (la > 0.0f ? la * expf(ma - mm) : 0.0f) + (l2 > 0.0f ? l2 * expf(m2 - mm) : 0.0f), ma = mm;
        m2 = __shfl_xor_sync(0xffffffffu, mb, o), l2 = __shfl_xor_sync(0xffffffffu, lb, o), mm = fmaxf(mb, m2);
        lb = (lb > 0.0f ? lb * expf(mb - mm) : 0.0f) + (l2 > 0.0f ? l2 * expf(m2 - mm) : 0.0f), mb = mm;
    }
    float inva = la > 0.0f ? 1.0f / la : 0.0f, invb = lb > 0.0f ? 1.0f / lb : 0.0f;
    // Pass 2: o = Σ tf32(e^(x − m) / l) · v.
    float o[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    if (n_tiles) {
        issue_tile<HD>(kt, F::KS, k, ks, 0, nk);
        issue_tile<HD>(vt, F::VS, v, vs, 0, nk);
    }
    cp_commit();
    for (int it = 0; it < n_tiles; it++) {
        int j0 = it * FLASH_KEYS, nb = (it + 1) & 1;
        if (it + 1 < n_tiles) {
            issue_tile<HD>(kt + nb * F::K_TILE, F::KS, k, ks, j0 + FLASH_KEYS, nk);
            issue_tile<HD>(vt + nb * F::V_TILE, F::VS, v, vs, j0 + FLASH_KEYS, nk);
        }
        cp_commit();
        cp_wait_all_but_last();
        __syncthreads();
        const float *vb = vt + (it & 1) * F::V_TILE;
        tile_scores<HD>(s, qa, kt + (it & 1) * F::K_TILE, g, t, scale);
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int j = j0 + n * 8 + 2 * t + (e & 1);
                float p = 0.0f;
                if (j < (e < 2 ? nva : nvb)) p = expf(s[n][e] - (e < 2 ? ma : mb)) * (e < 2 ? inva : invb);
                pt[(g + (e < 2 ? 0 : 8)) * F::PS + n * 8 + 2 * t + (e & 1)] = __uint_as_float(to_tf32(p));
            }
        __syncwarp();
#pragma unroll
        for (int kk = 0; kk < FLASH_KEYS / 8; kk++) {
            uint32_t pa[4];
            pa[0] = __float_as_uint(pt[g * F::PS + kk * 8 + t]);
            pa[1] = __float_as_uint(pt[(g + 8) * F::PS + kk * 8 + t]);
            pa[2] = __float_as_uint(pt[g * F::PS + kk * 8 + t + 4]);
            pa[3] = __float_as_uint(pt[(g + 8) * F::PS + kk * 8 + t + 4]);
#pragma unroll
            for (int n = 0; n < HD / 8; n++) {
                const float *vr = vb + (kk * 8 + t) * F::VS + n * 8 + g;
                mma_tf32(o[n], pa, to_tf32(vr[0]), to_tf32(vr[4 * F::VS]));
            }
        }
        __syncthreads();  // p and tile it are read before they are refilled
    }
#pragma unroll
    for (int n = 0; n < HD / 8; n++) {
        int d = n * 8 + 2 * t;
        if (ra < nq) out[(int64_t)ra * os + d] = o[n][0], out[(int64_t)ra * os + d + 1] = o[n][1];
        if (rb < nq) out[(int64_t)rb * os + d] = o[n][2], out[(int64_t)rb * os + d + 1] = o[n][3];
    }
}

template <int HD>
static void launch(cuda_backend *c, float *out, int64_t os, const float *q, int64_t qs, const float *k, int64_t ks,
                   const float *v, int64_t vs, int nq, int nk, int n_heads, int kv_group, float scale,
                   const int32_t *visible, int groups) {
    size_t smem = flash_shape<HD>::smem;
    CUDA_CHECK(cudaFuncSetAttribute(flash_tf32<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((unsigned)((nq + FLASH_ROWS - 1) / FLASH_ROWS), (unsigned)n_heads, (unsigned)groups);
    flash_tf32<HD><<<grid, FLASH_THREADS, smem, c->stream>>>(out, os, q, qs, k, ks, v, vs, nq, nk, kv_group, scale,
                                                             visible);
    CUDA_LAUNCHED();
}

// Measured (H200, 2026-11-26, bench_cuda_attention, ms per call, fused vs GEMM path): vision
// 1 crop 0.099 vs 0.091, 4 crops 0.280 vs 0.359, 9 crops 0.641 vs 0.810, 32 crops 2.16 vs
// 2.88; prefill of 730 rows 0.154 vs 0.156, 752 rows 0.154 vs 0.120; chunks of 1-64 rows
// 0.07 vs 0.025-0.044. So: vision with several crops only.
int att_flash_wins(int nq, int groups) { return groups >= 2; }

int att_flash(cuda_backend *c, float *out, int64_t os, const float *q, int64_t qs, const float *k, int64_t ks,
              const float *v, int64_t vs, int nq, int nk, int n_heads, int n_kv_heads, int hd, float scale,
              const int32_t *visible, int groups) {
    if (hd != 64 && hd != 72) return 0;
    // Tiles load 16 bytes at a time.
    if ((uintptr_t)k % 16 || (uintptr_t)v % 16 || ks % 4 || vs % 4) return 0;
    size_t smem = hd == 64 ? flash_shape<64>::smem : flash_shape<72>::smem;
    if (smem > c->smem_optin) return 0;
    int g = n_heads / n_kv_heads;
    if (hd == 64) launch<64>(c, out, os, q, qs, k, ks, v, vs, nq, nk, n_heads, g, scale, visible, groups);
    else launch<72>(c, out, os, q, qs, k, ks, v, vs, nq, nk, n_heads, g, scale, visible, groups);
    return 1;
}
