/*
 * Resampling as torchvision's v2.functional.resize(antialias=True) does it
 * to a uint8 image tensor on the CPU, which is what the default ("fast",
 * torchvision-backed) image processors of transformers 5 run. Our own code
 * because what matters is exactness to that reference, and nothing we link
 * computes it: Pillow's resampling (resize.c) differs in the weights'
 * precision, the cubic's arithmetic, the pass order and NEAREST's rule, so
 * the two disagree on about 0.4 to 1% of the bytes of our test images, by
 * up to 18 levels where the filters overshoot, and NEAREST picks other
 * pixels on some sizes.
 *
 * Re-derived from torchvision's resize_image and PyTorch's CPU upsampling
 * kernels (the separable antialiased path of UpSampleKernel.cpp and its AVX
 * twin, which compute the same integers):
 *
 *  - BILINEAR, BICUBIC, LANCZOS: a horizontal pass, then a vertical one,
 *    each skipped when its side does not change, the intermediate image
 *    rounded to 8 bits. Per axis, in double: scale = in / out; the support
 *    is the kernel's half width (1, 2, 3) times max(scale, 1); output i is
 *    centred on scale * (i + 0.5) and reads the inputs from
 *    trunc(centre - support + 0.5) (at least 0) to trunc(centre + support
 *    + 0.5) (at most in), at most 2 * ceil(support) + 1 of them, weighted
 *    kernel((j - centre + 0.5) / max(scale, 1)) and normalized to sum to
 *    one. The kernels are the triangle, Keys' cubic with a = -0.5 (in
 *    PyTorch's evaluation order, which differs from Pillow's) and Lanczos-3,
 *    sinc(x) sinc(x / 3) for |x| < 3. The weights then become 16-bit
 *    integers with a precision chosen per pass: the most fraction bits, up
 *    to 22, for which the largest weight of the whole axis still rounds
 *    below 2^15 at one bit more; each weight is rounded half away from zero.
 *    A sum starts at one half, adds pixel * weight in 32 bits, is shifted
 *    right by the precision and clamped to 0..255.
 *  - NEAREST (transformers sends PIL's NEAREST to NEAREST_EXACT): the input
 *    index floor(float((i + 0.5) * s)), with s = float(in) / float(out) in
 *    single precision, capped at in - 1; no antialiasing.
 *  - BOX and HAMMING: torchvision casts the tensor to float and
 *    interpolate() raises NotImplementedError, so they are refused here.
 *  - Equal sizes: the image is returned as it is, before any mode check, so
 *    a copy for every filter, BOX and HAMMING included.
 *
 * Sums fit in 32 bits: they are at most 255 times the absolute sum of the
 * weights of one output (about 1.3 * 2^22 for Lanczos) plus one half.
 */
#include "imgio/imgio_impl.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

static double tv_triangle(double x)
{
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Keys' cubic, a = -0.5, written as PyTorch evaluates it: a different
 * order of operations rounds some weights differently. */
static double tv_cubic(double x)
{
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0)
        return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2.0)
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    return 0.0;
}

static double tv_lanczos3(double x)
{
    x = fabs(x);
    return x < 3.0 ? img_sinc(x) * img_sinc(x / 3.0) : 0.0;
}

/* One axis of a separable resize: its geometry and the int16 weights of
 * the outputs [o0, o0 + n) that the window needs. */
typedef struct {
    double (*fn)(double x);
    int in;
    double scale, support, inv;
    int ksize;     /* weights per output, 2 * ceil(support) + 1 */
    int prec;      /* fraction bits of the weights, chosen per axis */
    int o0, n;     /* outputs held */
    int *first;    /* (n) first input read */
    int *len;      /* (n) inputs read */
    int32_t *k;    /* (n, ksize) */
    double *w;     /* (ksize) scratch */
} tv_axis;

static void tv_axis_free(tv_axis *a)
{
    free(a->first);
    free(a->len);
    free(a->k);
    free(a->w);
    a->first = a->len = NULL;
    a->k = NULL;
    a->w = NULL;
}

