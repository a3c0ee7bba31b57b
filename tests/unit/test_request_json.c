// Moondream API request bodies (src/api/request_json.c): every field, every
// error with the param it names, strict base64 and the data URI forms.
#include <stdint.h>
#include <stdlib.h>

#include "api/request_json.h"
#include "core/file.h"
#include "test.h"

// ---- helpers ---------------------------------------------------------------

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Canonical padded base64 of n bytes (a plain reference encoder).
static char *b64_encode(const uint8_t *in, size_t n) {
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t q = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        *o++ = b64_alphabet[q >> 18 & 63];
        *o++ = b64_alphabet[q >> 12 & 63];
        *o++ = i + 1 < n ? b64_alphabet[q >> 6 & 63] : '=';
        *o++ = i + 2 < n ? b64_alphabet[q & 63] : '=';
    }
    *o = '\0';
    return out;
}

static ty_status decode(const char *s, uint8_t *out, size_t cap, size_t *n) {
    ty_err err = {0};
    return base64_decode_strict(s, strlen(s), out, cap, n, &err);
}

// Parses text for skill; returns the status and leaves the error in *e.
static ty_status parse(request_json *r, tycho_skill skill, const char *text, request_json_error *e) {
    return request_json_parse_text(r, text, strlen(text), skill, NULL, e);
}

// Checks that text fails for skill with code, naming param.
#define CHECK_FAIL(skill, text, code, param_)                                                               \
    do {                                                                                                   \
        request_json r_;                                                                                   \
        request_json_error e_;                                                                             \
        request_json_init(&r_);                                                                            \
        ty_status s_ = parse(&r_, skill, text, &e_);                                                       \
        CHECK_MSG(s_ == (code) && !strcmp(e_.param, param_), "%s: got %s param '%s' (%s)", text,           \
                  ty_status_name(s_), e_.param, e_.err.msg);                                               \
        CHECK(s_ == TY_OK || (r_.image == NULL && r_.question == NULL && r_.params.image_bytes == NULL));  \
        request_json_free(&r_);                                                                            \
    } while (0)

#define CHECK_OK(skill, text)                                                                     \
    do {                                                                                          \
        request_json r_;                                                                          \
        request_json_error e_;                                                                    \
        request_json_init(&r_);                                                                   \
        ty_status s_ = parse(&r_, skill, text, &e_);                                              \
        CHECK_MSG(s_ == TY_OK, "%s: got %s param '%s' (%s)", text, ty_status_name(s_), e_.param,  \
                  e_.err.msg);                                                                    \
        request_json_free(&r_);                                                                   \
    } while (0)

// A 1x1 PNG-ish payload: the parser does not decode images, only base64.
#define IMG "\"image_url\": \"data:image/png;base64,iVBORw0KGgo=\""

// ---- base64 ----------------------------------------------------------------

