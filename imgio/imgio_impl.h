/*
 * Private declarations shared by the files of imgio/: the error-message
 * helper, the limit check every decoder runs on its header, and the
 * decoders that img_decode dispatches to. Nothing here is API; the tests
 * may include it.
 */
#ifndef IMGIO_IMPL_H
#define IMGIO_IMPL_H

#include "imgio/imgio.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Writes a sentence into err (when err is not NULL and errlen > 0), always
 * NUL-terminated and truncated to fit, and returns st. */
img_status img_fail(char *err, size_t errlen, img_status st, const char *fmt,
                    ...) __attribute__((format(printf, 4, 5)));

/* Checks a width and height read from an image header against `lim`
 * (zero fields meaning no limit), and that w * h * 3 bytes can be allocated
 * and indexed with int. Returns IMG_OK, IMG_E_CORRUPT for a zero dimension
 * or IMG_E_LIMIT, with a message naming the limit and the numbers. */
img_status img_check_dims(const img_limits *lim, uint64_t w, uint64_t h,
                          char *err, size_t errlen);

/* The window [wx, wx + ww) x [wy, wy + wh) of what img_resize(src, out_w,
 * out_h, f) gives, byte for byte, written to dst (ww * wh * 3 bytes, rows
 * packed) without computing the rest: what preprocessing needs when it
 * crops right after resizing. The window must lie inside the output. */
img_status img_resize_window(const img_rgb *src, int out_w, int out_h,
                             img_filter f, int wx, int wy, int ww, int wh,
                             uint8_t *dst, char *err, size_t errlen);

/* sin(pi x) / (pi x), 1 at 0: the Lanczos kernel's factor, computed the
 * same way for Pillow's filter and torchvision's. */
double img_sinc(double x);

/* The argument checks both windowed resizes share: a non-empty source, an
 * output buffer, a positive output size and a window inside it; `who`
 * names the caller in the message. */
img_status img_window_check(const img_rgb *src, int out_w, int out_h, int wx,
                            int wy, int ww, int wh, const uint8_t *dst,
                            const char *who, char *err, size_t errlen);

/* Nonzero: img_resize uses its plain C loops even where a SIMD version
 * runs (they give identical bytes; the tests compare them). */
extern int img_resize_plain;

/* The decoders behind img_decode_ex. `bytes` holds a file that starts with
 * the format's signature; `opt` is not NULL. Same contract as img_decode,
 * and *orient receives the EXIF orientation to apply (1 when
 * opt->exif_transpose is off or the file has none); the decoder does not
 * apply it. */
img_status img_decode_jpeg(const uint8_t *bytes, size_t n,
                           const img_decode_opts *opt, img_rgb *out,
                           int *orient, char *err, size_t errlen);
img_status img_decode_png(const uint8_t *bytes, size_t n,
                          const img_decode_opts *opt, img_rgb *out,
                          int *orient, char *err, size_t errlen);
img_status img_decode_webp(const uint8_t *bytes, size_t n,
                           const img_decode_opts *opt, img_rgb *out,
                           int *orient, char *err, size_t errlen);
img_status img_decode_gif(const uint8_t *bytes, size_t n,
                          const img_decode_opts *opt, img_rgb *out,
                          int *orient, char *err, size_t errlen);
img_status img_decode_bmp(const uint8_t *bytes, size_t n,
                          const img_decode_opts *opt, img_rgb *out,
                          int *orient, char *err, size_t errlen);
/* A TIFF comes out already turned by its orientation, as Pillow 13 loads
 * it, and *orient is then 1. */
img_status img_decode_tiff(const uint8_t *bytes, size_t n,
                           const img_decode_opts *opt, img_rgb *out,
                           int *orient, char *err, size_t errlen);
img_status img_decode_heif(const uint8_t *bytes, size_t n,
                           const img_decode_opts *opt, img_rgb *out,
                           int *orient, char *err, size_t errlen);

/* The image's size as its header states it, without decoding: the
 * readers behind img_size, same arguments as the decoders. */
img_status img_size_jpeg(const uint8_t *bytes, size_t n, uint32_t *w,
                         uint32_t *h, char *err, size_t errlen);
img_status img_size_png(const uint8_t *bytes, size_t n, uint32_t *w,
                        uint32_t *h, char *err, size_t errlen);
img_status img_size_webp(const uint8_t *bytes, size_t n, uint32_t *w,
                         uint32_t *h, char *err, size_t errlen);
img_status img_size_gif(const uint8_t *bytes, size_t n, uint32_t *w,
                        uint32_t *h, char *err, size_t errlen);
