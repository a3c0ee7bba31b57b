// Rotary embedding, the paged KV cache, and attention's entry points (paged
// for the text decoder, dense within groups for the vision tower): which rows
// take which path (attention.h).
//
// Which keys a row sees is computed on the host exactly as the CPU backend
// computes it (keys [0, visible): visible = p + 1, or the bidirectional prefix
// length when p lies inside it, capped at the sequence's kv_len) and uploaded
// with the flattened page tables.
//
// Paths: many query rows over the same keys (a vision crop; a sequence with at
// least ATT_PREFILL_ROWS rows in this forward, its rows consecutive) run on
// tensor cores: a sequence's visible keys are gathered from the pages into
// contiguous rows, then GEMM, masked softmax, GEMM (attention_gemm.cu); vision
// calls of several crops take the fused kernel (attention_flash.cu), measured
// faster there. In the backend's bf16 mode both take the bf16 flash kernel
// (attention_mma.cu) first. The other rows (decode) run the f32 row kernel,
// split over keys when they are too few to fill the GPU (attention_rows.cu).
// Both in one call for a batch that mixes prefill and decode.
#include <math.h>
#include <string.h>

#include "backend/cuda/attention.h"

// The batch's metadata in one host buffer, uploaded in one copy: per row
// seq, pos, visible; per sequence the offset of its page list in pages
// (n_seqs + 1 entries); the pages themselves; then the caller's extra ints.
typedef struct {
    const int32_t *seq, *pos, *visible, *page_off, *pages, *extra;
    int max_visible;
} dev_batch;

static int32_t *host_i32(size_t n) {
    int32_t *p = (int32_t *)malloc((n ? n : 1) * sizeof(int32_t));
    if (!p) abort();
    return p;
}

// Keys [0, visible) that row r of b sees.
static int row_visible(const ty_batch *b, int r) {
    int s = b->seq[r], p = b->pos[r], nv = p + 1, pre = b->prefix ? b->prefix[s] : 0;
    if (p < pre && pre > nv) nv = pre;  // bidirectional prefix
    int kl = b->kv_len ? b->kv_len[s] : nv;
    return nv < kl ? nv : kl;
}

// Uploads what the kernels need of b and n_extra ints of the caller's; page_size 0:
// rows' seq and pos only. site: the caller's cuda_meta_cache (every layer of a
// forward passes the same batch: one upload per forward, not one per layer).
static dev_batch upload_batch(cuda_backend *c, int site, const ty_batch *b, int page_size, const int32_t *extra,
                              size_t n_extra) {
    int R = b->n_rows, S = page_size ? b->n_seqs : 0;
    int32_t *need = host_i32((size_t)S);  // positions each sequence's page list must cover
    for (int s = 0; s < S; s++) need[s] = b->kv_len ? b->kv_len[s] : 0;
    for (int r = 0; r < R && S; r++)
        if (b->pos[r] + 1 > need[b->seq[r]]) need[b->seq[r]] = b->pos[r] + 1;
    size_t n_pages = 0;
    for (int s = 0; s < S; s++) n_pages += (size_t)((need[s] + page_size - 1) / page_size);
    size_t total = 3 * (size_t)R + (size_t)S + 1 + n_pages + n_extra;
    int32_t *h = host_i32(total);
    int32_t *seq = h, *pos = h + R, *vis = h + 2 * R, *off = h + 3 * R, *pages = off + S + 1;
    dev_batch d = {};
    for (int r = 0; r < R; r++) {
        seq[r] = b->seq[r];
        pos[r] = b->pos[r];
        vis[r] = 0;
        if (!S) continue;
        vis[r] = row_visible(b, r);
        if (vis[r] > d.max_visible) d.max_visible = vis[r];
    }
    off[0] = 0;
    for (int s = 0; s < S; s++) {
        int np = (need[s] + page_size - 1) / page_size;
        if (np) memcpy(pages + off[s], b->pages[s], (size_t)np * sizeof(int32_t));
        off[s + 1] = off[s] + np;
    }
    if (n_extra) memcpy(pages + n_pages, extra, n_extra * sizeof(int32_t));
    const int32_t *dp = (const int32_t *)cuda_meta_upload_cached(c, site, h, total * sizeof(int32_t));
    d.seq = dp;
    d.pos = dp + R;
    d.visible = dp + 2 * R;
    d.page_off = dp + 3 * R;
    d.pages = dp + 3 * R + S + 1;
    d.extra = d.pages + n_pages;
    free(h);
    free(need);
    return d;
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
    const int32_t *d_pos = (const int32_t *)cuda_meta_upload_cached(c, CUDA_META_ROPE, h, n * sizeof(float));
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
    int64_t row = att_cache_row(page_off, pages, seq[r], pos[r], ps);
    kc[row * kcs + d] = k[(int64_t)r * ks + d];
    vc[row * vcs + d] = v[(int64_t)r * vs + d];
}

