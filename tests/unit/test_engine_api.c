// The C API's request lifecycle with the tiny model: bad parameters fail
// alone at submit, streamed pieces join to the final text, waits time out,
// cancel works from another thread while waiting and running, a full queue
// answers busy, many threads submit at once, and freeing the engine with
// requests in flight ends them as cancelled with their handles still valid;
// distinct images from many threads (crops made ahead) answer as one at a time.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "test.h"
#include "tycho.h"

static uint8_t *image;
static size_t image_len;

static tycho_engine *engine(int max_batch, int max_queue) {
    tycho_options o;
    tycho_options_default(&o);
    o.model = TEST_DATA("golden/md2-tiny");
    o.max_batch_size = max_batch;
    o.max_queue = max_queue;
    tycho_engine *e = NULL;
    tycho_error err;
    CHECK_MSG(tycho_engine_init(&e, &o, &err) == TYCHO_OK, "%s", err.message);
    return e;
}

static void caption_params(tycho_request_params *p, int max_tokens) {
    tycho_request_params_default(p, TYCHO_SKILL_CAPTION);
    p->image_bytes = image;
    p->image_len = image_len;
    p->temperature = 0;
    p->max_tokens = max_tokens;
}

static void test_bad_requests(tycho_engine *e) {
    tycho_request_params p;
    tycho_request *r = (tycho_request *)1;
    tycho_error err;
    caption_params(&p, 10);
    p.length = "medium";
    CHECK(tycho_submit(e, &p, &r, &err) == TYCHO_E_ARG && r == NULL && strstr(err.message, "length"));
    caption_params(&p, 0);
    CHECK(tycho_submit(e, &p, &r, &err) == TYCHO_E_ARG && strstr(err.message, "max_tokens"));
    caption_params(&p, 10);
    p.temperature = -1;
    CHECK(tycho_submit(e, &p, &r, &err) == TYCHO_E_ARG);
    caption_params(&p, 10);
    p.image_bytes = "not an image at all";
    p.image_len = 19;
    CHECK(tycho_submit(e, &p, &r, &err) != TYCHO_OK && err.message[0]);
    caption_params(&p, 10);
    p.image_bytes = NULL;
    CHECK(tycho_submit(e, &p, &r, &err) == TYCHO_E_ARG && strstr(err.message, "needs an image"));
    tycho_request_params_default(&p, TYCHO_SKILL_QUERY);
    p.question = "   ";
    CHECK(tycho_submit(e, &p, &r, &err) == TYCHO_E_ARG && strstr(err.message, "question"));
    tycho_request_params_default(&p, TYCHO_SKILL_DETECT);
    p.image_bytes = image;
    p.image_len = image_len;
    CHECK(tycho_submit(e, &p, &r, &err) == TYCHO_E_ARG && strstr(err.message, "object"));
    caption_params(&p, 100000);  // beyond the context
    CHECK(tycho_submit(e, &p, &r, &err) == TYCHO_E_LIMIT && strstr(err.message, "context"));
    caption_params(&p, 10);
    p.image_key = "xyz";
    CHECK(tycho_submit(e, &p, &r, &err) == TYCHO_E_ARG && strstr(err.message, "one of"));  // bytes and a key
    p.image_bytes = NULL;
    CHECK(tycho_submit(e, &p, &r, &err) == TYCHO_E_ARG && strstr(err.message, "hex"));
    p.image_key = "00000000000000000000000000000000";  // the text-only root's key must not pass for an image
    CHECK(tycho_submit(e, &p, &r, &err) == TYCHO_E_NOT_FOUND);
    // The engine still serves.
    caption_params(&p, 4);
    CHECK(tycho_submit(e, &p, &r, &err) == TYCHO_OK);
    CHECK(tycho_wait(r, -1, &err) == TYCHO_OK);
    tycho_request_free(r);
}

typedef struct {
    char text[4096];
    size_t len;
    int calls;
} stream_buf;

