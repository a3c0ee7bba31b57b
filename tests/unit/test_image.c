// Image decoding, tiling and crops against the golden preprocessing data
// (libvips 8.14 output of the reference's pyvips path), the §4 worked
// examples, PIL-style mode conversions and bad input of every kind.
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <vips/vips.h>

#include "core/file.h"
#include "core/half.h"
#include "io/image.h"
#include "test.h"

// ---- helpers ----------------------------------------------------------------

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Number of differing samples between two images (-1 if their sizes differ).
static long count_diff(const image_rgb *a, const image_rgb *b, int *max_abs) {
    *max_abs = 0;
    if (a->width != b->width || a->height != b->height) return -1;
    long n = 0;
    size_t total = (size_t)a->width * (size_t)a->height * 3;
    for (size_t k = 0; k < total; k++) {
        int d = abs((int)a->rgb[k] - (int)b->rgb[k]);
        if (d) n++;
        if (d > *max_abs) *max_abs = d;
    }
    return n;
}

static const uint8_t *px(const image_rgb *img, int y, int x) {
    return img->rgb + ((size_t)y * (size_t)img->width + (size_t)x) * 3;
}

static int px_is(const image_rgb *img, int y, int x, int r, int g, int b) {
    const uint8_t *p = px(img, y, x);
    return p[0] == r && p[1] == g && p[2] == b;
}

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put_u32be(bytes *b, uint32_t v) {
    uint8_t q[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, q, 4);
}

