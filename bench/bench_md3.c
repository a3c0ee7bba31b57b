// Moondream 3 (or any checkpoint) end to end on the CPU: one greedy caption
// of an image through the library (vision, BOS + image + prompt prefill, then
// decode), with the decode time per token set against the bandwidth floor:
// the weight bytes one decode token must read (every dense weight, the
// router, and only the k chosen experts of each MoE layer) over the read
// bandwidth the decode GEMV reaches on this machine, measured in the same run.
// usage: bench_md3 MODEL_DIR IMAGE [tokens] [threads]
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/generate.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

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

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
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
        double t0 = now();
        be->ops->matmul(be, y, x, wt, NULL, TY_ACT_NONE);
        t[r] = now() - t0;
    }
    qsort(t, RUNS, sizeof t[0], cmp_double);
    be->ops->release(be, &x);
    be->ops->release(be, &y);
    free(w);
    return (double)K * M * 2 / t[RUNS / 2] / 1e9;
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

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_md3 MODEL_DIR IMAGE [tokens] [threads]\n");
        return 2;
    }
    int tokens = argc > 3 ? atoi(argv[3]) : 20, threads = argc > 4 ? atoi(argv[4]) : 0;
    ty_err err = {0};
    ty_backend *be = NULL;
    md_model *m = NULL;
    tokenizer *tok = NULL;
    image_rgb img = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", argv[1]);
    double t0 = now();
    if (backend_cpu_init(&be, threads, &err) || image_init(&err) || md_model_init(&m, argv[1], be, &err) ||
        tokenizer_init_from_file(&tok, path, &err) || image_load_file(&img, argv[2], NULL, &err)) {
        fprintf(stderr, "bench_md3: %s\n", err.msg);
        return 1;
    }
    double load_s = now() - t0;
    const md_text_config *c = &m->cfg.text;
    printf("model: %s, %d layers (MoE from %d: %d experts, top %d, width %d), dim %d, tau %d\n",
           m->cfg.arch == MD_ARCH_MD3 ? "moondream3" : "moondream2", c->n_layers,
           c->moe.num_experts ? c->moe.start_layer : -1, c->moe.num_experts, c->moe.experts_per_token,
           c->moe.expert_inner_dim, c->dim, c->tau);
    printf("load: %.2f s, RSS after load %.2f GB\n", load_s, status_kb("VmRSS") / 1e6);

    double bw = gemv_bandwidth(be);
    skill_params p;
    skill_params_default(&p, SKILL_CAPTION);
    p.temperature = 0;
    p.max_tokens = tokens;
    skill_request *r = NULL;
    generate_stats st = {0};
    float *embeds = malloc((size_t)MD_PATCHES * c->dim * sizeof(float));
    double tv = now();
    ty_status s = embeds ? generate_image_embeds(m, &img, embeds, &err) : TY_E_NOMEM;
    double vision_s = now() - tv;
    generate_image gi = {.embeds = embeds};
    if (s == TY_OK) s = generate_one(m, tok, &gi, &p, NULL, NULL, &r, &st, &err);
    if (s != TY_OK) {
        fprintf(stderr, "bench_md3: %s\n", err.msg);
        return 1;
    }
    int n_fed = 0;
    skill_fed_ids(r, &n_fed);  // decode steps: every generated token fed back
    double experts = 0, bytes = active_bytes(m, &experts);
    double ms_token = n_fed ? st.decode_ms / n_fed : 0, floor_ms = bytes / (bw * 1e9) * 1e3;
    printf("caption (%d tokens): %.60s...\n", skill_output_tokens(r), skill_text(r));
    printf("vision %.1f s, text prefill (%d-row BOS + image prefix, then the prompt) %.1f s, decode %.1f ms/token "
           "over %d steps\n", vision_s, st.prefix_tokens, st.prefill_ms / 1e3, ms_token, n_fed);
    printf("decode reads %.3f GB of weights per token (%.3f GB of them the %d chosen experts of each MoE layer)\n",
           bytes / 1e9, experts / 1e9, c->moe.experts_per_token);
    printf("GEMV read bandwidth %.1f GB/s -> floor %.1f ms/token; decode at %.0f%% of the floor\n", bw, floor_ms,
           ms_token > 0 ? 100 * floor_ms / ms_token : 0);
    printf("peak RSS %.2f GB (now: %.2f GB file-backed, %.2f GB anonymous)\n", status_kb("VmHWM") / 1e6,
           status_kb("RssFile") / 1e6, status_kb("RssAnon") / 1e6);
    skill_free(r);
    free(embeds);
    image_rgb_free(&img);
    tokenizer_free(tok);
    md_model_free(m);
    be->ops->free(be);
    return 0;
}
