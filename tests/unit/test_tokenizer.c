// Tokenizer tests: the HF vectors (ids and decoded text) for every tokenizer
// in tests/data, then malformed tokenizer.json files, added-token flags, and
// decode edge cases, each expected to fail cleanly with a useful message.
#include "io/tokenizer.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "test.h"

static char *read_text(const char *path, size_t *len) {
    uint8_t *buf = NULL;
    ty_err err = {0};
    if (file_read_all(path, (size_t)64 << 20, &buf, len, &err)) fprintf(stderr, "%s\n", err.msg);
    return (char *)buf;
}

// Runs every vector of vectors_path through the tokenizer at tok_path.
static void check_vectors(const char *tok_path, const char *vectors_path) {
    ty_err err = {0};
    tokenizer *t;
    CHECK_MSG(tokenizer_init_from_file(&t, tok_path, &err) == TY_OK, "%s", err.msg);
    size_t len;
    char *text = read_text(vectors_path, &len);
    cJSON *root = text ? cJSON_ParseWithLength(text, len) : NULL;
    const cJSON *vectors = cJSON_GetObjectItemCaseSensitive(root, "vectors");
    CHECK(t && cJSON_GetArraySize(vectors) > 100);
    int n = 0, bad = 0;
    for (const cJSON *v = vectors ? vectors->child : NULL; v && t; v = v->next, n++) {
        const char *s = cJSON_GetObjectItemCaseSensitive(v, "text")->valuestring;
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(v, "ids");
        const char *want_dec = cJSON_GetObjectItemCaseSensitive(v, "decoded")->valuestring;
        int32_t *ids;
        size_t n_ids;
        ty_status st = tokenizer_encode(t, s, strlen(s), &ids, &n_ids, &err);
        int ok = st == TY_OK && (int)n_ids == cJSON_GetArraySize(want);
        for (size_t i = 0; ok && i < n_ids; i++) ok = ids[i] == cJSON_GetArrayItem(want, (int)i)->valueint;
        char *dec = NULL;
        size_t dec_len = 0;
        int32_t *want_ids = malloc(sizeof *want_ids * (size_t)(cJSON_GetArraySize(want) + 1));
        for (int i = 0; i < cJSON_GetArraySize(want); i++) want_ids[i] = cJSON_GetArrayItem(want, i)->valueint;
        ty_status dst = tokenizer_decode(t, want_ids, (size_t)cJSON_GetArraySize(want), &dec, &dec_len, &err);
        int dec_ok = dst == TY_OK && dec_len == strlen(want_dec) && !memcmp(dec, want_dec, dec_len);
        if ((!ok || !dec_ok) && bad++ < 5) {
            fprintf(stderr, "%s vector %d: text '%s'\n  got ids:", vectors_path, n, s);
            for (size_t i = 0; i < n_ids && i < 40; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n  want:   ");
            for (int i = 0; i < cJSON_GetArraySize(want) && i < 40; i++) fprintf(stderr, " %d", want_ids[i]);
            fprintf(stderr, "\n  decoded '%s' want '%s'\n", dec ? dec : "(error)", want_dec);
        }
        CHECK(ok);
        CHECK(dec_ok);
        free(want_ids);
        free(ids);
        free(dec);
    }
    fprintf(stderr, "%s: %d vectors, %d mismatches\n", vectors_path, n, bad);
    cJSON_Delete(root);
    free(text);
    tokenizer_free(t);
}

// ---- malformed and unsupported files, made by editing the tiny model's tokenizer.json ----

static cJSON *base_json(void) {
    size_t len;
    char *text = read_text(TEST_DATA("golden/md2-tiny/tokenizer.json"), &len);
    cJSON *j = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    return j;
}

// Loads json (printed from j, which is freed) and expects code and a message containing want.
static void expect_fail_json(cJSON *j, ty_status code, const char *want, int line) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    tokenizer *t = (tokenizer *)1;
    ty_err err = {0};
    ty_status st = tokenizer_init_from_json(&t, s, strlen(s), &err);
    CHECK_MSG(st == code && t == NULL && strstr(err.msg, want), "line %d: status %d, message '%s' (want %d '%s')",
              line, st, err.msg, code, want);
    tokenizer_free(t == (tokenizer *)1 ? NULL : t);
    free(s);
}