/* The normalized double weights of output i into a->w; returns how many
 * inputs it reads, from *lo on. *norm is 0 when they summed to zero and
 * were left as they are (which then do not count for the precision). */
static int tv_weights(tv_axis *a, int i, int *lo, int *norm)
{
    double centre = a->scale * (i + 0.5);
    int64_t xmin = (int64_t)(centre - a->support + 0.5);
    int64_t xmax = (int64_t)(centre + a->support + 0.5);
    if (xmin < 0)
        xmin = 0;
    if (xmax > a->in)
        xmax = a->in;
    int64_t n = xmax - xmin;
    if (n < 0)
        n = 0;
    if (n > a->ksize)
        n = a->ksize;
    double total = 0.0;
    for (int64_t j = 0; j < n; j++) {
        a->w[j] = a->fn(((double)(j + xmin) - centre + 0.5) * a->inv);
        total += a->w[j];
    }
    *norm = total != 0.0;
    if (*norm)
        for (int64_t j = 0; j < n; j++)
            a->w[j] /= total;
    *lo = (int)xmin;
    return (int)n;
}

/* Sets up the axis mapping `in` samples onto `out` with kernel fn of width
 * taps (at scale 1) and keeps the weights of outputs [o0, o0 + n). The
 * precision depends on the largest weight over all outputs, so every
 * output's weights are computed once for it. Returns 0 when out of memory
 * or when the kernel would be absurdly wide. */
static int tv_axis_build(tv_axis *a, int in, int out, double (*fn)(double),
                         int taps, int o0, int n)
{
    a->fn = fn;
    a->in = in;
    a->scale = (double)in / out;
    a->support = a->scale >= 1.0 ? (taps * 0.5) * a->scale : taps * 0.5;
    a->inv = a->scale >= 1.0 ? 1.0 / a->scale : 1.0;
    double ks = ceil(a->support) * 2 + 1;
    if (ks > (double)(INT32_MAX / 8))
        return 0;
    a->ksize = (int)ks;
    a->o0 = o0;
    a->n = n;
    a->w = malloc((size_t)a->ksize * sizeof *a->w);
    a->first = malloc((size_t)n * sizeof *a->first);
    a->len = malloc((size_t)n * sizeof *a->len);
    a->k = calloc((size_t)n * (size_t)a->ksize, sizeof *a->k);
    if (!a->w || !a->first || !a->len || !a->k) {
        tv_axis_free(a);
        return 0;
    }
    double wmax = 0.0;
    int lo, norm;
    for (int i = 0; i < out; i++) {
        int m = tv_weights(a, i, &lo, &norm);
        for (int j = 0; norm && j < m; j++)
            if (wmax < a->w[j])
                wmax = a->w[j];
    }
    for (a->prec = 0; a->prec < 22; a->prec++)
        if ((int)(0.5 + wmax * (1 << (a->prec + 1))) >= (1 << 15))
            break;
    if (a->prec == 0) /* a weight of 16384 or more: cannot happen */
        a->prec = 1;
    for (int i = 0; i < n; i++) {
        int m = tv_weights(a, o0 + i, &lo, &norm);
        int32_t *k = a->k + (size_t)i * (size_t)a->ksize;
        for (int j = 0; j < m; j++) {
            double v = a->w[j] * (1 << a->prec);
            k[j] = v < 0 ? (int32_t)(-0.5 + v) : (int32_t)(0.5 + v);
        }
        a->first[i] = lo;
        a->len[i] = m;
    }
    return 1;
}

/* A fixed-point sum to a byte: shift, then clamp to 0..255. */
static inline uint8_t tv_clip(int32_t v, int prec)
{
    if (v < 0)
        return 0;
    v >>= prec;
    return v > 255 ? 255 : (uint8_t)v;
}

/* The horizontal pass over `rows` rows of src (rows sstride bytes apart)
 * into dst (rows dstride bytes apart), for the axis' outputs. */