void cuda_kv_write(ty_backend *be, ty_kv_layer *kv, ty_tensor k, ty_tensor v, const ty_batch *batch) {
    cuda_backend *c = cuda_of(be);
    CUDA_CHECK(cudaSetDevice(c->device));
    int R = batch->n_rows, cols = (int)k.cols;
    if (R == 0 || cols == 0) return;
    dev_batch d = upload_batch(c, CUDA_META_KV_WRITE, batch, kv->page_size, NULL, 0);
    kv_write_rows<<<cuda_blocks((int64_t)R * cols, 256), 256, 0, c->stream>>>(
        (float *)kv->k.data, kv->k.stride, (float *)kv->v.data, kv->v.stride, (const float *)k.data, k.stride,
        (const float *)v.data, v.stride, R, cols, d.seq, d.pos, d.page_off, d.pages, kv->page_size);
    CUDA_LAUNCHED();
}


// TYCHO_CUDA_ATTENTION: rows | split | gemm | flash | tc (default) | mma; anything else warns once and takes tc.
static att_path path_now(void) {
    static int warned;
    const char *e = getenv("TYCHO_CUDA_ATTENTION");
    if (!e || !*e || !strcmp(e, "tc")) return ATT_PATH_TC;
    if (!strcmp(e, "rows")) return ATT_PATH_ROWS;
    if (!strcmp(e, "split")) return ATT_PATH_SPLIT;
    if (!strcmp(e, "gemm")) return ATT_PATH_GEMM;
    if (!strcmp(e, "flash")) return ATT_PATH_FLASH;
    if (!strcmp(e, "mma")) return ATT_PATH_MMA;
    if (!warned)
        fprintf(stderr, "tycho cuda: TYCHO_CUDA_ATTENTION=%s: expected rows, split, gemm, flash, tc or mma; using tc\n",
                e);
    warned = 1;
    return ATT_PATH_TC;
}

// Whether tensor-core sequences and dense groups try the bf16 kernel (attention_mma.cu) first:
// path mma, or tc in bf16 mode unless TYCHO_CUDA_ATTENTION_MMA=0 (A/B runs: bf16 mode with the
// TF32 paths it had before).
static int mma_now(const cuda_backend *c, att_path path) {
    if (path == ATT_PATH_MMA) return 1;
    if (path != ATT_PATH_TC || !c->bf16_activations) return 0;
    const char *e = getenv("TYCHO_CUDA_ATTENTION_MMA");
    return !e || strcmp(e, "0");
}

static int prefill_rows_now(void) {
    const char *e = getenv("TYCHO_CUDA_ATTENTION_PREFILL_ROWS");
    int n = e ? atoi(e) : 0;
    return n > 0 ? n : ATT_PREFILL_ROWS;
}

static size_t round64(size_t n) { return (n + 63) / 64 * 64; }  // floats: 256-byte aligned pieces of scratch

