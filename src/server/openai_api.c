// The OpenAI-style chat API (docs api.md §2): POST /v1/chat/completions and
// GET /v1/models, so the OpenAI SDKs and Open WebUI-style tools work.
//
// A chat maps to the query skill: the question is the text of the last user
// message (its text parts joined by "\n"), the image the last image_url part
// of that message, or else of the latest earlier user message that has one
// (a follow-up question about the same picture). System, developer and
// assistant turns are accepted and not used: Moondream answers one question
// about one image. The request is turned into a Moondream query body and
// parsed by api/request_json, so both APIs check fields the same way.
// Fields: messages (required), max_tokens | max_completion_tokens,
// temperature, top_p, stream, stream_options.include_usage, seed, n (1 only),
// model (any string; answered with the server's model name).
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/request_json.h"
#include "server/server_impl.h"

typedef struct {
    char param[64];
    char msg[400];
} oa_err;

static int oa_fail(oa_err *e, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int oa_fail(oa_err *e, const char *param, const char *fmt, ...) {
    snprintf(e->param, sizeof e->param, "%s", param);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static const cJSON *oa_field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNull(v) ? NULL : v;
}

// The chat's options besides the query body.
typedef struct {
    int include_usage;
    int has_seed;
    uint64_t seed;
} oa_opts;

// One message's content: appends its text parts to question (when given) and
// sets *image to its last image URL; counts its images in *n_images.
static int oa_content(const cJSON *content, int idx, srv_buf *question, const char **image, int *n_images, oa_err *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%d].content", idx);
    if (!content) return 0;
    if (cJSON_IsString(content)) {
        if (question) srv_buf_puts(question, content->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(content)) return oa_fail(e, param, "%s must be a string or a list of parts", param);
    int j = 0, texts = 0;
    for (const cJSON *part = content->child; part; part = part->next, j++) {
        snprintf(param, sizeof param, "messages[%d].content[%d]", idx, j);
        const cJSON *type = oa_field(part, "type");
        if (!cJSON_IsObject(part) || !cJSON_IsString(type))
            return oa_fail(e, param, "%s must be an object with a \"type\"", param);
        if (!strcmp(type->valuestring, "text")) {
            const cJSON *t = oa_field(part, "text");
            if (!cJSON_IsString(t)) return oa_fail(e, param, "%s: \"text\" must be a string", param);
            if (question && texts++) srv_buf_puts(question, "\n");
            if (question) srv_buf_puts(question, t->valuestring);
        } else if (!strcmp(type->valuestring, "image_url")) {
            const cJSON *iu = oa_field(part, "image_url");
            const cJSON *url = cJSON_IsObject(iu) ? oa_field(iu, "url") : iu;
            if (!cJSON_IsString(url)) return oa_fail(e, param, "%s: image_url.url must be a string", param);
            *image = url->valuestring;
            (*n_images)++;
        } else {
            return oa_fail(e, param, "%s: content parts of type \"%.40s\" are not supported (text, image_url)", param,
                           type->valuestring);
        }
    }
    return 0;
}

// Finds the question and the image in messages.
static int oa_messages(const cJSON *body, srv_buf *question, const char **image, oa_err *e) {
    const cJSON *msgs = oa_field(body, "messages");
    if (!cJSON_IsArray(msgs) || !msgs->child) return oa_fail(e, "messages", "messages must be a non-empty list");
    int i = 0, last_user = -1;
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        char param[40];
        snprintf(param, sizeof param, "messages[%d]", i);
        const cJSON *role = oa_field(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role))
            return oa_fail(e, param, "%s must be an object with a \"role\"", param);
        static const char *const roles[] = {"system", "developer", "user", "assistant", "tool"};
        int known = 0;
        for (int k = 0; k < 5; k++) known |= !strcmp(role->valuestring, roles[k]);
        if (!known) return oa_fail(e, param, "%s: unknown role \"%.40s\"", param, role->valuestring);
        if (!strcmp(role->valuestring, "user")) last_user = i;
    }
    if (last_user < 0) return oa_fail(e, "messages", "messages needs a user message");
    i = 0;
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        const cJSON *content = oa_field(m, "content");
        if (strcmp(oa_field(m, "role")->valuestring, "user")) {
            if (content && !cJSON_IsString(content) && !cJSON_IsArray(content)) {
                char param[48];
                snprintf(param, sizeof param, "messages[%d].content", i);
                return oa_fail(e, param, "%s must be a string or a list of parts", param);
            }
            continue;
        }
        const char *img = NULL;
        int n_images = 0;
        if (oa_content(content, i, i == last_user ? question : NULL, &img, &n_images, e)) return -1;
        if (i == last_user && n_images > 1) {
            char param[48];
            snprintf(param, sizeof param, "messages[%d].content", i);
            return oa_fail(e, param, "%s: one image per request (got %d)", param, n_images);
        }
        if (img) *image = img;
    }
    return 0;
}

