// Rotary embedding, the paged KV cache, and attention (paged for the text
// decoder, dense within groups for the vision tower). f32 throughout.
//
// Batch invariance: a query row's output is bitwise the same whatever else is
// in the call (other sequences, the rest of its prefill chunk, how a prompt
// was cut into chunks), given the same cached keys and values. So every row is
// computed one way, with nv = the keys it may see:
//   s[t] = dot(q, k_t) * scale for t < nv      (cpu_dot_block's arithmetic)
//   p = softmax(s): vec_max, vec_exp_sum, times 1 / sum; p[t] = 0 past nv
//   o[d] = dot(p, column d of V)               (summed as dot.c's kernels do)
// Scores are computed in 4x4 blocks up to the block's longest row; the extra
// scores are then overwritten with zeros. A task's row count picks how P·V
// runs, for speed only: few rows (decode) read value rows in place
// (cpu_dot_columns); many rows (prefill, vision) gather Vᵀ once and use 4x4
// dot blocks over the keys padded with zeros to a multiple of CPU_DOT_PAD, so
// no key ever lands in a scalar tail. A key a row may not see enters as p = 0,
// an exact zero term, which leaves the sums as they were (dot.c: at most the
// sign of an output that is exactly zero could differ).
//
// Attention work is split into tasks of (sequence or group, head, block of up
// to ROW_BLOCK query rows). Decode reads each key and value row of the cache
// once, a page row apart: the kernels prefetch rows CPU_PREFETCH_ROWS ahead.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/cpu/vec.h"

// DIRECT_ROWS: up to this many rows a task reads value rows in place (gathering
// Vᵀ would cost as much as the attention); beyond, it gathers Vᵀ once.
enum { ROW_BLOCK = 64, DIRECT_ROWS = 4 };

void cpu_rope(ty_backend *be, ty_tensor x, int n_heads, int head_dim, int rot_dims, float theta,
              const ty_batch *batch) {
    int half = rot_dims / 2;
    float inv[64];  // rot_dims <= 128
    for (int j = 0; j < half; j++) inv[j] = 1.0f / powf(theta, (float)(2 * j) / (float)rot_dims);
    for (int64_t r = 0; r < x.rows; r++) {
        float *row = cpu_row(x, r);
        float p = (float)batch->pos[r];
        for (int j = 0; j < half; j++) {
            float angle = p * inv[j];  // rounded to f32 like the reference's table
            float c = cosf(angle), s = sinf(angle);
            for (int h = 0; h < n_heads; h++) {
                float *v = row + h * head_dim;
                float a = v[j], b = v[j + half];
                v[j] = a * c - b * s;
                v[j + half] = a * s + b * c;
            }
        }
    }
}

static float *kv_row(ty_tensor t, const int32_t *pages, int pos, int page_size) {
    return cpu_row(t, (int64_t)pages[pos / page_size] * page_size + pos % page_size);
}

void cpu_kv_write(ty_backend *be, ty_kv_layer *kv, ty_tensor k, ty_tensor v, const ty_batch *batch) {
    for (int r = 0; r < batch->n_rows; r++) {
        const int32_t *pages = batch->pages[batch->seq[r]];
        int p = batch->pos[r];
        memcpy(kv_row(kv->k, pages, p, kv->page_size), cpu_row(k, r), (size_t)k.cols * sizeof(float));
        memcpy(kv_row(kv->v, pages, p, kv->page_size), cpu_row(v, r), (size_t)v.cols * sizeof(float));
    }
}

typedef struct {
    int group;   // sequence (paged) or group of rows (dense)
    int head;
    int row0, n_rows;  // index into the job's row list
} attn_task;

typedef struct {
    ty_tensor out, q;
    int n_heads, kv_group, head_dim;  // kv_group: query heads per kv head
    float scale;
    int avx2;
    ty_cpu_simd simd;
    attn_task *tasks;
    const int *rows;     // query row ids, grouped so each task's rows are contiguous here
    const int *visible;  // (q rows) keys visible from each row: keys [0, visible)
    // paged
    const ty_kv_layer *kv;
    const ty_batch *batch;
    // dense
    ty_tensor k, v;
    int group_rows;
} attn_job;

