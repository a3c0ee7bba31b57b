// Moondream API request bodies -> tycho_request_params (see request_json.h for the rules).
#include "api/request_json.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"

// ---- errors ----------------------------------------------------------------

ty_status request_json_fail(request_json_error *e, ty_status code, const char *param, const char *fmt, ...) {
    if (!e) return code;
    e->err.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err.msg, sizeof e->err.msg, fmt, ap);
    va_end(ap);
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    return code;
}

// ---- base64 ----------------------------------------------------------------

// Value of each byte as a base64 character; -1 outside the standard alphabet.
static const signed char b64_table[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
    -1,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1,
    -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

static int b64_value(unsigned char c) { return b64_table[c]; }

size_t base64_decoded_size(const char *in, size_t in_len) {
    size_t n = in_len / 4 * 3;
    if (in_len >= 4 && in_len % 4 == 0) {
        if (in[in_len - 1] == '=') n--;
        if (in[in_len - 2] == '=') n--;
    }
    return n;
}

// Describes a byte for messages: printable ASCII as 'c', the rest as 0xNN.
static const char *byte_desc(unsigned char c, char buf[8]) {
    if (c > 0x20 && c < 0x7f) snprintf(buf, 8, "'%c'", c);
    else snprintf(buf, 8, "0x%02x", c);
    return buf;
}

ty_status base64_decode_strict(const char *in, size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len,
                               ty_err *err) {
    *out_len = 0;
    char d[8];
    if (in_len % 4)
        return ty_err_set(err, TY_E_FORMAT, "invalid base64: length %zu is not a multiple of 4", in_len);
    size_t need = base64_decoded_size(in, in_len);
    if (need > out_cap)
        return ty_err_set(err, TY_E_LIMIT, "decoded size %zu bytes exceeds the limit of %zu", need, out_cap);
    size_t w = 0, i = 0;
    // Fast path: every quantum but the last, while all four are alphabet
    // characters (images are hundreds of kilobytes of base64). Anything else
    // drops to the careful loop below, which finds and names the problem.
    const unsigned char *u = (const unsigned char *)in;
    for (; i + 4 < in_len; i += 4) {
        int v0 = b64_table[u[i]], v1 = b64_table[u[i + 1]], v2 = b64_table[u[i + 2]], v3 = b64_table[u[i + 3]];
        if ((v0 | v1 | v2 | v3) < 0) break;
        uint32_t q = (uint32_t)v0 << 18 | (uint32_t)v1 << 12 | (uint32_t)v2 << 6 | (uint32_t)v3;
        out[w] = (uint8_t)(q >> 16);
        out[w + 1] = (uint8_t)(q >> 8);
        out[w + 2] = (uint8_t)q;
        w += 3;
    }
    for (; i < in_len; i += 4) {
        int last = i + 4 == in_len;
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + k];
            v[k] = b64_value(c);
            if (v[k] >= 0 && !pad) continue;
            // Padding: only in the last quantum, only at positions 2-3, and
            // once started nothing but padding follows.
            if (c == '=' && last && k >= 2) {
                pad++;
                v[k] = 0;
                continue;
            }
            if (c == '=')
                return ty_err_set(err, TY_E_FORMAT, "invalid base64: '=' at offset %zu is not final padding", i + k);
            return ty_err_set(err, TY_E_FORMAT, "invalid base64: character %s at offset %zu", byte_desc(c, d), i + k);
        }
        uint32_t q = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        // Canonical form: bits the padding leaves unused must be zero, so one
        // byte string has exactly one accepted text.
        if ((pad == 1 && (q & 0xff)) || (pad == 2 && (q & 0xffff)))
            return ty_err_set(err, TY_E_FORMAT, "invalid base64: non-zero padding bits at offset %zu", i + 4 - pad - 1);
        out[w++] = (uint8_t)(q >> 16);
        if (pad < 2) out[w++] = (uint8_t)(q >> 8);
        if (pad < 1) out[w++] = (uint8_t)q;
    }
    *out_len = w;
    return TY_OK;
}