static void tv_hpass(uint8_t *dst, size_t dstride, const uint8_t *src,
                     size_t sstride, int rows, const tv_axis *a)
{
    const int32_t half = (int32_t)1 << (a->prec - 1);
    for (int y = 0; y < rows; y++) {
        const uint8_t *in = src + (size_t)y * sstride;
        uint8_t *o = dst + (size_t)y * dstride;
        for (int x = 0; x < a->n; x++, o += 3) {
            const int32_t *k = a->k + (size_t)x * (size_t)a->ksize;
            const uint8_t *p = in + (size_t)a->first[x] * 3;
            int32_t s0 = half, s1 = half, s2 = half;
            for (int j = 0; j < a->len[x]; j++, p += 3) {
                s0 += p[0] * k[j];
                s1 += p[1] * k[j];
                s2 += p[2] * k[j];
            }
            o[0] = tv_clip(s0, a->prec);
            o[1] = tv_clip(s1, a->prec);
            o[2] = tv_clip(s2, a->prec);
        }
    }
}

/* The vertical pass: src holds input rows row0 on (sstride bytes apart),
 * each `width` bytes used; dst gets the axis' output rows. acc: width. */
static void tv_vpass(uint8_t *dst, size_t dstride, const uint8_t *src,
                     size_t sstride, int row0, size_t width, const tv_axis *a,
                     int32_t *acc)
{
    const int32_t half = (int32_t)1 << (a->prec - 1);
    for (int y = 0; y < a->n; y++) {
        const int32_t *k = a->k + (size_t)y * (size_t)a->ksize;
        for (size_t i = 0; i < width; i++)
            acc[i] = half;
        for (int j = 0; j < a->len[y]; j++) {
            const uint8_t *r = src + (size_t)(a->first[y] + j - row0) * sstride;
            int32_t kj = k[j];
            for (size_t i = 0; i < width; i++)
                acc[i] += r[i] * kj;
        }
        uint8_t *o = dst + (size_t)y * dstride;
        for (size_t i = 0; i < width; i++)
            o[i] = tv_clip(acc[i], a->prec);
    }
}

/* The separable resize of the window: only the source rows its output
 * rows read go through the horizontal pass, and only its columns. Every
 * value is computed exactly as for the whole image. Returns 0 when out of
 * memory. */
static int tv_resize_conv(uint8_t *dst, const uint8_t *src, int sw, int sh,
                          int out_w, int out_h, double (*fn)(double),
                          int taps, int wx, int wy, int ww, int wh)
{
    tv_axis ah = {0}, av = {0};
    uint8_t *tmp = NULL;
    int32_t *acc = NULL;
    int ok = 0;
    size_t sstride = (size_t)sw * 3, dstride = (size_t)ww * 3;
    int r0 = wy, r1 = wy + wh;
    if (out_h != sh) {
        if (!tv_axis_build(&av, sh, out_h, fn, taps, wy, wh))
            goto out;
        r0 = av.first[0];
        r1 = 0;
        for (int i = 0; i < wh; i++) {
            if (av.first[i] < r0)
                r0 = av.first[i];
            if (av.first[i] + av.len[i] > r1)
                r1 = av.first[i] + av.len[i];
        }
        if (r1 < r0)
            r1 = r0;
    }
    const uint8_t *mid = src + (size_t)r0 * sstride + (size_t)wx * 3;
    size_t mstride = sstride;
    if (out_w != sw) {
        if (!tv_axis_build(&ah, sw, out_w, fn, taps, wx, ww))
            goto out;
        tmp = malloc(dstride * (size_t)(r1 - r0) + 1);
        if (!tmp)
            goto out;
        tv_hpass(tmp, dstride, src + (size_t)r0 * sstride, sstride, r1 - r0,
                 &ah);
        mid = tmp;
        mstride = dstride;
    }
    if (out_h != sh) {
        acc = malloc(dstride * sizeof *acc);
        if (!acc)
            goto out;
        tv_vpass(dst, dstride, mid, mstride, r0, dstride, &av, acc);
    } else {
        for (int y = 0; y < wh; y++)
            memcpy(dst + (size_t)y * dstride, mid + (size_t)y * mstride,
                   dstride);
    }
    ok = 1;
out:
    tv_axis_free(&ah);
    tv_axis_free(&av);
    free(tmp);
    free(acc);
    return ok;
}