static void on_text(void *user, const char *text, size_t len) {
    stream_buf *b = user;
    CHECK(len > 0);
    if (b->len + len < sizeof b->text) memcpy(b->text + b->len, text, len), b->len += len;
    b->calls++;
}

static void test_stream(tycho_engine *e) {
    tycho_request_params p;
    caption_params(&p, 40);
    stream_buf b = {0};
    p.on_text = on_text;
    p.user = &b;
    tycho_request *r;
    tycho_error err;
    CHECK(tycho_submit(e, &p, &r, &err) == TYCHO_OK);
    CHECK(tycho_wait(r, -1, &err) == TYCHO_OK);
    CHECK_MSG(b.len == strlen(tycho_request_text(r)) && !memcmp(b.text, tycho_request_text(r), b.len),
              "streamed '%.*s' != '%s'", (int)b.len, b.text, tycho_request_text(r));
    CHECK(b.calls > 1);
    CHECK(!strcmp(tycho_request_finish_reason(r), "length") || !strcmp(tycho_request_finish_reason(r), "stop"));
    tycho_metrics m;
    tycho_request_metrics(r, &m);
    CHECK(m.input_tokens > 730 && m.output_tokens > 0 && m.ttft_ms > 0 && m.decode_time_ms >= 0);
    char *json = tycho_request_json(r, 1);
    CHECK(json && strstr(json, "\"caption\"") && strstr(json, "\"ttft_ms\"") && strstr(json, "\"finish_reason\""));
    tycho_free(json);
    tycho_request_free(r);
}

typedef struct {
    tycho_request *r;
    int delay_us;
} cancel_job;

static void *cancel_later(void *arg) {
    cancel_job *j = arg;
    usleep((useconds_t)j->delay_us);
    tycho_cancel(j->r);
    return NULL;
}

// Cancel from another thread: while running (mid-decode) and while waiting behind others.
static void test_cancel(tycho_engine *e) {
    tycho_request_params p;
    caption_params(&p, 1200);
    tycho_request *r[4];
    tycho_error err;
    for (int i = 0; i < 4; i++) CHECK(tycho_submit(e, &p, &r[i], &err) == TYCHO_OK);
    CHECK(tycho_wait(r[0], 1, &err) == TYCHO_E_TIMEOUT);
    cancel_job j = {r[0], 50000};
    pthread_t t;
    pthread_create(&t, NULL, cancel_later, &j);
    tycho_cancel(r[3]);  // still waiting (max batch 2)
    CHECK(tycho_wait(r[0], -1, &err) == TYCHO_E_CANCELLED);
    pthread_join(t, NULL);
    CHECK(!strcmp(tycho_request_finish_reason(r[0]), "cancelled"));
    CHECK(tycho_wait(r[3], -1, &err) == TYCHO_E_CANCELLED);
    tycho_request_free(r[3]);
    tycho_request_free(r[0]);
    tycho_request_free(r[1]);  // running: cancelled by free
    tycho_request_free(r[2]);
    tycho_engine_stats st;
    for (int k = 0; k < 100; k++) {  // the engine catches up with the frees
        tycho_engine_get_stats(e, &st);
        if (!st.running && !st.waiting) break;
        usleep(10000);
    }
    CHECK(st.running == 0 && st.waiting == 0 && st.requests_cancelled >= 4);
    CHECK(st.kv_pages_used == st.kv_pages_cached);
}