// ---- image_url ---------------------------------------------------------------

static int starts_with_ci(const char *s, const char *prefix) {
    for (; *prefix; s++, prefix++) {
        char a = *s, b = *prefix;
        if (a >= 'A' && a <= 'Z') a = (char)(a - 'A' + 'a');
        if (a != b) return 0;
    }
    return 1;
}

static int is_token_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' || c == '-' ||
           c == '.' || c == '_';
}

// Finds the base64 payload of a data URI "data:image/<type>[;k=v]*;base64,<b64>".
static ty_status data_uri_payload(const char *s, const char **payload, request_json_error *e) {
    const char *comma = strchr(s, ',');
    if (!comma) return request_json_fail(e, TY_E_FORMAT, "image_url", "image_url: a data URI needs a ',' before its data");
    const char *meta = s + 5;  // after "data:"
    if (!starts_with_ci(meta, "image/"))
        return request_json_fail(e, TY_E_ARG, "image_url", "image_url: the data URI must have an image type (data:image/<type>;base64,...)");
    const char *p = meta + 6;
    const char *sub = p;
    while (p < comma && is_token_char(*p)) p++;
    if (p == sub) return request_json_fail(e, TY_E_ARG, "image_url", "image_url: the data URI's image type is empty");
    // Parameters; the last must be ";base64" (percent-encoded data URIs are not read).
    int base64 = 0;
    while (p < comma) {
        if (*p != ';') return request_json_fail(e, TY_E_FORMAT, "image_url", "image_url: malformed data URI media type");
        const char *seg = ++p;
        while (p < comma && *p != ';') p++;
        base64 = (size_t)(p - seg) == 6 && starts_with_ci(seg, "base64");
        if (!base64 && !memchr(seg, '=', (size_t)(p - seg)))
            return request_json_fail(e, TY_E_FORMAT, "image_url", "image_url: malformed data URI parameter");
    }
    if (!base64) return request_json_fail(e, TY_E_UNSUPPORTED, "image_url", "image_url: only base64 data URIs are supported (;base64,)");
    *payload = comma + 1;
    return TY_OK;
}

static ty_status parse_image_url(request_json *r, const char *s, size_t max_bytes, request_json_error *e) {
    const char *b64 = s;
    if (starts_with_ci(s, "data:")) {
        ty_status st = data_uri_payload(s, &b64, e);
        if (st != TY_OK) return st;
    } else if (starts_with_ci(s, "http://") || starts_with_ci(s, "https://") || starts_with_ci(s, "file:")) {
        return request_json_fail(e, TY_E_UNSUPPORTED, "image_url", "image_url: URLs are not fetched; send a data URI or base64");
    }
    size_t n = strlen(b64);
    if (!n) return request_json_fail(e, TY_E_ARG, "image_url", "image_url: the image data is empty");
    size_t need = base64_decoded_size(b64, n);
    if (need > max_bytes)
        return request_json_fail(e, TY_E_LIMIT, "image_url", "image_url: the image is %zu bytes, over the limit of %zu", need,
                    max_bytes);
    r->image = malloc(need ? need : 1);
    if (!r->image) return request_json_fail(e, TY_E_NOMEM, "image_url", "image_url: cannot allocate %zu bytes", need);
    ty_err be = {0};
    ty_status st = base64_decode_strict(b64, n, r->image, need, &r->image_len, &be);
    if (st != TY_OK) return request_json_fail(e, st, "image_url", "image_url: %s", be.msg);
    if (!r->image_len) return request_json_fail(e, TY_E_ARG, "image_url", "image_url: the image data is empty");
    return TY_OK;
}