// Pointers to the key and value rows [0, n) of the group's kv head, in the
// cache pages or the dense tensors (a page at a time: no division per row).
static void kv_rows(const attn_job *j, int g, int kvh, int n, const float **krow, const float **vrow) {
    int64_t off = (int64_t)kvh * j->head_dim;
    if (!j->kv) {
        for (int t = 0; t < n; t++) {
            krow[t] = cpu_row(j->k, (int64_t)g * j->group_rows + t) + off;
            vrow[t] = cpu_row(j->v, (int64_t)g * j->group_rows + t) + off;
        }
        return;
    }
    const int32_t *pages = j->batch->pages[g];
    int ps = j->kv->page_size;
    for (int t0 = 0; t0 < n; t0 += ps) {
        const float *k = cpu_row(j->kv->k, (int64_t)pages[t0 / ps] * ps) + off;
        const float *v = cpu_row(j->kv->v, (int64_t)pages[t0 / ps] * ps) + off;
        for (int t = t0; t < n && t < t0 + ps; t++) {
            krow[t] = k + (t - t0) * j->kv->k.stride;
            vrow[t] = v + (t - t0) * j->kv->v.stride;
        }
    }
}

static int round_up(int n, int m) { return (n + m - 1) / m * m; }

// Softmax of one row's scores s[0, nv) in place, zeros in [nv, npad).
static void softmax_row(float *s, int nv, int npad, int avx2) {
    if (nv > 0) {
        float sum = vec_exp_sum(s, vec_max(s, nv), nv, avx2), inv = 1.0f / sum;
        for (int t = 0; t < nv; t++) s[t] *= inv;
    }
    for (int t = nv > 0 ? nv : 0; t < npad; t++) s[t] = 0.0f;
}

static void attend_task(void *ctx, int idx) {
    const attn_job *j = ctx;
    const attn_task *tk = &j->tasks[idx];
    int hd = j->head_dim, kvh = tk->head / j->kv_group, direct = tk->n_rows <= DIRECT_ROWS, nmax = 0;
    for (int i = tk->row0; i < tk->row0 + tk->n_rows; i++) nmax = j->visible[i] > nmax ? j->visible[i] : nmax;
    // stride: the padded key axis of the score rows p (4, stride) and of Vᵀ (hd, stride).
    int stride = round_up(nmax, CPU_DOT_PAD), hp = round_up(hd, CPU_DOT_PAD);
    const float **krow = malloc((size_t)(2 * nmax + 1) * sizeof *krow), **vrow = krow + nmax;
    size_t rest = direct ? (size_t)CPU_DOT_PAD * hp : (size_t)hd * stride;
    float *p = malloc(((size_t)4 * stride + rest + CPU_DOT_PAD) * sizeof(float)), *vt = p + (size_t)4 * stride;
    if (!krow || !p) abort();
    kv_rows(j, tk->group, kvh, nmax, krow, vrow);
    if (!direct) {  // Vᵀ, zero past the last key
        for (int t = 0; t < nmax; t++)
            for (int d = 0; d < hd; d++) vt[(size_t)d * stride + t] = vrow[t][d];
        for (int d = 0; d < hd; d++)
            for (int t = nmax; t < stride; t++) vt[(size_t)d * stride + t] = 0.0f;
    }
    ty_cpu_simd simd = j->simd;
    float blk[16];
    for (int i0 = tk->row0; i0 < tk->row0 + tk->n_rows; i0 += 4) {
        int ni = tk->row0 + tk->n_rows - i0 < 4 ? tk->row0 + tk->n_rows - i0 : 4;
        const float *q[4], *prow[4];
        float *o[4];
        int kmax = 0;
        for (int i = 0; i < ni; i++) {
            q[i] = cpu_row(j->q, j->rows[i0 + i]) + tk->head * hd;
            o[i] = cpu_row(j->out, j->rows[i0 + i]) + tk->head * hd;
            prow[i] = p + (size_t)i * stride;
            kmax = j->visible[i0 + i] > kmax ? j->visible[i0 + i] : kmax;
        }
        int kpad = round_up(kmax, CPU_DOT_PAD);
        for (int t0 = 0; t0 < kmax; t0 += 4) {
            int nb = kmax - t0 < 4 ? kmax - t0 : 4;
            if (direct)  // keys are read once here, straight from the cache pages
                for (int t = t0 + CPU_PREFETCH_ROWS; t < t0 + CPU_PREFETCH_ROWS + 4 && t < kmax; t++)
                    cpu_prefetch(krow[t], hd);
            cpu_dot_block(blk, q, ni, krow + t0, nb, hd, simd);
            for (int i = 0; i < ni; i++)
                for (int t = 0; t < nb; t++) p[(size_t)i * stride + t0 + t] = blk[i * 4 + t] * j->scale;
        }
        for (int i = 0; i < ni; i++) softmax_row(p + (size_t)i * stride, j->visible[i0 + i], kpad, j->avx2);
        if (direct) {  // P·V reading the value rows in place
            for (int i = 0; i < ni; i++) cpu_dot_columns(o[i], prow[i], vrow, j->visible[i0 + i], hd, vt, simd);
            continue;
        }
        for (int d0 = 0; d0 < hd; d0 += 4) {  // P·V as 4x4 dot blocks over Vᵀ, kpad keys
            int nd = hd - d0 < 4 ? hd - d0 : 4;
            const float *vtrow[4];
            for (int d = 0; d < nd; d++) vtrow[d] = vt + (size_t)(d0 + d) * stride;
            cpu_dot_block(blk, prow, ni, vtrow, nd, kpad, simd);
            for (int i = 0; i < ni; i++)
                for (int d = 0; d < nd; d++) o[i][d0 + d] = blk[i * 4 + d];
        }
    }
    free(krow);
    free(p);
}

