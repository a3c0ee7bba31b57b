// The waiter: one thread that watches every submitted request and resumes
// its suspended connection when there is something to write.
//
// Why a thread of our own: the engine tells streamed text (on_text) but not
// the end of a request, and libmicrohttpd does not watch suspended sockets.
// So the waiter
//   - polls the sockets of suspended connections for POLLRDHUP (the client
//     hung up) and cancels their requests;
//   - looks for ended requests (tycho_wait with timeout 0) whenever the
//     engine's finished-request counters move, and every WAITER_SCAN_MS in
//     any case;
//   - cancels requests past their deadline;
//   - resumes a suspended connection once its request ended, has new
//     streamed text, or (streams) its client is gone.
// While requests are in flight it wakes every WAITER_TICK_MS; on_text and
// new requests wake it at once through an eventfd.
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "server/server_impl.h"

#define WAITER_TICK_MS 2
#define WAITER_SCAN_MS 20

void waiter_wake(srv_waiter *w) {
    uint64_t one = 1;
    // Non-blocking eventfd: a write only fails when the counter is saturated,
    // and then the waiter is awake anyway.
    ssize_t r = write(w->efd, &one, sizeof one);
    (void)r;
}

void waiter_add(srv_waiter *w, srv_req *q) {
    pthread_mutex_lock(&w->mu);
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 64;
        srv_req **items = realloc(w->items, (size_t)cap * sizeof *items);
        if (!items) abort();  // a few bytes per request; nothing sensible to do without them
        w->items = items;
        w->cap = cap;
    }
    w->items[w->n++] = q;
    pthread_mutex_unlock(&w->mu);
    waiter_wake(w);
}

int waiter_count(srv_waiter *w) {
    pthread_mutex_lock(&w->mu);
    int n = w->n;
    pthread_mutex_unlock(&w->mu);
    return n;
}

void waiter_cancel_all(srv_waiter *w) {
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < w->n; i++) tycho_cancel(w->items[i]->tr);
    pthread_mutex_unlock(&w->mu);
    waiter_wake(w);
}

// Looks at one request; returns 1 when the waiter is done with it.
static int waiter_visit(srv_waiter *w, srv_req *q, int check_end, int hung_up, double now) {
    int ended = check_end && tycho_wait(q->tr, 0, NULL) != TYCHO_E_TIMEOUT;
    int cancel = 0, resume = 0, drop;
    pthread_mutex_lock(&q->mu);
    if (ended) q->done = 1;
    if (hung_up && !q->gone) {
        q->gone = 1;
        cancel = 1;
        metrics_count_disconnect(&w->s->m);
    }
    if (!q->done && !q->timed_out && now > q->deadline) {
        q->timed_out = 1;
        cancel = 1;
        metrics_count_timeout(&w->s->m);
    }
    if (q->suspended && (q->done || q->out.off < q->out.len || (q->gone && q->stream))) {
        q->suspended = 0;
        resume = 1;
    }
    drop = q->done && !q->suspended;
    pthread_mutex_unlock(&q->mu);
    if (cancel) tycho_cancel(q->tr);
    if (resume) MHD_resume_connection(q->conn);
    return drop;
}

// The sockets of suspended connections whose client may still hang up go
// into pfd[1..]; pfd[0] is the eventfd. Returns how many sockets.
static int waiter_poll_set(srv_waiter *w, srv_req **snap, int n, struct pollfd *pfd, int *slot) {
    int np = 0;
    pfd[0] = (struct pollfd){.fd = w->efd, .events = POLLIN};
    for (int i = 0; i < n; i++) {
        srv_req *q = snap[i];
        pthread_mutex_lock(&q->mu);
        if (q->suspended && !q->gone && q->fd >= 0) {
            pfd[1 + np] = (struct pollfd){.fd = q->fd, .events = POLLRDHUP};
            slot[np++] = i;
        }
        pthread_mutex_unlock(&q->mu);
    }
    return np;
}

