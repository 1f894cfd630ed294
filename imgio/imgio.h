/*
 * imgio: image bytes to pixels. This header is the whole interface of the
 * leaf library that decodes JPEG (libjpeg-turbo), PNG (libpng), WebP
 * (libwebp), GIF (giflib), BMP (its own reader), TIFF (libtiff) and,
 * where built with libheif, HEIC and AVIF from memory into 8-bit RGB,
 * resamples with Pillow's filters and turns an image
 * into the normalized float tensor a model expects, as the reference image
 * processors of `transformers` do. It knows nothing of models: the caller
 * fills an img_preprocess_cfg. Nothing here prints, exits or aborts; every
 * fallible call returns an img_status and writes a sentence to `err`.
 *
 *     img_decode_opts opt = img_decode_opts_default(); // EXIF applied
 *     opt.composite_on_white = 1;                     // CLIP's convert
 *     img_rgb im;
 *     char err[256];
 *     if (img_decode_ex(bytes, n, &opt, &im, err, sizeof err) != IMG_OK)
 *         ...err says why...
 *     int oh, ow;
 *     img_preprocess_size(&cfg, im.width, im.height, &oh, &ow);
 *     float *x = malloc(sizeof *x * 3 * oh * ow);     // 3 x oh x ow
 *     img_preprocess(&im, &cfg, x, oh, ow, err, sizeof err);
 *     img_rgb_free(&im);
 *
 * All functions are reentrant: no state is shared between calls.
 */
#ifndef IMGIO_H
#define IMGIO_H

#include <stddef.h>
#include <stdint.h>

/* Append-only; img_status_str gives the fixed message of each. */
#define IMG_STATUS_LIST(X)                                         \
    X(IMG_OK, "ok")                                                \
    X(IMG_E_ARG, "invalid argument")                               \
    X(IMG_E_NOMEM, "out of memory")                                \
    X(IMG_E_FORMAT, "not a supported image format")                \
    X(IMG_E_CORRUPT, "corrupt or truncated image")                 \
    X(IMG_E_LIMIT, "image exceeds a size limit")

typedef enum {
#define IMG_STATUS_ENUM(name, msg) name,
    IMG_STATUS_LIST(IMG_STATUS_ENUM)
#undef IMG_STATUS_ENUM
} img_status;

const char *img_status_str(img_status st);

/* Limits checked from the file size and the image header, before any pixel
 * memory is allocated. Zero in a field means "no limit" for that field. */
typedef struct {
    uint32_t max_width;
    uint32_t max_height;
    uint64_t max_pixels;  /* width * height */
    size_t max_bytes;     /* size of the encoded file */
    /* The decoder's working memory besides the output pixels: libjpeg's
     * whole-image coefficient arrays for a progressive JPEG (up to 8
     * bytes a pixel); a TIFF's strip or tile buffers, and any single
     * allocation of libtiff's. It is always capped at what the header's
     * geometry can need; a nonzero value caps it lower. Also refused, whatever the
     * limits: a JPEG of more than 500 scans (a CPU-time bomb). */
    size_t max_decoder_memory;
} img_limits;

/* The most pixels Pillow opens (2 x Image.MAX_IMAGE_PIXELS; past it
 * Image.open raises DecompressionBombError). */
#define IMG_PILLOW_MAX_PIXELS 178956970u

/* Pillow's limits: no side limit, IMG_PILLOW_MAX_PIXELS pixels; 256 MiB
 * encoded; decoder memory as the header needs. */
img_limits img_limits_default(void);

/* An 8-bit RGB image, interleaved, rows top to bottom, no padding:
 * pixel (x, y) channel c is rgb[(y * width + x) * 3 + c]. */
typedef struct {
    int width;
    int height;
    uint8_t *rgb;
} img_rgb;

/* Decodes a JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC or AVIF (detected from
 * its content, not a name) into `out` as Pillow's
 * Image.open(...).convert("RGB") would: grayscale replicated, alpha
 * dropped, palette expanded, 16-bit reduced to 8, a WebP animation's first
 * frame, a TIFF's first page, EXIF orientation ignored (img_decode_ex can
 * apply it) except a TIFF's, which Pillow 13 applies as it loads the file;
 * a HEIC comes out turned by its irot and imir boxes, as pillow-heif gives
 * it. HEIC and AVIF need a build with libheif, and their pixels are within
 * a measured bound of the references', not identical (imgio/heif.c says
 * why). `lim` may be NULL (defaults). On failure `out` is left
 * untouched and `err` (may be NULL) holds a sentence naming the problem —
 * for an unsupported format, the format detected (PSD, JPEG XL, ...).
 * The caller frees `out` with img_rgb_free. */
