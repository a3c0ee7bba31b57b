// libmicrohttpd glue: one srv_req per HTTP request, its body, routing, the
// API key, responses and OpenAI-style errors, and handing requests to the
// engine (srv_submit) and back (the access handler runs again once the
// waiter resumes the connection).
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/server_impl.h"

static const struct {
    const char *path;
    srv_route route;
} routes[] = {
    {"/v1/caption", ROUTE_CAPTION}, {"/v1/query", ROUTE_QUERY},          {"/v1/detect", ROUTE_DETECT},
    {"/v1/point", ROUTE_POINT},     {"/v1/chat/completions", ROUTE_CHAT}, {"/v1/models", ROUTE_MODELS},
    {"/health", ROUTE_HEALTH},      {"/metrics", ROUTE_METRICS},
};

const char *route_name(srv_route r) {
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (routes[i].route == r) return routes[i].path;
    return "other";
}

static srv_route route_of(const char *url) {
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(url, routes[i].path)) return routes[i].route;
    return ROUTE_OTHER;
}

static int route_is_post(srv_route r) { return r <= ROUTE_CHAT; }
static int route_needs_key(srv_route r) { return r <= ROUTE_MODELS; }

// ---- requests ---------------------------------------------------------------------------

static srv_req *req_new(server *s, struct MHD_Connection *c, const char *url, const char *method) {
    srv_req *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->s = s;
    q->conn = c;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    q->fd = ci ? ci->connect_fd : -1;
    q->route = route_of(url);
    q->method = method;
    q->t_start = srv_now_ms();
    atomic_init(&q->refs, 1);
    pthread_mutex_init(&q->mu, NULL);
    return q;
}

void srv_req_release(srv_req *q) {
    if (atomic_fetch_sub(&q->refs, 1) != 1) return;
    if (q->tr) {
        tycho_request_free(q->tr);  // ended by now: does not wait
        atomic_fetch_sub(&q->s->live, 1);
    }
    if (q->pixels) atomic_fetch_sub(&q->s->pixels, q->pixels);
    free(q->body);
    free(q->chunk_prefix);
    srv_buf_free(&q->out);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

// Appends upload data to the body; past max_body_bytes the rest is only
// counted (so the client can read its 413) up to 4x the limit, then the
// connection is closed. Returns 0 to close it.
static int req_read_body(srv_req *q, const char *data, size_t n) {
    size_t max = q->s->o.max_body_bytes;
    if (!q->too_large && q->body_len + n > max) {
        q->too_large = 1;
        q->discarded = q->body_len;
        free(q->body);
        q->body = NULL;
        q->body_len = q->body_cap = 0;
    }
    if (q->too_large) {
        q->discarded += n;
        return q->discarded <= 4 * max;
    }
    if (q->body_len + n + 1 > q->body_cap) {
        size_t cap = q->body_cap ? q->body_cap : 4096;
        while (cap < q->body_len + n + 1) cap *= 2;
        if (cap > max + 1) cap = max + 1;
        char *b = realloc(q->body, cap);
        if (!b) return 0;
        q->body = b;
        q->body_cap = cap;
    }
    memcpy(q->body + q->body_len, data, n);
    q->body_len += n;
    q->body[q->body_len] = '\0';
    return 1;
}

// ---- responses ------------------------------------------------------------------------------

static const char *error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable_error";
    case 504: return "timeout_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

enum MHD_Result srv_respond(srv_req *q, int status, const char *ctype, const char *body, size_t len) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (status == 429) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == 405) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, route_is_post(q->route) ? "POST" : "GET, HEAD");
    if (status == 401) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (atomic_load(&q->s->draining)) MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(q->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    q->status = status;
    q->phase = PHASE_RESPONDED;
    metrics_count_response(&q->s->m, q->route, status);
    return ret;
}

