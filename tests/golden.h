// Helpers for golden-parity tests: the JSON files (expected.json, images.json),
// reference tensors from expected.safetensors and the relative error the
// golden README's tolerance is stated in.
#ifndef TYCHO_TESTS_GOLDEN_H
#define TYCHO_TESTS_GOLDEN_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda/backend_cuda.h"
#include "core/file.h"
#include "io/safetensors.h"
#include "io/tokenizer.h"
#include "engine/skill.h"
#include "model/moondream.h"
#include "tycho.h"

// The public API's skill of a golden case ("skill": caption, query, detect, point).
static inline tycho_skill golden_case_skill(const cJSON *c) {
    const char *skill = cJSON_GetObjectItem(c, "skill")->valuestring;
    return !strcmp(skill, "caption") ? TYCHO_SKILL_CAPTION
           : !strcmp(skill, "query") ? TYCHO_SKILL_QUERY
           : !strcmp(skill, "detect") ? TYCHO_SKILL_DETECT
                                      : TYCHO_SKILL_POINT;
}

// A golden case's request without its image and spatial refs: the skill's
// defaults, then the case's arguments and settings (strings point into c).
static inline void golden_case_params(const cJSON *c, tycho_request_params *p) {
    tycho_request_params_default(p, golden_case_skill(c));
    const cJSON *v;
    if ((v = cJSON_GetObjectItem(c, "length"))) p->length = v->valuestring;
    if ((v = cJSON_GetObjectItem(c, "question"))) p->question = v->valuestring;
    if ((v = cJSON_GetObjectItem(c, "object"))) p->object = v->valuestring;
    p->reasoning = cJSON_IsTrue(cJSON_GetObjectItem(c, "reasoning"));
    const cJSON *st = cJSON_GetObjectItem(c, "settings");
    if ((v = cJSON_GetObjectItem(st, "max_tokens"))) p->max_tokens = v->valueint;
    if ((v = cJSON_GetObjectItem(st, "temperature"))) p->temperature = (float)v->valuedouble;
    if ((v = cJSON_GetObjectItem(st, "top_p"))) p->top_p = (float)v->valuedouble;
    if ((v = cJSON_GetObjectItem(st, "max_objects"))) p->max_objects = v->valueint;
}

// The tokens r fed back against the reference's emitted_ids: the same, except
// that an answer which ended at max_tokens was not fed its last token (the
// reference feeds it and throws away the sample it gives; tycho skips that
// forward, skill_go_answer). Detect/point end by max_objects with nothing fed.
static inline int golden_fed_equal(const cJSON *emitted, const skill_request *r) {
    int n;
    const int32_t *fed = skill_fed_ids(r, &n);
    int unfed = skill_finish(r) == FINISH_LENGTH && skill_output_tokens(r) > 0;
    if (cJSON_GetArraySize(emitted) - unfed != n) return 0;
    int i = 0;
    for (const cJSON *e = emitted->child; i < n; e = e->next, i++)
        if (e->valueint != fed[i]) return 0;
    return 1;
}

// The device golden tests run on: $TYCHO_TEST_DEVICE ("cpu", the default, or
// "cuda"), so the same tests check a GPU build on a GPU machine.
static inline const char *golden_device(void) {
    const char *d = getenv("TYCHO_TEST_DEVICE");
    return d && *d ? d : "cpu";
}

static inline int golden_on_gpu(void) { return strncmp(golden_device(), "cuda", 4) == 0; }

// The backend of golden_device().
static inline ty_status golden_backend_init(ty_backend **be, int n_threads, ty_err *err) {
    return golden_on_gpu() ? backend_cuda_init(be, 0, err) : backend_cpu_init(be, n_threads, err);
}

// The golden README's tensor tolerance: 1e-4 on the float32 CPU path, 2e-2 on
// bf16 paths (the CUDA backend rounds activations to bf16 for its GEMMs).
static inline double golden_tensor_tol(void) { return golden_on_gpu() ? 2e-2 : 1e-4; }

// A golden JSON file parsed, or NULL when it cannot be read or parsed.
static inline cJSON *golden_load_json(const char *path) {
    uint8_t *buf;
    size_t len;
    ty_err err;
    if (file_read_all(path, 16 << 20, &buf, &len, &err) != TY_OK) return NULL;
    cJSON *j = cJSON_Parse((char *)buf);
    free(buf);
    return j;
}

// ||a - b|| / ||b|| over n values of a and the f32 reference tensor ref.
static inline double golden_rel_err(const float *a, const safetensors_tensor *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double b = safetensors_get_f32(ref, i), d = a[i] - b;
        num += d * d;
        den += b * b;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

// One tiny golden model with what its parity test reads: the backend of
// golden_device(), the model and tokenizer of dir, its expected.safetensors and
// expected.json, and images.json's "images".
typedef struct {
    ty_backend *be;
    md_model *m;
    tokenizer *tok;
    safetensors *exp;
    cJSON *expected, *images_root;
    const cJSON *images;
} golden_model;

// Opens dir (a TEST_DATA path); 1 when everything loaded, else 0 with the
// first failure in err (the caller reports it).
static inline int golden_model_open(golden_model *g, const char *dir, ty_err *err) {
    memset(g, 0, sizeof *g);
    char path[512];
    if (golden_backend_init(&g->be, 0, err) != TY_OK || md_model_init(&g->m, dir, g->be, err) != TY_OK) return 0;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (tokenizer_init_from_file(&g->tok, path, err) != TY_OK) return 0;
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    if (safetensors_init(&g->exp, path, err) != TY_OK) return 0;
    snprintf(path, sizeof path, "%s/expected.json", dir);
    g->expected = golden_load_json(path);
    snprintf(path, sizeof path, "%s/../images.json", dir);
    g->images_root = golden_load_json(path);
    g->images = cJSON_GetObjectItem(g->images_root, "images");
    if (!g->expected || !g->images) ty_err_set(err, TY_E_FORMAT, "%s: cannot read expected.json or images.json", dir);
    return g->expected && g->images;
}

static inline void golden_model_close(golden_model *g) {
    cJSON_Delete(g->expected);
    cJSON_Delete(g->images_root);
    if (g->tok) tokenizer_free(g->tok);
    if (g->m) md_model_free(g->m);
    if (g->exp) safetensors_free(g->exp);
    if (g->be) g->be->ops->free(g->be);
}

#endif