static void test_busy(void) {
    tycho_engine *e = engine(1, 2);
    if (!e) return;
    tycho_request_params p;
    caption_params(&p, 300);
    tycho_request *r[8] = {0};
    tycho_error err;
    int busy = 0, ok = 0;
    for (int i = 0; i < 8; i++) {
        tycho_status s = tycho_submit(e, &p, &r[i], &err);
        busy += s == TYCHO_E_BUSY;
        ok += s == TYCHO_OK;
        if (s == TYCHO_E_BUSY) CHECK(strstr(err.message, "queue"));
    }
    CHECK_MSG(busy > 0 && ok >= 2, "busy %d ok %d", busy, ok);
    tycho_engine_free(e);  // in-flight requests end cancelled; their handles stay valid
    for (int i = 0; i < 8; i++) {
        if (!r[i]) continue;
        tycho_status s = tycho_wait(r[i], -1, &err);
        CHECK(s == TYCHO_E_CANCELLED || s == TYCHO_OK);
        tycho_request_free(r[i]);
    }
}

typedef struct {
    tycho_engine *e;
    char text[8][512];
} thread_job;

static void *submit_many(void *arg) {
    thread_job *j = arg;
    tycho_request_params p;
    caption_params(&p, 12);
    for (int i = 0; i < 8; i++) {
        tycho_request *r;
        tycho_error err;
        p.length = i % 2 ? "short" : "normal";
        if (tycho_submit(j->e, &p, &r, &err) != TYCHO_OK) continue;
        if (tycho_wait(r, -1, &err) == TYCHO_OK) snprintf(j->text[i], sizeof j->text[i], "%s", tycho_request_text(r));
        tycho_request_free(r);
    }
    return NULL;
}

// Four threads submitting at once get what one thread gets.
static void test_threads(tycho_engine *e) {
    static thread_job jobs[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        jobs[i].e = e;
        pthread_create(&t[i], NULL, submit_many, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 8; k++) {
            CHECK(jobs[i].text[k][0]);
            CHECK(!strcmp(jobs[i].text[k], jobs[0].text[k % 2]));
        }
}

// Distinct images (their crops made ahead on the engine's crop threads): three
// threads at once get what one request at a time gets, and requests cancelled
// while their crops are queued, being made or made end with nothing leaked.
enum { N_PICS = 4, PIC_W = 400, PIC_H = 300 };
static uint8_t *pics[N_PICS];

static void pic_params(tycho_request_params *p, int i, int max_tokens) {
    tycho_request_params_default(p, TYCHO_SKILL_CAPTION);
    p->image_rgb = pics[i];
    p->image_width = PIC_W;
    p->image_height = PIC_H;
    p->temperature = 0;
    p->max_tokens = max_tokens;
}

typedef struct {
    tycho_engine *e;
    int first;
    char text[N_PICS][512];
} pic_job;

static void *submit_pics(void *arg) {
    pic_job *j = arg;
    tycho_request *r[N_PICS] = {0};
    for (int k = 0; k < N_PICS; k++) {
        tycho_request_params p;
        tycho_error err;
        pic_params(&p, (j->first + k) % N_PICS, 8);
        if (tycho_submit(j->e, &p, &r[k], &err) != TYCHO_OK) r[k] = NULL;
    }
    for (int k = 0; k < N_PICS; k++) {
        tycho_error err;
        if (r[k] && tycho_wait(r[k], -1, &err) == TYCHO_OK)
            snprintf(j->text[(j->first + k) % N_PICS], sizeof j->text[0], "%s", tycho_request_text(r[k]));
        tycho_request_free(r[k]);
    }
    return NULL;
}

// Without the prefix cache every request runs the tower on its own crops.
static void test_image_threads(void) {
    tycho_options o;
    tycho_options_default(&o);
    o.model = TEST_DATA("golden/md2-tiny");
    o.max_batch_size = 2;
    o.prefix_cache = 0;
    tycho_engine *e = NULL;
    tycho_error te;
    CHECK_MSG(tycho_engine_init(&e, &o, &te) == TYCHO_OK, "%s", te.message);
    if (!e) return;
    for (int i = 0; i < N_PICS; i++) {
        pics[i] = malloc(PIC_W * PIC_H * 3);
        for (int k = 0; k < PIC_W * PIC_H * 3; k++) pics[i][k] = (uint8_t)((k * 7 + i * 31) ^ (k >> 9) * (i + 1));
    }
    char want[N_PICS][512];
    for (int i = 0; i < N_PICS; i++) {  // one at a time
        tycho_request_params p;
        tycho_request *r;
        tycho_error err;
        pic_params(&p, i, 8);
        want[i][0] = 0;
        if (tycho_submit(e, &p, &r, &err) == TYCHO_OK && tycho_wait(r, -1, &err) == TYCHO_OK)
            snprintf(want[i], sizeof want[i], "%s", tycho_request_text(r));
        tycho_request_free(r);
        CHECK(want[i][0]);
    }
    static pic_job jobs[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        jobs[i].e = e;
        jobs[i].first = i;
        pthread_create(&t[i], NULL, submit_pics, &jobs[i]);
    }
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < N_PICS; k++) CHECK_MSG(!strcmp(jobs[i].text[k], want[k]), "thread %d image %d", i, k);
    // Cancelled at once, behind a long one (max batch 2): most never reach the tower.
    tycho_request *r[N_PICS];
    tycho_error err;
    for (int i = 0; i < N_PICS; i++) {
        tycho_request_params p;
        pic_params(&p, i, i ? 8 : 400);
        CHECK(tycho_submit(e, &p, &r[i], &err) == TYCHO_OK);
    }
    for (int i = N_PICS - 1; i >= 0; i--) tycho_cancel(r[i]);
    for (int i = 0; i < N_PICS; i++) {
        tycho_status s = tycho_wait(r[i], -1, &err);
        CHECK(s == TYCHO_E_CANCELLED || s == TYCHO_OK);
        tycho_request_free(r[i]);
    }
    tycho_engine_free(e);
    for (int i = 0; i < N_PICS; i++) free(pics[i]);
}

