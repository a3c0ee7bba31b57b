// One Moondream API request body (docs api.md §1) parsed into tycho_request_params.
//
// Shared by the HTTP server (the skill comes from the route: POST /v1/caption,
// /query, /detect, /point) and `tycho batch` (the skill comes from a "skill"
// field of each JSONL line; see request_json_skill_parse). Everything the
// params point to (copied strings, the decoded image bytes, spatial refs) is
// owned by the request_json and lives until request_json_free; tycho_submit
// copies it all, so a caller may free the request_json right after submitting.
//
// Rules (api.md, to the letter; "null" for an optional field means "not given"):
//   image_url     data URI "data:image/<type>[;param=v]*;base64,<b64>" or raw base64;
//                 strict base64 (see base64_decode_strict). Required for caption,
//                 detect and point; optional for query (text-only query without it).
//   image         (only with request_json_options.allow_image_path: tycho batch)
//                 a file path; relative paths are resolved against base_dir.
//                 Giving both image and image_url is an error.
//   length        caption: "short" | "normal" | "long" (default normal)
//   question      query: required string, non-empty after trimming (passed on untrimmed;
//                 "trimming" removes what Python's str.strip() does, Unicode spaces included)
//   object        detect, point: required string, non-empty after trimming
//   reasoning     query: bool
//   stream        caption, query: bool; query with stream and reasoning is
//                 refused (streaming of reasoning is not supported)
//   spatial_refs  query with an image: list of [x, y] or [x_min, y_min, x_max, y_max],
//                 each in [0, 1], x_min <= x_max, y_min <= y_max; at most
//                 REQUEST_JSON_MAX_REFS
//   settings      object: temperature (number >= 0), top_p (number in (0, 1]),
//                 max_tokens (integer >= 1), max_objects (integer >= 1)
// No string may contain a \u0000 escape (C strings would end there).
// Unknown keys are ignored, and so are known keys of another skill (a detect
// body with "length" parses as if "length" were absent).
//
// Errors: TY_E_ARG for a missing field or a field of the wrong type or range,
// TY_E_FORMAT for a body that is not JSON or an image_url that is not valid
// base64, TY_E_UNSUPPORTED for a URL or a data URI tycho does not read,
// TY_E_LIMIT for an image over max_image_bytes, TY_E_IO / TY_E_NOT_FOUND for
// an image file that cannot be read. request_json_error.param names the
// offending field ("image_url", "settings.top_p", "spatial_refs[1]") for the
// server's {"error": {"param"}}; "" when no single field is at fault.
#ifndef TYCHO_API_REQUEST_JSON_H
#define TYCHO_API_REQUEST_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "io/image.h"
#include "tycho.h"

#define REQUEST_JSON_MAX_REFS 16             // the skills' limit (engine/skill.h SKILL_MAX_REFS)
#define REQUEST_JSON_DEFAULT_IMAGE_BYTES (10u << 20)  // the cloud API's 10 MB

typedef struct {
    size_t max_image_bytes;  // decoded image bytes (0: REQUEST_JSON_DEFAULT_IMAGE_BYTES)
    int allow_image_path;    // accept "image": PATH (tycho batch; never the server)
    const char *base_dir;    // where relative image paths are resolved (NULL: the working directory)
    int default_max_tokens;  // max_tokens when settings has none (0: the reference's 768); a server's choice
} request_json_options;

typedef struct {
    ty_err err;       // code and a message that names the field
    char param[64];   // the offending field, or ""
} request_json_error;

typedef struct {
    tycho_request_params params;  // ready for tycho_submit; points into the fields below
    int stream;                   // "stream": true (caption, query)
    int include_usage;            // chat: "stream_options": {"include_usage": true}
    char *question, *object;      // owned copies
    char length[8];               // "short" | "normal" | "long" | ""
    uint8_t *image;               // owned decoded image bytes (image_len of them)
    size_t image_len;
    image_rgb pixels;             // owned pixels after request_json_decode_image
    tycho_spatial_ref refs[REQUEST_JSON_MAX_REFS];
} request_json;

