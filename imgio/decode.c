/*
 * The entry point of decoding: the status strings, the default limits and
 * their check, the error-message helper, and img_decode itself, which looks
 * at the first bytes of a buffer to find the format's decoder in one table
 * (jpeg.c, png.c, webp.c, gif.c, bmp.c, tiff.c, heif.c) or to name a
 * format we refuse, so that the refusal can name what the caller actually
 * sent.
 */
#include "imgio/imgio_impl.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *img_status_str(img_status st)
{
    switch (st) {
#define IMG_STATUS_CASE(name, msg) \
    case name:                     \
        return msg;
        IMG_STATUS_LIST(IMG_STATUS_CASE)
#undef IMG_STATUS_CASE
    }
    return "unknown status";
}

img_limits img_limits_default(void)
{
    img_limits lim = {
        /* Pillow's own: no side limit, and DecompressionBombError past
         * twice its MAX_IMAGE_PIXELS (89,478,485), so a 108-megapixel
         * phone photo opens as it does there. */
        .max_width = 0,
        .max_height = 0,
        .max_pixels = IMG_PILLOW_MAX_PIXELS,
        .max_bytes = (size_t)256 << 20,
    };
    return lim;
}

img_status img_fail(char *err, size_t errlen, img_status st, const char *fmt,
                    ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return st;
}


img_status img_check_dims(const img_limits *lim, uint64_t w, uint64_t h,
                          char *err, size_t errlen)
{
    if (w == 0 || h == 0)
        return img_fail(err, errlen, IMG_E_CORRUPT,
                        "image header gives a size of %llux%llu; both sides "
                        "must be at least 1",
                        (unsigned long long)w, (unsigned long long)h);
    int wide = lim->max_width && w > lim->max_width;
    int tall = lim->max_height && h > lim->max_height;
    if ((wide || tall) && lim->max_width && lim->max_height)
        return img_fail(err, errlen, IMG_E_LIMIT,
                        "image is %llux%llu, larger than the %ux%u limit",
                        (unsigned long long)w, (unsigned long long)h,
                        lim->max_width, lim->max_height);
    if (wide || tall)
        return img_fail(err, errlen, IMG_E_LIMIT,
                        "image is %llux%llu, %s than the %u-pixel %s limit",
                        (unsigned long long)w, (unsigned long long)h,
                        wide ? "wider" : "taller",
                        wide ? lim->max_width : lim->max_height,
                        wide ? "width" : "height");
    /* Both sides fit in 32 bits (PNG and JPEG headers cannot say more), so
     * the product cannot overflow 64 bits. */
    uint64_t px = w * h;
    if (lim->max_pixels && px > lim->max_pixels)
        return img_fail(err, errlen, IMG_E_LIMIT,
                        "image is %llux%llu = %llu pixels, more than the "
                        "%llu-pixel limit",
                        (unsigned long long)w, (unsigned long long)h,
                        (unsigned long long)px,
                        (unsigned long long)lim->max_pixels);
    /* Whatever the limits say, the pixels must be addressable: img_rgb
     * holds int sides, and the decoders index with size_t. */
    if (w > INT_MAX || h > INT_MAX || px > SIZE_MAX / 4 / 3 ||
        px > (uint64_t)PTRDIFF_MAX / 4 / 3)
        return img_fail(err, errlen, IMG_E_LIMIT,
                        "image is %llux%llu, too large to hold in memory",
                        (unsigned long long)w, (unsigned long long)h);
    return IMG_OK;
}

/* Names a format we recognize but do not decode, or returns NULL. The
 * signatures are the published magic numbers of each format; the check is
 * only for a useful message, so false negatives merely give a vaguer one. */
