// libFuzzer target for the tokenizer. The first byte picks what the rest is:
//   0: a whole tokenizer.json for tokenizer_init_from_json; if it loads, a
//      fixed text and the input itself are encoded and decoded with it;
//   1: text for the tiny model's tokenizer: decode(encode(text)) must give
//      the text back (byte-level BPE loses nothing but special tokens);
//   2: token ids (int32, native order) for decode, whose output must be UTF-8;
//   3: a small generated tokenizer whose added tokens (contents and flags) and
//      pre-tokenizer options come from the input, then text to encode.
// The tiny tokenizer is tests/data/golden/md2-tiny/tokenizer.json, found next
// to this source file or through $TYCHO_FUZZ_TOKENIZER.
// Run: build-fuzz/fuzz/fuzz_tokenizer -max_total_time=60 [corpus dir]
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer.h"
#include "io/unicode.h"

static void check_utf8(const char *s, size_t n) {
    if (unicode_utf8_check((const uint8_t *)s, n) != n || s[n] != '\0') __builtin_trap();
}

// Encodes and decodes text; returns 1 and the decoded text when both worked.
static int round_trip(const tokenizer *t, const char *text, size_t len, char **out, size_t *out_len) {
    int32_t *ids;
    size_t n;
    ty_err err;
    *out = NULL;
    if (tokenizer_encode(t, text, len, &ids, &n, &err)) return 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tokenizer_vocab_size(t)) __builtin_trap();
    ty_status st = tokenizer_decode(t, ids, n, out, out_len, &err);
    free(ids);
    if (st) return 0;
    check_utf8(*out, *out_len);
    return 1;
}

static const tokenizer *tiny(void) {
    static tokenizer *t;
    static int tried;
    if (!tried) {
        tried = 1;
        const char *env = getenv("TYCHO_FUZZ_TOKENIZER");
        char path[4096];
        const char *slash = strrchr(__FILE__, '/');
        snprintf(path, sizeof path, "%.*s/../data/golden/md2-tiny/tokenizer.json", slash ? (int)(slash - __FILE__) : 1,
                 slash ? __FILE__ : ".");
        ty_err err;
        if (tokenizer_init_from_file(&t, env ? env : path, &err)) fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
    }
    return t;
}

// GPT-2's byte -> character map, to spell a byte-level vocab.
static void byte_char_utf8(int b, char out[3]) {
    int n = 0;
    unsigned c = (unsigned)b;
    if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) {
        c = 256;
        for (int k = 0; k < b; k++) c += !((k >= '!' && k <= '~') || (k >= 0xA1 && k <= 0xAC) || k >= 0xAE);
    }
    if (c < 0x80) out[n++] = (char)c;
    else out[n++] = (char)(0xC0 | c >> 6), out[n++] = (char)(0x80 | (c & 0x3F));
    out[n] = '\0';
}

static void fuzz_generated(const uint8_t *data, size_t size) {
    if (size < 2) return;
    uint8_t opts = data[0], n_tok = data[1] % 4;
    data += 2, size -= 2;
    cJSON *root = cJSON_CreateObject(), *model = cJSON_AddObjectToObject(root, "model");
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab"), *merges = cJSON_AddArrayToObject(model, "merges");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddBoolToObject(model, "ignore_merges", opts & 1);
    char c[3];
    for (int b = 0; b < 256; b++) byte_char_utf8(b, c), cJSON_AddNumberToObject(vocab, c, b);
    static const char *m[][3] = {{"Ġ", "t", "Ġt"}, {"h", "e", "he"}, {"t", "h", "th"}, {"th", "e", "the"},
                                 {"Ġt", "he", "Ġthe"}, {"i", "n", "in"}, {"Ġ", "Ġ", "ĠĠ"}};
    for (int i = 0; i < 7; i++) {
        if (!cJSON_GetObjectItemCaseSensitive(vocab, m[i][2])) cJSON_AddNumberToObject(vocab, m[i][2], 256 + i);
        char line[32];
        snprintf(line, sizeof line, "%s %s", m[i][0], m[i][1]);
        cJSON_AddItemToArray(merges, cJSON_CreateString(line));
    }
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddBoolToObject(pre, "add_prefix_space", opts & 2);
    cJSON_AddBoolToObject(pre, "trim_offsets", 1);
    cJSON_AddBoolToObject(pre, "use_regex", !(opts & 4));
    cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "decoder"), "type", "ByteLevel");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int k = 0; k < n_tok && size >= 2; k++) {  // each: flags byte, length byte, content
        uint8_t flags = data[0];
        size_t len = data[1] % 8 + 1;
        data += 2, size -= 2;
        if (len > size) len = size;
        char content[16];
        memcpy(content, data, len);
        content[len] = '\0';
        data += len, size -= len;
        if (strlen(content) != len || unicode_utf8_check((const uint8_t *)content, len) != len) continue;
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", 263 + cJSON_GetArraySize(added));
        cJSON_AddStringToObject(a, "content", content);
        cJSON_AddBoolToObject(a, "single_word", flags & 1);
        cJSON_AddBoolToObject(a, "lstrip", flags & 2);
        cJSON_AddBoolToObject(a, "rstrip", flags & 4);
        cJSON_AddBoolToObject(a, "normalized", flags & 8);
        cJSON_AddBoolToObject(a, "special", flags & 16);
        cJSON_AddItemToArray(added, a);
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    tokenizer *t;
    ty_err err;
    if (json && tokenizer_init_from_json(&t, json, strlen(json), &err) == TY_OK) {
        char *out;
        size_t out_len;
        round_trip(t, (const char *)data, size, &out, &out_len);
        free(out);
        tokenizer_free(t);
    }
    free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    uint8_t mode = data[0] % 4;
    const char *rest = (const char *)data + 1;
    size--;
    char *out = NULL;
    size_t out_len;
    if (mode == 0) {
        tokenizer *t;
        ty_err err = {0};
        if (tokenizer_init_from_json(&t, rest, size, &err) == TY_OK) {
            static const char text[] = "Hello w\xC3\xB6rld <|endoftext|> 123 it's  \n\t\xF0\x9F\x99\x82 x";
            round_trip(t, text, sizeof text - 1, &out, &out_len);
            free(out);
            round_trip(t, rest, size, &out, &out_len);
            free(out);
            tokenizer_free(t);
        } else if (!err.msg[0]) {
            __builtin_trap();  // every failure must say why
        }
    } else if (mode == 1 && tiny()) {
        int ok = round_trip(tiny(), rest, size, &out, &out_len);
        if (ok != (unicode_utf8_check((const uint8_t *)rest, size) == size)) __builtin_trap();
        if (ok && !memmem(rest, size, "<|", 2) && (out_len != size || memcmp(out, rest, size))) __builtin_trap();
        free(out);
    } else if (mode == 2 && tiny()) {
        int32_t *ids = malloc(size / 4 * sizeof *ids + 1);
        memcpy(ids, rest, size / 4 * sizeof *ids);
        ty_err err;
        if (tokenizer_decode(tiny(), ids, size / 4, &out, &out_len, &err) == TY_OK) check_utf8(out, out_len);
        free(out);
        free(ids);
    } else if (mode == 3) {
        fuzz_generated((const uint8_t *)rest, size);
    }
    return 0;
}
