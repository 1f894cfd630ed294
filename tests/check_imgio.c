/*
 * Tests of imgio/ against fixtures made by the references (Pillow for
 * decoding and resampling, transformers' Pillow-backend processors for
 * preprocessing), written by tests/gen_fixtures_images.py into
 * tests/fixtures/images/ and listed in its manifest.txt: one loop test per
 * manifest case, each printing its max difference. Then the inputs that
 * must be refused, each its own test, and sweeps of truncated and damaged
 * files that must never crash, leak or touch the output. Every test reads
 * what it needs itself, so none depends on another having run.
 */
#include "imgio/imgio.h"
#include "imgio/imgio_impl.h"

#include <check.h>
#include <math.h>
#include <pthread.h>
#include <unistd.h>
#include <zlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIXDIR "tests/fixtures/images/"

/* ---------------------------------------------------------------- files */

static uint8_t *read_all(const char *name, size_t *n)
{
    char path[512];
    snprintf(path, sizeof path, FIXDIR "%s", name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open fixture %s", path);
    ck_assert(fseek(f, 0, SEEK_END) == 0);
    long len = ftell(f);
    ck_assert(len >= 0);
    rewind(f);
    uint8_t *b = malloc((size_t)len + 1);
    ck_assert(b != NULL);
    ck_assert(fread(b, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* A .npy array as numpy.save writes it: '|u1' or '<f4', C order. Enough of
 * the format for our own fixtures; anything else fails the test. */
typedef struct {
    int ndim;
    int shape[4];
    size_t count;
    int is_float;
    void *data;  /* uint8_t or float */
} npy;

static npy npy_load(const char *name)
{
    size_t n;
    uint8_t *b = read_all(name, &n);
    npy a = {0};
    ck_assert_msg(n >= 10 && memcmp(b, "\x93NUMPY", 6) == 0,
                  "%s is not a .npy file", name);
    size_t hlen = b[6] == 1 ? (size_t)(b[8] | b[9] << 8) : 0;
    size_t off = b[6] == 1 ? 10 : 12;
    if (b[6] != 1)
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 |
               (size_t)b[11] << 24;
    ck_assert(off + hlen <= n);
    char hdr[512];
    ck_assert(hlen < sizeof hdr);
    memcpy(hdr, b + off, hlen);
    hdr[hlen] = '\0';
    ck_assert_msg(strstr(hdr, "'fortran_order': False"), "%s: %s", name, hdr);
    if (strstr(hdr, "'descr': '|u1'"))
        a.is_float = 0;
    else if (strstr(hdr, "'descr': '<f4'"))
        a.is_float = 1;
    else
        ck_abort_msg("%s: unexpected dtype in %s", name, hdr);
    const char *s = strstr(hdr, "'shape': (");
    ck_assert(s != NULL);
    s += strlen("'shape': (");
    a.count = 1;
    while (*s && *s != ')') {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s) {
            s++;
            continue;
        }
        ck_assert(a.ndim < 4);
        a.shape[a.ndim++] = (int)v;
        a.count *= (size_t)v;
        s = end;
    }
    size_t esize = a.is_float ? 4 : 1;
    ck_assert_msg(off + hlen + a.count * esize == n, "%s: size mismatch",
                  name);
    a.data = malloc(a.count * esize + 1);
    ck_assert(a.data != NULL);
    memcpy(a.data, b + off + hlen, a.count * esize);
    free(b);
    return a;
}

/* An HxWx3 uint8 .npy as an image. */
static img_rgb npy_image(const char *name)
{
    npy a = npy_load(name);
    ck_assert_msg(!a.is_float && a.ndim == 3 && a.shape[2] == 3,
                  "%s is not an HxWx3 uint8 image", name);
    img_rgb im = {.width = a.shape[1], .height = a.shape[0], .rgb = a.data};
    return im;
}

/* The index-th manifest line of a kind ("decode", "resize", ...), without
 * the kind; returns 0 when there is none. */
static int manifest_line(const char *kind, int index, char *line, size_t len)
{
    FILE *f = fopen(FIXDIR "manifest.txt", "r");
    if (!f)
        return 0;
    size_t kl = strlen(kind);
    int found = 0;
    while (fgets(line, (int)len, f)) {
        if (strncmp(line, kind, kl) == 0 && line[kl] == ' ' && index-- == 0) {
            memmove(line, line + kl + 1, strlen(line + kl + 1) + 1);
            line[strcspn(line, "\r\n")] = '\0';
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

static int manifest_count(const char *kind)
{
    char line[1024];
    int n = 0;
    while (manifest_line(kind, n, line, sizeof line))
        n++;
    return n;
}

/* Compares two uint8 buffers: the largest difference and how many equal. */
static int max_diff_u8(const uint8_t *a, const uint8_t *b, size_t n,
                       size_t *same)
{
    int m = 0;
    *same = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > m)
            m = d;
        if (d == 0)
            (*same)++;
    }
    return m;
}

/* A small deterministic generator, so failures reproduce. */
static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* ------------------------------------------------- decoding vs Pillow */

START_TEST(test_decode_case)
{
    char line[1024], name[256], exp[256];
    ck_assert_msg(manifest_line("decode", _i, line, sizeof line),
                  "manifest.txt has no decode case %d", _i);
    ck_assert(sscanf(line, "%255s %255s", name, exp) == 2);
    size_t n;
    uint8_t *bytes = read_all(name, &n);
    img_rgb im = npy_image(exp);
    img_rgb got = {0};
    char err[256] = "";
    img_status st = img_decode(bytes, n, NULL, &got, err, sizeof err);
    ck_assert_msg(st == IMG_OK, "%s: %s (%s)", name, img_status_str(st), err);
    ck_assert_msg(got.width == im.width && got.height == im.height,
                  "%s: decoded %dx%d, Pillow %dx%d", name, got.width,
                  got.height, im.width, im.height);
    size_t total = (size_t)im.width * (size_t)im.height * 3, same;
    int md = max_diff_u8(got.rgb, im.rgb, total, &same);
    printf("imgio decode %-30s %3dx%-3d max diff %d, %zu/%zu identical\n",
           name, im.width, im.height, md, same, total);
    ck_assert_msg(md == 0, "%s: differs from Pillow by up to %d", name, md);
    img_rgb_free(&got);
    img_rgb_free(&im);
    free(bytes);
}
END_TEST

/* img_size reads the size Pillow decodes every case at, from the header
 * alone. */
START_TEST(test_size_case)
{
    char line[1024], name[256], exp[256];
    ck_assert(manifest_line("decode", _i, line, sizeof line));
    ck_assert(sscanf(line, "%255s %255s", name, exp) == 2);
    size_t n;
    uint8_t *bytes = read_all(name, &n);
    img_rgb im = npy_image(exp);
    uint32_t w = 0, h = 0;
    char err[256] = "";
    img_status st = img_size(bytes, n, NULL, &w, &h, err, sizeof err);
    ck_assert_msg(st == IMG_OK, "%s: %s (%s)", name, img_status_str(st), err);
    ck_assert_msg(w == (uint32_t)im.width && h == (uint32_t)im.height,
                  "%s: header says %ux%u, Pillow decodes %dx%d", name, w, h,
                  im.width, im.height);
    img_rgb_free(&im);
    free(bytes);
}
END_TEST

/* Decodes the fixture `name` with `opt`, which must succeed at the size
 * of the reference image `ref`; the file's bytes are left in *bytes. */
static img_rgb decode_fixture(const char *name, const img_decode_opts *opt,
                              const img_rgb *ref, uint8_t **bytes, size_t *n)
{
    *bytes = read_all(name, n);
    img_rgb got = {0};
    char err[256] = "";
    img_status st = img_decode_ex(*bytes, *n, opt, &got, err, sizeof err);
    ck_assert_msg(st == IMG_OK, "%s: %s (%s)", name, img_status_str(st), err);
    ck_assert_msg(got.width == ref->width && got.height == ref->height,
                  "%s: decoded %dx%d, reference %dx%d", name, got.width,
                  got.height, ref->width, ref->height);
    return got;
}

/* Decoding with options ("decode_ex NAME EXPECTED key=value..."): EXIF
 * orientation against Pillow's exif_transpose, alpha compositing against
 * transformers' convert_to_rgb. */
START_TEST(test_decode_ex_case)
{
    char line[1024], name[256], exp[256];
    int used = 0;
    ck_assert_msg(manifest_line("decode_ex", _i, line, sizeof line),
                  "manifest.txt has no decode_ex case %d", _i);
    ck_assert(sscanf(line, "%255s %255s %n", name, exp, &used) == 2);
    img_decode_opts opt = img_decode_opts_default();
    for (char *tok = strtok(line + used, " "); tok; tok = strtok(NULL, " ")) {
        if (!strncmp(tok, "exif=", 5))
            opt.exif_transpose = atoi(tok + 5);
        else if (!strncmp(tok, "composite=", 10))
            opt.composite_on_white = atoi(tok + 10);
        else if (!strncmp(tok, "transparency_white=", 19))
            opt.transparency_white = atoi(tok + 19);
        else
            ck_abort_msg("unknown decode_ex option %s", tok);
    }
    size_t n;
    uint8_t *bytes;
    img_rgb im = npy_image(exp);
    img_rgb got = decode_fixture(name, &opt, &im, &bytes, &n);
    size_t total = (size_t)im.width * (size_t)im.height * 3, same;
    int md = max_diff_u8(got.rgb, im.rgb, total, &same);
    printf("imgio decode_ex %-36s %3dx%-3d max diff %d, %zu/%zu identical\n",
           name, im.width, im.height, md, same, total);
    ck_assert_msg(md == 0, "%s: differs from Pillow by up to %d", name, md);
    img_rgb_free(&got);
    img_rgb_free(&im);
    free(bytes);
}
END_TEST

/* img_decode keeps its behaviour: no turning, whatever the file says;
 * img_decode_ex with exif_transpose off gives the same pixels. */
START_TEST(test_decode_ignores_exif)
{
    size_t n;
    uint8_t *b = read_all("exif_jpg_6.jpg", &n);
    img_rgb a = {0}, c = {0}, d = {0};
    ck_assert(img_decode(b, n, NULL, &a, NULL, 0) == IMG_OK);
    ck_assert(a.width == 29 && a.height == 17);
    img_decode_opts opt = img_decode_opts_default();
    ck_assert(opt.exif_transpose == 1 && opt.composite_on_white == 0 &&
              opt.fast_min_side == 0);
    ck_assert(img_decode_ex(b, n, NULL, &c, NULL, 0) == IMG_OK);
    ck_assert(c.width == 17 && c.height == 29);
    opt.exif_transpose = 0;
    ck_assert(img_decode_ex(b, n, &opt, &d, NULL, 0) == IMG_OK);
    ck_assert(d.width == 29 && d.height == 17);
    ck_assert(memcmp(a.rgb, d.rgb, 29 * 17 * 3) == 0);
    img_rgb_free(&a);
    img_rgb_free(&c);
    img_rgb_free(&d);
    free(b);
}
END_TEST

/* ------------------------------------------------- HEIC and AVIF */

/* Whether this build reads the fixture `name` (named heic_... or
 * avif_...); when it does not, says so and which file goes untested. */
static int heif_readable(const char *name)
{
    const char *why = img_heif_missing(strncmp(name, "avif", 4) == 0);
    if (why)
        printf("imgio heif %s: skipped: %s\n", name, why);
    return why == NULL;
}

/* A HEIC or AVIF against its reference ("heif NAME EXPECTED exif=E
 * composite=C max=R,G,B same=K"): the YCbCr to RGB conversion is not the
 * reference's own (imgio/heif.c), so the pixels must stay within the
 * difference measured for the case, per channel, and at least K pixels
 * must be identical. */
START_TEST(test_heif_case)
{
    char line[1024], name[256], exp[256];
    int ex, comp, bound[3];
    size_t want_same;
    ck_assert_msg(manifest_line("heif", _i, line, sizeof line),
                  "manifest.txt has no heif case %d", _i);
    ck_assert(sscanf(line, "%255s %255s exif=%d composite=%d max=%d,%d,%d "
                           "same=%zu",
                     name, exp, &ex, &comp, &bound[0], &bound[1], &bound[2],
                     &want_same) == 8);
    if (!heif_readable(name))
        return;
    img_decode_opts opt = img_decode_opts_default();
    opt.exif_transpose = ex;
    opt.composite_on_white = comp;
    size_t n;
    uint8_t *bytes;
    img_rgb im = npy_image(exp);
    img_rgb got = decode_fixture(name, &opt, &im, &bytes, &n);
    size_t px = (size_t)im.width * (size_t)im.height, same = 0;
    int md[3] = {0, 0, 0};
    for (size_t i = 0; i < px; i++) {
        int eq = 1;
        for (int c = 0; c < 3; c++) {
            int d = abs((int)got.rgb[3 * i + c] - (int)im.rgb[3 * i + c]);
            md[c] = d > md[c] ? d : md[c];
            eq &= d == 0;
        }
        same += (size_t)eq;
    }
    printf("imgio heif %-30s %3dx%-3d max diff %d,%d,%d (bound %d,%d,%d), "
           "%zu/%zu pixels identical (at least %zu)\n",
           name, im.width, im.height, md[0], md[1], md[2], bound[0],
           bound[1], bound[2], same, px, want_same);
    for (int c = 0; c < 3; c++)
        ck_assert_msg(md[c] <= bound[c],
                      "%s: channel %d differs by %d, past the measured %d",
                      name, c, md[c], bound[c]);
    ck_assert_msg(same >= want_same,
                  "%s: %zu pixels identical, fewer than the measured %zu",
                  name, same, want_same);
    /* img_size gives the size as decoded, before an EXIF turn. */
    uint32_t w = 0, h = 0;
    ck_assert(img_size(bytes, n, NULL, &w, &h, NULL, 0) == IMG_OK);
    ck_assert_msg((w == (uint32_t)im.width && h == (uint32_t)im.height) ||
                      (ex && w == (uint32_t)im.height &&
                       h == (uint32_t)im.width),
                  "%s: header says %ux%u, decoded %dx%d", name, w, h,
                  im.width, im.height);
    img_rgb_free(&got);
    img_rgb_free(&im);
    free(bytes);
}
END_TEST

/* Decoders running at once in several threads (as `vit` runs them) get
 * the pixels one thread gets: libheif is set up once, and each thread's
 * AV1 frame limit is its own. */
static void *heif_decode_thread(void *arg)
{
    const char **names = arg;
    long bad = 0;
    for (int round = 0; round < 4; round++)
        for (int i = 0; names[i]; i++) {
            size_t n;
            char path[512];
            snprintf(path, sizeof path, FIXDIR "%s", names[i]);
            FILE *f = fopen(path, "rb");
            if (!f)
                return (void *)1;
            fseek(f, 0, SEEK_END);
            n = (size_t)ftell(f);
            rewind(f);
            uint8_t *b = malloc(n);
            if (!b || fread(b, 1, n, f) != n)
                bad++;
            fclose(f);
            img_rgb a = {0}, c = {0};
            img_limits lim = img_limits_default();
            lim.max_pixels = (uint64_t)1 << (20 + round);
            if (!b || img_decode(b, n, &lim, &a, NULL, 0) != IMG_OK ||
                img_decode(b, n, NULL, &c, NULL, 0) != IMG_OK ||
                a.width != c.width || a.height != c.height ||
                memcmp(a.rgb, c.rgb, (size_t)a.width * a.height * 3))
                bad++;
            img_rgb_free(&a);
            img_rgb_free(&c);
            free(b);
        }
    return (void *)bad;
}

START_TEST(test_heif_threads)
{
    if (!heif_readable("avif_rgba.avif") || !heif_readable("heic_grid.heic"))
        return;
    static const char *names[] = {"heic_grid.heic", "avif_rgba.avif",
                                  "heic_rgba.heic", "avif_420.avif", NULL};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        ck_assert(pthread_create(&t[i], NULL, heif_decode_thread,
                                 (void *)names) == 0);
    for (int i = 0; i < 4; i++) {
        void *bad;
        ck_assert(pthread_join(t[i], &bad) == 0);
        ck_assert_msg(bad == NULL, "thread %d: %ld decodes went wrong", i,
                      (long)bad);
    }
}
END_TEST

/* ------------------------------------------------- resizing vs Pillow */

static const char *filter_name(int f)
{
    static const char *names[] = {"nearest", "lanczos", "bilinear",
                                  "bicubic", "box",     "hamming"};
    return f >= 0 && f < 6 ? names[f] : "?";
}

/* The index-th manifest case of `kind`, its difference printed:
 * "resize" is img_resize against Pillow, which may differ by one level on
 * 0.1% of the bytes; "resize_tv" is img_resize_window_tv against
 * torchvision, which must match exactly. */
static void check_resize_case(const char *kind, int index)
{
    char line[1024], src_name[256], exp[256];
    int f, w, h, tv = strcmp(kind, "resize_tv") == 0;
    ck_assert_msg(manifest_line(kind, index, line, sizeof line),
                  "manifest.txt has no %s case %d", kind, index);
    ck_assert(sscanf(line, "%255s %d %d %d %255s", src_name, &f, &w, &h,
                     exp) == 5);
    img_rgb src = npy_image(src_name), want = npy_image(exp);
    ck_assert(want.width == w && want.height == h);
    img_rgb got = {0};
    char err[256] = "";
    img_status st;
    if (tv) {
        got = (img_rgb){w, h, malloc((size_t)w * (size_t)h * 3)};
        ck_assert(got.rgb != NULL);
        st = img_resize_window_tv(&src, w, h, (img_filter)f, 0, 0, w, h,
                                  got.rgb, err, sizeof err);
    } else {
        st = img_resize(&src, w, h, (img_filter)f, &got, err, sizeof err);
    }
    ck_assert_msg(st == IMG_OK, "%s", err);
    ck_assert(got.width == w && got.height == h);
    size_t total = (size_t)w * (size_t)h * 3, same;
    int md = max_diff_u8(got.rgb, want.rgb, total, &same);
    double frac = (double)same / (double)total;
    printf("imgio %s %-8s %3dx%-3d -> %3dx%-3d %-8s max diff %d, "
           "%.3f%% identical\n",
           kind, src_name, src.width, src.height, w, h, filter_name(f), md,
           100.0 * frac);
    if (tv) {
        ck_assert_msg(md == 0, "%s: max diff %d, %zu of %zu bytes differ",
                      exp, md, total - same, total);
    } else {
        ck_assert_msg(md <= 1, "%s: max diff %d", exp, md);
        ck_assert_msg(frac >= 0.999, "%s: only %.4f identical", exp, frac);
    }
    img_rgb_free(&got);
    img_rgb_free(&src);
    img_rgb_free(&want);
}

START_TEST(test_resize_case)
{
    check_resize_case("resize", _i);
}
END_TEST

START_TEST(test_resize_same_size_copies)
{
    img_rgb src = npy_image("src_a.npy"), got = {0};
    ck_assert(img_resize(&src, src.width, src.height, IMG_BICUBIC, &got, NULL,
                         0) == IMG_OK);
    ck_assert(got.rgb != src.rgb);
    ck_assert(memcmp(got.rgb, src.rgb, (size_t)src.width * src.height * 3) ==
              0);
    img_rgb_free(&got);
    img_rgb_free(&src);
}
END_TEST

START_TEST(test_resize_bad_args)
{
    img_rgb src = npy_image("src_a.npy");
    img_rgb got = {.width = -7, .height = -7, .rgb = NULL};
    char err[256] = "";
    ck_assert(img_resize(&src, 0, 5, IMG_BILINEAR, &got, err, sizeof err) ==
              IMG_E_ARG);
    ck_assert(strlen(err) > 0);
    ck_assert(img_resize(&src, 5, 5, (img_filter)42, &got, NULL, 0) ==
              IMG_E_ARG);
    ck_assert(img_resize(NULL, 5, 5, IMG_BILINEAR, &got, NULL, 0) ==
              IMG_E_ARG);
    ck_assert(got.width == -7 && got.rgb == NULL);
    img_rgb_free(&src);
}
END_TEST

/* Windows of src resized as shape says ({src w, src h, out w, out h}) by
 * fn (img_resize_window or img_resize_window_tv, which take the same
 * arguments), byte for byte against that region of `full`, the whole
 * output: 12 random ones, the first at the origin, the second reaching
 * the far edges, alternately with img_resize's plain loops and SIMD. */
typedef img_status (*window_fn)(const img_rgb *src, int out_w, int out_h,
                                img_filter f, int wx, int wy, int ww, int wh,
                                uint8_t *dst, char *err, size_t errlen);

static void check_windows(window_fn fn, const img_rgb *src,
                          const int shape[4], img_filter f,
                          const uint8_t *full, uint32_t *seed)
{
    int ow = shape[2], oh = shape[3];
    for (int t = 0; t < 12; t++) {
        int wx = (int)(lcg(seed) % (uint32_t)ow);
        int wy = (int)(lcg(seed) % (uint32_t)oh);
        if (t == 0)
            wx = wy = 0;
        int ww = 1 + (int)(lcg(seed) % (uint32_t)(ow - wx));
        int wh = 1 + (int)(lcg(seed) % (uint32_t)(oh - wy));
        if (t == 1)
            ww = ow - wx, wh = oh - wy;
        uint8_t *win = malloc((size_t)ww * wh * 3);
        ck_assert(win != NULL);
        img_resize_plain = t % 2;
        ck_assert(fn(src, ow, oh, f, wx, wy, ww, wh, win, NULL, 0) ==
                  IMG_OK);
        img_resize_plain = 0;
        for (int y = 0; y < wh; y++)
            ck_assert_msg(memcmp(win + (size_t)y * ww * 3,
                                 full + ((size_t)(wy + y) * ow + wx) * 3,
                                 (size_t)ww * 3) == 0,
                          "%dx%d -> %dx%d %s: window %dx%d at (%d, %d) row "
                          "%d differs",
                          shape[0], shape[1], ow, oh, filter_name(f), ww, wh,
                          wx, wy, y);
        free(win);
    }
}

/* The SIMD passes and the windowed resize against the plain full resize,
 * byte for byte, on noise (every clamp and negative lobe exercised), over
 * shapes that take each pass order, single passes, upscales, thin images
 * and windows touching every edge. */
START_TEST(test_resize_simd_and_windows)
{
    static const int shapes[][4] = {
        {1920 / 8, 1080 / 8, 50, 28}, {97, 61, 23, 40}, {61, 97, 40, 23},
        {64, 48, 90, 70},             {64, 48, 64, 20}, {64, 48, 23, 48},
        {64, 48, 70, 20},             {64, 48, 50, 9},  {1, 57, 3, 20},
        {500, 1, 37, 1},              {7, 5, 3, 2},     {3, 3, 200, 2},
        {300, 17, 13, 300},
    };
    uint32_t seed = 2024;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int sw = shapes[si][0], sh = shapes[si][1];
        int ow = shapes[si][2], oh = shapes[si][3];
        img_rgb src = {sw, sh, malloc((size_t)sw * sh * 3)};
        ck_assert(src.rgb != NULL);
        for (size_t i = 0; i < (size_t)sw * sh * 3; i++)
            src.rgb[i] = (uint8_t)lcg(&seed);
        for (int f = 0; f < 6; f++) {
            img_rgb plain = {0}, simd = {0};
            img_resize_plain = 1;
            ck_assert(img_resize(&src, ow, oh, (img_filter)f, &plain, NULL,
                                 0) == IMG_OK);
            img_resize_plain = 0;
            ck_assert(img_resize(&src, ow, oh, (img_filter)f, &simd, NULL,
                                 0) == IMG_OK);
            ck_assert_msg(memcmp(plain.rgb, simd.rgb,
                                 (size_t)ow * oh * 3) == 0,
                          "%dx%d -> %dx%d %s: SIMD differs from plain", sw,
                          sh, ow, oh, filter_name(f));
            check_windows(img_resize_window, &src, shapes[si],
                          (img_filter)f, plain.rgb, &seed);
            img_rgb_free(&plain);
            img_rgb_free(&simd);
        }
        img_rgb_free(&src);
    }
    /* A window outside the output is an argument error. */
    img_rgb one = {2, 2, (uint8_t[12]){0}};
    uint8_t buf[12];
    ck_assert(img_resize_window(&one, 4, 4, IMG_BILINEAR, 3, 0, 2, 1, buf,
                                NULL, 0) == IMG_E_ARG);
}
END_TEST

/* ------------------------------- resizing vs torchvision (fast processors) */

START_TEST(test_resize_tv_case)
{
    check_resize_case("resize_tv", _i);
}
END_TEST

/* Windows of the torchvision resize against the same region of the whole
 * output, byte for byte, on noise, over shapes that take one pass or both,
 * upscales, thin images and windows touching every edge. */
START_TEST(test_resize_tv_windows)
{
    static const int shapes[][4] = {
        {1920 / 8, 1080 / 8, 50, 28}, {97, 61, 23, 40}, {61, 97, 40, 23},
        {64, 48, 90, 70},             {64, 48, 64, 20}, {64, 48, 23, 48},
        {1, 57, 3, 20},               {500, 1, 37, 1},  {7, 5, 3, 2},
        {3, 3, 200, 2},               {300, 17, 13, 300},
    };
    static const img_filter filters[] = {IMG_NEAREST, IMG_LANCZOS,
                                         IMG_BILINEAR, IMG_BICUBIC};
    uint32_t seed = 2025;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int sw = shapes[si][0], sh = shapes[si][1];
        int ow = shapes[si][2], oh = shapes[si][3];
        img_rgb src = {sw, sh, malloc((size_t)sw * sh * 3)};
        uint8_t *full = malloc((size_t)ow * oh * 3);
        ck_assert(src.rgb != NULL && full != NULL);
        for (size_t i = 0; i < (size_t)sw * sh * 3; i++)
            src.rgb[i] = (uint8_t)lcg(&seed);
        for (size_t fi = 0; fi < sizeof filters / sizeof filters[0]; fi++) {
            img_filter f = filters[fi];
            ck_assert(img_resize_window_tv(&src, ow, oh, f, 0, 0, ow, oh,
                                           full, NULL, 0) == IMG_OK);
            check_windows(img_resize_window_tv, &src, shapes[si], f, full,
                          &seed);
        }
        free(full);
        img_rgb_free(&src);
    }
}
END_TEST

/* BOX and HAMMING are refused with a sentence, unless the size does not
 * change (torchvision then hands the image back, whatever the filter);
 * the argument checks are img_resize_window's. */
START_TEST(test_resize_tv_args)
{
    img_rgb src = npy_image("src_a.npy");
    size_t n = (size_t)src.width * src.height * 3;
    uint8_t *out = malloc(n);
    ck_assert(out != NULL);
    char err[256] = "";
    for (int f = IMG_BOX; f <= IMG_HAMMING; f++) {
        err[0] = '\0';
        ck_assert(img_resize_window_tv(&src, 32, 24, (img_filter)f, 0, 0, 32,
                                       24, out, err, sizeof err) ==
                  IMG_E_ARG);
        ck_assert_msg(strstr(err, "torchvision") != NULL, "%s", err);
        ck_assert(img_resize_window_tv(&src, src.width, 7, (img_filter)f, 0,
                                       0, 1, 1, out, NULL, 0) == IMG_E_ARG);
        memset(out, 0, n);
        ck_assert(img_resize_window_tv(&src, src.width, src.height,
                                       (img_filter)f, 0, 0, src.width,
                                       src.height, out, NULL,
                                       0) == IMG_OK);
        ck_assert(memcmp(out, src.rgb, n) == 0);
    }
    /* A window of the unchanged image is that region of the source. */
    ck_assert(img_resize_window_tv(&src, src.width, src.height, IMG_BICUBIC,
                                   5, 7, 3, 2, out, NULL, 0) == IMG_OK);
    for (int y = 0; y < 2; y++)
        ck_assert(memcmp(out + (size_t)y * 9,
                         src.rgb + ((size_t)(7 + y) * src.width + 5) * 3,
                         9) == 0);
    ck_assert(img_resize_window_tv(&src, 5, 5, (img_filter)42, 0, 0, 5, 5,
                                   out, NULL, 0) == IMG_E_ARG);
    ck_assert(img_resize_window_tv(&src, 0, 5, IMG_BILINEAR, 0, 0, 1, 1, out,
                                   err, sizeof err) == IMG_E_ARG);
    ck_assert(img_resize_window_tv(&src, 4, 4, IMG_BILINEAR, 3, 0, 2, 1, out,
                                   NULL, 0) == IMG_E_ARG);
    ck_assert(img_resize_window_tv(NULL, 4, 4, IMG_BILINEAR, 0, 0, 4, 4, out,
                                   NULL, 0) == IMG_E_ARG);
    ck_assert(img_resize_window_tv(&src, 4, 4, IMG_BILINEAR, 0, 0, 4, 4, NULL,
                                   NULL, 0) == IMG_E_ARG);
    free(out);
    img_rgb_free(&src);
}
END_TEST

/* ------------------------------------------ preprocessing vs transformers */

/* Fills cfg from the manifest's key=value fields. */
static void parse_cfg(char *fields, img_preprocess_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (char *tok = strtok(fields, " "); tok; tok = strtok(NULL, " ")) {
        char *eq = strchr(tok, '=');
        ck_assert(eq != NULL);
        *eq = '\0';
        const char *k = tok, *v = eq + 1;
        if (!strcmp(k, "do_resize"))
            cfg->do_resize = atoi(v);
        else if (!strcmp(k, "resample"))
            cfg->resample = (img_filter)atoi(v);
        else if (!strcmp(k, "shortest_edge"))
            cfg->shortest_edge = atoi(v);
        else if (!strcmp(k, "size_h"))
            cfg->size_h = atoi(v);
        else if (!strcmp(k, "size_w"))
            cfg->size_w = atoi(v);
        else if (!strcmp(k, "do_center_crop"))
            cfg->do_center_crop = atoi(v);
        else if (!strcmp(k, "crop_h"))
            cfg->crop_h = atoi(v);
        else if (!strcmp(k, "crop_w"))
            cfg->crop_w = atoi(v);
        else if (!strcmp(k, "do_rescale"))
            cfg->do_rescale = atoi(v);
        else if (!strcmp(k, "rescale_factor"))
            cfg->rescale_factor = strtof(v, NULL);
        else if (!strcmp(k, "do_normalize"))
            cfg->do_normalize = atoi(v);
        else if (!strcmp(k, "mean"))
            ck_assert(sscanf(v, "%f,%f,%f", &cfg->mean[0], &cfg->mean[1],
                             &cfg->mean[2]) == 3);
        else if (!strcmp(k, "std"))
            ck_assert(sscanf(v, "%f,%f,%f", &cfg->std[0], &cfg->std[1],
                             &cfg->std[2]) == 3);
        else
            ck_abort_msg("unknown manifest key %s", k);
    }
}

START_TEST(test_preprocess_case)
{
    char line[1024], src_name[256], exp[256];
    int used = 0;
    ck_assert_msg(manifest_line("preprocess", _i, line, sizeof line),
                  "manifest.txt has no preprocess case %d", _i);
    ck_assert(sscanf(line, "%255s %255s %n", src_name, exp, &used) == 2);
    img_preprocess_cfg cfg;
    parse_cfg(line + used, &cfg);
    img_rgb src = npy_image(src_name);
    npy want = npy_load(exp);
    ck_assert(want.is_float && want.ndim == 3 && want.shape[0] == 3);
    int oh, ow;
    img_preprocess_size(&cfg, src.width, src.height, &oh, &ow);
    ck_assert_msg(oh == want.shape[1] && ow == want.shape[2],
                  "%s: size %dx%d, reference %dx%d", exp, ow, oh,
                  want.shape[2], want.shape[1]);
    float *got = malloc(want.count * sizeof *got);
    ck_assert(got != NULL);
    char err[256] = "";
    img_status st = img_preprocess(&src, &cfg, got, oh, ow, err, sizeof err);
    ck_assert_msg(st == IMG_OK, "%s: %s", exp, err);
    const float *w = want.data;
    double md = 0;
    size_t same = 0;
    for (size_t i = 0; i < want.count; i++) {
        double d = fabs((double)got[i] - (double)w[i]);
        if (d > md)
            md = d;
        same += got[i] == w[i];
    }
    printf("imgio preprocess %-24s %dx%d -> 3x%dx%d max diff %.3g, "
           "%zu/%zu bit-identical\n",
           exp, src.width, src.height, oh, ow, md, same, want.count);
    ck_assert_msg(md <= 1.0 / 255, "%s: max diff %g", exp, md);
    free(got);
    free(want.data);
    img_rgb_free(&src);
}
END_TEST

START_TEST(test_preprocess_size_case)
{
    char line[256];
    int se, w, h, eh, ew, oh, ow;
    ck_assert(manifest_line("size", _i, line, sizeof line));
    ck_assert(sscanf(line, "%d %d %d %d %d", &se, &w, &h, &eh, &ew) == 5);
    img_preprocess_cfg cfg = {.do_resize = 1, .shortest_edge = se};
    img_preprocess_size(&cfg, w, h, &oh, &ow);
    ck_assert_msg(oh == eh && ow == ew,
                  "shortest_edge %d on %dx%d: got %dx%d, transformers %dx%d",
                  se, w, h, ow, oh, ew, eh);
}
END_TEST

START_TEST(test_preprocess_bad_args)
{
    img_rgb src = npy_image("src_a.npy");
    img_preprocess_cfg cfg = {.do_resize = 1, .resample = IMG_BILINEAR,
                              .size_h = 8, .size_w = 9, .do_rescale = 1,
                              .rescale_factor = 1 / 255.0f, .do_normalize = 1,
                              .mean = {0.5f, 0.5f, 0.5f},
                              .std = {0.5f, 0.5f, 0.5f}};
    float out[3 * 8 * 9];
    char err[256] = "";
    /* The caller's size must be what img_preprocess_size says. */
    ck_assert(img_preprocess(&src, &cfg, out, 9, 8, err, sizeof err) ==
              IMG_E_ARG);
    ck_assert(strlen(err) > 0);
    ck_assert(img_preprocess(&src, &cfg, out, 8, 9, NULL, 0) == IMG_OK);
    cfg.std[1] = 0;
    ck_assert(img_preprocess(&src, &cfg, out, 8, 9, NULL, 0) == IMG_E_ARG);
    cfg.std[1] = 0.5f;
    cfg.resample = (img_filter)17;
    ck_assert(img_preprocess(&src, &cfg, out, 8, 9, NULL, 0) == IMG_E_ARG);
    ck_assert(img_preprocess(NULL, &cfg, out, 8, 9, NULL, 0) == IMG_E_ARG);
    img_rgb_free(&src);
}
END_TEST

/* ------------------------------------------------- inputs to refuse */

/* Decodes and checks the status, that `out` was left alone and that the
 * message contains `needle` (when not NULL). */
static void expect_fail(const void *b, size_t n, const img_limits *lim,
                        img_status want, const char *needle, const char *what)
{
    img_rgb out = {.width = 12345, .height = 678, .rgb = (uint8_t *)&out};
    char err[512] = "";
    img_status st = img_decode(b, n, lim, &out, err, sizeof err);
    ck_assert_msg(st == want, "%s: got %s (%s), want %s", what,
                  img_status_str(st), err, img_status_str(want));
    ck_assert_msg(out.width == 12345 && out.height == 678 &&
                      out.rgb == (uint8_t *)&out,
                  "%s: output touched on failure", what);
    ck_assert_msg(strlen(err) > 0, "%s: no message", what);
    if (needle)
        ck_assert_msg(strstr(err, needle), "%s: message \"%s\" lacks \"%s\"",
                      what, err, needle);
}

START_TEST(test_bad_empty)
{
    expect_fail("", 0, NULL, IMG_E_FORMAT, "empty", "empty buffer");
    expect_fail(NULL, 0, NULL, IMG_E_FORMAT, "empty", "NULL, 0");
}
END_TEST

START_TEST(test_bad_three_bytes)
{
    expect_fail("abc", 3, NULL, IMG_E_FORMAT, NULL, "3 bytes");
    /* Exactly a JPEG signature and nothing else. */
    expect_fail("\xff\xd8\xff", 3, NULL, IMG_E_CORRUPT, "JPEG",
                "JPEG signature only");
}
END_TEST

static void truncated(const char *name, const char *needle)
{
    size_t n;
    uint8_t *b = read_all(name, &n);
    expect_fail(b, n / 2, NULL, IMG_E_CORRUPT, needle, name);
    free(b);
}

START_TEST(test_bad_truncated_jpeg)
{
    truncated("jpg_420.jpg", "Premature end");
    truncated("jpg_444.jpg", "Premature end");
    truncated("jpg_progressive.jpg", "Premature end");
    truncated("jpg_cmyk.jpg", "Premature end");
}
END_TEST

START_TEST(test_bad_truncated_png)
{
    truncated("png_rgb8.png", "PNG");
    truncated("png_interlaced_rgb8.png", "PNG");
    truncated("png_gray16.png", "PNG");
}
END_TEST

START_TEST(test_bad_random_bytes)
{
    uint32_t seed = 12345;
    uint8_t buf[2048];
    for (int trial = 0; trial < 20; trial++) {
        size_t n = 1 + lcg(&seed) % sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)lcg(&seed);
        buf[0] = 0x42; /* not 0xFF or 0x89: no signature by chance */
        expect_fail(buf, n, NULL, IMG_E_FORMAT, NULL, "random bytes");
        /* Garbage after a valid signature goes to the decoder, which must
         * refuse it cleanly. */
        memcpy(buf, "\xff\xd8\xff", 3);
        if (n >= 3)
            expect_fail(buf, n, NULL, IMG_E_CORRUPT, "JPEG",
                        "random bytes after a JPEG signature");
        memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
        if (n >= 8)
            expect_fail(buf, n, NULL, IMG_E_CORRUPT, "PNG",
                        "random bytes after a PNG signature");
    }
}
END_TEST

/* A GIF cut short is refused, as Pillow refuses it ("image file is
 * truncated"), and so is one without an image. */
START_TEST(test_bad_gif)
{
    size_t n;
    uint8_t *b = read_all("gif_pal.gif", &n);
    expect_fail(b, n / 2, NULL, IMG_E_CORRUPT, "GIF image is truncated",
                "GIF cut in half");
    free(b);
    expect_fail("GIF89a", 6, NULL, IMG_E_CORRUPT, "GIF", "GIF header only");
    /* A screen, no palette, then the trailer. */
    static const uint8_t empty[] = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0,
                                    0,   0,   0,   0x3b};
    expect_fail(empty, sizeof empty, NULL, IMG_E_CORRUPT, "holds no image",
                "GIF without an image");
}
END_TEST

