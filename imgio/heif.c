/*
 * HEIC and AVIF: still images in the HEIF container, decoded with libheif
 * (Debian's libheif-dev) where the build finds it; the Makefile then
 * defines VIT_HAVE_HEIF. Without it both are refused with a message that
 * says how to get them. What the references give, and so what this does:
 *
 *   - HEIC (HEVC), as pillow-heif opens it, the plugin transformers users
 *     register for it: libheif decodes the primary image and applies its
 *     clean-aperture crop, rotation (irot) and mirroring (imir) itself;
 *     pillow-heif then resets the EXIF orientation to 1 (in HEIF those
 *     boxes are what turns the image, the EXIF tag is for information), so
 *     load_image's exif_transpose changes nothing. The image comes out
 *     turned whether or not EXIF orientation is asked for.
 *   - AVIF (AV1), as Pillow 13 opens it itself (its AvifImagePlugin,
 *     libavif, ahead of pillow-heif for the AVIF brands): no crop, and the
 *     rotation and mirroring are not applied to the pixels but reported as
 *     the EXIF orientation, replacing whatever the EXIF block says; so
 *     exif_transpose applies exactly irot and imir. Here libheif decodes
 *     without its transformations, and the orientation is read from the
 *     primary item's irot and imir boxes and mapped as Pillow maps them.
 *
 * 10-bit images are reduced to 8 bits by libheif; alpha is dropped, or
 * laid over white for composite_on_white, as for PNG and WebP.
 *
 * The pixels are not Pillow's to the bit for most files. HEVC and AV1
 * decoding is exact by standard, but the YCbCr to RGB conversion is each
 * library's own, and Debian 12's libheif 1.15 hands out RGB only (it
 * converts right after decoding, before the transformations and the grid
 * assembly), so what comes out is libheif 1.15's conversion: nearest-
 * neighbour chroma upsampling and a float matrix. pillow-heif 1.9 bundles
 * libheif 1.23, which converts 8-bit 4:2:0 in fixed point (one level of
 * difference) and turns 4:2:0 images before upsampling (an odd-sized one
 * then has its chroma shifted by a pixel); Pillow's libavif upsamples 4:2:0
 * chroma bilinearly with libyuv. tests/gen_fixtures_images.py holds the
 * bound each fixture was measured at (HEIF_BOUNDS, which the tests
 * enforce); the README states them.
 *
 * The codecs are called here, through decoder plugins registered with
 * libheif ahead of its own, because the library never prints: dav1d logs
 * to stderr on damaged data unless given a logger (libheif's plugin gives
 * none), and libde265 prints a line for a few impossible sequence
 * parameter sets, which are refused here before it sees them.
 */
#include "imgio/imgio_impl.h"

#include <stdlib.h>
#include <string.h>

#ifndef VIT_HAVE_HEIF

const char *img_heif_missing(int avif)
{
    return avif ? "AVIF images are not supported by this build: libheif was "
                  "not found when vit was compiled; install libheif-dev and "
                  "rebuild"
                : "HEIC images are not supported by this build: libheif was "
                  "not found when vit was compiled; install libheif-dev and "
                  "rebuild";
}

img_status img_size_heif(const uint8_t *bytes, size_t n, uint32_t *w,
                         uint32_t *h, char *err, size_t errlen)
{
    (void)w;
    (void)h;
    return img_fail(err, errlen, IMG_E_FORMAT, "%s",
                    img_heif_missing(img_heif_is_avif(bytes, n)));
}

img_status img_decode_heif(const uint8_t *bytes, size_t n,
                           const img_decode_opts *opt, img_rgb *out,
                           int *orient, char *err, size_t errlen)
{
    (void)opt;
    (void)out;
    (void)orient;
    return img_fail(err, errlen, IMG_E_FORMAT, "%s",
                    img_heif_missing(img_heif_is_avif(bytes, n)));
}

#else /* VIT_HAVE_HEIF */

#include <errno.h>
#include <limits.h>
#include <pthread.h>

#include <dav1d/dav1d.h>
#include <libde265/de265.h>
#include <libheif/heif.h>
#include <libheif/heif_plugin.h>

/* ------------------------------------------------ the decoder plugins */

