// Byte buffers, JSON string literals and the streamed (Server-Sent Events)
// response body. Every event is one line "data: <json>" and a blank line,
// as Moondream's clients read them line by line (api.md §1 Streaming).
#include <stdlib.h>
#include <string.h>

#include "server/server_impl.h"

// ---- buffers ---------------------------------------------------------------------

void srv_buf_append(srv_buf *b, const void *p, size_t n) {
    if (b->oom || !n) return;
    if (b->off && b->off == b->len) b->off = b->len = 0;  // all sent: start over
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) {
            b->oom = 1;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void srv_buf_puts(srv_buf *b, const char *s) { srv_buf_append(b, s, strlen(s)); }

void srv_buf_json_string(srv_buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    srv_buf_append(b, "\"", 1);
    size_t run = 0;  // bytes copied as they are, in one append
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t m = 0;
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c, m = 2;
        } else if (c == '\n') {
            memcpy(esc, "\\n", 2), m = 2;
        } else if (c == '\r') {
            memcpy(esc, "\\r", 2), m = 2;
        } else if (c == '\t') {
            memcpy(esc, "\\t", 2), m = 2;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(esc, "\\u00", 4), esc[4] = hex[c >> 4], esc[5] = hex[c & 15], m = 6;
        }
        if (!m) {
            run++;
            continue;
        }
        srv_buf_append(b, s + i - run, run);
        run = 0;
        srv_buf_append(b, esc, m);
    }
    srv_buf_append(b, s + n - run, run);
    srv_buf_append(b, "\"", 1);
}

void srv_buf_free(srv_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

// ---- the stream -------------------------------------------------------------------

void sse_push_text(srv_req *q, const char *prefix, const char *text, size_t len, const char *suffix) {
    if (!len) return;
    pthread_mutex_lock(&q->mu);
    srv_buf_puts(&q->out, "data: ");
    srv_buf_puts(&q->out, prefix);
    srv_buf_json_string(&q->out, text, len);
    srv_buf_puts(&q->out, suffix);
    srv_buf_append(&q->out, "\n\n", 2);
    int nudge = q->suspended;
    pthread_mutex_unlock(&q->mu);
    if (nudge) waiter_wake(&q->s->w);
}

// libmicrohttpd asks for the next bytes of the stream. Nothing buffered and
// the request still running: suspend (the waiter resumes us on new text or
// the end). Ended: the API's final events, then the end of the stream.
ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    srv_req *q = cls;
    ssize_t n = 0;
    pthread_mutex_lock(&q->mu);
    if (q->out.off == q->out.len && !q->stream_ended) {
        if (q->gone) {
            n = MHD_CONTENT_READER_END_WITH_ERROR;
        } else if (q->done) {
            if (q->api == API_OPENAI) oa_stream_end(q);
            else md_stream_end(q);
            q->stream_ended = 1;
        } else {
            q->suspended = 1;
            MHD_suspend_connection(q->conn);
        }
    }
    if (n == 0 && q->out.oom) n = MHD_CONTENT_READER_END_WITH_ERROR;  // never send a torn event
    if (n == 0 && q->out.off < q->out.len) {
        size_t k = q->out.len - q->out.off;
        if (k > max) k = max;
        memcpy(buf, q->out.data + q->out.off, k);
        q->out.off += k;
        n = (ssize_t)k;
    } else if (n == 0 && q->stream_ended) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    }
    pthread_mutex_unlock(&q->mu);
    return n;
}