img_status img_decode(const void *bytes, size_t n, const img_limits *lim,
                      img_rgb *out, char *err, size_t errlen);

/* How img_decode_ex decodes. Start from img_decode_opts_default() and
 * change fields, so that fields added later keep their defaults. */
typedef struct {
    img_limits limits;

    /* Nonzero: turn the image upright by its EXIF Orientation (values 2..8:
     * mirror, rotate by 90/180/270, transpose, transverse), found and
     * applied as PIL.ImageOps.exif_transpose does, which transformers'
     * load_image (and so every pipeline) calls before convert("RGB").
     * Pillow reads the tag from a JPEG's Exif APP1 segments, a PNG's eXIf
     * chunk or "exif" / "Raw profile type exif" text chunks, and, when
     * none has one, from XMP's tiff:Orientation; so does this. Malformed
     * metadata means "no rotation", never an error (where Pillow raises on
     * it, load_image fails; we decode the image upright as stored). The
     * size limits apply to the image as stored, before it is turned.
     * A TIFF is turned by its Orientation tag (or XMP's) whatever this
     * says: Pillow 13 turns it as it loads it, and its limits apply to
     * the turned size. Default: 1. */
    int exif_transpose;

    /* Nonzero: composite transparent pixels onto white, as transformers'
     * convert_to_rgb (CLIP's do_convert_rgb) does to a PIL image with an
     * alpha band or a "transparency" entry: Image.alpha_composite over an
     * opaque white background, with Pillow's integer rounding. It applies
     * to PNGs with alpha (gray+alpha, RGBA, 8 or 16 bits) or a tRNS chunk
     * (palette, gray, RGB), to WebPs, HEICs and AVIFs with alpha and to BMPs
     * whose BI_BITFIELDS masks give alpha; transparency keys are matched as
     * Pillow matches them. JPEGs have no alpha. Zero: alpha is dropped, as
     * convert("RGB") drops it (load_image, ViT). Default: 0. */
    int composite_on_white;

    /* Nonzero (and composite_on_white zero): paint white the pixels of
     * the transparency colour that a PNG's tRNS chunk leaves on the RGB
     * image transformers' load_image makes, as transformers 5's
     * convert_to_rgb (the processors' do_convert_rgb) does: Pillow keeps
     * that colour in info["transparency"] through convert("RGB"), and
     * convert_to_rgb composites such an image on white. Alpha channels
     * and palette alpha other than one fully transparent entry are gone
     * by then and change nothing. Default: 0. */
    int transparency_white;

    /* > 0: a JPEG may be decoded shrunk by libjpeg's DCT scaling, by the
     * largest of 1/2, 1/4 and 1/8 that keeps its shorter side at least this
     * long (img_preprocess_min_side gives the value for a preprocessing
     * configuration). This CHANGES THE PIXELS: the reference decodes at
     * full size and lets the resize filter do all the shrinking, and no
     * reduced-size decode reproduces that, so the result drifts from
     * transformers' by a few levels (up to 11/255 on bench/imgio_bench's
     * photo). Faster on large photos (there, 8.4 -> 5.4 ms to decode).
     * No effect on PNGs. 0: exact. Default: 0. */
    int fast_min_side;
} img_decode_opts;

/* Default limits, exif_transpose on, the rest off. */
img_decode_opts img_decode_opts_default(void);

/* img_decode with options; `opt` may be NULL (the defaults, which turn the
 * image by its EXIF orientation). Same contract as img_decode otherwise. */
img_status img_decode_ex(const void *bytes, size_t n,
                         const img_decode_opts *opt, img_rgb *out,
                         char *err, size_t errlen);

/* The width and height an image's header states, as stored (before any
 * EXIF turn, which does not change the pixel count; a TIFF's turned, as
 * img_decode gives it and Pillow opens it), read without decoding
 * any pixels: what a server needs to refuse a costly image before spending
 * decode time on it. The limits are checked as img_decode checks them
 * (`lim` may be NULL: the defaults). An unsupported format gets the
 * message img_decode gives; a header that cannot be read, IMG_E_CORRUPT
 * (img_decode would refuse the file too). */
img_status img_size(const void *bytes, size_t n, const img_limits *lim,
                    uint32_t *width, uint32_t *height, char *err,
                    size_t errlen);

/* Frees the pixels and zeroes the struct; NULL and an empty image are fine. */
void img_rgb_free(img_rgb *im);

