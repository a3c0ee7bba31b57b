// Internals of the HTTP server, shared by its files:
//   server.c         server_run: signals, model loading, graceful shutdown
//   http.c           libmicrohttpd glue: bodies, routing, auth, responses, errors
//   moondream_api.c  POST /v1/caption | query | detect | point (api.md §1)
//   openai_api.c     POST /v1/chat/completions, GET /v1/models (api.md §2)
//   sse.c            byte buffers, JSON strings, the streamed response body
//   waiter.c         the thread that finds ended requests and gone clients
//   metrics.c        counters and histograms, GET /metrics
//
// How a request travels. A libmicrohttpd worker reads the body, parses it
// and submits it to the engine (tycho_submit), then either suspends the
// connection (a plain response) or queues a streamed response whose reader
// suspends it whenever nothing is buffered. The engine's scheduler thread
// appends streamed text to the request's buffer (on_text: lock, append,
// nudge the waiter; never blocks). The waiter thread resumes a suspended
// connection once its request has ended or has new text, cancels requests
// whose client hung up (POLLRDHUP on the suspended socket) or whose time
// ran out, and then libmicrohttpd calls us again to write the result. A
// client that disconnects while its response is being written is seen by
// libmicrohttpd (request-completed callback with an error), which cancels too.
//
// Lifetime: a srv_req is created for each HTTP request and freed when both
// its holders let go: libmicrohttpd (request-completed callback) and, once
// submitted, the waiter (after the engine finished the request and the
// connection is no longer suspended). The tycho request is freed with it,
// by then ended, so freeing never waits for the engine.
#ifndef TYCHO_SERVER_SERVER_IMPL_H
#define TYCHO_SERVER_SERVER_IMPL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "server/server.h"
#include "tycho.h"

typedef struct server server;
typedef struct srv_req srv_req;

typedef enum {
    ROUTE_CAPTION,  // the four skills first, in tycho_skill order
    ROUTE_QUERY,
    ROUTE_DETECT,
    ROUTE_POINT,
    ROUTE_CHAT,
    ROUTE_MODELS,
    ROUTE_HEALTH,
    ROUTE_METRICS,
    ROUTE_OTHER,  // no such route (one metrics label for all of them)
    ROUTE_COUNT
} srv_route;

const char *route_name(srv_route r);  // "/v1/caption", ..., "other"

// ---- byte buffers (sse.c) -----------------------------------------------------------

typedef struct {
    char *data;
    size_t len, off, cap;  // bytes [off, len) not yet sent
    int oom;               // an append failed: the content is incomplete
} srv_buf;

void srv_buf_append(srv_buf *b, const void *p, size_t n);
void srv_buf_puts(srv_buf *b, const char *s);
// Appends s (n bytes) as a JSON string literal, quotes included.
void srv_buf_json_string(srv_buf *b, const char *s, size_t n);
void srv_buf_free(srv_buf *b);

// ---- metrics (metrics.c) --------------------------------------------------------------

enum { METRICS_STATUS_SLOTS = 11, METRICS_BUCKETS = 15 };

typedef struct {
    uint64_t bucket[METRICS_BUCKETS];  // cumulative counts are computed when rendering
    uint64_t count;
    double sum;  // seconds
} srv_hist;

typedef struct {
    pthread_mutex_t mu;  // guards everything below
    uint64_t responses[ROUTE_COUNT][METRICS_STATUS_SLOTS];
    uint64_t disconnects, timeouts;
    srv_hist ttft, total;
} srv_metrics;

void metrics_init(srv_metrics *m);
void metrics_free(srv_metrics *m);
void metrics_count_response(srv_metrics *m, srv_route r, int status);
void metrics_count_disconnect(srv_metrics *m);
void metrics_count_timeout(srv_metrics *m);
void metrics_observe(srv_metrics *m, double ttft_s, double total_s);  // ttft_s < 0: none
// The Prometheus text exposition of m and the engine's stats (malloc'd).
char *metrics_render(server *s, size_t *len);

// ---- the waiter (waiter.c) ----------------------------------------------------------------

typedef struct {
    server *s;
    pthread_t thread;
    int running;
    int efd;             // eventfd: new entries, new streamed text, stop
    pthread_mutex_t mu;  // guards what follows
    srv_req **items;     // submitted requests not yet seen to end (each holds a reference)
    int n, cap;
    int stop;
} srv_waiter;