static void test_base64(void) {
    uint8_t out[64];
    size_t n = 99;
    CHECK(decode("", out, sizeof out, &n) == TY_OK && n == 0);
    // RFC 4648 §10 test vectors.
    const char *plain[] = {"f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *enc[] = {"Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 6; i++) {
        CHECK_MSG(decode(enc[i], out, sizeof out, &n) == TY_OK && n == strlen(plain[i]) && !memcmp(out, plain[i], n),
                  "%s", enc[i]);
        CHECK(base64_decoded_size(enc[i], strlen(enc[i])) == strlen(plain[i]));
    }
    // Rejected: every way a text can be non-canonical or broken.
    const char *bad[] = {
        "Zg",        // no padding
        "Zg=",       // short padding
        "Zm9vY",     // length 5
        "Zg==Zm9v",  // padding in the middle
        "Z===",      // three padding characters
        "====",      // padding only
        "Zm=v",      // padding then data
        "Zh==",      // unused bits set (canonical is Zg==)
        "Zm9=",      // unused bits set (canonical is Zm8=)
        "Zm9v\n",    // line break
        "Zm9v Zm9v", // space
        " Zm9v",     // leading space
        "Zm-v",      // URL-safe alphabet
        "Zm_v",      // URL-safe alphabet
        "Zm9!",      // punctuation
        "Zm9\x80",   // high byte
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(decode(bad[i], out, sizeof out, &n) == TY_E_FORMAT, "accepted '%s'", bad[i]);
    // An embedded NUL counts as a bad character, not the end of the text.
    ty_err err = {0};
    CHECK(base64_decode_strict("Zm\0v", 4, out, sizeof out, &n, &err) == TY_E_FORMAT);
    CHECK(strstr(err.msg, "0x00") && strstr(err.msg, "offset 2"));
    // The decoded size is checked against the buffer before anything is written.
    CHECK(decode("Zm9vYmFy", out, 5, &n) == TY_E_LIMIT);
    CHECK(decode("Zm9vYmE=", out, 5, &n) == TY_OK && n == 5);
    // Round trips: every length 0..48, every byte value.
    uint8_t src[256];
    for (int i = 0; i < 256; i++) src[i] = (uint8_t)(i * 167 + 13);
    for (size_t len = 0; len <= 48; len++) {
        char *t = b64_encode(src + len, len);
        CHECK_MSG(decode(t, out, sizeof out, &n) == TY_OK && n == len && !memcmp(out, src + len, len), "len %zu", len);
        free(t);
    }
    uint8_t all[256], back[256];
    for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
    char *t = b64_encode(all, 256);
    CHECK(decode(t, back, sizeof back, &n) == TY_OK && n == 256 && !memcmp(all, back, 256));
    free(t);
}

// ---- image_url forms ---------------------------------------------------------

static void test_image_url(void) {
    request_json r;
    request_json_error e;
    request_json_init(&r);
    // Data URI: bytes decoded, params point at them.
    CHECK(parse(&r, TYCHO_SKILL_CAPTION, "{\"image_url\": \"data:image/jpeg;base64,Zm9vYmFy\"}", &e) == TY_OK);
    CHECK(r.image_len == 6 && !memcmp(r.image, "foobar", 6));
    CHECK(r.params.image_bytes == r.image && r.params.image_len == 6 && r.params.skill == TYCHO_SKILL_CAPTION);
    // Raw base64.
    CHECK(parse(&r, TYCHO_SKILL_CAPTION, "{\"image_url\": \"Zm9v\"}", &e) == TY_OK);
    CHECK(r.image_len == 3 && !memcmp(r.image, "foo", 3));
    request_json_free(&r);
    // Forms that are accepted.
    CHECK_OK(TYCHO_SKILL_CAPTION, "{\"image_url\": \"data:image/png;base64,Zm9v\"}");
    CHECK_OK(TYCHO_SKILL_CAPTION, "{\"image_url\": \"DATA:Image/WebP;BASE64,Zm9v\"}");
    CHECK_OK(TYCHO_SKILL_CAPTION, "{\"image_url\": \"data:image/svg+xml;base64,Zm9v\"}");
    CHECK_OK(TYCHO_SKILL_CAPTION, "{\"image_url\": \"data:image/jpeg;name=a.jpg;base64,Zm9v\"}");
    // Forms that are not.
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"data:image/png,Zm9v\"}", TY_E_UNSUPPORTED, "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"data:image/png;base64;x=1,Zm9v\"}", TY_E_UNSUPPORTED,
               "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"data:text/plain;base64,Zm9v\"}", TY_E_ARG, "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"data:;base64,Zm9v\"}", TY_E_ARG, "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"data:image/;base64,Zm9v\"}", TY_E_ARG, "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"data:image/png;base64\"}", TY_E_FORMAT, "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"data:image/png;x;base64,Zm9v\"}", TY_E_FORMAT, "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"data:image/png base64,Zm9v\"}", TY_E_FORMAT, "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"data:image/png;base64,\"}", TY_E_ARG, "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"data:image/png;base64,Zm9v!\"}", TY_E_FORMAT, "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"data:image/png;base64,Zm9v\\nZm9v\"}", TY_E_FORMAT,
               "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"data:image/png;base64,Zh==\"}", TY_E_FORMAT, "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"https://example.com/a.jpg\"}", TY_E_UNSUPPORTED, "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"HTTP://example.com/a.jpg\"}", TY_E_UNSUPPORTED, "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"file:///etc/passwd\"}", TY_E_UNSUPPORTED, "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"\"}", TY_E_ARG, "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": 5}", TY_E_ARG, "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": [\"Zm9v\"]}", TY_E_ARG, "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{}", TY_E_ARG, "image_url");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": null}", TY_E_ARG, "image_url");
    CHECK_FAIL(TYCHO_SKILL_DETECT, "{\"object\": \"cat\"}", TY_E_ARG, "image_url");
    CHECK_FAIL(TYCHO_SKILL_POINT, "{\"object\": \"cat\"}", TY_E_ARG, "image_url");

    // The image bound applies to the decoded size, before decoding.
    request_json_options o = {.max_image_bytes = 6};
    request_json_init(&r);
    const char *six = "{\"image_url\": \"Zm9vYmFy\"}", *seven = "{\"image_url\": \"Zm9vYmFyYg==\"}";
    CHECK(request_json_parse_text(&r, six, strlen(six), TYCHO_SKILL_CAPTION, &o, &e) == TY_OK);
    CHECK(request_json_parse_text(&r, seven, strlen(seven), TYCHO_SKILL_CAPTION, &o, &e) == TY_E_LIMIT);
    CHECK(!strcmp(e.param, "image_url") && r.image == NULL);
    request_json_free(&r);
}

// ---- image paths (tycho batch) -------------------------------------------------

static void test_image_path(void) {
    request_json r;
    request_json_error e;
    request_json_init(&r);
    uint8_t *want;
    size_t want_len;
    ty_err ferr;
    CHECK(file_read_all(TEST_DATA("golden/images/c_96x64.png"), 1 << 24, &want, &want_len, &ferr) == TY_OK);
    request_json_options batch = {.allow_image_path = 1, .base_dir = TEST_DATA("golden/images")};
    const char *rel = "{\"image\": \"c_96x64.png\"}";
    CHECK(request_json_parse_text(&r, rel, strlen(rel), TYCHO_SKILL_CAPTION, &batch, &e) == TY_OK);
    CHECK(r.image_len == want_len && !memcmp(r.image, want, want_len) && r.params.image_bytes == r.image);
    const char *abs = "{\"image\": \"" TEST_DATA("golden/images/c_96x64.png") "\"}";
    CHECK(request_json_parse_text(&r, abs, strlen(abs), TYCHO_SKILL_CAPTION, &batch, &e) == TY_OK);
    CHECK(r.image_len == want_len && !memcmp(r.image, want, want_len));
    // Without a base directory, relative to the working directory (here: none such).
    request_json_options cwd = {.allow_image_path = 1};
    CHECK(request_json_parse_text(&r, rel, strlen(rel), TYCHO_SKILL_CAPTION, &cwd, &e) == TY_E_IO);
    CHECK(!strcmp(e.param, "image") && strstr(e.err.msg, "c_96x64.png"));
    const char *missing = "{\"image\": \"nope.png\"}";
    CHECK(request_json_parse_text(&r, missing, strlen(missing), TYCHO_SKILL_CAPTION, &batch, &e) == TY_E_IO);
    CHECK(!strcmp(e.param, "image") && r.image == NULL);
    const char *dir = "{\"image\": \".\"}";
    CHECK(request_json_parse_text(&r, dir, strlen(dir), TYCHO_SKILL_CAPTION, &batch, &e) == TY_E_IO);
    const char *num = "{\"image\": 3}";
    CHECK(request_json_parse_text(&r, num, strlen(num), TYCHO_SKILL_CAPTION, &batch, &e) == TY_E_ARG);
    CHECK(!strcmp(e.param, "image"));
    const char *both = "{\"image\": \"c_96x64.png\", \"image_url\": \"Zm9v\"}";
    CHECK(request_json_parse_text(&r, both, strlen(both), TYCHO_SKILL_CAPTION, &batch, &e) == TY_E_ARG);
    CHECK(!strcmp(e.param, "image"));
    const char *none = "{\"object\": \"x\"}";
    CHECK(request_json_parse_text(&r, none, strlen(none), TYCHO_SKILL_DETECT, &batch, &e) == TY_E_ARG);
    CHECK(!strcmp(e.param, "image"));
    // image_url still works in batch mode.
    const char *url = "{\"image_url\": \"Zm9v\"}";
    CHECK(request_json_parse_text(&r, url, strlen(url), TYCHO_SKILL_CAPTION, &batch, &e) == TY_OK && r.image_len == 3);
    // The file size bound.
    request_json_options small = {.allow_image_path = 1, .base_dir = TEST_DATA("golden/images"), .max_image_bytes = 100};
    CHECK(request_json_parse_text(&r, rel, strlen(rel), TYCHO_SKILL_CAPTION, &small, &e) == TY_E_LIMIT);
    CHECK(!strcmp(e.param, "image"));
    // The server never reads files: "image" is an unknown key there.
    CHECK(parse(&r, TYCHO_SKILL_CAPTION, rel, &e) == TY_E_ARG && !strcmp(e.param, "image_url"));
    CHECK(parse(&r, TYCHO_SKILL_QUERY, "{\"question\": \"q\", \"image\": \"/etc/passwd\"}", &e) == TY_OK);
    CHECK(r.image == NULL && r.params.image_bytes == NULL);
    request_json_free(&r);
    free(want);
}

// ---- skills and their fields ----------------------------------------------------

static void test_caption(void) {
    request_json r;
    request_json_error e;
    request_json_init(&r);
    CHECK(parse(&r, TYCHO_SKILL_CAPTION, "{" IMG "}", &e) == TY_OK);
    CHECK(r.params.length == NULL && r.stream == 0);  // normal by default
    const char *lengths[] = {"short", "normal", "long"};
    for (int i = 0; i < 3; i++) {
        char body[160];
        snprintf(body, sizeof body, "{" IMG ", \"length\": \"%s\", \"stream\": true}", lengths[i]);
        CHECK(parse(&r, TYCHO_SKILL_CAPTION, body, &e) == TY_OK);
        CHECK(r.params.length && !strcmp(r.params.length, lengths[i]) && r.stream == 1);
    }
    CHECK(parse(&r, TYCHO_SKILL_CAPTION, "{" IMG ", \"length\": null, \"stream\": false}", &e) == TY_OK);
    CHECK(r.params.length == NULL && r.stream == 0);
    request_json_free(&r);
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{" IMG ", \"length\": \"medium\"}", TY_E_ARG, "length");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{" IMG ", \"length\": \"Short\"}", TY_E_ARG, "length");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{" IMG ", \"length\": 1}", TY_E_ARG, "length");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{" IMG ", \"stream\": \"true\"}", TY_E_ARG, "stream");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{" IMG ", \"stream\": 1}", TY_E_ARG, "stream");
    // Field errors are found before the image is decoded (cheap checks first).
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"!!!!\", \"stream\": 0}", TY_E_ARG, "stream");
}