// tycho batch: "image": PATH, relative to base_dir.
static ty_status read_image_path(request_json *r, const char *path, const request_json_options *o, size_t max_bytes,
                                 request_json_error *e) {
    char *full = NULL;
    if (path[0] != '/' && o->base_dir && o->base_dir[0]) {
        size_t n = strlen(o->base_dir) + strlen(path) + 2;
        full = malloc(n);
        if (!full) return request_json_fail(e, TY_E_NOMEM, "image", "image: out of memory");
        snprintf(full, n, "%s/%s", o->base_dir, path);
    }
    ty_err fe = {0};
    ty_status st = file_read_all(full ? full : path, max_bytes, &r->image, &r->image_len, &fe);
    free(full);
    if (st != TY_OK) return request_json_fail(e, st, "image", "image: %s", fe.msg);
    if (!r->image_len) return request_json_fail(e, TY_E_ARG, "image", "image: %s is empty", path);
    return TY_OK;
}

// ---- fields ------------------------------------------------------------------

// The field key of body, NULL when absent or JSON null (both mean "not given").
static const cJSON *field(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(v) ? NULL : v;
}

static const char *type_name(const cJSON *v) {
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "null";
}

static ty_status get_bool(const cJSON *obj, const char *key, int *out, request_json_error *e) {
    const cJSON *v = field(obj, key);
    if (!v) return TY_OK;
    if (!cJSON_IsBool(v)) return request_json_fail(e, TY_E_ARG, key, "%s must be a boolean, not %s", key, type_name(v));
    *out = cJSON_IsTrue(v);
    return TY_OK;
}

// Python's str.isspace() set, so "non-empty after trimming" means what it
// meant in the Python servers: ASCII \t-\r, \x1c-\x1f, space, and the
// Unicode spaces U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029,
// U+202F, U+205F, U+3000. Returns the length of the space at s, 0 if none.
static int space_len(const unsigned char *s) {
    if (*s == ' ' || (*s >= '\t' && *s <= '\r') || (*s >= 0x1c && *s <= 0x1f)) return 1;
    if (s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0)) return 2;
    if (s[0] == 0xe1 && s[1] == 0x9a && s[2] == 0x80) return 3;  // U+1680
    if (s[0] == 0xe2 && s[1] == 0x80 && ((s[2] >= 0x80 && s[2] <= 0x8a) || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf))
        return 3;  // U+2000-U+200A, U+2028, U+2029, U+202F
    if (s[0] == 0xe2 && s[1] == 0x81 && s[2] == 0x9f) return 3;  // U+205F
    if (s[0] == 0xe3 && s[1] == 0x80 && s[2] == 0x80) return 3;  // U+3000
    return 0;
}

static int is_blank(const char *text) {
    const unsigned char *s = (const unsigned char *)text;
    for (int n; *s; s += n)
        if (!(n = space_len(s))) return 0;
    return 1;
}

// A string that must hold something besides ASCII whitespace; copied into *out.
static ty_status get_text(const cJSON *obj, const char *key, int required, char **out, request_json_error *e) {
    const cJSON *v = field(obj, key);
    if (!v) return required ? request_json_fail(e, TY_E_ARG, key, "%s is required", key) : TY_OK;
    if (!cJSON_IsString(v)) return request_json_fail(e, TY_E_ARG, key, "%s must be a string, not %s", key, type_name(v));
    if (is_blank(v->valuestring)) return request_json_fail(e, TY_E_ARG, key, "%s must not be empty", key);
    *out = strdup(v->valuestring);  // untrimmed: the prompt gets what the caller wrote
    return *out ? TY_OK : request_json_fail(e, TY_E_NOMEM, key, "%s: out of memory", key);
}

// settings.<key>: an integer in [1, INT_MAX].
static ty_status get_count(const cJSON *settings, const char *key, int *out, request_json_error *e) {
    char param[64];
    snprintf(param, sizeof param, "settings.%s", key);
    const cJSON *v = field(settings, key);
    if (!v) return TY_OK;
    if (!cJSON_IsNumber(v)) return request_json_fail(e, TY_E_ARG, param, "%s must be an integer, not %s", param, type_name(v));
    double d = v->valuedouble;
    if (!(d >= 1 && d <= INT_MAX) || d != floor(d))
        return request_json_fail(e, TY_E_ARG, param, "%s must be an integer between 1 and %d", param, INT_MAX);
    *out = (int)d;
    return TY_OK;
}

