// tycho batch: many requests from a JSONL file through one engine, batched.
//
//   tycho batch --model M FILE.jsonl [--device cpu|cuda[:N]] [--precision f32|bf16] [--threads N] [--max-batch-size N] [--kv-pages N]
//               [--no-prefix-cache] [--seed S]
//
// Every non-blank line is one request: the Moondream API body of its skill
// (docs/api.md §1) plus "skill" ("caption" | "query" | "detect" | "point"),
// optionally "id" (any JSON value), and the image either as "image_url"
// (data URI or base64, as in the API) or as "image": PATH. Relative paths are
// relative to the directory of FILE.jsonl (to the working directory when
// FILE is "-", stdin), so a JSONL file and its images move together.
//
// Output: one JSON line per request on stdout, in input order: {"id", ...the
// API response body with "finish_reason" and "metrics"}. "id" is the line's
// "id" when it has one, else its 0-based line number in the file (blank lines
// count). A line that cannot run (bad JSON, a bad field, a missing image, a
// failed request) gives {"id", "error": {"message", "type", "param", "code"}}
// and the others still run. Exit status: 0 when every request succeeded, 1
// when any failed (or the model could not be loaded), 2 for a usage error. A
// summary line goes to stderr.
//
// --seed S gives every request the seed S, as if each ran alone with
// `tycho <skill> --seed S`; without it every request gets a fresh seed.
//
// Memory stays bounded for any number of lines: at most a window of 4 x the
// engine's max batch size requests is in flight (each holds its decoded
// image); when the window is full the oldest is waited for and printed.
// Results are printed as soon as every earlier line has been printed.
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/request_json.h"
#include "cli/cli.h"
#include "core/json.h"
#include "tycho.h"

#define BATCH_WINDOW_PER_SLOT 4  // in-flight requests per batch slot: keeps the scheduler fed while we print

typedef struct {
    const char *model, *file;
    tycho_options o;
    int has_seed;
    uint64_t seed;
} batch_args;

// One request of the window: in flight (req) or failed before it could run (code, message, param).
typedef struct {
    long line;             // 0-based line number in the file
    cJSON *id;             // the line's "id" (owned); NULL: use the line number
    tycho_request *req;    // submitted; NULL when the line failed early
    ty_status code;        // the early failure
    char message[512];
    char param[64];
} batch_slot;

typedef struct {
    batch_slot *slots;  // ring of cap slots; the oldest at head
    int cap, head, count;
    long done, failed;
} batch_window;

// ---- arguments ----------------------------------------------------------------

static int parse_int_arg(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

// Returns 0, or the exit status after printing one error line.
static int batch_parse_args(int argc, char **argv, batch_args *a) {
    tycho_options_default(&a->o);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n = 0;
        if (!strcmp(o, "--no-prefix-cache")) {
            a->o.prefix_cache = 0;
            continue;
        }
        if (o[0] != '-' || !strcmp(o, "-")) {
            if (a->file) {
                fprintf(stderr, "tycho batch: more than one input file given ('%s')\n", o);
                return 2;
            }
            a->file = o;
            continue;
        }
        if (!v) {
            fprintf(stderr, "tycho batch: %s needs a value\n", o);
            return 2;
        }
        i++;
        int bad = 0;
        if (!strcmp(o, "--model")) a->model = v;
        else if (!strcmp(o, "--device")) a->o.device = v;
        else if (!strcmp(o, "--precision")) a->o.precision = v;
        else if (!strcmp(o, "--threads")) bad = parse_int_arg(v, 1, 1024, &n) || (a->o.threads = (int)n, 0);
        else if (!strcmp(o, "--max-batch-size")) bad = parse_int_arg(v, 1, 4096, &n) || (a->o.max_batch_size = (int)n, 0);
        else if (!strcmp(o, "--kv-pages")) bad = parse_int_arg(v, 1, 1 << 30, &n) || (a->o.kv_cache_pages = (int)n, 0);
        else if (!strcmp(o, "--seed")) {
            bad = parse_int_arg(v, 0, 0x7fffffffffffffffL, &n) || (a->seed = (uint64_t)n, a->has_seed = 1, 0);
        } else {
            fprintf(stderr, "tycho batch: unknown option %s (tycho --help lists them)\n", o);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "tycho batch: invalid value '%s' for %s\n", v, o);
            return 2;
        }
    }
    if (!a->model || !a->file) {
        fprintf(stderr, "tycho batch: usage: tycho batch --model M FILE.jsonl (FILE '-' reads stdin)\n");
        return 2;
    }
    return 0;
}

// ---- input ------------------------------------------------------------------------