static void expect_fail_bytes(const char *s, size_t len, ty_status code, const char *want, int line) {
    tokenizer *t = (tokenizer *)1;
    ty_err err = {0};
    ty_status st = tokenizer_init_from_json(&t, s, len, &err);
    CHECK_MSG(st == code && t == NULL && strstr(err.msg, want), "line %d: status %d, message '%s' (want %d '%s')",
              line, st, err.msg, code, want);
}

static cJSON *obj(const char *json) { return cJSON_Parse(json); }

static cJSON *with(cJSON *j, const char *path, cJSON *value) {  // path: "key" or "model.key"
    const char *dot = strchr(path, '.');
    cJSON *parent = j;
    char key[64];
    if (dot) {
        snprintf(key, sizeof key, "%.*s", (int)(dot - path), path);
        parent = cJSON_GetObjectItemCaseSensitive(j, key);
        path = dot + 1;
    }
    if (cJSON_GetObjectItemCaseSensitive(parent, path)) cJSON_ReplaceItemInObjectCaseSensitive(parent, path, value);
    else cJSON_AddItemToObject(parent, path, value);
    return j;
}

#define FAIL_WITH(path, value, code, want) expect_fail_json(with(base_json(), path, value), code, want, __LINE__)

static void test_malformed(void) {
    FAIL_WITH("normalizer", obj("{\"type\":\"NFKC\"}"), TY_E_UNSUPPORTED,
              "tokenizer.json: normalizer type 'NFKC' is not supported");
    FAIL_WITH("pre_tokenizer", obj("{\"type\":\"Metaspace\"}"), TY_E_UNSUPPORTED, "pre_tokenizer type 'Metaspace'");
    FAIL_WITH("pre_tokenizer", obj("{\"type\":\"Sequence\",\"pretokenizers\":[]}"), TY_E_UNSUPPORTED,
              "pre_tokenizer type 'Sequence'");
    FAIL_WITH("pre_tokenizer", cJSON_CreateNull(), TY_E_UNSUPPORTED, "pre_tokenizer null");
    FAIL_WITH("post_processor", obj("{\"type\":\"TemplateProcessing\"}"), TY_E_UNSUPPORTED,
              "post_processor type 'TemplateProcessing'");
    FAIL_WITH("post_processor", obj("{\"type\":\"BertProcessing\"}"), TY_E_UNSUPPORTED, "'BertProcessing'");
    FAIL_WITH("decoder", obj("{\"type\":\"WordPiece\"}"), TY_E_UNSUPPORTED, "decoder type 'WordPiece'");
    FAIL_WITH("decoder", cJSON_CreateNull(), TY_E_UNSUPPORTED, "decoder null");
    FAIL_WITH("truncation", obj("{\"max_length\":8}"), TY_E_UNSUPPORTED, "truncation");
    FAIL_WITH("padding", obj("{}"), TY_E_UNSUPPORTED, "padding");
    FAIL_WITH("model.type", cJSON_CreateString("WordPiece"), TY_E_UNSUPPORTED, "model type 'WordPiece'");
    FAIL_WITH("model.byte_fallback", cJSON_CreateTrue(), TY_E_UNSUPPORTED, "byte_fallback");
    FAIL_WITH("model.dropout", cJSON_CreateNumber(0.1), TY_E_UNSUPPORTED, "dropout");
    FAIL_WITH("model.continuing_subword_prefix", cJSON_CreateString("##"), TY_E_UNSUPPORTED, "continuing_subword_prefix");
    FAIL_WITH("model.end_of_word_suffix", cJSON_CreateString("</w>"), TY_E_UNSUPPORTED, "end_of_word_suffix");
    FAIL_WITH("model.vocab", obj("[1,2]"), TY_E_FORMAT, "model.vocab must be an object");
    FAIL_WITH("model.vocab", obj("{\"a\":\"1\"}"), TY_E_FORMAT, "model.vocab['a']");
    FAIL_WITH("model.vocab", obj("{\"a\":-1}"), TY_E_FORMAT, "model.vocab['a']");
    FAIL_WITH("model.vocab", obj("{\"a\":1.5}"), TY_E_FORMAT, "model.vocab['a']");
    FAIL_WITH("model.vocab", obj("{\"a\":1,\"b\":1}"), TY_E_FORMAT, "id 1 is given to more than one token");
    FAIL_WITH("model.vocab", obj("{\"a\":1,\"a\":2}"), TY_E_FORMAT, "listed twice");
    FAIL_WITH("model.merges", obj("{}"), TY_E_FORMAT, "model.merges must be an array");
    FAIL_WITH("model.merges", obj("[\"Ġ t\", \"q nosuchtoken\"]"), TY_E_FORMAT, "token 'nosuchtoken' is not in the vocab");
    FAIL_WITH("model.merges", obj("[[\"Ġ\", \"t\"], [\"nosuchtoken\", \"a\"]]"), TY_E_FORMAT,
              "token 'nosuchtoken' is not in the vocab");
    FAIL_WITH("model.merges", obj("[\"a b c\"]"), TY_E_FORMAT, "not two tokens split by one space");
    FAIL_WITH("model.merges", obj("[\"ab\"]"), TY_E_FORMAT, "not two tokens split by one space");
    FAIL_WITH("model.merges", obj("[\"Ġ t\", [\"a\", \"b\"]]"), TY_E_FORMAT, "must be a string like the others");
    FAIL_WITH("model.merges", obj("[[\"Ġ\", \"t\", \"x\"]]"), TY_E_FORMAT, "pair of strings");
    FAIL_WITH("model.merges", obj("[\"Q Ġ\"]"), TY_E_FORMAT, "token 'QĠ' is not in the vocab");  // merged token
    FAIL_WITH("model", obj("[]"), TY_E_FORMAT, "model must be an object");
    FAIL_WITH("added_tokens", obj("{}"), TY_E_FORMAT, "added_tokens must be an array");
    FAIL_WITH("added_tokens", obj("[{\"id\":\"0\",\"content\":\"<|endoftext|>\"}]"), TY_E_FORMAT, "added_tokens[0].id");
    FAIL_WITH("added_tokens", obj("[{\"id\":0}]"), TY_E_FORMAT, "added_tokens[0] must be an object");
    FAIL_WITH("added_tokens", obj("[{\"id\":5,\"content\":\"<|endoftext|>\"}]"), TY_E_FORMAT, "gives it id 0");
    FAIL_WITH("added_tokens", obj("[{\"id\":0,\"content\":\"<|endoftext|>\",\"special\":1}]"), TY_E_FORMAT,
              "special must be a boolean");
    FAIL_WITH("added_tokens",
              obj("[{\"id\":0,\"content\":\"<|endoftext|>\"},{\"id\":0,\"content\":\"<|endoftext|>\"}]"), TY_E_FORMAT,
              "listed twice");

    FAIL_WITH("added_tokens", obj("[{\"id\":8266,\"content\":\"<T>\"},{\"id\":8266,\"content\":\"<T>\"}]"),
              TY_E_FORMAT, "added_tokens[1] '<T>' is listed twice");
    FAIL_WITH("added_tokens", obj("[{\"id\":9000,\"content\":\"<T>\"}]"), TY_E_FORMAT, "gives it id 8266");
    FAIL_WITH("pre_tokenizer", obj("{\"type\":\"ByteLevel\"}"), TY_E_FORMAT, "pre_tokenizer.add_prefix_space is missing");
    FAIL_WITH("model.unk_token", cJSON_CreateNumber(3), TY_E_FORMAT, "unk_token must be a string");

    expect_fail_bytes("", 0, TY_E_FORMAT, "tokenizer.json: file is empty", __LINE__);
    expect_fail_bytes("[]", 2, TY_E_FORMAT, "top level must be a JSON object", __LINE__);
    expect_fail_bytes("{\"model\":", 9, TY_E_FORMAT, "not valid JSON", __LINE__);
    expect_fail_bytes("{\"a\":\"\xff\"}", 9, TY_E_FORMAT, "not valid UTF-8 at byte 6", __LINE__);
    expect_fail_bytes("{\"a\":\"\\u0000\"}", 14, TY_E_UNSUPPORTED, "\\u0000", __LINE__);
    expect_fail_bytes("{}", 2, TY_E_UNSUPPORTED, "pre_tokenizer null", __LINE__);
    expect_fail_bytes("{} x", 4, TY_E_FORMAT, "unexpected data at byte 3", __LINE__);

    // The real file cut short, and random bytes.
    size_t len;
    char *text = read_text(TEST_DATA("golden/md2-tiny/tokenizer.json"), &len);
    for (size_t cut = 1; text && cut < len; cut = cut * 3 + 7)
        expect_fail_bytes(text, cut, TY_E_FORMAT, "not valid JSON", __LINE__);
    free(text);
    uint32_t seed = 12345;
    char junk[4096];
    for (int round = 0; round < 50; round++) {
        size_t n = 1 + round * 80;
        for (size_t i = 0; i < n; i++) junk[i] = (char)((seed = seed * 1103515245u + 12345u) >> 16);
        tokenizer *t = NULL;
        ty_err err = {0};
        CHECK(tokenizer_init_from_json(&t, junk, n, &err) != TY_OK && t == NULL && err.msg[0]);
    }

    tokenizer *t = NULL;
    ty_err err = {0};
    CHECK(tokenizer_init_from_file(&t, TEST_DATA("golden/no-such-tokenizer.json"), &err) == TY_E_IO && !t);
    CHECK(strstr(err.msg, "no-such-tokenizer.json") != NULL);
}

