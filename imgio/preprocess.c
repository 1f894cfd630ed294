/*
 * The steps of a reference image processor (transformers' ViT and CLIP
 * processors on their Pillow backend) from an RGB image to the model's
 * input tensor: the output size rule, then resize, center crop, rescale
 * and normalize, with the reference's rounding of sizes and offsets and
 * its order of float operations.
 */
#include "imgio/imgio_impl.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* transformers' get_resize_output_image_size with default_to_square=False:
 * the short side becomes `edge` and the long side is
 * int(edge * long / short), a true division truncated. The product is
 * exact in 64 bits and the division is correctly rounded in double, as is
 * Python's int / int, so the truncation sees the same number. */
static void shortest_edge_size(int edge, int w, int h, int *oh, int *ow)
{
    int sh = w <= h ? w : h, lg = w <= h ? h : w;
    int nl = (int)((double)((int64_t)edge * lg) / (double)sh);
    if (w <= h) {
        *ow = edge;
        *oh = nl;
    } else {
        *oh = edge;
        *ow = nl;
    }
}

/* transformers' get_size_with_aspect_ratio((h, w), edge, longest), the
 * rule of a {"shortest_edge", "longest_edge"} size: when the long side
 * would pass `longest`, the short side becomes round(longest * short /
 * long) (Python's round: half to even, which rint is in the default
 * rounding mode) and the long side is computed from the unrounded value.
 * Each float operation is Python's, in its order. */
static void aspect_size(int edge, int longest, int w, int h, int *oh,
                        int *ow)
{
    double mn = w < h ? w : h, mx = w < h ? h : w, raw = 0;
    int size = edge;
    if (mx / mn * size > longest) {
        raw = (double)longest * mn / mx;
        size = (int)rint(raw);
    }
    if ((h <= w && h == size) || (w <= h && w == size)) {
        *oh = h;
        *ow = w;
    } else if (w < h) {
        *ow = size;
        *oh = raw > 0 ? (int)(raw * h / w)
                      : (int)((double)((int64_t)size * h) / (double)w);
    } else {
        *oh = size;
        *ow = raw > 0 ? (int)(raw * w / h)
                      : (int)((double)((int64_t)size * w) / (double)h);
    }
}

/* transformers' get_image_size_for_max_height_width: the image scaled by
 * min(max_h / h, max_w / w), each side truncated. */
static void max_hw_size(int max_h, int max_w, int w, int h, int *oh,
                        int *ow)
{
    double sh = (double)max_h / h, sw = (double)max_w / w;
    double s = sh < sw ? sh : sw;
    *oh = (int)(h * s);
    *ow = (int)(w * s);
}

/* timm's ResizeKeepRatio.get_params without its random parts: ratio =
 * max(h / th, w / tw) * longest + min(...) * (1 - longest), then each side
 * round(side * 1.0 / ratio), Python's float operations in its order. */
static void keep_ratio_size(int longest, int th, int tw, int w, int h,
                            int *oh, int *ow)
{
    double rh = (double)h / th, rw = (double)w / tw;
    double mx = rh > rw ? rh : rw, mn = rh > rw ? rw : rh;
    double ratio = mx * longest + mn * (1.0 - longest);
    *oh = (int)rint(h * 1.0 / ratio);
    *ow = (int)rint(w * 1.0 / ratio);
}

void img_preprocess_size(const img_preprocess_cfg *cfg, int src_w, int src_h,
                         int *out_h, int *out_w)
{
    int h = src_h, w = src_w;
    if (cfg->do_resize && cfg->keep_ratio && src_w > 0 && src_h > 0 &&
        cfg->size_h > 0 && cfg->size_w > 0) {
        keep_ratio_size(cfg->keep_ratio == 2, cfg->size_h, cfg->size_w,
                        src_w, src_h, &h, &w);
    } else if (cfg->do_resize && src_w > 0 && src_h > 0 &&
        (cfg->shortest_edge > 0 || (cfg->max_h > 0 && cfg->max_w > 0))) {
        if (cfg->shortest_edge > 0 && cfg->longest_edge > 0)
            aspect_size(cfg->shortest_edge, cfg->longest_edge, src_w, src_h,
                        &h, &w);
        else if (cfg->shortest_edge > 0)
            shortest_edge_size(cfg->shortest_edge, src_w, src_h, &h, &w);
        else
            max_hw_size(cfg->max_h, cfg->max_w, src_w, src_h, &h, &w);
    } else if (cfg->do_resize) {
        h = cfg->size_h;
        w = cfg->size_w;
    }
    if (cfg->do_center_crop) {
        h = cfg->crop_h;
        w = cfg->crop_w;
    }
    *out_h = h;
    *out_w = w;
}