START_TEST(test_bad_other_formats)
{
    static const struct {
        const char *file, *name;
    } cases[] = {{"other.psd", "Photoshop (PSD)"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        uint8_t *b = read_all(cases[i].file, &n);
        expect_fail(b, n, NULL, IMG_E_FORMAT, cases[i].name, cases[i].file);
        free(b);
    }
    /* An ISO media file that is no HEIF image: video, say. */
    static const uint8_t mp4[] = "\0\0\0\x18" "ftypisom\0\0\2\0isomiso2";
    expect_fail(mp4, sizeof mp4 - 1, NULL, IMG_E_FORMAT,
                "ISO media (MP4/QuickTime) images are not supported", "MP4");
}
END_TEST

/* What cannot be decoded is refused with the format's name: a file with
 * only the ftyp box, sizes past the limits (libheif's own, 32768 a side,
 * and ours, checked before decoding). Without libheif in the build, every
 * HEIC and AVIF is refused as a format, saying so. */
START_TEST(test_heif_bad)
{
    size_t n;
    uint8_t *b = read_all("other.avif", &n);
    const char *missing = img_heif_missing(1);
    if (missing) {
        expect_fail(b, n, NULL, IMG_E_FORMAT, "not supported by this build",
                    "AVIF without libheif");
        free(b);
        b = read_all("heic_420.heic", &n);
        expect_fail(b, n, NULL, IMG_E_FORMAT,
                    "HEIC images are not supported by this build",
                    "HEIC without libheif");
        uint32_t w, h;
        char err[256] = "";
        ck_assert(img_size(b, n, NULL, &w, &h, err, sizeof err) ==
                  IMG_E_FORMAT);
        ck_assert_msg(strstr(err, "install libheif-dev"), "%s", err);
        free(b);
        printf("imgio heif: decoding tests skipped: %s\n", missing);
        return;
    }
    expect_fail(b, n, NULL, IMG_E_FORMAT,
                "AVIF file is of a kind libheif does not read",
                "AVIF with no known compatible brand");
    expect_fail(b, n - 1, NULL, IMG_E_CORRUPT, "AVIF image is truncated",
                "AVIF ftyp box cut");
    free(b);
    b = read_all("bad_heic_bigdim.heic", &n);
    expect_fail(b, n, NULL, IMG_E_LIMIT, "HEIC image exceeds libheif's size",
                "HEIC of 100000x100000");
    free(b);
    b = read_all("bad_avif_bigdim.avif", &n);
    expect_fail(b, n, NULL, IMG_E_LIMIT, "more than the 178956970-pixel",
                "AVIF of 20000x20000");
    uint32_t w, h;
    ck_assert(img_size(b, n, NULL, &w, &h, NULL, 0) == IMG_E_LIMIT);
    free(b);
    /* Our limits, checked on the header's size. */
    b = read_all("heic_grid.heic", &n);
    img_limits lim = img_limits_default();
    lim.max_pixels = 80 * 48 - 1;
    expect_fail(b, n, &lim, IMG_E_LIMIT, "3840 pixels", "grid past a limit");
    lim = img_limits_default();
    lim.max_width = 79;
    lim.max_height = 1000;
    expect_fail(b, n, &lim, IMG_E_LIMIT, "80x48", "grid too wide");
    free(b);
    /* Found by fuzz_heif: an AV1 item of no bytes, which libheif hands to
     * the AV1 decoder as (NULL, 0). */
    b = read_all("bad_fuzz_heif_empty_item.avif", &n);
    img_decode_opts all = img_decode_opts_default();
    all.composite_on_white = 1;
    for (int ex = 0; ex < 2; ex++) {
        img_rgb out = {0};
        char err[256] = "";
        all.exif_transpose = ex;
        img_status st = img_decode_ex(b, n, &all, &out, err, sizeof err);
        ck_assert_msg(st == IMG_E_CORRUPT && strstr(err, "AVIF image"),
                      "empty AV1 item: %s (%s)", img_status_str(st), err);
    }
    free(b);
    /* The coded size counts too: pillow-heif codes a 37x29 image as
     * 64x64 and crops it. */
    b = read_all("heic_420.heic", &n);
    lim = img_limits_default();
    lim.max_pixels = 37 * 29;
    expect_fail(b, n, &lim, IMG_E_LIMIT, "64x64", "coded size past a limit");
    free(b);
}
END_TEST

/* BMPs that Pillow refuses (the generator checks that it does) are
 * refused, each with its reason; those the header alone condemns, by
 * img_size too, in the same words, while img_size reads the others' size
 * as it reads any header. */
START_TEST(test_bad_bmp)
{
    static const struct {
        const char *file;
        img_status st;
        int header; /* img_size refuses it too */
        const char *needle;
    } cases[] = {
        {"bad_bmp_jpeg.bmp", IMG_E_FORMAT, 1,
         "BMP files holding a JPEG image (compression 4) are not supported"},
        {"bad_bmp_png.bmp", IMG_E_FORMAT, 1,
         "BMP files holding a PNG image (compression 5) are not supported"},
        {"bad_bmp_2bit.bmp", IMG_E_FORMAT, 1,
         "BMP pixel depth of 2 bits is not supported"},
        {"bad_bmp_masks.bmp", IMG_E_FORMAT, 1,
         "BMP bitfields layout of 16 bits with masks R 0x7c00 G 0x3e0 B "
         "0x1e A 0 is not supported"},
        {"bad_bmp_colors.bmp", IMG_E_FORMAT, 1,
         "BMP palette of 70000 colors is not supported"},
        {"bad_bmp_os2v2_16.bmp", IMG_E_FORMAT, 1,
         "short 16-byte OS/2 2.x header"},
        {"bad_bmp_bigdim.bmp", IMG_E_LIMIT, 1,
         "image is 100000x100000 = 10000000000 pixels, more than the "
         "178956970-pixel limit"},
        {"bad_bmp_pal300.bmp", IMG_E_FORMAT, 0,
         "BMP palette of 300 entries is not supported (at most 256)"},
        {"bad_bmp_rle24.bmp", IMG_E_FORMAT, 0,
         "BMP files with RLE compression and 24-bit pixels are not "
         "supported"},
        {"bad_bmp_ramp_rows.bmp", IMG_E_FORMAT, 0,
         "read as 8-bit gray, as Pillow reads it, a row needs 8 bytes and "
         "has 4"},
        {"bad_bmp_truncated.bmp", IMG_E_CORRUPT, 0,
         "BMP image data is truncated (111 bytes at offset 54; the file "
         "has 126 bytes)"},
        {"bad_bmp_rle_short.bmp", IMG_E_CORRUPT, 0,
         "BMP RLE data ends before the image is complete (18 of 36 "
         "pixels)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        uint8_t *b = read_all(cases[i].file, &n);
        expect_fail(b, n, NULL, cases[i].st, cases[i].needle, cases[i].file);
        uint32_t w = 7, h = 7;
        char err[256] = "";
        img_status st = img_size(b, n, NULL, &w, &h, err, sizeof err);
        if (cases[i].header)
            ck_assert_msg(st == cases[i].st && strstr(err, cases[i].needle) &&
                              w == 7 && h == 7,
                          "%s: img_size gave %s (%s)", cases[i].file,
                          img_status_str(st), err);
        else /* all are 9x4 but the 8x4 one */
            ck_assert_msg(st == IMG_OK && (w == 9 || w == 8) && h == 4,
                          "%s: img_size gave %s %ux%u (%s)", cases[i].file,
                          img_status_str(st), w, h, err);
        free(b);
    }
    /* A header cut short, or its masks after a 40-byte header missing. */
    size_t n;
    uint8_t *b = read_all("bmp_rgb16_565.bmp", &n);
    expect_fail(b, 40, NULL, IMG_E_CORRUPT, "BMP header is truncated",
                "BMP cut in its header");
    expect_fail(b, 60, NULL, IMG_E_CORRUPT, "BMP header is truncated",
                "BMP cut in its masks");
    /* "BM" without a known header size is not taken for a BMP. */
    b[14] = 200;
    expect_fail(b, n, NULL, IMG_E_FORMAT,
                "not a JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC/AVIF image (the ",
                "BM and a header size of 200");
    free(b);
}
END_TEST

/* TIFFs of kinds Pillow has no mode or codec for, and of kinds it reads
 * but this decoder does not, are refused as a format, naming the kind;
 * damaged directories as corrupt; and libtiff, whatever it finds, prints
 * nothing (its messages become ours). */
START_TEST(test_bad_tiff)
{
    static const struct {
        const char *file;
        img_status st;
        const char *needle;
    } cases[] = {
        {"bad_tif_ojpeg.tif", IMG_E_FORMAT,
         "old-style JPEG-compressed TIFF images are not supported"},
        {"bad_tif_webp.tif", IMG_E_FORMAT,
         "WebP-compressed TIFF images are not supported"},
        {"bad_tif_comp12345.tif", IMG_E_FORMAT,
         "TIFF images of compression 12345 are not supported"},
        {"bad_tif_la_assoc.tif", IMG_E_FORMAT, "premultiplied alpha"},
        {"bad_tif_lab.tif", IMG_E_FORMAT, "CIELab"},
        {"bad_tif_float.tif", IMG_E_FORMAT,
         "TIFF gray images of 32-bit floating-point samples"},
        {"bad_tif_ycbcr_raw.tif", IMG_E_FORMAT,
         "uncompressed YCbCr TIFF images are not supported"},
        {"bad_tif_planar16_raw.tif", IMG_E_FORMAT,
         "uncompressed planar-separate TIFF images of this kind "
         "(photometric 2, 3 samples of 16 bits) are not supported"},
        {"bad_tif_nowidth.tif", IMG_E_CORRUPT, "has no ImageWidth"},
        {"bad_tif_bigdim.tif", IMG_E_LIMIT,
         "image is 100000x100000 = 10000000000 pixels"},
        {"bad_tif_bigtiff_be.tif", IMG_E_FORMAT,
         "big-endian BigTIFF images are not supported"},
    };
    /* stderr goes to a file for the test, which must stay empty. */
    fflush(stderr);
    FILE *cap = tmpfile();
    ck_assert(cap != NULL);
    int saved = dup(2);
    ck_assert(saved >= 0 && dup2(fileno(cap), 2) == 2);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        uint8_t *b = read_all(cases[i].file, &n);
        expect_fail(b, n, NULL, cases[i].st, cases[i].needle, cases[i].file);
        uint32_t w, h;
        char err[256] = "";
        img_status st = img_size(b, n, NULL, &w, &h, err, sizeof err);
        ck_assert_msg(st == IMG_OK || st == cases[i].st, "%s: img_size %s",
                      cases[i].file, err);
        free(b);
    }
    /* A strip past the end, and a directory libtiff cannot read. */
    size_t n;
    uint8_t *b = read_all("tif_rgb_raw.tif", &n);
    expect_fail(b, n - 100, NULL, IMG_E_CORRUPT,
                "TIFF image is truncated (strip 0 of 1 lies past the end",
                "TIFF cut in its strip");
    free(b);
    b = read_all("tif_rgb_lzw.tif", &n);
    expect_fail(b, n / 2, NULL, IMG_E_CORRUPT, "TIFF image is truncated",
                "TIFF cut before its directory");
    free(b);
    b = read_all("tif_tiled_deflate.tif", &n);
    for (size_t at = 0; at < n; at += 7) {
        uint8_t keep = b[at];
        b[at] ^= 0x5a;
        img_rgb out = {0};
        char err[256] = "";
        if (img_decode(b, n, NULL, &out, err, sizeof err) == IMG_OK)
            img_rgb_free(&out);
        else
            ck_assert(err[0]);
        b[at] = keep;
    }
    free(b);
    fflush(stderr);
    ck_assert(dup2(saved, 2) == 2);
    close(saved);
    off_t printed = lseek(fileno(cap), 0, SEEK_END);
    fclose(cap);
    ck_assert_msg(printed == 0, "libtiff printed %lld bytes to stderr",
                  (long long)printed);
}
END_TEST

/* Well-formed JPEGs libjpeg-turbo's 8-bit decoder does not handle (nor
 * Pillow, which uses it) are refused as a format, with its name. */
START_TEST(test_bad_jpeg_unsupported_kinds)
{
    size_t n;
    uint8_t *b = read_all("bad_jpeg_12bit.jpg", &n);
    expect_fail(b, n, NULL, IMG_E_FORMAT,
                "12-bit JPEG images are not supported", "12-bit JPEG");
    free(b);
    b = read_all("bad_jpeg_lossless.jpg", &n);
    expect_fail(b, n, NULL, IMG_E_FORMAT, "lossless", "lossless JPEG");
    expect_fail(b, n, NULL, IMG_E_FORMAT, "0xc3", "lossless JPEG");
    free(b);
}
END_TEST

START_TEST(test_bad_png_huge_dims)
{
    size_t n;
    uint8_t *b = read_all("bad_bigdim.png", &n);
    /* By default, as in Pillow, only the pixels are limited. */
    expect_fail(b, n, NULL, IMG_E_LIMIT,
                "image is 100000x100000 = 10000000000 pixels, more than the "
                "178956970-pixel limit",
                "100000x100000 PNG");
    /* A side limit, when asked for, is the one named. */
    img_limits lim = img_limits_default();
    lim.max_width = lim.max_height = 16384;
    expect_fail(b, n, &lim, IMG_E_LIMIT,
                "image is 100000x100000, larger than the 16384x16384 limit",
                "100000x100000 PNG, side limit");
    free(b);
}
END_TEST

START_TEST(test_bad_png_zero_width)
{
    size_t n;
    uint8_t *b = read_all("bad_zero_width.png", &n);
    expect_fail(b, n, NULL, IMG_E_CORRUPT, "0x4", "zero-width PNG");
    free(b);
}
END_TEST

START_TEST(test_bad_png_crc)
{
    size_t n;
    uint8_t *b = read_all("bad_crc.png", &n);
    expect_fail(b, n, NULL, IMG_E_CORRUPT, "CRC", "PNG with a bad CRC");
    free(b);
}
END_TEST

/* The DHT segments of a JPEG: offsets of their payloads. */
static int find_dht(const uint8_t *b, size_t n, size_t *at, int max)
{
    int k = 0;
    for (size_t i = 2; i + 4 < n && k < max; i++)
        if (b[i] == 0xff && b[i + 1] == 0xc4)
            at[k++] = i + 4;
    return k;
}

/* A Huffman table whose code counts add up to more codes than its 16
 * lengths can hold is refused by name; tables with their counts or
 * symbols scrambled decode to something or fail, never crash. */
START_TEST(test_bad_jpeg_huffman_tables)
{
    size_t n;
    uint8_t *orig = read_all("jpg_420.jpg", &n);
    size_t at[8];
    int nt = find_dht(orig, n, at, 8);
    ck_assert(nt >= 1);
    uint8_t *b = malloc(n);
    ck_assert(b != NULL);
    memcpy(b, orig, n);
    /* Class/id byte, then 16 counts: all 255 claims 4080 codes. */
    memset(b + at[0] + 1, 0xff, 16);
    expect_fail(b, n, NULL, IMG_E_CORRUPT, "Huffman", "bogus DHT counts");
    uint32_t seed = 31337;
    for (int trial = 0; trial < 400; trial++) {
        memcpy(b, orig, n);
        size_t t = at[lcg(&seed) % (uint32_t)nt];
        size_t seglen = (size_t)(orig[t - 2] << 8 | orig[t - 1]) - 2;
        for (int k = 0; k < 1 + trial % 8; k++)
            b[t + lcg(&seed) % seglen] = (uint8_t)lcg(&seed);
        img_rgb out = {0};
        char err[256] = "";
        img_decode_opts opt = img_decode_opts_default();
        opt.fast_min_side = trial % 3 ? 0 : 8;
        img_status st = img_decode_ex(b, n, &opt, &out, err, sizeof err);
        if (st == IMG_OK)
            img_rgb_free(&out);
        else
            ck_assert(out.rgb == NULL && err[0]);
    }
    free(b);
    free(orig);
}
END_TEST

/* A decompression bomb, made here with zlib: a 16384x16384 1-bit PNG of
 * zeros is about 33 KB of file and would be 768 MiB of RGB. The pixel
 * limit refuses it from the header; the same kind of file within the
 * limits (16384x256) decodes to exactly the promised size. */
static uint8_t *zero_png(uint32_t w, uint32_t h, size_t *n)
{
    size_t row = 1 + (w + 7) / 8, raw_n = row * h;
    uint8_t *raw = calloc(raw_n, 1);
    uLongf zn = compressBound((uLong)raw_n);
    uint8_t *z = malloc(zn);
    ck_assert(raw && z);
    ck_assert(compress2(z, &zn, raw, (uLong)raw_n, 9) == Z_OK);
    free(raw);
    uint8_t *b = malloc(8 + 25 + 12 + zn + 12);
    ck_assert(b != NULL);
    size_t k = 0;
    memcpy(b, "\x89PNG\r\n\x1a\n", 8);
    k = 8;
    uint8_t ihdr[13] = {w >> 24, w >> 16 & 255, w >> 8 & 255, w & 255,
                        h >> 24, h >> 16 & 255, h >> 8 & 255, h & 255,
                        1,       0,             0,            0,
                        0};
    const struct {
        const char *type;
        const uint8_t *d;
        size_t len;
    } chunks[] = {{"IHDR", ihdr, 13}, {"IDAT", z, zn}, {"IEND", NULL, 0}};
    for (int c = 0; c < 3; c++) {
        size_t len = chunks[c].len;
        uint8_t hdr[8] = {len >> 24, len >> 16 & 255, len >> 8 & 255,
                          len & 255};
        memcpy(hdr + 4, chunks[c].type, 4);
        memcpy(b + k, hdr, 8);
        if (len)
            memcpy(b + k + 8, chunks[c].d, len);
        uLong crc = crc32(0, hdr + 4, 4);
        if (len)
            crc = crc32(crc, chunks[c].d, (uInt)len);
        uint8_t cb[4] = {crc >> 24, crc >> 16 & 255, crc >> 8 & 255,
                         crc & 255};
        memcpy(b + k + 8 + len, cb, 4);
        k += 12 + len;
    }
    free(z);
    *n = k;
    return b;
}

START_TEST(test_bad_png_bomb)
{
    size_t n;
    uint8_t *b = zero_png(16384, 16384, &n);
    ck_assert_msg(n < 64 * 1024, "bomb is %zu bytes", n);
    expect_fail(b, n, NULL, IMG_E_LIMIT, "178956970-pixel limit",
                "16384x16384 zero PNG");
    free(b);
    b = zero_png(16384, 256, &n);
    img_limits lim = img_limits_default();
    lim.max_pixels = (uint64_t)16384 * 256;
    img_rgb out = {0};
    char err[256] = "";
    ck_assert_msg(img_decode(b, n, &lim, &out, err, sizeof err) == IMG_OK,
                  "%s", err);
    ck_assert(out.width == 16384 && out.height == 256);
    ck_assert(out.rgb[0] == 0 && out.rgb[(size_t)16384 * 256 * 3 - 1] == 0);
    img_rgb_free(&out);
    lim.max_pixels -= 1;
    expect_fail(b, n, &lim, IMG_E_LIMIT, "pixel limit", "one pixel over");
    free(b);
}
END_TEST

/* Fuzzing finding (PNG, 94 bytes): an iTXt chunk before the image data
 * claiming 1,950,701,684 bytes made libpng allocate that much before
 * finding the file too short. Refused before libpng runs, naming the
 * chunk; the fuzz target's malloc limit guards the allocation itself. */
START_TEST(test_fuzz_png_huge_chunk)
{
    size_t n;
    uint8_t *b = read_all("bad_fuzz_png_huge_itxt.png", &n);
    ck_assert(n == 94);
    expect_fail(b, n, NULL, IMG_E_CORRUPT, "claims 1950701684 bytes",
                "PNG with a 1.9 GB iTXt");
    free(b);
}
END_TEST

START_TEST(test_limits)
{
    size_t n;
    uint8_t *png = read_all("png_rgb8.png", &n);
    size_t nj;
    uint8_t *jpg = read_all("jpg_420.jpg", &nj);
    img_limits lim = img_limits_default();
    /* Pillow's: 2 x MAX_IMAGE_PIXELS, no side limit. */
    ck_assert(lim.max_width == 0 && lim.max_height == 0 &&
              lim.max_pixels == 178956970u && lim.max_bytes == 256u << 20);

    lim.max_bytes = 100;
    expect_fail(png, n, &lim, IMG_E_LIMIT, "100-byte limit", "byte limit");
    lim = img_limits_default();
    lim.max_width = 36; /* the PNG is 37x29 */
    expect_fail(png, n, &lim, IMG_E_LIMIT, "37x29, wider than the 36-pixel width limit",
                "PNG width limit");
    lim = img_limits_default();
    lim.max_pixels = 1000;
    expect_fail(png, n, &lim, IMG_E_LIMIT, "1000-pixel limit",
                "PNG pixel limit");
    lim = img_limits_default();
    lim.max_height = 42; /* the JPEG is 61x43 */
    expect_fail(jpg, nj, &lim, IMG_E_LIMIT, "61x43, taller than the 42-pixel height limit",
                "JPEG height limit");

    /* img_size refuses from the header what img_decode refuses, in the
     * same words. */
    struct {
        const uint8_t *b;
        size_t n;
        img_limits lim;
    } over[4] = {{png, n, img_limits_default()},
                 {png, n, img_limits_default()},
                 {png, n, img_limits_default()},
                 {jpg, nj, img_limits_default()}};
    over[0].lim.max_bytes = 100;
    over[1].lim.max_width = 36;
    over[2].lim.max_pixels = 1000;
    over[3].lim.max_height = 42;
    for (int i = 0; i < 4; i++) {
        char e1[256] = "", e2[256] = "";
        img_rgb o = {0};
        uint32_t w = 7, h = 7;
        ck_assert(img_decode(over[i].b, over[i].n, &over[i].lim, &o, e1,
                             sizeof e1) == IMG_E_LIMIT);
        ck_assert(img_size(over[i].b, over[i].n, &over[i].lim, &w, &h, e2,
                           sizeof e2) == IMG_E_LIMIT);
        ck_assert_str_eq(e1, e2);
        ck_assert(w == 7 && h == 7);
    }

    /* Zero means no limit, and limits met exactly pass. */
    img_limits none = {0, 0, 0, 0, 0}, exact = {61, 43, 61 * 43, 0, 0};
    img_rgb out = {0};
    ck_assert(img_decode(png, n, &none, &out, NULL, 0) == IMG_OK);
    img_rgb_free(&out);
    ck_assert(img_decode(jpg, nj, &exact, &out, NULL, 0) == IMG_OK);
    ck_assert(out.width == 61 && out.height == 43);
    img_rgb_free(&out);
    free(png);
    free(jpg);
}
END_TEST

/* libjpeg's working memory is capped: a progressive JPEG needs its whole
 * coefficient array (2 bytes per coefficient: 70x51 at 4:2:0 is about
 * 11 KB), so a 4 KB cap refuses it with the limit named, while a baseline
 * one, which needs no such array, still decodes. */
START_TEST(test_jpeg_decoder_memory_cap)
{
    size_t n;
    uint8_t *prog = read_all("jpg_progressive.jpg", &n);
    img_limits lim = img_limits_default();
    ck_assert(lim.max_decoder_memory == 0);
    lim.max_decoder_memory = 4096;
    expect_fail(prog, n, &lim, IMG_E_LIMIT,
                "coefficient memory, more than the 4096-byte decoder limit",
                "progressive JPEG over the memory cap");
    img_rgb out = {0};
    lim.max_decoder_memory = 1 << 20;
    ck_assert(img_decode(prog, n, &lim, &out, NULL, 0) == IMG_OK);
    img_rgb_free(&out);
    free(prog);
    uint8_t *base = read_all("jpg_420.jpg", &n);
    lim.max_decoder_memory = 4096;
    ck_assert(img_decode(base, n, &lim, &out, NULL, 0) == IMG_OK);
    img_rgb_free(&out);
    free(base);
}
END_TEST

/* A progressive JPEG of 501 scans is refused before the 501st is decoded,
 * while the same file cut to 500 scans decodes: libjpeg walks the whole
 * image for every scan, so scans are a CPU-time bomb. The extra scans
 * repeat the first refinement scan of the luma DC, which libjpeg accepts
 * (a warning) and which changes no pixel. */
START_TEST(test_jpeg_scan_limit)
{
    size_t n;
    uint8_t *b = read_all("jpg_progressive_gray.jpg", &n);
    /* Find the second SOS (the first DC refinement or AC scan) and its
     * length up to the next marker. */
    size_t sos[2] = {0, 0};
    int found = 0;
    for (size_t i = 2; i + 1 < n && found < 2; i++)
        if (b[i] == 0xff && b[i + 1] == 0xda)
            sos[found++] = i;
    ck_assert(found == 2);
    size_t end = sos[1] + 2;
    end += (size_t)(b[end] << 8 | b[end + 1]); /* the SOS header */
    while (end + 1 < n && !(b[end] == 0xff && b[end + 1] != 0 &&
                            !(b[end + 1] >= 0xd0 && b[end + 1] <= 0xd7)))
        end++;
    size_t scan = end - sos[1];
    for (int extra = 499; extra <= 500; extra++) {
        /* The file has its own scans; pad to 500 or 501 in total. */
        int own = 0;
        for (size_t i = 2; i + 1 < n; i++)
            own += b[i] == 0xff && b[i + 1] == 0xda;
        int add = extra + 1 - own;
        size_t m = n + (size_t)add * scan;
        uint8_t *c = malloc(m);
        ck_assert(c != NULL);
        memcpy(c, b, end);
        for (int k = 0; k < add; k++)
            memcpy(c + end + (size_t)k * scan, b + sos[1], scan);
        memcpy(c + end + (size_t)add * scan, b + end, n - end);
        img_rgb out = {0};
        char err[256] = "";
        img_status st = img_decode(c, m, NULL, &out, err, sizeof err);
        if (extra == 499) {
            ck_assert_msg(st == IMG_OK, "500 scans: %s", err);
            img_rgb_free(&out);
        } else {
            ck_assert_msg(st == IMG_E_LIMIT && strstr(err, "500 scans"),
                          "501 scans: %s (%s)", img_status_str(st), err);
        }
        free(c);
    }
    free(b);
}
END_TEST

/* Every prefix of a file must decode or fail cleanly; a JPEG may lose its
 * EOI marker and a PNG its IEND and still decode. */
static void sweep_truncation(const char *name)
{
    size_t n;
    uint8_t *b = read_all(name, &n);
    uint32_t fw, fh;
    ck_assert(img_size(b, n, NULL, &fw, &fh, NULL, 0) == IMG_OK);
    for (size_t cut = 0; cut < n; cut += 1 + cut / 64) {
        /* The header alone gives the size or a clean refusal. */
        uint32_t w = 0, h = 0;
        char serr[256] = "";
        img_status ss = img_size(b, cut, NULL, &w, &h, serr, sizeof serr);
        ck_assert_msg(ss == IMG_OK ? w == fw && h == fh
                                   : (ss == IMG_E_CORRUPT ||
                                      ss == IMG_E_FORMAT) && serr[0],
                      "%s cut at %zu: size %s %ux%u (%s)", name, cut,
                      img_status_str(ss), w, h, serr);
        img_rgb out = {.width = 1, .height = 1, .rgb = NULL};
        char err[256] = "";
        img_status st = img_decode(b, cut, NULL, &out, err, sizeof err);
        if (st == IMG_OK) {
            ck_assert_msg(cut + 12 >= n, "%s cut at %zu of %zu decoded", name,
                          cut, n);
            img_rgb_free(&out);
        } else {
            ck_assert_msg(st == IMG_E_CORRUPT || st == IMG_E_FORMAT,
                          "%s cut at %zu: %s", name, cut, img_status_str(st));
            ck_assert(out.width == 1 && out.rgb == NULL && err[0]);
        }
    }
    free(b);
}

START_TEST(test_truncation_sweep)
{
    sweep_truncation("jpg_420.jpg");
    sweep_truncation("jpg_progressive.jpg");
    sweep_truncation("png_rgb8.png");
    sweep_truncation("png_interlaced_rgba16.png");
    sweep_truncation("webp_lossy_rgba.webp");
    sweep_truncation("webp_lossless_rgba.webp");
    sweep_truncation("webp_anim_lossy.webp");
    sweep_truncation("gif_interlaced.gif");
    sweep_truncation("gif_offset_trns.gif");
    sweep_truncation("bmp_rgb24.bmp");
    sweep_truncation("bmp_pal4.bmp");
    sweep_truncation("bmp_bgra_v124.bmp");
    sweep_truncation("bmp_rle8.bmp");
    sweep_truncation("bmp_rle4.bmp");
    sweep_truncation("tif_rgb_raw.tif");
    sweep_truncation("tif_rgb_lzw.tif");
    sweep_truncation("tif_tiled_jpeg_ycbcr.tif");
    sweep_truncation("tif_planar_tiled_lzw.tif");
    sweep_truncation("tif_rgba16_assoc.tif");
    static const char *heif[] = {"heic_420.heic", "heic_grid.heic",
                                 "avif_rgba.avif"};
    for (size_t i = 0; i < sizeof heif / sizeof heif[0]; i++)
        if (heif_readable(heif[i]))
            sweep_truncation(heif[i]);
}
END_TEST

/* Sends stderr to a temporary file until stderr_count, which says how
 * many bytes were written there meanwhile. */
typedef struct {
    int saved;
    FILE *sink;
} stderr_capture;

static stderr_capture stderr_start(void)
{
    fflush(stderr);
    stderr_capture c = {dup(2), tmpfile()};
    ck_assert(c.saved >= 0 && c.sink != NULL);
    ck_assert(dup2(fileno(c.sink), 2) >= 0);
    return c;
}

/* Ends the capture: how many bytes were written, the first of them in
 * what (size bytes). */
static long stderr_count(stderr_capture c, char *what, size_t size)
{
    fflush(stderr);
    long n = ftell(c.sink);
    ck_assert(dup2(c.saved, 2) >= 0);
    close(c.saved);
    rewind(c.sink);
    size_t got = fread(what, 1, size - 1, c.sink);
    what[got] = '\0';
    fclose(c.sink);
    return n;
}

/* Damaged bytes may decode to something or fail, but never crash, leak,
 * hand out a half-written image or print: the library never writes to
 * stderr, and neither may the libraries it calls (dav1d logs there by
 * default). ASan and UBSan watch this one. */
START_TEST(test_damage_sweep)
{
    static const char *files[] = {"jpg_420.jpg", "jpg_progressive.jpg",
                                  "png_rgb8.png", "png_pal8_trns.png",
                                  "alpha_rgba16_interlaced.png",
                                  "alpha_gray2_trns170.png",
                                  "exif_png_rawprofile_z.png",
                                  "exif_jpg_split8.jpg",
                                  "webp_lossy_rgba.webp",
                                  "webp_anim.webp", "webp_exif6.webp",
                                  "gif_pal.gif", "gif_past_screen.gif",
                                  "bmp_os2_pal8.bmp", "bmp_pal8_short.bmp",
                                  "bmp_bgra_v124.bmp", "bmp_rgb16_565.bmp",
                                  "bmp_rle8.bmp", "bmp_rle4_delta.bmp",
                                  "tif_rgb_lzw.tif", "tif_jpeg_ycbcr420.tif",
                                  "tif_planar_tiled_lzw.tif",
                                  "tif_ycbcr_lzw.tif", "tif_rgba16_assoc.tif",
                                  "tif_gray4_p0_f2.tif", "tif_pal2.tif",
                                  "tif_bilevel_group4.tif",
                                  "tif_cmyk_jpeg.tif", "tif_bigtiff.tif",
                                  "tif_orient6_raw.tif",
                                  "heic_420.heic", "heic_rgba.heic",
                                  "heic_grid.heic", "heic_irot.heic",
                                  "avif_420.avif", "avif_rgba.avif",
                                  "avif_exif5_exif.avif"};
    img_decode_opts all = img_decode_opts_default();
    all.composite_on_white = 1;
    uint32_t seed = 777;
    stderr_capture quiet = stderr_start();
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        size_t n;
        uint8_t *orig = read_all(files[f], &n);
        uint8_t *b = malloc(n);
        ck_assert(b != NULL);
        for (int trial = 0; trial < 60; trial++) {
            memcpy(b, orig, n);
            for (int k = 0; k < 1 + trial % 4; k++)
                b[lcg(&seed) % n] ^= (uint8_t)(1 + lcg(&seed) % 255);
            for (int ex = 0; ex < 2; ex++) {
                img_rgb out = {0};
                char err[256] = "";
                img_status st =
                    ex ? img_decode_ex(b, n, &all, &out, err, sizeof err)
                       : img_decode(b, n, NULL, &out, err, sizeof err);
                if (st == IMG_OK) {
                    ck_assert(out.width > 0 && out.height > 0 && out.rgb);
                    img_rgb_free(&out);
                } else {
                    ck_assert(out.rgb == NULL && err[0]);
                }
            }
        }
        free(b);
        free(orig);
    }
    char what[256];
    long printed = stderr_count(quiet, what, sizeof what);
    ck_assert_msg(printed == 0, "decoding damaged files wrote %ld bytes to "
                                "stderr: %s",
                  printed, what);
}
END_TEST

