// Streaming detokenization with the reference's chunking rule (moondream.md
// §12): after every token the cached tokens are decoded; text ending in "\n"
// is flushed and the cache reset; a trailing CJK character flushes the rest;
// otherwise text is released up to and including the last space. The
// non-streamed answer is the concatenation of the chunks, so both agree.
#ifndef TYCHO_ENGINE_STREAM_H
#define TYCHO_ENGINE_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "io/tokenizer.h"

typedef struct {
    const tokenizer *tok;
    int32_t *cache;  // tokens since the last reset
    size_t n_cache, cap_cache;
    size_t printed;  // code points of decode(cache) already released
    char *text;      // every chunk released so far, concatenated (NUL-terminated)
    size_t len, cap;
} text_stream;

void text_stream_init(text_stream *s, const tokenizer *tok);
void text_stream_free(text_stream *s);

// Adds a token; *chunk / *chunk_len receive the newly released text (pointing
// into s->text, valid until the next call), possibly empty.
ty_status text_stream_push(text_stream *s, int32_t id, const char **chunk, size_t *chunk_len, ty_err *err);
// Releases whatever is left at the end of generation.
ty_status text_stream_flush(text_stream *s, const char **chunk, size_t *chunk_len, ty_err *err);

#endif
