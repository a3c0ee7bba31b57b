// The bf16 tensor-core attention kernel of the backend's bf16 mode
// (c->bf16_activations): FlashAttention-2 on mma.sync m16n8k16 bf16 with f32
// accumulators, one pass over the keys with an online softmax. The f32 mode
// keeps the TF32 paths (attention_gemm.cu, attention_flash.cu) unchanged.
//
// A block is 64 query rows of one head (4 warps of 16 rows) of one group. Each
// warp holds its Q rows as bf16 A fragments in registers for the whole kernel.
// Keys go in tiles of 64, in two bf16 K and V buffers in shared memory: while
// the warps work on tile it from one, each thread loads its share of tile
// it + 1 (f32, 16 bytes at a time, zeros past nk) into registers, converts it
// to bf16 and stores it to the other (K is loaded before Q·Kᵀ and stored after
// it, V loaded then and stored after P·V); one __syncthreads per tile. Three
// blocks an SM (168 registers, 36-45 KB of shared memory each).
// Per tile and warp: S (16 x 64) = Q·Kᵀ (K fragments by ldmatrix; head_dim 72
// is four k16 steps plus one m16n8k8 step over dims 64..71), masked (row i sees
// keys [0, visible[i]); tiles every row of the warp sees whole skip the test),
// the running max m and sum l updated, p = 2^(s·scale·log2 e − m) (ex2.approx),
// O rescaled, then O += bf16(p)·V with P taken from S's accumulator registers
// as A fragments (no shared memory) and V fragments by ldmatrix.trans.
// Rounding: q, k, v, p to bf16 (nearest even); l sums the f32 p; the rest f32.
// H100: 9 vision crops (729 rows, 16 heads, head_dim 72) in 0.161 ms, 137 TFLOP/s
// (NOTES.md, "Attention": what was tried, what is left).
#include <cuda_bf16.h>
#include <math.h>

#include "backend/cuda/attention.h"

enum { MMA_ROWS = 64, MMA_KEYS = 64, MMA_THREADS = 128 };

template <int HD>
struct mma_shape {
    // Tile row stride in bf16: an odd number of 16-byte chunks, so ldmatrix's 8 row addresses
    // fall in 8 different bank groups (64 -> 72, 72 -> 88).
    static constexpr int S = (HD + 8) / 8 % 2 ? HD + 8 : HD + 16;
    static constexpr int TILE = MMA_KEYS * S;                         // bf16 a tile
    static constexpr size_t smem = sizeof(__nv_bfloat16) * 4 * TILE;  // K, V: two buffers each
    static_assert(HD % 8 == 0, "head_dim a multiple of 8");
};

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 b = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
    return *reinterpret_cast<uint32_t *>(&b);
}