/* Pillow's resampling filters, numbered as PIL.Image.Resampling is (the
 * `resample` value of preprocessor_config.json). */
typedef enum {
    IMG_NEAREST = 0,
    IMG_LANCZOS = 1,
    IMG_BILINEAR = 2,
    IMG_BICUBIC = 3,
    IMG_BOX = 4,
    IMG_HAMMING = 5,
} img_filter;

/* Resizes `src` to out_w x out_h as Pillow's Image.resize(size, filter)
 * does (separable two-pass convolution, support widened when shrinking,
 * Pillow's fixed-point coefficients and rounding). `dst` receives a new
 * image the caller frees. */
img_status img_resize(const img_rgb *src, int out_w, int out_h, img_filter f,
                      img_rgb *dst, char *err, size_t errlen);

/* Which implementation of the reference processor's steps to reproduce.
 * transformers 5 has two for every image processor: the Pillow/NumPy one
 * (`CLIPImageProcessorPil`, ...) and the torchvision one it picks whenever
 * torchvision is installed (`CLIPImageProcessor`, ..., once called the
 * "fast" processors). They differ by a level or so per pixel: torchvision
 * resizes with PyTorch's own antialiased kernels, pads a too-small image
 * for the crop the other way round when the difference is odd, and
 * normalizes in float32 with the rescale folded into mean and std. */
typedef enum {
    IMG_BACKEND_PIL = 0,
    IMG_BACKEND_TORCHVISION = 1,
} img_backend;

/* What a reference image processor (transformers' ViT and CLIP processors)
 * does to an RGB image, in its order: resize, center crop, rescale,
 * normalize; output planar float CHW. The resize's output size follows
 * the processor's `size` (transformers' SizeDict), one of:
 *   shortest_edge > 0, longest_edge 0: the short side becomes
 *     shortest_edge, the long one keeps the aspect ratio (truncated);
 *   shortest_edge > 0, longest_edge > 0: the same, unless the long side
 *     would pass longest_edge (get_size_with_aspect_ratio);
 *   max_h > 0, max_w > 0: the largest size of the image's aspect ratio
 *     that fits in max_w x max_h;
 *   otherwise size_h x size_w exactly.
 * The reference's do_convert_rgb is not here: what it changes is alpha and
 * the transparency colour, which decoding resolves (img_decode_opts). */
typedef struct {
    int do_resize;
    img_filter resample;
    int shortest_edge;
    int longest_edge;
    int max_h, max_w;
    int size_h, size_w;
    int do_center_crop;
    int crop_h, crop_w;
    int do_rescale;
    float rescale_factor;     /* usually 1/255 */
    int do_normalize;
    float mean[3], std[3];
    img_backend backend;      /* default (0): Pillow's */
    /* torchvision's transforms on a PIL image, as open_clip composes them
     * (each 0 by default, the rules above):
     * keep_ratio 1 or 2: the resize is timm's ResizeKeepRatio to size_h x
     *   size_w, the ratio of the sides that fit it, the shorter (1) or the
     *   longer (2), each side round(side / ratio), half to even;
     * crop_round: the crop's offsets are torchvision's CenterCrop's,
     *   round((h - crop_h) / 2) half to even, and a too-small image is
     *   padded with (crop_h - h) // 2 zero rows above it;
     * rescale_divide: rescaled as ToTensor does, v / 255 in float32
     *   (rescale_factor 1/255). */
    int keep_ratio;
    int crop_round;
    int rescale_divide;
} img_preprocess_cfg;

/* The output height and width that `cfg` gives for a src_w x src_h image. */
void img_preprocess_size(const img_preprocess_cfg *cfg, int src_w, int src_h,
                         int *out_h, int *out_w);

/* The shorter side an image may be shrunk to before `cfg` runs without
 * the resize having to enlarge it (for img_decode_opts.fast_min_side):
 * the shortest edge, or the larger side of an exact size; 0 when cfg does
 * not resize or its size depends on the image in another way. */
int img_preprocess_min_side(const img_preprocess_cfg *cfg);

/* Runs `cfg` on `src` and writes 3 x out_h x out_w floats (planar, channel
 * first) to `out`, which must hold that many; out_h and out_w must be what
 * img_preprocess_size gives, else IMG_E_ARG. Allocates only temporaries. */
img_status img_preprocess(const img_rgb *src, const img_preprocess_cfg *cfg,
                          float *out, int out_h, int out_w,
                          char *err, size_t errlen);

#endif