static void test_query(void) {
    request_json r;
    request_json_error e;
    request_json_init(&r);
    CHECK(parse(&r, TYCHO_SKILL_QUERY, "{\"question\": \" What is this? \"}", &e) == TY_OK);
    CHECK(r.params.skill == TYCHO_SKILL_QUERY && r.params.image_bytes == NULL);  // text-only
    CHECK(!strcmp(r.params.question, " What is this? "));  // passed on untrimmed
    CHECK(r.params.reasoning == 0 && r.params.n_spatial_refs == 0 && r.params.spatial_refs == NULL);
    CHECK(parse(&r, TYCHO_SKILL_QUERY,
                "{" IMG ", \"question\": \"q\", \"reasoning\": true, \"stream\": false,"
                " \"spatial_refs\": [[0.25, 0.5], [0.1, 0.2, 0.4, 0.6], [0, 0, 1, 1], [1, 1]]}",
                &e) == TY_OK);
    CHECK(r.params.reasoning == 1 && r.params.n_spatial_refs == 4 && r.params.spatial_refs == r.refs);
    CHECK(r.refs[0].n == 2 && r.refs[0].v[0] == 0.25 && r.refs[0].v[1] == 0.5);
    CHECK(r.refs[1].n == 4 && r.refs[1].v[0] == 0.1 && r.refs[1].v[3] == 0.6);
    CHECK(r.refs[3].n == 2 && r.refs[3].v[0] == 1);
    CHECK(parse(&r, TYCHO_SKILL_QUERY, "{" IMG ", \"question\": \"q\", \"spatial_refs\": [[0.5, 0.5, 0.5, 0.5]]}", &e) ==
          TY_OK);  // a degenerate box is still a box
    CHECK(parse(&r, TYCHO_SKILL_QUERY, "{" IMG ", \"question\": \"q\", \"spatial_refs\": []}", &e) == TY_OK);
    CHECK(r.params.n_spatial_refs == 0 && r.params.spatial_refs == NULL);
    CHECK(parse(&r, TYCHO_SKILL_QUERY, "{\"question\": \"q\", \"stream\": true}", &e) == TY_OK && r.stream == 1);
    request_json_free(&r);

    CHECK_FAIL(TYCHO_SKILL_QUERY, "{" IMG "}", TY_E_ARG, "question");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{\"question\": null}", TY_E_ARG, "question");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{\"question\": \"\"}", TY_E_ARG, "question");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{\"question\": \" \\t\\n\\r \"}", TY_E_ARG, "question");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{\"question\": \"\\u3000\\u00a0\\u2009\\u001f\"}", TY_E_ARG, "question");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{\"question\": \" \xe3\x80\x80 \"}", TY_E_ARG, "question");  // raw UTF-8 U+3000
    CHECK_OK(TYCHO_SKILL_QUERY, "{\"question\": \"\\u00a0x\"}");
    CHECK_OK(TYCHO_SKILL_QUERY, "{\"question\": \"\\u200b\"}");  // zero-width space is not a space to Python
    CHECK_OK(TYCHO_SKILL_QUERY, "{\"question\": \"\xe4\xbd\xa0\xe5\xa5\xbd\"}");  // CJK text
    // \u0000 would cut the C string silently: refused; an escaped backslash before u0000 is fine.
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{\"question\": \"q\\u0000x\"}", TY_E_ARG, "");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"Zm9v\\u0000!!!\"}", TY_E_ARG, "");
    CHECK_OK(TYCHO_SKILL_QUERY, "{\"question\": \"q\\\\u0000x\"}");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{\"question\": 42}", TY_E_ARG, "question");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{\"question\": [\"q\"]}", TY_E_ARG, "question");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{\"question\": \"q\", \"reasoning\": \"yes\"}", TY_E_ARG, "reasoning");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{\"question\": \"q\", \"reasoning\": 1}", TY_E_ARG, "reasoning");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{\"question\": \"q\", \"stream\": true, \"reasoning\": true}", TY_E_UNSUPPORTED,
               "stream");
    // spatial_refs
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{" IMG ", \"question\": \"q\", \"spatial_refs\": [0.5, 0.5]}", TY_E_ARG,
               "spatial_refs[0]");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{" IMG ", \"question\": \"q\", \"spatial_refs\": {\"x\": 1}}", TY_E_ARG,
               "spatial_refs");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{" IMG ", \"question\": \"q\", \"spatial_refs\": [[0.5, 0.5], [0.1, 0.2, 0.3]]}",
               TY_E_ARG, "spatial_refs[1]");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{" IMG ", \"question\": \"q\", \"spatial_refs\": [[0.5]]}", TY_E_ARG,
               "spatial_refs[0]");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{" IMG ", \"question\": \"q\", \"spatial_refs\": [[]]}", TY_E_ARG,
               "spatial_refs[0]");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{" IMG ", \"question\": \"q\", \"spatial_refs\": [[0.1, 0.2, 0.3, 0.4, 0.5]]}",
               TY_E_ARG, "spatial_refs[0]");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{" IMG ", \"question\": \"q\", \"spatial_refs\": [[1.5, 0.5]]}", TY_E_ARG,
               "spatial_refs[0]");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{" IMG ", \"question\": \"q\", \"spatial_refs\": [[0.5, -0.01]]}", TY_E_ARG,
               "spatial_refs[0]");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{" IMG ", \"question\": \"q\", \"spatial_refs\": [[0.5, \"0.5\"]]}", TY_E_ARG,
               "spatial_refs[0]");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{" IMG ", \"question\": \"q\", \"spatial_refs\": [[0.5, null]]}", TY_E_ARG,
               "spatial_refs[0]");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{" IMG ", \"question\": \"q\", \"spatial_refs\": [[0.1, 0.1], [0.6, 0.2, 0.4, 0.6]]}",
               TY_E_ARG, "spatial_refs[1]");  // x_min > x_max
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{" IMG ", \"question\": \"q\", \"spatial_refs\": [[0.1, 0.7, 0.4, 0.6]]}", TY_E_ARG,
               "spatial_refs[0]");  // y_min > y_max
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{" IMG ", \"question\": \"q\", \"spatial_refs\": [[1e400, 0.5]]}", TY_E_ARG,
               "spatial_refs[0]");
    char many[600] = "{" IMG ", \"question\": \"q\", \"spatial_refs\": [";
    for (int i = 0; i <= REQUEST_JSON_MAX_REFS; i++) strcat(many, i ? ", [0.5, 0.5]" : "[0.5, 0.5]");
    strcat(many, "]}");
    CHECK_FAIL(TYCHO_SKILL_QUERY, many, TY_E_ARG, "spatial_refs");
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{\"question\": \"q\", \"spatial_refs\": [[0.5, 0.5]]}", TY_E_ARG, "spatial_refs");
}