/* What a plugin function returns; the message is a constant, which
 * libheif copies. */
static struct heif_error plugin_result(enum heif_error_code code,
                                       const char *msg)
{
    struct heif_error e = {code, heif_suberror_Unspecified, msg};
    return e;
}

static struct heif_error plugin_ok(void)
{
    return plugin_result(heif_error_Ok, "");
}

static struct heif_error plugin_oom(void)
{
    return plugin_result(heif_error_Memory_allocation_error, "out of memory");
}

/* Both decoders are as lenient as libheif's own (which do the same). */
static void plugin_strict(void *dec, int flag)
{
    (void)dec;
    (void)flag;
}

/* One decoded plane: its samples (1 byte each, 2 past 8 bits), rows
 * `stride` bytes apart. */
typedef struct {
    const uint8_t *data;
    ptrdiff_t stride;
    int w, h;
} plane;

/* A heif_image of the decoder's planes (Y, or Y, Cb and Cr), copied. */
static struct heif_error plane_image(const plane *pl, int planes, int bpp,
                                     enum heif_chroma chroma,
                                     struct heif_image **out)
{
    static const enum heif_channel ch[3] = {heif_channel_Y, heif_channel_Cb,
                                            heif_channel_Cr};
    struct heif_image *im = NULL;
    *out = NULL;
    struct heif_error e = heif_image_create(
        pl[0].w, pl[0].h,
        planes == 1 ? heif_colorspace_monochrome : heif_colorspace_YCbCr,
        chroma, &im);
    for (int c = 0; c < planes && e.code == heif_error_Ok; c++) {
        e = heif_image_add_plane(im, ch[c], pl[c].w, pl[c].h, bpp);
        if (e.code != heif_error_Ok)
            break;
        int dst_stride;
        uint8_t *dst = heif_image_get_plane(im, ch[c], &dst_stride);
        for (int y = 0; y < pl[c].h; y++)
            memcpy(dst + (size_t)y * (size_t)dst_stride,
                   pl[c].data + (ptrdiff_t)y * pl[c].stride,
                   (size_t)pl[c].w * (bpp > 8 ? 2 : 1));
    }
    if (e.code != heif_error_Ok) {
        heif_image_release(im);
        return e;
    }
    *out = im;
    return plugin_ok();
}

/* ------------------------------------------------ the AV1 decoder */

/* The most pixels dav1d may decode in one frame, set by the decoding
 * thread for the decoder libheif calls in that same thread (the context
 * decodes grid tiles in the caller's thread). 0: libheif's own bound,
 * 2^30, for any other caller of libheif in the process, where these
 * plugins are registered too. */
static _Thread_local unsigned av1_frame_limit;

typedef struct {
    uint8_t *data;
    size_t n;
} av1_stream;

static const char *av1_name(void)
{
    return "dav1d (vit, quiet)";
}

static int av1_supports(enum heif_compression_format f)
{
    /* Above libheif's own dav1d (150) and libaom (100) plugins. */
    return f == heif_compression_AV1 ? 200 : 0;
}

static struct heif_error av1_new(void **dec)
{
    av1_stream *s = calloc(1, sizeof *s);
    *dec = s;
    return s ? plugin_ok() : plugin_oom();
}

static void av1_free(void *dec)
{
    av1_stream *s = dec;
    if (s)
        free(s->data);
    free(s);
}

/* libheif pushes the av1C configuration OBUs, then the item's data. */
static struct heif_error av1_push(void *dec, const void *data, size_t size)
{
    av1_stream *s = dec;
    if (size == 0)
        return plugin_ok(); /* an empty item: data NULL */
    if (size > SIZE_MAX - s->n)
        return plugin_oom();
    uint8_t *d = realloc(s->data, s->n + size);
    if (!d)
        return plugin_oom();
    memcpy(d + s->n, data, size);
    s->data = d;
    s->n += size;
    return plugin_ok();
}

static void av1_quiet(void *cookie, const char *fmt, va_list ap)
{
    (void)cookie;
    (void)fmt;
    (void)ap;
}

static void av1_keep(const uint8_t *data, void *cookie)
{
    (void)data;
    (void)cookie; /* the stream owns the bytes */
}