int waiter_init(srv_waiter *w, server *s);  // 0, or -1 with errno
void waiter_free(srv_waiter *w);            // stops the thread; releases what is left
void waiter_add(srv_waiter *w, srv_req *q);
void waiter_wake(srv_waiter *w);            // async-signal-safe and never blocks
void waiter_cancel_all(srv_waiter *w);
int waiter_count(srv_waiter *w);

// ---- requests -------------------------------------------------------------------------------

typedef enum { API_NONE, API_MOONDREAM, API_OPENAI } srv_api;
typedef enum { PHASE_BODY, PHASE_WAIT, PHASE_RESPONDED } srv_phase;

struct srv_req {
    server *s;
    struct MHD_Connection *conn;
    int fd;  // the connection's socket (the waiter polls it while suspended)
    srv_route route;
    const char *method;  // libmicrohttpd's, valid for the request
    double t_start;      // ms, CLOCK_MONOTONIC
    char *body;          // the request body (body_len bytes, NUL-terminated)
    size_t body_len, body_cap, discarded;
    int too_large;  // over max_body_bytes: the rest is read and dropped, then 413
    srv_phase phase;
    int status;  // HTTP status answered
    // Once submitted:
    tycho_request *tr;
    int64_t pixels;  // counted in server.pixels until freed
    srv_api api;
    int stream, include_usage;
    double deadline;        // ms, CLOCK_MONOTONIC
    int wdrop;              // the waiter is done with it (waiter thread only)
    char *chunk_prefix;     // OpenAI stream: every chunk's JSON up to the delta's content
    char id[40];            // OpenAI response id
    long long created;      // OpenAI "created" (unix seconds)
    atomic_int refs;
    pthread_mutex_t mu;     // guards what follows (engine thread, waiter, libmicrohttpd worker)
    int suspended;          // the connection is suspended; only the waiter resumes it
    int done;               // the engine finished the request (seen by the waiter)
    int gone;               // the client hung up
    int timed_out;          // cancelled by request_timeout_s
    int stream_ended;       // the final events are in out
    srv_buf out;            // streamed bytes not yet handed to libmicrohttpd
};

void srv_req_release(srv_req *q);

// ---- the server ----------------------------------------------------------------------------

struct server {
    server_options o;
    char model_name[128];
    struct MHD_Daemon *d;
    _Atomic(tycho_engine *) engine;  // NULL while the model loads
    atomic_int draining;             // shutting down: new requests get 503
    atomic_long live;                // submitted requests not yet freed
    _Atomic int64_t pixels;          // decoded image pixels those requests hold (max_pixels_in_flight)
    atomic_ullong next_id;
    srv_waiter w;
    srv_metrics m;
};

double srv_now_ms(void);
void srv_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// http.c
int http_start(server *s, char *err, size_t err_len);
void http_quiesce(server *s);  // stops accepting connections
void http_stop(server *s);
// Queues a response of len bytes (copied) with Content-Type ctype.
enum MHD_Result srv_respond(srv_req *q, int status, const char *ctype, const char *body, size_t len);
// Queues {"error": {"message", "type", "param", "code"}} with status; type from the status.
enum MHD_Result srv_fail(srv_req *q, int status, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
// Appends that error object's JSON ({"message", ...}, without the outer braces' key) to b.
void srv_error_json(srv_buf *b, int status, const char *code, const char *param, const char *message);
// The HTTP status for an engine status: from tycho_submit, or from tycho_wait
// once the request ended (a cancel is 504 after a timeout, else 503).
int srv_status_for(tycho_status st, const srv_req *q);
// Submits p for q and makes the connection wait for the result (a suspended
// plain response, or a streamed one). Answers the error itself when the
// submit fails.
enum MHD_Result srv_submit(srv_req *q, tycho_request_params *p);
// The final error event of a failed stream: status and message of the request's end.
int srv_end_error(srv_req *q, tycho_error *te, const char **code);

// moondream_api.c
enum MHD_Result md_handle(srv_req *q);
enum MHD_Result md_finish(srv_req *q);      // the plain response once the request ended
void md_stream_end(srv_req *q);             // final event into q->out (q->mu held)

// openai_api.c
enum MHD_Result oa_handle_chat(srv_req *q);
enum MHD_Result oa_handle_models(srv_req *q);
enum MHD_Result oa_finish(srv_req *q);
void oa_stream_end(srv_req *q);

// sse.c: the streamed response body (libmicrohttpd content reader)
ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max);
// Appends one event "data: <json>\n\n" built from prefix + JSON string of text + suffix,
// and nudges the waiter if the connection is suspended. Engine thread.
void sse_push_text(srv_req *q, const char *prefix, const char *text, size_t len, const char *suffix);

#endif
