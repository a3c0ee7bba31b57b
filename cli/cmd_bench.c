// tycho bench: the workload of the project's benchmark spec (shared
// docs/benchmark.md) through the engine: the scheduler with continuous
// batching and the prefix cache, requests submitted with the C API.
//
//   tycho bench --model md2|md3|DIR [--shape real|tiny] [--layers N] [--tokenizer FILE] [--mode direct|cot]
//               [--image-size 800x600] [--batch 1,4,16,64] [--requests N] [--warmup N] [--device cpu|cuda[:N]]
//               [--precision f32|bf16] [--threads N] [--seed S] [--kv-pages N] [--max-batch-tokens N] [--json]
//
// md2 / md3: random weights at the real widths (src/model/random_weights.h),
// made in memory at start-up; DIR: a real model directory. Per batch size,
// one fresh engine (fresh prefix cache): warm-up requests on their own images,
// then every request submitted at once. Questions come 5 per 3 images (images
// 0 and 1 of every three get two, asked back to back); pixels are random,
// distinct per image, submitted as raw RGB (no decoding is timed). Each
// request is a query without reasoning, greedy, that generates exactly 3
// (direct) or 30 (cot) tokens: the engine is told to ignore EOS. With random
// weights reasoning output is noise (coordinate tokens at random, the answer
// token almost never), so CoT is measured as 30 plain answer tokens.
//
// Reported: req/s (completed / wall time from the first submit to the last
// completion), P50/P99 engine latency (prefill start to last token, queue
// excluded), P50 time to first token (queue included), output tokens/s, GPU
// memory in use (cudaMemGetInfo, highest seen) or the process's peak RSS on
// the CPU. Exit status 1 when any request fails or generates another count.
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cuda/backend_cuda.h"
#include "cli/bench.h"
#include "cli/cli.h"
#include "tycho.h"


// One line on stderr; returns 2, the exit status of a usage error.
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tycho bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (tycho bench --help)\n");
    va_end(ap);
    return 2;
}

static void bench_usage(FILE *f) {
    fprintf(f,
            "usage: tycho bench --model md2|md3|DIR [options]\n"
            "  --model md2|md3   random weights at the real widths, made in memory (md2 3.9 GB, md3 18.5 GB)\n"
            "  --model DIR       a real model directory (as for the other commands)\n"
            "  --shape real|tiny widths of a random model (tiny: seconds on a CPU, for tests; default real)\n"
            "  --layers N        text layers of a random model (default: the real 24)\n"
            "  --tokenizer FILE  tokenizer.json of a random model (default: GPT-2's BPE with Moondream's special\n"
            "                    tokens, %s,\n"
            "                    from the working directory or the source tree above the binary)\n"
            "  --mode direct|cot exactly 3 (direct) or 30 (cot) generated tokens per query, EOS ignored; cot is\n"
            "                    plain generation, not reasoning=True (random weights reason in noise)\n"
            "  --image-size WxH  random RGB images (default 800x600: 2x4 tiles, 9 crops; 378x378: 2 crops)\n"
            "  --batch LIST      engine max batch sizes, one fresh engine each (default 1,4,16,64)\n"
            "  --requests N      measured requests per batch size (default max(50, 4 x batch))\n"
            "  --warmup N        requests on other images before measuring, not counted (default 4)\n"
            "  --device D        cpu, cuda or cuda:N (default cpu); --threads N CPU threads (default all)\n"
            "  --precision P     GPU matmul inputs: f32 (default) or bf16\n"
            "  --seed S          weights and pixels (default 1)\n"
            "  --kv-pages N      KV pages (default: room for batch + 8 requests)\n"
            "  --max-batch-tokens N  rows per forward step (engine default 2048)\n"
            "  --json            one JSON object per batch size instead of the table\n",
            BENCH_TOKENIZER);
}

static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