/* The first picture of the pushed data, or 0 with *e set. */
static int av1_picture(av1_stream *s, Dav1dPicture *p, struct heif_error *e)
{
    Dav1dSettings set;
    dav1d_default_settings(&set);
    set.n_threads = 1;
    set.max_frame_delay = 1;
    set.all_layers = 0;
    set.frame_size_limit = av1_frame_limit ? av1_frame_limit : 1u << 30;
    set.logger.cookie = NULL;
    set.logger.callback = av1_quiet;
    Dav1dContext *c = NULL;
    if (dav1d_open(&c, &set) < 0) {
        *e = plugin_oom();
        return 0;
    }
    Dav1dData d = {0};
    int r = s->n ? dav1d_data_wrap(&d, s->data, s->n, av1_keep, NULL) : 0;
    int got = 0, drained = 0;
    /* Feed the data and take the picture out; once the data is all in,
     * one more ask drains the decoder. Each round sends bytes or asks
     * once after the last, so the loop ends. */
    while (r >= 0) {
        size_t before = d.sz;
        if (d.sz) {
            r = dav1d_send_data(c, &d);
            if (r < 0 && r != DAV1D_ERR(EAGAIN))
                break;
        }
        r = dav1d_get_picture(c, p);
        if (r == 0) {
            got = 1;
            break;
        }
        if (r != DAV1D_ERR(EAGAIN))
            break;
        if (d.sz == 0) {
            if (drained++)
                break;
        } else if (d.sz == before) {
            break; /* neither consumed data nor gave a picture */
        }
        r = 0;
    }
    if (d.sz)
        dav1d_data_unref(&d);
    dav1d_close(&c);
    if (!got)
        *e = r == DAV1D_ERR(ENOMEM)
                 ? plugin_oom()
                 : plugin_result(heif_error_Decoder_plugin_error,
                                 "the AV1 data is damaged");
    return got;
}

static struct heif_error av1_decode(void *dec, struct heif_image **out)
{
    struct heif_error e;
    Dav1dPicture p = {0};
    *out = NULL;
    if (!av1_picture(dec, &p, &e))
        return e;
    enum Dav1dPixelLayout lay = p.p.layout;
    int ssx = lay == DAV1D_PIXEL_LAYOUT_I420 || lay == DAV1D_PIXEL_LAYOUT_I422;
    int ssy = lay == DAV1D_PIXEL_LAYOUT_I420;
    plane pl[3];
    for (int c = 0; c < 3; c++) {
        pl[c].data = p.data[c];
        pl[c].stride = p.stride[c ? 1 : 0];
        pl[c].w = c ? (p.p.w + ssx) >> ssx : p.p.w;
        pl[c].h = c ? (p.p.h + ssy) >> ssy : p.p.h;
    }
    e = plane_image(pl, lay == DAV1D_PIXEL_LAYOUT_I400 ? 1 : 3, p.p.bpc,
                    lay == DAV1D_PIXEL_LAYOUT_I400   ? heif_chroma_monochrome
                    : lay == DAV1D_PIXEL_LAYOUT_I420 ? heif_chroma_420
                    : lay == DAV1D_PIXEL_LAYOUT_I422 ? heif_chroma_422
                                                     : heif_chroma_444,
                    out);
    /* The bitstream's colour description; libheif replaces it with the
     * file's nclx box when there is one, as libavif does. */
    struct heif_color_profile_nclx *nclx =
        *out ? heif_nclx_color_profile_alloc() : NULL;
    if (nclx) {
        nclx->color_primaries = (enum heif_color_primaries)p.seq_hdr->pri;
        nclx->transfer_characteristics =
            (enum heif_transfer_characteristics)p.seq_hdr->trc;
        nclx->matrix_coefficients =
            (enum heif_matrix_coefficients)p.seq_hdr->mtrx;
        nclx->full_range_flag = p.seq_hdr->color_range != 0;
        heif_image_set_nclx_color_profile(*out, nclx);
        heif_nclx_color_profile_free(nclx);
    }
    dav1d_picture_unref(&p);
    return e;
}