static void test_detect_point(void) {
    for (int k = 0; k < 2; k++) {
        tycho_skill s = k ? TYCHO_SKILL_POINT : TYCHO_SKILL_DETECT;
        request_json r;
        request_json_error e;
        request_json_init(&r);
        CHECK(parse(&r, s, "{" IMG ", \"object\": \"red circle\", \"settings\": {\"max_objects\": 4}}", &e) == TY_OK);
        CHECK(r.params.skill == s && !strcmp(r.params.object, "red circle") && r.params.max_objects == 4);
        CHECK(r.params.temperature == 0);  // greedy by default
        request_json_free(&r);
        CHECK_FAIL(s, "{" IMG "}", TY_E_ARG, "object");
        CHECK_FAIL(s, "{" IMG ", \"object\": \"   \"}", TY_E_ARG, "object");
        CHECK_FAIL(s, "{" IMG ", \"object\": true}", TY_E_ARG, "object");
        CHECK_FAIL(s, "{" IMG ", \"object\": \"x\", \"settings\": {\"max_objects\": 0}}", TY_E_ARG,
                   "settings.max_objects");
        CHECK_FAIL(s, "{" IMG ", \"object\": \"x\", \"settings\": {\"max_objects\": 2.5}}", TY_E_ARG,
                   "settings.max_objects");
        // Keys of other skills are ignored like unknown keys.
        CHECK_OK(s, "{" IMG ", \"object\": \"x\", \"length\": 5, \"question\": 1, \"reasoning\": \"no\","
                    " \"spatial_refs\": 7, \"stream\": \"x\"}");
    }
}