img_status img_size_bmp(const uint8_t *bytes, size_t n, uint32_t *w,
                        uint32_t *h, char *err, size_t errlen);
img_status img_size_tiff(const uint8_t *bytes, size_t n, uint32_t *w,
                         uint32_t *h, char *err, size_t errlen);
img_status img_size_heif(const uint8_t *bytes, size_t n, uint32_t *w,
                         uint32_t *h, char *err, size_t errlen);

/* NULL when this build decodes HEIC (avif 0) or AVIF (avif 1) images,
 * else the sentence saying why not: libheif was not found at build time,
 * or lacks the codec. The tests skip, saying so, what it cannot read. */
const char *img_heif_missing(int avif);
/* heif_box.c: whether a HEIF file is one Pillow opens as AVIF (its major
 * brand avif or avis, or mif1/msf1 with an AVIF brand among the
 * compatible ones); whether its top-level boxes run past its end; an
 * AVIF's irot and imir as an EXIF orientation (1..8; 1 without them). */
int img_heif_is_avif(const uint8_t *b, size_t n);
int img_heif_cut_short(const uint8_t *b, size_t n);
int img_avif_orientation(const uint8_t *b, size_t n);

/* Unsigned integers stored big- or little-endian in a file's bytes. */
static inline uint32_t img_be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
           b[3];
}

static inline uint32_t img_le16(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8;
}

static inline uint32_t img_le32(const uint8_t *b)
{
    return img_le16(b) | img_le16(b + 2) << 16;
}

/* Pillow's Image.alpha_composite of a pixel of value v and alpha a over
 * opaque white (libImaging/AlphaComposite.c with the destination fixed at
 * 255): its 7-bit-precision blend and its rounded division by 255. With
 * an opaque destination the output alpha is 255 * 255, so the blend
 * coefficient is exactly 128 * a. Checked against Pillow on all 65,536
 * (v, a) pairs; a = 255 gives v back. The PNG, WebP and BMP decoders
 * share it. */
static inline uint8_t img_over_white(int v, int a)
{
    if (a == 0)
        return 255;
    uint32_t t = 128u * (uint32_t)(v * a + 255 * (255 - a)) + (0x80u << 7);
    return (uint8_t)((((t >> 8) + t) >> 8) >> 7);
}

/* EXIF orientation (exif.c). The readers return the Orientation value of
 * one metadata source, or one of these: */
#define IMG_ORIENT_ABSENT (-1) /* no Orientation tag: XMP may give one */
#define IMG_ORIENT_BROKEN (-2) /* Pillow cannot read it: no rotation */

/* A TIFF-structured EXIF block (Pillow's info["exif"], with or without the
 * "Exif\0\0" prefix): its first directory's Orientation, 1..8, or 0 when
 * the tag holds something that is not one of those numbers. */
int img_tiff_orientation(const uint8_t *d, size_t n);

/* The first tiff:Orientation digit in an XMP packet, 0..9. */
int img_xmp_orientation(const uint8_t *x, size_t n);

/* Combines what the EXIF block said with the XMP packet (when have_xmp)
 * the way Pillow's getexif does: 2..8 to apply, else 1. */
int img_exif_resolve(int from_exif, const uint8_t *xmp, size_t xmp_n,
                     int have_xmp);

/* The orientation a whole PNG file asks for, 1..8. */
int img_png_orientation(const uint8_t *b, size_t n);

/* Replaces im's pixels by their orientation-turned copy (2..8; any other
 * value leaves the image as it is). On failure im is unchanged. */
img_status img_orient(img_rgb *im, int orientation, char *err,
                      size_t errlen);

/* The window [wx, wx + ww) x [wy, wy + wh) of what torchvision's
 * v2.functional.resize(antialias=True) gives for the uint8 image src at
 * out_w x out_h with filter f (transformers' "fast" image processors),
 * byte for byte, written to dst (ww * wh * 3 bytes, rows packed,
 * interleaved RGB like img_rgb). Same argument contract as
 * img_resize_window; NEAREST is torchvision's NEAREST_EXACT, which
 * transformers maps PIL's NEAREST to. BOX and HAMMING, which torchvision
 * cannot apply to a tensor, give IMG_E_ARG unless the size is unchanged
 * (torchvision then returns the image as it is, and so does this). */
img_status img_resize_window_tv(const img_rgb *src, int out_w, int out_h,
                                img_filter f, int wx, int wy, int ww, int wh,
                                uint8_t *dst, char *err, size_t errlen);

#endif