static const struct heif_decoder_plugin av1_plugin = {
    .plugin_api_version = 3,
    .get_plugin_name = av1_name,
    .init_plugin = NULL,
    .deinit_plugin = NULL,
    .does_support_format = av1_supports,
    .new_decoder = av1_new,
    .free_decoder = av1_free,
    .push_data = av1_push,
    .decode_image = av1_decode,
    .set_strict_decoding = plugin_strict,
    .id_name = "vit-dav1d",
};

/* ------------------------------------------------ the HEVC decoder */

/* libde265 writes a line to stderr for a few impossible sequence parameter
 * sets (sps.cc, compute_derived_values), then refuses them. The same
 * conditions are checked here first, on every SPS the decoder would see,
 * and such a stream is refused without reaching libde265. */

/* An RBSP bit reader: emulation prevention bytes (00 00 03) dropped, and
 * zeros past the end, as libde265's reader gives. */
typedef struct {
    const uint8_t *p;
    size_t n, at, zeros;
    uint32_t bits;
    int left;
} rbsp;

static int rbsp_bit(rbsp *r)
{
    if (r->left == 0) {
        uint32_t byte = 0;
        if (r->at < r->n) {
            byte = r->p[r->at++];
            if (r->zeros >= 2 && byte == 3 && r->at < r->n) {
                byte = r->p[r->at++];
                r->zeros = 0;
            }
            r->zeros = byte == 0 ? r->zeros + 1 : 0;
        }
        r->bits = byte;
        r->left = 8;
    }
    r->left--;
    return (int)(r->bits >> r->left) & 1;
}

static uint32_t rbsp_u(rbsp *r, int n)
{
    uint32_t v = 0;
    while (n-- > 0)
        v = v << 1 | (uint32_t)rbsp_bit(r);
    return v;
}

/* ue(v); -1 past libde265's 20 leading zeros (it refuses those). */
static long rbsp_ue(rbsp *r)
{
    int zeros = 0;
    while (rbsp_bit(r) == 0)
        if (++zeros > 20)
            return -1;
    return (long)((1u << zeros) - 1 + rbsp_u(r, zeros));
}

/* Whether the SPS NAL unit (header included) is one libde265 would print
 * about. Fields it refuses earlier, silently, are not looked at: such a
 * stream is refused either way. */
static int sps_libde265_prints(const uint8_t *nal, size_t n)
{
    rbsp r = {nal, n, 2, 0, 0, 0};
    rbsp_u(&r, 4);
    int sub = (int)rbsp_u(&r, 3);
    rbsp_u(&r, 1);
    rbsp_u(&r, 32); /* profile_tier_level: general part, 96 bits */
    rbsp_u(&r, 32);
    rbsp_u(&r, 32);
    int prof[8] = {0}, lev[8] = {0};
    for (int i = 0; i < sub; i++) {
        prof[i] = rbsp_bit(&r);
        lev[i] = rbsp_bit(&r);
    }
    if (sub > 0)
        rbsp_u(&r, 2 * (8 - sub));
    for (int i = 0; i < sub; i++) {
        if (prof[i])
            rbsp_u(&r, 32), rbsp_u(&r, 32), rbsp_u(&r, 24);
        if (lev[i])
            rbsp_u(&r, 8);
    }
    long v[16];
    int k = 0;
    v[k++] = rbsp_ue(&r); /* sps_seq_parameter_set_id */
    long chroma = rbsp_ue(&r);
    if (chroma == 3)
        rbsp_bit(&r);
    long w = rbsp_ue(&r), h = rbsp_ue(&r);
    if (rbsp_bit(&r))
        for (int i = 0; i < 4; i++)
            v[k++] = rbsp_ue(&r); /* conformance window */
    v[k++] = rbsp_ue(&r); /* bit depths, POC length */
    v[k++] = rbsp_ue(&r);
    v[k++] = rbsp_ue(&r);
    int all = rbsp_bit(&r);
    for (int i = all ? 0 : sub; i <= sub; i++)
        for (int j = 0; j < 3; j++)
            if (rbsp_ue(&r) < 0)
                return 0;
    long min_cb = rbsp_ue(&r), diff_cb = rbsp_ue(&r);
    long min_tb = rbsp_ue(&r), diff_tb = rbsp_ue(&r);
    long depth_inter = rbsp_ue(&r), depth_intra = rbsp_ue(&r);
    for (int i = 0; i < k; i++)
        if (v[i] < 0)
            return 0;
    if (chroma < 0 || w <= 0 || h <= 0 || min_cb < 0 || diff_cb < 0 ||
        min_tb < 0 || diff_tb < 0 || depth_inter < 0 || depth_intra < 0)
        return 0;
    /* libde265's own limits, refused before the derived values. */
    min_cb += 3;
    min_tb += 2;
    if (min_cb > 6 || min_cb + diff_cb > 6 || min_tb > 5 ||
        min_tb + diff_tb > 5)
        return 0;
    long ctb = min_cb + diff_cb, max_tb = min_tb + diff_tb;
    return depth_inter > ctb - min_tb || depth_intra > ctb - min_tb ||
           w % (1L << min_cb) != 0 || h % (1L << min_cb) != 0 ||
           min_tb > min_cb || max_tb > (ctb < 5 ? ctb : 5);
}

