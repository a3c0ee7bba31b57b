// Decoding (libvips loaders, PIL-compatible RGB conversion), resizing and PNG
// output. Only the four formats Moondream's clients send are accepted; the
// format is recognised here from its magic bytes and the matching libvips
// loader is called directly, so none of libvips' other loaders (PDF, SVG,
// ImageMagick, ...) ever sees untrusted bytes.
#include "io/image.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>

#include "core/file.h"

image_limits image_limits_default(void) {
    return (image_limits){.max_encoded_bytes = (size_t)64 << 20, .max_pixels = (int64_t)1 << 27};
}

// ---- libvips start-up -----------------------------------------------------

static pthread_once_t vips_once = PTHREAD_ONCE_INIT;
static int vips_init_failed;

// libvips reports things like "error in tile 0 x 360" on stderr as GLib
// warnings besides returning an error; each failed request already carries its
// own message, so a server must not also spray stderr.
static void drop_log(const char *domain, GLogLevelFlags level, const char *msg, void *user) {}

static void vips_start(void) {
    if (VIPS_INIT("tycho")) {
        vips_init_failed = 1;
        return;
    }
    // The operation cache would keep every resized image (and, through it,
    // the caller's pixel buffer) alive after we return: turn it off.
    vips_cache_set_max(0);
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING, drop_log, NULL);
    // Belt and braces: we only call four trusted loaders by name, but this
    // also keeps libvips' untrusted ones (PDF, SVG, magick, ...) off if
    // anything in the process asks libvips to sniff a buffer.
    vips_block_untrusted_set(TRUE);
}

ty_status image_init(ty_err *err) {
    pthread_once(&vips_once, vips_start);
    if (vips_init_failed) return ty_err_set(err, TY_E_UNSUPPORTED, "image: libvips failed to initialise");
    return TY_OK;
}

// Fills err with "image: <what> (<libvips' first error line>)". The libvips
// error buffer is process-wide, so under concurrency the detail may come from
// another thread; our own text in front is what callers should rely on.
static ty_status vips_fail(ty_err *err, ty_status code, const char *what) {
    char *buf = vips_error_buffer_copy();  // copies and clears
    char detail[200] = "";
    if (buf) {
        size_t n = strcspn(buf, "\n");
        if (n >= sizeof detail) n = sizeof detail - 1;
        memcpy(detail, buf, n);
        detail[n] = '\0';
        g_free(buf);
    }
    if (detail[0]) return ty_err_set(err, code, "image: %s (%s)", what, detail);
    return ty_err_set(err, code, "image: %s", what);
}

// ---- format recognition ---------------------------------------------------

typedef enum { FMT_NONE, FMT_JPEG, FMT_PNG, FMT_WEBP, FMT_GIF } image_format;

static const char *format_name(image_format f) {
    switch (f) {
    case FMT_JPEG: return "JPEG";
    case FMT_PNG: return "PNG";
    case FMT_WEBP: return "WebP";
    case FMT_GIF: return "GIF";
    case FMT_NONE: break;
    }
    return "image";
}

static int has_prefix(const uint8_t *b, size_t len, const char *magic, size_t n) {
    return len >= n && memcmp(b, magic, n) == 0;
}

static image_format sniff_format(const uint8_t *b, size_t len) {
    if (has_prefix(b, len, "\xff\xd8\xff", 3)) return FMT_JPEG;
    if (has_prefix(b, len, "\x89PNG\r\n\x1a\n", 8)) return FMT_PNG;
    if (has_prefix(b, len, "GIF87a", 6) || has_prefix(b, len, "GIF89a", 6)) return FMT_GIF;
    if (len >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4)) return FMT_WEBP;
    return FMT_NONE;
}