int img_preprocess_min_side(const img_preprocess_cfg *cfg)
{
    if (!cfg || !cfg->do_resize || cfg->keep_ratio)
        return 0;
    if (cfg->shortest_edge > 0)
        return cfg->shortest_edge;
    /* The result fits in max_w x max_h, so its short side is at most the
     * larger of the two: shrinking the source's short side to that never
     * makes the resize enlarge. */
    if (cfg->max_h > 0 && cfg->max_w > 0)
        return cfg->max_h > cfg->max_w ? cfg->max_h : cfg->max_w;
    return cfg->size_h > cfg->size_w ? cfg->size_h : cfg->size_w;
}

/* transformers rescales in float64 by the Python float in the config, then
 * casts to float32. The config value reaches us as a float; for the value
 * nearly every checkpoint uses, 1/255, we recover the double so that the
 * product rounds as the reference's does (with the float, 126 of the 256
 * possible values would come out one unit in the last place away). */
static double rescale_factor(float f)
{
    return f == (float)(1.0 / 255.0) ? 1.0 / 255.0 : (double)f;
}

/* Rescale and normalize, fused into one table per channel: each of the
 * 256 possible inputs goes through exactly the reference's operations,
 * once. The Pillow backend runs numpy's: the float64 product cast to
 * float32, then float32 subtract and divide. The torchvision backend
 * folds the rescale into mean and std (each a float32 times the float32
 * of 1 / rescale_factor) and subtracts and divides in float32; rescaling
 * alone is a float32 product. */
static void normalize_table(const img_preprocess_cfg *cfg, float lut[3][256])
{
    double scale = cfg->do_rescale ? rescale_factor(cfg->rescale_factor) : 1.0;
    int tv = cfg->backend == IMG_BACKEND_TORCHVISION;
    for (int c = 0; c < 3; c++) {
        float mean = cfg->mean[c], std = cfg->std[c];
        if (tv && cfg->do_rescale && cfg->do_normalize) {
            float inv = (float)(1.0 / scale);
            mean *= inv;
            std *= inv;
        }
        for (int v = 0; v < 256; v++) {
            float f = (float)v;
            if (tv && cfg->do_rescale && !cfg->do_normalize)
                f *= (float)scale;
            else if (!tv && cfg->do_rescale)
                f = cfg->rescale_divide ? (float)v / (float)(1.0 / scale)
                                        : (float)(v * scale);
            if (cfg->do_normalize)
                f = (f - mean) / std;
            lut[c][v] = f;
        }
    }
}