void request_json_init(request_json *r);
void request_json_free(request_json *r);

// Parses body (a JSON object) for skill into r (initialised; anything it held
// is freed first). On failure r holds nothing and err says why.
ty_status request_json_parse(request_json *r, const cJSON *body, tycho_skill skill, const request_json_options *o,
                             request_json_error *err);

// The same from text (len bytes; need not be NUL-terminated).
ty_status request_json_parse_text(request_json *r, const char *text, size_t len, tycho_skill skill,
                                  const request_json_options *o, request_json_error *err);

// Parses text as one JSON value (whitespace around it allowed, nothing else);
// TY_E_FORMAT (param "") otherwise. Free *out with cJSON_Delete.
ty_status request_json_body_parse(const char *text, size_t len, cJSON **out, request_json_error *err);

// An OpenAI chat completion body (api.md §2) as a query, for the server's
// POST /v1/chat/completions. The question is the text of the last user
// message (its text parts joined by "\n"); the image is the last image_url
// part of that message or, when it has none, of the latest earlier user
// message that has one (a follow-up question about the same picture); more
// than one image in the last user message is an error. System, developer,
// assistant and tool messages are allowed and not used. Fields:
//   messages             required: [{"role", "content": str | [{"type": "text", "text"} |
//                        {"type": "image_url", "image_url": {"url"} | url}]}]
//   max_completion_tokens | max_tokens, temperature, top_p, stream: as the query's settings
//   seed                 integer in [0, 2^53] (params.seed)
//   stream_options       {"include_usage": bool} (include_usage)
//   n                    1 if given; model: a string if given (not used)
// Unknown keys are ignored. Errors name the chat's fields: "messages",
// "messages[2].content[1]", "max_tokens", "temperature", ... (a bad image
// or an empty question: "messages").
ty_status request_json_parse_chat(request_json *r, const cJSON *body, const request_json_options *o,
                                  request_json_error *err);

// Decodes the image bytes into pixels on the calling thread, bounded by
// max_pixels (width * height from the file's header, checked before any pixel
// is decoded; <= 0: the image module's default), frees the encoded bytes and
// points the params at the pixels (image_rgb, image_width, image_height).
// The server does this so it can bound pixels below the engine's own limit
// and say which field is at fault. TY_E_FORMAT / TY_E_UNSUPPORTED for bytes
// that are not a readable image, TY_E_LIMIT over max_pixels (param
// "image_url"). Does nothing for a request without image bytes.
ty_status request_json_decode_image(request_json *r, int64_t max_pixels, request_json_error *err);

// "caption" | "query" | "detect" | "point" -> skill. TY_E_ARG (param "skill") otherwise.
ty_status request_json_skill_parse(const cJSON *value, tycho_skill *out, request_json_error *err);
const char *request_json_skill_name(tycho_skill skill);

// Strict base64 (RFC 4648 §4, standard alphabet): the length is a multiple of
// 4, '=' only as one or two final padding characters, the unused bits of the
// last character zero (one canonical text per byte string), no whitespace or
// line breaks, no URL-safe alphabet. Writes at most out_cap bytes.
// Returns TY_OK with *out_len, TY_E_FORMAT (message says where), or TY_E_LIMIT
// when the decoded size exceeds out_cap.
ty_status base64_decode_strict(const char *in, size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len,
                               ty_err *err);
// Decoded size of a base64 text of in_len characters whose last two are
// given (an upper bound when the text is invalid).
size_t base64_decoded_size(const char *in, size_t in_len);

// Records code, the offending field (NULL: none) and a message in e (may be
// NULL); returns code. Shared by the Moondream and the OpenAI chat parsers.
ty_status request_json_fail(request_json_error *e, ty_status code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
// The start of both parsers: frees r, clears e, and fails unless body is a
// JSON object.
ty_status request_json_begin(request_json *r, const cJSON *body, request_json_error *e);

#endif
