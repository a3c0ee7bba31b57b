// libFuzzer target for Moondream API request bodies (src/api/request_json.c):
// arbitrary bytes as the body of each skill, and as base64 text. Whatever
// parses must satisfy the rules of api.md; whatever fails must leave nothing
// owned behind and name its error; base64 that decodes must be canonical
// (encoding the bytes again gives back the same text).
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/request_json.h"

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void check_base64(const uint8_t *data, size_t size) {
    size_t cap = size / 4 * 3 + 3, n;
    uint8_t *out = malloc(cap);
    ty_err err;
    if (!out) return;
    if (base64_decode_strict((const char *)data, size, out, cap, &n, &err) == TY_OK) {
        if (n != base64_decoded_size((const char *)data, size) || (n + 2) / 3 * 4 != size) abort();
        for (size_t i = 0, o = 0; i < n; i += 3, o += 4) {
            uint32_t q = (uint32_t)out[i] << 16 | (i + 1 < n ? (uint32_t)out[i + 1] << 8 : 0) | (i + 2 < n ? out[i + 2] : 0);
            char enc[4] = {b64_alphabet[q >> 18 & 63], b64_alphabet[q >> 12 & 63],
                           i + 1 < n ? b64_alphabet[q >> 6 & 63] : '=', i + 2 < n ? b64_alphabet[q & 63] : '='};
            if (memcmp(enc, data + o, 4)) abort();
        }
    } else if (err.code == TY_OK || !err.msg[0]) {
        abort();
    }
    free(out);
}

static int blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && (*s < '\t' || *s > '\r')) return 0;
    return 1;
}

static void check_params(const request_json *r, tycho_skill skill) {
    const tycho_request_params *p = &r->params;
    if (p->skill != skill) abort();
    if (p->image_bytes != r->image || p->image_len != r->image_len || (r->image && !r->image_len)) abort();
    if (!p->image_bytes && skill != TYCHO_SKILL_QUERY) abort();
    if (p->image_len > REQUEST_JSON_DEFAULT_IMAGE_BYTES) abort();
    if (skill == TYCHO_SKILL_QUERY && (!p->question || blank(p->question))) abort();
    if ((skill == TYCHO_SKILL_DETECT || skill == TYCHO_SKILL_POINT) && (!p->object || blank(p->object))) abort();
    if (p->length && strcmp(p->length, "short") && strcmp(p->length, "normal") && strcmp(p->length, "long")) abort();
    if (!(p->temperature >= 0) || !isfinite(p->temperature) || !(p->top_p > 0 && p->top_p <= 1)) abort();
    if (p->max_tokens < 1 || p->max_objects < 1) abort();
    if (r->stream && p->reasoning) abort();
    if (p->n_spatial_refs < 0 || p->n_spatial_refs > REQUEST_JSON_MAX_REFS) abort();
    if (p->n_spatial_refs && !p->image_bytes) abort();
    for (int i = 0; i < p->n_spatial_refs; i++) {
        const tycho_spatial_ref *s = &p->spatial_refs[i];
        if (s->n != 2 && s->n != 4) abort();
        for (int k = 0; k < s->n; k++)
            if (!(s->v[k] >= 0 && s->v[k] <= 1)) abort();
        if (s->n == 4 && (s->v[0] > s->v[2] || s->v[1] > s->v[3])) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_base64(data, size);
    request_json r;
    request_json_init(&r);
    for (int k = 0; k < 4; k++) {
        tycho_skill skill = (tycho_skill)k;
        request_json_error e;
        if (request_json_parse_text(&r, (const char *)data, size, skill, NULL, &e) == TY_OK) {
            check_params(&r, skill);
        } else {
            if (e.err.code == TY_OK || !e.err.msg[0] || r.image || r.question || r.object) abort();
            if (e.param[0] && strncmp(e.param, "image_url", 9) && strcmp(e.param, "question") &&
                strcmp(e.param, "object") && strcmp(e.param, "length") && strcmp(e.param, "stream") &&
                strcmp(e.param, "reasoning") && strncmp(e.param, "spatial_refs", 12) && strncmp(e.param, "settings", 8))
                abort();
        }
    }
    request_json_free(&r);
    return 0;
}
