// tycho serve: the HTTP server (src/server): Moondream's API on port 2020,
// as Moondream Station serves it, plus an OpenAI-style chat API.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "server/server.h"

static const char serve_help[] =
    "usage: tycho serve --model M [--host 127.0.0.1] [--port 2020] [options]\n"
    "\n"
    "Serves the Moondream API (Moondream Station's paths, so its official clients work\n"
    "unchanged) and an OpenAI-style chat API. Concurrent requests run as one batch.\n"
    "\n"
    "  POST /v1/caption /v1/query /v1/detect /v1/point   Moondream API (\"stream\": true: SSE)\n"
    "  POST /v1/chat/completions                         OpenAI chat (one image + a question)\n"
    "  GET  /health /v1/models /metrics                  status (503 while loading), model, Prometheus\n"
    "\n"
    "options:\n"
    "  --host H                address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)\n"
    "  --port N                port (default 2020; 0: any free port, printed at start)\n"
    "  --api-key K             require X-Moondream-Auth: K or Authorization: Bearer K on /v1/*\n"
    "                          (default: $TYCHO_API_KEY if set, else no key)\n"
    "  --device D              cpu (default), cuda (GPU 0) or cuda:N\n"
    "  --precision P           GPU matmul inputs: f32 (default, answers as the CPU's) or bf16 (faster)\n"
    "  --threads N             CPU threads of the model (default: every core)\n"
    "  --max-batch-size N      requests running at once (default 16)\n"
    "  --kv-pages N            KV cache budget in pages of 16 positions\n"
    "  --no-prefix-cache       do not reuse image prefixes across requests\n"
    "  --max-queue N           waiting requests; beyond it 429 with Retry-After (default 4096)\n"
    "  --max-body-bytes N      request body limit (default 20 MiB; 413 beyond)\n"
    "  --max-image-bytes N     decoded image limit (default 10 MiB; 413 beyond)\n"
    "  --max-image-pixels N    width x height limit (default 50000000; 413 beyond)\n"
    "  --max-pixels-in-flight N  image pixels of all requests not yet answered (default 400000000;\n"
    "                          429 beyond, so queued big images cannot exhaust memory)\n"
    "  --timeout S             per-request limit in seconds, fractions allowed (default 600; then 504)\n"
    "  --http-threads N        HTTP worker threads (default 4)\n"
    "  --max-connections N     open connections (default 1024)\n"
    "  --idle-timeout S        close idle keep-alive connections after S seconds (default 60)\n"
    "  --shutdown-timeout S    on SIGTERM/SIGINT, let requests finish for S seconds (default 30)\n"
    "  --max-tokens N          max_tokens of requests that set none (default 768, the reference's)\n"
    "  --seed S                seed for requests that bring none (reproducible sampling)\n"
    "  --verbose               log every request\n"
    "\n"
    "examples:\n"
    "  tycho serve --model models/shapes --max-tokens 200    # the demo model: 1024 positions of context\n"
    "  curl -s localhost:2020/v1/caption -H 'Content-Type: application/json' \\\n"
    "       -d \"{\\\"image_url\\\": \\\"data:image/png;base64,$(base64 -w0 examples/shapes.png)\\\"}\"\n"
    "  curl -sN localhost:2020/v1/query -d '{\"question\": \"Why is the sky blue?\", \"stream\": true}'\n"
    "  Node:   new (require('moondream').vl)({endpoint: 'http://127.0.0.1:2020/v1'})\n"
    "  Python: moondream.vl(endpoint='http://127.0.0.1:2020/v1')\n"
    "  OpenAI: new OpenAI({baseURL: 'http://127.0.0.1:2020/v1', apiKey: 'unused'})\n";

static int parse_num(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_seconds(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v > 0 && v <= 1e7)) return -1;
    *out = v;
    return 0;
}