// Names a few well-known formats we refuse, so the error says what was sent.
static const char *sniff_other(const uint8_t *b, size_t len) {
    if (has_prefix(b, len, "BM", 2)) return "BMP";
    if (has_prefix(b, len, "II*\0", 4) || has_prefix(b, len, "MM\0*", 4)) return "TIFF";
    if (len >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '7') return "PNM";
    if (len >= 12 && !memcmp(b + 4, "ftyp", 4)) {
        if (!memcmp(b + 8, "avif", 4) || !memcmp(b + 8, "avis", 4)) return "AVIF";
        return "HEIF";
    }
    if (has_prefix(b, len, "\xff\x0a", 2) || has_prefix(b, len, "\0\0\0\x0cJXL ", 8)) return "JPEG XL";
    if (has_prefix(b, len, "\0\0\0\x0cjP  ", 8) || has_prefix(b, len, "\xff\x4f\xff\x51", 4)) return "JPEG 2000";
    if (has_prefix(b, len, "%PDF", 4)) return "PDF";
    if (has_prefix(b, len, "<?xml", 5) || has_prefix(b, len, "<svg", 4)) return "SVG";
    if (has_prefix(b, len, "\0\0\1\0", 4)) return "ICO";
    return NULL;
}

// ---- pulling pixels out of a libvips pipeline -----------------------------

// Converts one row of the decoded image (width pixels of `bands` samples of
// type uint8 or native-endian uint16) to packed RGB.
typedef struct {
    int bands;
    int is16;
    int cmyk;
} row_layout;

static inline int sample(const uint8_t *p, int is16, size_t k) {
    // 16-bit samples keep their high byte, as PIL does for RGB;16B and friends.
    if (is16) {
        uint16_t v;
        memcpy(&v, p + 2 * k, 2);
        return v >> 8;
    }
    return p[k];
}

static void convert_row(uint8_t *dst, const uint8_t *src, int width, row_layout l) {
    for (int x = 0; x < width; x++) {
        size_t s = (size_t)x * (size_t)l.bands;
        uint8_t *o = dst + 3 * (size_t)x;
        if (l.cmyk) {
            // PIL's cmyk2rgb: nk = 255 - K; R = nk - MULDIV255(C, nk), likewise G, B.
            int nk = 255 - sample(src, l.is16, s + 3);
            for (int c = 0; c < 3; c++) {
                int t = sample(src, l.is16, s + (size_t)c) * nk + 128;
                o[c] = (uint8_t)(nk - (((t >> 8) + t) >> 8));
            }
        } else if (l.bands <= 2) {  // L or LA: gray replicated, alpha dropped
            o[0] = o[1] = o[2] = (uint8_t)sample(src, l.is16, s);
        } else {                    // RGB or RGBA: alpha dropped, not composited
            for (int c = 0; c < 3; c++) o[c] = (uint8_t)sample(src, l.is16, s + (size_t)c);
        }
    }
}

// Evaluates im strip by strip, top to bottom (what sequential loaders need),
// converting each row into a freshly malloc'd (h, w, 3) buffer.
static ty_status pull_rgb(VipsImage *im, row_layout l, image_rgb *out, const char *what, ty_err *err) {
    int w = im->Xsize, h = im->Ysize;
    uint8_t *rgb = malloc((size_t)w * (size_t)h * 3);
    if (!rgb) return ty_err_set(err, TY_E_NOMEM, "image: cannot allocate %dx%d RGB pixels", w, h);
    VipsRegion *reg = vips_region_new(im);
    if (!reg) {
        free(rgb);
        return vips_fail(err, TY_E_NOMEM, what);
    }
    const int strip = 64;
    for (int y = 0; y < h; y += strip) {
        VipsRect r = {.left = 0, .top = y, .width = w, .height = VIPS_MIN(strip, h - y)};
        if (vips_region_prepare(reg, &r)) {
            g_object_unref(reg);
            free(rgb);
            return vips_fail(err, TY_E_FORMAT, what);
        }
        for (int k = 0; k < r.height; k++)
            convert_row(rgb + (size_t)(y + k) * (size_t)w * 3, (const uint8_t *)VIPS_REGION_ADDR(reg, 0, y + k), w, l);
    }
    g_object_unref(reg);
    out->width = w;
    out->height = h;
    out->rgb = rgb;
    return TY_OK;
}

// ---- decoding -------------------------------------------------------------

// Opens the header only (libvips loaders are lazy): no pixel is decoded yet.
static int open_header(image_format f, const uint8_t *bytes, size_t len, VipsImage **im) {
    // libvips wants a non-const pointer but never writes through it. fail_on
    // ERROR turns truncation and decoder errors into errors (the default
    // returns whatever was decoded, grey-filled), while mere warnings such as
    // an incorrect sRGB profile still load, as in PIL.
    void *buf = (void *)bytes;
    switch (f) {
    case FMT_JPEG:
        return vips_jpegload_buffer(buf, len, im, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_ERROR, NULL);
    case FMT_PNG:
        return vips_pngload_buffer(buf, len, im, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_ERROR, NULL);
    case FMT_WEBP:
        return vips_webpload_buffer(buf, len, im, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_ERROR, NULL);
    case FMT_GIF:  // n = 1 page (the default): the first frame only
        return vips_gifload_buffer(buf, len, im, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_ERROR, NULL);
    case FMT_NONE: break;
    }
    return -1;
}

