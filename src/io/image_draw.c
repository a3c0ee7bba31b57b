// Drawing detect boxes and points onto an image, so people can look at results
// (tycho detect/point --draw). Plain loops over the packed RGB buffer: outlines
// and discs need no resampling, so a library round trip would add only copies.
#include "io/image_draw.h"

#include <math.h>

static const uint8_t palette[6][3] = {{255, 0, 255}, {0, 200, 255}, {255, 140, 0},
                                      {0, 220, 0},   {255, 0, 0},   {0, 0, 0}};

static void put(image_rgb *img, int x, int y, const uint8_t c[3]) {
    if (x < 0 || y < 0 || x >= img->width || y >= img->height) return;
    uint8_t *p = img->rgb + ((size_t)y * img->width + x) * 3;
    p[0] = c[0];
    p[1] = c[1];
    p[2] = c[2];
}

// Line width in pixels: visible on large images, not overwhelming on small ones.
static int stroke(const image_rgb *img) {
    int s = (img->width > img->height ? img->width : img->height) / 250;
    return s < 2 ? 2 : s;
}

static int to_px(double v, int size) {
    double p = floor(v * size);
    if (isnan(p) || p < -1e6) return -1000000;  // off the image: nothing of it is drawn
    return p > 1e6 ? 1000000 : (int)p;
}

void image_draw_boxes(image_rgb *img, const double (*boxes)[4], int n) {
    int t = stroke(img);
    for (int i = 0; i < n; i++) {
        const uint8_t *c = palette[i % 6];
        int x0 = to_px(boxes[i][0], img->width), y0 = to_px(boxes[i][1], img->height);
        int x1 = to_px(boxes[i][2], img->width), y1 = to_px(boxes[i][3], img->height);
        // Only the part of the outline inside the image is drawn.
        int xa = x0 < 0 ? 0 : x0, xb = x1 >= img->width ? img->width - 1 : x1;
        int ya = y0 < 0 ? 0 : y0, yb = y1 >= img->height ? img->height - 1 : y1;
        for (int k = 0; k < t; k++) {
            for (int x = xa; x <= xb; x++) {
                put(img, x, y0 + k, c);
                put(img, x, y1 - k, c);
            }
            for (int y = ya; y <= yb; y++) {
                put(img, x0 + k, y, c);
                put(img, x1 - k, y, c);
            }
        }
    }
}

void image_draw_points(image_rgb *img, const double (*points)[2], int n) {
    int r = 2 * stroke(img) + 2;
    static const uint8_t white[3] = {255, 255, 255};
    for (int i = 0; i < n; i++) {
        const uint8_t *c = palette[i % 6];
        int cx = to_px(points[i][0], img->width), cy = to_px(points[i][1], img->height);
        if (cx < -r || cy < -r || cx > img->width + r || cy > img->height + r) continue;
        for (int dy = -r - 1; dy <= r + 1; dy++)
            for (int dx = -r - 1; dx <= r + 1; dx++) {
                int d2 = dx * dx + dy * dy;
                if (d2 <= r * r)
                    put(img, cx + dx, cy + dy, c);
                else if (d2 <= (r + 1) * (r + 1) + r)
                    put(img, cx + dx, cy + dy, white);  // a rim keeps the dot visible on any colour
            }
    }
}
