// The engine's crop pool (src/engine/crop_pool.h): crops made by its workers
// are byte for byte those made inline; a job released while queued, running
// or made frees everything (ASan checks the leaks); the workers never hold
// more than max_ahead images' crops; an image that cannot be cropped fails
// its own job alone; a job never queued is made by whoever asks; two pools
// work side by side.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/crop_pool.h"
#include "test.h"

static image_rgb random_image(int w, int h, unsigned seed) {
    image_rgb img = {w, h, malloc((size_t)w * h * 3)};
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        seed = seed * 1103515245u + 12345u;
        img.rgb[i] = (uint8_t)(seed >> 16);
    }
    return img;
}

static int same_crops(const crop_set *a, const crop_set *b) {
    return a->n_crops == b->n_crops && a->rows == b->rows && a->cols == b->cols &&
           !memcmp(a->pix, b->pix, (size_t)a->n_crops * IMAGE_CROP_SIZE * IMAGE_CROP_SIZE * 3);
}

// Waits (up to 5 s) for the workers to hold n images' crops.
static int wait_ahead(crop_pool *p, int n) {
    for (int k = 0; k < 500 && crop_pool_ahead(p) != n; k++) usleep(10000);
    return crop_pool_ahead(p);
}

static void test_matches_inline(crop_pool *p) {
    enum { N = 8 };
    const int sizes[N][2] = {{800, 600}, {378, 378}, {96, 64}, {500, 2000}, {1, 1}, {1024, 768}, {640, 480}, {2000, 300}};
    image_rgb img[N];
    crop_job job[N];
    memset(job, 0, sizeof job);
    for (int i = 0; i < N; i++) {
        img[i] = random_image(sizes[i][0], sizes[i][1], 7u + (unsigned)i);
        job[i].img = &img[i];
        crop_pool_queue(p, &job[i]);
    }
    for (int i = 0; i < N; i++) {
        ty_err err = {0};
        crop_set want;
        const crop_set *got = NULL;
        CHECK(crop_set_make(&want, &img[i], &err) == TY_OK);
        CHECK_MSG(crop_job_get(&job[i], &got, &err) == TY_OK && got, "%s", err.msg);
        if (got) CHECK_MSG(same_crops(got, &want), "image %d (%dx%d)", i, sizes[i][0], sizes[i][1]);
        crop_set_free(&want);
    }
    for (int i = 0; i < N; i++) {
        crop_job_release(&job[i]);
        CHECK(job[i].state == CROP_IDLE && !job[i].crops.pix);
        image_rgb_free(&img[i]);
    }
    CHECK(crop_pool_ahead(p) == 0);
}

// One worker, two images ahead: the third waits until one is released;
// released jobs anywhere in their life leave nothing behind.
static void test_bounded_and_released(void) {
    crop_pool *p = NULL;
    ty_err err = {0};
    CHECK(crop_pool_init(&p, 1, 2, &err) == TY_OK);
    if (!p) return;
    CHECK(crop_pool_threads(p) == 1);
    enum { N = 6 };
    image_rgb img[N];
    crop_job job[N];
    memset(job, 0, sizeof job);
    for (int i = 0; i < N; i++) {
        img[i] = random_image(640, 480, 100u + (unsigned)i);
        job[i].img = &img[i];
        crop_pool_queue(p, &job[i]);
    }
    crop_job_release(&job[5]);  // still queued: taken off, never made
    CHECK(wait_ahead(p, 2) == 2);
    usleep(100000);
    CHECK(crop_pool_ahead(p) == 2);  // no third one while two are held
    const crop_set *cs;
    CHECK(crop_job_get(&job[0], &cs, &err) == TY_OK);
    crop_job_release(&job[0]);      // made: freed, and the worker goes on to job 2
    CHECK(wait_ahead(p, 2) == 2);
    crop_job_release(&job[3]);      // queued or running: either way nothing is left
    CHECK(crop_job_get(&job[4], &cs, &err) == TY_OK && cs->n_crops > 1);  // made here or by the worker
    for (int i = N - 1; i >= 0; i--) crop_job_release(&job[i]);
    CHECK(crop_pool_ahead(p) == 0);
    crop_pool_free(p);
    for (int i = 0; i < N; i++) image_rgb_free(&img[i]);
}

// A job whose image cannot be cropped fails with its own error, again when
// asked again, and its neighbours do not notice.
static void test_failure_alone(crop_pool *p) {
    image_rgb bad = {0}, good = random_image(400, 300, 5);
    crop_job job[3];
    memset(job, 0, sizeof job);
    job[0].img = &good;
    job[1].img = &bad;
    job[2].img = &good;
    for (int i = 0; i < 3; i++) crop_pool_queue(p, &job[i]);
    const crop_set *cs = NULL;
    ty_err err = {0};
    CHECK(crop_job_get(&job[1], &cs, &err) == TY_E_ARG && !cs && err.msg[0]);
    memset(&err, 0, sizeof err);
    CHECK(crop_job_get(&job[1], &cs, &err) == TY_E_ARG && err.msg[0]);
    CHECK(crop_job_get(&job[0], &cs, &err) == TY_OK && cs && cs->n_crops >= 1);
    CHECK(crop_job_get(&job[2], &cs, &err) == TY_OK && cs && cs->n_crops >= 1);
    for (int i = 0; i < 3; i++) crop_job_release(&job[i]);
    image_rgb_free(&good);
}

// A job never queued (a repeat image, or no pool) is made by whoever asks.
static void test_never_queued(void) {
    image_rgb img = random_image(800, 600, 9);
    crop_job job = {.img = &img};
    const crop_set *cs = NULL;
    ty_err err = {0};
    CHECK(crop_job_get(&job, &cs, &err) == TY_OK && cs && cs->n_crops == 1 + cs->rows * cs->cols);
    crop_job_release(&job);
    crop_job_release(&job);  // twice is harmless
    CHECK(!job.crops.pix);
    image_rgb_free(&img);
}

int main(void) {
    ty_err err = {0};
    CHECK(image_init(&err) == TY_OK);
    crop_pool *a = NULL, *b = NULL;
    CHECK(crop_pool_init(&a, 2, 64, &err) == TY_OK);
    CHECK(crop_pool_init(&b, 0, 4, &err) == TY_OK);  // default thread count
    if (a && b) {
        CHECK(crop_pool_threads(b) >= 1 && crop_pool_threads(b) <= 4);
        test_matches_inline(a);
        test_matches_inline(b);
        test_failure_alone(a);
    }
    crop_pool_free(a);
    crop_pool_free(b);
    test_bounded_and_released();
    test_never_queued();
    return test_report("test_crop_pool");
}