img_status img_preprocess(const img_rgb *src, const img_preprocess_cfg *cfg,
                          float *out, int out_h, int out_w, char *err,
                          size_t errlen)
{
    if (!src || !cfg || !out || !src->rgb || src->width <= 0 ||
        src->height <= 0)
        return img_fail(err, errlen, IMG_E_ARG,
                        "img_preprocess needs a non-empty image, a "
                        "configuration and an output buffer");
    int rh, rw, eh, ew;
    img_preprocess_size(cfg, src->width, src->height, &eh, &ew);
    if (eh != out_h || ew != out_w)
        return img_fail(err, errlen, IMG_E_ARG,
                        "output is %dx%d but the configuration gives %dx%d "
                        "for a %dx%d image",
                        out_w, out_h, ew, eh, src->width, src->height);
    if (out_h <= 0 || out_w <= 0)
        return img_fail(err, errlen, IMG_E_ARG,
                        "the configuration gives an empty %dx%d output",
                        out_w, out_h);
    if (cfg->do_normalize &&
        (cfg->std[0] == 0 || cfg->std[1] == 0 || cfg->std[2] == 0))
        return img_fail(err, errlen, IMG_E_ARG,
                        "normalization std has a zero entry");

    /* The size before cropping, and the crop's offsets in it:
     * transformers' center_crop takes top = (h - crop_h) // 2, a floor
     * even when negative; a crop larger than the image pads with zeros
     * placed so that this same offset holds. The torchvision backend pads
     * (crop_h - h) // 2 above instead, the floor of the other sign, so its
     * top is one row lower when the difference is odd. Without a crop the
     * offsets are 0 and the output is the whole resized image. */
    {
        img_preprocess_cfg nocrop = *cfg;
        nocrop.do_center_crop = 0;
        img_preprocess_size(&nocrop, src->width, src->height, &rh, &rw);
    }
    if (!cfg->do_resize)
        rh = src->height, rw = src->width;
    if (rh <= 0 || rw <= 0)
        return img_fail(err, errlen, IMG_E_ARG,
                        "the configuration resizes to an empty %dx%d image",
                        rw, rh);
    int top = 0, left = 0;
    if (cfg->do_center_crop) {
        int dh = rh - out_h, dw = rw - out_w;
        int tv = cfg->backend == IMG_BACKEND_TORCHVISION || cfg->crop_round;
        int r = cfg->crop_round;
        top = dh >= 0 ? (r ? (int)rint(dh / 2.0) : dh / 2)
              : tv    ? -(-dh / 2)
                      : -((-dh + 1) / 2);
        left = dw >= 0 ? (r ? (int)rint(dw / 2.0) : dw / 2)
               : tv    ? -(-dw / 2)
                       : -((-dw + 1) / 2);
    }
    /* The part of the resized image the crop keeps: only it is resized
     * (img_resize_window gives exactly those pixels of the full resize),
     * which for a 16:9 photo under CLIP's square crop skips 44% of the
     * work. */
    int wy0 = top > 0 ? top : 0, wx0 = left > 0 ? left : 0;
    int wy1 = top + out_h < rh ? top + out_h : rh;
    int wx1 = left + out_w < rw ? left + out_w : rw;
    int wh = wy1 - wy0, ww = wx1 - wx0;
    const uint8_t *win = NULL; /* window pixel (0, 0) */
    size_t wstride = 0;        /* bytes between its rows */
    uint8_t *resized = NULL;
    if (wh > 0 && ww > 0) {
        if (rh != src->height || rw != src->width) {
            resized = malloc((size_t)ww * (size_t)wh * 3);
            if (!resized)
                return img_fail(err, errlen, IMG_E_NOMEM,
                                "out of memory resizing to %dx%d", rw, rh);
            img_status st =
                cfg->backend == IMG_BACKEND_TORCHVISION
                    ? img_resize_window_tv(src, rw, rh, cfg->resample, wx0,
                                           wy0, ww, wh, resized, err, errlen)
                    : img_resize_window(src, rw, rh, cfg->resample, wx0,
                                        wy0, ww, wh, resized, err, errlen);
            if (st != IMG_OK) {
                free(resized);
                return st;
            }
            win = resized;
            wstride = (size_t)ww * 3;
        } else {
            wstride = (size_t)src->width * 3;
            win = src->rgb + (size_t)wy0 * wstride + (size_t)wx0 * 3;
        }
    }

    float lut[3][256];
    normalize_table(cfg, lut);
    size_t plane = (size_t)out_h * (size_t)out_w;
    for (int c = 0; c < 3; c++) {
        const float *t = lut[c];
        for (int y = 0; y < out_h; y++) {
            float *o = out + (size_t)c * plane + (size_t)y * (size_t)out_w;
            int sy = y + top;
            if (sy < wy0 || sy >= wy1) {
                for (int x = 0; x < out_w; x++)
                    o[x] = t[0]; /* padding: a zero pixel */
                continue;
            }
            const uint8_t *row = win + (size_t)(sy - wy0) * wstride + c;
            for (int x = 0; x < out_w; x++) {
                int sx = x + left;
                o[x] = sx >= wx0 && sx < wx1 ? t[row[(size_t)(sx - wx0) * 3]]
                                             : t[0];
            }
        }
    }
    free(resized);
    return IMG_OK;
}
