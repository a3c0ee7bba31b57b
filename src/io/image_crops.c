// Moondream's tiling and crops (moondream.md §4): which grid of overlapping
// 378x378 tiles covers an image, the two resized images the crops are cut
// from, and the byte -> bf16 normalisation table of §4.2.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "io/image.h"

// The reference's select_tiling on the image size minus the margins. Python
// evaluates it in doubles (true division, math.sqrt/floor/ceil), and so do we:
// every quantity below is an exact small integer or the same IEEE operation.
static image_tiling select_tiling(double h, double w, double window, int max_crops) {
    if (h <= window || w <= window) return (image_tiling){1, 1};
    int min_h = (int)ceil(h / window);
    int min_w = (int)ceil(w / window);
    if (min_h * min_w > max_crops) {
        double ratio = sqrt((double)max_crops / (double)(min_h * min_w));
        int rh = (int)floor(min_h * ratio), rw = (int)floor(min_w * ratio);
        return (image_tiling){rh > 1 ? rh : 1, rw > 1 ? rw : 1};
    }
    int h_tiles = (int)floor(sqrt(max_crops * h / w));
    int w_tiles = (int)floor(sqrt(max_crops * w / h));
    if (h_tiles < min_h) h_tiles = min_h;
    if (w_tiles < min_w) w_tiles = min_w;
    if (h_tiles * w_tiles > max_crops) {
        if (w_tiles > h_tiles)
            w_tiles = (int)floor((double)max_crops / h_tiles);
        else
            h_tiles = (int)floor((double)max_crops / w_tiles);
    }
    return (image_tiling){h_tiles > 1 ? h_tiles : 1, w_tiles > 1 ? w_tiles : 1};
}

image_tiling image_select_tiling(int height, int width) {
    // (double)(n - 112) is exact for every int n, so this matches Python's
    // int arithmetic followed by true division.
    return select_tiling((double)height - IMAGE_CROP_MARGIN, (double)width - IMAGE_CROP_MARGIN, IMAGE_CROP_WINDOW,
                         IMAGE_MAX_CROPS);
}

ty_status image_make_crops(image_crops *out, const image_rgb *img, ty_err *err) {
    if (!out) return ty_err_set(err, TY_E_ARG, "image: no output crops");
    memset(out, 0, sizeof *out);
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0)
        return ty_err_set(err, TY_E_ARG, "image: no pixels to crop");
    image_tiling t = image_select_tiling(img->height, img->width);
    // Both come from the original image, not one from the other (§4 step 4).
    int rh = t.rows * IMAGE_CROP_WINDOW + IMAGE_CROP_MARGIN;
    int rw = t.cols * IMAGE_CROP_WINDOW + IMAGE_CROP_MARGIN;
    ty_status st = image_resize(&out->resized, img, rw, rh, err);
    if (!st) st = image_resize(&out->global, img, IMAGE_CROP_SIZE, IMAGE_CROP_SIZE, err);
    if (st) {
        image_crops_free(out);
        return st;
    }
    out->tiling = t;
    out->n_crops = 1 + t.rows * t.cols;
    return TY_OK;
}

void image_crops_free(image_crops *c) {
    if (!c) return;
    image_rgb_free(&c->global);
    image_rgb_free(&c->resized);
    memset(c, 0, sizeof *c);
}

void image_crop_copy(const image_crops *c, int index, uint8_t *dst) {
    const size_t row = (size_t)IMAGE_CROP_SIZE * 3;
    if (index < 0 || index >= c->n_crops) {  // no such crop: a defined (black) result, not a wild read
        memset(dst, 0, row * IMAGE_CROP_SIZE);
        return;
    }
    if (index == 0) {
        memcpy(dst, c->global.rgb, row * IMAGE_CROP_SIZE);
        return;
    }
    int i = (index - 1) / c->tiling.cols, j = (index - 1) % c->tiling.cols;
    int y0 = i * IMAGE_CROP_WINDOW, x0 = j * IMAGE_CROP_WINDOW;
    // The reference copies what lies inside the resized image into a zeroed
    // crop; with an exactly sized resize (which image_make_crops checks) the
    // window always fits, but keep its semantics so an edge can never overrun.
    int h = c->resized.height - y0, w = c->resized.width - x0;
    if (h > IMAGE_CROP_SIZE) h = IMAGE_CROP_SIZE;
    if (w > IMAGE_CROP_SIZE) w = IMAGE_CROP_SIZE;
    if (h < 0) h = 0;
    if (w < 0) w = 0;
    memset(dst, 0, row * IMAGE_CROP_SIZE);
    for (int y = 0; y < h; y++)
        memcpy(dst + (size_t)y * row, c->resized.rgb + ((size_t)(y0 + y) * (size_t)c->resized.width + (size_t)x0) * 3,
               (size_t)w * 3);
}

void image_norm_lut(uint16_t lut[256]) {
    // The reference converts the uint8 crops to bf16 and then runs three
    // in-place bf16 ops (/255, -0.5, /0.5), each rounded to bf16.
    for (int v = 0; v < 256; v++) {
        float a = bf16_to_f32(f32_to_bf16((float)v / 255.0f));
        float b = bf16_to_f32(f32_to_bf16(a - 0.5f));
        lut[v] = f32_to_bf16(b / 0.5f);
    }
}
