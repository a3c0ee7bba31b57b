// tycho caption | query | detect | point: one request through the model.
//
//   tycho caption --model M IMAGE [--length short|normal|long]
//   tycho query   --model M [IMAGE] --question TEXT [--reasoning] [--spatial-ref x,y | x1,y1,x2,y2 ...]
//   tycho detect  --model M IMAGE --object NAME [--max-objects N] [--draw OUT.png]
//   tycho point   --model M IMAGE --object NAME [--max-objects N] [--draw OUT.png]
//   common: --max-tokens N --temperature T --top-p P --seed S --threads N --stream --json
//
// Plain output is the text (or one object per line); --json prints the
// reference's return value plus finish_reason and metrics.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "cli/cli.h"
#include "core/json.h"
#include "engine/generate.h"
#include "io/hub.h"
#include "io/image_draw.h"

typedef struct {
    const char *cmd, *model, *image, *draw;
    int threads, stream, json;
    skill_params p;
} skill_args;

static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_float(const char *s, float *out) {
    char *end;
    float v = strtof(s, &end);
    if (!*s || *end) return -1;
    *out = v;
    return 0;
}

static int parse_ref(const char *s, spatial_ref *r) {
    r->n = 0;
    const char *p = s;
    while (*p && r->n < 4) {
        char *end;
        r->v[r->n++] = strtod(p, &end);
        if (end == p) return -1;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return (*p || (r->n != 2 && r->n != 4)) ? -1 : 0;
}

// Returns 0 on success, else the exit status after printing one error line.
static int parse_args(int argc, char **argv, skill_args *a) {
    const char *c = a->cmd;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        int bad = 0;
        if (!strcmp(o, "--stream")) {
            a->stream = 1;
            continue;
        } else if (!strcmp(o, "--json")) {
            a->json = 1;
            continue;
        } else if (!strcmp(o, "--reasoning")) {
            a->p.reasoning = 1;
            continue;
        } else if (o[0] != '-' || !o[1]) {
            if (a->image) {
                fprintf(stderr, "tycho %s: more than one image given ('%s')\n", c, o);
                return 2;
            }
            a->image = o;
            continue;
        }
        if (!v) {
            fprintf(stderr, "tycho %s: %s needs a value\n", c, o);
            return 2;
        }
        i++;
        if (!strcmp(o, "--model")) a->model = v;
        else if (!strcmp(o, "--draw") && (a->p.kind == SKILL_DETECT || a->p.kind == SKILL_POINT)) a->draw = v;
        else if (!strcmp(o, "--question")) a->p.question = v;
        else if (!strcmp(o, "--object")) a->p.object = v;
        else if (!strcmp(o, "--length")) {
            if (!strcmp(v, "short")) a->p.length = CAPTION_SHORT;
            else if (!strcmp(v, "normal")) a->p.length = CAPTION_NORMAL;
            else if (!strcmp(v, "long")) a->p.length = CAPTION_LONG;
            else bad = 1;
        } else if (!strcmp(o, "--max-tokens")) bad = parse_long(v, -1000000, 1000000, &n) || (a->p.max_tokens = (int)n, 0);
        else if (!strcmp(o, "--max-objects")) bad = parse_long(v, -1000000, 1000000, &n) || (a->p.max_objects = (int)n, 0);
        else if (!strcmp(o, "--threads")) bad = parse_long(v, 1, 1024, &n) || (a->threads = (int)n, 0);
        else if (!strcmp(o, "--seed")) bad = parse_long(v, 0, 0x7fffffffffffffffL, &n) || (a->p.seed = (uint64_t)n, 0);
        else if (!strcmp(o, "--temperature")) bad = parse_float(v, &a->p.temperature);
        else if (!strcmp(o, "--top-p")) bad = parse_float(v, &a->p.top_p);
        else if (!strcmp(o, "--spatial-ref")) {
            if (a->p.n_refs >= SKILL_MAX_REFS) {
                fprintf(stderr, "tycho %s: at most %d --spatial-ref\n", c, SKILL_MAX_REFS);
                return 2;
            }
            bad = parse_ref(v, &a->p.refs[a->p.n_refs++]);
        } else {
            fprintf(stderr, "tycho %s: unknown option %s (tycho --help lists them)\n", c, o);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "tycho %s: invalid value '%s' for %s\n", c, v, o);
            return 2;
        }
    }
    if (!a->model) {
        fprintf(stderr, "tycho %s: --model is required\n", c);
        return 2;
    }
    if (!a->image && a->p.kind != SKILL_QUERY) {
        fprintf(stderr, "tycho %s: an IMAGE is required\n", c);
        return 2;
    }
    return 0;
}

