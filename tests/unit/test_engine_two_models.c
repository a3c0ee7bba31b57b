// Two engines in one process, one per model: md2-tiny (Moondream 2) and
// md3-tiny (Moondream 3: tau attention, MoE), through the public C API with
// requests in flight on both at once. Every md3-tiny case and the md2-tiny
// cases of the small images give their golden results and fed tokens; the
// md3-tiny cases batched together (max_batch_size 4: MoE rows of several
// sequences grouped by expert in one step) give exactly what each gives alone.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/engine.h"
#include "core/file.h"
#include "golden.h"
#include "test.h"

typedef struct {
    const cJSON *c;
    const char *id, *want_key;  // want_key: the result field compared ("answer", "caption", "objects", "points")
    const cJSON *want;          // the expected value of that field
    uint8_t *image;
    size_t image_len;
    tycho_request_params p;
    tycho_request *r;
} test_case;

static const cJSON *images;

static void set_image(test_case *t, const char *name) {
    char path[512];
    snprintf(path, sizeof path, TEST_DATA("golden/%s"),
             cJSON_GetObjectItem(cJSON_GetObjectItem(images, name), "file")->valuestring);
    ty_err err;
    CHECK_MSG(file_read_all(path, 64 << 20, &t->image, &t->image_len, &err) == TY_OK, "%s", err.msg);
    t->p.image_bytes = t->image;
    t->p.image_len = t->image_len;
}

// md3-tiny cases: greedy queries of 12 tokens at most.
static int md3_cases(test_case *t, const cJSON *expected) {
    int n = 0;
    for (const cJSON *c = cJSON_GetObjectItem(expected, "cases")->child; c; c = c->next, n++) {
        test_case *g = &t[n];
        g->c = c;
        g->id = cJSON_GetObjectItem(c, "id")->valuestring;
        tycho_request_params_default(&g->p, TYCHO_SKILL_QUERY);
        set_image(g, cJSON_GetObjectItem(c, "image")->valuestring);
        g->p.question = cJSON_GetObjectItem(c, "question")->valuestring;
        g->p.temperature = 0;
        g->p.max_tokens = cJSON_GetArraySize(cJSON_GetObjectItem(c, "emitted_ids"));
        g->want_key = "answer";
        g->want = cJSON_GetObjectItem(c, "answer");
    }
    return n;
}

// md2-tiny cases of the two small images without reasoning or spatial refs.
static int md2_cases(test_case *t, const cJSON *expected) {
    int n = 0;
    for (const cJSON *c = cJSON_GetObjectItem(expected, "cases")->child; c; c = c->next) {
        const cJSON *img = cJSON_GetObjectItem(c, "image");
        if (!cJSON_IsString(img) || (strcmp(img->valuestring, "b_378x378") && strcmp(img->valuestring, "c_96x64")) ||
            cJSON_IsTrue(cJSON_GetObjectItem(c, "reasoning")) || cJSON_GetObjectItem(c, "spatial_refs"))
            continue;
        test_case *g = &t[n++];
        g->c = c;
        g->id = cJSON_GetObjectItem(c, "id")->valuestring;
        golden_case_params(c, &g->p);
        set_image(g, img->valuestring);
        const cJSON *res = cJSON_GetObjectItem(c, "result");
        tycho_skill k = golden_case_skill(c);
        g->want_key = k == TYCHO_SKILL_CAPTION ? "caption" : k == TYCHO_SKILL_QUERY ? "answer"
                      : k == TYCHO_SKILL_DETECT ? "objects" : "points";
        g->want = k == TYCHO_SKILL_CAPTION ? res : cJSON_GetObjectItem(res, g->want_key);
    }
    return n;
}

static tycho_engine *engine(const char *model, int max_batch) {
    tycho_options o;
    tycho_options_default(&o);
    o.model = model;
    o.max_batch_size = max_batch;
    o.threads = 2;
    tycho_engine *e = NULL;
    tycho_error err;
    CHECK_MSG(tycho_engine_init(&e, &o, &err) == TYCHO_OK, "%s: %s", model, err.message);
    return e;
}

