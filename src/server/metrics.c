// GET /metrics: Prometheus text format (version 0.0.4). The server counts
// responses by route and status, disconnects, timeouts and two latency
// histograms (time to first token, whole request); the engine's own stats
// give tokens, queue depth, running requests, KV pages and prefix-cache hits.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_impl.h"

// Statuses with their own label value; the last slot is every other status.
static const int status_slots[METRICS_STATUS_SLOTS] = {200, 400, 401, 404, 405, 413, 429, 500, 503, 504, 0};
// Upper bounds of the histogram buckets, seconds (+Inf is implied).
static const double bucket_le[METRICS_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                  2.5,   5,    10,    30,   60,  120, 300};

void metrics_init(srv_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void metrics_free(srv_metrics *m) { pthread_mutex_destroy(&m->mu); }

void metrics_count_response(srv_metrics *m, srv_route r, int status) {
    int k = METRICS_STATUS_SLOTS - 1;
    for (int i = 0; i < METRICS_STATUS_SLOTS - 1; i++)
        if (status_slots[i] == status) k = i;
    pthread_mutex_lock(&m->mu);
    m->responses[r][k]++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_count_disconnect(srv_metrics *m) {
    pthread_mutex_lock(&m->mu);
    m->disconnects++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_count_timeout(srv_metrics *m) {
    pthread_mutex_lock(&m->mu);
    m->timeouts++;
    pthread_mutex_unlock(&m->mu);
}

static void hist_add(srv_hist *h, double v) {
    int k = 0;
    while (k < METRICS_BUCKETS && v > bucket_le[k]) k++;
    if (k < METRICS_BUCKETS) h->bucket[k]++;
    h->count++;
    h->sum += v;
}

void metrics_observe(srv_metrics *m, double ttft_s, double total_s) {
    pthread_mutex_lock(&m->mu);
    if (ttft_s >= 0) hist_add(&m->ttft, ttft_s);
    hist_add(&m->total, total_s);
    pthread_mutex_unlock(&m->mu);
}

// ---- rendering -------------------------------------------------------------------------

static void put(srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(srv_buf *b, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    srv_buf_append(b, line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
}

static void family(srv_buf *b, const char *name, const char *type, const char *help) {
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(srv_buf *b, const char *name, const char *type, const char *help, double v) {
    family(b, name, type, help);
    put(b, "%s %.17g\n", name, v);
}

static void hist(srv_buf *b, const char *name, const char *help, const srv_hist *h) {
    family(b, name, "histogram", help);
    uint64_t cum = 0;
    for (int k = 0; k < METRICS_BUCKETS; k++) {
        cum += h->bucket[k];
        put(b, "%s_bucket{le=\"%g\"} %llu\n", name, bucket_le[k], (unsigned long long)cum);
    }
    put(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
    put(b, "%s_sum %.17g\n%s_count %llu\n", name, h->sum, name, (unsigned long long)h->count);
}

char *metrics_render(server *s, size_t *len) {
    srv_metrics copy;
    pthread_mutex_lock(&s->m.mu);
    memcpy(copy.responses, s->m.responses, sizeof copy.responses);
    copy.disconnects = s->m.disconnects;
    copy.timeouts = s->m.timeouts;
    copy.ttft = s->m.ttft;
    copy.total = s->m.total;
    pthread_mutex_unlock(&s->m.mu);
    tycho_engine *e = atomic_load(&s->engine);
    tycho_engine_stats st = {0};
    if (e) tycho_engine_get_stats(e, &st);

    srv_buf b = {0};
    family(&b, "tycho_http_requests_total", "counter", "HTTP requests answered, by route and status.");
    for (int r = 0; r < ROUTE_COUNT; r++)
        for (int k = 0; k < METRICS_STATUS_SLOTS; k++) {
            if (!copy.responses[r][k]) continue;
            char status[8];
            if (status_slots[k]) snprintf(status, sizeof status, "%d", status_slots[k]);
            else snprintf(status, sizeof status, "other");
            put(&b, "tycho_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n", route_name((srv_route)r), status,
                (unsigned long long)copy.responses[r][k]);
        }
    scalar(&b, "tycho_http_disconnects_total", "counter", "Requests whose client hung up before the answer.",
           (double)copy.disconnects);
    scalar(&b, "tycho_http_timeouts_total", "counter", "Requests cancelled by the per-request timeout.",
           (double)copy.timeouts);
    scalar(&b, "tycho_http_in_flight", "gauge", "Requests submitted to the engine and not yet answered.",
           (double)atomic_load(&s->live));
    scalar(&b, "tycho_http_pixels_in_flight", "gauge", "Decoded image pixels those requests hold.",
           (double)atomic_load(&s->pixels));
    scalar(&b, "tycho_model_loaded", "gauge", "1 once the model is loaded.", e ? 1 : 0);
    scalar(&b, "tycho_input_tokens_total", "counter", "Prompt positions of finished requests (image prefix included).",
           (double)st.input_tokens);
    scalar(&b, "tycho_output_tokens_total", "counter", "Generated tokens of finished requests.",
           (double)st.output_tokens);
    scalar(&b, "tycho_queue_depth", "gauge", "Requests waiting for a batch slot.", st.waiting);
    scalar(&b, "tycho_running_requests", "gauge", "Requests in the running batch.", st.running);
    scalar(&b, "tycho_kv_pages_used", "gauge", "KV cache pages in use (prefix cache included).", st.kv_pages_used);
    scalar(&b, "tycho_kv_pages_free", "gauge", "KV cache pages free.", st.kv_pages_total - st.kv_pages_used);
    scalar(&b, "tycho_kv_pages_cached", "gauge", "KV cache pages held by the prefix cache.", st.kv_pages_cached);
    scalar(&b, "tycho_prefix_cache_hits_total", "counter", "Image prefix lookups served from the cache.",
           (double)st.prefix_hits);
    scalar(&b, "tycho_prefix_cache_misses_total", "counter", "Image prefix lookups that ran the vision tower.",
           (double)st.prefix_misses);
    scalar(&b, "tycho_cached_tokens_total", "counter", "Prompt positions served from the prefix cache.",
           (double)st.cached_tokens);
    family(&b, "tycho_requests_finished_total", "counter", "Engine requests by how they ended.");
    put(&b, "tycho_requests_finished_total{outcome=\"done\"} %llu\n", (unsigned long long)st.requests_done);
    put(&b, "tycho_requests_finished_total{outcome=\"failed\"} %llu\n", (unsigned long long)st.requests_failed);
    put(&b, "tycho_requests_finished_total{outcome=\"cancelled\"} %llu\n", (unsigned long long)st.requests_cancelled);
    scalar(&b, "tycho_engine_steps_total", "counter", "Forward steps the engine ran.", (double)st.steps);
    hist(&b, "tycho_ttft_seconds", "Time from submit to the first generated token.", &copy.ttft);
    hist(&b, "tycho_request_duration_seconds", "Time from the request's headers to its last byte.", &copy.total);
    if (b.oom) {
        srv_buf_free(&b);
        return NULL;
    }
    *len = b.len;
    return b.data;
}