// Copies the chat's sampling fields into a Moondream query body (request_json
// checks their types and ranges) and reads the rest into o.
static int oa_settings(const cJSON *body, cJSON *md, oa_opts *o, oa_err *e) {
    cJSON *settings = cJSON_AddObjectToObject(md, "settings");
    const cJSON *v;
    if ((v = oa_field(body, "temperature"))) cJSON_AddItemToObject(settings, "temperature", cJSON_Duplicate(v, 1));
    if ((v = oa_field(body, "top_p"))) cJSON_AddItemToObject(settings, "top_p", cJSON_Duplicate(v, 1));
    if ((v = oa_field(body, "max_completion_tokens")) || (v = oa_field(body, "max_tokens")))
        cJSON_AddItemToObject(settings, "max_tokens", cJSON_Duplicate(v, 1));
    if ((v = oa_field(body, "stream"))) cJSON_AddItemToObject(md, "stream", cJSON_Duplicate(v, 1));
    if ((v = oa_field(body, "model")) && !cJSON_IsString(v)) return oa_fail(e, "model", "model must be a string");
    if ((v = oa_field(body, "n")) && !(cJSON_IsNumber(v) && v->valuedouble == 1))
        return oa_fail(e, "n", "only n = 1 is supported");
    if ((v = oa_field(body, "seed"))) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
            v->valuedouble != floor(v->valuedouble))
            return oa_fail(e, "seed", "seed must be an integer >= 0");
        o->has_seed = 1;
        o->seed = (uint64_t)v->valuedouble;
    }
    if ((v = oa_field(body, "stream_options"))) {
        const cJSON *u = cJSON_IsObject(v) ? oa_field(v, "include_usage") : NULL;
        if (!cJSON_IsObject(v) || (u && !cJSON_IsBool(u)))
            return oa_fail(e, "stream_options", "stream_options must be an object; include_usage a boolean");
        o->include_usage = cJSON_IsTrue(u);
    }
    return 0;
}

// request_json names Moondream fields; say the chat's instead.
static const char *oa_param(const char *md_param) {
    if (!strcmp(md_param, "question") || !strcmp(md_param, "image_url")) return "messages";
    if (!strncmp(md_param, "settings.", 9)) return md_param + 9;
    return md_param;
}

static void oa_on_text(void *user, const char *text, size_t len) {
    srv_req *q = user;
    sse_push_text(q, q->chunk_prefix, text, len, "},\"logprobs\":null,\"finish_reason\":null}]}");
}

// {"id", "object", "created", "model" of a chunk or a completion, without the closing brace.
static void oa_head(srv_buf *b, const srv_req *q, const char *object) {
    char t[160];
    snprintf(t, sizeof t, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", q->id, object, q->created);
    srv_buf_puts(b, t);
    srv_buf_json_string(b, q->s->model_name, strlen(q->s->model_name));
}

static void oa_usage(srv_buf *b, const srv_req *q) {
    tycho_metrics m;
    tycho_request_metrics(q->tr, &m);
    char t[160];
    snprintf(t, sizeof t, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}",
             m.input_tokens, m.output_tokens, m.input_tokens + m.output_tokens);
    srv_buf_puts(b, t);
}

// Sets up q for the chat's answer: id, stream chunks' prefix, the first (role) chunk.
static int oa_prepare(srv_req *q, int stream) {
    server *s = q->s;
    snprintf(q->id, sizeof q->id, "chatcmpl-%016llx", (unsigned long long)atomic_fetch_add(&s->next_id, 1));
    q->created = (long long)time(NULL);
    q->api = API_OPENAI;
    q->stream = stream;
    if (!stream) return 0;
    srv_buf b = {0};
    oa_head(&b, q, "chat.completion.chunk");
    srv_buf_puts(&b, ",\"choices\":[{\"index\":0,\"delta\":{\"content\":");
    if (b.oom) {
        srv_buf_free(&b);
        return -1;
    }
    q->chunk_prefix = b.data;  // owned by q now
    pthread_mutex_lock(&q->mu);
    srv_buf_puts(&q->out, "data: ");
    oa_head(&q->out, q, "chat.completion.chunk");
    srv_buf_puts(&q->out, ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                          "\"logprobs\":null,\"finish_reason\":null}]}\n\n");
    pthread_mutex_unlock(&q->mu);
    return 0;
}