static ty_status parse_settings(const cJSON *body, tycho_request_params *p, request_json_error *e) {
    const cJSON *s = field(body, "settings");
    if (!s) return TY_OK;
    if (!cJSON_IsObject(s)) return request_json_fail(e, TY_E_ARG, "settings", "settings must be an object, not %s", type_name(s));
    const cJSON *t = field(s, "temperature");
    if (t) {
        // A finite float: JSON numbers past FLT_MAX would become infinity.
        if (!cJSON_IsNumber(t) || !(t->valuedouble >= 0 && t->valuedouble <= FLT_MAX))
            return request_json_fail(e, TY_E_ARG, "settings.temperature", "settings.temperature must be a number >= 0");
        p->temperature = (float)t->valuedouble;
    }
    const cJSON *tp = field(s, "top_p");
    if (tp) {
        // (float) of a tiny positive double can round to 0: check after converting.
        if (!cJSON_IsNumber(tp) || !(tp->valuedouble > 0 && tp->valuedouble <= 1) || (float)tp->valuedouble <= 0)
            return request_json_fail(e, TY_E_ARG, "settings.top_p", "settings.top_p must be a number in (0, 1]");
        p->top_p = (float)tp->valuedouble;
    }
    ty_status st = get_count(s, "max_tokens", &p->max_tokens, e);
    if (st == TY_OK) st = get_count(s, "max_objects", &p->max_objects, e);
    return st;
}

// spatial_refs: [[x, y] | [x_min, y_min, x_max, y_max], ...], values in [0, 1].
static ty_status parse_spatial_refs(request_json *r, const cJSON *body, request_json_error *e) {
    const cJSON *list = field(body, "spatial_refs");
    if (!list) return TY_OK;
    if (!cJSON_IsArray(list))
        return request_json_fail(e, TY_E_ARG, "spatial_refs", "spatial_refs must be a list of [x, y] or [x_min, y_min, x_max, y_max]");
    int n = cJSON_GetArraySize(list);
    if (n > REQUEST_JSON_MAX_REFS)
        return request_json_fail(e, TY_E_ARG, "spatial_refs", "spatial_refs: at most %d regions, got %d", REQUEST_JSON_MAX_REFS, n);
    int i = 0;
    for (const cJSON *ref = list->child; ref; ref = ref->next, i++) {
        char param[32];
        snprintf(param, sizeof param, "spatial_refs[%d]", i);
        int m = cJSON_IsArray(ref) ? cJSON_GetArraySize(ref) : -1;
        if (m != 2 && m != 4)
            return request_json_fail(e, TY_E_ARG, param, "%s must be [x, y] or [x_min, y_min, x_max, y_max]", param);
        tycho_spatial_ref *out = &r->refs[i];
        out->n = m;
        int k = 0;
        for (const cJSON *v = ref->child; v; v = v->next, k++) {
            if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 1))
                return request_json_fail(e, TY_E_ARG, param, "%s: every value must be a number in [0, 1]", param);
            out->v[k] = v->valuedouble;
        }
        if (m == 4 && (out->v[0] > out->v[2] || out->v[1] > out->v[3]))
            return request_json_fail(e, TY_E_ARG, param, "%s: needs x_min <= x_max and y_min <= y_max", param);
    }
    r->params.spatial_refs = n ? r->refs : NULL;
    r->params.n_spatial_refs = n;
    return TY_OK;
}

// ---- the body ------------------------------------------------------------------

void request_json_init(request_json *r) {
    memset(r, 0, sizeof *r);
    tycho_request_params_default(&r->params, TYCHO_SKILL_CAPTION);
}

void request_json_free(request_json *r) {
    free(r->question);
    free(r->object);
    free(r->image);
    image_rgb_free(&r->pixels);
    request_json_init(r);
}