ty_status image_decode(image_rgb *out, const uint8_t *bytes, size_t len, const image_limits *lim, ty_err *err) {
    if (!out) return ty_err_set(err, TY_E_ARG, "image: no output image");
    *out = (image_rgb){0};
    image_limits dl = image_limits_default();
    if (!lim) lim = &dl;
    if (!bytes || len == 0) return ty_err_set(err, TY_E_FORMAT, "image: empty input");
    if (len > lim->max_encoded_bytes)
        return ty_err_set(err, TY_E_LIMIT, "image: %zu bytes exceeds the limit of %zu bytes", len, lim->max_encoded_bytes);

    image_format f = sniff_format(bytes, len);
    if (f == FMT_NONE) {
        const char *other = sniff_other(bytes, len);
        if (other)
            return ty_err_set(err, TY_E_UNSUPPORTED, "image: %s images are not supported (JPEG, PNG, WebP, GIF)", other);
        return ty_err_set(err, TY_E_FORMAT, "image: not a supported image format (JPEG, PNG, WebP, GIF)");
    }
    ty_status st = image_init(err);
    if (st) return st;

    const char *name = format_name(f);
    char what[64];
    VipsImage *im = NULL;
    if (open_header(f, bytes, len, &im)) {
        snprintf(what, sizeof what, "corrupt %s header", name);
        return vips_fail(err, TY_E_FORMAT, what);
    }
    // Decompression bombs stop here, before any pixel is decoded or allocated.
    int64_t w = im->Xsize, h = im->Ysize;
    if (w <= 0 || h <= 0) {
        st = ty_err_set(err, TY_E_FORMAT, "image: %s has no pixels (%lldx%lld)", name, (long long)w, (long long)h);
    } else if (w * h > lim->max_pixels) {
        st = ty_err_set(err, TY_E_LIMIT, "image: %lldx%lld %s has %lld pixels, over the limit of %lld", (long long)w,
                        (long long)h, name, (long long)(w * h), (long long)lim->max_pixels);
    } else if (im->Coding != VIPS_CODING_NONE || im->Bands < 1 || im->Bands > 4 ||
               (im->BandFmt != VIPS_FORMAT_UCHAR && im->BandFmt != VIPS_FORMAT_USHORT) ||
               (im->Bands == 4 && im->Type == VIPS_INTERPRETATION_CMYK && f != FMT_JPEG)) {
        st = ty_err_set(err, TY_E_UNSUPPORTED, "image: %s with %d bands of %s samples is not supported", name, im->Bands,
                        vips_enum_nick(VIPS_TYPE_BAND_FORMAT, im->BandFmt));
    } else {
        row_layout l = {
            .bands = im->Bands,
            .is16 = im->BandFmt == VIPS_FORMAT_USHORT,
            .cmyk = im->Bands == 4 && im->Type == VIPS_INTERPRETATION_CMYK,
        };
        snprintf(what, sizeof what, "truncated or corrupt %s", name);
        st = pull_rgb(im, l, out, what, err);
    }
    g_object_unref(im);
    return st;
}

ty_status image_load_file(image_rgb *out, const char *path, const image_limits *lim, ty_err *err) {
    if (!out) return ty_err_set(err, TY_E_ARG, "image: no output image");
    *out = (image_rgb){0};
    if (!path) return ty_err_set(err, TY_E_ARG, "image: no path");
    image_limits dl = image_limits_default();
    if (!lim) lim = &dl;
    uint8_t *bytes;
    size_t len;
    ty_status st = file_read_all(path, lim->max_encoded_bytes, &bytes, &len, err);
    if (st) return ty_err_wrap(err, "image");
    st = image_decode(out, bytes, len, lim, err);
    free(bytes);
    if (st && err && !strncmp(err->msg, "image: ", 7)) {  // "image: PATH: what", as for read errors
        char what[sizeof err->msg];
        snprintf(what, sizeof what, "%s", err->msg + 7);
        ty_err_set(err, st, "image: %s: %s", path, what);
    }
    return st;
}