void srv_error_json(srv_buf *b, int status, const char *code, const char *param, const char *message) {
    srv_buf_puts(b, "{\"message\":");
    srv_buf_json_string(b, message, strlen(message));
    srv_buf_puts(b, ",\"type\":\"");
    srv_buf_puts(b, error_type(status));
    srv_buf_puts(b, "\",\"param\":");
    if (param && *param) srv_buf_json_string(b, param, strlen(param));
    else srv_buf_puts(b, "null");
    srv_buf_puts(b, ",\"code\":");
    srv_buf_json_string(b, code, strlen(code));
    srv_buf_puts(b, "}");
}

enum MHD_Result srv_fail(srv_req *q, int status, const char *code, const char *param, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    srv_buf b = {0};
    srv_buf_puts(&b, "{\"error\":");
    srv_error_json(&b, status, code, param, msg);
    srv_buf_puts(&b, "}");
    if (b.oom) {
        srv_buf_free(&b);
        return MHD_NO;
    }
    enum MHD_Result ret = srv_respond(q, status, "application/json", b.data, b.len);
    srv_buf_free(&b);
    return ret;
}

int srv_status_for(tycho_status st, const srv_req *q) {
    switch (st) {
    case TYCHO_E_ARG:
    case TYCHO_E_FORMAT:
    case TYCHO_E_UNSUPPORTED:
    case TYCHO_E_NOT_FOUND: return 400;
    // Image bytes and pixels are refused before submitting (413); a limit the
    // engine finds (prompt plus max_tokens past the context) is a bad parameter.
    case TYCHO_E_LIMIT: return 400;
    case TYCHO_E_BUSY: return 429;
    case TYCHO_E_NOMEM: return 503;
    case TYCHO_E_TIMEOUT: return 504;
    case TYCHO_E_CANCELLED: return q && q->timed_out ? 504 : 503;
    default: return 500;
    }
}

int srv_end_error(srv_req *q, tycho_error *te, const char **code) {
    tycho_status st = tycho_wait(q->tr, 0, te);
    int status = srv_status_for(st, q);
    *code = tycho_status_name(st);
    if (st == TYCHO_E_CANCELLED && q->timed_out) {
        snprintf(te->message, sizeof te->message, "the request ran past the server's limit of %g s",
                 q->s->o.request_timeout_s);
        *code = "timeout";
    } else if (st == TYCHO_E_CANCELLED) {
        snprintf(te->message, sizeof te->message, "the request was cancelled%s",
                 atomic_load(&q->s->draining) ? " (the server is shutting down)" : "");
    }
    return status;
}

// ---- handing requests to the engine and back -----------------------------------------------

enum MHD_Result srv_submit(srv_req *q, tycho_request_params *p) {
    server *s = q->s;
    if (s->o.has_seed && !p->has_seed) {
        p->seed = s->o.seed;
        p->has_seed = 1;
    }
    // The pixel budget: the engine copies the pixels and keeps them until the
    // image prefix is computed, so a long queue of big images is memory.
    int64_t px = p->image_rgb ? (int64_t)p->image_width * p->image_height : 0;
    int64_t before = px ? atomic_fetch_add(&s->pixels, px) : 0;
    if (px && before > 0 && before + px > s->o.max_pixels_in_flight) {
        atomic_fetch_sub(&s->pixels, px);
        return srv_fail(q, 429, "pixels_in_flight", NULL,
                        "the images of the requests in flight are over the server's budget of %lld pixels; retry later",
                        (long long)s->o.max_pixels_in_flight);
    }
    q->pixels = px;
    tycho_error te;
    tycho_status st = tycho_submit(atomic_load(&s->engine), p, &q->tr, &te);
    if (st != TYCHO_OK) {
        q->tr = NULL;
        if (st == TYCHO_E_BUSY)
            return srv_fail(q, 429, "queue_full", NULL, "the request queue is full; retry later (%s)", te.message);
        return srv_fail(q, srv_status_for(st, q), tycho_status_name(st), NULL, "%s", te.message);
    }
    free(q->body);  // parsed and copied: no need to hold it while the request runs
    q->body = NULL;
    atomic_fetch_add(&s->live, 1);
    atomic_fetch_add(&q->refs, 1);  // the waiter's
    q->deadline = srv_now_ms() + 1000.0 * s->o.request_timeout_s;
    enum MHD_Result ret = MHD_YES;
    if (q->stream) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 << 10, sse_read, q, NULL);
        if (!r) {
            tycho_cancel(q->tr);
            ret = MHD_NO;
        } else {
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
            MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
            MHD_add_response_header(r, "X-Accel-Buffering", "no");
            ret = MHD_queue_response(q->conn, MHD_HTTP_OK, r);
            MHD_destroy_response(r);
            q->status = 200;
            q->phase = PHASE_RESPONDED;
            metrics_count_response(&s->m, q->route, 200);
        }
    } else {
        // Suspended under the lock, so the waiter (which resumes only what it
        // saw suspended) can never resume before this suspend.
        pthread_mutex_lock(&q->mu);
        q->suspended = 1;
        MHD_suspend_connection(q->conn);
        pthread_mutex_unlock(&q->mu);
        q->phase = PHASE_WAIT;
    }
    waiter_add(&s->w, q);
    return ret;
}

