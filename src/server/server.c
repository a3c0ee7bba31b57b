// server_run: listen, load the model, serve until SIGTERM/SIGINT, drain.
//
// The socket opens before the model loads so that GET /health can say 503
// ("loading") meanwhile, as api.md asks. Shutdown: stop accepting, answer
// new requests on open keep-alive connections with 503, let the requests in
// flight finish for up to shutdown_timeout_s (a second signal cuts that
// short), cancel what is left, and stop once no connection is suspended
// (libmicrohttpd must not be stopped with suspended connections).
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "api/request_json.h"
#include "server/server_impl.h"

void server_options_default(server_options *o) {
    memset(o, 0, sizeof *o);
    tycho_options_default(&o->engine);
    o->host = "127.0.0.1";
    o->port = 2020;
    o->max_body_bytes = (size_t)20 << 20;
    o->max_image_bytes = REQUEST_JSON_DEFAULT_IMAGE_BYTES;
    o->max_image_pixels = 50 * 1000 * 1000;
    o->max_pixels_in_flight = 400 * 1000 * 1000;
    o->http_threads = 4;
    o->max_connections = 1024;
    o->request_timeout_s = 600;
    o->idle_timeout_s = 60;
    o->shutdown_timeout_s = 30;
}

double srv_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

void srv_log(const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "tycho serve: %s\n", line);  // one write per line: lines of threads do not mix
}

// The name /v1/models and chat responses give: a directory's last component,
// else what --model said (a Hugging Face repo id).
static void server_model_name(server *s) {
    const char *m = s->o.engine.model ? s->o.engine.model : "model";
    struct stat st;
    size_t n = strlen(m);
    if (!stat(m, &st) && S_ISDIR(st.st_mode)) {
        while (n > 1 && m[n - 1] == '/') n--;
        size_t start = n;
        while (start > 0 && m[start - 1] != '/') start--;
        snprintf(s->model_name, sizeof s->model_name, "%.*s", (int)(n - start), m + start);
    } else {
        snprintf(s->model_name, sizeof s->model_name, "%s", m);
    }
}

// Waits up to ms for signals in set; returns the signal or 0.
static int wait_signal(const sigset_t *set, int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    int sig = sigtimedwait(set, NULL, &ts);
    return sig > 0 ? sig : 0;
}

static void server_drain(server *s, const sigset_t *sigs) {
    atomic_store(&s->draining, 1);
    http_quiesce(s);
    double end = srv_now_ms() + 1000.0 * s->o.shutdown_timeout_s;
    while (atomic_load(&s->live) > 0 && srv_now_ms() < end) {
        if (wait_signal(sigs, 10)) {
            srv_log("second signal: cancelling the requests in flight");
            break;
        }
    }
    long left = atomic_load(&s->live);
    if (left > 0) srv_log("cancelling %ld request(s) still running", left);
    waiter_cancel_all(&s->w);
    // Cancelled requests end within a step; then the waiter resumes their connections.
    end = srv_now_ms() + 10000;
    while (waiter_count(&s->w) > 0 && srv_now_ms() < end) wait_signal(sigs, 10);
}

int server_run(const server_options *o) {
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);  // before any thread starts: they inherit it
    signal(SIGPIPE, SIG_IGN);

    server *s = calloc(1, sizeof *s);
    if (!s) {
        srv_log("out of memory");
        return 1;
    }
    s->o = *o;
    server_model_name(s);
    metrics_init(&s->m);
    char err[512];
    if (waiter_init(&s->w, s)) {
        srv_log("cannot start the waiter thread: %s", strerror(errno));
        metrics_free(&s->m);
        free(s);
        return 1;
    }
    if (http_start(s, err, sizeof err)) {
        srv_log("%s", err);
        waiter_free(&s->w);
        metrics_free(&s->m);
        free(s);
        return 1;
    }
    int v6 = strchr(s->o.host, ':') != NULL;
    srv_log("listening on http://%s%s%s:%d (loading %s)", v6 ? "[" : "", s->o.host, v6 ? "]" : "", s->o.port,
            s->model_name);

    double t0 = srv_now_ms();
    // Tests stretch the load to see the server while it loads (a tiny model loads in 0.1 s).
    const char *delay = getenv("TYCHO_TEST_LOAD_DELAY_MS");
    int delay_ms = delay ? atoi(delay) : 0;
    if (delay_ms > 0) nanosleep(&(struct timespec){delay_ms / 1000, (long)(delay_ms % 1000) * 1000000L}, NULL);
    tycho_engine *e = NULL;
    tycho_error te;
    int rc = 0;
    if (tycho_engine_init(&e, &s->o.engine, &te) != TYCHO_OK) {
        srv_log("cannot load the model: %s", te.message);
        rc = 1;
    } else {
        atomic_store(&s->engine, e);
        srv_log("ready: %s loaded in %.1f s", s->model_name, (srv_now_ms() - t0) / 1000);
        int sig = 0;
        while (!sig) sig = wait_signal(&sigs, 1000);
        srv_log("%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
        server_drain(s, &sigs);
    }
    http_stop(s);
    waiter_free(&s->w);
    atomic_store(&s->engine, NULL);
    tycho_engine_free(e);
    metrics_free(&s->m);
    free(s);
    if (!rc) srv_log("stopped");
    return rc;
}
