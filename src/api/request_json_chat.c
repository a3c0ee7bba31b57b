// OpenAI chat completion bodies -> a query (see request_json.h,
// request_json_parse_chat, for the rules). The chat is rewritten as a
// Moondream query body and parsed by request_json_parse, so both APIs check
// their fields the same way; errors then name the chat's fields.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/request_json.h"

static const cJSON *chat_field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNull(v) ? NULL : v;
}

// The question: the text parts of the last user message, joined by "\n".
typedef struct {
    char *s;
    size_t len, cap;
    int parts, oom;
} chat_text;

static void chat_text_add(chat_text *t, const char *s) {
    size_t n = strlen(s), sep = t->parts++ ? 1 : 0;
    if (t->oom) return;
    if (t->len + sep + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 64;
        while (cap < t->len + sep + n + 1) cap *= 2;
        char *p = realloc(t->s, cap);
        if (!p) {
            t->oom = 1;
            return;
        }
        t->s = p;
        t->cap = cap;
    }
    if (sep) t->s[t->len++] = '\n';
    memcpy(t->s + t->len, s, n + 1);
    t->len += n;
}

// One user message's content (a string or a list of parts): its text into
// question (when given), its last image URL into *image, its images counted.
static ty_status chat_content(const cJSON *content, int idx, chat_text *question, const char **image, int *n_images,
                              request_json_error *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%d].content", idx);
    if (!content) return TY_OK;
    if (cJSON_IsString(content)) {
        if (question) chat_text_add(question, content->valuestring);
        return TY_OK;
    }
    if (!cJSON_IsArray(content)) return request_json_fail(e, TY_E_ARG, param, "%s must be a string or a list of parts", param);
    int j = 0;
    for (const cJSON *part = content->child; part; part = part->next, j++) {
        snprintf(param, sizeof param, "messages[%d].content[%d]", idx, j);
        const cJSON *type = chat_field(part, "type");
        if (!cJSON_IsObject(part) || !cJSON_IsString(type))
            return request_json_fail(e, TY_E_ARG, param, "%s must be an object with a \"type\"", param);
        if (!strcmp(type->valuestring, "text")) {
            const cJSON *t = chat_field(part, "text");
            if (!cJSON_IsString(t)) return request_json_fail(e, TY_E_ARG, param, "%s: \"text\" must be a string", param);
            if (question) chat_text_add(question, t->valuestring);
        } else if (!strcmp(type->valuestring, "image_url")) {
            const cJSON *iu = chat_field(part, "image_url");
            const cJSON *url = cJSON_IsObject(iu) ? chat_field(iu, "url") : iu;
            if (!cJSON_IsString(url)) return request_json_fail(e, TY_E_ARG, param, "%s: image_url.url must be a string", param);
            *image = url->valuestring;
            (*n_images)++;
        } else {
            return request_json_fail(e, TY_E_UNSUPPORTED, param,
                             "%s: content parts of type \"%.40s\" are not supported (text, image_url)", param,
                             type->valuestring);
        }
    }
    return TY_OK;
}

static ty_status chat_messages(const cJSON *body, chat_text *question, const char **image, request_json_error *e) {
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool"};
    const cJSON *msgs = chat_field(body, "messages");
    if (!cJSON_IsArray(msgs) || !msgs->child) return request_json_fail(e, TY_E_ARG, "messages", "messages must be a non-empty list");
    int i = 0, last_user = -1;
    char param[64];
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        snprintf(param, sizeof param, "messages[%d]", i);
        const cJSON *role = chat_field(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role))
            return request_json_fail(e, TY_E_ARG, param, "%s must be an object with a \"role\"", param);
        int known = 0;
        for (int k = 0; k < 5; k++) known |= !strcmp(role->valuestring, roles[k]);
        if (!known) return request_json_fail(e, TY_E_ARG, param, "%s: unknown role \"%.40s\"", param, role->valuestring);
        const cJSON *content = chat_field(m, "content");
        if (content && !cJSON_IsString(content) && !cJSON_IsArray(content)) {
            snprintf(param, sizeof param, "messages[%d].content", i);
            return request_json_fail(e, TY_E_ARG, param, "%s must be a string or a list of parts", param);
        }
        if (!strcmp(role->valuestring, "user")) last_user = i;
    }
    if (last_user < 0) return request_json_fail(e, TY_E_ARG, "messages", "messages needs a user message");
    i = 0;
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        if (strcmp(chat_field(m, "role")->valuestring, "user")) continue;
        const char *img = NULL;
        int n_images = 0;
        ty_status st = chat_content(chat_field(m, "content"), i, i == last_user ? question : NULL, &img, &n_images, e);
        if (st != TY_OK) return st;
        if (i == last_user && n_images > 1) {
            snprintf(param, sizeof param, "messages[%d].content", i);
            return request_json_fail(e, TY_E_ARG, param, "%s: one image per request (got %d)", param, n_images);
        }
        if (img) *image = img;
    }
    return question->oom ? request_json_fail(e, TY_E_NOMEM, "messages", "messages: out of memory") : TY_OK;
}