static void print_chunk(void *user, const char *text, size_t len) {
    fwrite(text, 1, len, stdout);
    fflush(stdout);
}

static const char *finish_name(finish_reason f) {
    switch (f) {
    case FINISH_STOP: return "stop";
    case FINISH_LENGTH: return "length";
    case FINISH_CANCELLED: return "cancelled";
    case FINISH_ERROR: return "error";
    default: return "none";
    }
}

static void print_json(const skill_args *a, const skill_request *r, const generate_stats *st) {
    cJSON *o = cJSON_CreateObject();
    if (a->p.kind == SKILL_CAPTION) cJSON_AddStringToObject(o, "caption", skill_text(r));
    if (a->p.kind == SKILL_QUERY) {
        if (skill_reasoning(r)) {
            cJSON *re = cJSON_AddObjectToObject(o, "reasoning");
            cJSON_AddStringToObject(re, "text", skill_reasoning(r));
            cJSON *g = cJSON_AddArrayToObject(re, "grounding");
            for (int i = 0; i < skill_grounding_count(r); i++) {
                const skill_grounding *sg = skill_grounding_at(r, i);
                cJSON *e = cJSON_CreateObject();
                cJSON_AddNumberToObject(e, "start_idx", sg->start_idx);
                cJSON_AddNumberToObject(e, "end_idx", sg->end_idx);
                cJSON *pts = cJSON_AddArrayToObject(e, "points");
                for (int k = 0; k < sg->n_points; k++) {
                    cJSON *xy = cJSON_CreateArray();
                    cJSON_AddItemToArray(xy, json_exact_number(sg->points[k][0]));
                    cJSON_AddItemToArray(xy, json_exact_number(sg->points[k][1]));
                    cJSON_AddItemToArray(pts, xy);
                }
                cJSON_AddItemToArray(g, e);
            }
        }
        cJSON_AddStringToObject(o, "answer", skill_text(r));
    }
    if (a->p.kind == SKILL_DETECT || a->p.kind == SKILL_POINT) {
        cJSON *list = cJSON_AddArrayToObject(o, a->p.kind == SKILL_DETECT ? "objects" : "points");
        for (int i = 0; i < skill_object_count(r); i++) {
            const skill_object *ob = skill_object_at(r, i);
            cJSON *e = cJSON_CreateObject();
            if (a->p.kind == SKILL_DETECT) {
                cJSON_AddItemToObject(e, "x_min", json_exact_number(ob->x_min));
                cJSON_AddItemToObject(e, "y_min", json_exact_number(ob->y_min));
                cJSON_AddItemToObject(e, "x_max", json_exact_number(ob->x_max));
                cJSON_AddItemToObject(e, "y_max", json_exact_number(ob->y_max));
            } else {
                cJSON_AddItemToObject(e, "x", json_exact_number(ob->x));
                cJSON_AddItemToObject(e, "y", json_exact_number(ob->y));
            }
            cJSON_AddItemToArray(list, e);
        }
    }
    cJSON_AddStringToObject(o, "finish_reason", finish_name(skill_finish(r)));
    cJSON *mt = cJSON_AddObjectToObject(o, "metrics");
    cJSON_AddNumberToObject(mt, "input_tokens", st->prefix_tokens + skill_prompt_tokens(r));
    cJSON_AddNumberToObject(mt, "output_tokens", skill_output_tokens(r));
    cJSON_AddNumberToObject(mt, "prefill_time_ms", st->vision_ms + st->prefill_ms);
    cJSON_AddNumberToObject(mt, "decode_time_ms", st->decode_ms);
    cJSON_AddNumberToObject(mt, "ttft_ms", st->ttft_ms);
    cJSON_AddNumberToObject(mt, "cached_tokens", 0);
    char *s = cJSON_PrintUnformatted(o);
    if (s) puts(s);
    free(s);
    cJSON_Delete(o);
}

