// libFuzzer target for image decoding and cropping: any bytes must give
// either an image or an error, never a crash, sanitizer report or leak.
// Seed it with tests/data/golden/images/ (and tests/fuzz/corpus_image/ if kept).
#include <stdint.h>
#include <stdlib.h>

#include "io/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // Small limits keep each run fast; the limit checks themselves are on the path.
    image_limits lim = {.max_encoded_bytes = 1 << 20, .max_pixels = 4 << 20};
    image_rgb img;
    ty_err err;
    if (image_decode(&img, data, size, &lim, &err) != TY_OK) return 0;
    if ((int64_t)img.width * img.height <= (1 << 20)) {
        image_crops c;
        if (image_make_crops(&c, &img, &err) == TY_OK) {
            uint8_t *crop = malloc((size_t)IMAGE_CROP_SIZE * IMAGE_CROP_SIZE * 3);
            if (crop)
                for (int i = 0; i < c.n_crops; i++) image_crop_copy(&c, i, crop);
            free(crop);
            image_crops_free(&c);
        }
    }
    image_rgb_free(&img);
    return 0;
}