// ---- decode ----

static void expect_decode(const tokenizer *t, const int32_t *ids, size_t n, const char *want, int line) {
    char *text = NULL;
    size_t len = 0;
    ty_err err = {0};
    ty_status st = tokenizer_decode(t, ids, n, &text, &len, &err);
    CHECK_MSG(st == TY_OK && len == strlen(want) && !memcmp(text, want, len) && text[len] == '\0',
              "line %d: got '%s' (%s), want '%s'", line, text ? text : "", err.msg, want);
    free(text);
}

static void test_decode(void) {
    tokenizer *t;
    ty_err err = {0};
    CHECK(tokenizer_init_from_file(&t, TEST_DATA("golden/md2-tiny/tokenizer.json"), &err) == TY_OK);
    if (!t) return;
    CHECK(tokenizer_vocab_size(t) == 8266);
    CHECK(tokenizer_token_id(t, "<|endoftext|>") == 0);
    CHECK(tokenizer_token_id(t, "<|md_ground_end|>") == 9);
    CHECK(tokenizer_token_id(t, "no such token") == -1);
    CHECK(tokenizer_is_special(t, 0) && !tokenizer_is_special(t, 10) && !tokenizer_is_special(t, -3));

    // "é" is C3 A9: the ByteLevel characters for those bytes are "Ã" and "©".
    int32_t c3 = tokenizer_token_id(t, "Ã"), a9 = tokenizer_token_id(t, "©");
    int32_t f0 = tokenizer_token_id(t, "ð"), x9f = tokenizer_token_id(t, "Ł"), x99 = tokenizer_token_id(t, "Ļ");
    int32_t a = tokenizer_token_id(t, "a");
    CHECK(c3 >= 0 && a9 >= 0 && f0 >= 0 && x9f >= 0 && x99 >= 0 && a >= 0);
    expect_decode(t, (int32_t[]){c3, a9}, 2, "\xC3\xA9", __LINE__);
    expect_decode(t, (int32_t[]){c3}, 1, "\xEF\xBF\xBD", __LINE__);                        // cut-off character
    expect_decode(t, (int32_t[]){a9, c3}, 2, "\xEF\xBF\xBD\xEF\xBF\xBD", __LINE__);        // two bad pieces
    expect_decode(t, (int32_t[]){f0, x9f, x99, a}, 4, "\xEF\xBF\xBD" "a", __LINE__);       // F0 9F 99: one maximal subpart
    expect_decode(t, (int32_t[]){c3, 0, a9}, 3, "\xC3\xA9", __LINE__);                     // special skipped in between
    expect_decode(t, (int32_t[]){0, 1, 9}, 3, "", __LINE__);
    expect_decode(t, NULL, 0, "", __LINE__);

    // Ids the tokenizer does not know are dropped, as HF's decode does (the
    // tiny models have 8320 embedding rows for 8266 tokens and emit the rest).
    static const int32_t bad_ids[] = {-1, 8266, 1 << 30, INT32_MIN};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        int32_t ids[3] = {a, bad_ids[i], a};
        expect_decode(t, ids, 3, "aa", __LINE__);
    }

    // Encode: invalid UTF-8 is refused, empty text gives no ids.
    int32_t *ids = (int32_t *)1;
    size_t n = 5;
    CHECK(tokenizer_encode(t, "ab\xC3(", 4, &ids, &n, &err) == TY_E_ARG && ids == NULL && n == 0);
    CHECK(strstr(err.msg, "UTF-8") && strstr(err.msg, "offset 2"));
    CHECK(tokenizer_encode(t, "\xED\xA0\x80", 3, &ids, &n, &err) == TY_E_ARG);  // a surrogate
    CHECK(tokenizer_encode(t, "", 0, &ids, &n, &err) == TY_OK && ids == NULL && n == 0);
    CHECK(tokenizer_encode(t, "", TOKENIZER_MAX_TEXT_BYTES + 1, &ids, &n, &err) == TY_E_LIMIT && ids == NULL);
    tokenizer_free(t);
}

