// Rotary embedding, the paged KV cache, and attention (paged for the text
// decoder, dense within groups for the vision tower). f32 throughout.
//
// This first kernel is the straightforward one: a block per (query row, head)
// holds the row's scores in shared memory, takes their max and exp-sum, then
// each thread sums one output column over the visible keys. Which keys a row
// sees is computed on the host exactly as the CPU backend computes it (keys
// [0, visible): visible = p + 1, or the bidirectional prefix length when p
// lies inside it, capped at the sequence's kv_len) and uploaded with the
// flattened page tables. Flash-style tiling comes with the speed work.
#include <math.h>
#include <string.h>

#include "backend/cuda/cuda.h"

enum { ATT_THREADS = 128 };

// The batch's metadata in one host buffer, uploaded in one copy: per row
// seq, pos, visible; per sequence the offset of its page list in pages
// (n_seqs + 1 entries); the pages themselves.
typedef struct {
    const int32_t *seq, *pos, *visible, *page_off, *pages;
    int max_visible;
} dev_batch;

static int32_t *host_i32(size_t n) {
    int32_t *p = (int32_t *)malloc((n ? n : 1) * sizeof(int32_t));
    if (!p) abort();
    return p;
}

// Uploads what the kernels need of b; page_size 0: rows' seq and pos only.
static dev_batch upload_batch(cuda_backend *c, const ty_batch *b, int page_size) {
    int R = b->n_rows, S = page_size ? b->n_seqs : 0;
    int32_t *need = host_i32((size_t)S);  // positions each sequence's page list must cover
    for (int s = 0; s < S; s++) need[s] = b->kv_len ? b->kv_len[s] : 0;
    for (int r = 0; r < R && S; r++)
        if (b->pos[r] + 1 > need[b->seq[r]]) need[b->seq[r]] = b->pos[r] + 1;
    size_t n_pages = 0;
    for (int s = 0; s < S; s++) n_pages += (size_t)((need[s] + page_size - 1) / page_size);
    size_t total = 3 * (size_t)R + (size_t)S + 1 + n_pages;
    int32_t *h = host_i32(total);
    int32_t *seq = h, *pos = h + R, *vis = h + 2 * R, *off = h + 3 * R, *pages = off + S + 1;
    dev_batch d = {};
    for (int r = 0; r < R; r++) {
        seq[r] = b->seq[r];
        pos[r] = b->pos[r];
        vis[r] = 0;
        if (!S) continue;
        int s = b->seq[r], p = b->pos[r], nv = p + 1, pre = b->prefix ? b->prefix[s] : 0;
        if (p < pre && pre > nv) nv = pre;  // bidirectional prefix
        int kl = b->kv_len ? b->kv_len[s] : nv;
        vis[r] = nv < kl ? nv : kl;
        if (vis[r] > d.max_visible) d.max_visible = vis[r];
    }
    off[0] = 0;
    for (int s = 0; s < S; s++) {
        int np = (need[s] + page_size - 1) / page_size;
        if (np) memcpy(pages + off[s], b->pages[s], (size_t)np * sizeof(int32_t));
        off[s + 1] = off[s] + np;
    }
    cuda_scratch_get(c, &c->meta, total * sizeof(int32_t));
    int32_t *dp = (int32_t *)cuda_meta_upload(c, 0, h, total * sizeof(int32_t));
    d.seq = dp;
    d.pos = dp + R;
    d.visible = dp + 2 * R;
    d.page_off = dp + 3 * R;
    d.pages = dp + 3 * R + S + 1;
    free(h);
    free(need);
    return d;
}

// Cache row of position t of sequence s.
__device__ __forceinline__ int64_t cache_row(const int32_t *page_off, const int32_t *pages, int s, int t, int ps) {
    return (int64_t)pages[page_off[s] + t / ps] * ps + t % ps;
}