// The connection was resumed: answer if the request ended.
static enum MHD_Result req_finish(srv_req *q) {
    pthread_mutex_lock(&q->mu);
    int done = q->done, gone = q->gone;
    if (!done) {  // not expected (only the waiter resumes, and only when done); wait again
        q->suspended = 1;
        MHD_suspend_connection(q->conn);
    }
    pthread_mutex_unlock(&q->mu);
    if (!done) return MHD_YES;
    if (gone) return MHD_NO;  // nobody to answer: close the connection
    return q->api == API_OPENAI ? oa_finish(q) : md_finish(q);
}

// ---- routing -----------------------------------------------------------------------------------

// Compares in time independent of where the first difference is.
static int key_equal(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    unsigned char d = na != nb;
    for (size_t i = 0; i < na; i++) d |= (unsigned char)(a[i] ^ b[i % (nb ? nb : 1)]);
    return d == 0;
}

static int auth_ok(srv_req *q) {
    const char *key = q->s->o.api_key;
    if (!key || !*key) return 1;
    const char *h = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, "X-Moondream-Auth");
    if (h && key_equal(h, key)) return 1;
    h = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h && !strncasecmp(h, "Bearer ", 7)) {
        for (h += 7; *h == ' '; h++) {
        }
        return key_equal(h, key);
    }
    return 0;
}

static enum MHD_Result handle_health(srv_req *q) {
    if (atomic_load(&q->s->draining)) return srv_respond(q, 503, "application/json", "{\"status\":\"shutting_down\"}", 26);
    if (!atomic_load(&q->s->engine)) return srv_respond(q, 503, "application/json", "{\"status\":\"loading\"}", 20);
    return srv_respond(q, 200, "application/json", "{\"status\":\"ok\"}", 15);
}