ty_status request_json_decode_image(request_json *r, int64_t max_pixels, request_json_error *e) {
    if (!r->image) return TY_OK;
    image_limits lim = image_limits_default();
    if (max_pixels > 0) lim.max_pixels = max_pixels;
    lim.max_encoded_bytes = r->image_len;  // already bounded by max_image_bytes
    ty_err ie = {0};
    ty_status st = image_decode(&r->pixels, r->image, r->image_len, &lim, &ie);
    const char *why = strncmp(ie.msg, "image: ", 7) ? ie.msg : ie.msg + 7;
    if (st != TY_OK) return request_json_fail(e, st, "image_url", "image_url: %s", why);
    free(r->image);
    r->image = NULL;
    r->image_len = 0;
    r->params.image_bytes = NULL;
    r->params.image_len = 0;
    r->params.image_rgb = r->pixels.rgb;
    r->params.image_width = r->pixels.width;
    r->params.image_height = r->pixels.height;
    return TY_OK;
}

static ty_status parse_image(request_json *r, const cJSON *body, tycho_skill skill, const request_json_options *o,
                             request_json_error *e) {
    size_t max_bytes = o && o->max_image_bytes ? o->max_image_bytes : REQUEST_JSON_DEFAULT_IMAGE_BYTES;
    const cJSON *url = field(body, "image_url");
    const cJSON *path = o && o->allow_image_path ? field(body, "image") : NULL;
    if (url && path) return request_json_fail(e, TY_E_ARG, "image", "give one of image and image_url, not both");
    if (!url && !path) {
        if (skill == TYCHO_SKILL_QUERY) return TY_OK;  // a text-only query
        if (o && o->allow_image_path) return request_json_fail(e, TY_E_ARG, "image", "image (or image_url) is required");
        return request_json_fail(e, TY_E_ARG, "image_url", "image_url is required");
    }
    const char *key = url ? "image_url" : "image";
    const cJSON *v = url ? url : path;
    if (!cJSON_IsString(v)) return request_json_fail(e, TY_E_ARG, key, "%s must be a string, not %s", key, type_name(v));
    if (!v->valuestring[0]) return request_json_fail(e, TY_E_ARG, key, "%s must not be empty", key);
    ty_status st = url ? parse_image_url(r, v->valuestring, max_bytes, e)
                       : read_image_path(r, v->valuestring, o, max_bytes, e);
    if (st != TY_OK) return st;
    r->params.image_bytes = r->image;
    r->params.image_len = r->image_len;
    return TY_OK;
}

static ty_status parse_fields(request_json *r, const cJSON *body, tycho_skill skill, const request_json_options *o,
                              request_json_error *e) {
    tycho_request_params *p = &r->params;
    ty_status st = TY_OK;
    if (skill == TYCHO_SKILL_CAPTION) {
        const cJSON *len = field(body, "length");
        if (len) {
            if (!cJSON_IsString(len) ||
                (strcmp(len->valuestring, "short") && strcmp(len->valuestring, "normal") && strcmp(len->valuestring, "long")))
                return request_json_fail(e, TY_E_ARG, "length", "length must be \"short\", \"normal\" or \"long\"");
            snprintf(r->length, sizeof r->length, "%s", len->valuestring);
            p->length = r->length;
        }
        st = get_bool(body, "stream", &r->stream, e);
    } else if (skill == TYCHO_SKILL_QUERY) {
        st = get_text(body, "question", 1, &r->question, e);
        if (st == TY_OK) st = get_bool(body, "stream", &r->stream, e);
        if (st == TY_OK) st = get_bool(body, "reasoning", &p->reasoning, e);
        if (st == TY_OK && r->stream && p->reasoning)
            return request_json_fail(e, TY_E_UNSUPPORTED, "stream", "stream with reasoning is not supported: set one of them to false");
        if (st == TY_OK) st = parse_spatial_refs(r, body, e);
        p->question = r->question;
    } else if (skill == TYCHO_SKILL_DETECT || skill == TYCHO_SKILL_POINT) {
        st = get_text(body, "object", 1, &r->object, e);
        p->object = r->object;
    } else {
        return request_json_fail(e, TY_E_ARG, "skill", "this skill has no API request body");
    }
    if (st == TY_OK) st = parse_settings(body, p, e);
    if (st == TY_OK) st = parse_image(r, body, skill, o, e);
    if (st == TY_OK && p->n_spatial_refs && !p->image_bytes)
        return request_json_fail(e, TY_E_ARG, "spatial_refs", "spatial_refs need an image (image_url)");
    return st;
}