// ---- added-token flags, checked against HF's AddedVocabulary::find_matches rules ----

// Encodes text with the tiny tokenizer whose added token 9 is replaced by `tok`
// and whose options are patched by `patch` (may be NULL), and returns the ids as text.
static void expect_ids(const char *tok, const char *pre, const char *text, const char *want, int line) {
    cJSON *j = base_json();
    cJSON *added = cJSON_GetObjectItemCaseSensitive(j, "added_tokens");
    if (tok) cJSON_ReplaceItemInArray(added, 9, obj(tok));
    if (pre) with(j, "pre_tokenizer", obj(pre));
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    tokenizer *t = NULL;
    ty_err err = {0};
    char got[600] = "";
    if (tokenizer_init_from_json(&t, s, strlen(s), &err) != TY_OK) snprintf(got, sizeof got, "error: %s", err.msg);
    int32_t *ids = NULL;
    size_t n = 0;
    if (t && tokenizer_encode(t, text, strlen(text), &ids, &n, &err) != TY_OK) snprintf(got, sizeof got, "error: %s", err.msg);
    for (size_t i = 0; i < n; i++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%d", i ? " " : "", ids[i]);
    CHECK_MSG(!strcmp(got, want), "line %d: '%s' -> '%s', want '%s'", line, text, got, want);
    free(ids);
    free(s);
    tokenizer_free(t);
}

// The ids of text under the unmodified tiny tokenizer, as "1 2 3".
static void plain_ids(const char *text, char *out, size_t cap) {
    tokenizer *t;
    ty_err err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    out[0] = '\0';
    if (tokenizer_init_from_file(&t, TEST_DATA("golden/md2-tiny/tokenizer.json"), &err) == TY_OK)
        tokenizer_encode(t, text, strlen(text), &ids, &n, &err);
    for (size_t i = 0; i < n; i++) snprintf(out + strlen(out), cap - strlen(out), "%s%d", i ? " " : "", ids[i]);
    free(ids);
    tokenizer_free(t);
}

static void test_added_flags(void) {
    tokenizer *t;
    ty_err err = {0};
    CHECK(tokenizer_init_from_file(&t, TEST_DATA("golden/md2-tiny/tokenizer.json"), &err) == TY_OK);
    if (!t) return;
    int32_t sp = tokenizer_token_id(t, "Ġ"), x = tokenizer_token_id(t, "x"), spx = tokenizer_token_id(t, "Ġx");
    int32_t dash = tokenizer_token_id(t, "-");
    CHECK(sp >= 0 && x >= 0 && spx >= 0 && dash >= 0);
    tokenizer_free(t);
    // Replacing added token 9 by one not in the vocab, HF numbers it 8266 (the vocab size).
    const char *plain = "{\"id\":8266,\"content\":\"<T>\",\"special\":true,\"normalized\":false}";
    const char *lstrip = "{\"id\":8266,\"content\":\"<T>\",\"special\":true,\"normalized\":false,\"lstrip\":true}";
    const char *rstrip = "{\"id\":8266,\"content\":\"<T>\",\"special\":true,\"normalized\":false,\"rstrip\":true}";
    const char *single = "{\"id\":8266,\"content\":\"zzz\",\"special\":true,\"normalized\":false,\"single_word\":true}";
    const char *normed = "{\"id\":8266,\"content\":\"<T>\",\"special\":false,\"normalized\":true}";
    char want[256];
    snprintf(want, sizeof want, "%d 8266 %d", x, spx);
    expect_ids(plain, NULL, "x<T> x", want, __LINE__);
    expect_ids(normed, NULL, "x<T> x", want, __LINE__);  // null normalizer: matched in the second pass
    snprintf(want, sizeof want, "%d %d 8266 %d %d", x, sp, sp, spx);
    expect_ids(plain, NULL, "x <T>  x", want, __LINE__);  // "  x" -> " " + " x"
    snprintf(want, sizeof want, "%d 8266 %d", x, spx);
    expect_ids(lstrip, NULL, "x  \t<T> x", want, __LINE__);  // the whitespace before goes into the token
    snprintf(want, sizeof want, "%d %d 8266 %d", x, sp, x);
    expect_ids(rstrip, NULL, "x <T> \n x", want, __LINE__);  // ... or after it
    snprintf(want, sizeof want, "%d 8266 %d", sp, spx);
    expect_ids(single, NULL, " zzz x", want, __LINE__);  // a whole word: matched
    snprintf(want, sizeof want, "8266 %d %d", dash, x);
    expect_ids(single, NULL, "zzz-x", want, __LINE__);  // '-' is not \w: matched
    char ref[256];
    plain_ids("azzz", ref, sizeof ref);  // inside a word (next to \w characters) it is not matched
    expect_ids(single, NULL, "azzz", ref, __LINE__);
    plain_ids("zzz_", ref, sizeof ref);
    expect_ids(single, NULL, "zzz_", ref, __LINE__);
    plain_ids("\xC3\xA9zzz", ref, sizeof ref);  // "ézzz": é is a letter, so \w
    expect_ids(single, NULL, "\xC3\xA9zzz", ref, __LINE__);

    // add_prefix_space puts a space before each piece between added tokens; use_regex=false keeps one word.
    const char *aps = "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true}";
    snprintf(want, sizeof want, "%d 8266 %d", spx, spx);
    expect_ids(plain, aps, "x<T>x", want, __LINE__);
    snprintf(want, sizeof want, "%d", spx);
    expect_ids(plain, aps, " x", want, __LINE__);
    expect_ids(plain, aps, "", "", __LINE__);
    const char *noregex = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}";
    plain_ids("a b", ref, sizeof ref);  // merges never cross the regex's splits, so the same ids
    expect_ids(plain, noregex, "a b", ref, __LINE__);
}