static void test_settings(void) {
    request_json r;
    request_json_error e;
    request_json_init(&r);
    CHECK(parse(&r, TYCHO_SKILL_CAPTION, "{" IMG "}", &e) == TY_OK);
    CHECK(r.params.max_tokens == 768 && r.params.temperature == 0.5f && r.params.top_p == 0.3f);  // api.md defaults
    CHECK(parse(&r, TYCHO_SKILL_QUERY,
                "{\"question\": \"q\", \"settings\": {\"temperature\": 0, \"top_p\": 1, \"max_tokens\": 20,"
                " \"max_objects\": 3, \"unknown\": \"x\"}}",
                &e) == TY_OK);
    CHECK(r.params.temperature == 0 && r.params.top_p == 1 && r.params.max_tokens == 20 && r.params.max_objects == 3);
    CHECK(parse(&r, TYCHO_SKILL_QUERY, "{\"question\": \"q\", \"settings\": {\"temperature\": 1.5, \"top_p\": 1e-3,"
                                       " \"max_tokens\": 2147483647, \"max_objects\": 1.0}}",
                &e) == TY_OK);
    CHECK(r.params.temperature == 1.5f && r.params.top_p == 1e-3f && r.params.max_tokens == 2147483647 &&
          r.params.max_objects == 1);
    CHECK(parse(&r, TYCHO_SKILL_QUERY, "{\"question\": \"q\", \"settings\": null}", &e) == TY_OK);
    CHECK(parse(&r, TYCHO_SKILL_QUERY, "{\"question\": \"q\", \"settings\": {\"temperature\": null}}", &e) == TY_OK);
    CHECK(r.params.temperature == 0.5f);
    request_json_free(&r);

    const char *q = "{\"question\": \"q\", \"settings\": ";
    struct {
        const char *settings, *param;
    } bad[] = {
        {"5", "settings"},
        {"[]", "settings"},
        {"\"x\"", "settings"},
        {"{\"temperature\": -0.1}", "settings.temperature"},
        {"{\"temperature\": \"0.5\"}", "settings.temperature"},
        {"{\"temperature\": true}", "settings.temperature"},
        {"{\"temperature\": 1e300}", "settings.temperature"},
        {"{\"top_p\": 0}", "settings.top_p"},
        {"{\"top_p\": -0.5}", "settings.top_p"},
        {"{\"top_p\": 1.0001}", "settings.top_p"},
        {"{\"top_p\": 1e-300}", "settings.top_p"},
        {"{\"top_p\": false}", "settings.top_p"},
        {"{\"max_tokens\": 0}", "settings.max_tokens"},
        {"{\"max_tokens\": -1}", "settings.max_tokens"},
        {"{\"max_tokens\": 1.5}", "settings.max_tokens"},
        {"{\"max_tokens\": \"20\"}", "settings.max_tokens"},
        {"{\"max_tokens\": true}", "settings.max_tokens"},
        {"{\"max_tokens\": 3e9}", "settings.max_tokens"},
        {"{\"max_tokens\": 1e400}", "settings.max_tokens"},
        {"{\"max_objects\": [1]}", "settings.max_objects"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[200];
        snprintf(body, sizeof body, "%s%s}", q, bad[i].settings);
        CHECK_FAIL(TYCHO_SKILL_QUERY, body, TY_E_ARG, bad[i].param);
    }
}

// A server's own default for max_tokens applies only where settings give none.
static void test_default_max_tokens(void) {
    request_json r;
    request_json_error e;
    request_json_options o = {.default_max_tokens = 48};
    request_json_init(&r);
    const char *plain = "{\"question\": \"q\"}", *set = "{\"question\": \"q\", \"settings\": {\"max_tokens\": 5}}";
    CHECK(request_json_parse_text(&r, plain, strlen(plain), TYCHO_SKILL_QUERY, &o, &e) == TY_OK);
    CHECK(r.params.max_tokens == 48);
    CHECK(request_json_parse_text(&r, set, strlen(set), TYCHO_SKILL_QUERY, &o, &e) == TY_OK);
    CHECK(r.params.max_tokens == 5);
    o.default_max_tokens = 0;
    CHECK(request_json_parse_text(&r, plain, strlen(plain), TYCHO_SKILL_QUERY, &o, &e) == TY_OK);
    CHECK(r.params.max_tokens == 768);
    request_json_free(&r);
}

// request_json_decode_image: the pixels image_decode gives, the bytes freed,
// the pixel limit and bad bytes reported on image_url.
static void test_decode_image(void) {
    uint8_t *png;
    size_t n;
    ty_err fe = {0};
    CHECK(file_read_all(TEST_DATA("golden/images/c_96x64.png"), 1 << 20, &png, &n, &fe) == TY_OK);
    char *b64 = b64_encode(png, n);
    size_t body_cap = strlen(b64) + 100;
    char *body = malloc(body_cap);
    snprintf(body, body_cap, "{\"image_url\": \"data:image/png;base64,%s\"}", b64);
    request_json r;
    request_json_error e;
    request_json_init(&r);
    CHECK(parse(&r, TYCHO_SKILL_CAPTION, body, &e) == TY_OK);
    CHECK(request_json_decode_image(&r, 0, &e) == TY_OK);
    image_rgb want;
    CHECK(image_decode(&want, png, n, NULL, &fe) == TY_OK);
    CHECK(r.params.image_bytes == NULL && r.params.image_len == 0 && r.image == NULL);
    CHECK(r.params.image_width == 96 && r.params.image_height == 64 && r.params.image_rgb == r.pixels.rgb);
    CHECK(want.rgb && r.pixels.rgb && !memcmp(want.rgb, r.pixels.rgb, (size_t)96 * 64 * 3));
    image_rgb_free(&want);
    CHECK(request_json_decode_image(&r, 0, &e) == TY_OK);  // nothing left to decode: no-op
    // Over the pixel limit: refused from the header, before any pixel is decoded.
    CHECK(parse(&r, TYCHO_SKILL_CAPTION, body, &e) == TY_OK);
    CHECK(request_json_decode_image(&r, 96 * 64 - 1, &e) == TY_E_LIMIT && !strcmp(e.param, "image_url"));
    CHECK(parse(&r, TYCHO_SKILL_CAPTION, body, &e) == TY_OK);
    CHECK(request_json_decode_image(&r, 96 * 64, &e) == TY_OK);
    // Base64 of bytes that are no image, and of a truncated PNG.
    CHECK(parse(&r, TYCHO_SKILL_CAPTION, "{\"image_url\": \"Zm9vYmFy\"}", &e) == TY_OK);
    CHECK(request_json_decode_image(&r, 0, &e) == TY_E_FORMAT && !strcmp(e.param, "image_url"));
    char *half = b64_encode(png, n / 2);
    snprintf(body, body_cap, "{\"image_url\": \"%s\"}", half);
    CHECK(parse(&r, TYCHO_SKILL_CAPTION, body, &e) == TY_OK);
    ty_status st = request_json_decode_image(&r, 0, &e);
    CHECK_MSG(st == TY_E_FORMAT && !strcmp(e.param, "image_url"), "truncated PNG: %s %s", ty_status_name(st), e.err.msg);
    // A text-only query has nothing to decode.
    CHECK(parse(&r, TYCHO_SKILL_QUERY, "{\"question\": \"q\"}", &e) == TY_OK);
    CHECK(request_json_decode_image(&r, 0, &e) == TY_OK && !r.params.image_rgb);
    request_json_free(&r);
    free(half);
    free(body);
    free(b64);
    free(png);
}

// OpenAI chat bodies as queries: which text and image are used, the chat's
// fields, and errors naming the chat's params.
static ty_status chat(request_json *r, const char *text, request_json_error *e) {
    cJSON *body;
    ty_status st = request_json_body_parse(text, strlen(text), &body, e);
    if (st == TY_OK) st = request_json_parse_chat(r, body, NULL, e);
    cJSON_Delete(body);
    return st;
}

#define CHECK_CHAT_FAIL(text, code, param_)                                                                   \
    do {                                                                                                     \
        request_json r_;                                                                                     \
        request_json_error e_;                                                                               \
        request_json_init(&r_);                                                                              \
        ty_status s_ = chat(&r_, text, &e_);                                                                 \
        CHECK_MSG(s_ == (code) && !strcmp(e_.param, param_), "%s: got %s param '%s' (%s)", text,             \
                  ty_status_name(s_), e_.param, e_.err.msg);                                                 \
        CHECK(r_.image == NULL && r_.question == NULL);                                                      \
        request_json_free(&r_);                                                                              \
    } while (0)

static void test_chat(void) {
    request_json r;
    request_json_error e;
    request_json_init(&r);
    // A plain string; system and assistant turns are not used.
    CHECK(chat(&r, "{\"model\": \"m\", \"messages\": [{\"role\": \"system\", \"content\": \"be nice\"},"
                   " {\"role\": \"user\", \"content\": \"first\"}, {\"role\": \"assistant\", \"content\": null},"
                   " {\"role\": \"user\", \"content\": \"second\"}]}", &e) == TY_OK);
    CHECK(r.params.skill == TYCHO_SKILL_QUERY && !strcmp(r.params.question, "second") && !r.params.image_bytes);
    CHECK(r.params.max_tokens == 768 && r.params.temperature == 0.5f && !r.stream && !r.params.has_seed);
    // Parts: texts joined by "\n", the image; the chat's settings.
    CHECK(chat(&r, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"},"
                   " {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,Zm9vYg==\"}},"
                   " {\"type\": \"text\", \"text\": \"b\"}]}], \"max_tokens\": 9, \"temperature\": 0, \"top_p\": 0.5,"
                   " \"seed\": 12345678901, \"stream\": true, \"stream_options\": {\"include_usage\": true}, \"n\": 1}",
               &e) == TY_OK);
    CHECK(!strcmp(r.params.question, "a\nb") && r.image_len == 4 && !memcmp(r.image, "foob", 4));
    CHECK(r.params.max_tokens == 9 && r.params.temperature == 0 && r.params.top_p == 0.5f && r.stream &&
          r.include_usage && r.params.has_seed && r.params.seed == 12345678901ull);
    // max_completion_tokens wins over max_tokens; an image from an earlier user message; image_url as a string.
    CHECK(chat(&r, "{\"max_tokens\": 5, \"max_completion_tokens\": 7, \"messages\": [{\"role\": \"user\","
                   " \"content\": [{\"type\": \"image_url\", \"image_url\": \"Zm9vYg==\"}, {\"type\": \"text\","
                   " \"text\": \"what?\"}]}, {\"role\": \"assistant\", \"content\": \"a cat\"},"
                   " {\"role\": \"user\", \"content\": \"and its color?\"}]}", &e) == TY_OK);
    CHECK(r.params.max_tokens == 7 && r.image_len == 4 && !strcmp(r.params.question, "and its color?"));
    request_json_free(&r);

    CHECK_CHAT_FAIL("[]", TY_E_ARG, "");
    CHECK_CHAT_FAIL("{}", TY_E_ARG, "messages");
    CHECK_CHAT_FAIL("{\"messages\": []}", TY_E_ARG, "messages");
    CHECK_CHAT_FAIL("{\"messages\": [5]}", TY_E_ARG, "messages[0]");
    CHECK_CHAT_FAIL("{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}", TY_E_ARG, "messages[0]");
    CHECK_CHAT_FAIL("{\"messages\": [{\"role\": \"assistant\", \"content\": \"x\"}]}", TY_E_ARG, "messages");
    CHECK_CHAT_FAIL("{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", TY_E_ARG, "messages[0].content");
    CHECK_CHAT_FAIL("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"audio\"}]}]}", TY_E_UNSUPPORTED,
                    "messages[0].content[0]");
    CHECK_CHAT_FAIL("{\"messages\": [{\"role\": \"user\", \"content\": [{\"text\": \"x\"}]}]}", TY_E_ARG,
                    "messages[0].content[0]");
    CHECK_CHAT_FAIL("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": 1}]}]}",
                    TY_E_ARG, "messages[0].content[0]");
    CHECK_CHAT_FAIL("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {}}]}]}",
                    TY_E_ARG, "messages[0].content[0]");
    CHECK_CHAT_FAIL("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"q\"},"
                    " {\"type\": \"image_url\", \"image_url\": \"Zm9v\"}, {\"type\": \"image_url\", \"image_url\": \"Zm9v\"}]}]}",
                    TY_E_ARG, "messages[0].content");
    CHECK_CHAT_FAIL("{\"messages\": [{\"role\": \"user\", \"content\": \"  \"}]}", TY_E_ARG, "messages");
    CHECK_CHAT_FAIL("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"q\"},"
                    " {\"type\": \"image_url\", \"image_url\": \"@@@@\"}]}]}", TY_E_FORMAT, "messages");
    const char *u = "\"messages\": [{\"role\": \"user\", \"content\": \"q\"}]";
    struct {
        const char *field, *param;
        ty_status code;
    } bad[] = {
        {"\"temperature\": -1", "temperature", TY_E_ARG},   {"\"top_p\": 2", "top_p", TY_E_ARG},
        {"\"max_tokens\": 0", "max_tokens", TY_E_ARG},      {"\"max_completion_tokens\": 1.5", "max_tokens", TY_E_ARG},
        {"\"stream\": 1", "stream", TY_E_ARG},              {"\"n\": 2", "n", TY_E_UNSUPPORTED},
        {"\"seed\": -1", "seed", TY_E_ARG},                 {"\"seed\": 1.5", "seed", TY_E_ARG},
        {"\"model\": 3", "model", TY_E_ARG},                {"\"stream_options\": 1", "stream_options", TY_E_ARG},
        {"\"stream_options\": {\"include_usage\": 1}", "stream_options", TY_E_ARG},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[300];
        snprintf(body, sizeof body, "{%s, %s}", u, bad[i].field);
        CHECK_CHAT_FAIL(body, bad[i].code, bad[i].param);
    }
}