typedef struct {
    de265_decoder_context *ctx;
    int refused; /* an SPS libde265 would print about came */
} hevc_stream;

static const char *hevc_name(void)
{
    return "libde265 (vit, quiet)";
}

static void hevc_init(void)
{
    de265_init();
}

static int hevc_supports(enum heif_compression_format f)
{
    return f == heif_compression_HEVC ? 200 : 0; /* above libheif's 100 */
}

static struct heif_error hevc_new(void **dec)
{
    hevc_stream *s = calloc(1, sizeof *s);
    if (s && !(s->ctx = de265_new_decoder())) {
        free(s);
        s = NULL;
    }
    *dec = s;
    return s ? plugin_ok() : plugin_oom();
}

static void hevc_free(void *dec)
{
    hevc_stream *s = dec;
    if (s)
        de265_free_decoder(s->ctx);
    free(s);
}

/* libheif pushes NAL units, each after its 4-byte length: the hvcC
 * parameter sets, then the item's data. */
static struct heif_error hevc_push(void *dec, const void *data, size_t size)
{
    hevc_stream *s = dec;
    const uint8_t *b = data;
    for (size_t at = 0; at < size && !s->refused;) {
        if (size - at < 4 || img_be32(b + at) > size - at - 4 ||
            img_be32(b + at) > INT_MAX)
            return plugin_result(heif_error_Decoder_plugin_error,
                             "the HEVC data is truncated");
        size_t len = img_be32(b + at);
        const uint8_t *nal = b + at + 4;
        at += 4 + len;
        if (len >= 2 && (nal[0] >> 1 & 63) == 33 &&
            sps_libde265_prints(nal, len)) {
            s->refused = 1;
            break;
        }
        if (de265_push_NAL(s->ctx, nal, (int)len, 0, NULL) != DE265_OK)
            return plugin_oom();
    }
    return plugin_ok();
}

static struct heif_error hevc_decode(void *dec, struct heif_image **out)
{
    hevc_stream *s = dec;
    *out = NULL;
    if (s->refused)
        return plugin_result(heif_error_Decoder_plugin_error,
                             "the HEVC sequence parameters are invalid");
    de265_flush_data(s->ctx);
    const struct de265_image *pic = NULL;
    int more = 1;
    while (!pic && more) {
        more = 0;
        if (de265_decode(s->ctx, &more) != DE265_OK)
            break;
        pic = de265_get_next_picture(s->ctx);
    }
    if (!pic)
        return plugin_result(heif_error_Decoder_plugin_error,
                             "the HEVC data is damaged");
    enum de265_chroma cf = de265_get_chroma_format(pic);
    int planes = cf == de265_chroma_mono ? 1 : 3;
    int bpp = de265_get_bits_per_pixel(pic, 0);
    plane pl[3];
    struct heif_error e = plugin_ok();
    for (int c = 0; c < planes; c++) {
        int stride;
        pl[c].data = de265_get_image_plane(pic, c, &stride);
        pl[c].stride = stride;
        pl[c].w = de265_get_image_width(pic, c);
        pl[c].h = de265_get_image_height(pic, c);
        if (!pl[c].data || pl[c].w <= 0 || pl[c].h <= 0 ||
            de265_get_bits_per_pixel(pic, c) != bpp)
            e = plugin_result(heif_error_Decoder_plugin_error,
                              "the HEVC picture is malformed");
    }
    if (e.code == heif_error_Ok)
        e = plane_image(pl, planes, bpp, (enum heif_chroma)cf, out);
    de265_release_next_picture(s->ctx);
    return e;
}

