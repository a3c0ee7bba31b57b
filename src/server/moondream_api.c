// The Moondream API (docs api.md §1): POST /v1/caption | query | detect |
// point. Bodies are parsed by api/request_json (the rules of api.md, shared
// with `tycho batch`); results are tycho_request_json's body ({"caption"} |
// {"answer", "reasoning"?} | {"objects"} | {"points"} with "finish_reason"
// and "metrics"). Streams (caption, query with "stream": true) send
// {"chunk", "completed": false} events and a last {"chunk": "", "completed":
// true, ...the whole body} or {"error": {...}, "completed": true}.
#include <string.h>

#include "api/request_json.h"
#include "server/server_impl.h"

static void md_on_text(void *user, const char *text, size_t len) {
    sse_push_text(user, "{\"chunk\":", text, len, ",\"completed\":false}");
}

// The status of a body that cannot be run: too big an image is 413, the rest 400.
static int md_parse_status(ty_status st) {
    if (st == TY_E_LIMIT) return 413;
    if (st == TY_E_NOMEM) return 503;
    return 400;
}

enum MHD_Result md_handle(srv_req *q) {
    server *s = q->s;
    tycho_skill skill = (tycho_skill)q->route;  // the four skill routes come first, in skill order
    request_json rj;
    request_json_init(&rj);
    request_json_error e;
    request_json_options ro = {.max_image_bytes = s->o.max_image_bytes, .default_max_tokens = s->o.default_max_tokens};
    ty_status st = request_json_parse_text(&rj, q->body ? q->body : "", q->body_len, skill, &ro, &e);
    if (st == TY_OK) st = request_json_decode_image(&rj, s->o.max_image_pixels, &e);
    enum MHD_Result ret;
    if (st != TY_OK) {
        ret = srv_fail(q, md_parse_status(st), ty_status_name(st), e.param, "%s", e.err.msg);
    } else {
        q->api = API_MOONDREAM;
        q->stream = rj.stream;
        if (q->stream) {
            rj.params.on_text = md_on_text;
            rj.params.user = q;
        }
        ret = srv_submit(q, &rj.params);
    }
    request_json_free(&rj);
    return ret;
}

enum MHD_Result md_finish(srv_req *q) {
    tycho_error te;
    if (tycho_wait(q->tr, 0, &te) == TYCHO_OK) {
        char *body = tycho_request_json(q->tr, 1);
        if (!body) return srv_fail(q, 503, "out_of_memory", NULL, "out of memory");
        enum MHD_Result ret = srv_respond(q, 200, "application/json", body, strlen(body));
        tycho_free(body);
        return ret;
    }
    const char *code;
    int status = srv_end_error(q, &te, &code);
    return srv_fail(q, status, code, NULL, "%s", te.message);
}

void md_stream_end(srv_req *q) {
    tycho_error te;
    if (tycho_wait(q->tr, 0, &te) == TYCHO_OK) {
        // {"chunk": "", "completed": true, then the body's own fields}: spliced
        // as text so the numbers stay as the engine printed them.
        char *body = tycho_request_json(q->tr, 1);
        if (body && body[0] == '{') {
            srv_buf_puts(&q->out, "data: {\"chunk\":\"\",\"completed\":true");
            if (body[1] != '}') srv_buf_puts(&q->out, ",");
            srv_buf_puts(&q->out, body + 1);
            srv_buf_puts(&q->out, "\n\n");
        } else {
            q->out.oom = 1;
        }
        tycho_free(body);
        return;
    }
    const char *code;
    int status = srv_end_error(q, &te, &code);
    srv_buf_puts(&q->out, "data: {\"error\":");
    srv_error_json(&q->out, status, code, NULL, te.message);
    srv_buf_puts(&q->out, ",\"completed\":true}\n\n");
}
