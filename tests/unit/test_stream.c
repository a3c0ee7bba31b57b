// Streaming chunks follow the reference rule (release up to the last space,
// flush at a newline or a CJK character) and always concatenate to the text.
#include <stdlib.h>
#include <string.h>

#include "engine/stream.h"
#include "test.h"

static void run(const tokenizer *tok, const char *text, const char *const *want_chunks, int n_want) {
    int32_t *ids;
    size_t n;
    ty_err err;
    CHECK(tokenizer_encode(tok, text, strlen(text), &ids, &n, &err) == TY_OK);
    text_stream s;
    text_stream_init(&s, tok);
    char joined[1024] = "";
    int k = 0;
    for (size_t i = 0; i <= n; i++) {
        const char *chunk;
        size_t len;
        ty_status st = i < n ? text_stream_push(&s, ids[i], &chunk, &len, &err) : text_stream_flush(&s, &chunk, &len, &err);
        CHECK(st == TY_OK);
        if (!len) continue;
        strncat(joined, chunk, len);
        if (k < n_want) CHECK_MSG(strlen(want_chunks[k]) == len && !memcmp(want_chunks[k], chunk, len),
                                  "'%s': chunk %d is '%.*s', want '%s'", text, k, (int)len, chunk, want_chunks[k]);
        k++;
    }
    CHECK_MSG(k == n_want, "'%s': %d chunks, want %d", text, k, n_want);
    CHECK_MSG(!strcmp(joined, text), "'%s' streamed as '%s'", text, joined);
    CHECK(!strcmp(s.text ? s.text : "", text));
    text_stream_free(&s);
    free(ids);
}

int main(void) {
    tokenizer *tok;
    ty_err err;
    CHECK(tokenizer_init_from_file(&tok, TEST_DATA("golden/tokenizer/gpt2.json"), &err) == TY_OK);
    if (!tok) return test_report("test_stream");
    run(tok, "Hello world foo", (const char *const[]){"Hello ", "world ", "foo"}, 3);
    run(tok, "one\ntwo three", (const char *const[]){"one\n", "two ", "three"}, 3);
    run(tok, "a  b", (const char *const[]){"a ", " ", "b"}, 3);
    run(tok, "猫が好き", (const char *const[]){"猫", "が好", "き"}, 3);  // hiragana is not CJK: it waits
    text_stream s;
    text_stream_init(&s, tok);
    const char *chunk;
    size_t len;
    CHECK(text_stream_flush(&s, &chunk, &len, &err) == TY_OK && len == 0);
    text_stream_free(&s);
    tokenizer_free(tok);
    return test_report("test_stream");
}