// ---- bytes without a token: dropped, or unk_token (fused or not), as BPE::merge_word ----

static void expect_unk(const char *unk, int fuse, const char *text, size_t len, const char *want, int line) {
    cJSON *j = base_json();
    cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(model, "vocab"), "Ā");  // byte 0
    with(j, "model.unk_token", unk ? cJSON_CreateString(unk) : cJSON_CreateNull());
    with(j, "model.fuse_unk", cJSON_CreateBool(fuse));
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    tokenizer *t = NULL;
    ty_err err = {0};
    char got[600] = "";
    int32_t *ids = NULL;
    size_t n = 0;
    if (tokenizer_init_from_json(&t, s, strlen(s), &err) || tokenizer_encode(t, text, len, &ids, &n, &err))
        snprintf(got, sizeof got, "error: %s", err.msg);
    for (size_t i = 0; i < n; i++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%d", i ? " " : "", ids[i]);
    CHECK_MSG(strstr(got, want) == got, "line %d: got '%s', want '%s'", line, got, want);
    free(ids);
    free(s);
    tokenizer_free(t);
}

static void test_unk(void) {
    // "a" = 74, "b" = 75; "a\0\0b" pre-tokenizes to "a", "\0\0", "b".
    expect_unk(NULL, 0, "a\0\0b", 4, "74 75", __LINE__);
    expect_unk("<|endoftext|>", 0, "a\0\0b", 4, "74 0 0 75", __LINE__);
    expect_unk("<|endoftext|>", 1, "a\0\0b", 4, "74 0 75", __LINE__);
    expect_unk("nosuchtoken", 0, "a\0b", 3, "error: tokenizer: model.unk_token is not in the vocab", __LINE__);
    expect_unk("nosuchtoken", 0, "ab", 2, "407", __LINE__);  // "ab": only an error once unk is needed
}