// "1,4,16,64": every field a number in [1, 4096], none empty.
static int parse_batches(const char *s, bench_args *a) {
    a->n_batches = 0;
    for (const char *p = s;; p++) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char field[16];
        long v;
        if (!n || n >= sizeof field || a->n_batches == BENCH_MAX_BATCHES) return -1;
        memcpy(field, p, n);
        field[n] = '\0';
        if (parse_long(field, 1, 4096, &v)) return -1;
        a->batches[a->n_batches++] = (int)v;
        if (!comma) return 0;
        p = comma;
    }
}

// Returns -1 when the arguments are good, else the exit status (help: 0, errors: 2).
static int bench_parse_args(int argc, char **argv, bench_args *a) {
    *a = (bench_args){.size = MD_RANDOM_REAL, .mode = "direct", .tokens = 3, .width = 800, .height = 600,
                      .batches = {1, 4, 16, 64}, .n_batches = 4, .warmup = 4, .device = "cpu", .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            bench_usage(stdout);
            return 0;
        }
        if (!strcmp(o, "--json")) {
            a->json = 1;
            continue;
        }
        if (strncmp(o, "--", 2)) return usage_error("unexpected argument '%s'", o);
        if (!v) return usage_error("%s needs a value", o);
        i++;
        long n = 0;
        int bad = 0;
        if (!strcmp(o, "--model")) a->model = v;
        else if (!strcmp(o, "--tokenizer")) a->tokenizer = v;
        else if (!strcmp(o, "--device")) a->device = v;
        else if (!strcmp(o, "--precision")) {
            bad = strcmp(v, "f32") && strcmp(v, "bf16");
            a->precision = v;
        } else if (!strcmp(o, "--shape")) {
            bad = strcmp(v, "real") && strcmp(v, "tiny");
            a->size = !strcmp(v, "tiny") ? MD_RANDOM_TINY : MD_RANDOM_REAL;
        } else if (!strcmp(o, "--mode")) {
            bad = strcmp(v, "direct") && strcmp(v, "cot");
            a->mode = v;
            a->tokens = !strcmp(v, "cot") ? 30 : 3;
        } else if (!strcmp(o, "--image-size")) {
            char *x = strchr(v, 'x'), w[16];
            long h = 0, wd = 0;
            bad = !x || x - v >= (long)sizeof w;
            if (!bad) {
                memcpy(w, v, (size_t)(x - v));
                w[x - v] = '\0';
                bad = parse_long(w, 1, 10000, &wd) || parse_long(x + 1, 1, 10000, &h);
            }
            a->width = (int)wd, a->height = (int)h;
        } else if (!strcmp(o, "--batch")) bad = parse_batches(v, a);
        else if (!strcmp(o, "--layers")) bad = parse_long(v, 1, 256, &n) || (a->layers = (int)n, 0);
        else if (!strcmp(o, "--requests")) bad = parse_long(v, 1, 1000000, &n) || (a->requests = (int)n, 0);
        else if (!strcmp(o, "--warmup")) bad = parse_long(v, 0, 100000, &n) || (a->warmup = (int)n, 0);
        else if (!strcmp(o, "--threads")) bad = parse_long(v, 1, 1024, &n) || (a->threads = (int)n, 0);
        else if (!strcmp(o, "--kv-pages")) bad = parse_long(v, 1, 1 << 30, &n) || (a->kv_pages = (int)n, 0);
        else if (!strcmp(o, "--max-batch-tokens")) bad = parse_long(v, 730, 1 << 20, &n) || (a->max_batch_tokens = (int)n, 0);
        else if (!strcmp(o, "--seed")) bad = parse_long(v, 0, LONG_MAX, &n) || (a->seed = (uint64_t)n, 0);
        else return usage_error("unknown option %s", o);
        if (bad) return usage_error("invalid value '%s' for %s", v, o);
    }
    if (!a->model) return usage_error("--model md2|md3|DIR is required");
    const char *d = a->device;
    long gpu;
    if (strcmp(d, "cpu") && strcmp(d, "cuda") && (strncmp(d, "cuda:", 5) || parse_long(d + 5, 0, 1024, &gpu)))
        return usage_error("--device '%s': expected cpu, cuda or cuda:N", d);
    if (a->precision && !strcmp(a->precision, "bf16") && !strcmp(d, "cpu"))
        return usage_error("--precision bf16 needs --device cuda");
    a->random = !strcmp(a->model, "md2") || !strcmp(a->model, "md3");
    a->arch = !strcmp(a->model, "md3") ? MD_ARCH_MD3 : MD_ARCH_MD2;
    if (!a->random && (a->layers || a->size != MD_RANDOM_REAL || a->tokenizer))
        return usage_error("--shape, --layers and --tokenizer are for the random models md2 and md3");
    return -1;
}

