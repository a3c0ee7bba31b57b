// Image patches from 8-bit pixels (backend.h: patches): one patch row per pool
// task, each value a table lookup, so the result is exact and order-free.
#include "backend/cpu/cpu.h"

typedef struct {
    ty_tensor y;
    const uint8_t *pixels;
    int h, w, ch, p;
    const float *lut;
} patches_job;

static void patch_row(void *ctx, int r) {
    const patches_job *j = ctx;
    int gh = j->h / j->p, gw = j->w / j->p, per = gh * gw;
    int img = r / per, py = r % per / gw, px = r % gw;
    const uint8_t *src = j->pixels + (size_t)img * j->h * j->w * j->ch;
    float *y = cpu_row(j->y, r);
    for (int c = 0; c < j->ch; c++)
        for (int dy = 0; dy < j->p; dy++) {
            const uint8_t *line = src + ((size_t)(py * j->p + dy) * j->w + (size_t)px * j->p) * j->ch + c;
            for (int dx = 0; dx < j->p; dx++) *y++ = j->lut[line[(size_t)dx * j->ch]];
        }
}

void cpu_patches(ty_backend *be, ty_tensor y, const uint8_t *pixels, int n, int h, int w, int ch, int p,
                 const float lut[256]) {
    patches_job j = {y, pixels, h, w, ch, p, lut};
    pool_run(cpu_of(be)->pool, n * (h / p) * (w / p), patch_row, &j);
}