// Reads one line (without its '\n') into *buf, growing it up to max bytes;
// the rest of a longer line is read and dropped, and *too_long set. Returns
// the length, or -1 at the end of the input.
static long batch_read_line(FILE *f, char **buf, size_t *cap, size_t max, int *too_long) {
    size_t n = 0;
    int c = EOF;
    *too_long = 0;
    while ((c = getc_unlocked(f)) != EOF && c != '\n') {
        if (n >= max) {
            *too_long = 1;
            continue;
        }
        if (n + 1 >= *cap) {
            size_t nc = *cap ? *cap * 2 : 4096;
            char *nb = realloc(*buf, nc);
            if (!nb) {
                *too_long = 1;
                continue;
            }
            *buf = nb;
            *cap = nc;
        }
        (*buf)[n++] = (char)c;
    }
    if (c == EOF && n == 0 && !*too_long) return -1;
    if (*buf) (*buf)[n] = '\0';
    return (long)n;
}

static int blank_line(const char *s, long n) {
    for (long i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

// The directory part of path ("." when there is none); malloc'd.
static char *batch_base_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

// ---- the window ---------------------------------------------------------------------

static void slot_fail(batch_slot *s, ty_status code, const char *param, const char *message) {
    s->code = code;
    snprintf(s->param, sizeof s->param, "%s", param ? param : "");
    snprintf(s->message, sizeof s->message, "%s", message);
}

// {"error": {...}} for a line that never ran, in the API's error form, with
// the field at fault.
static cJSON *slot_error_json(const batch_slot *s) {
    char *text = tycho_error_json((tycho_status)s->code, s->message, s->param);
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    tycho_free(text);
    return o ? o : cJSON_CreateObject();
}

// The line's id as JSON text (malloc'd): its own "id", else its line number.
static char *slot_id_text(const batch_slot *s) {
    char num[32];
    if (!s->id) {
        snprintf(num, sizeof num, "%ld", s->line);
        return strdup(num);
    }
    if (!cJSON_IsNumber(s->id)) return cJSON_PrintUnformatted(s->id);
    cJSON *exact = json_exact_number(s->id->valuedouble);  // cJSON's own printing may drop the last digits
    char *t = exact ? cJSON_PrintUnformatted(exact) : NULL;
    cJSON_Delete(exact);
    return t;
}

// Waits for the oldest request of the window, prints its line and frees it.
static void window_emit_oldest(batch_window *w) {
    batch_slot *s = &w->slots[w->head];
    char *body = NULL;
    int ok = 0;
    if (s->req) {
        tycho_error err;
        ok = tycho_wait(s->req, -1, &err) == TYCHO_OK;
        char *t = tycho_request_json(s->req, 1);
        body = t ? strdup(t) : NULL;
        tycho_free(t);
        if (!body) {
            ok = 0;
            slot_fail(s, TY_E_NOMEM, NULL, "cannot build the response");
        }
        tycho_request_free(s->req);
        s->req = NULL;
    }
    if (!body) {
        cJSON *e = slot_error_json(s);
        body = e ? cJSON_PrintUnformatted(e) : NULL;
        cJSON_Delete(e);
    }
    // {"id": ..., then the response body's fields}: spliced as text, so the
    // body's numbers stay exactly as the engine printed them.
    char *id = slot_id_text(s);
    if (body && id && body[0] == '{') {
        const char *rest = body + 1;
        while (*rest == ' ') rest++;
        printf("{\"id\":%s%s%s\n", id, *rest == '}' ? "" : ",", rest);
        fflush(stdout);  // a reader of the pipe sees each result as it comes
    } else {
        printf("{\"id\":%ld,\"error\":{\"message\":\"out of memory\",\"type\":\"out_of_memory\",\"param\":null,"
               "\"code\":%d}}\n",
               s->line, (int)TY_E_NOMEM);
        ok = 0;
    }
    free(id);
    free(body);
    cJSON_Delete(s->id);
    s->id = NULL;
    w->done++;
    if (!ok) w->failed++;
    w->head = (w->head + 1) % w->cap;
    w->count--;
}

// Parses one line into the slot and submits it; a line that fails gets its
// error recorded in the slot. Waits for older requests while the queue is full.
static void window_submit_line(batch_window *w, batch_slot *s, tycho_engine *e, const batch_args *a, const char *text,
                               size_t len, const request_json_options *ro) {
    cJSON *body = NULL;
    request_json_error err;
    request_json r;
    request_json_init(&r);
    tycho_skill skill;
    if (request_json_body_parse(text, len, &body, &err) != TY_OK) goto fail;
    if (cJSON_IsObject(body)) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(body, "id");
        if (id && !cJSON_IsNull(id)) s->id = cJSON_Duplicate(id, 1);
    }
    if (!cJSON_IsObject(body)) {
        slot_fail(s, TY_E_ARG, NULL, "a line must be a JSON object");
        goto done;
    }
    if (request_json_skill_parse(cJSON_GetObjectItemCaseSensitive(body, "skill"), &skill, &err) != TY_OK) goto fail;
    if (request_json_parse(&r, body, skill, ro, &err) != TY_OK) goto fail;
    if (a->has_seed) {
        r.params.seed = a->seed;
        r.params.has_seed = 1;
    }
    for (;;) {
        tycho_error terr;
        tycho_status st = tycho_submit(e, &r.params, &s->req, &terr);
        if (st == TYCHO_OK) break;
        s->req = NULL;
        if (st != TYCHO_E_BUSY) {
            slot_fail(s, (ty_status)st, NULL, terr.message);
            break;
        }
        // The queue is full: make room by finishing the oldest request (the
        // slot being filled is the newest, so it stays where it is).
        if (w->count > 0) window_emit_oldest(w);
        else nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    goto done;
fail:
    slot_fail(s, err.err.code, err.param, err.err.msg);
done:
    request_json_free(&r);
    cJSON_Delete(body);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

int cmd_batch(int argc, char **argv) {
    batch_args a = {0};
    int rc = batch_parse_args(argc, argv, &a);
    if (rc) return rc;
    int use_stdin = !strcmp(a.file, "-");
    FILE *in = use_stdin ? stdin : fopen(a.file, "r");
    if (!in) {
        fprintf(stderr, "tycho batch: %s: %s\n", a.file, strerror(errno));
        return 1;
    }
    double t0 = now_s();
    a.o.model = a.model;
    tycho_engine *e = NULL;
    tycho_error terr;
    if (tycho_engine_init(&e, &a.o, &terr) != TYCHO_OK) {
        fprintf(stderr, "tycho batch: %s\n", terr.message);
        if (!use_stdin) fclose(in);
        return 1;
    }
    tycho_engine_stats st;
    tycho_engine_get_stats(e, &st);
    batch_window w = {.cap = BATCH_WINDOW_PER_SLOT * (st.max_batch_size > 0 ? st.max_batch_size : 1)};
    w.slots = calloc((size_t)w.cap, sizeof *w.slots);
    char *base_dir = use_stdin ? NULL : batch_base_dir(a.file);
    if (!w.slots || (!use_stdin && !base_dir)) {
        fprintf(stderr, "tycho batch: out of memory\n");
        free(w.slots);
        free(base_dir);
        tycho_engine_free(e);
        if (!use_stdin) fclose(in);
        return 1;
    }
    request_json_options ro = {.allow_image_path = 1, .base_dir = base_dir};
    // A line holds at most one base64 image of the API's size limit plus its fields.
    size_t max_line = REQUEST_JSON_DEFAULT_IMAGE_BYTES / 3 * 4 + (1u << 20);
    char *buf = NULL;
    size_t cap = 0;
    long len, line = 0;
    int too_long;
    for (; (len = batch_read_line(in, &buf, &cap, max_line, &too_long)) >= 0; line++) {
        if (!too_long && blank_line(buf, len)) continue;
        if (w.count == w.cap) window_emit_oldest(&w);
        batch_slot *s = &w.slots[(w.head + w.count) % w.cap];
        memset(s, 0, sizeof *s);
        s->line = line;
        if (too_long) {
            char msg[96];
            snprintf(msg, sizeof msg, "the line is longer than %zu bytes", max_line);
            slot_fail(s, TY_E_LIMIT, NULL, msg);
        } else {
            window_submit_line(&w, s, e, &a, buf, (size_t)len, &ro);
        }
        w.count++;
    }
    int read_error = ferror(in);
    while (w.count) window_emit_oldest(&w);
    double dt = now_s() - t0;
    tycho_engine_get_stats(e, &st);
    fprintf(stderr,
            "tycho batch: %ld requests, %ld failed, %.2f s (%.2f requests/s); %llu images through the vision tower, "
            "%llu prefix cache hits\n",
            w.done, w.failed, dt, dt > 0 ? (double)w.done / dt : 0.0, (unsigned long long)st.vision_images,
            (unsigned long long)st.prefix_hits);
    if (read_error) fprintf(stderr, "tycho batch: %s: read error\n", a.file);
    free(buf);
    free(w.slots);
    free(base_dir);
    tycho_engine_free(e);
    if (!use_stdin) fclose(in);
    return w.failed || read_error ? 1 : 0;
}
