// tycho bench's workload (docs/benchmark.md) through one engine: random
// images, the questions, every request submitted at once, the measurements.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli/bench.h"
#include "cli/cli.h"
#include "tycho.h"

// The fixed instruction (31 GPT-2 tokens) before every question (10-13 tokens each, with the space).
static const char *const BENCH_PREFIX =
    "Look at the chart carefully and answer the question below with a single word or number only. "
    "Do not explain, and do not add any units. Question:";
static const char *const BENCH_QUESTIONS[] = {
    "What is the value of the tallest bar in the 2019 group?",
    "Which country had the highest share of renewable energy in 2020?",
    "How many categories have a value greater than forty percent?",
    "What is the difference between the largest and smallest values shown?",
    "In which year did the blue line reach its lowest point?",
    "What percentage of respondents said they were very satisfied?",
    "Is the value for March higher than the value for April?",
    "What is the sum of the two smallest segments of the pie?",
};

static uint64_t bench_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Random pixels of image `index` (h, w, 3), 8 bytes per draw.
static void bench_fill_image(uint8_t *rgb, size_t n, uint64_t seed, uint64_t index) {
    uint64_t x = bench_mix(seed ^ bench_mix(index + 1));
    for (size_t i = 0; i < n; i += 8) {
        uint64_t r = bench_mix(x += 0x9e3779b97f4a7c15ull);
        size_t k = n - i < 8 ? n - i : 8;
        memcpy(rgb + i, &r, k);
    }
}

// Request i of a run asks about image image_of(i): 5 questions per 3 images,
// the first two images of each three asked twice, back to back.
static int bench_image_of(int i) {
    static const int slot[5] = {0, 0, 1, 1, 2};
    return 3 * (i / 5) + slot[i % 5];
}

double bench_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

