// Rotary embedding, the paged KV cache, and attention (paged for the text
// decoder, dense within groups for the vision tower). f32 throughout.
//
// Attention work is split into tasks of (sequence or group, head, block of up
// to ROW_BLOCK query rows). A task gathers its head's keys and values
// transposed, (head_dim, n_keys), so the score and output loops run along the
// long key axis with full vectors even when head_dim is small.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/cpu/vec.h"

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
    const int *n_keys;   // (groups) keys to gather per group
    // paged
    const ty_kv_layer *kv;
    const ty_batch *batch;
    // dense
    ty_tensor k, v;
    int group_rows;
} attn_job;

// Key/value row t of the group's kv head, as pointers into the cache or the dense tensors.
static const float *key_row(const attn_job *j, int g, int t, int kvh, int which_v) {
    if (j->kv) {
        const int32_t *pages = j->batch->pages[g];
        return kv_row(which_v ? j->kv->v : j->kv->k, pages, t, j->kv->page_size) + kvh * j->head_dim;
    }
    return cpu_row(which_v ? j->v : j->k, (int64_t)g * j->group_rows + t) + kvh * j->head_dim;
}

// Few query rows (decode): read key and value rows in place through pointers,
// no transposed copy (gathering the keys would cost as much as the attention).
static void attend_rows_direct(const attn_job *j, const attn_task *tk, int kvh, int n) {
    int hd = j->head_dim;
    const float **kp = malloc((size_t)(2 * n + 1) * sizeof *kp);
    float *scores = malloc((size_t)(n + 16) * sizeof(float));
    if (!kp || !scores) abort();
    const float **vp = kp + n;
    for (int t = 0; t < n; t++) {
        kp[t] = key_row(j, tk->group, t, kvh, 0);
        vp[t] = key_row(j, tk->group, t, kvh, 1);
    }
    for (int i = tk->row0; i < tk->row0 + tk->n_rows; i++) {
        int r = j->rows[i], nv = j->visible[i];
        vec_attend_one(cpu_row(j->q, r) + tk->head * hd, kp, vp, nv, hd, j->scale, scores,
                       cpu_row(j->out, r) + tk->head * hd, j->avx2);
    }
    free(kp);
    free(scores);
}

// Many query rows (prefill, vision): S = Q Kᵀ and O = P V both as 4x4 blocks of
// long dot products with the GEMM micro-kernel. Keys are read in place through
// row pointers; values are gathered transposed once per task so P's rows and
// Vᵀ's rows are both contiguous along the key axis.
static void attend_rows_blocked(const attn_job *j, const attn_task *tk, int kvh) {
    int hd = j->head_dim, nmax = 0;
    for (int i = tk->row0; i < tk->row0 + tk->n_rows; i++) nmax = j->visible[i] > nmax ? j->visible[i] : nmax;
    const float **krow = malloc((size_t)(nmax + 1) * sizeof *krow);
    float *vt = malloc(((size_t)hd * nmax + (size_t)4 * nmax + 64) * sizeof(float));
    if (!krow || !vt) abort();
    float *p = vt + (size_t)hd * nmax;  // (4, nmax) softmaxed scores of the current query rows
    for (int t = 0; t < nmax; t++) {
        krow[t] = key_row(j, tk->group, t, kvh, 0);
        const float *v = key_row(j, tk->group, t, kvh, 1);
        for (int d = 0; d < hd; d++) vt[(size_t)d * nmax + t] = v[d];
    }
    ty_cpu_simd simd = j->simd;
    float blk[16];
    for (int i0 = tk->row0; i0 < tk->row0 + tk->n_rows; i0 += 4) {
        int ni = tk->row0 + tk->n_rows - i0 < 4 ? tk->row0 + tk->n_rows - i0 : 4;
        const float *q[4], *prow[4];
        int kmax = 0;
        for (int i = 0; i < ni; i++) {
            q[i] = cpu_row(j->q, j->rows[i0 + i]) + tk->head * hd;
            prow[i] = p + (size_t)i * nmax;
            kmax = j->visible[i0 + i] > kmax ? j->visible[i0 + i] : kmax;
        }
        for (int t0 = 0; t0 < kmax; t0 += 4) {
            int nb = kmax - t0 < 4 ? kmax - t0 : 4;
            cpu_dot_block(blk, q, ni, krow + t0, nb, hd, simd);
            for (int i = 0; i < ni; i++)
                for (int t = 0; t < nb; t++) p[(size_t)i * nmax + t0 + t] = blk[i * 4 + t] * j->scale;
        }
        for (int i = 0; i < ni; i++) {
            float *pi = p + (size_t)i * nmax;
            int nv = j->visible[i0 + i];
            float sum = vec_exp_sum(pi, vec_max(pi, nv), nv, j->avx2), inv = 1.0f / sum;
            for (int t = 0; t < nv; t++) pi[t] *= inv;
            for (int t = nv; t < kmax; t++) pi[t] = 0.0f;  // keys this row may not see
        }
        for (int d0 = 0; d0 < hd; d0 += 4) {
            int nd = hd - d0 < 4 ? hd - d0 : 4;
            const float *vrow[4];
            for (int d = 0; d < nd; d++) vrow[d] = vt + (size_t)(d0 + d) * nmax;
            cpu_dot_block(blk, prow, ni, vrow, nd, kmax, simd);
            for (int i = 0; i < ni; i++) {
                float *o = cpu_row(j->out, j->rows[i0 + i]) + tk->head * hd + d0;
                for (int d = 0; d < nd; d++) o[d] = blk[i * 4 + d];
            }
        }
    }
    free(krow);
    free(vt);
}

static void attend_task(void *ctx, int idx) {
    const attn_job *j = ctx;
    const attn_task *tk = &j->tasks[idx];
    int n = j->n_keys[tk->group], kvh = tk->head / j->kv_group;
    if (tk->n_rows <= DIRECT_ROWS) {
        attend_rows_direct(j, tk, kvh, n);
        return;
    }
    attend_rows_blocked(j, tk, kvh);
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
                  .n_keys = b->kv_len, .kv = kv, .batch = b};
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
    int *visible = malloc((size_t)R * sizeof *visible), *n_keys = malloc((size_t)G * sizeof *n_keys);
    if (!start || !rows || !visible || !n_keys) abort();
    for (int g = 0; g <= G; g++) start[g] = g * group;
    for (int g = 0; g < G; g++) n_keys[g] = group;
    for (int r = 0; r < R; r++) {
        rows[r] = r;
        visible[r] = group;
    }
    attn_job j = {.out = out, .q = q, .n_heads = n_heads, .kv_group = 1, .head_dim = head_dim, .scale = scale,
                  .avx2 = cpu_has_avx2(be), .simd = cpu_of(be)->simd, .rows = rows, .visible = visible, .n_keys = n_keys, .k = k, .v = v,
                  .group_rows = group};
    run_tasks(be, &j, G, start);
    free(start);
    free(rows);
    free(visible);
    free(n_keys);
}