static const struct heif_decoder_plugin hevc_plugin = {
    .plugin_api_version = 3,
    .get_plugin_name = hevc_name,
    .init_plugin = hevc_init,
    .deinit_plugin = NULL,
    .does_support_format = hevc_supports,
    .new_decoder = hevc_new,
    .free_decoder = hevc_free,
    .push_data = hevc_push,
    .decode_image = hevc_decode,
    .set_strict_decoding = plugin_strict,
    .id_name = "vit-libde265",
};

/* ------------------------------------------------ libheif, once */

/* heif_init sets up libheif's decoder list and colour conversions, which
 * it would otherwise do lazily and unguarded on first use: once, for all
 * threads, and our AV1 decoder with it. */
static pthread_once_t heif_once = PTHREAD_ONCE_INIT;
static int heif_ready;

static void heif_setup(void)
{
    struct heif_error e = heif_init(NULL);
    if (e.code != heif_error_Ok)
        return;
    e = heif_register_decoder_plugin(&av1_plugin);
    if (e.code == heif_error_Ok)
        e = heif_register_decoder_plugin(&hevc_plugin);
    heif_ready = e.code == heif_error_Ok;
}

const char *img_heif_missing(int avif)
{
    pthread_once(&heif_once, heif_setup);
    if (!heif_ready)
        return "libheif could not be initialized";
    if (avif && !heif_have_decoder_for_format(heif_compression_AV1))
        return "AVIF images need an AV1 decoder in libheif, and this one "
               "has none";
    if (!avif && !heif_have_decoder_for_format(heif_compression_HEVC))
        return "HEIC images need libheif's HEVC decoder (libde265), which "
               "this libheif was built without";
    return NULL;
}

/* ------------------------------------------------ decoding */

/* libheif's error as a status and a sentence naming the format. */
static img_status heif_failed(struct heif_error e, const uint8_t *b,
                              size_t n, const char *kind, char *err,
                              size_t errlen)
{
    const char *why = e.message ? e.message : "";
    int len = (int)strcspn(why, "\n");
    if (len == 0) {
        why = "no detail";
        len = 9;
    }
    if (e.code == heif_error_Memory_allocation_error) {
        if (e.subcode == heif_suberror_Security_limit_exceeded)
            return img_fail(err, errlen, IMG_E_LIMIT,
                            "%s image exceeds libheif's size limit (%.*s)",
                            kind, len, why);
        return img_fail(err, errlen, IMG_E_NOMEM, "out of memory");
    }
    /* Whatever libheif missed first, a file cut short is truncated. */
    if (e.subcode == heif_suberror_End_of_data || img_heif_cut_short(b, n))
        return img_fail(err, errlen, IMG_E_CORRUPT, "%s image is truncated",
                        kind);
    if (e.code == heif_error_Unsupported_filetype)
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "%s file is of a kind libheif does not read (%.*s)",
                        kind, len, why);
    if (e.code == heif_error_Unsupported_feature)
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "%s image uses a feature libheif does not decode "
                        "(%.*s)",
                        kind, len, why);
    return img_fail(err, errlen, IMG_E_CORRUPT, "%s image is damaged (%.*s)",
                    kind, len, why);
}

/* The file's primary image: the context that reads `b` in place (it must
 * outlive both) and the image's handle. `side` is the longest side to let
 * libheif allocate, 0 for its own limit. */