// One thread per (row, head, pair j < half): the pair (j, j + half) rotated by pos * inv[j].
__global__ void rope_pairs(float *x, int64_t xs, int rows, int n_heads, int head_dim, int half, const int32_t *pos,
                           const float *inv) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)rows * n_heads * half) return;
    int j = (int)(i % half), h = (int)(i / half % n_heads), r = (int)(i / half / n_heads);
    float angle = (float)pos[r] * inv[j];  // f32 like the CPU's
    float cs = cosf(angle), sn = sinf(angle);
    float *v = x + (int64_t)r * xs + (int64_t)h * head_dim;
    float a = v[j], b = v[j + half];
    v[j] = a * cs - b * sn;
    v[j + half] = a * sn + b * cs;
}

void cuda_rope(ty_backend *be, ty_tensor x, int n_heads, int head_dim, int rot_dims, float theta,
               const ty_batch *batch) {
    cuda_backend *c = cuda_of(be);
    CUDA_CHECK(cudaSetDevice(c->device));
    int half = rot_dims / 2, R = (int)x.rows;
    if (R == 0 || half == 0) return;
    // The inverse frequencies on the host, with the CPU's powf, after the rows' positions.
    size_t n = (size_t)R + (size_t)half;
    float *h = (float *)malloc(n * sizeof(float));
    if (!h) abort();
    memcpy(h, batch->pos, (size_t)R * sizeof(int32_t));
    for (int j = 0; j < half; j++) h[R + j] = 1.0f / powf(theta, (float)(2 * j) / (float)rot_dims);
    cuda_scratch_get(c, &c->meta, n * sizeof(float));
    const int32_t *d_pos = (const int32_t *)cuda_meta_upload(c, 0, h, n * sizeof(float));
    free(h);
    int64_t total = (int64_t)R * n_heads * half;
    rope_pairs<<<cuda_blocks(total, 256), 256, 0, c->stream>>>((float *)x.data, x.stride, R, n_heads, head_dim, half,
                                                               d_pos, (const float *)(d_pos + R));
    CUDA_LAUNCHED();
}

__global__ void kv_write_rows(float *kc, int64_t kcs, float *vc, int64_t vcs, const float *k, int64_t ks,
                              const float *v, int64_t vs, int rows, int cols, const int32_t *seq, const int32_t *pos,
                              const int32_t *page_off, const int32_t *pages, int ps) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)rows * cols) return;
    int r = (int)(i / cols), d = (int)(i % cols);
    int64_t row = cache_row(page_off, pages, seq[r], pos[r], ps);
    kc[row * kcs + d] = k[(int64_t)r * ks + d];
    vc[row * vcs + d] = v[(int64_t)r * vs + d];
}

void cuda_kv_write(ty_backend *be, ty_kv_layer *kv, ty_tensor k, ty_tensor v, const ty_batch *batch) {
    cuda_backend *c = cuda_of(be);
    CUDA_CHECK(cudaSetDevice(c->device));
    int R = batch->n_rows, cols = (int)k.cols;
    if (R == 0 || cols == 0) return;
    dev_batch d = upload_batch(c, batch, kv->page_size);
    kv_write_rows<<<cuda_blocks((int64_t)R * cols, 256), 256, 0, c->stream>>>(
        (float *)kv->k.data, kv->k.stride, (float *)kv->v.data, kv->v.stride, (const float *)k.data, k.stride,
        (const float *)v.data, v.stride, R, cols, d.seq, d.pos, d.page_off, d.pages, kv->page_size);
    CUDA_LAUNCHED();
}

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

// Where a block's keys live: paged (seq/page tables) or dense (group g's rows).
typedef struct {
    const float *k, *v;
    int64_t ks, vs;
    const int32_t *seq, *visible, *page_off, *pages;  // paged; NULL when dense
    int ps, group;
} key_src;

__device__ __forceinline__ int64_t key_row(const key_src &src, int r, int t) {
    if (!src.pages) return (int64_t)(r / src.group) * src.group + t;
    return cache_row(src.page_off, src.pages, src.seq[r], t, src.ps);
}