int main(void) {
    ty_err err;
    CHECK_MSG(file_read_all(TEST_DATA("golden/images/b_378x378.png"), 1 << 24, &image, &image_len, &err) == TY_OK, "%s",
              err.msg);
    tycho_engine *e = engine(2, 0);
    if (!e || !image) return test_report("test_engine_api");
    test_bad_requests(e);
    test_stream(e);
    test_cancel(e);
    test_threads(e);
    tycho_engine_free(e);
    test_image_threads();
    test_busy();
    tycho_error te;
    tycho_options o;
    tycho_options_default(&o);
    o.model = "/nonexistent/model";
    CHECK(tycho_engine_init(&e, &o, &te) != TYCHO_OK && te.message[0]);
    o.model = TEST_DATA("golden/md2-tiny");
    const char *bad_devices[] = {"tpu", "cuda:", "cuda:x", "cuda:-1", "cuda:1x", "cudax", "CPU"};
    for (size_t i = 0; i < sizeof bad_devices / sizeof *bad_devices; i++) {
        o.device = bad_devices[i];
        CHECK_MSG(tycho_engine_init(&e, &o, &te) == TYCHO_E_ARG && strstr(te.message, "cuda:N"), "%s", bad_devices[i]);
    }
    // A GPU this process cannot see (none in a CPU build or without a GPU; 1025 is out of range anywhere).
    o.device = "cuda:1024";
    tycho_status gs = tycho_engine_init(&e, &o, &te);
    CHECK_MSG(gs == TYCHO_E_UNSUPPORTED || gs == TYCHO_E_ARG, "%s", te.message);
    o.device = "cuda:1025";
    CHECK(tycho_engine_init(&e, &o, &te) == TYCHO_E_ARG);
    o.device = NULL;
    o.precision = "fp8";
    CHECK(tycho_engine_init(&e, &o, &te) == TYCHO_E_ARG && strstr(te.message, "precision"));
    o.precision = "bf16";  // the CPU computes in f32 only
    CHECK(tycho_engine_init(&e, &o, &te) == TYCHO_E_UNSUPPORTED && strstr(te.message, "cuda"));
    free(image);
    return test_report("test_engine_api");
}
