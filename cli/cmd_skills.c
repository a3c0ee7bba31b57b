// tycho caption | query | detect | point: one request through the model.
//
//   tycho caption --model M IMAGE [--length short|normal|long]
//   tycho query   --model M [IMAGE] --question TEXT [--reasoning] [--spatial-ref x,y | x1,y1,x2,y2 ...]
//   tycho detect  --model M IMAGE --object NAME [--max-objects N] [--draw OUT.png]
//   tycho point   --model M IMAGE --object NAME [--max-objects N] [--draw OUT.png]
//   common: --max-tokens N --temperature T --top-p P --seed S --device D --threads N --stream --json
//
// Plain output is the text (or one object per line); --json prints the API
// response body (docs/api.md) with finish_reason and metrics. One request
// goes through the engine like any other: a batch of one.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/file.h"
#include "engine/skill.h"
#include "io/image_draw.h"
#include "tycho.h"

typedef struct {
    const char *cmd, *model, *image, *draw, *device, *precision;
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
        else if (!strcmp(o, "--device")) a->device = v;
        else if (!strcmp(o, "--precision")) a->precision = v;
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

static void print_plain(const skill_args *a, const tycho_request *r) {
    if (a->p.kind == SKILL_DETECT || a->p.kind == SKILL_POINT) {
        for (int i = 0; i < tycho_request_object_count(r); i++) {
            double v[4];
            tycho_request_object(r, i, v);
            if (a->p.kind == SKILL_DETECT) printf("%.6f %.6f %.6f %.6f\n", v[0], v[1], v[2], v[3]);
            else printf("%.6f %.6f\n", v[0], v[1]);
        }
        return;
    }
    if (tycho_request_reasoning(r)) printf("reasoning: %s\nanswer: ", tycho_request_reasoning(r));
    if (!a->stream) fputs(tycho_request_text(r), stdout);
    putchar('\n');
}

// Writes the image with the request's boxes or points drawn on it.
static ty_status draw_result(const skill_args *a, const uint8_t *bytes, size_t len, const tycho_request *r,
                             ty_err *err) {
    image_rgb img = {0};
    ty_status s = image_decode(&img, bytes, len, NULL, err);
    int n = tycho_request_object_count(r);
    double(*v)[4] = calloc((size_t)(n ? n : 1), sizeof *v);
    double(*pts)[2] = calloc((size_t)(n ? n : 1), sizeof *pts);
    if (s == TY_OK && (!v || !pts)) s = ty_err_set(err, TY_E_NOMEM, "out of memory");
    for (int i = 0; s == TY_OK && i < n; i++) {
        tycho_request_object(r, i, v[i]);
        pts[i][0] = v[i][0], pts[i][1] = v[i][1];
    }
    if (s == TY_OK && a->p.kind == SKILL_DETECT) image_draw_boxes(&img, (const double(*)[4])v, n);
    if (s == TY_OK && a->p.kind == SKILL_POINT) image_draw_points(&img, (const double(*)[2])pts, n);
    if (s == TY_OK) s = image_write_png(&img, a->draw, err);
    free(v);
    free(pts);
    image_rgb_free(&img);
    return s;
}

static const char *const LENGTHS[] = {"short", "normal", "long"};

// The CLI's parsed arguments as API request parameters.
static void to_request(const skill_args *a, const uint8_t *bytes, size_t len, tycho_request_params *p,
                       tycho_spatial_ref *refs) {
    static const tycho_skill skills[] = {TYCHO_SKILL_CAPTION, TYCHO_SKILL_QUERY, TYCHO_SKILL_DETECT,
                                         TYCHO_SKILL_POINT};
    tycho_request_params_default(p, skills[a->p.kind]);
    p->image_bytes = bytes;
    p->image_len = len;
    p->length = LENGTHS[a->p.length];
    p->question = a->p.question;
    p->reasoning = a->p.reasoning;
    p->object = a->p.object;
    for (int i = 0; i < a->p.n_refs; i++) {
        refs[i].n = a->p.refs[i].n;
        memcpy(refs[i].v, a->p.refs[i].v, sizeof refs[i].v);
    }
    p->spatial_refs = refs;
    p->n_spatial_refs = a->p.n_refs;
    p->max_tokens = a->p.max_tokens;
    p->temperature = a->p.temperature;
    p->top_p = a->p.top_p;
    p->max_objects = a->p.max_objects;
    p->seed = a->p.seed;
    p->has_seed = 1;
}

static int run_skill(int argc, char **argv, skill_kind kind) {
    skill_args a = {.cmd = argv[0]};
    skill_params_default(&a.p, kind);
    if (kind == SKILL_DETECT || kind == SKILL_POINT) a.p.temperature = 0;
    a.p.seed = (uint64_t)time(NULL);  // sampled runs differ unless --seed is given
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    ty_err err = {0};
    uint8_t *bytes = NULL;
    size_t len = 0;
    image_limits lim = image_limits_default();
    ty_status s = a.image ? file_read_all(a.image, lim.max_encoded_bytes, &bytes, &len, &err) : TY_OK;
    tycho_options o;
    tycho_options_default(&o);
    o.model = a.model;
    o.threads = a.threads;
    o.device = a.device;
    o.precision = a.precision;
    o.max_batch_size = 1;
    tycho_engine *e = NULL;
    tycho_request *r = NULL;
    tycho_error te = {0};
    if (s == TY_OK && (s = (ty_status)tycho_engine_init(&e, &o, &te)) != TY_OK) ty_err_set(&err, s, "%s", te.message);
    int streaming = a.stream && !a.json && (kind == SKILL_CAPTION || kind == SKILL_QUERY) && !a.p.reasoning;
    if (s == TY_OK) {
        tycho_request_params p;
        tycho_spatial_ref refs[SKILL_MAX_REFS];
        to_request(&a, bytes, len, &p, refs);
        p.on_text = streaming ? print_chunk : NULL;
        s = (ty_status)tycho_submit(e, &p, &r, &te);
        if (s == TY_OK) s = (ty_status)tycho_wait(r, -1, &te);
        if (s != TY_OK) ty_err_set(&err, s, "%s", te.message);
    }
    if (s == TY_OK && a.draw) s = draw_result(&a, bytes, len, r, &err);
    if (s == TY_OK) {
        if (a.json) {
            char *json = tycho_request_json(r, 1);
            if (json) puts(json);
            tycho_free(json);
        } else {
            print_plain(&a, r);
        }
    }
    tycho_request_free(r);
    tycho_engine_free(e);
    free(bytes);
    return s == TY_OK ? 0 : cli_fail(argv[0], &err);
}

int cmd_caption(int argc, char **argv) { return run_skill(argc, argv, SKILL_CAPTION); }
int cmd_query(int argc, char **argv) { return run_skill(argc, argv, SKILL_QUERY); }
int cmd_detect(int argc, char **argv) { return run_skill(argc, argv, SKILL_DETECT); }
int cmd_point(int argc, char **argv) { return run_skill(argc, argv, SKILL_POINT); }
