// Image input for the vision tower: decode JPEG / PNG / WebP / GIF bytes to
// packed RGB exactly as the reference's PIL `Image.convert("RGB")` would, then
// compute Moondream's tiling and crops (docs moondream.md §4) with libvips'
// resize, the reference's own (pyvips) resampling path, so crops match it
// pixel for pixel.
//
// Every function is safe to call from many threads at once: there is no
// mutable global state besides libvips' one-time initialisation, which the
// module does itself (image_init is optional; it only moves that cost and
// its possible failure to start-up).
#ifndef TYCHO_IO_IMAGE_H
#define TYCHO_IO_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

// Moondream's crop geometry (§4 step 2), in pixels.
enum {
    IMAGE_CROP_SIZE = 378,      // side of every crop fed to the vision tower (27 patches of 14)
    IMAGE_CROP_WINDOW = 266,    // stride between local crops: (27 - 2 * 4) * 14
    IMAGE_CROP_MARGIN = 112,    // 4 patches of overlap on each side, both sides together
    IMAGE_MAX_CROPS = 12,       // most local crops select_tiling allows
};

typedef struct {
    int width, height;
    uint8_t *rgb;  // (height, width, 3) uint8 RGB, rows packed, malloc'd
} image_rgb;

// Checked before any pixel is decoded, so oversized input fails fast.
typedef struct {
    size_t max_encoded_bytes;  // size of the compressed file
    int64_t max_pixels;        // width * height as the file's header declares it
} image_limits;

// 64 MiB encoded and 128 Mpx (about 384 MB of RGB while decoding): room for
// a 108 Mpx phone photo, not for a decompression bomb.
image_limits image_limits_default(void);

// Initialises libvips once per process (thread-safe; every other function
// calls it too). Fails only if libvips itself cannot start.
ty_status image_init(ty_err *err);

// Decodes an encoded JPEG, PNG, WebP or GIF (first frame) into out, converted
// to RGB as PIL's convert("RGB") does: alpha dropped without compositing, gray
// replicated, palette looked up (tRNS ignored), 1/2/4-bit gray scaled to 0..255,
// no EXIF rotation, no ICC transform. Where PIL is odd or out of reach:
//  - 16-bit samples keep their high byte. That is PIL for RGB, RGBA and LA;
//    for plain 16-bit gray PIL clips (v > 255 -> 255, a near-white image) and
//    we deliberately do not.
//  - CMYK JPEG: PIL's naive formula, R = (255 - K) - round((255 - K) * C / 255)
//    (its MULDIV255 integer rounding) on the Adobe-inverted samples, as PIL.
//  - GIF: transparent pixels come out as libvips gives them (black) where PIL
//    shows the palette colour of the transparent index.
//  - JPEG pixels come from libjpeg-turbo (ISLOW IDCT, fancy upsampling), the
//    decoder PIL uses too; the golden JPEG decodes identically.
// lim may be NULL (defaults).
// On failure out is left empty ({0, 0, NULL}) and err says why:
// TY_E_FORMAT (not an image, corrupt or truncated), TY_E_UNSUPPORTED (another
// image format, or a sample layout tycho does not read), TY_E_LIMIT, TY_E_NOMEM.
ty_status image_decode(image_rgb *out, const uint8_t *bytes, size_t len, const image_limits *lim, ty_err *err);

// image_decode on the contents of a file (read with lim->max_encoded_bytes as the bound).
ty_status image_load_file(image_rgb *out, const char *path, const image_limits *lim, ty_err *err);

// Frees the pixels and resets img to empty; safe on an empty or zeroed image.
void image_rgb_free(image_rgb *img);

// Resizes in to width x height with libvips' vips_resize exactly as the
// reference's pyvips `image.resize(width / W, vscale=height / H)` does
// (Lanczos3 when shrinking, bicubic when enlarging, fixed-point uchar).
ty_status image_resize(image_rgb *out, const image_rgb *in, int width, int height, ty_err *err);

// Writes img as an 8-bit RGB PNG (lossless, so its pixels read back unchanged).
ty_status image_write_png(const image_rgb *img, const char *path, ty_err *err);

typedef struct {
    int rows, cols;
} image_tiling;

// The reference's select_tiling (§4 step 3) for an image of height x width:
// run on (height - 112, width - 112), window 266, at most 12 crops, in doubles.
image_tiling image_select_tiling(int height, int width);

// The crops of one image: crop 0 is `global` (the whole image squashed to
// 378x378); local crop 1 + i * cols + j is the 378x378 window at
// (266 * i, 266 * j) of `resized` (the whole image resized to
// (rows * 266 + 112, cols * 266 + 112)). Windows are not copied here.
typedef struct {
    image_tiling tiling;
    int n_crops;        // 1 + rows * cols
    image_rgb global;   // (378, 378, 3) uint8 RGB
    image_rgb resized;  // (rows * 266 + 112, cols * 266 + 112, 3) uint8 RGB
} image_crops;

// Computes the tiling and both resized images from img (any size >= 1x1).
ty_status image_make_crops(image_crops *out, const image_rgb *img, ty_err *err);

void image_crops_free(image_crops *c);

// Copies crop `index` (0 <= index < n_crops) to dst, (378, 378, 3) uint8 RGB;
// an index out of range gives a black crop.
void image_crop_copy(const image_crops *c, int index, uint8_t *dst);

// The reference's pixel normalisation (§4.2) as a table: lut[v] is the bf16
// bit pattern of bf(bf(bf(v / 255) - 0.5) * 2), the value the vision tower
// sees for byte v in any channel.
void image_norm_lut(uint16_t lut[256]);

#endif
