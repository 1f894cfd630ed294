/*
 * WebP decoding with libwebp (Debian's libwebp-dev), as Pillow decodes
 * WebP: its WebPImagePlugin opens every WebP file, still or animated,
 * through libwebp's animation decoder (WebPAnimDecoderNew with default
 * options: non-premultiplied RGBA), takes the first frame as composited on
 * the transparent black canvas, and calls the image RGBA when the
 * bitstream has alpha, RGB otherwise; convert("RGB") then keeps the color
 * bytes. The same decoder is used here, so lossless files decode to the
 * same pixels whatever libwebp version, and lossy ones wherever libwebp's
 * YUV to RGB conversion agrees (tests/check_imgio.c holds Pillow's pixels,
 * made with its own libwebp). EXIF and XMP come from the container's
 * "EXIF" and "XMP " chunks, where Pillow finds them.
 */
#include "imgio/imgio_impl.h"

#include <stdlib.h>
#include <string.h>

#include <webp/decode.h>
#include <webp/demux.h>

static img_status bitstream_fail(VP8StatusCode code, char *err,
                                 size_t errlen)
{
    switch (code) {
    case VP8_STATUS_NOT_ENOUGH_DATA:
        return img_fail(err, errlen, IMG_E_CORRUPT,
                        "WebP image is truncated");
    case VP8_STATUS_UNSUPPORTED_FEATURE:
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "WebP image uses a feature libwebp does not decode");
    case VP8_STATUS_OUT_OF_MEMORY:
        return img_fail(err, errlen, IMG_E_NOMEM, "out of memory");
    default:
        return img_fail(err, errlen, IMG_E_CORRUPT,
                        "WebP image is damaged (libwebp status %d)",
                        (int)code);
    }
}

img_status img_size_webp(const uint8_t *bytes, size_t n, uint32_t *w,
                         uint32_t *h, char *err, size_t errlen)
{
    /* The canvas of an animation, the image of a still file. */
    WebPBitstreamFeatures f;
    VP8StatusCode code = WebPGetFeatures(bytes, n, &f);
    if (code != VP8_STATUS_OK)
        return bitstream_fail(code, err, errlen);
    *w = (uint32_t)f.width;
    *h = (uint32_t)f.height;
    return IMG_OK;
}

/* The orientation the container's metadata asks for, 1..8, from the
 * demuxer the animation decoder has already made. */
static int webp_orientation(const WebPDemuxer *dmx)
{
    if (!dmx)
        return 1;
    WebPChunkIterator it;
    int o = IMG_ORIENT_ABSENT;
    if (WebPDemuxGetChunk(dmx, "EXIF", 1, &it)) {
        o = img_tiff_orientation(it.chunk.bytes, it.chunk.size);
        WebPDemuxReleaseChunkIterator(&it);
    }
    const uint8_t *xmp = NULL;
    size_t xmp_n = 0;
    int have_xmp = WebPDemuxGetChunk(dmx, "XMP ", 1, &it);
    if (have_xmp) {
        xmp = it.chunk.bytes;
        xmp_n = it.chunk.size;
    }
    int r = img_exif_resolve(o, xmp, xmp_n, have_xmp);
    if (have_xmp)
        WebPDemuxReleaseChunkIterator(&it);
    return r;
}

img_status img_decode_webp(const uint8_t *bytes, size_t n,
                           const img_decode_opts *opt, img_rgb *out,
                           int *orient, char *err, size_t errlen)
{
    WebPBitstreamFeatures f;
    VP8StatusCode code = WebPGetFeatures(bytes, n, &f);
    if (code != VP8_STATUS_OK)
        return bitstream_fail(code, err, errlen);
    /* The animation decoder allocates its canvases (8 bytes a pixel) as
     * it is made: the size is checked before. */
    img_status st = img_check_dims(&opt->limits, (uint64_t)f.width,
                                   (uint64_t)f.height, err, errlen);
    if (st != IMG_OK)
        return st;
    WebPData data = {bytes, n};
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&data, NULL);
    WebPAnimInfo info;
    uint8_t *rgba = NULL;
    int ts;
    if (!dec || !WebPAnimDecoderGetInfo(dec, &info) ||
        !WebPAnimDecoderGetNext(dec, &rgba, &ts)) {
        WebPAnimDecoderDelete(dec);
        /* The plain decoder says why, where the animation one cannot (it
         * refuses animations, whose frames are then what is damaged). */
        WebPDecoderConfig cfg;
        code = VP8_STATUS_BITSTREAM_ERROR;
        if (!f.has_animation && WebPInitDecoderConfig(&cfg)) {
            cfg.output.colorspace = MODE_RGBA;
            code = WebPDecode(bytes, n, &cfg);
            WebPFreeDecBuffer(&cfg.output);
        }
        return bitstream_fail(code == VP8_STATUS_OK ? VP8_STATUS_BITSTREAM_ERROR
                                                    : code,
                              err, errlen);
    }
    size_t px = (size_t)info.canvas_width * info.canvas_height;
    uint8_t *rgb = malloc(px * 3);
    if (!rgb) {
        WebPAnimDecoderDelete(dec);
        return img_fail(err, errlen, IMG_E_NOMEM, "out of memory");
    }
    /* Pillow's convert("RGB") keeps the color bytes; CLIP's convert_to_rgb
     * of the RGBA image (composite_on_white) lays it over white first. */
    int over = opt->composite_on_white && f.has_alpha;
    for (size_t i = 0; i < px; i++) {
        const uint8_t *s = rgba + 4 * i;
        uint8_t *d = rgb + 3 * i;
        for (int c = 0; c < 3; c++)
            d[c] = over ? img_over_white(s[c], s[3]) : s[c];
    }
    *orient = opt->exif_transpose
                  ? webp_orientation(WebPAnimDecoderGetDemuxer(dec))
                  : 1;
    WebPAnimDecoderDelete(dec);
    out->width = (int)info.canvas_width;
    out->height = (int)info.canvas_height;
    out->rgb = rgb;
    return IMG_OK;
}