/* The metadata readers see every prefix and many damaged copies of real
 * metadata, each in a heap block of exactly its size, so that ASan
 * reports a read one byte past the end. The answers must stay in range. */
static void exif_readers_on(const uint8_t *b, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);
    ck_assert(c != NULL);
    memcpy(c, b, n);
    int t = img_tiff_orientation(c, n);
    ck_assert(t == IMG_ORIENT_ABSENT || t == IMG_ORIENT_BROKEN ||
              (t >= 0 && t <= 8));
    int x = img_xmp_orientation(c, n);
    ck_assert(x == IMG_ORIENT_ABSENT || (x >= 0 && x <= 9));
    int p = img_png_orientation(c, n);
    ck_assert(p >= 1 && p <= 8);
    free(c);
}

START_TEST(test_exif_readers_bounded)
{
    static const char *files[] = {"exif_png_6.png", "exif_png_two.png",
                                  "exif_png_rawprofile_z.png",
                                  "exif_png_rawprofile_t.png",
                                  "exif_png_itxt_zxmp3.png",
                                  "exif_png_t_srational.png"};
    uint32_t seed = 4242;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        size_t n;
        uint8_t *b = read_all(files[f], &n);
        for (size_t cut = 0; cut <= n; cut++)
            exif_readers_on(b, cut);
        /* From each chunk start on, so the TIFF reader sees the eXIf data
         * and the XMP reader the packets as their first bytes. */
        for (size_t off = 8; off < n; off++)
            exif_readers_on(b + off, n - off);
        for (int trial = 0; trial < 300; trial++) {
            uint8_t *d = malloc(n);
            ck_assert(d != NULL);
            memcpy(d, b, n);
            for (int k = 0; k < 1 + trial % 6; k++)
                d[lcg(&seed) % n] = (uint8_t)lcg(&seed);
            exif_readers_on(d, n);
            free(d);
        }
        free(b);
    }
}
END_TEST

