// tycho's HTTP server: the Moondream API (docs api.md §1, the paths and
// bodies of Moondream Station and the cloud) and the OpenAI-style chat API
// (§2) over one engine, so concurrent HTTP requests run as one batch.
//
//   server_options o;
//   server_options_default(&o);
//   o.engine.model = "models/shapes";
//   return server_run(&o);   // until SIGTERM or SIGINT
//
// libmicrohttpd does the HTTP (a thread pool over epoll, keep-alive, chunked
// responses); requests wait for the engine on suspended connections, so a
// thousand waiting requests hold no thread. See server_impl.h for how a
// request travels.
#ifndef TYCHO_SERVER_SERVER_H
#define TYCHO_SERVER_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "tycho.h"

typedef struct {
    tycho_options engine;       // the model and the engine's batch, KV and queue sizes
    const char *host;           // address to listen on (default 127.0.0.1)
    int port;                   // default 2020 (Moondream Station's); 0: any free port
    const char *api_key;        // NULL: no key; else X-Moondream-Auth or Authorization: Bearer must equal it
    size_t max_body_bytes;      // request body (default 20 MB)
    size_t max_image_bytes;     // decoded image bytes (default 10 MB, the cloud's limit)
    int64_t max_image_pixels;   // width * height (default 50 Mpx)
    int64_t max_pixels_in_flight;  // decoded pixels of all requests not yet ended (default 400 Mpx,
                                   // 1.2 GB of RGB); beyond it 429, so a queue of big images cannot
                                   // exhaust memory (a request is always taken when none is in flight)
    int http_threads;           // libmicrohttpd worker threads (default 4)
    int max_connections;        // open connections (default 1024)
    double request_timeout_s;   // submit to the end of a request (default 600); then 504 / an error event
    int idle_timeout_s;         // an idle keep-alive connection is closed after this (default 60)
    int shutdown_timeout_s;     // SIGTERM: how long in-flight requests may finish (default 30)
    int default_max_tokens;     // max_tokens of requests that set none (0: the reference's 768)
    int has_seed;               // give requests without a seed this one (reproducible sampling)
    uint64_t seed;
    int verbose;                // one log line per request on stderr
} server_options;

void server_options_default(server_options *o);

// Starts listening, loads the model (GET /health answers 503 meanwhile),
// serves until SIGTERM or SIGINT, then stops accepting, lets in-flight
// requests finish (up to shutdown_timeout_s, then cancels them) and frees
// everything. Blocks SIGTERM, SIGINT and SIGPIPE in the calling thread (call
// it before starting other threads). Returns the exit status: 0 after a
// clean shutdown, 1 when the server could not start or the model not load.
int server_run(const server_options *o);

#endif