static void test_body(void) {
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "", TY_E_FORMAT, "");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": ", TY_E_FORMAT, "");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "{\"image_url\": \"Zm9v\"} trailing", TY_E_FORMAT, "");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "[]", TY_E_ARG, "");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "\"Zm9v\"", TY_E_ARG, "");
    CHECK_FAIL(TYCHO_SKILL_CAPTION, "null", TY_E_ARG, "");
    CHECK_FAIL(TYCHO_SKILL_ENCODE_IMAGE, "{" IMG "}", TY_E_ARG, "skill");
    // What the official clients send: unknown keys, empty auth-ish fields.
    CHECK_OK(TYCHO_SKILL_CAPTION, "{" IMG ", \"length\": \"normal\", \"stream\": false, \"variant\": null,"
                                  " \"model\": \"moondream-2\", \"settings\": {}}");
    CHECK_OK(TYCHO_SKILL_QUERY, "{" IMG ", \"question\": \"q\", \"stream\": false, \"reasoning\": false}");
    // Keys are case-sensitive: "Question" is an unknown key.
    CHECK_FAIL(TYCHO_SKILL_QUERY, "{\"Question\": \"q\"}", TY_E_ARG, "question");
    // The params own nothing of the JSON: they stay valid after it is freed.
    request_json r;
    request_json_error e;
    request_json_init(&r);
    cJSON *body = cJSON_Parse("{\"question\": \"the question\", \"image_url\": \"Zm9v\"}");
    CHECK(request_json_parse(&r, body, TYCHO_SKILL_QUERY, NULL, &e) == TY_OK);
    cJSON_Delete(body);
    CHECK(!strcmp(r.params.question, "the question") && r.params.image_len == 3);
    // A failed parse leaves r empty even when it held a request before.
    CHECK(parse(&r, TYCHO_SKILL_QUERY, "{\"question\": 1}", &e) == TY_E_ARG);
    CHECK(r.question == NULL && r.image == NULL && r.params.question == NULL);
    CHECK(request_json_parse(&r, NULL, TYCHO_SKILL_QUERY, NULL, &e) == TY_E_ARG);
    request_json_free(&r);
    request_json_free(&r);  // twice is fine
}