enum MHD_Result oa_handle_chat(srv_req *q) {
    server *s = q->s;
    request_json_error je;
    cJSON *body = NULL, *md = NULL;
    srv_buf question = {0};
    request_json rj;
    request_json_init(&rj);
    enum MHD_Result ret;
    if (request_json_body_parse(q->body ? q->body : "", q->body_len, &body, &je) != TY_OK) {
        ret = srv_fail(q, 400, ty_status_name(je.err.code), NULL, "%s", je.err.msg);
        goto done;
    }
    oa_err e = {0};
    oa_opts o = {0};
    const char *image = NULL;
    md = cJSON_CreateObject();
    if (!cJSON_IsObject(body)) {
        ret = srv_fail(q, 400, "invalid_argument", NULL, "the request body must be a JSON object");
        goto done;
    }
    if (!md || oa_messages(body, &question, &image, &e) || oa_settings(body, md, &o, &e)) {
        ret = md ? srv_fail(q, 400, "invalid_argument", e.param, "%s", e.msg) : MHD_NO;
        goto done;
    }
    cJSON_AddItemToObject(md, "question", cJSON_CreateString(question.data ? question.data : ""));
    if (image) cJSON_AddItemToObject(md, "image_url", cJSON_CreateStringReference(image));  // no copy of the base64
    request_json_options ro = {.max_image_bytes = s->o.max_image_bytes, .default_max_tokens = s->o.default_max_tokens};
    ty_status st = request_json_parse(&rj, md, TYCHO_SKILL_QUERY, &ro, &je);
    if (st == TY_OK) st = request_json_decode_image(&rj, s->o.max_image_pixels, &je);
    if (st != TY_OK) {
        int status = st == TY_E_LIMIT ? 413 : st == TY_E_NOMEM ? 503 : 400;
        ret = srv_fail(q, status, ty_status_name(st), oa_param(je.param), "%s", je.err.msg);
        goto done;
    }
    if (o.has_seed) {
        rj.params.seed = o.seed;
        rj.params.has_seed = 1;
    }
    q->include_usage = o.include_usage;
    if (oa_prepare(q, rj.stream)) {
        ret = srv_fail(q, 503, "out_of_memory", NULL, "out of memory");
        goto done;
    }
    if (q->stream) {
        rj.params.on_text = oa_on_text;
        rj.params.user = q;
    }
    ret = srv_submit(q, &rj.params);
done:
    request_json_free(&rj);
    cJSON_Delete(md);
    cJSON_Delete(body);
    srv_buf_free(&question);
    return ret;
}

enum MHD_Result oa_finish(srv_req *q) {
    tycho_error te;
    if (tycho_wait(q->tr, 0, &te) != TYCHO_OK) {
        const char *code;
        int status = srv_end_error(q, &te, &code);
        return srv_fail(q, status, code, NULL, "%s", te.message);
    }
    srv_buf b = {0};
    const char *text = tycho_request_text(q->tr);
    oa_head(&b, q, "chat.completion");
    srv_buf_puts(&b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    srv_buf_json_string(&b, text, strlen(text));
    srv_buf_puts(&b, "},\"logprobs\":null,\"finish_reason\":\"");
    srv_buf_puts(&b, tycho_request_finish_reason(q->tr));
    srv_buf_puts(&b, "\"}],");
    oa_usage(&b, q);
    srv_buf_puts(&b, "}");
    enum MHD_Result ret = b.oom ? srv_fail(q, 503, "out_of_memory", NULL, "out of memory")
                                : srv_respond(q, 200, "application/json", b.data, b.len);
    srv_buf_free(&b);
    return ret;
}

void oa_stream_end(srv_req *q) {
    tycho_error te;
    srv_buf *b = &q->out;
    if (tycho_wait(q->tr, 0, &te) == TYCHO_OK) {
        srv_buf_puts(b, "data: ");
        oa_head(b, q, "chat.completion.chunk");
        srv_buf_puts(b, ",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"");
        srv_buf_puts(b, tycho_request_finish_reason(q->tr));
        srv_buf_puts(b, "\"}]}\n\n");
        if (q->include_usage) {
            srv_buf_puts(b, "data: ");
            oa_head(b, q, "chat.completion.chunk");
            srv_buf_puts(b, ",\"choices\":[],");
            oa_usage(b, q);
            srv_buf_puts(b, "}\n\n");
        }
    } else {
        const char *code;
        int status = srv_end_error(q, &te, &code);
        srv_buf_puts(b, "data: {\"error\":");
        srv_error_json(b, status, code, NULL, te.message);
        srv_buf_puts(b, "}\n\n");
    }
    srv_buf_puts(b, "data: [DONE]\n\n");
}

enum MHD_Result oa_handle_models(srv_req *q) {
    srv_buf b = {0};
    srv_buf_puts(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
    srv_buf_json_string(&b, q->s->model_name, strlen(q->s->model_name));
    srv_buf_puts(&b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"tycho\"}]}");
    enum MHD_Result ret = b.oom ? MHD_NO : srv_respond(q, 200, "application/json", b.data, b.len);
    srv_buf_free(&b);
    return ret;
}