static const char *sniff_other(const uint8_t *b, size_t n)
{
#define HAS(off, lit)                         \
    (n >= (off) + sizeof(lit) - 1 &&          \
     memcmp(b + (off), lit, sizeof(lit) - 1) == 0)
    /* Other ISO base media files: video, Canon CR3 raw photos. */
    if (HAS(4, "ftyp"))
        return "ISO media (MP4/QuickTime)";
    if (HAS(0, "\0\0\0\x0cjP  \r\n\x87\n") || HAS(0, "\xff\x4f\xff\x51"))
        return "JPEG 2000";
    if (HAS(0, "\xff\x0a") || HAS(0, "\0\0\0\x0cJXL \r\n\x87\n"))
        return "JPEG XL";
    if (HAS(0, "qoif"))
        return "QOI";
    if (HAS(0, "8BPS"))
        return "Photoshop (PSD)";
    if (HAS(0, "%PDF"))
        return "PDF";
    if (HAS(0, "<svg") || HAS(0, "<?xml"))
        return "SVG/XML";
    if (HAS(0, "\0\0\1\0") && n >= 6)
        return "ICO";
    if (n >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '7')
        return "PNM (PBM/PGM/PPM/PAM)";
#undef HAS
    return NULL;
}

img_decode_opts img_decode_opts_default(void)
{
    img_decode_opts o = {
        .limits = img_limits_default(),
        .exif_transpose = 1,
        .composite_on_white = 0,
        .fast_min_side = 0,
    };
    return o;
}

/* The formats we decode, in the order their signatures are tried: one row
 * each, so a new decoder is one file and one line here. `is` tells the
 * format from a file's first n bytes; `size` and `decode` are its readers
 * (imgio_impl.h). */
typedef struct {
    const char *name;
    int (*is)(const uint8_t *b, size_t n);
    img_status (*size)(const uint8_t *bytes, size_t n, uint32_t *w,
                       uint32_t *h, char *err, size_t errlen);
    img_status (*decode)(const uint8_t *bytes, size_t n,
                         const img_decode_opts *opt, img_rgb *out,
                         int *orient, char *err, size_t errlen);
} img_format;

/* JPEG is told by SOI followed by the first marker's 0xFF; PNG by its full
 * eight-byte signature, which also catches transfer damage. */
static int is_jpeg(const uint8_t *b, size_t n)
{
    return n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff;
}

static int is_png(const uint8_t *b, size_t n)
{
    return n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0;
}

static int is_webp(const uint8_t *b, size_t n)
{
    return n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0;
}

static int is_gif(const uint8_t *b, size_t n)
{
    return n >= 6 &&
           (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0);
}

/* BMP's "BM" alone is two letters text may start with: the DIB header's
 * size must follow, one of the kinds there are (12, OS/2 2.x's 16, which
 * the decoder refuses by name, and 40 to 124). */
static int is_bmp(const uint8_t *b, size_t n)
{
    if (n < 18 || b[0] != 'B' || b[1] != 'M')
        return 0;
    uint32_t h = img_le32(b + 14);
    return h == 12 || h == 16 || h == 40 || h == 52 || h == 56 || h == 64 ||
           h == 108 || h == 124;
}

/* TIFF and BigTIFF, in either byte order (Pillow reads both). */
static int is_tiff(const uint8_t *b, size_t n)
{
    return n >= 4 && (memcmp(b, "II*\0", 4) == 0 ||
                      memcmp(b, "MM\0*", 4) == 0 ||
                      memcmp(b, "II+\0", 4) == 0 ||
                      memcmp(b, "MM\0+", 4) == 0);
}

/* HEIC and AVIF by the ftyp box's major brand: the image brands of HEIF
 * (ISO/IEC 23008-12) and of AVIF, sequences included (their still image
 * is decoded). */
static int is_heif(const uint8_t *b, size_t n)
{
    static const char brands[][5] = {"heic", "heix", "hevc", "hevx", "heim",
                                     "heis", "mif1", "msf1", "avif", "avis"};
    if (n < 12 || memcmp(b + 4, "ftyp", 4) != 0)
        return 0;
    for (size_t i = 0; i < sizeof brands / sizeof brands[0]; i++)
        if (memcmp(b + 8, brands[i], 4) == 0)
            return 1;
    return 0;
}

static const img_format formats[] = {
    {"JPEG", is_jpeg, img_size_jpeg, img_decode_jpeg},
    {"PNG", is_png, img_size_png, img_decode_png},
    {"WebP", is_webp, img_size_webp, img_decode_webp},
    {"GIF", is_gif, img_size_gif, img_decode_gif},
    {"BMP", is_bmp, img_size_bmp, img_decode_bmp},
    {"TIFF", is_tiff, img_size_tiff, img_decode_tiff},
    {"HEIC/AVIF", is_heif, img_size_heif, img_decode_heif},
};
#define N_FORMATS (sizeof formats / sizeof formats[0])