/* Damaged Exif segments in a JPEG decode (upright or turned), never
 * crash, and leave the output alone when they fail. */
START_TEST(test_exif_jpeg_damage)
{
    size_t n;
    uint8_t *orig = read_all("exif_jpg_split8.jpg", &n);
    uint8_t *b = malloc(n);
    ck_assert(b != NULL);
    uint32_t seed = 99;
    img_decode_opts opt = img_decode_opts_default();
    for (int trial = 0; trial < 200; trial++) {
        memcpy(b, orig, n);
        /* The two APP1 segments are the first ~120 bytes. */
        for (int k = 0; k < 1 + trial % 5; k++)
            b[4 + lcg(&seed) % 120] = (uint8_t)lcg(&seed);
        img_rgb out = {0};
        char err[256] = "";
        img_status st = img_decode_ex(b, n, &opt, &out, err, sizeof err);
        if (st == IMG_OK) {
            ck_assert((out.width == 29 && out.height == 17) ||
                      (out.width == 17 && out.height == 29));
            img_rgb_free(&out);
        } else {
            ck_assert(out.rgb == NULL && err[0]);
        }
    }
    free(b);
    free(orig);
}
END_TEST

START_TEST(test_api_misc)
{
    ck_assert_str_eq(img_status_str(IMG_OK), "ok");
    ck_assert_str_eq(img_status_str(IMG_E_LIMIT),
                     "image exceeds a size limit");
    ck_assert(img_status_str((img_status)99) != NULL);
    img_rgb_free(NULL);
    img_rgb empty = {0};
    img_rgb_free(&empty);
    ck_assert(img_decode("abc", 3, NULL, NULL, NULL, 0) == IMG_E_ARG);
    /* A one-byte message buffer still gets a terminated (empty) string. */
    char tiny[1] = {'x'};
    img_rgb out = {0};
    ck_assert(img_decode("abc", 3, NULL, &out, tiny, sizeof tiny) ==
              IMG_E_FORMAT);
    ck_assert(tiny[0] == '\0');
}
END_TEST