static void test_skill_names(void) {
    const char *names[] = {"caption", "query", "detect", "point"};
    request_json_error e;
    for (int i = 0; i < 4; i++) {
        cJSON *v = cJSON_CreateString(names[i]);
        tycho_skill s = TYCHO_SKILL_ENCODE_IMAGE;
        CHECK(request_json_skill_parse(v, &s, &e) == TY_OK && (int)s == i);
        CHECK(!strcmp(request_json_skill_name(s), names[i]));
        cJSON_Delete(v);
    }
    tycho_skill s;
    cJSON *bad[] = {cJSON_CreateString("Caption"), cJSON_CreateString("segment"), cJSON_CreateNumber(0),
                    cJSON_CreateNull()};
    for (int i = 0; i < 4; i++) {
        CHECK(request_json_skill_parse(bad[i], &s, &e) == TY_E_ARG && !strcmp(e.param, "skill"));
        cJSON_Delete(bad[i]);
    }
    CHECK(request_json_skill_parse(NULL, &s, &e) == TY_E_ARG && !strcmp(e.param, "skill"));
}

int main(void) {
    test_base64();
    test_image_url();
    test_image_path();
    test_caption();
    test_query();
    test_detect_point();
    test_settings();
    test_default_max_tokens();
    test_decode_image();
    test_chat();
    test_body();
    test_skill_names();
    return test_report("test_request_json");
}