// Splits each group's rows (rows[], contiguous per group as given by group_start)
// into tasks per head and block, and runs them.
static void run_tasks(ty_backend *be, attn_job *j, int n_groups, const int *group_start) {
    int n_tasks = 0;
    for (int g = 0; g < n_groups; g++)
        n_tasks += j->n_heads * ((group_start[g + 1] - group_start[g] + ROW_BLOCK - 1) / ROW_BLOCK);
    attn_task *tasks = malloc((size_t)(n_tasks ? n_tasks : 1) * sizeof *tasks);
    if (!tasks) abort();
    int t = 0;
    for (int g = 0; g < n_groups; g++)
        for (int h = 0; h < j->n_heads; h++)
            for (int r = group_start[g]; r < group_start[g + 1]; r += ROW_BLOCK) {
                int nr = group_start[g + 1] - r < ROW_BLOCK ? group_start[g + 1] - r : ROW_BLOCK;
                tasks[t++] = (attn_task){g, h, r, nr};
            }
    j->tasks = tasks;
    pool_run(cpu_of(be)->pool, n_tasks, attend_task, j);
    free(tasks);
}

void cpu_attention(ty_backend *be, ty_tensor out, ty_tensor q, const ty_kv_layer *kv, int n_heads, int n_kv_heads,
                   int head_dim, float scale, const ty_batch *b) {
    int S = b->n_seqs, R = b->n_rows;
    int *start = calloc((size_t)S + 1, sizeof *start);
    int *rows = malloc((size_t)(R ? R : 1) * sizeof *rows), *visible = malloc((size_t)(R ? R : 1) * sizeof *visible);
    int *fill = calloc((size_t)S + 1, sizeof *fill);
    if (!start || !rows || !visible || !fill) abort();
    for (int r = 0; r < R; r++) start[b->seq[r] + 1]++;
    for (int s = 0; s < S; s++) start[s + 1] += start[s];
    for (int r = 0; r < R; r++) {
        int s = b->seq[r], i = start[s] + fill[s]++, p = b->pos[r];
        int nv = p + 1;
        if (p < b->prefix[s] && b->prefix[s] > nv) nv = b->prefix[s];  // bidirectional prefix
        rows[i] = r;
        visible[i] = nv < b->kv_len[s] ? nv : b->kv_len[s];
    }
    attn_job j = {.out = out, .q = q, .n_heads = n_heads, .kv_group = n_heads / n_kv_heads, .head_dim = head_dim,
                  .scale = scale, .avx2 = cpu_has_avx2(be), .simd = cpu_of(be)->simd, .rows = rows, .visible = visible,
                  .kv = kv, .batch = b};
    run_tasks(be, &j, S, start);
    free(start);
    free(rows);
    free(visible);
    free(fill);
}

void cpu_attention_dense(ty_backend *be, ty_tensor out, ty_tensor q, ty_tensor k, ty_tensor v, int n_heads,
                         int head_dim, float scale, int group) {
    int R = (int)q.rows, G = R / group;
    int *start = malloc((size_t)(G + 1) * sizeof *start), *rows = malloc((size_t)R * sizeof *rows);
    int *visible = malloc((size_t)R * sizeof *visible);
    if (!start || !rows || !visible) abort();
    for (int g = 0; g <= G; g++) start[g] = g * group;
    for (int r = 0; r < R; r++) {
        rows[r] = r;
        visible[r] = group;
    }
    attn_job j = {.out = out, .q = q, .n_heads = n_heads, .kv_group = 1, .head_dim = head_dim, .scale = scale,
                  .avx2 = cpu_has_avx2(be), .simd = cpu_of(be)->simd, .rows = rows, .visible = visible, .k = k, .v = v,
                  .group_rows = group};
    run_tasks(be, &j, G, start);
    free(start);
    free(rows);
    free(visible);
}
