#include "engine/stream.h"

#include <stdlib.h>
#include <string.h>

void text_stream_init(text_stream *s, const tokenizer *tok) {
    memset(s, 0, sizeof *s);
    s->tok = tok;
}

void text_stream_free(text_stream *s) {
    free(s->cache);
    free(s->text);
    memset(s, 0, sizeof *s);
}

static ty_status append(text_stream *s, const char *p, size_t n, const char **chunk, size_t *chunk_len, ty_err *err) {
    if (s->len + n + 1 > s->cap) {
        size_t cap = (s->len + n + 1) * 2;
        char *t = realloc(s->text, cap);
        if (!t) return ty_err_set(err, TY_E_NOMEM, "out of memory");
        s->text = t;
        s->cap = cap;
    }
    memcpy(s->text + s->len, p, n);
    *chunk = s->text + s->len;
    *chunk_len = n;
    s->len += n;
    s->text[s->len] = '\0';
    return TY_OK;
}

// Byte offset of code point `cp` in UTF-8 text (decoder output is valid UTF-8).
static size_t cp_to_byte(const char *t, size_t len, size_t cp) {
    size_t i = 0;
    for (; i < len && cp > 0; cp--) {
        i++;
        while (i < len && ((unsigned char)t[i] & 0xc0) == 0x80) i++;
    }
    return i;
}

static size_t count_cps(const char *t, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += ((unsigned char)t[i] & 0xc0) != 0x80;
    return n;
}

// The last code point of t (len > 0).
static uint32_t last_cp(const char *t, size_t len) {
    size_t i = len - 1;
    while (i > 0 && ((unsigned char)t[i] & 0xc0) == 0x80) i--;
    const unsigned char *u = (const unsigned char *)t + i;
    if (u[0] < 0x80) return u[0];
    if ((u[0] & 0xe0) == 0xc0) return (uint32_t)(u[0] & 0x1f) << 6 | (u[1] & 0x3f);
    if ((u[0] & 0xf0) == 0xe0) return (uint32_t)(u[0] & 0x0f) << 12 | (uint32_t)(u[1] & 0x3f) << 6 | (u[2] & 0x3f);
    return (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3f) << 12 | (uint32_t)(u[2] & 0x3f) << 6 | (u[3] & 0x3f);
}

static int is_cjk(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

ty_status text_stream_push(text_stream *s, int32_t id, const char **chunk, size_t *chunk_len, ty_err *err) {
    *chunk = "";
    *chunk_len = 0;
    if (s->n_cache == s->cap_cache) {
        size_t cap = s->cap_cache ? s->cap_cache * 2 : 64;
        int32_t *c = realloc(s->cache, cap * sizeof *c);
        if (!c) return ty_err_set(err, TY_E_NOMEM, "out of memory");
        s->cache = c;
        s->cap_cache = cap;
    }
    s->cache[s->n_cache++] = id;
    char *text;
    size_t len;
    ty_status st = tokenizer_decode(s->tok, s->cache, s->n_cache, &text, &len, err);
    if (st != TY_OK) return st;
    size_t from = cp_to_byte(text, len, s->printed);
    if (len > 0 && text[len - 1] == '\n') {
        st = append(s, text + from, len - from, chunk, chunk_len, err);
        s->n_cache = 0;
        s->printed = 0;
    } else if (len > 0 && is_cjk(last_cp(text, len))) {
        st = append(s, text + from, len - from, chunk, chunk_len, err);
        s->printed = count_cps(text, len);
    } else {
        // Up to and including the last space at or after the printed prefix.
        size_t end = len;
        while (end > from && text[end - 1] != ' ') end--;
        if (end > from) {
            st = append(s, text + from, end - from, chunk, chunk_len, err);
            s->printed += count_cps(text + from, end - from);
        }
    }
    free(text);
    return st;
}

ty_status text_stream_flush(text_stream *s, const char **chunk, size_t *chunk_len, ty_err *err) {
    *chunk = "";
    *chunk_len = 0;
    if (!s->n_cache) return TY_OK;
    char *text;
    size_t len;
    ty_status st = tokenizer_decode(s->tok, s->cache, s->n_cache, &text, &len, err);
    if (st != TY_OK) return st;
    size_t from = cp_to_byte(text, len, s->printed);
    st = append(s, text + from, len - from, chunk, chunk_len, err);
    s->n_cache = 0;
    s->printed = 0;
    free(text);
    return st;
}
