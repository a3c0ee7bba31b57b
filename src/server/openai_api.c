// The OpenAI-style chat API (docs api.md §2): POST /v1/chat/completions and
// GET /v1/models, so the OpenAI SDKs and Open WebUI-style tools work.
//
// A chat maps to the query skill (api/request_json_parse_chat says how:
// the last user message's text and image). Answers are chat.completion
// objects, or chat.completion.chunk events ending with "data: [DONE]"; the
// model is always the server's model name.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/request_json.h"
#include "server/server_impl.h"

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
    request_json_error e;
    cJSON *body = NULL;
    request_json rj;
    request_json_init(&rj);
    request_json_options ro = {.max_image_bytes = s->o.max_image_bytes, .default_max_tokens = s->o.default_max_tokens};
    ty_status st = request_json_body_parse(q->body ? q->body : "", q->body_len, &body, &e);
    if (st == TY_OK) st = request_json_parse_chat(&rj, body, &ro, &e);
    if (st == TY_OK) st = request_json_decode_image(&rj, s->o.max_image_pixels, &e);
    enum MHD_Result ret;
    if (st != TY_OK) {
        if (!strcmp(e.param, "image_url")) snprintf(e.param, sizeof e.param, "messages");
        int status = st == TY_E_LIMIT ? 413 : st == TY_E_NOMEM ? 503 : 400;
        ret = srv_fail(q, status, ty_status_name(st), e.param, "%s", e.err.msg);
    } else if (oa_prepare(q, rj.stream)) {
        ret = srv_fail(q, 503, "out_of_memory", NULL, "out of memory");
    } else {
        q->include_usage = rj.include_usage;
        if (q->stream) {
            rj.params.on_text = oa_on_text;
            rj.params.user = q;
        }
        ret = srv_submit(q, &rj.params);
    }
    request_json_free(&rj);
    cJSON_Delete(body);
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
