// Moondream 3 (or any checkpoint) on the CPU at the model layer, as the
// engine runs one request: the vision tower over an image's crops, the
// 730-row BOS + image prefix, a caption prompt, then greedy decode one row at
// a time. Decode time per token is set against the bandwidth floor: the
// weight bytes one decode token must read (every dense weight, each MoE
// layer's router and only its k chosen experts, the LM head) over the read
// bandwidth the decode GEMV reaches on this machine, measured in the same run.
// Pixels are random (the weights are too): the costs are those of any image
// with that tiling. Needs no image or tokenizer library (links model,
// backend, core and safetensors only), so it can run on a bare machine.
// usage: bench_md3 MODEL_DIR [ROWSxCOLS (1x1: 378x378 image, 2 crops; 2x4: 640x480, 9)] [tokens] [threads] [touch]
// "touch" reads every page of the checkpoint first: a trained model's
// 730-row prefill routes tokens to (nearly) every expert, so all of its
// weights become resident; random weights route most tokens to the same few
// experts, and without it the peak RSS would understate a real run's.
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#include "model/moondream.h"

// A field of /proc/self/status in kB (VmHWM = peak RSS, RssFile = mapped file pages, RssAnon).
static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') v = atol(line + n + 1);
    if (f) fclose(f);
    return v;
}

// GB/s of bf16 weights the backend's decode GEMV streams from memory: a
// (1, 2048) x (65536, 2048)^T product, 256 MiB of weights (far past any cache), median of 5.
static double gemv_bandwidth(ty_backend *be) {
    enum { K = 2048, M = 65536, RUNS = 5 };
    ty_err err;
    uint16_t *w = malloc((size_t)K * M * sizeof *w);
    if (!w) return 0;
    for (size_t i = 0; i < (size_t)K * M; i++) w[i] = (uint16_t)(0x3c00 + (i * 2654435761u >> 20) % 512);
    ty_tensor x, y, wt;
    be->ops->alloc(be, &x, TY_DTYPE_F32, 1, K, &err);
    be->ops->alloc(be, &y, TY_DTYPE_F32, 1, M, &err);
    be->ops->weight(be, &wt, TY_DTYPE_BF16, M, K, w, &err);
    double t[RUNS];
    be->ops->matmul(be, y, x, wt, NULL, TY_ACT_NONE);
    for (int r = 0; r < RUNS; r++) {
        double t0 = bench_now();
        be->ops->matmul(be, y, x, wt, NULL, TY_ACT_NONE);
        t[r] = bench_now() - t0;
    }
    be->ops->release(be, &x);
    be->ops->release(be, &y);
    free(w);
    return (double)K * M * 2 / bench_median(t, RUNS) / 1e9;
}

static double tensor_bytes(ty_tensor t) { return t.data ? (double)t.rows * t.cols * dtype_size(t.dtype) : 0; }
static double linear_bytes(const md_linear *l) { return tensor_bytes(l->w) + tensor_bytes(l->b); }

// Weight bytes one decode token reads: attention, tau, dense MLPs or router +
// k experts, the final LayerNorm and the LM head (a wte row is negligible).
static double active_bytes(const md_model *m, double *expert_bytes) {
    const md_text_config *c = &m->cfg.text;
    double total = 0, experts = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const md_text_block *b = &m->text.blocks[l];
        total += linear_bytes(&b->qkv) + linear_bytes(&b->proj) + tensor_bytes(b->ln.w) + tensor_bytes(b->ln.b);
        total += tensor_bytes(b->tau.wq) + tensor_bytes(b->tau.wv) + tensor_bytes(b->tau.alpha);
        if (b->is_moe) {
            double per_expert = (tensor_bytes(b->moe.fc1) + tensor_bytes(b->moe.fc2)) / c->moe.num_experts;
            total += linear_bytes(&b->moe.router) + per_expert * c->moe.experts_per_token;
            experts += per_expert * c->moe.experts_per_token;
        } else {
            total += linear_bytes(&b->fc1) + linear_bytes(&b->fc2);
        }
    }
    *expert_bytes = experts;
    return total + linear_bytes(&m->text.lm_head) + tensor_bytes(m->text.post_ln.w) + tensor_bytes(m->text.post_ln.b);
}

typedef struct {
    md_model *m;
    md_kv_cache kv;
    int32_t *pages, prefix;
    float *logits;
} runner;