static void submit(tycho_engine *e, test_case *t) {
    tycho_error err;
    CHECK_MSG(tycho_submit(e, &t->p, &t->r, &err) == TYCHO_OK, "%s: %s", t->id, err.message);
}

// Waits for t's request; checks the result field and the fed tokens against
// the golden case; returns the result JSON (caller frees) and frees the request.
static char *finish(test_case *t) {
    if (!t->r) return NULL;
    tycho_error err;
    CHECK_MSG(tycho_wait(t->r, -1, &err) == TYCHO_OK, "%s: %s", t->id, err.message);
    char *json = tycho_request_json(t->r, 0);
    cJSON *got = cJSON_Parse(json);
    CHECK_MSG(cJSON_Compare(cJSON_GetObjectItem(got, t->want_key), t->want, 1), "%s: %s", t->id, json);
    CHECK_MSG(golden_fed_equal(cJSON_GetObjectItem(t->c, "emitted_ids"), t->r->sk),
              "%s: fed tokens differ from emitted_ids", t->id);
    cJSON_Delete(got);
    tycho_request_free(t->r);
    t->r = NULL;
    return json;
}

int main(void) {
    cJSON *e2 = golden_load_json(TEST_DATA("golden/md2-tiny/expected.json"));
    cJSON *e3 = golden_load_json(TEST_DATA("golden/md3-tiny/expected.json"));
    cJSON *images_root = golden_load_json(TEST_DATA("golden/images.json"));
    CHECK(e2 && e3 && images_root);
    if (!e2 || !e3 || !images_root) return test_report("test_engine_two_models");
    images = cJSON_GetObjectItem(images_root, "images");
    static test_case c2[128], c3[16];
    int n2 = md2_cases(c2, e2), n3 = md3_cases(c3, e3);
    CHECK(n2 > 0 && n3 > 0);

    // Each md3 case alone: the reference for bitwise comparison.
    char *alone[16] = {0};
    tycho_engine *solo = engine(TEST_DATA("golden/md3-tiny"), 1);
    for (int i = 0; solo && i < n3; i++) {
        submit(solo, &c3[i]);
        alone[i] = finish(&c3[i]);
    }
    tycho_engine_free(solo);

    // Both models in one process, requests in flight on both engines at once.
    tycho_engine *md2 = engine(TEST_DATA("golden/md2-tiny"), 4), *md3 = engine(TEST_DATA("golden/md3-tiny"), 4);
    if (md2 && md3) {
        for (int i = 0; i < n2 || i < n3; i++) {
            if (i < n3) submit(md3, &c3[i]);
            if (i < n2) submit(md2, &c2[i]);
        }
        for (int i = 0; i < n3; i++) {
            char *json = finish(&c3[i]);
            CHECK_MSG(json && alone[i] && !strcmp(json, alone[i]), "%s batched: %s != alone %s", c3[i].id, json,
                      alone[i]);
            free(json);
        }
        for (int i = 0; i < n2; i++) free(finish(&c2[i]));
        tycho_engine_stats s2, s3;
        tycho_engine_get_stats(md2, &s2);
        tycho_engine_get_stats(md3, &s3);
        CHECK(s2.requests_done == (uint64_t)n2 && s3.requests_done == (uint64_t)n3);
        fprintf(stderr, "md2-tiny: %d cases, md3-tiny: %d cases, %llu md3 steps\n", n2, n3,
                (unsigned long long)s3.steps);
    }
    tycho_engine_free(md2);
    tycho_engine_free(md3);
    for (int i = 0; i < n3; i++) {
        free(alone[i]);
        free(c3[i].image);
    }
    for (int i = 0; i < n2; i++) free(c2[i].image);
    cJSON_Delete(e2);
    cJSON_Delete(e3);
    cJSON_Delete(images_root);
    return test_report("test_engine_two_models");
}
