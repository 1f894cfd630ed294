/*
 * What the two libFuzzer targets share: one input is decoded with options
 * picked by its last byte (so the fuzzer explores them without a separate
 * format), within limits small enough to keep each run fast, and a
 * decoded image is then preprocessed too, so the resampler sees every odd
 * size the decoders can produce. Any crash, leak, sanitizer report or
 * broken contract (an image returned with a failure, a failure without a
 * message) is a finding.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include "imgio/imgio.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void fuzz_one(const uint8_t *data, size_t size)
{
    img_decode_opts opt = img_decode_opts_default();
    unsigned bits = size ? data[size - 1] : 0;
    opt.exif_transpose = bits & 1;
    opt.composite_on_white = (bits >> 1) & 1;
    opt.fast_min_side = (bits >> 2) & 1 ? 1 + (bits >> 5) * 7 : 0;
    /* 4 Mpixel and 64 MiB of coefficients: room for every structure the
     * decoders have, without spending the fuzzer's time on huge images. */
    opt.limits.max_pixels = (uint64_t)1 << 22;
    opt.limits.max_decoder_memory = (size_t)64 << 20;

    img_rgb im = {0};
    char err[256];
    err[0] = '\0';
    img_status st = img_decode_ex(data, size, &opt, &im, err, sizeof err);
    if (st != IMG_OK) {
        if (im.rgb != NULL || err[0] == '\0')
            abort();
        return;
    }
    if (im.width <= 0 || im.height <= 0 || im.rgb == NULL)
        abort();
    /* img_size reads, from the header alone, the size decoded (as stored:
     * an EXIF turn may swap the sides; DCT scaling decodes smaller). */
    uint32_t hw, hh;
    img_status ss = img_size(data, size, &opt.limits, &hw, &hh, err,
                             sizeof err);
    if (!opt.fast_min_side &&
        (ss != IMG_OK ||
         !((hw == (uint32_t)im.width && hh == (uint32_t)im.height) ||
           (opt.exif_transpose && hw == (uint32_t)im.height &&
            hh == (uint32_t)im.width))))
        abort();
    /* Touch every byte, so an unwritten one shows under MSan-like tools
     * and a short buffer under ASan. */
    unsigned sum = 0;
    for (size_t i = 0; i < (size_t)im.width * (size_t)im.height * 3; i++)
        sum += im.rgb[i];
    (void)sum;
    if ((bits >> 3) & 1) {
        img_preprocess_cfg cfg = {
            .do_resize = 1, .resample = (img_filter)((bits >> 4) % 6),
            .shortest_edge = 7 + (int)(bits % 23), .do_center_crop = 1,
            .crop_h = 5 + (int)(bits % 11), .crop_w = 9, .do_rescale = 1,
            .rescale_factor = 1 / 255.0f, .do_normalize = 1,
            .mean = {0.5f, 0.5f, 0.5f}, .std = {0.5f, 0.5f, 0.5f}};
        int oh, ow;
        img_preprocess_size(&cfg, im.width, im.height, &oh, &ow);
        float *out = malloc((size_t)oh * (size_t)ow * 3 * sizeof *out);
        if (out && img_preprocess(&im, &cfg, out, oh, ow, err, sizeof err) !=
                       IMG_OK &&
            err[0] == '\0')
            abort();
        free(out);
    }
    img_rgb_free(&im);
}

#endif
