// tycho bench (cmd_bench.c: arguments, reporting; bench_run.c: the workload
// through one engine). Internal to the CLI.
#ifndef TYCHO_CLI_BENCH_H
#define TYCHO_CLI_BENCH_H

#include <stdint.h>

#include "api/engine.h"
#include "model/random_weights.h"

#define BENCH_MAX_BATCHES 16
#define BENCH_TOKENIZER "tests/data/golden/tokenizer/gpt2.json"

typedef struct {
    const char *model;      // "md2", "md3" or a directory
    int random;             // md2 / md3
    md_arch arch;
    md_random_size size;
    int layers;             // 0: the real count
    const char *tokenizer;  // random models only
    const char *mode;       // "direct" | "cot"
    int tokens;             // generated per request: 3 | 30
    int width, height;
    int batches[BENCH_MAX_BATCHES], n_batches;
    int requests, warmup;   // requests 0: per batch, max(50, 4 x batch)
    const char *device, *precision;  // precision NULL: the engine's default (f32)
    int threads, kv_pages, max_batch_tokens, json;
    uint64_t seed;
} bench_args;

typedef struct {
    int batch, requests;
    double wall_s, req_per_s, tokens_per_s;
    double lat_p50, lat_p99, ttft_p50;  // ms
    long long output_tokens, prefix_hits, vision_images, steps;
    double mem_used_mb, mem_total_mb, peak_rss_mb;
    int failed, wrong_count;
} bench_result;

// One batch size through a fresh engine: warm-up, then a.requests (0: the
// default) submitted at once. Returns the exit status (1: a request failed or
// generated another count, or the engine could not start).
int bench_run(const bench_args *a, const engine_model_source *src, int batch, bench_result *res);

double bench_now_s(void);

#endif
