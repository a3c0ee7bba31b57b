// libFuzzer target for OpenAI chat completion bodies as queries
// (request_json_parse_chat, src/api/request_json_chat.c): arbitrary bytes as
// the body of POST /v1/chat/completions. Whatever parses must be a valid
// query; whatever fails must leave nothing owned behind and name a chat field.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/request_json.h"

static int blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && (*s < '\t' || *s > '\r')) return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *body = NULL;
    request_json_error e;
    request_json r;
    request_json_init(&r);
    if (request_json_body_parse((const char *)data, size, &body, &e) != TY_OK) return 0;
    request_json_options o = {.default_max_tokens = 1 + (int)(size % 100)};
    if (request_json_parse_chat(&r, body, &o, &e) == TY_OK) {
        const tycho_request_params *p = &r.params;
        if (p->skill != TYCHO_SKILL_QUERY || !p->question || blank(p->question)) abort();
        if (p->image_bytes != r.image || p->image_len != r.image_len || (r.image && !r.image_len)) abort();
        if (!(p->temperature >= 0) || !isfinite(p->temperature) || !(p->top_p > 0 && p->top_p <= 1)) abort();
        if (p->max_tokens < 1 || (r.include_usage != 0 && r.include_usage != 1)) abort();
        if (p->has_seed && p->seed > (1ull << 53)) abort();
    } else {
        if (e.err.code == TY_OK || !e.err.msg[0] || r.image || r.question) abort();
        static const char *const params[] = {"", "messages", "temperature", "top_p", "max_tokens", "stream", "n",
                                             "seed", "model", "stream_options"};
        int known = !strncmp(e.param, "messages[", 9);
        for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) known |= !strcmp(e.param, params[i]);
        if (!known) abort();
    }
    request_json_free(&r);
    cJSON_Delete(body);
    return 0;
}