Suite *imgio_suite(void)
{
    Suite *s = suite_create("imgio");
    TCase *tc = tcase_create("reference");
    /* The manifest is only counted here; each test reads its own case. */
    int nd = manifest_count("decode"), nr = manifest_count("resize");
    int np = manifest_count("preprocess"), ns = manifest_count("size");
    /* A missing manifest must fail, not pass with nothing run. */
    int nx = manifest_count("decode_ex");
    int nt = manifest_count("resize_tv");
    int nh = manifest_count("heif");
    tcase_add_loop_test(tc, test_decode_case, 0, nd ? nd : 1);
    tcase_add_loop_test(tc, test_size_case, 0, nd ? nd : 1);
    tcase_add_loop_test(tc, test_decode_ex_case, 0, nx ? nx : 1);
    tcase_add_test(tc, test_decode_ignores_exif);
    tcase_add_loop_test(tc, test_heif_case, 0, nh ? nh : 1);
    tcase_add_test(tc, test_heif_threads);
    tcase_add_loop_test(tc, test_resize_case, 0, nr ? nr : 1);
    tcase_add_loop_test(tc, test_resize_tv_case, 0, nt ? nt : 1);
    tcase_add_loop_test(tc, test_preprocess_case, 0, np ? np : 1);
    tcase_add_loop_test(tc, test_preprocess_size_case, 0, ns ? ns : 1);
    tcase_add_test(tc, test_resize_same_size_copies);
    tcase_add_test(tc, test_resize_bad_args);
    tcase_add_test(tc, test_resize_simd_and_windows);
    tcase_add_test(tc, test_resize_tv_windows);
    tcase_add_test(tc, test_resize_tv_args);
    tcase_add_test(tc, test_preprocess_bad_args);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    TCase *bad = tcase_create("bad_input");
    tcase_add_test(bad, test_bad_empty);
    tcase_add_test(bad, test_bad_three_bytes);
    tcase_add_test(bad, test_bad_truncated_jpeg);
    tcase_add_test(bad, test_bad_truncated_png);
    tcase_add_test(bad, test_bad_random_bytes);
    tcase_add_test(bad, test_bad_gif);
    tcase_add_test(bad, test_bad_other_formats);
    tcase_add_test(bad, test_bad_bmp);
    tcase_add_test(bad, test_bad_tiff);
    tcase_add_test(bad, test_heif_bad);
    tcase_add_test(bad, test_bad_jpeg_unsupported_kinds);
    tcase_add_test(bad, test_bad_png_huge_dims);
    tcase_add_test(bad, test_bad_png_zero_width);
    tcase_add_test(bad, test_bad_png_crc);
    tcase_add_test(bad, test_bad_jpeg_huffman_tables);
    tcase_add_test(bad, test_bad_png_bomb);
    tcase_add_test(bad, test_fuzz_png_huge_chunk);
    tcase_add_test(bad, test_limits);
    tcase_add_test(bad, test_jpeg_decoder_memory_cap);
    tcase_add_test(bad, test_jpeg_scan_limit);
    tcase_add_test(bad, test_truncation_sweep);
    tcase_add_test(bad, test_damage_sweep);
    tcase_add_test(bad, test_exif_readers_bounded);
    tcase_add_test(bad, test_exif_jpeg_damage);
    tcase_add_test(bad, test_api_misc);
    tcase_set_timeout(bad, 120);
    suite_add_tcase(s, bad);
    return s;
}
