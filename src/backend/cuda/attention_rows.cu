// The f32 attention path: a block per (query row, head), optionally split over
// slices of the row's keys (flash-decoding) when the rows are too few to fill
// the GPU, e.g. batch-1 decode with 32 heads is 32 blocks on 132 SMs.
//
// A block holds its slice's scores in shared memory, takes their max and
// exp-sum, then each thread sums one output column over the slice. With one
// slice it writes out[r, h] directly: that is the first kernel of this backend,
// operation for operation (the float4 key loads keep the order of the products).
// With several, each block writes (max m, sum l, unnormalised acc[hd]) and a
// second kernel combines them: out = Σ e^(m_z − M) acc_z / Σ e^(m_z − M) l_z.
// The split launch's p·V gives each warp a quarter of the slice's keys.
#include <math.h>

#include "backend/cuda/attention.h"

enum {
    ATT_THREADS = 128,
    MIN_SPLIT_KEYS = 32,     // a slice shorter than this costs more in the combine than it saves
    SPLIT_WAVES = 2,         // split until the launch has this many blocks per SM (TYCHO_CUDA_ATTENTION_SPLIT_WAVES)
    MAX_SLICE_KEYS = 12288,  // a split launch keeps a slice's scores and row ids in 96 KB of shared memory
};

__device__ float block_max(float v, float *red) {
    for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
    __syncthreads();
    float m = red[0];
    for (int i = 1; i < ATT_THREADS / 32; i++) m = fmaxf(m, red[i]);
    return m;
}

__device__ float block_add(float v, float *red) {
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
    __syncthreads();
    float s = 0;
    for (int i = 0; i < ATT_THREADS / 32; i++) s += red[i];
    return s;
}

__device__ __forceinline__ int64_t key_row(const att_keys &src, int r, int t) {
    if (!src.pages) return (int64_t)(r / src.group) * src.group + t;
    return att_cache_row(src.page_off, src.pages, src.seq[r], t, src.ps);
}

// Block (i, h, z): query row r = rows[i] (or i), head h, keys [z * chunk, (z + 1) * chunk)
// of the row's visible ones. VEC: key rows are 16-byte aligned and head_dim % 4 == 0.
template <bool VEC>
__global__ void __launch_bounds__(ATT_THREADS) attend_rows(float *out, int64_t os, const float *q, int64_t qs,
                                                             att_keys src, const int32_t *rows, int head_dim,
                                                             int kv_group, float scale, int chunk, float *part) {
    extern __shared__ float sm[];
    float *red = sm, *qh = sm + 32, *sc = qh + head_dim;  // (32), (head_dim), (chunk)
    int32_t *krow = (int32_t *)(sc + chunk);              // (chunk) cache row of each key; then (4, head_dim) when split
    int i = blockIdx.x, h = blockIdx.y, kvh = h / kv_group;
    int r = rows ? rows[i] : i;
    int nv = src.pages ? src.visible[r] : src.group;
    int t0 = (int)blockIdx.z * chunk, n = nv - t0 < chunk ? nv - t0 : chunk;
    if (n < 0) n = 0;
    for (int d = threadIdx.x; d < head_dim; d += ATT_THREADS) qh[d] = q[(int64_t)r * qs + (int64_t)h * head_dim + d];
    __syncthreads();
    float mx = -INFINITY;
    for (int t = threadIdx.x; t < n; t += ATT_THREADS) {
        int64_t row = key_row(src, r, t0 + t);
        krow[t] = (int32_t)row;
        const float *kr = src.k + row * src.ks + (int64_t)kvh * head_dim;
        float s = 0.0f;
        if (VEC) {
            for (int d = 0; d < head_dim; d += 4) {
                float4 k4 = *(const float4 *)(kr + d);
                s = fmaf(qh[d], k4.x, s);
                s = fmaf(qh[d + 1], k4.y, s);
                s = fmaf(qh[d + 2], k4.z, s);
                s = fmaf(qh[d + 3], k4.w, s);
            }
        } else {
            for (int d = 0; d < head_dim; d++) s = fmaf(qh[d], kr[d], s);
        }
        sc[t] = s * scale;
        mx = fmaxf(mx, sc[t]);
    }
    mx = block_max(mx, red);
    float sum = 0.0f;
    for (int t = threadIdx.x; t < n; t += ATT_THREADS) {
        float e = expf(sc[t] - mx);
        sc[t] = e;
        sum += e;
    }
    sum = block_add(sum, red);  // its barriers also make every sc[t] and krow[t] visible
    const float *vh = src.v + (int64_t)kvh * head_dim;
    if (gridDim.z == 1) {
        float inv = n > 0 ? 1.0f / sum : 0.0f;
        float *o = out + (int64_t)r * os + (int64_t)h * head_dim;
        for (int d = threadIdx.x; d < head_dim; d += ATT_THREADS) {
            float acc = 0.0f;
            for (int t = 0; t < n; t++) acc = fmaf(sc[t], vh[(int64_t)krow[t] * src.vs + d], acc);
            o[d] = acc * inv;
        }
        return;
    }
    // A slice: every warp over a quarter of the keys (more loads in flight than a thread
    // per column over all of them), the quarters summed through shared memory.
    float *p = part + (((int64_t)i * gridDim.y + h) * gridDim.z + blockIdx.z) * (head_dim + 2);  // (head_dim + 2)
    float *quarter = (float *)(krow + chunk);                                                      // (4, head_dim)
    int warp = threadIdx.x / 32;
    for (int d = threadIdx.x % 32; d < head_dim; d += 32) {
        float acc = 0.0f;
        for (int t = warp; t < n; t += ATT_THREADS / 32) acc = fmaf(sc[t], vh[(int64_t)krow[t] * src.vs + d], acc);
        quarter[warp * head_dim + d] = acc;
    }
    __syncthreads();
    for (int d = threadIdx.x; d < head_dim; d += ATT_THREADS)
        p[d] = (quarter[d] + quarter[head_dim + d]) + (quarter[2 * head_dim + d] + quarter[3 * head_dim + d]);
    if (threadIdx.x == 0) p[head_dim] = mx, p[head_dim + 1] = sum;
}