ty_status request_json_begin(request_json *r, const cJSON *body, request_json_error *e) {
    request_json_free(r);
    if (e) {
        ty_err_clear(&e->err);
        e->param[0] = '\0';
    }
    if (!cJSON_IsObject(body)) return request_json_fail(e, TY_E_ARG, "", "the request body must be a JSON object");
    return TY_OK;
}

ty_status request_json_parse(request_json *r, const cJSON *body, tycho_skill skill, const request_json_options *o,
                             request_json_error *e) {
    ty_status st = request_json_begin(r, body, e);
    if (st != TY_OK) return st;
    tycho_request_params_default(&r->params, skill);
    if (o && o->default_max_tokens > 0) r->params.max_tokens = o->default_max_tokens;
    st = parse_fields(r, body, skill, o, e);
    if (st != TY_OK) request_json_free(r);
    return st;
}

// Whether the JSON text has a \u0000 escape. cJSON would cut the string
// there without telling, so a question or base64 text could lose its tail
// silently; such bodies are refused instead. Every backslash starts an
// escape of two characters or more, so "\\u0000" (a backslash, then u0000)
// is not one.
static int has_nul_escape(const char *t, size_t len) {
    for (size_t i = 0; i + 1 < len; i++) {
        if (t[i] != '\\') continue;
        if (t[i + 1] == 'u' && i + 5 < len && !memcmp(t + i + 2, "0000", 4)) return 1;
        i++;  // skip the escaped character
    }
    return 0;
}

ty_status request_json_body_parse(const char *text, size_t len, cJSON **out, request_json_error *e) {
    // cJSON stops after the first value; anything but whitespace after it
    // makes the body invalid (its own check needs a NUL-terminated text).
    const char *end = NULL;
    cJSON *body = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    while (body && end < text + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (!body || end != text + len) {
        cJSON_Delete(body);
        *out = NULL;
        return request_json_fail(e, TY_E_FORMAT, "", "the request body is not valid JSON");
    }
    if (has_nul_escape(text, len)) {
        cJSON_Delete(body);
        *out = NULL;
        return request_json_fail(e, TY_E_ARG, "", "strings in the request must not contain \\u0000");
    }
    *out = body;
    return TY_OK;
}

ty_status request_json_parse_text(request_json *r, const char *text, size_t len, tycho_skill skill,
                                  const request_json_options *o, request_json_error *e) {
    request_json_free(r);
    cJSON *body;
    ty_status st = request_json_body_parse(text, len, &body, e);
    if (st != TY_OK) return st;
    st = request_json_parse(r, body, skill, o, e);
    cJSON_Delete(body);
    return st;
}

static const char *const skill_names[] = {"caption", "query", "detect", "point"};
_Static_assert(TYCHO_SKILL_CAPTION == 0 && TYCHO_SKILL_QUERY == 1 && TYCHO_SKILL_DETECT == 2 && TYCHO_SKILL_POINT == 3,
               "skill_names follows tycho_skill");

ty_status request_json_skill_parse(const cJSON *value, tycho_skill *out, request_json_error *e) {
    if (!value || cJSON_IsNull(value)) return request_json_fail(e, TY_E_ARG, "skill", "skill is required");
    if (cJSON_IsString(value))
        for (int i = 0; i < 4; i++)
            if (!strcmp(value->valuestring, skill_names[i])) {
                *out = (tycho_skill)i;  // the enum's first four, in this order
                return TY_OK;
            }
    return request_json_fail(e, TY_E_ARG, "skill", "skill must be \"caption\", \"query\", \"detect\" or \"point\"");
}

const char *request_json_skill_name(tycho_skill skill) {
    return (unsigned)skill < 4 ? skill_names[skill] : "encode_image";
}