// The f32 row kernel over rows [first, first + n) alone (a tensor-core sequence cuBLASLt had no algorithm for).
static void rows_range(cuda_backend *c, ty_tensor out, ty_tensor q, att_keys src, int first, int n, int n_heads,
                       int head_dim, int kv_group, float scale, int max_keys) {
    if (src.pages) src.seq += first, src.visible += first;
    else src.k += (int64_t)first * src.ks, src.v += (int64_t)first * src.vs;  // dense: first is a group's start
    att_rows(c, tensor_rows(out, first, n), tensor_rows(q, first, n), src, NULL, n, n_heads, head_dim, kv_group,
             scale, max_keys, 1, NULL);
}

void cuda_attention(ty_backend *be, ty_tensor out, ty_tensor q, const ty_kv_layer *kv, int n_heads, int n_kv_heads,
                    int head_dim, float scale, const ty_batch *batch) {
    cuda_backend *c = cuda_of(be);
    CUDA_CHECK(cudaSetDevice(c->device));
    int R = batch->n_rows, S = batch->n_seqs, W = n_kv_heads * head_dim, g = n_heads / n_kv_heads;
    if (R == 0 || n_heads == 0) return;
    att_path path = path_now();
    int min_rows = prefill_rows_now();
    // Per sequence: its first row, row count, whether its rows are consecutive, its longest visible row.
    int32_t *first = (int32_t *)malloc((size_t)(4 * S + R + 1) * sizeof(int32_t));
    if (!first) abort();
    int32_t *count = first + S, *consecutive = count + S, *keys = consecutive + S, *rest = keys + S;
    for (int s = 0; s < S; s++) first[s] = -1, count[s] = 0, consecutive[s] = 1, keys[s] = 0;
    for (int r = 0; r < R; r++) {
        int s = batch->seq[r], nv = row_visible(batch, r);
        if (first[s] < 0) first[s] = r;
        else if (r != first[s] + count[s]) consecutive[s] = 0;
        count[s]++;
        if (nv > keys[s]) keys[s] = nv;
    }
    // The rest (decode rows) for the row kernel; the tensor-core sequences' scratch.
    int n_rest = 0, rest_keys = 0;
    size_t tc_floats = 0;
    for (int s = 0; s < S; s++) {
        int tc = path >= ATT_PATH_GEMM && count[s] >= min_rows && consecutive[s] && keys[s] > 0;
        if (!tc) {
            count[s] = -count[s];  // marks it for the row kernel
            continue;
        }
        size_t f = 2 * round64((size_t)keys[s] * W) + att_gemm_scratch(count[s], keys[s], n_heads);
        if (f > tc_floats) tc_floats = f;
    }
    for (int r = 0; r < R; r++)
        if (count[batch->seq[r]] < 0) {
            rest[n_rest++] = r;
            int nv = row_visible(batch, r);
            if (nv > rest_keys) rest_keys = nv;
        }
    int splits = path == ATT_PATH_ROWS || n_rest == 0 ? 1 : att_rows_splits(c, n_rest, n_heads, rest_keys);
    size_t rows_floats = att_rows_scratch(n_rest, n_heads, head_dim, splits);
    float *scratch = (float *)cuda_scratch_get(c, &c->att, 4 * (tc_floats > rows_floats ? tc_floats : rows_floats));
    dev_batch d = upload_batch(c, CUDA_META_ATTENTION, batch, kv->page_size, rest, (size_t)n_rest);
    att_keys src = {(const float *)kv->k.data, (const float *)kv->v.data, kv->k.stride, kv->v.stride, d.seq,
                    d.visible, d.page_off, d.pages, kv->page_size, 0};
    if (tc_floats) {
        // One sequence at a time through the same scratch (the stream orders them): K, V (keys, W), then scores.
        int mma = mma_now(c, path);  // bf16 mode: the bf16 kernel first; f32 mode's paths are untouched by it
        att_gemm_plans *plans = att_gemm_plans_new();
        for (int s = 0; s < S; s++) {
            if (count[s] <= 0) continue;
            int nk = keys[s], f0 = first[s], n = count[s];
            float *kd = scratch, *vd = scratch + round64((size_t)nk * W), *scores = vd + round64((size_t)nk * W);
            att_gather(c, kd, vd, kv, W, d.page_off, d.pages, s, nk);
            const float *qd = (const float *)q.data + (int64_t)f0 * q.stride;
            float *od = (float *)out.data + (int64_t)f0 * out.stride;
            if (mma && att_mma(c, od, out.stride, qd, q.stride, kd, W, vd, W, n, nk, n_heads, n_kv_heads, head_dim,
                               scale, d.visible + f0, 1))
                continue;
            int flash = path == ATT_PATH_FLASH || (path == ATT_PATH_TC && att_flash_wins(n, 1));
            if (flash && att_flash(c, od, out.stride, qd, q.stride, kd, W, vd, W, n, nk, n_heads, n_kv_heads, head_dim,
                                   scale, d.visible + f0, 1))
                continue;
            if (!att_gemm(c, plans, scores, att_gemm_scratch(n, nk, n_heads), od, out.stride, qd, q.stride, kd, W, vd,
                          W, n, nk, n_heads, n_kv_heads, head_dim, scale, d.visible + f0))
                rows_range(c, out, q, src, f0, n, n_heads, head_dim, g, scale, nk);
        }
        att_gemm_plans_free(plans);
    }
    att_rows(c, out, q, src, d.extra, n_rest, n_heads, head_dim, g, scale, rest_keys, splits, scratch);
    free(first);
}