// ---- reporting ---------------------------------------------------------------------


// "NVIDIA H100 80GB HBM3, driver 580.65.06, CUDA 13.0" or the CPU's model name; "" when unknown.
static void bench_device_name(const char *device, char *out, size_t cap) {
    out[0] = '\0';
    if (!strncmp(device, "cuda", 4)) {
        backend_cuda_device_name(device[4] == ':' ? atoi(device + 5) : 0, out, cap);
        return;
    }
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !colon) continue;
        colon += 1 + (colon[1] == ' ');
        colon[strcspn(colon, "\n")] = '\0';
        snprintf(out, cap, "%s, %ld cores", colon, sysconf(_SC_NPROCESSORS_ONLN));
        break;
    }
    if (f) fclose(f);
}

static void bench_print_json(const bench_args *a, const char *device_name, int64_t params, const bench_result *r) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return;
    cJSON_AddStringToObject(o, "model", a->model);
    cJSON_AddStringToObject(o, "weights", a->random ? "random" : "checkpoint");
    if (a->random) cJSON_AddStringToObject(o, "shape", a->size == MD_RANDOM_TINY ? "tiny" : "real");
    if (params) cJSON_AddNumberToObject(o, "parameters", (double)params);
    cJSON_AddStringToObject(o, "device", a->device);
    cJSON_AddStringToObject(o, "device_name", device_name);
    cJSON_AddStringToObject(o, "precision", a->precision ? a->precision : "f32");
    cJSON_AddStringToObject(o, "mode", a->mode);
    char size[32];
    snprintf(size, sizeof size, "%dx%d", a->width, a->height);
    cJSON_AddStringToObject(o, "image_size", size);
    cJSON_AddNumberToObject(o, "batch", r->batch);
    cJSON_AddNumberToObject(o, "requests", r->requests);
    cJSON_AddNumberToObject(o, "requests_failed", r->failed);
    cJSON_AddNumberToObject(o, "warmup", a->warmup);
    cJSON_AddNumberToObject(o, "tokens_per_request", a->tokens);
    cJSON_AddNumberToObject(o, "output_tokens", (double)r->output_tokens);
    cJSON_AddNumberToObject(o, "wall_s", r->wall_s);
    cJSON_AddNumberToObject(o, "req_per_s", r->req_per_s);
    cJSON_AddNumberToObject(o, "latency_p50_ms", r->lat_p50);
    cJSON_AddNumberToObject(o, "latency_p99_ms", r->lat_p99);
    cJSON_AddNumberToObject(o, "ttft_p50_ms", r->ttft_p50);
    cJSON_AddNumberToObject(o, "tokens_per_s", r->tokens_per_s);
    cJSON_AddNumberToObject(o, "prefix_hits", (double)r->prefix_hits);
    cJSON_AddNumberToObject(o, "vision_images", (double)r->vision_images);
    cJSON_AddNumberToObject(o, "steps", (double)r->steps);
    cJSON_AddNumberToObject(o, "device_memory_used_mb", r->mem_used_mb);
    cJSON_AddNumberToObject(o, "device_memory_total_mb", r->mem_total_mb);
    cJSON_AddNumberToObject(o, "peak_rss_mb", r->peak_rss_mb);
    char *s = cJSON_PrintUnformatted(o);
    if (s) printf("%s\n", s);
    fflush(stdout);
    free(s);
    cJSON_Delete(o);
}