// n rows of sequence 0 from position pos (ids, or embeds where id < 0); logits of the last row.
static ty_status run(runner *R, int pos, int n, const int32_t *ids, const float *embeds, ty_err *err) {
    int32_t *seq = calloc((size_t)n, sizeof *seq), *p = malloc((size_t)n * sizeof *p), kv_len = pos + n, last = n - 1;
    for (int i = 0; i < n; i++) p[i] = pos + i;
    const int32_t *tables[1] = {R->pages};
    ty_batch b = {.n_rows = n, .seq = seq, .pos = p, .n_seqs = 1, .prefix = &R->prefix, .kv_len = &kv_len,
                  .pages = tables};
    md_text_step st = {.batch = &b, .ids = ids, .embeds = embeds, .n_out = 1, .out_rows = &last, .logits = R->logits};
    ty_status s = md_text_forward(R->m, &R->kv, &st, err);
    free(seq);
    free(p);
    return s;
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_md3 MODEL_DIR [ROWSxCOLS] [tokens] [threads] [touch]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);  // progress lines as they come, also into a log file
    int rows = 1, cols = 1;
    if (argc > 2 && sscanf(argv[2], "%dx%d", &rows, &cols) != 2) return 2;
    int tokens = argc > 3 ? atoi(argv[3]) : 20, threads = argc > 4 ? atoi(argv[4]) : 0;
    ty_err err = {0};
    ty_backend *be = NULL;
    runner R = {0};
    double t0 = bench_now();
    if (backend_cpu_init(&be, threads, &err) || md_model_init(&R.m, argv[1], be, &err)) {
        fprintf(stderr, "bench_md3: %s\n", err.msg);
        return 1;
    }
    md_model *m = R.m;
    const md_text_config *c = &m->cfg.text;
    printf("model: %s, %d layers (MoE from %d: %d experts, top %d, width %d), dim %d, tau %d; load %.2f s, "
           "RSS after load %.2f GB\n", m->cfg.arch == MD_ARCH_MD3 ? "moondream3" : "moondream2", c->n_layers,
           c->moe.num_experts ? c->moe.start_layer : -1, c->moe.num_experts, c->moe.experts_per_token,
           c->moe.expert_inner_dim, c->dim, c->tau, bench_now() - t0, status_kb("VmRSS") / 1e6);
    if (argc > 5 && !strcmp(argv[5], "touch")) {
        t0 = bench_now();
        volatile unsigned char sink = 0;
        for (size_t i = 0; i < safetensors_count(m->st); i++) {
            const safetensors_tensor *t = safetensors_at(m->st, i);
            for (size_t b = 0; b < t->n_bytes; b += 4096) sink ^= ((const unsigned char *)t->data)[b];
        }
        printf("touched every page of the checkpoint in %.1f s: RSS %.2f GB\n", bench_now() - t0,
               status_kb("VmRSS") / 1e6);
    }
    double bw = gemv_bandwidth(be);

    // Vision: crop 0 global, then the tiles; a 1x1 tiling's tile is the global crop.
    int n_crops = rows * cols == 1 ? 2 : 1 + rows * cols;
    size_t crop = (size_t)378 * 378 * 3;
    uint8_t *pix = malloc(crop * n_crops);
    unsigned seed = 1;
    for (size_t i = 0; i < crop * n_crops; i++) pix[i] = (uint8_t)((seed = seed * 1103515245u + 12345u) >> 24);
    if (n_crops == 2) memcpy(pix + crop, pix, crop);
    float *embeds = malloc((size_t)MD_PATCHES * c->dim * sizeof(float));
    t0 = bench_now();
    ty_status s = md_vision_encode(m, pix, n_crops, rows, cols, NULL, embeds, &err);
    double vision_s = bench_now() - t0;

    // Text: BOS + image prefix, the normal caption prompt (caption[1]), then greedy decode.
    int prompt_n = m->cfg.tok.caption[1].n, total = 1 + MD_PATCHES + prompt_n + tokens;
    int n_pages = (total + 63) / 64;
    R.prefix = 1 + MD_PATCHES;
    R.pages = malloc((size_t)n_pages * sizeof *R.pages);
    for (int i = 0; i < n_pages; i++) R.pages[i] = i;
    R.logits = malloc((size_t)c->vocab_size * sizeof(float));
    int32_t *ids = malloc((size_t)R.prefix * sizeof *ids);
    ids[0] = m->cfg.tok.bos_id;
    for (int i = 1; i < R.prefix; i++) ids[i] = -1;
    if (s == TY_OK) s = md_kv_cache_init(m, &R.kv, n_pages, 64, &err);
    t0 = bench_now();
    if (s == TY_OK) s = run(&R, 0, R.prefix, ids, embeds, &err);
    double prefix_s = bench_now() - t0;
    t0 = bench_now();
    if (s == TY_OK) s = run(&R, R.prefix, prompt_n, m->cfg.tok.caption[1].ids, NULL, &err);
    double prompt_s = bench_now() - t0;
    double *step = malloc((size_t)tokens * sizeof *step);
    int pos = R.prefix + prompt_n;
    for (int i = 0; i < tokens && s == TY_OK; i++, pos++) {
        int32_t next = argmax(R.logits, c->vocab_size);
        t0 = bench_now();
        s = run(&R, pos, 1, &next, NULL, &err);
        step[i] = bench_now() - t0;
    }
    if (s != TY_OK) {
        fprintf(stderr, "bench_md3: %s\n", err.msg);
        return 1;
    }
    double sum = 0;
    for (int i = 0; i < tokens; i++) sum += step[i];
    qsort(step, (size_t)tokens, sizeof *step, bench_cmp_double);
    double experts = 0, bytes = active_bytes(m, &experts), ms = sum / tokens * 1e3, floor_ms = bytes / (bw * 1e9) * 1e3;
    printf("%dx%d tiling (%d crops): vision %.2f s, %d-row prefix %.2f s, %d-token prompt %.3f s\n", rows, cols,
           n_crops, vision_s, R.prefix, prefix_s, prompt_n, prompt_s);
    printf("decode: %d tokens, mean %.1f ms/token (median %.1f, min %.1f, max %.1f)\n", tokens, ms,
           step[tokens / 2] * 1e3, step[0] * 1e3, step[tokens - 1] * 1e3);
    printf("a decode token reads %.3f GB of weights (%.3f GB: the %d chosen experts of the MoE layers)\n",
           bytes / 1e9, experts / 1e9, c->moe.experts_per_token);
    printf("GEMV read bandwidth %.1f GB/s -> floor %.1f ms/token; decode at %.0f%% of the floor\n", bw, floor_ms,
           100 * floor_ms / ms);
    printf("peak RSS %.2f GB (at the end: %.2f GB file-backed, %.2f GB anonymous)\n", status_kb("VmHWM") / 1e6,
           status_kb("RssFile") / 1e6, status_kb("RssAnon") / 1e6);
    md_kv_cache_free(m, &R.kv);
    free(step);
    free(ids);
    free(R.pages);
    free(R.logits);
    free(embeds);
    free(pix);
    md_model_free(m);
    be->ops->free(be);
    return 0;
}