static uint32_t crc32_of(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void png_chunk(bytes *b, const char *type, const uint8_t *data, size_t n) {
    put_u32be(b, (uint32_t)n);
    bytes t = {0};
    put(&t, type, 4);
    if (n) put(&t, data, n);
    put(b, t.p, t.n);
    put_u32be(b, crc32_of(t.p, t.n));
    free(t.p);
}

// A PNG built by hand (IHDR [PLTE] [tRNS] IDAT IEND, zlib "stored" blocks), so
// tests control bit depth, colour type and header fields exactly. raw holds the
// scanlines, each led by filter byte 0.
static bytes png_make(uint32_t w, uint32_t h, int depth, int ctype, const uint8_t *raw, size_t raw_len,
                      const uint8_t *plte, size_t plte_len, const uint8_t *trns, size_t trns_len) {
    bytes b = {0};
    put(&b, "\x89PNG\r\n\x1a\n", 8);
    uint8_t ihdr[13] = {(uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w,
                        (uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h,
                        (uint8_t)depth,     (uint8_t)ctype,     0,                 0,
                        0};
    png_chunk(&b, "IHDR", ihdr, 13);
    if (plte) png_chunk(&b, "PLTE", plte, plte_len);
    if (trns) png_chunk(&b, "tRNS", trns, trns_len);
    bytes z = {0};
    put(&z, "\x78\x01", 2);
    size_t off = 0;
    do {
        size_t n = raw_len - off > 65535 ? 65535 : raw_len - off;
        uint8_t hdr[5] = {off + n == raw_len, (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)~n, (uint8_t)(~n >> 8)};
        put(&z, hdr, 5);
        if (n) put(&z, raw + off, n);
        off += n;
    } while (off < raw_len);
    uint32_t a = 1, s = 0;
    for (size_t i = 0; i < raw_len; i++) {
        a = (a + raw[i]) % 65521;
        s = (s + a) % 65521;
    }
    put_u32be(&z, (s << 16) | a);
    png_chunk(&b, "IDAT", z.p, z.n);
    free(z.p);
    png_chunk(&b, "IEND", NULL, 0);
    return b;
}

static ty_status decode(image_rgb *out, const bytes *b, ty_err *err) {
    return image_decode(out, b->p, b->n, NULL, err);
}

// ---- §4 tiling table and §4.2 LUT ---------------------------------------------

static void test_select_tiling(void) {
    static const struct {
        int w, h, rows, cols;
    } cases[] = {
        {378, 378, 1, 1},   {224, 224, 1, 1},   {3000, 300, 1, 1},  {640, 480, 2, 4},    {800, 600, 2, 4},
        {1280, 720, 2, 4},  {1920, 1080, 2, 4}, {4032, 3024, 2, 4}, {1024, 768, 3, 4},   {1000, 1000, 3, 3},
        {500, 2000, 6, 1},  {1, 1, 1, 1},       {96, 64, 1, 1},     {20000, 20000, 3, 3}, {378, 379, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        image_tiling t = image_select_tiling(cases[i].h, cases[i].w);
        CHECK_MSG(t.rows == cases[i].rows && t.cols == cases[i].cols, "%dx%d: got (%d,%d), want (%d,%d)", cases[i].w,
                  cases[i].h, t.rows, t.cols, cases[i].rows, cases[i].cols);
    }
    // Never more than 12 local crops, never fewer than one, for any size.
    int bad = 0;
    for (int h = 1; h < 6000; h += 37)
        for (int w = 1; w < 6000; w += 41) {
            image_tiling t = image_select_tiling(h, w);
            if (t.rows < 1 || t.cols < 1 || t.rows * t.cols > IMAGE_MAX_CROPS) bad++;
        }
    CHECK_MSG(bad == 0, "%d sizes gave an out-of-range tiling", bad);
}

static void test_norm_lut(void) {
    uint16_t lut[256];
    image_norm_lut(lut);
    static const struct {
        int v;
        float want;
    } samples[] = {{0, -1.0f},           {1, -0.9921875f},   {2, -0.984375f},  {64, -0.49609375f}, {127, -0.00390625f},
                   {128, 0.0078125f},    {129, 0.015625f},   {200, 0.5703125f}, {254, 0.9921875f}, {255, 1.0f}};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++)
        CHECK_MSG(bf16_to_f32(lut[samples[i].v]) == samples[i].want, "lut[%d] = %.9g, want %.9g", samples[i].v,
                  bf16_to_f32(lut[samples[i].v]), samples[i].want);
    int increasing = 1;
    for (int v = 1; v < 256; v++) increasing &= bf16_to_f32(lut[v]) > bf16_to_f32(lut[v - 1]);
    CHECK_MSG(increasing, "the 256 LUT values are not all distinct and increasing");
}

// ---- golden parity ------------------------------------------------------------

static void check_same(const char *what, const image_rgb *got, const image_rgb *want) {
    int maxd;
    long n = count_diff(got, want, &maxd);
    CHECK_MSG(n == 0, "%s: %ld samples differ (max |diff| %d; sizes %dx%d vs %dx%d)", what, n, maxd, got->width,
              got->height, want->width, want->height);
}

static void test_golden(void) {
    uint8_t *json;
    size_t len;
    ty_err err = {0};
    if (file_read_all(TEST_DATA("golden/images.json"), 1 << 20, &json, &len, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    cJSON *root = cJSON_Parse((const char *)json);
    free(json);
    cJSON *images = cJSON_GetObjectItem(root, "images");
    CHECK(cJSON_GetArraySize(images) == 7);
    uint8_t *crop = malloc(IMAGE_CROP_SIZE * IMAGE_CROP_SIZE * 3);
    uint8_t *window = malloc(IMAGE_CROP_SIZE * IMAGE_CROP_SIZE * 3);
    cJSON *it;
    cJSON_ArrayForEach(it, images) {
        const char *name = it->string;
        char path[1024], what[300];
        snprintf(path, sizeof path, "%s/%s", TEST_DATA("golden"), cJSON_GetObjectItem(it, "file")->valuestring);
        image_rgb img;
        if (image_load_file(&img, path, NULL, &err)) {
            CHECK_MSG(0, "%s: %s", name, err.msg);
            continue;
        }
        CHECK(img.width == cJSON_GetObjectItem(it, "width")->valueint);
        CHECK(img.height == cJSON_GetObjectItem(it, "height")->valueint);
        image_crops c;
        if (image_make_crops(&c, &img, &err)) {
            CHECK_MSG(0, "%s: %s", name, err.msg);
            image_rgb_free(&img);
            continue;
        }
        cJSON *tiling = cJSON_GetObjectItem(it, "tiling"), *rhw = cJSON_GetObjectItem(it, "resized_hw");
        CHECK_MSG(c.tiling.rows == cJSON_GetArrayItem(tiling, 0)->valueint &&
                      c.tiling.cols == cJSON_GetArrayItem(tiling, 1)->valueint,
                  "%s: tiling (%d,%d)", name, c.tiling.rows, c.tiling.cols);
        CHECK_MSG(c.n_crops == cJSON_GetObjectItem(it, "n_crops")->valueint, "%s: n_crops %d", name, c.n_crops);
        CHECK_MSG(c.resized.height == cJSON_GetArrayItem(rhw, 0)->valueint &&
                      c.resized.width == cJSON_GetArrayItem(rhw, 1)->valueint,
                  "%s: resized %dx%d", name, c.resized.height, c.resized.width);
        CHECK(c.global.width == IMAGE_CROP_SIZE && c.global.height == IMAGE_CROP_SIZE);

        const char *kinds[2] = {"resized", "global"};
        const image_rgb *mine[2] = {&c.resized, &c.global};
        for (int k = 0; k < 2; k++) {
            snprintf(path, sizeof path, "%s/%s.%s.png", TEST_DATA("golden/preprocess"), name, kinds[k]);
            image_rgb want;
            if (image_load_file(&want, path, NULL, &err)) {
                CHECK_MSG(0, "%s", err.msg);
                continue;
            }
            snprintf(what, sizeof what, "%s %s", name, kinds[k]);
            check_same(what, mine[k], &want);
            image_rgb_free(&want);
        }

        // Crop 0 is the global image; crop 1 + i * cols + j the window at (266 i, 266 j).
        image_crop_copy(&c, 0, crop);
        CHECK(!memcmp(crop, c.global.rgb, IMAGE_CROP_SIZE * IMAGE_CROP_SIZE * 3));
        for (int i = 0; i < c.tiling.rows; i++)
            for (int j = 0; j < c.tiling.cols; j++) {
                image_crop_copy(&c, 1 + i * c.tiling.cols + j, crop);
                for (int y = 0; y < IMAGE_CROP_SIZE; y++)
                    memcpy(window + (size_t)y * IMAGE_CROP_SIZE * 3,
                           px(&c.resized, IMAGE_CROP_WINDOW * i + y, IMAGE_CROP_WINDOW * j), IMAGE_CROP_SIZE * 3);
                CHECK_MSG(!memcmp(crop, window, IMAGE_CROP_SIZE * IMAGE_CROP_SIZE * 3), "%s: crop (%d,%d)", name, i, j);
            }
        image_crop_copy(&c, c.n_crops, crop);  // out of range: black
        int black = 1;
        for (size_t k = 0; k < (size_t)IMAGE_CROP_SIZE * IMAGE_CROP_SIZE * 3; k++) black &= crop[k] == 0;
        CHECK(black);
        // §4 step 6: for a 1x1 tiling the single local crop equals the global one.
        if (c.n_crops == 2) {
            image_crop_copy(&c, 1, crop);
            CHECK_MSG(!memcmp(crop, c.global.rgb, IMAGE_CROP_SIZE * IMAGE_CROP_SIZE * 3), "%s: crop 1 != crop 0", name);
        }
        image_crops_free(&c);
        image_rgb_free(&img);
    }
    free(crop);
    free(window);
    cJSON_Delete(root);
}

// Odd sizes, up- and down-scaled, still resize to exactly the requested size
// (a sweep of 335k size pairs with libvips 8.14 found no exception; the
// reference would otherwise cut windows from a mis-sized image).
static void test_resize_sizes(void) {
    static const int sizes[][2] = {{1, 1}, {1, 5000}, {4999, 2}, {3, 7}, {113, 111}, {377, 379}, {643, 1023},
                                   {1500, 997}, {3001, 2047}, {4321, 113}};
    ty_err err;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int w = sizes[i][0], h = sizes[i][1];
        image_rgb src = {w, h, calloc((size_t)w * (size_t)h * 3, 1)};
        image_crops c;
        ty_status st = image_make_crops(&c, &src, &err);
        CHECK_MSG(st == TY_OK, "%dx%d: %s", w, h, err.msg);
        if (!st) {
            image_tiling t = image_select_tiling(h, w);
            CHECK(c.resized.height == t.rows * 266 + 112 && c.resized.width == t.cols * 266 + 112);
            image_crops_free(&c);
        }
        free(src.rgb);
    }
}

// ---- PIL-style conversions ------------------------------------------------------

static void test_png_modes(void) {
    ty_err err;
    image_rgb img;
    // 8-bit palette with tRNS: palette looked up, transparency ignored (PIL P -> RGB).
    {
        uint8_t plte[6] = {10, 20, 30, 200, 150, 100}, trns[1] = {0};
        uint8_t raw[] = {0, 0, 1, 0, 1, 0};  // 2x2: index 0 1 / 1 0
        bytes b = png_make(2, 2, 8, 3, raw, sizeof raw, plte, 6, trns, 1);
        CHECK(decode(&img, &b, &err) == TY_OK);
        CHECK(img.width == 2 && img.height == 2 && px_is(&img, 0, 0, 10, 20, 30) && px_is(&img, 0, 1, 200, 150, 100) &&
              px_is(&img, 1, 0, 200, 150, 100) && px_is(&img, 1, 1, 10, 20, 30));
        image_rgb_free(&img);
        free(b.p);
    }
    // 1-bit and 2-bit gray: expanded to 0/255 and multiples of 85 (PIL "1" and "L;2").
    {
        uint8_t raw1[] = {0, 0x80};  // 2x1: 1 0
        bytes b = png_make(2, 1, 1, 0, raw1, sizeof raw1, NULL, 0, NULL, 0);
        CHECK(decode(&img, &b, &err) == TY_OK && px_is(&img, 0, 0, 255, 255, 255) && px_is(&img, 0, 1, 0, 0, 0));
        image_rgb_free(&img);
        free(b.p);
        uint8_t raw2[] = {0, 0x1b};  // 4x1: 0 1 2 3
        b = png_make(4, 1, 2, 0, raw2, sizeof raw2, NULL, 0, NULL, 0);
        CHECK(decode(&img, &b, &err) == TY_OK && px_is(&img, 0, 0, 0, 0, 0) && px_is(&img, 0, 1, 85, 85, 85) &&
              px_is(&img, 0, 2, 170, 170, 170) && px_is(&img, 0, 3, 255, 255, 255));
        image_rgb_free(&img);
        free(b.p);
    }
    // Gray + alpha: gray replicated, alpha dropped (even where it is 0).
    {
        uint8_t raw[] = {0, 77, 0, 200, 255};
        bytes b = png_make(2, 1, 8, 4, raw, sizeof raw, NULL, 0, NULL, 0);
        CHECK(decode(&img, &b, &err) == TY_OK && px_is(&img, 0, 0, 77, 77, 77) && px_is(&img, 0, 1, 200, 200, 200));
        image_rgb_free(&img);
        free(b.p);
    }
    // RGBA: alpha dropped without compositing.
    {
        uint8_t raw[] = {0, 1, 2, 3, 0, 250, 251, 252, 128};
        bytes b = png_make(2, 1, 8, 6, raw, sizeof raw, NULL, 0, NULL, 0);
        CHECK(decode(&img, &b, &err) == TY_OK && px_is(&img, 0, 0, 1, 2, 3) && px_is(&img, 0, 1, 250, 251, 252));
        image_rgb_free(&img);
        free(b.p);
    }
    // 16-bit RGB, RGBA and gray: the high byte of each sample.
    {
        uint8_t raw[] = {0, 0x12, 0xff, 0x34, 0x01, 0xab, 0x80, 0x00, 0x00, 0xff, 0xff, 0x7f, 0xff};
        bytes b = png_make(2, 1, 16, 2, raw, sizeof raw, NULL, 0, NULL, 0);
        CHECK(decode(&img, &b, &err) == TY_OK && px_is(&img, 0, 0, 0x12, 0x34, 0xab) &&
              px_is(&img, 0, 1, 0x00, 0xff, 0x7f));
        image_rgb_free(&img);
        free(b.p);
        uint8_t rawa[] = {0, 0x12, 0xff, 0x34, 0x01, 0xab, 0x80, 0x00, 0x00};
        b = png_make(1, 1, 16, 6, rawa, sizeof rawa, NULL, 0, NULL, 0);
        CHECK(decode(&img, &b, &err) == TY_OK && px_is(&img, 0, 0, 0x12, 0x34, 0xab));
        image_rgb_free(&img);
        free(b.p);
        uint8_t rawg[] = {0, 0x9a, 0xbc, 0x00, 0xff};
        b = png_make(2, 1, 16, 0, rawg, sizeof rawg, NULL, 0, NULL, 0);
        CHECK(decode(&img, &b, &err) == TY_OK && px_is(&img, 0, 0, 0x9a, 0x9a, 0x9a) && px_is(&img, 0, 1, 0, 0, 0));
        image_rgb_free(&img);
        free(b.p);
    }
    // 1x1 is a valid image: it decodes and gets a 1x1 tiling of a flat 378x378 crop.
    {
        uint8_t raw[] = {0, 9, 99, 199};
        bytes b = png_make(1, 1, 8, 2, raw, sizeof raw, NULL, 0, NULL, 0);
        CHECK(decode(&img, &b, &err) == TY_OK && img.width == 1 && img.height == 1);
        image_crops c;
        CHECK(image_make_crops(&c, &img, &err) == TY_OK);
        CHECK(c.n_crops == 2 && c.resized.width == 378 && c.resized.height == 378);
        int flat = 1;
        for (int y = 0; y < 378; y++)
            for (int x = 0; x < 378; x++) flat &= px_is(&c.global, y, x, 9, 99, 199);
        CHECK_MSG(flat, "1x1 image did not resize to a flat crop");
        image_crops_free(&c);
        image_rgb_free(&img);
        free(b.p);
    }
}

// Saves a libvips image to a buffer with the named saver; returns 0 on success.
static int save_with(VipsImage *im, const char *saver, bytes *out, const char *opts) {
    void *buf = NULL;
    size_t len = 0;
    int rc;
    if (!strcmp(saver, "jpeg"))
        rc = vips_jpegsave_buffer(im, &buf, &len, "Q", 100, NULL);
    else if (!strcmp(saver, "webp"))
        rc = vips_webpsave_buffer(im, &buf, &len, "lossless", TRUE, NULL);
    else if (!strcmp(saver, "gif"))
        rc = vips_gifsave_buffer(im, &buf, &len, "dither", 0.0, NULL);
    else
        rc = vips_tiffsave_buffer(im, &buf, &len, NULL);
    (void)opts;
    if (rc) {
        fprintf(stderr, "  %s save failed: %s\n", saver, vips_error_buffer());
        vips_error_clear();
        return -1;
    }
    out->p = malloc(len);
    memcpy(out->p, buf, len);
    out->n = len;
    g_free(buf);
    return 0;
}

// A w x h image of `bands` bands whose pixel (y, x) band k is f(y, x, k).
static VipsImage *make_vips(int w, int h, int bands, VipsInterpretation interp, int (*f)(int, int, int)) {
    uint8_t *p = malloc((size_t)w * h * bands);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < bands; k++) p[((size_t)y * w + x) * bands + k] = (uint8_t)f(y, x, k);
    VipsImage *m = vips_image_new_from_memory_copy(p, (size_t)w * h * bands, w, h, bands, VIPS_FORMAT_UCHAR);
    free(p);
    VipsImage *t = NULL;
    vips_copy(m, &t, "interpretation", interp, NULL);
    g_object_unref(m);
    return t;
}

static int quadrants(int y, int x, int k) {  // four flat colours, JPEG-friendly
    static const int q[4][4] = {{255, 0, 0, 0}, {0, 255, 0, 0}, {0, 0, 255, 64}, {0, 0, 0, 255}};
    return q[(y >= 32) * 2 + (x >= 32)][k];
}
static int ramp(int y, int x, int k) { return (y * 7 + x * 3 + k * 50) & 255; }
// Alpha 1 rather than 0: lossless WebP may rewrite the colour of fully transparent pixels.
static int ramp_alpha(int y, int x, int k) { return k == 3 ? ((x & 1) ? 255 : 1) : ramp(y, x, k); }
static int two_colours(int y, int x, int k) { return ((x / 4 + y / 4) & 1) ? (k == 0 ? 255 : 40) : (k == 2 ? 200 : 10); }

static int pil_cmyk(int v, int k) {  // Pillow's cmyk2rgb per channel
    int nk = 255 - k, t = v * nk + 128;
    return nk - (((t >> 8) + t) >> 8);
}

static void test_other_formats(void) {
    ty_err err;
    image_rgb img;
    bytes b = {0};
    // WebP lossless, with and without alpha: exact pixels, alpha dropped.
    for (int alpha = 0; alpha < 2; alpha++) {
        VipsImage *v = make_vips(40, 30, 3 + alpha, VIPS_INTERPRETATION_sRGB, alpha ? ramp_alpha : ramp);
        if (!save_with(v, "webp", &b, NULL)) {
            CHECK_MSG(decode(&img, &b, &err) == TY_OK, "webp: %s", err.msg);
            int ok = img.width == 40 && img.height == 30;
            for (int y = 0; ok && y < 30; y++)
                for (int x = 0; x < 40; x++) ok &= px_is(&img, y, x, ramp(y, x, 0), ramp(y, x, 1), ramp(y, x, 2));
            CHECK_MSG(ok, "webp (alpha %d) pixels differ", alpha);
            image_rgb_free(&img);
            free(b.p);
        } else {
            CHECK_MSG(0, "cannot make a WebP");
        }
        g_object_unref(v);
    }
    // GIF, two colours (kept exactly by the palette); animated: the first frame only.
    {
        VipsImage *v = make_vips(32, 48, 3, VIPS_INTERPRETATION_sRGB, two_colours);
        if (!save_with(v, "gif", &b, NULL)) {
            CHECK_MSG(decode(&img, &b, &err) == TY_OK, "gif: %s", err.msg);
            CHECK(img.width == 32 && img.height == 48 && px_is(&img, 0, 0, 10, 10, 200) && px_is(&img, 0, 4, 255, 40, 40));
            image_rgb_free(&img);
            free(b.p);
        } else {
            CHECK_MSG(0, "cannot make a GIF");
        }
        VipsImage *anim = NULL;
        vips_copy(v, &anim, NULL);
        vips_image_set_int(anim, "page-height", 16);  // three 32x16 frames
        if (!save_with(anim, "gif", &b, NULL)) {
            CHECK_MSG(decode(&img, &b, &err) == TY_OK, "animated gif: %s", err.msg);
            CHECK_MSG(img.width == 32 && img.height == 16, "animated gif decoded as %dx%d", img.width, img.height);
            image_rgb_free(&img);
            free(b.p);
        }
        g_object_unref(anim);
        g_object_unref(v);
    }
    // A transparent GIF pixel: libvips gives black where PIL would show the
    // palette entry (red here); pinned so a libvips change is noticed.
    {
        static const uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a', 2, 0, 1, 0, 0x80, 0, 0, 255, 0, 0, 0, 255, 0,
                                      0x21, 0xf9, 4, 1, 0, 0, 0, 0, ',', 0, 0, 0, 0, 2, 0, 1, 0, 0, 2, 2, 0x44,
                                      0x0a, 0, ';'};
        CHECK(image_decode(&img, gif, sizeof gif, NULL, &err) == TY_OK && img.width == 2 && img.height == 1 &&
              px_is(&img, 0, 0, 0, 0, 0) && px_is(&img, 0, 1, 0, 255, 0));
        image_rgb_free(&img);
    }
    // CMYK JPEG: PIL's naive formula on the decoded (Adobe-inverted) CMYK values.
    {
        VipsImage *v = make_vips(64, 64, 4, VIPS_INTERPRETATION_CMYK, quadrants);
        if (!save_with(v, "jpeg", &b, NULL)) {
            CHECK_MSG(decode(&img, &b, &err) == TY_OK, "cmyk jpeg: %s", err.msg);
            VipsImage *raw = NULL;
            VipsImage *mem = NULL;
            int ok = !vips_jpegload_buffer(b.p, b.n, &raw, NULL) && raw->Bands == 4 &&
                     raw->Type == VIPS_INTERPRETATION_CMYK && (mem = vips_image_copy_memory(raw));
            CHECK_MSG(ok, "libvips did not read the CMYK JPEG back as CMYK");
            for (int y = 0; ok && y < 64; y++)
                for (int x = 0; x < 64; x++) {
                    const uint8_t *c = (const uint8_t *)VIPS_IMAGE_ADDR(mem, x, y);
                    ok &= px_is(&img, y, x, pil_cmyk(c[0], c[3]), pil_cmyk(c[1], c[3]), pil_cmyk(c[2], c[3]));
                }
            CHECK_MSG(ok, "CMYK -> RGB is not PIL's formula");
            // Cyan is (0, 255, 255) and magenta (255, 0, 255), give or take the JPEG
            // rounding: catches an inverted-CMYK mix-up.
            const uint8_t *c0 = px(&img, 10, 10), *m0 = px(&img, 10, 50), *k0 = px(&img, 50, 50);
            CHECK_MSG(c0[0] < 8 && c0[1] > 247 && c0[2] > 247 && m0[0] > 247 && m0[1] < 8 && m0[2] > 247 && k0[0] < 8,
                      "CMYK colours wrong: cyan (%d,%d,%d) magenta (%d,%d,%d) black %d", c0[0], c0[1], c0[2], m0[0],
                      m0[1], m0[2], k0[0]);
            if (mem) g_object_unref(mem);
            if (raw) g_object_unref(raw);
            image_rgb_free(&img);
            free(b.p);
        } else {
            CHECK_MSG(0, "cannot make a CMYK JPEG");
        }
        g_object_unref(v);
    }
    // EXIF orientation is not applied: a JPEG tagged "rotate 90" keeps its stored shape.
    {
        VipsImage *v = make_vips(48, 16, 3, VIPS_INTERPRETATION_sRGB, ramp);
        vips_image_set_int(v, "orientation", 6);
        if (!save_with(v, "jpeg", &b, NULL)) {
            CHECK(decode(&img, &b, &err) == TY_OK && img.width == 48 && img.height == 16);
            image_rgb_free(&img);
            free(b.p);
        }
        g_object_unref(v);
    }
    // TIFF loads in libvips but is not one of ours.
    {
        VipsImage *v = make_vips(8, 8, 3, VIPS_INTERPRETATION_sRGB, ramp);
        if (!save_with(v, "tiff", &b, NULL)) {
            CHECK(decode(&img, &b, &err) == TY_E_UNSUPPORTED && strstr(err.msg, "TIFF"));
            CHECK(img.rgb == NULL);
            free(b.p);
        }
        g_object_unref(v);
    }
}

// ---- bad input ----------------------------------------------------------------

static void expect_fail(const char *what, const uint8_t *p, size_t n, const image_limits *lim, ty_status want,
                        const char *msg_part) {
    image_rgb img = {7, 7, (uint8_t *)&img};  // garbage: must be reset
    ty_err err = {0};
    ty_status st = image_decode(&img, p, n, lim, &err);
    CHECK_MSG(st == want, "%s: status %s, want %s (%s)", what, ty_status_name(st), ty_status_name(want), err.msg);
    CHECK_MSG(!msg_part || strstr(err.msg, msg_part), "%s: message '%s' lacks '%s'", what, err.msg, msg_part);
    CHECK_MSG(img.rgb == NULL && img.width == 0 && img.height == 0, "%s: output not empty", what);
    CHECK_MSG(strncmp(err.msg, "image: ", 7) == 0 && !strchr(err.msg, '\n'), "%s: message '%s'", what, err.msg);
}

static void test_bad_input(void) {
    expect_fail("empty", (const uint8_t *)"", 0, NULL, TY_E_FORMAT, "empty");
    expect_fail("NULL", NULL, 10, NULL, TY_E_FORMAT, "empty");
    uint8_t rnd[4096];
    uint32_t s = 12345;
    for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (uint8_t)((s = s * 1103515245u + 12345u) >> 16);
    expect_fail("random bytes", rnd, sizeof rnd, NULL, TY_E_FORMAT, "not a supported image format");
    expect_fail("BMP", (const uint8_t *)"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0", 14, NULL, TY_E_UNSUPPORTED, "BMP");
    const char *ppm = "P6\n2 2\n255\n\1\2\3\4\5\6\7\10\11\12\13\14";
    expect_fail("PPM", (const uint8_t *)ppm, strlen(ppm) + 1, NULL, TY_E_UNSUPPORTED, "PNM");
    // Valid magic, garbage after it.
    expect_fail("JPEG magic only", (const uint8_t *)"\xff\xd8\xff\xe0garbage", 11, NULL, TY_E_FORMAT, "JPEG");
    expect_fail("PNG magic only", (const uint8_t *)"\x89PNG\r\n\x1a\n", 8, NULL, TY_E_FORMAT, "PNG");
    expect_fail("GIF magic only", (const uint8_t *)"GIF89a", 6, NULL, TY_E_FORMAT, "GIF");
    expect_fail("WebP magic only", (const uint8_t *)"RIFF\0\0\0\0WEBPVP8 ", 16, NULL, TY_E_FORMAT, "WebP");

    // Truncated golden files, cut inside the pixel data and inside the header.
    const char *files[2] = {TEST_DATA("golden/images/d_1024x768.jpg"), TEST_DATA("golden/images/a_640x480.png")};
    const char *names[2] = {"JPEG", "PNG"};
    for (int f = 0; f < 2; f++) {
        uint8_t *p;
        size_t n;
        ty_err err;
        if (file_read_all(files[f], 1 << 24, &p, &n, &err)) {
            CHECK_MSG(0, "%s", err.msg);
            continue;
        }
        char what[64];
        const size_t cuts[] = {n / 2, n * 9 / 10, 40};
        for (int k = 0; k < 3; k++) {
            snprintf(what, sizeof what, "%s cut at %zu of %zu", names[f], cuts[k], n);
            expect_fail(what, p, cuts[k], NULL, TY_E_FORMAT, names[f]);
        }
        image_limits small = image_limits_default();
        small.max_encoded_bytes = n - 1;
        expect_fail("over the byte limit", p, n, &small, TY_E_LIMIT, "limit");
        small = image_limits_default();
        small.max_pixels = 1000;
        expect_fail("over the pixel limit", p, n, &small, TY_E_LIMIT, "limit");
        free(p);
    }

    // A decompression bomb: a 30000x30000 header over almost no data fails on
    // the header, fast and without allocating the pixels.
    uint8_t row0[1] = {0};
    bytes b = png_make(30000, 30000, 8, 2, row0, 1, NULL, 0, NULL, 0);
    double t0 = now_s();
    expect_fail("30000x30000 PNG", b.p, b.n, NULL, TY_E_LIMIT, "900000000 pixels");
    CHECK_MSG(now_s() - t0 < 0.5, "bomb check took %.3f s", now_s() - t0);
    free(b.p);
    // Zero width or height is a broken header.
    b = png_make(0, 5, 8, 2, row0, 1, NULL, 0, NULL, 0);
    expect_fail("0x5 PNG", b.p, b.n, NULL, TY_E_FORMAT, "PNG");
    free(b.p);
    // A 4x4 PNG whose IDAT holds one row: truncated pixel data.
    uint8_t one_row[13] = {0};
    b = png_make(4, 4, 8, 2, one_row, sizeof one_row, NULL, 0, NULL, 0);
    expect_fail("short IDAT", b.p, b.n, NULL, TY_E_FORMAT, "PNG");
    free(b.p);

    image_rgb img;
    ty_err err;
    CHECK(image_load_file(&img, TEST_DATA("golden/no-such-file.png"), NULL, &err) == TY_E_IO && img.rgb == NULL);
    CHECK(image_decode(NULL, rnd, 10, NULL, &err) == TY_E_ARG);
    image_crops c;
    CHECK(image_make_crops(&c, &(image_rgb){0}, &err) == TY_E_ARG);
    image_rgb_free(NULL);
    image_crops_free(NULL);
}

// ---- round trip and threads ----------------------------------------------------

static void test_write_png(void) {
    image_rgb img, back;
    ty_err err;
    CHECK(image_load_file(&img, TEST_DATA("golden/images/c_96x64.png"), NULL, &err) == TY_OK);
    char dir[] = "/tmp/tycho_test_image_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[64];
    snprintf(path, sizeof path, "%s/out.png", dir);
    CHECK_MSG(image_write_png(&img, path, &err) == TY_OK, "%s", err.msg);
    CHECK(image_load_file(&back, path, NULL, &err) == TY_OK);
    check_same("png round trip", &back, &img);
    snprintf(path, sizeof path, "%s/missing/out.png", dir);
    CHECK(image_write_png(&img, path, &err) == TY_E_IO);
    image_rgb_free(&back);
    image_rgb_free(&img);
    snprintf(path, sizeof path, "%s/out.png", dir);
    unlink(path);
    rmdir(dir);
}

typedef struct {
    const uint8_t *bytes;
    size_t len;
    const image_crops *want;
    int failures;
} thread_job;

static void *thread_main(void *arg) {
    thread_job *j = arg;
    for (int round = 0; round < 3; round++) {
        image_rgb img;
        ty_err err;
        image_crops c;
        if (image_decode(&img, j->bytes, j->len, NULL, &err) || image_make_crops(&c, &img, &err)) {
            j->failures++;
            continue;
        }
        size_t n = (size_t)c.resized.width * c.resized.height * 3;
        if (c.resized.width != j->want->resized.width || c.resized.height != j->want->resized.height ||
            memcmp(c.resized.rgb, j->want->resized.rgb, n) ||
            memcmp(c.global.rgb, j->want->global.rgb, IMAGE_CROP_SIZE * IMAGE_CROP_SIZE * 3))
            j->failures++;
        image_crops_free(&c);
        image_rgb_free(&img);
        // A failing decode in between must not disturb the others.
        if (image_decode(&img, j->bytes, j->len / 2, NULL, &err) != TY_E_FORMAT) j->failures++;
    }
    return NULL;
}

static void test_threads(void) {
    uint8_t *p;
    size_t n;
    ty_err err;
    image_rgb img;
    image_crops want;
    if (file_read_all(TEST_DATA("golden/images/d_1024x768.jpg"), 1 << 24, &p, &n, &err) ||
        image_decode(&img, p, n, NULL, &err) || image_make_crops(&want, &img, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    enum { N = 8 };
    pthread_t th[N];
    thread_job jobs[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (thread_job){p, n, &want, 0};
        pthread_create(&th[i], NULL, thread_main, &jobs[i]);
    }
    int failures = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        failures += jobs[i].failures;
    }
    CHECK_MSG(failures == 0, "%d concurrent decodes differed or failed", failures);
    image_crops_free(&want);
    image_rgb_free(&img);
    free(p);
}

int main(void) {
    ty_err err;
    CHECK_MSG(image_init(&err) == TY_OK, "%s", err.msg);
    test_select_tiling();
    test_norm_lut();
    test_golden();
    test_resize_sizes();
    test_png_modes();
    test_other_formats();
    test_bad_input();
    test_write_png();
    test_threads();
    return test_report("test_image");
}
