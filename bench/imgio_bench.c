/*
 * imgio's speed on the job it exists for: a 1920x1080 camera-sized JPEG
 * decoded and preprocessed into a 224x224 model tensor, on one core. The
 * image is made here (a photo-like synthetic scene: smooth shading, edges,
 * fine texture and sensor-like noise, so the entropy decoder has a
 * realistic amount of work) and encoded with libjpeg at quality 90, 4:2:0;
 * or read from the file given as the first argument (`--save FILE` writes
 * the synthetic one, to time other decoders on it). It reports, as CPU
 * time of the one thread that does the work (wall time at the end), the
 * median and the best of many runs of each stage, for the exact path (pixels
 * identical to Pillow) and the fast one (DCT-scaled decoding), and the
 * largest difference the fast path makes to the final tensor.
 */
#include "imgio/imgio.h"
#include "bench/photo.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The scene this benchmark has always timed, at 1920x1080. */
static const photo_scene scene = {0.004f, 1300, 600, 180, 300, 700, 500, 900,
                                  {0, 0, 0}};

/* Wall time, and this thread's CPU time: on a shared, loaded machine the
 * second is the steadier measure of what one core spends. */
static double clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    uint8_t *b = malloc((size_t)len);
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)len;
    return b;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { RUNS = 41 };

typedef struct {
    double med, best;
} timing;

static timing summarize(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    timing r = {t[n / 2], t[0]};
    return r;
}

/* One configuration: decode with `opt`, preprocess with `cfg`, RUNS times;
 * the tensor of the last run is left in `out`. */
static void run(const char *label, const uint8_t *jpg, size_t n,
                const img_decode_opts *opt, const img_preprocess_cfg *cfg,
                float *out)
{
    double td[RUNS], tp[RUNS], tt[RUNS], wt[RUNS];
    char err[256];
    int ow = 0, oh = 0, dw = 0, dh = 0;
    for (int r = 0; r < RUNS; r++) {
        img_rgb im;
        double w0 = clock_ms(CLOCK_MONOTONIC);
        double t0 = clock_ms(CLOCK_THREAD_CPUTIME_ID);
        if (img_decode_ex(jpg, n, opt, &im, err, sizeof err) != IMG_OK) {
            fprintf(stderr, "imgio_bench: decode: %s\n", err);
            exit(1);
        }
        double t1 = clock_ms(CLOCK_THREAD_CPUTIME_ID);
        img_preprocess_size(cfg, im.width, im.height, &oh, &ow);
        if (img_preprocess(&im, cfg, out, oh, ow, err, sizeof err) !=
            IMG_OK) {
            fprintf(stderr, "imgio_bench: preprocess: %s\n", err);
            exit(1);
        }
        double t2 = clock_ms(CLOCK_THREAD_CPUTIME_ID);
        wt[r] = clock_ms(CLOCK_MONOTONIC) - w0;
        dw = im.width, dh = im.height;
        img_rgb_free(&im);
        td[r] = t1 - t0, tp[r] = t2 - t1, tt[r] = t2 - t0;
    }
    timing d = summarize(td, RUNS), p = summarize(tp, RUNS);
    timing t = summarize(tt, RUNS), w = summarize(wt, RUNS);
    printf("%-11s decode %4dx%-4d %6.2f ms (best %6.2f) | preprocess "
           "%6.2f (best %6.2f) | total %6.2f (best %6.2f) | wall %6.2f\n",
           label, dw, dh, d.med, d.best, p.med, p.best, t.med, t.best,
           w.med);
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m)
            m = d;
    }
    return m;
}

int main(int argc, char **argv)
{
    size_t n;
    uint8_t *jpg;
    if (argc > 2 && strcmp(argv[1], "--save") == 0) {
        /* The synthetic JPEG, for timing other decoders on the same file. */
        uint8_t *px = synthetic_photo(1920, 1080, &scene);
        jpg = encode_jpeg(px, 1920, 1080, &n);
        FILE *f = fopen(argv[2], "wb");
        if (!f || fwrite(jpg, 1, n, f) != n || fclose(f) != 0) {
            fprintf(stderr, "imgio_bench: cannot write %s\n", argv[2]);
            return 1;
        }
        free(px);
        free(jpg);
        return 0;
    }
    if (argc > 1) {
        jpg = read_file(argv[1], &n);
        if (!jpg) {
            fprintf(stderr, "imgio_bench: cannot read %s\n", argv[1]);
            return 1;
        }
        printf("imgio_bench: %s, %zu bytes\n", argv[1], n);
    } else {
        uint8_t *px = synthetic_photo(1920, 1080, &scene);
        jpg = encode_jpeg(px, 1920, 1080, &n);
        free(px);
        printf("imgio_bench: synthetic 1920x1080 photo, JPEG quality 90 "
               "4:2:0, %zu bytes\n",
               n);
    }
    /* CLIP ViT-B/32's and ViT-B/16's preprocessor_config.json. */
    img_preprocess_cfg clip = {
        .do_resize = 1, .resample = IMG_BICUBIC, .shortest_edge = 224,
        .do_center_crop = 1, .crop_h = 224, .crop_w = 224, .do_rescale = 1,
        .rescale_factor = 1 / 255.0f, .do_normalize = 1,
        .mean = {0.48145466f, 0.4578275f, 0.40821073f},
        .std = {0.26862954f, 0.26130258f, 0.27577711f}};
    img_preprocess_cfg vit = {
        .do_resize = 1, .resample = IMG_BILINEAR, .size_h = 224,
        .size_w = 224, .do_rescale = 1, .rescale_factor = 1 / 255.0f,
        .do_normalize = 1, .mean = {0.5f, 0.5f, 0.5f},
        .std = {0.5f, 0.5f, 0.5f}};
    size_t count = 3 * 224 * 224;
    float *exact = malloc(count * sizeof *exact);
    float *fast = malloc(count * sizeof *fast);
    if (!exact || !fast)
        return 1;
    img_decode_opts ex = img_decode_opts_default();
    img_decode_opts fa = ex;
    const struct {
        const char *name;
        const img_preprocess_cfg *cfg;
    } models[] = {{"clip", &clip}, {"vit", &vit}};
    for (int m = 0; m < 2; m++) {
        char label[32];
        snprintf(label, sizeof label, "%s exact", models[m].name);
        run(label, jpg, n, &ex, models[m].cfg, exact);
        fa.fast_min_side = img_preprocess_min_side(models[m].cfg);
        snprintf(label, sizeof label, "%s fast", models[m].name);
        run(label, jpg, n, &fa, models[m].cfg, fast);
        printf("%-11s the fast path moves the tensor by up to %.4f "
               "(%.1f/255 before normalization)\n",
               models[m].name, max_abs_diff(exact, fast, count),
               max_abs_diff(exact, fast, count) * 255 *
                   models[m].cfg->std[1]);
    }
    free(exact);
    free(fast);
    free(jpg);
    return 0;
}