// Block (i, h): the splits' partial results of row rows[i] (or i), head h, combined.
__global__ void combine_splits(float *out, int64_t os, const int32_t *rows, int head_dim, int splits,
                               const float *part) {
    int i = blockIdx.x, h = blockIdx.y, r = rows ? rows[i] : i, w = head_dim + 2;
    const float *p = part + ((int64_t)i * gridDim.y + h) * splits * w;  // (splits, head_dim + 2)
    float m = -INFINITY, l = 0.0f;
    for (int z = 0; z < splits; z++) m = fmaxf(m, p[z * w + head_dim]);
    for (int z = 0; z < splits; z++)
        if (p[z * w + head_dim + 1] > 0.0f) l += expf(p[z * w + head_dim] - m) * p[z * w + head_dim + 1];
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    float *o = out + (int64_t)r * os + (int64_t)h * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float acc = 0.0f;
        for (int z = 0; z < splits; z++)
            if (p[z * w + head_dim + 1] > 0.0f) acc += expf(p[z * w + head_dim] - m) * p[z * w + d];
        o[d] = acc * inv;
    }
}

int att_rows_splits(cuda_backend *c, int n, int n_heads, int max_keys) {
    int sms = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, c->device));
    const char *e = getenv("TYCHO_CUDA_ATTENTION_SPLIT_WAVES");
    int waves = e && atoi(e) > 0 ? atoi(e) : SPLIT_WAVES;
    int64_t blocks = (int64_t)n * n_heads, want = (int64_t)waves * sms;
    int splits = blocks < want ? (int)((want + blocks - 1) / blocks) : 1;
    int most = max_keys / MIN_SPLIT_KEYS;
    if (splits > most) splits = most;
    int least = (max_keys + MAX_SLICE_KEYS - 1) / MAX_SLICE_KEYS;  // long contexts: bounded shared memory
    if (splits < least) splits = least;
    return splits > 1 ? splits : 1;
}

size_t att_rows_scratch(int n, int n_heads, int head_dim, int splits) {
    return splits > 1 ? (size_t)n * n_heads * splits * (head_dim + 2) : 0;
}

template <bool VEC>
static void launch(cuda_backend *c, dim3 grid, size_t smem, float *out, int64_t os, const float *q, int64_t qs,
                   att_keys src, const int32_t *rows, int head_dim, int kv_group, float scale, int chunk,
                   float *part) {
    if (smem > 48 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(attend_rows<VEC>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attend_rows<VEC><<<grid, ATT_THREADS, smem, c->stream>>>(out, os, q, qs, src, rows, head_dim, kv_group, scale,
                                                             chunk, part);
    CUDA_LAUNCHED();
}

void att_rows(cuda_backend *c, ty_tensor out, ty_tensor q, att_keys src, const int32_t *rows, int n, int n_heads,
              int head_dim, int kv_group, float scale, int max_keys, int splits, float *part) {
    if (n == 0) return;
    int chunk = splits > 1 ? (max_keys + splits - 1) / splits : max_keys;
    size_t smem = (size_t)(32 + head_dim + 2 * chunk + (splits > 1 ? 4 * head_dim : 0)) * sizeof(float);
    if (smem > c->smem_optin) {
        fprintf(stderr, "tycho cuda: attention over %d keys in one block needs %zu bytes of shared memory (GPU has %zu)\n",
                chunk, smem, c->smem_optin);
        abort();
    }
    int vec = head_dim % 4 == 0 && src.ks % 4 == 0 && (uintptr_t)src.k % 16 == 0;
    dim3 grid((unsigned)n, (unsigned)n_heads, (unsigned)(splits > 1 ? splits : 1));
    float *o = (float *)out.data;
    const float *qd = (const float *)q.data;
    if (vec)
        launch<true>(c, grid, smem, o, out.stride, qd, q.stride, src, rows, head_dim, kv_group, scale, chunk, part);
    else
        launch<false>(c, grid, smem, o, out.stride, qd, q.stride, src, rows, head_dim, kv_group, scale, chunk, part);
    if (splits > 1) {
        combine_splits<<<dim3((unsigned)n, (unsigned)n_heads), 64, 0, c->stream>>>(o, out.stride, rows, head_dim,
                                                                                  splits, part);
        CUDA_LAUNCHED();
    }
}