// The sampling fields go into the query body (request_json checks them);
// the chat's own fields are checked here.
static ty_status chat_settings(const cJSON *body, cJSON *md, int *has_seed, uint64_t *seed, int *include_usage,
                               request_json_error *e) {
    cJSON *settings = cJSON_AddObjectToObject(md, "settings");
    if (!settings) return request_json_fail(e, TY_E_NOMEM, "", "out of memory");
    const cJSON *v;
    if ((v = chat_field(body, "temperature"))) cJSON_AddItemToObject(settings, "temperature", cJSON_Duplicate(v, 1));
    if ((v = chat_field(body, "top_p"))) cJSON_AddItemToObject(settings, "top_p", cJSON_Duplicate(v, 1));
    if ((v = chat_field(body, "max_completion_tokens")) || (v = chat_field(body, "max_tokens")))
        cJSON_AddItemToObject(settings, "max_tokens", cJSON_Duplicate(v, 1));
    if ((v = chat_field(body, "stream"))) cJSON_AddItemToObject(md, "stream", cJSON_Duplicate(v, 1));
    if ((v = chat_field(body, "model")) && !cJSON_IsString(v))
        return request_json_fail(e, TY_E_ARG, "model", "model must be a string");
    if ((v = chat_field(body, "n")) && !(cJSON_IsNumber(v) && v->valuedouble == 1))
        return request_json_fail(e, TY_E_UNSUPPORTED, "n", "only n = 1 is supported");
    if ((v = chat_field(body, "seed"))) {
        // Integers JSON numbers carry exactly (up to 2^53).
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 9007199254740992.0) ||
            v->valuedouble != floor(v->valuedouble))
            return request_json_fail(e, TY_E_ARG, "seed", "seed must be an integer between 0 and 2^53");
        *has_seed = 1;
        *seed = (uint64_t)v->valuedouble;
    }
    if ((v = chat_field(body, "stream_options"))) {
        const cJSON *u = cJSON_IsObject(v) ? chat_field(v, "include_usage") : NULL;
        if (!cJSON_IsObject(v) || (u && !cJSON_IsBool(u)))
            return request_json_fail(e, TY_E_ARG, "stream_options", "stream_options must be an object; include_usage a boolean");
        *include_usage = cJSON_IsTrue(u);
    }
    return TY_OK;
}

// request_json names the query's fields; say the chat's instead.
static void chat_rename_param(request_json_error *e) {
    if (!e) return;
    if (!strcmp(e->param, "question") || !strcmp(e->param, "image_url")) snprintf(e->param, sizeof e->param, "messages");
    else if (!strncmp(e->param, "settings.", 9)) memmove(e->param, e->param + 9, strlen(e->param + 9) + 1);
}

ty_status request_json_parse_chat(request_json *r, const cJSON *body, const request_json_options *o,
                                  request_json_error *e) {
    ty_status begun = request_json_begin(r, body, e);
    if (begun != TY_OK) return begun;
    chat_text question = {0};
    const char *image = NULL;
    int has_seed = 0, include_usage = 0;
    uint64_t seed = 0;
    cJSON *md = cJSON_CreateObject();
    ty_status st = md ? chat_messages(body, &question, &image, e) : request_json_fail(e, TY_E_NOMEM, "", "out of memory");
    if (st == TY_OK) st = chat_settings(body, md, &has_seed, &seed, &include_usage, e);
    if (st == TY_OK) {
        cJSON_AddItemToObject(md, "question", cJSON_CreateString(question.s ? question.s : ""));
        if (image) cJSON_AddItemToObject(md, "image_url", cJSON_CreateStringReference(image));  // no copy of the base64
        st = request_json_parse(r, md, TYCHO_SKILL_QUERY, o, e);
        if (st != TY_OK) chat_rename_param(e);
    }
    if (st == TY_OK) {
        r->params.seed = seed;
        r->params.has_seed = has_seed;
        r->include_usage = include_usage;
    }
    cJSON_Delete(md);
    free(question.s);
    return st;
}