void cuda_attention_dense(ty_backend *be, ty_tensor out, ty_tensor q, ty_tensor k, ty_tensor v, int n_heads,
                          int head_dim, float scale, int group) {
    cuda_backend *c = cuda_of(be);
    CUDA_CHECK(cudaSetDevice(c->device));
    int R = (int)q.rows;
    if (R == 0 || n_heads == 0) return;
    att_path path = path_now();
    att_keys src = {(const float *)k.data, (const float *)v.data, k.stride, v.stride, NULL, NULL, NULL, NULL, 0, group};
    if (path >= ATT_PATH_GEMM && R % group == 0) {
        if (mma_now(c, path) && att_mma(c, (float *)out.data, out.stride, (const float *)q.data, q.stride,
                                        (const float *)k.data, k.stride, (const float *)v.data, v.stride, group,
                                        group, n_heads, n_heads, head_dim, scale, NULL, R / group))
            return;
        int flash = path == ATT_PATH_FLASH || (path == ATT_PATH_TC && att_flash_wins(group, R / group));
        if (flash && att_flash(c, (float *)out.data, out.stride, (const float *)q.data, q.stride,
                                             (const float *)k.data, k.stride, (const float *)v.data, v.stride, group,
                                             group, n_heads, n_heads, head_dim, scale, NULL, R / group))
            return;
        size_t floats = att_gemm_scratch(group, group, n_heads);
        float *scores = (float *)cuda_scratch_get(c, &c->att, 4 * floats);
        att_gemm_plans *plans = att_gemm_plans_new();
        for (int r0 = 0; r0 < R; r0 += group) {
            const float *qd = (const float *)q.data + (int64_t)r0 * q.stride;
            const float *kd = (const float *)k.data + (int64_t)r0 * k.stride;
            const float *vd = (const float *)v.data + (int64_t)r0 * v.stride;
            float *od = (float *)out.data + (int64_t)r0 * out.stride;
            if (!att_gemm(c, plans, scores, floats, od, out.stride, qd, q.stride, kd, k.stride, vd, v.stride, group,
                          group, n_heads, n_heads, head_dim, scale, NULL))
                rows_range(c, out, q, src, r0, group, n_heads, head_dim, 1, scale, group);
        }
        att_gemm_plans_free(plans);
        return;
    }
    int splits = path == ATT_PATH_ROWS ? 1 : att_rows_splits(c, R, n_heads, group);
    float *part = splits > 1 ? (float *)cuda_scratch_get(c, &c->att, 4 * att_rows_scratch(R, n_heads, head_dim, splits))
                             : NULL;
    att_rows(c, out, q, src, NULL, R, n_heads, head_dim, 1, scale, group, splits, part);
}