// Block (row r, head h): out[r, h] = softmax(q · Kᵀ · scale over the visible keys) · V.
__global__ void __launch_bounds__(ATT_THREADS) attend_rows(float *out, int64_t os, const float *q, int64_t qs,
                                                             key_src src, int head_dim, int kv_group, float scale) {
    extern __shared__ float sm[];
    float *red = sm, *qh = sm + 32, *sc = qh + head_dim;
    int r = blockIdx.x, h = blockIdx.y, kvh = h / kv_group;
    int nv = src.pages ? src.visible[r] : src.group;
    for (int d = threadIdx.x; d < head_dim; d += ATT_THREADS) qh[d] = q[(int64_t)r * qs + (int64_t)h * head_dim + d];
    __syncthreads();
    float mx = -INFINITY;
    for (int t = threadIdx.x; t < nv; t += ATT_THREADS) {
        const float *kr = src.k + key_row(src, r, t) * src.ks + (int64_t)kvh * head_dim;
        float s = 0.0f;
        for (int d = 0; d < head_dim; d++) s = fmaf(qh[d], kr[d], s);
        sc[t] = s * scale;
        mx = fmaxf(mx, sc[t]);
    }
    mx = block_max(mx, red);
    float sum = 0.0f;
    for (int t = threadIdx.x; t < nv; t += ATT_THREADS) {
        float e = expf(sc[t] - mx);
        sc[t] = e;
        sum += e;
    }
    sum = block_add(sum, red);  // its barriers also make every sc[t] visible
    float inv = nv > 0 ? 1.0f / sum : 0.0f;
    float *o = out + (int64_t)r * os + (int64_t)h * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += ATT_THREADS) {
        float acc = 0.0f;
        for (int t = 0; t < nv; t++) acc = fmaf(sc[t], src.v[key_row(src, r, t) * src.vs + (int64_t)kvh * head_dim + d], acc);
        o[d] = acc * inv;
    }
}

static void launch_attend(cuda_backend *c, ty_tensor out, ty_tensor q, key_src src, int n_heads, int head_dim,
                          int kv_group, float scale, int max_keys) {
    size_t smem = (size_t)(32 + head_dim + max_keys) * sizeof(float);
    if (smem > c->smem_optin) {
        fprintf(stderr, "tycho cuda: attention over %d keys needs %zu bytes of shared memory (GPU has %zu)\n",
                max_keys, smem, c->smem_optin);
        abort();
    }
    if (smem > 48 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(attend_rows, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((unsigned)q.rows, (unsigned)n_heads);
    attend_rows<<<grid, ATT_THREADS, smem, c->stream>>>((float *)out.data, out.stride, (const float *)q.data,
                                                        q.stride, src, head_dim, kv_group, scale);
    CUDA_LAUNCHED();
}

void cuda_attention(ty_backend *be, ty_tensor out, ty_tensor q, const ty_kv_layer *kv, int n_heads, int n_kv_heads,
                    int head_dim, float scale, const ty_batch *batch) {
    cuda_backend *c = cuda_of(be);
    CUDA_CHECK(cudaSetDevice(c->device));
    if (batch->n_rows == 0 || n_heads == 0) return;
    dev_batch d = upload_batch(c, batch, kv->page_size);
    key_src src = {(const float *)kv->k.data, (const float *)kv->v.data, kv->k.stride, kv->v.stride, d.seq,
                   d.visible, d.page_off, d.pages, kv->page_size, 0};
    launch_attend(c, out, q, src, n_heads, head_dim, n_heads / n_kv_heads, scale, d.max_visible);
}

void cuda_attention_dense(ty_backend *be, ty_tensor out, ty_tensor q, ty_tensor k, ty_tensor v, int n_heads,
                          int head_dim, float scale, int group) {
    cuda_backend *c = cuda_of(be);
    CUDA_CHECK(cudaSetDevice(c->device));
    if (q.rows == 0 || n_heads == 0) return;
    key_src src = {(const float *)k.data, (const float *)v.data, k.stride, v.stride, NULL, NULL, NULL, NULL, 0, group};
    launch_attend(c, out, q, src, n_heads, head_dim, 1, scale, group);
}