// d (16x8) += a (16x16, row) · b (16x8, col).
__device__ __forceinline__ void mma16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// d (16x8) += a (16x8, row) · b (8x8, col).
__device__ __forceinline__ void mma8(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t b0) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(b0));
}
__device__ __forceinline__ void ldm_x4(uint32_t (&r)[4], const __nv_bfloat16 *p) {
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
__device__ __forceinline__ void ldm_x4_t(uint32_t (&r)[4], const __nv_bfloat16 *p) {
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
__device__ __forceinline__ void ldm_x2_t(uint32_t &r0, uint32_t &r1, const __nv_bfloat16 *p) {
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n" : "=r"(r0), "=r"(r1) : "r"(a));
}

__device__ __forceinline__ float ex2(float x) {  // 2^x, flushing subnormal results to 0
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// Tile loads: warp w takes key rows [16w, 16w + 16) of the tile, two rows an
// instruction (half warp h of instruction u: row 16w + 2u + h, lane l its 16-byte
// chunk l: 256 contiguous bytes a row), then for head_dim 72 the last two chunks of
// all 16 rows in one more (two lanes a row). The L1 fetches a warp's 2 rows in ~5
// cache lines; two lanes on each of 16 rows, as first written, took 16 lines an
// instruction and held the L1 at 87% (ncu, H100).
template <int HD>
struct tile_map {
    static constexpr int MAIN = 8;                // instructions of 2 rows x 16 chunks
    static constexpr int TAIL = (HD / 4 - 16);    // chunks a row left after them: 0 or 2
    static constexpr int N = MAIN + (TAIL ? 1 : 0);
    static_assert(HD / 4 >= 16 && (TAIL == 0 || TAIL == 2), "head_dim 64 or 72");
};

// Keys [j0, j0 + MMA_KEYS) of one kv head (rows of src, stride ss) into registers, zeros past nk
// (tested per row only in a tile that crosses nk).
template <int HD>
__device__ __forceinline__ void load_tile(float4 (&r)[tile_map<HD>::N], const float *src, int64_t ss, int j0, int nk) {
    using M = tile_map<HD>;
    int lane = threadIdx.x & 31, row0 = j0 + (threadIdx.x >> 5) * 16, row = row0 + (lane >> 4);
    int rt = row0 + (lane >> 1);  // the tail's row
    const float4 *p = reinterpret_cast<const float4 *>(src + (int64_t)row * ss) + (lane & 15);
    const float4 *pt = reinterpret_cast<const float4 *>(src + (int64_t)rt * ss) + 16 + (lane & 1);
    int64_t step = ss / 2;  // two rows, in float4 (ss % 4 == 0)
    if (j0 + MMA_KEYS <= nk) {
#pragma unroll
        for (int u = 0; u < M::MAIN; u++, p += step) r[u] = __ldg(p);
        if (M::TAIL) r[M::N - 1] = __ldg(pt);
    } else {
        const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
        for (int u = 0; u < M::MAIN; u++, p += step) r[u] = row + 2 * u < nk ? __ldg(p) : zero;
        if (M::TAIL) r[M::N - 1] = rt < nk ? __ldg(pt) : zero;
    }
}
// The registers of load_tile, as bf16, into a tile.
template <int HD>
__device__ __forceinline__ void store_tile(__nv_bfloat16 *dst, const float4 (&r)[tile_map<HD>::N]) {
    constexpr int S = mma_shape<HD>::S;
    int lane = threadIdx.x & 31;
    __nv_bfloat16 *d = dst + (threadIdx.x >> 5) * 16 * S;
#pragma unroll
    for (int u = 0; u < tile_map<HD>::MAIN; u++)
        *reinterpret_cast<uint2 *>(d + (2 * u + (lane >> 4)) * S + (lane & 15) * 4) =
            make_uint2(pack_bf16(r[u].x, r[u].y), pack_bf16(r[u].z, r[u].w));
    if (tile_map<HD>::TAIL) {
        const float4 &x = r[tile_map<HD>::N - 1];
        *reinterpret_cast<uint2 *>(d + (lane >> 1) * S + 64 + (lane & 1) * 4) =
            make_uint2(pack_bf16(x.x, x.y), pack_bf16(x.z, x.w));
    }
}

// Grid (row tiles, heads, groups). Group z's rows are q/out rows [z*nq, (z+1)*nq), its keys
// k/v rows [z*nk, (z+1)*nk). visible (nq) or NULL: row i sees keys [0, visible[i]).
// 3 blocks an SM (registers capped at 168; H100, before the load mapping above: 0.221 ms for 9
// crops against 0.223-0.246 with 2 blocks of up to 255 registers).
template <int HD>
__global__ void __launch_bounds__(MMA_THREADS, 3) flash_bf16(float *out, int64_t os, const float *q, int64_t qs,
                                                               const float *k, int64_t ks, const float *v, int64_t vs,
                                                               int nq, int nk, int kv_group, float scale_log2,
                                                               const int32_t *visible) {
    using F = mma_shape<HD>;
    constexpr int KF = HD / 16;      // full k16 steps of Q·Kᵀ
    constexpr int KT = HD % 16 / 8;  // a k8 step after them (head_dim 72)
    constexpr int NO = HD / 8;       // n8 tiles of O
    extern __shared__ float4 sm4[];
    __shared__ int block_keys;
    __nv_bfloat16 *kt = (__nv_bfloat16 *)sm4, *vt = kt + 2 * F::TILE;  // two tiles each
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    int h = blockIdx.y, kvh = h / kv_group, z = blockIdx.z;
    q += (int64_t)z * nq * qs + (int64_t)h * HD;
    out += (int64_t)z * nq * os + (int64_t)h * HD;
    k += (int64_t)z * nk * ks + (int64_t)kvh * HD;
    v += (int64_t)z * nk * vs + (int64_t)kvh * HD;
    int ra = blockIdx.x * MMA_ROWS + warp * 16 + g, rb = ra + 8;  // this thread's two rows
    int nva = ra < nq ? (visible && visible[ra] < nk ? visible[ra] : nk) : 0;
    int nvb = rb < nq ? (visible && visible[rb] < nk ? visible[rb] : nk) : 0;
    if (threadIdx.x == 0) block_keys = 0;
    // Q as A fragments: qa[kk] covers dims [16kk, 16kk + 16); qt the k8 tail.
    uint32_t qa[KF][4], qt[2];
    {
        const float *qra = q + (int64_t)ra * qs, *qrb = q + (int64_t)rb * qs;
        float2 zero = make_float2(0.0f, 0.0f);
#pragma unroll
        for (int kk = 0; kk < KF; kk++) {
            int d = kk * 16 + 2 * t;
            float2 a0 = ra < nq ? *reinterpret_cast<const float2 *>(qra + d) : zero;
            float2 a1 = rb < nq ? *reinterpret_cast<const float2 *>(qrb + d) : zero;
            float2 a2 = ra < nq ? *reinterpret_cast<const float2 *>(qra + d + 8) : zero;
            float2 a3 = rb < nq ? *reinterpret_cast<const float2 *>(qrb + d + 8) : zero;
            qa[kk][0] = pack_bf16(a0.x, a0.y), qa[kk][1] = pack_bf16(a1.x, a1.y);
            qa[kk][2] = pack_bf16(a2.x, a2.y), qa[kk][3] = pack_bf16(a3.x, a3.y);
        }
        qt[0] = qt[1] = 0;
        if (KT) {
            int d = KF * 16 + 2 * t;
            float2 a0 = ra < nq ? *reinterpret_cast<const float2 *>(qra + d) : zero;
            float2 a1 = rb < nq ? *reinterpret_cast<const float2 *>(qrb + d) : zero;
            qt[0] = pack_bf16(a0.x, a0.y), qt[1] = pack_bf16(a1.x, a1.y);
        }
    }
    __syncthreads();
    atomicMax(&block_keys, nva > nvb ? nva : nvb);
    __syncthreads();
    int n_tiles = (block_keys + MMA_KEYS - 1) / MMA_KEYS;
    // The warp's most and fewest visible keys: tiles past wk are skipped (their loads are not),
    // tiles within wn need no mask.
    int wk = nva > nvb ? nva : nvb, wn = nva < nvb ? nva : nvb;
#pragma unroll
    for (int o = 16; o >= 1; o /= 2) {
        wk = max(wk, __shfl_xor_sync(0xffffffffu, wk, o));
        wn = min(wn, __shfl_xor_sync(0xffffffffu, wn, o));
    }
    float4 pre[tile_map<HD>::N];
    if (n_tiles) {
        load_tile<HD>(pre, k, ks, 0, nk);
        store_tile<HD>(kt, pre);
        load_tile<HD>(pre, v, vs, 0, nk);
        store_tile<HD>(vt, pre);
    }
    __syncthreads();
    float o[NO][4];
#pragma unroll
    for (int n = 0; n < NO; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float ma = -INFINITY, mb = -INFINITY, la = 0.0f, lb = 0.0f;  // running max (of s, unscaled) and sum
    // ldmatrix row addresses: matrix lane >> 3, its row lane & 7.
    int lm = lane >> 3, lr = lane & 7;
    for (int it = 0; it < n_tiles; it++) {
        int j0 = it * MMA_KEYS, cur = it & 1, nxt = cur ^ 1;
        bool more = it + 1 < n_tiles, work = j0 < wk;
        const __nv_bfloat16 *kb = kt + cur * F::TILE, *vb = vt + cur * F::TILE;
        float s[8][4];
        if (more) load_tile<HD>(pre, k, ks, j0 + MMA_KEYS, nk);
        if (work) {
            // S = Q·Kᵀ: n8 tile n covers keys j0 + 8n + [0, 8).
#pragma unroll
            for (int n = 0; n < 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
            for (int np = 0; np < 4; np++) {  // n8 tiles 2np, 2np + 1
#pragma unroll
                for (int kk = 0; kk < KF; kk++) {
                    uint32_t b[4];  // (keys +0, dims +0), (keys +0, dims +8), (keys +8, dims +0), (keys +8, dims +8)
                    ldm_x4(b, kb + (np * 16 + (lm >> 1) * 8 + lr) * F::S + kk * 16 + (lm & 1) * 8);
                    mma16(s[2 * np], qa[kk], b[0], b[1]);
                    mma16(s[2 * np + 1], qa[kk], b[2], b[3]);
                }
            }
            if (KT) {
#pragma unroll
                for (int n4 = 0; n4 < 2; n4++) {  // n8 tiles 4n4 .. 4n4 + 3, dims KF*16 + [0, 8)
                    uint32_t b[4];
                    ldm_x4(b, kb + (n4 * 32 + lm * 8 + lr) * F::S + KF * 16);
#pragma unroll
                    for (int e = 0; e < 4; e++) mma8(s[4 * n4 + e], qt[0], qt[1], b[e]);
                }
            }
        }
        if (more) {  // K of the next tile in; its V on the way during the softmax and P·V
            store_tile<HD>(kt + nxt * F::TILE, pre);
            load_tile<HD>(pre, v, vs, j0 + MMA_KEYS, nk);
        }
        if (work) {
            // Mask (where some row of the warp does not see the whole tile), the tile's row
            // max over the quad (the four threads of a row).
            if (j0 + MMA_KEYS > wn) {
#pragma unroll
                for (int n = 0; n < 8; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        if (j0 + n * 8 + 2 * t + (e & 1) >= (e < 2 ? nva : nvb)) s[n][e] = -INFINITY;
            }
            float xa = -INFINITY, xb = -INFINITY;
#pragma unroll
            for (int n = 0; n < 8; n++) {
                xa = fmaxf(xa, fmaxf(s[n][0], s[n][1]));
                xb = fmaxf(xb, fmaxf(s[n][2], s[n][3]));
            }
#pragma unroll
            for (int o2 = 1; o2 <= 2; o2 *= 2) {
                xa = fmaxf(xa, __shfl_xor_sync(0xffffffffu, xa, o2));
                xb = fmaxf(xb, __shfl_xor_sync(0xffffffffu, xb, o2));
            }
            float na = fmaxf(ma, xa), nb = fmaxf(mb, xb);
            // p = 2^(s·c − base), base = max·c (0 while nothing is visible: no (−inf) − (−inf)).
            float ba = na == -INFINITY ? 0.0f : na * scale_log2, bb = nb == -INFINITY ? 0.0f : nb * scale_log2;
            float ca = ex2(ma * scale_log2 - ba), cb = ex2(mb * scale_log2 - bb);  // 0 while ma = −inf
            ma = na, mb = nb;
            la *= ca, lb *= cb;
#pragma unroll
            for (int n = 0; n < NO; n++) o[n][0] *= ca, o[n][1] *= ca, o[n][2] *= cb, o[n][3] *= cb;
            // P (bf16) as A fragments: k16 step kk is S's n8 tiles 2kk, 2kk + 1.
            uint32_t pa[4][4];
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
#pragma unroll
                for (int hf = 0; hf < 2; hf++) {
                    const float *sn = s[2 * kk + hf];
                    float p0 = ex2(fmaf(sn[0], scale_log2, -ba)), p1 = ex2(fmaf(sn[1], scale_log2, -ba));
                    float p2 = ex2(fmaf(sn[2], scale_log2, -bb)), p3 = ex2(fmaf(sn[3], scale_log2, -bb));
                    la += p0 + p1, lb += p2 + p3;
                    pa[kk][2 * hf] = pack_bf16(p0, p1);
                    pa[kk][2 * hf + 1] = pack_bf16(p2, p3);
                }
            }
            // O += P·V: k16 step kk is keys j0 + 16kk + [0, 16); n8 tile n is dims 8n + [0, 8).
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
#pragma unroll
                for (int np = 0; np < NO / 2; np++) {
                    uint32_t b[4];  // (keys +0, dims +0), (keys +8, dims +0), (keys +0, dims +8), (keys +8, dims +8)
                    ldm_x4_t(b, vb + (kk * 16 + (lm & 1) * 8 + lr) * F::S + np * 16 + (lm >> 1) * 8);
                    mma16(o[2 * np], pa[kk], b[0], b[1]);
                    mma16(o[2 * np + 1], pa[kk], b[2], b[3]);
                }
                if (NO % 2) {
                    uint32_t b0, b1;
                    ldm_x2_t(b0, b1, vb + (kk * 16 + (lm & 1) * 8 + lr) * F::S + (NO - 1) * 8);
                    mma16(o[NO - 1], pa[kk], b0, b1);
                }
            }
        }
        if (more) store_tile<HD>(vt + nxt * F::TILE, pre);
        __syncthreads();  // the next tile is stored; this one is read (its buffers refill next time)
    }
#pragma unroll
    for (int o2 = 1; o2 <= 2; o2 *= 2) {
        la += __shfl_xor_sync(0xffffffffu, la, o2);
        lb += __shfl_xor_sync(0xffffffffu, lb, o2);
    }
    float ia = la > 0.0f ? 1.0f / la : 0.0f, ib = lb > 0.0f ? 1.0f / lb : 0.0f;
#pragma unroll
    for (int n = 0; n < NO; n++) {
        int d = n * 8 + 2 * t;
        if (ra < nq) *reinterpret_cast<float2 *>(out + (int64_t)ra * os + d) = make_float2(o[n][0] * ia, o[n][1] * ia);
        if (rb < nq) *reinterpret_cast<float2 *>(out + (int64_t)rb * os + d) = make_float2(o[n][2] * ib, o[n][3] * ib);
    }
}

template <int HD>
static void launch_mma(cuda_backend *c, float *out, int64_t os, const float *q, int64_t qs, const float *k, int64_t ks,
                       const float *v, int64_t vs, int nq, int nk, int n_heads, int kv_group, float scale,
                       const int32_t *visible, int groups) {
    using F = mma_shape<HD>;
    static int configured;  // per template instance; the attribute is per device function
    if (!configured) {
        CUDA_CHECK(cudaFuncSetAttribute(flash_bf16<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)F::smem));
        configured = 1;
    }
    dim3 grid((unsigned)((nq + MMA_ROWS - 1) / MMA_ROWS), (unsigned)n_heads, (unsigned)groups);
    flash_bf16<HD><<<grid, MMA_THREADS, F::smem, c->stream>>>(out, os, q, qs, k, ks, v, vs, nq, nk, kv_group,
                                                             scale * 1.4426950408889634f, visible);
    CUDA_LAUNCHED();
}

int att_mma(cuda_backend *c, float *out, int64_t os, const float *q, int64_t qs, const float *k, int64_t ks,
            const float *v, int64_t vs, int nq, int nk, int n_heads, int n_kv_heads, int hd, float scale,
            const int32_t *visible, int groups) {
    if (hd != 64 && hd != 72) return 0;
    if (nq <= 0 || nk <= 0 || groups <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads) return 0;
    // K and V load 16 bytes at a time; q and out 8.
    if ((uintptr_t)k % 16 || (uintptr_t)v % 16 || ks % 4 || vs % 4) return 0;
    if ((uintptr_t)q % 8 || (uintptr_t)out % 8 || qs % 2 || os % 2) return 0;
    size_t smem = hd == 64 ? mma_shape<64>::smem : mma_shape<72>::smem;
    if (smem > c->smem_optin) return 0;
    int g = n_heads / n_kv_heads;
    if (hd == 64) launch_mma<64>(c, out, os, q, qs, k, ks, v, vs, nq, nk, n_heads, g, scale, visible, groups);
    else launch_mma<72>(c, out, os, q, qs, k, ks, v, vs, nq, nk, n_heads, g, scale, visible, groups);
    return 1;
}