static void bench_print_header(const bench_args *a, const char *device_name, int64_t params) {
    printf("tycho bench: %s", a->model);
    if (a->random)
        printf(" (random weights, %s shape, %.2f B parameters)", a->size == MD_RANDOM_TINY ? "tiny" : "real",
               (double)params / 1e9);
    printf(", %s, %d tokens, %dx%d images\n", a->mode, a->tokens, a->width, a->height);
    printf("device: %s%s%s%s\n", a->device, device_name[0] ? ": " : "", device_name,
           a->precision && !strcmp(a->precision, "bf16") ? " (bf16 matmul inputs)" : "");
    int gpu = !strncmp(a->device, "cuda", 4);
    printf("%6s %8s %9s %9s %9s %10s %10s %11s\n", "batch", "requests", "req/s", "P50 ms", "P99 ms", "TTFT P50",
           "tokens/s", gpu ? "GPU mem MB" : "peak RSS MB");
    fflush(stdout);
}

static void bench_print_row(const bench_args *a, const bench_result *r) {
    int gpu = !strncmp(a->device, "cuda", 4);
    printf("%6d %8d %9.2f %9.2f %9.2f %10.2f %10.1f %11.0f\n", r->batch, r->requests, r->req_per_s, r->lat_p50,
           r->lat_p99, r->ttft_p50, r->tokens_per_s, gpu ? r->mem_used_mb : r->peak_rss_mb);
    fflush(stdout);
}

// ---- main --------------------------------------------------------------------------

// The default tokenizer: relative to the working directory, else to the source
// tree that holds the build directory (<src>/build/bin/tycho).
static const char *bench_find_tokenizer(char *buf, size_t cap) {
    if (access(BENCH_TOKENIZER, R_OK) == 0) return BENCH_TOKENIZER;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        for (int up = 0; up < 3; up++) {
            char *slash = strrchr(exe, '/');
            if (slash) *slash = '\0';
        }
        snprintf(buf, cap, "%s/%s", exe, BENCH_TOKENIZER);
        if (access(buf, R_OK) == 0) return buf;
    }
    return BENCH_TOKENIZER;  // the caller reports it missing
}

int cmd_bench(int argc, char **argv) {
    bench_args a;
    int rc = bench_parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    md_config cfg;
    uint8_t *ckpt = NULL;
    size_t len = 0;
    int64_t params = 0;
    char tok_path[PATH_MAX + 64];
    engine_model_source src = {.ignore_eos = 1};
    if (a.random) {
        const char *tok = a.tokenizer ? a.tokenizer : bench_find_tokenizer(tok_path, sizeof tok_path);
        if (access(tok, R_OK)) return usage_error("cannot read the tokenizer '%s' (--tokenizer FILE)", tok);
        ty_err err = {0};
        if (md_random_config(&cfg, a.arch, a.size, a.layers, &err) != TY_OK) return cli_fail("bench", &err);
        double t0 = bench_now_s();
        if (md_random_checkpoint(&cfg, a.seed, a.threads, &ckpt, &len, &err) != TY_OK) return cli_fail("bench", &err);
        uint64_t header = 0;  // the image starts with the header's length, u64 little-endian
        for (int i = 7; i >= 0; i--) header = header << 8 | ckpt[i];
        params = (int64_t)((len - 8 - header) / 2);  // bf16 values
        fprintf(stderr, "tycho bench: %s random weights: %.2f GB in %.1f s\n", a.model, (double)len / 1e9,
                bench_now_s() - t0);
        src = (engine_model_source){.cfg = &cfg, .checkpoint = ckpt, .checkpoint_len = len, .ignore_eos = 1,
                                    .tokenizer = tok, .name = a.model};
    }
    char device_name[300];
    bench_device_name(a.device, device_name, sizeof device_name);
    if (!a.json) bench_print_header(&a, device_name, params);
    rc = 0;
    for (int i = 0; i < a.n_batches && rc == 0; i++) {
        bench_result r;
        rc = bench_run(&a, &src, a.batches[i], &r);
        if (r.wall_s > 0 && a.json) bench_print_json(&a, device_name, params, &r);
        else if (r.wall_s > 0) bench_print_row(&a, &r);
    }
    md_random_checkpoint_free(ckpt, len);
    return rc;
}