static void print_plain(const skill_args *a, const skill_request *r) {
    if (a->p.kind == SKILL_DETECT || a->p.kind == SKILL_POINT) {
        for (int i = 0; i < skill_object_count(r); i++) {
            const skill_object *o = skill_object_at(r, i);
            if (a->p.kind == SKILL_DETECT)
                printf("%.6f %.6f %.6f %.6f\n", o->x_min, o->y_min, o->x_max, o->y_max);
            else
                printf("%.6f %.6f\n", o->x, o->y);
        }
        return;
    }
    if (skill_reasoning(r)) printf("reasoning: %s\nanswer: ", skill_reasoning(r));
    if (!a->stream) fputs(skill_text(r), stdout);
    putchar('\n');
}

// Writes the image with the request's boxes or points drawn on it.
static ty_status draw_result(const skill_args *a, image_rgb *img, const skill_request *r, ty_err *err) {
    int n = skill_object_count(r);
    double(*v)[4] = calloc((size_t)(n ? n : 1), sizeof *v);
    if (!v) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const skill_object *o = skill_object_at(r, i);
        if (a->p.kind == SKILL_DETECT) {
            v[i][0] = o->x_min, v[i][1] = o->y_min, v[i][2] = o->x_max, v[i][3] = o->y_max;
        } else {
            v[i][0] = o->x, v[i][1] = o->y;
        }
    }
    if (a->p.kind == SKILL_DETECT) {
        image_draw_boxes(img, (const double(*)[4])v, n);
    } else {
        double(*pts)[2] = calloc((size_t)(n ? n : 1), sizeof *pts);
        for (int i = 0; pts && i < n; i++) pts[i][0] = v[i][0], pts[i][1] = v[i][1];
        if (pts) image_draw_points(img, (const double(*)[2])pts, n);
        free(pts);
    }
    free(v);
    return image_write_png(img, a->draw, err);
}

static int run_skill(int argc, char **argv, skill_kind kind) {
    skill_args a = {.cmd = argv[0]};
    skill_params_default(&a.p, kind);
    a.p.seed = (uint64_t)time(NULL);  // sampled runs differ unless --seed is given
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    ty_err err = {0};
    hub_paths paths;
    ty_backend *be = NULL;
    md_model *m = NULL;
    tokenizer *tok = NULL;
    image_rgb img = {0};
    skill_request *r = NULL;
    generate_stats st = {0};
    ty_status s = hub_resolve(a.model, &paths, &err);
    if (s == TY_OK && a.image) s = image_load_file(&img, a.image, NULL, &err);
    if (s == TY_OK) s = backend_cpu_init(&be, a.threads, &err);
    if (s == TY_OK) s = md_model_init(&m, paths.model_dir, be, &err);
    if (s == TY_OK) s = tokenizer_init_from_file(&tok, paths.tokenizer, &err);
    int streaming = a.stream && !a.json && (kind == SKILL_CAPTION || kind == SKILL_QUERY) && !a.p.reasoning;
    if (s == TY_OK)
        s = generate_one(m, tok, &(generate_image){.rgb = a.image ? &img : NULL}, &a.p, streaming ? print_chunk : NULL, NULL, &r, &st, &err);
    if (s == TY_OK && a.draw) s = draw_result(&a, &img, r, &err);
    if (s == TY_OK) {
        if (a.json)
            print_json(&a, r, &st);
        else
            print_plain(&a, r);
    }
    skill_free(r);
    tokenizer_free(tok);
    md_model_free(m);
    if (be) be->ops->free(be);
    image_rgb_free(&img);
    return s == TY_OK ? 0 : cli_fail(argv[0], &err);
}

int cmd_caption(int argc, char **argv) { return run_skill(argc, argv, SKILL_CAPTION); }
int cmd_query(int argc, char **argv) { return run_skill(argc, argv, SKILL_QUERY); }
int cmd_detect(int argc, char **argv) { return run_skill(argc, argv, SKILL_DETECT); }
int cmd_point(int argc, char **argv) { return run_skill(argc, argv, SKILL_POINT); }