/* NEAREST_EXACT's input index for output i, in PyTorch's single precision:
 * the product is exact in double and rounded once to float, as there. */
static int tv_nearest_index(int i, int in, int out)
{
    float s = (float)in / (float)out;
    float pos = (float)(((double)i + 0.5) * (double)s);
    int64_t v = (int64_t)floorf(pos);
    return v < in - 1 ? (int)v : in - 1;
}

static int tv_resize_nearest(uint8_t *dst, const uint8_t *src, int sw,
                             int sh, int out_w, int out_h, int wx, int wy,
                             int ww, int wh)
{
    int *xs = malloc((size_t)ww * sizeof *xs);
    if (!xs)
        return 0;
    for (int x = 0; x < ww; x++)
        xs[x] = tv_nearest_index(wx + x, sw, out_w);
    for (int y = 0; y < wh; y++) {
        const uint8_t *in =
            src + (size_t)tv_nearest_index(wy + y, sh, out_h) * (size_t)sw * 3;
        uint8_t *o = dst + (size_t)y * (size_t)ww * 3;
        for (int x = 0; x < ww; x++)
            memcpy(o + 3 * (size_t)x, in + 3 * (size_t)xs[x], 3);
    }
    free(xs);
    return 1;
}

img_status img_resize_window_tv(const img_rgb *src, int out_w, int out_h,
                                img_filter f, int wx, int wy, int ww, int wh,
                                uint8_t *dst, char *err, size_t errlen)
{
    img_status st = img_window_check(src, out_w, out_h, wx, wy, ww, wh, dst,
                                     "img_resize_window_tv", err, errlen);
    if (st != IMG_OK)
        return st;
    double (*fn)(double) = NULL;
    int taps = 0;
    switch (f) {
    case IMG_BILINEAR:
        fn = tv_triangle, taps = 2;
        break;
    case IMG_BICUBIC:
        fn = tv_cubic, taps = 4;
        break;
    case IMG_LANCZOS:
        fn = tv_lanczos3, taps = 6;
        break;
    case IMG_NEAREST:
    case IMG_BOX:
    case IMG_HAMMING:
        break;
    default:
        return img_fail(err, errlen, IMG_E_ARG,
                        "unknown resampling filter %d", (int)f);
    }
    int sw = src->width, sh = src->height;
    int ok = 1;
    if (sw == out_w && sh == out_h) {
        /* torchvision hands the image back, whatever the filter, as Pillow
         * does: img_resize_window's copy of the window. */
        return img_resize_window(src, out_w, out_h, f, wx, wy, ww, wh, dst,
                                 err, errlen);
    } else if (f == IMG_BOX || f == IMG_HAMMING) {
        return img_fail(err, errlen, IMG_E_ARG,
                        "torchvision cannot resize an image tensor with %s: "
                        "interpolate() has no such mode (only NEAREST, "
                        "BILINEAR, BICUBIC and LANCZOS)",
                        f == IMG_BOX ? "BOX" : "HAMMING");
    } else if (f == IMG_NEAREST) {
        ok = tv_resize_nearest(dst, src->rgb, sw, sh, out_w, out_h, wx, wy,
                               ww, wh);
    } else {
        ok = tv_resize_conv(dst, src->rgb, sw, sh, out_w, out_h, fn, taps, wx,
                            wy, ww, wh);
    }
    if (!ok)
        return img_fail(err, errlen, IMG_E_NOMEM,
                        "out of memory resizing %dx%d to %dx%d", sw, sh,
                        out_w, out_h);
    return IMG_OK;
}