static img_status open_primary(const uint8_t *b, size_t n, const char *kind,
                               int avif, uint64_t side,
                               struct heif_context **ctx,
                               struct heif_image_handle **h, char *err,
                               size_t errlen)
{
    *ctx = NULL;
    *h = NULL;
    const char *missing = img_heif_missing(avif);
    if (missing)
        return img_fail(err, errlen, IMG_E_FORMAT, "%s", missing);
    struct heif_context *c = heif_context_alloc();
    if (!c)
        return img_fail(err, errlen, IMG_E_NOMEM, "out of memory");
    /* libheif refuses a side of this many pixels or more; never more
     * than its own default (32768). Grid tiles are decoded in this
     * thread, one after another: the caller runs decodes in parallel. */
    if (side && side < 32767)
        heif_context_set_maximum_image_size_limit(c, (int)side + 1);
    heif_context_set_max_decoding_threads(c, 0);
    struct heif_error e =
        heif_context_read_from_memory_without_copy(c, b, n, NULL);
    if (e.code == heif_error_Ok)
        e = heif_context_get_primary_image_handle(c, h);
    if (e.code != heif_error_Ok) {
        /* The message lives in the context: written out before it goes. */
        img_status st = heif_failed(e, b, n, kind, err, errlen);
        heif_context_free(c);
        *h = NULL;
        return st;
    }
    *ctx = c;
    return IMG_OK;
}

/* The size Pillow opens the image at: the transformed image's for HEIC,
 * the coded (ispe) one for AVIF, which Pillow does not crop or turn. */
static img_status primary_size(const struct heif_image_handle *h, int avif,
                               const char *kind, uint32_t *w, uint32_t *h_,
                               char *err, size_t errlen)
{
    int iw = avif ? heif_image_handle_get_ispe_width(h)
                  : heif_image_handle_get_width(h);
    int ih = avif ? heif_image_handle_get_ispe_height(h)
                  : heif_image_handle_get_height(h);
    if (iw <= 0 || ih <= 0)
        return img_fail(err, errlen, IMG_E_CORRUPT,
                        "%s image has no valid size (%dx%d)", kind, iw, ih);
    *w = (uint32_t)iw;
    *h_ = (uint32_t)ih;
    return IMG_OK;
}

img_status img_size_heif(const uint8_t *bytes, size_t n, uint32_t *w,
                         uint32_t *h, char *err, size_t errlen)
{
    int avif = img_heif_is_avif(bytes, n);
    const char *kind = avif ? "AVIF" : "HEIC";
    struct heif_context *ctx;
    struct heif_image_handle *hd;
    img_status st = open_primary(bytes, n, kind, avif, 0, &ctx, &hd, err,
                                 errlen);
    if (st != IMG_OK)
        return st;
    st = primary_size(hd, avif, kind, w, h, err, errlen);
    heif_image_handle_release(hd);
    heif_context_free(ctx);
    return st;
}

/* A premultiplied colour value divided by its alpha as the reference
 * does it: for HEIC, Pillow's conversion of pillow-heif's "RGBa" image
 * (255 c / a, truncated; alpha 0 and 255 keep c); for AVIF, libyuv's
 * ARGBUnattenuate in Pillow's libavif (an 8.8 fixed-point reciprocal). */
static int unpremultiply(int c, int a, int avif)
{
    if (!avif) {
        int v = a == 0 || a == 255 ? c : 255 * c / a;
        return v > 255 ? 255 : v;
    }
    uint32_t ia = a == 0 ? 0 : a == 1 ? 0xffff : a == 255 ? 0x100
                                                           : 0x10000u / a;
    uint32_t v = ((uint32_t)c * ia) >> 8;
    return v > 255 ? 255 : (int)v;
}

/* The longest side `lim` lets an image have, 0 for none. */
static uint64_t longest_side(const img_limits *lim)
{
    uint64_t side = lim->max_pixels;
    uint64_t wh = lim->max_width > lim->max_height ? lim->max_width
                                                   : lim->max_height;
    if (lim->max_width && lim->max_height && (!side || wh < side))
        side = wh;
    return side;
}