void image_rgb_free(image_rgb *img) {
    if (!img) return;
    free(img->rgb);
    *img = (image_rgb){0};
}

// ---- resizing and writing -------------------------------------------------

static int image_valid(const image_rgb *img) {
    return img && img->rgb && img->width > 0 && img->height > 0;
}

// Wraps img's pixels (no copy) as a 3-band uchar libvips image, which is what
// pyvips.Image.new_from_array makes of an (h, w, 3) uint8 numpy array.
static VipsImage *wrap_rgb(const image_rgb *img) {
    size_t size = (size_t)img->width * (size_t)img->height * 3;
    return vips_image_new_from_memory(img->rgb, size, img->width, img->height, 3, VIPS_FORMAT_UCHAR);
}

ty_status image_resize(image_rgb *out, const image_rgb *in, int width, int height, ty_err *err) {
    if (!out) return ty_err_set(err, TY_E_ARG, "image: no output image");
    *out = (image_rgb){0};
    if (!image_valid(in) || width <= 0 || height <= 0) return ty_err_set(err, TY_E_ARG, "image: bad resize arguments");
    ty_status st = image_init(err);
    if (st) return st;
    VipsImage *src = wrap_rgb(in);
    if (!src) return vips_fail(err, TY_E_NOMEM, "cannot wrap pixels");
    // Exactly the reference's pyvips call, image.resize(w / W, vscale=h / H):
    // scales are Python true divisions, i.e. doubles; kernel and gap default.
    double hscale = (double)width / (double)in->width;
    double vscale = (double)height / (double)in->height;
    VipsImage *dst = NULL;
    if (vips_resize(src, &dst, hscale, "vscale", vscale, NULL)) {
        g_object_unref(src);
        return vips_fail(err, TY_E_FORMAT, "resize failed");
    }
    if (dst->Xsize != width || dst->Ysize != height) {
        // Never seen with libvips 8.14 (see tests); the reference would go on
        // with a wrongly sized image, so refuse rather than guess.
        st = ty_err_set(err, TY_E_UNSUPPORTED, "image: libvips resized %dx%d to %dx%d instead of %dx%d", in->width,
                        in->height, dst->Xsize, dst->Ysize, width, height);
    } else {
        // Evaluated on libvips' thread pool (3-4x faster than pulling strips
        // here), into its buffer; one copy moves it to ours (at most ~10 MB).
        size_t size = 0, want = (size_t)width * (size_t)height * 3;
        void *pixels = vips_image_write_to_memory(dst, &size);
        if (!pixels) {
            st = vips_fail(err, TY_E_NOMEM, "resize failed");
        } else if (size != want || !(out->rgb = malloc(want))) {
            st = ty_err_set(err, TY_E_NOMEM, "image: cannot allocate %dx%d RGB pixels", width, height);
        } else {
            memcpy(out->rgb, pixels, want);
            out->width = width;
            out->height = height;
        }
        g_free(pixels);
    }
    g_object_unref(dst);
    g_object_unref(src);
    return st;
}

ty_status image_write_png(const image_rgb *img, const char *path, ty_err *err) {
    if (!image_valid(img) || !path) return ty_err_set(err, TY_E_ARG, "image: nothing to write");
    ty_status st = image_init(err);
    if (st) return st;
    VipsImage *src = wrap_rgb(img);
    if (!src) return vips_fail(err, TY_E_NOMEM, "cannot wrap pixels");
    // Tagged sRGB so the file is plain 8-bit RGB; "strip" keeps it free of
    // metadata, so the same pixels always give the same file.
    VipsImage *tagged = NULL;
    if (vips_copy(src, &tagged, "interpretation", VIPS_INTERPRETATION_sRGB, NULL)) {
        g_object_unref(src);
        return vips_fail(err, TY_E_NOMEM, "cannot tag pixels");
    }
    char what[300];
    snprintf(what, sizeof what, "cannot write %s", path);
    if (vips_pngsave(tagged, path, "strip", TRUE, NULL)) st = vips_fail(err, TY_E_IO, what);
    g_object_unref(tagged);
    g_object_unref(src);
    return st;
}
