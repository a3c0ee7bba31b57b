// --draw: box outlines and point dots land where the normalised coordinates
// say, inside stays untouched, and boxes or points off the image (or NaN)
// are clipped without touching memory outside the buffer.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/image_draw.h"
#include "test.h"

static const uint8_t *px(const image_rgb *img, int x, int y) { return img->rgb + ((size_t)y * img->width + x) * 3; }
static int is_white(const uint8_t *p) { return p[0] == 255 && p[1] == 255 && p[2] == 255; }

int main(void) {
    image_rgb img = {.width = 100, .height = 50};
    img.rgb = malloc((size_t)100 * 50 * 3);
    memset(img.rgb, 255, (size_t)100 * 50 * 3);
    double boxes[3][4] = {{0.1, 0.2, 0.5, 0.8}, {-3, -3, 9, 9}, {NAN, 0, 1, NAN}};
    image_draw_boxes(&img, boxes, 3);
    CHECK(!is_white(px(&img, 10, 30)) && px(&img, 10, 30)[0] == 255 && px(&img, 10, 30)[1] == 0);  // left edge
    CHECK(!is_white(px(&img, 30, 10)));  // top edge (y0 = 10)
    CHECK(!is_white(px(&img, 49, 30)));  // right edge (x1 = 50, drawn inward)
    CHECK(is_white(px(&img, 30, 25)));   // inside
    CHECK(is_white(px(&img, 80, 5)));    // elsewhere
    memset(img.rgb, 255, (size_t)100 * 50 * 3);
    double pts[3][2] = {{0.5, 0.5}, {2.0, -1.0}, {NAN, NAN}};
    image_draw_points(&img, pts, 3);
    CHECK(!is_white(px(&img, 50, 25)) && !is_white(px(&img, 52, 25)));
    CHECK(is_white(px(&img, 5, 5)) && is_white(px(&img, 95, 45)));
    free(img.rgb);
    return test_report("test_image_draw");
}