static enum MHD_Result handle_metrics(srv_req *q) {
    size_t len;
    char *text = metrics_render(q->s, &len);
    if (!text) return srv_fail(q, 503, "out_of_memory", NULL, "out of memory");
    enum MHD_Result ret = srv_respond(q, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
    return ret;
}

static enum MHD_Result req_dispatch(srv_req *q, const char *url) {
    server *s = q->s;
    if (q->too_large)
        return srv_fail(q, 413, "body_too_large", NULL, "the request body is over the limit of %zu bytes",
                        s->o.max_body_bytes);
    if (q->route == ROUTE_OTHER) return srv_fail(q, 404, "route_not_found", NULL, "no route %.200s", url);
    int post = route_is_post(q->route);
    if (post ? strcmp(q->method, "POST") != 0 : strcmp(q->method, "GET") && strcmp(q->method, "HEAD"))
        return srv_fail(q, 405, "method_not_allowed", NULL, "%s takes %s, not %.20s", url, post ? "POST" : "GET",
                        q->method);
    if (route_needs_key(q->route) && !auth_ok(q))
        return srv_fail(q, 401, "invalid_api_key", NULL,
                        "a valid API key is required (X-Moondream-Auth: KEY or Authorization: Bearer KEY)");
    switch (q->route) {
    case ROUTE_HEALTH: return handle_health(q);
    case ROUTE_METRICS: return handle_metrics(q);
    case ROUTE_MODELS: return oa_handle_models(q);
    default: break;
    }
    if (atomic_load(&s->draining)) return srv_fail(q, 503, "shutting_down", NULL, "the server is shutting down");
    if (!atomic_load(&s->engine))
        return srv_fail(q, 503, "loading", NULL, "the model is loading; retry when GET /health answers 200");
    return q->route == ROUTE_CHAT ? oa_handle_chat(q) : md_handle(q);
}

// libmicrohttpd calls this after the headers, for each piece of the body,
// once the body is complete, and again after each resume.
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *data, size_t *size, void **req_cls) {
    server *s = cls;
    srv_req *q = *req_cls;
    if (!q) {
        q = req_new(s, c, url, method);
        if (!q) return MHD_NO;
        *req_cls = q;
        // A declared body over the limit: answer before it is sent when the
        // client waits for "100 Continue" or the body is too big to drop.
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        unsigned long long n = cl ? strtoull(cl, NULL, 10) : 0;
        if (n > s->o.max_body_bytes) {
            q->too_large = 1;
            const char *expect = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
            if ((expect && !strcasecmp(expect, "100-continue")) || n > 4 * (unsigned long long)s->o.max_body_bytes)
                return req_dispatch(q, url);
        }
        return MHD_YES;
    }
    if (*size) {
        int ok = req_read_body(q, data, *size);
        *size = 0;
        return ok ? MHD_YES : MHD_NO;
    }
    if (q->phase == PHASE_BODY) return req_dispatch(q, url);
    if (q->phase == PHASE_WAIT) return req_finish(q);
    return MHD_YES;
}

// The request is over: its response was sent, or the connection failed or
// closed first. A request still running then is cancelled.
static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe) {
    srv_req *q = *req_cls;
    if (!q) return;
    *req_cls = NULL;
    server *s = cls;
    double total_ms = srv_now_ms() - q->t_start;
    if (q->tr && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        tycho_cancel(q->tr);
        pthread_mutex_lock(&q->mu);
        int first = !q->gone;
        q->gone = 1;
        pthread_mutex_unlock(&q->mu);
        if (first) metrics_count_disconnect(&s->m);
    } else if (q->tr && q->status == 200 && tycho_wait(q->tr, 0, NULL) == TYCHO_OK) {
        tycho_metrics m;
        tycho_request_metrics(q->tr, &m);
        metrics_observe(&s->m, m.ttft_ms > 0 ? m.ttft_ms / 1000 : -1, total_ms / 1000);
    }
    if (s->o.verbose)
        srv_log("%s %s %d%s %.1f ms", q->method, route_name(q->route), q->status,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed early)", total_ms);
    srv_req_release(q);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    srv_log("libmicrohttpd: %s", msg);
}

// ---- the daemon ------------------------------------------------------------------------------

int http_start(server *s, char *err, size_t err_len) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", s->o.port);
    int gai = getaddrinfo(s->o.host, port, &hints, &ai);
    if (gai) {
        snprintf(err, err_len, "cannot resolve host '%s': %s", s->o.host, gai_strerror(gai));
        return -1;
    }
    // A pool of epoll threads rather than a thread per connection: requests
    // wait for the engine on suspended connections (no thread each), idle
    // keep-alive connections cost no thread either, and a thread per
    // connection could not suspend at all (libmicrohttpd forbids it there),
    // so streams would need a blocked thread per client.
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    s->d = MHD_start_daemon(flags, (uint16_t)s->o.port, NULL, NULL, on_request, s,
                            MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,  // first, so it gets every message
                            MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->o.http_threads,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->o.max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->o.idle_timeout_s,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_END);
    int e = errno;
    freeaddrinfo(ai);
    if (!s->d) {
        snprintf(err, err_len, "cannot listen on %s:%d (%s)", s->o.host, s->o.port, strerror(e));
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    if (di && di->port) s->o.port = di->port;
    return 0;
}

void http_quiesce(server *s) {
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void http_stop(server *s) {
    if (s->d) MHD_stop_daemon(s->d);
    s->d = NULL;
}