// ---- many threads on one tokenizer (it must be read-only after init) ----

typedef struct {
    const tokenizer *t;
    const cJSON *vectors;
    int mismatches;
} thread_job;

static void *encode_all(void *arg) {
    thread_job *job = arg;
    for (int round = 0; round < 3; round++)
        for (const cJSON *v = job->vectors->child; v; v = v->next) {
            const char *s = cJSON_GetObjectItemCaseSensitive(v, "text")->valuestring;
            const cJSON *want = cJSON_GetObjectItemCaseSensitive(v, "ids");
            int32_t *ids;
            size_t n;
            ty_err err;
            int ok = tokenizer_encode(job->t, s, strlen(s), &ids, &n, &err) == TY_OK &&
                     (int)n == cJSON_GetArraySize(want);
            for (size_t i = 0; ok && i < n; i++) ok = ids[i] == cJSON_GetArrayItem(want, (int)i)->valueint;
            job->mismatches += !ok;
            free(ids);
        }
    return NULL;
}

static void test_threads(void) {
    tokenizer *t;
    ty_err err = {0};
    size_t len;
    char *text = read_text(TEST_DATA("golden/tokenizer/gpt2.vectors.json"), &len);
    cJSON *root = text ? cJSON_ParseWithLength(text, len) : NULL;
    const cJSON *vectors = cJSON_GetObjectItemCaseSensitive(root, "vectors");
    CHECK(vectors && tokenizer_init_from_file(&t, TEST_DATA("golden/tokenizer/gpt2.json"), &err) == TY_OK);
    if (vectors && t) {
        thread_job jobs[4];
        pthread_t th[4];
        for (int i = 0; i < 4; i++) {
            jobs[i] = (thread_job){t, vectors, 0};
            CHECK(pthread_create(&th[i], NULL, encode_all, &jobs[i]) == 0);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            CHECK_MSG(jobs[i].mismatches == 0, "thread %d: %d mismatches", i, jobs[i].mismatches);
        }
        tokenizer_free(t);
    }
    cJSON_Delete(root);
    free(text);
}

int main(void) {
    check_vectors(TEST_DATA("golden/tokenizer/gpt2.json"), TEST_DATA("golden/tokenizer/gpt2.vectors.json"));
    check_vectors(TEST_DATA("golden/tokenizer/gpt2-merge-pairs.json"),
                  TEST_DATA("golden/tokenizer/gpt2-merge-pairs.vectors.json"));
    check_vectors(TEST_DATA("golden/md2-tiny/tokenizer.json"), TEST_DATA("golden/tokenizer/md-tiny.vectors.json"));
    check_vectors(TEST_DATA("golden/md3-tiny/tokenizer.json"), TEST_DATA("golden/tokenizer/md-tiny.vectors.json"));
    test_malformed();
    test_decode();
    test_added_flags();
    test_unk();
    test_threads();
    return test_report("test_tokenizer");
}