img_status img_decode_heif(const uint8_t *bytes, size_t n,
                           const img_decode_opts *opt, img_rgb *out,
                           int *orient, char *err, size_t errlen)
{
    int avif = img_heif_is_avif(bytes, n);
    const char *kind = avif ? "AVIF" : "HEIC";
    struct heif_context *ctx;
    struct heif_image_handle *hd;
    img_status st = open_primary(bytes, n, kind, avif,
                                 longest_side(&opt->limits), &ctx, &hd, err,
                                 errlen);
    if (st != IMG_OK)
        return st;
    struct heif_image *im = NULL;
    struct heif_decoding_options *dopt = NULL;
    uint8_t *rgb = NULL;
    uint32_t w, h;
    if ((st = primary_size(hd, avif, kind, &w, &h, err, errlen)) != IMG_OK ||
        (st = img_check_dims(&opt->limits, w, h, err, errlen)) != IMG_OK)
        goto out;
    /* What the codec decodes may be larger than what is shown (HEVC codes
     * whole blocks and crops them off): its pixel count is checked too. */
    img_limits coded = {.max_pixels = opt->limits.max_pixels};
    int cw = heif_image_handle_get_ispe_width(hd);
    int ch = heif_image_handle_get_ispe_height(hd);
    if (cw > 0 && ch > 0 &&
        (st = img_check_dims(&coded, (uint64_t)cw, (uint64_t)ch, err,
                             errlen)) != IMG_OK)
        goto out;
    if (!(dopt = heif_decoding_options_alloc())) {
        st = img_fail(err, errlen, IMG_E_NOMEM, "out of memory");
        goto out;
    }
    dopt->convert_hdr_to_8bit = 1;
    dopt->ignore_transformations = avif;
    uint64_t frame = opt->limits.max_pixels;
    av1_frame_limit = frame && frame < 1u << 30 ? (unsigned)frame : 1u << 30;
    int alpha = heif_image_handle_has_alpha_channel(hd);
    struct heif_error e = heif_decode_image(
        hd, &im, heif_colorspace_RGB,
        alpha ? heif_chroma_interleaved_RGBA : heif_chroma_interleaved_RGB,
        dopt);
    av1_frame_limit = 0;
    if (e.code != heif_error_Ok) {
        im = NULL;
        st = heif_failed(e, bytes, n, kind, err, errlen);
        goto out;
    }
    int stride = 0;
    const uint8_t *px =
        heif_image_get_plane_readonly(im, heif_channel_interleaved, &stride);
    int gw = heif_image_get_width(im, heif_channel_interleaved);
    int gh = heif_image_get_height(im, heif_channel_interleaved);
    if (!px || gw != (int)w || gh != (int)h || stride < 0 ||
        (size_t)stride < (size_t)w * (alpha ? 4 : 3)) {
        st = img_fail(err, errlen, IMG_E_CORRUPT,
                      "%s image decodes to %dx%d, not the %ux%u its header "
                      "states",
                      kind, gw, gh, w, h);
        goto out;
    }
    if (!(rgb = malloc((size_t)w * h * 3))) {
        st = img_fail(err, errlen, IMG_E_NOMEM, "out of memory");
        goto out;
    }
    /* convert("RGB") keeps the colour bytes; CLIP's convert_to_rgb lays
     * the RGBA image over white first. Premultiplied colours are divided
     * by alpha first, as each reference does. */
    int premul = alpha && heif_image_is_premultiplied_alpha(im);
    /* transformers' convert_to_rgb looks for an "A" band, and
     * pillow-heif's premultiplied image has bands R, G, B, a: it is only
     * converted. */
    int over = alpha && opt->composite_on_white && (avif || !premul);
    for (uint32_t y = 0; y < h; y++) {
        const uint8_t *s = px + (size_t)y * (size_t)stride;
        uint8_t *d = rgb + (size_t)y * w * 3;
        for (uint32_t x = 0; x < w; x++, s += alpha ? 4 : 3, d += 3)
            for (int c = 0; c < 3; c++) {
                int v = premul ? unpremultiply(s[c], s[3], avif) : s[c];
                d[c] = over ? img_over_white(v, s[3]) : (uint8_t)v;
            }
    }
    out->width = (int)w;
    out->height = (int)h;
    out->rgb = rgb;
    rgb = NULL;
    *orient =
        avif && opt->exif_transpose ? img_avif_orientation(bytes, n) : 1;
out:
    free(rgb);
    heif_image_release(im);
    heif_decoding_options_free(dopt);
    heif_image_handle_release(hd);
    heif_context_free(ctx);
    return st;
}

#endif /* VIT_HAVE_HEIF */