/* "JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC/AVIF": the formats we read, for
 * messages, written into list (made on the error path only, so no shared
 * state). */
static const char *format_list(char *list, size_t size)
{
    size_t at = 0;
    list[0] = 0;
    for (size_t i = 0; i < N_FORMATS && at < size; i++)
        at += (size_t)snprintf(list + at, size - at, "%s%s",
                               i == 0              ? ""
                               : i + 1 < N_FORMATS ? ", "
                                                   : " or ",
                               formats[i].name);
    return list;
}

/* The checks every entry point makes before a decoder runs: a non-empty
 * buffer within the byte limit, in a format we read. */
static img_status classify_bytes(const uint8_t *b, size_t n,
                                 const img_limits *lim,
                                 const img_format **fmt, char *err,
                                 size_t errlen)
{
    *fmt = NULL;
    if (n == 0)
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "the image data is empty (0 bytes)");
    if (lim->max_bytes && n > lim->max_bytes)
        return img_fail(err, errlen, IMG_E_LIMIT,
                        "image file is %zu bytes, larger than the %zu-byte "
                        "limit",
                        n, lim->max_bytes);
    for (size_t i = 0; i < N_FORMATS; i++)
        if (formats[i].is(b, n)) {
            *fmt = &formats[i];
            return IMG_OK;
        }
    char list[128];
    const char *other = sniff_other(b, n);
    if (other)
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "%s images are not supported; convert to %s", other,
                        format_list(list, sizeof list));
    return img_fail(err, errlen, IMG_E_FORMAT,
                    "not a %s image (the %zu bytes start with no known "
                    "image signature)",
                    format_list(list, sizeof list), n);
}

img_status img_size(const void *bytes, size_t n, const img_limits *lim,
                    uint32_t *width, uint32_t *height, char *err,
                    size_t errlen)
{
    img_limits def = img_limits_default();
    if (!width || !height || (!bytes && n > 0))
        return img_fail(err, errlen, IMG_E_ARG,
                        "img_size needs the width and height to fill and, "
                        "for a non-empty buffer, its bytes");
    if (!lim)
        lim = &def;
    const img_format *fmt;
    img_status st = classify_bytes(bytes, n, lim, &fmt, err, errlen);
    if (st != IMG_OK)
        return st;
    uint32_t w, h;
    st = fmt->size(bytes, n, &w, &h, err, errlen);
    if (st == IMG_OK)
        st = img_check_dims(lim, w, h, err, errlen);
    if (st != IMG_OK)
        return st;
    *width = w;
    *height = h;
    return IMG_OK;
}

img_status img_decode_ex(const void *bytes, size_t n,
                         const img_decode_opts *opt, img_rgb *out, char *err,
                         size_t errlen)
{
    img_decode_opts def = img_decode_opts_default();
    if (!out || (!bytes && n > 0))
        return img_fail(err, errlen, IMG_E_ARG,
                        "img_decode needs an output image and, for a "
                        "non-empty buffer, its bytes");
    if (!opt)
        opt = &def;
    const img_format *fmt;
    img_status st = classify_bytes(bytes, n, &opt->limits, &fmt, err, errlen);
    if (st != IMG_OK)
        return st;
    img_rgb im = {0};
    int orient = 1;
    st = fmt->decode(bytes, n, opt, &im, &orient, err, errlen);
    if (st != IMG_OK)
        return st;
    if (opt->exif_transpose && (st = img_orient(&im, orient, err, errlen))) {
        img_rgb_free(&im);
        return st;
    }
    *out = im;
    return IMG_OK;
}

img_status img_decode(const void *bytes, size_t n, const img_limits *lim,
                      img_rgb *out, char *err, size_t errlen)
{
    /* The behaviour img_decode has always had: Image.open + convert("RGB"),
     * which neither turns the image nor composites its alpha. */
    img_decode_opts o = img_decode_opts_default();
    if (lim)
        o.limits = *lim;
    o.exif_transpose = 0;
    return img_decode_ex(bytes, n, &o, out, err, errlen);
}

void img_rgb_free(img_rgb *im)
{
    if (!im)
        return;
    free(im->rgb);
    im->rgb = NULL;
    im->width = 0;
    im->height = 0;
}
