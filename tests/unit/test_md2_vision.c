// Golden parity of the vision path on md2-tiny: for every golden image, the
// vision tower output of crop 0 and of the last crop, and the 729 image
// embeddings after stitching, pooling and projection, within 1e-4 relative
// error of the reference (float32 CPU path).
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "core/file.h"
#include "golden.h"
#include "io/image.h"
#include "model/moondream.h"
#include "test.h"

static void check_tensor(const safetensors *exp, const char *name, const float *got, int64_t n) {
    const safetensors_tensor *ref = safetensors_find(exp, name);
    CHECK_MSG(ref && ref->n_elements == n, "reference %s missing or of another size", name);
    if (!ref || ref->n_elements != n) return;
    double e = golden_rel_err(got, ref, n);
    CHECK_MSG(e <= 1e-4, "%s: relative error %.3g > 1e-4", name, e);
    fprintf(stderr, "  %-32s rel err %.2e\n", name, e);
}

int main(void) {
    ty_err err = {0};
    ty_backend *be = NULL;
    md_model *m = NULL;
    safetensors *exp = NULL;
    CHECK(backend_cpu_init(&be, 0, &err) == TY_OK);
    CHECK_MSG(md_model_init(&m, TEST_DATA("golden/md2-tiny"), be, &err) == TY_OK, "%s", err.msg);
    CHECK(safetensors_init(&exp, TEST_DATA("golden/md2-tiny/expected.safetensors"), &err) == TY_OK);
    uint8_t *json;
    size_t len;
    CHECK(file_read_all(TEST_DATA("golden/images.json"), 1 << 20, &json, &len, &err) == TY_OK);
    cJSON *root = cJSON_Parse((char *)json);
    cJSON *images = cJSON_GetObjectItem(root, "images");
    free(json);
    if (!m || !exp || !images) return test_report("test_md2_vision");
    int d = m->cfg.vision.enc_dim, dim = m->cfg.text.dim;
    for (cJSON *img = images->child; img; img = img->next) {
        char path[512], name[256];
        snprintf(path, sizeof path, TEST_DATA("golden/%s"), cJSON_GetObjectItem(img, "file")->valuestring);
        image_rgb rgb;
        image_crops crops;
        CHECK_MSG(image_load_file(&rgb, path, NULL, &err) == TY_OK, "%s", err.msg);
        CHECK_MSG(image_make_crops(&crops, &rgb, &err) == TY_OK, "%s", err.msg);
        int n = crops.n_crops;
        uint8_t *pix = malloc((size_t)n * 378 * 378 * 3);
        for (int i = 0; i < n; i++) image_crop_copy(&crops, i, pix + (size_t)i * 378 * 378 * 3);
        float *features = malloc((size_t)n * MD_PATCHES * d * sizeof(float));
        float *embeds = malloc((size_t)MD_PATCHES * dim * sizeof(float));
        fprintf(stderr, "%s (%d crops)\n", img->string, n);
        CHECK_MSG(md_vision_encode(m, pix, n, crops.tiling.rows, crops.tiling.cols, features, embeds, &err) == TY_OK,
                  "%s", err.msg);
        snprintf(name, sizeof name, "%s.vision_out.crop0", img->string);
        check_tensor(exp, name, features, (int64_t)MD_PATCHES * d);
        snprintf(name, sizeof name, "%s.vision_out.last", img->string);
        check_tensor(exp, name, features + (size_t)(n - 1) * MD_PATCHES * d, (int64_t)MD_PATCHES * d);
        snprintf(name, sizeof name, "%s.image_embeds", img->string);
        check_tensor(exp, name, embeds, (int64_t)MD_PATCHES * dim);
        free(features);
        free(embeds);
        free(pix);
        image_crops_free(&crops);
        image_rgb_free(&rgb);
    }
    cJSON_Delete(root);
    md_model_free(m);
    safetensors_free(exp);
    be->ops->free(be);
    return test_report("test_md2_vision");
}