// Nearest-rank percentile of sorted v.
static double percentile(const double *v, int n, double p) {
    int k = (int)ceil(p / 100.0 * n) - 1;
    return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

typedef struct {
    uint8_t **images;  // (n_images) (height, width, 3) each
    int n_images;
    tycho_request **reqs;  // (n)
    int n;
} bench_batch;

static void bench_batch_free(bench_batch *b) {
    for (int i = 0; i < b->n; i++) tycho_request_free(b->reqs[i]);
    for (int i = 0; i < b->n_images; i++) free(b->images[i]);
    free(b->images);
    free(b->reqs);
    memset(b, 0, sizeof *b);
}

// n requests on images first_image.. (made before anything is timed).
static int bench_batch_init(bench_batch *b, const bench_args *a, int n, uint64_t first_image) {
    memset(b, 0, sizeof *b);
    b->n_images = n ? bench_image_of(n - 1) + 1 : 0;
    size_t bytes = (size_t)a->width * a->height * 3;
    b->images = calloc((size_t)b->n_images + 1, sizeof *b->images);
    b->reqs = calloc((size_t)n + 1, sizeof *b->reqs);
    if (!b->images || !b->reqs) return -1;
    for (int i = 0; i < b->n_images; i++) {
        if (!(b->images[i] = malloc(bytes))) return -1;
        bench_fill_image(b->images[i], bytes, a->seed, first_image + (uint64_t)i);
    }
    b->n = n;
    return 0;
}

// Submits every request at once (the queue holds them all).
static int bench_submit(tycho_engine *e, const bench_args *a, bench_batch *b) {
    for (int i = 0; i < b->n; i++) {
        tycho_request_params p;
        tycho_request_params_default(&p, TYCHO_SKILL_QUERY);
        char question[512];
        snprintf(question, sizeof question, "%s %s", BENCH_PREFIX,
                 BENCH_QUESTIONS[i % (sizeof BENCH_QUESTIONS / sizeof BENCH_QUESTIONS[0])]);
        p.question = question;
        p.image_rgb = b->images[bench_image_of(i)];
        p.image_width = a->width;
        p.image_height = a->height;
        p.max_tokens = a->tokens;
        p.temperature = 0.0f;
        p.has_seed = 1;
        p.seed = a->seed;
        tycho_error err;
        if (tycho_submit(e, &p, &b->reqs[i], &err) != TYCHO_OK) {
            fprintf(stderr, "tycho bench: request %d: %s\n", i, err.message);
            return -1;
        }
    }
    return 0;
}

// Waits for every request, noting the highest device memory in use meanwhile.
static void bench_wait(tycho_engine *e, bench_batch *b, double *mem_used, double *mem_total) {
    for (int i = 0; i < b->n; i++) {
        tycho_error err;
        while (tycho_wait(b->reqs[i], 20, &err) == TYCHO_E_TIMEOUT) {
            tycho_engine_stats st;
            tycho_engine_get_stats(e, &st);
            if (st.device_memory_used > *mem_used) *mem_used = (double)st.device_memory_used;
            *mem_total = (double)st.device_memory_total;
        }
    }
}

// KV pages for batch requests running plus 8 more (cached image prefixes,
// admission slack). A prompt has at most as many tokens as bytes (a real
// model's own tokenizer may be byte-level), plus a template's few ids.
static int bench_kv_pages(const bench_args *a, int batch, const tycho_options *o) {
    if (a->kv_pages) return a->kv_pages;
    size_t longest = 0;
    for (size_t i = 0; i < sizeof BENCH_QUESTIONS / sizeof BENCH_QUESTIONS[0]; i++)
        if (strlen(BENCH_QUESTIONS[i]) > longest) longest = strlen(BENCH_QUESTIONS[i]);
    int page = o->page_size ? o->page_size : 16;
    int positions = 730 + 16 + (int)(strlen(BENCH_PREFIX) + 1 + longest) + a->tokens + 1;  // image, prompt, answer
    return (batch + 8) * ((positions + page - 1) / page);
}

int bench_run(const bench_args *a, const engine_model_source *src, int batch, bench_result *res) {
    memset(res, 0, sizeof *res);
    res->batch = batch;
    res->requests = a->requests ? a->requests : batch * 4 > 50 ? batch * 4 : 50;
    tycho_options o;
    tycho_options_default(&o);
    o.model = a->model;
    o.device = a->device;
    o.precision = a->precision;
    o.threads = a->threads;
    o.max_batch_size = batch;
    o.max_batch_tokens = a->max_batch_tokens;
    o.kv_cache_pages = bench_kv_pages(a, batch, &o);
    o.max_queue = res->requests + a->warmup + 16;
    tycho_engine *e = NULL;
    ty_err err = {0};
    if (engine_init_source(&e, &o, src, &err) != TY_OK) return cli_fail("bench", &err);
    bench_batch warm = {0}, run = {0};
    int rc = 1;
    double mem_used = 0, mem_total = 0;
    // Warm-up images are numbered far above the measured ones: nothing is cached for the run.
    if (bench_batch_init(&warm, a, a->warmup, (uint64_t)1 << 40) || bench_batch_init(&run, a, res->requests, 0)) {
        fprintf(stderr, "tycho bench: out of memory for the images\n");
        goto done;
    }
    if (bench_submit(e, a, &warm)) goto done;
    bench_wait(e, &warm, &mem_used, &mem_total);
    tycho_engine_stats before;
    tycho_engine_get_stats(e, &before);
    double t0 = bench_now_s();
    if (bench_submit(e, a, &run)) goto done;
    bench_wait(e, &run, &mem_used, &mem_total);
    res->wall_s = bench_now_s() - t0;
    tycho_engine_stats after;
    tycho_engine_get_stats(e, &after);
    double *lat = malloc((size_t)run.n * sizeof *lat), *ttft = malloc((size_t)run.n * sizeof *ttft);
    if (!lat || !ttft) {
        free(lat);
        free(ttft);
        goto done;
    }
    for (int i = 0; i < run.n; i++) {
        tycho_error rerr;
        tycho_metrics m;
        tycho_request_metrics(run.reqs[i], &m);
        if (tycho_wait(run.reqs[i], 0, &rerr) != TYCHO_OK) {
            if (!res->failed++) fprintf(stderr, "tycho bench: request %d failed: %s\n", i, rerr.message);
        } else if (m.output_tokens != a->tokens) {
            if (!res->wrong_count++)
                fprintf(stderr, "tycho bench: request %d generated %d tokens, not %d\n", i, m.output_tokens, a->tokens);
        }
        lat[i] = m.prefill_time_ms + m.decode_time_ms;
        ttft[i] = m.ttft_ms;
        res->output_tokens += m.output_tokens;
    }
    qsort(lat, (size_t)run.n, sizeof *lat, cmp_double);
    qsort(ttft, (size_t)run.n, sizeof *ttft, cmp_double);
    res->lat_p50 = percentile(lat, run.n, 50);
    res->lat_p99 = percentile(lat, run.n, 99);
    res->ttft_p50 = percentile(ttft, run.n, 50);
    free(lat);
    free(ttft);
    res->req_per_s = run.n / res->wall_s;
    res->tokens_per_s = (double)res->output_tokens / res->wall_s;
    res->prefix_hits = (long long)(after.prefix_hits - before.prefix_hits);
    res->vision_images = (long long)(after.vision_images - before.vision_images);
    res->steps = (long long)(after.steps - before.steps);
    if ((double)after.device_memory_used > mem_used) mem_used = (double)after.device_memory_used;
    if (!mem_total) mem_total = (double)after.device_memory_total;
    res->mem_used_mb = mem_used / 1048576.0;
    res->mem_total_mb = mem_total / 1048576.0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    res->peak_rss_mb = (double)ru.ru_maxrss / 1024.0;
    rc = res->failed || res->wrong_count ? 1 : 0;
done:
    bench_batch_free(&warm);
    bench_batch_free(&run);
    tycho_engine_free(e);
    return rc;
}