// Removes the entries marked wdrop from the list and releases them.
static void waiter_drop(srv_waiter *w, srv_req **snap, int n) {
    pthread_mutex_lock(&w->mu);
    int k = 0;
    for (int i = 0; i < w->n; i++)
        if (!w->items[i]->wdrop) w->items[k++] = w->items[i];
    w->n = k;
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < n; i++)
        if (snap[i]->wdrop) srv_req_release(snap[i]);
}

static void *waiter_main(void *arg) {
    srv_waiter *w = arg;
    srv_req **snap = NULL;   // (snap_cap) the entries of this round
    struct pollfd *pfd = NULL;  // (snap_cap + 1)
    int *slot = NULL;        // (snap_cap) pfd[1 + i] watches snap[slot[i]]
    char *hung = NULL;       // (snap_cap) per entry: its client hung up
    int snap_cap = 0, woke = 0;
    uint64_t last_finished = UINT64_MAX;
    double last_scan = 0;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        int n = w->n, stop = w->stop;
        if (n > snap_cap || !pfd) {
            snap_cap = w->cap > 64 ? w->cap : 64;
            snap = realloc(snap, (size_t)snap_cap * sizeof *snap);
            pfd = realloc(pfd, (size_t)(snap_cap + 1) * sizeof *pfd);
            slot = realloc(slot, (size_t)snap_cap * sizeof *slot);
            hung = realloc(hung, (size_t)snap_cap);
            if (!snap || !pfd || !slot || !hung) abort();
        }
        if (n) memcpy(snap, w->items, (size_t)n * sizeof *snap);
        pthread_mutex_unlock(&w->mu);
        if (stop && !n) break;

        int np = waiter_poll_set(w, snap, n, pfd, slot);
        // Right after a wake-up look again at once: the wake may have been for
        // an entry that was not in the last round.
        int rc = poll(pfd, (nfds_t)np + 1, !n ? -1 : woke ? 0 : WAITER_TICK_MS);
        if (rc < 0 && errno != EINTR) abort();
        woke = rc > 0 && (pfd[0].revents & POLLIN);
        if (woke) {
            uint64_t v;
            ssize_t r = read(w->efd, &v, sizeof v);
            (void)r;
        }
        if (!n) continue;

        // Look for ended requests when the engine's counters say one ended.
        double now = srv_now_ms();
        tycho_engine_stats st;
        tycho_engine_get_stats(atomic_load(&w->s->engine), &st);
        uint64_t finished = st.requests_done + st.requests_failed + st.requests_cancelled;
        int scan = finished != last_finished || now - last_scan >= WAITER_SCAN_MS;
        if (scan) {
            last_finished = finished;
            last_scan = now;
        }
        memset(hung, 0, (size_t)n);
        for (int i = 0; i < np; i++)
            if (pfd[1 + i].revents & (POLLRDHUP | POLLHUP | POLLERR)) hung[slot[i]] = 1;
        int dropped = 0;
        for (int i = 0; i < n; i++) dropped += snap[i]->wdrop = waiter_visit(w, snap[i], scan, hung[i], now);
        if (dropped) waiter_drop(w, snap, n);
    }
    free(snap);
    free(pfd);
    free(slot);
    free(hung);
    return NULL;
}

int waiter_init(srv_waiter *w, server *s) {
    memset(w, 0, sizeof *w);
    w->s = s;
    pthread_mutex_init(&w->mu, NULL);
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd < 0) return -1;
    int e = pthread_create(&w->thread, NULL, waiter_main, w);
    if (e) {
        close(w->efd);
        errno = e;
        return -1;
    }
    w->running = 1;
    return 0;
}

void waiter_free(srv_waiter *w) {
    if (w->running) {
        pthread_mutex_lock(&w->mu);
        w->stop = 1;
        pthread_mutex_unlock(&w->mu);
        waiter_cancel_all(w);  // the thread ends once every request ended
        pthread_join(w->thread, NULL);
    }
    if (w->efd >= 0) close(w->efd);
    free(w->items);
    pthread_mutex_destroy(&w->mu);
    memset(w, 0, sizeof *w);
    w->efd = -1;
}