// Returns 0, or the exit status after printing one line.
static int serve_parse_args(int argc, char **argv, server_options *o) {
    const char *env_key = getenv("TYCHO_API_KEY");
    if (env_key && *env_key) o->api_key = env_key;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(serve_help, stdout);
            return -1;
        }
        if (!strcmp(a, "--no-prefix-cache")) {
            o->engine.prefix_cache = 0;
            continue;
        }
        if (!strcmp(a, "--verbose")) {
            o->verbose = 1;
            continue;
        }
        if (a[0] != '-') {
            fprintf(stderr, "tycho serve: unexpected argument '%s' (tycho serve --help)\n", a);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "tycho serve: %s needs a value\n", a);
            return 2;
        }
        i++;
        long long n = 0;
        int bad = 0;
        if (!strcmp(a, "--model")) o->engine.model = v;
        else if (!strcmp(a, "--host")) o->host = v;
        else if (!strcmp(a, "--api-key")) o->api_key = v;
        else if (!strcmp(a, "--port")) bad = parse_num(v, 0, 65535, &n) || (o->port = (int)n, 0);
        else if (!strcmp(a, "--device")) o->engine.device = v;
        else if (!strcmp(a, "--precision")) o->engine.precision = v;
        else if (!strcmp(a, "--threads")) bad = parse_num(v, 1, 1024, &n) || (o->engine.threads = (int)n, 0);
        else if (!strcmp(a, "--max-batch-size")) bad = parse_num(v, 1, 4096, &n) || (o->engine.max_batch_size = (int)n, 0);
        else if (!strcmp(a, "--kv-pages")) bad = parse_num(v, 1, 1 << 30, &n) || (o->engine.kv_cache_pages = (int)n, 0);
        else if (!strcmp(a, "--max-queue")) bad = parse_num(v, 1, 1 << 24, &n) || (o->engine.max_queue = (int)n, 0);
        else if (!strcmp(a, "--max-body-bytes")) bad = parse_num(v, 1024, 1LL << 32, &n) || (o->max_body_bytes = (size_t)n, 0);
        else if (!strcmp(a, "--max-image-bytes")) bad = parse_num(v, 1, 1LL << 32, &n) || (o->max_image_bytes = (size_t)n, 0);
        else if (!strcmp(a, "--max-image-pixels")) bad = parse_num(v, 1, 1LL << 27, &n) || (o->max_image_pixels = n, 0);
        else if (!strcmp(a, "--max-pixels-in-flight")) bad = parse_num(v, 1, 1LL << 40, &n) || (o->max_pixels_in_flight = n, 0);
        else if (!strcmp(a, "--timeout")) bad = parse_seconds(v, &o->request_timeout_s);
        else if (!strcmp(a, "--http-threads")) bad = parse_num(v, 1, 256, &n) || (o->http_threads = (int)n, 0);
        else if (!strcmp(a, "--max-connections")) bad = parse_num(v, 1, 1 << 20, &n) || (o->max_connections = (int)n, 0);
        else if (!strcmp(a, "--idle-timeout")) bad = parse_num(v, 1, 1 << 24, &n) || (o->idle_timeout_s = (int)n, 0);
        else if (!strcmp(a, "--shutdown-timeout")) bad = parse_num(v, 0, 1 << 24, &n) || (o->shutdown_timeout_s = (int)n, 0);
        else if (!strcmp(a, "--max-tokens")) bad = parse_num(v, 1, 1 << 20, &n) || (o->default_max_tokens = (int)n, 0);
        else if (!strcmp(a, "--seed")) bad = parse_num(v, 0, 0x7fffffffffffffffLL, &n) || (o->seed = (uint64_t)n, o->has_seed = 1, 0);
        else {
            fprintf(stderr, "tycho serve: unknown option %s (tycho serve --help)\n", a);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "tycho serve: invalid value '%s' for %s\n", v, a);
            return 2;
        }
    }
    if (!o->engine.model) {
        fprintf(stderr, "tycho serve: --model is required (tycho serve --help)\n");
        return 2;
    }
    return 0;
}

int cmd_serve(int argc, char **argv) {
    server_options o;
    server_options_default(&o);
    int rc = serve_parse_args(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    return server_run(&o);
}
