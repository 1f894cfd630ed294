/*
 * The service benchmark: requests per second and p50/p99 latency of
 * `classify` over ZeroMQ at 1, 4 and 16 concurrent clients, and the ratio
 * of the served throughput to the local pipeline's (decode, preprocess and
 * classify in batches, as `vit classify` does) on the same images in the
 * same run. Ratios, not absolute numbers: machines are shared and noisy.
 * The worker runs in this process (vit_serve on a thread) on an ipc://
 * endpoint in a temporary directory; each client is a thread with its own
 * vit_client sending one image per request.
 *
 *   build/service_bench [--seconds S] [--decode-threads N] [--threads N]
 *                       [MODEL_DIR [IMAGE...]]
 *
 * On a small machine the decode threads take cores from the forward pass;
 * --decode-threads and --threads (the worker's options) show the trade.
 */
#define _XOPEN_SOURCE 700

#include "service/client.h"
#include "service/service.h"
#include "vit/vit.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
    unsigned char *data;
    size_t size;
} blob;

static blob read_file(const char *path)
{
    blob b = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return b;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b.data = malloc((size_t)n);
    if (b.data && fread(b.data, 1, (size_t)n, f) == (size_t)n)
        b.size = (size_t)n;
    fclose(f);
    return b;
}

/* Images per second of the local pipeline over `seconds`. */
static double local_rate(const char *model_dir, const blob *imgs, int n_imgs,
                         double seconds, int threads)
{
    vit_options opt = vit_options_default();
    opt.threads = threads;
    vit_model *m;
    vit_state *s;
    vit_error err = {{0}};
    if (vit_model_load(model_dir, &opt, &m, &err) != VIT_OK ||
        vit_state_new(m, &s, &err) != VIT_OK) {
        fprintf(stderr, "service_bench: %s\n", err.msg);
        exit(1);
    }
    vit_model_info info;
    vit_model_get_info(m, &info);
    int B = opt.max_batch;
    size_t chw = (size_t)info.channels * info.image_h * info.image_w;
    float *px = malloc((size_t)B * chw * sizeof(float));
    vit_prediction *top = malloc((size_t)B * 5 * sizeof *top);
    long done = 0;
    double t0 = now_s();
    while (now_s() - t0 < seconds) {
        for (int i = 0; i < B; i++) {
            const blob *b = &imgs[(done + i) % n_imgs];
            vit_image img;
            if (vit_image_decode(b->data, b->size, &opt, &img, NULL) !=
                VIT_OK) {
                fprintf(stderr, "service_bench: an image does not decode\n");
                exit(1);
            }
            vit_preprocess(m, &img, 1, px + (size_t)i * chw, NULL);
            vit_image_free(&img);
        }
        vit_classify_pixels(s, px, B, 5, top, NULL, NULL);
        done += B;
    }
    double rate = (double)done / (now_s() - t0);
    free(px);
    free(top);
    vit_state_free(s);
    vit_model_free(m);
    return rate;
}

typedef struct {
    const char *ep;
    const blob *imgs;
    int n_imgs, id;
    double until;
    double *lat;  /* seconds per request */
    long n, cap, failed;
} client_arg;

static void *client_main(void *p)
{
    client_arg *a = p;
    vit_client *c;
    vit_client_options o = vit_client_options_default();
    o.timeout_ms = 30000;
    if (vit_client_new(a->ep, &o, &c, NULL) != VIT_OK) {
        a->failed++;
        return NULL;
    }
    for (long i = a->id; now_s() < a->until; i++) {
        const blob *b = &a->imgs[i % a->n_imgs];
        vit_blob vb = {b->data, b->size};
        vit_reply r;
        double t = now_s();
        if (vit_client_call(c, "{\"op\":\"classify\"}", &vb, 1, &r, NULL) !=
            VIT_OK) {
            a->failed++;
            continue;
        }
        if (vit_reply_error(&r, NULL, NULL, 0, NULL))
            a->failed++;
        vit_reply_free(&r);
        if (a->n == a->cap) {
            a->cap = a->cap ? 2 * a->cap : 4096;
            a->lat = realloc(a->lat, (size_t)a->cap * sizeof(double));
        }
        a->lat[a->n++] = now_s() - t;
    }
    vit_client_free(c);
    return NULL;
}

static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

typedef struct {
    vit_serve_options o;
    vit_status st;
    vit_error err;
} serve_arg;

static void *serve_main(void *p)
{
    serve_arg *a = p;
    a->st = vit_serve(&a->o, &a->err);
    return NULL;
}

int main(int argc, char **argv)
{
    double seconds = 3;
    int ai = 1, decode_threads = 2, threads = 0;
    while (ai + 1 < argc && strncmp(argv[ai], "--", 2) == 0) {
        if (strcmp(argv[ai], "--seconds") == 0)
            seconds = atof(argv[ai + 1]);
        else if (strcmp(argv[ai], "--decode-threads") == 0)
            decode_threads = atoi(argv[ai + 1]);
        else if (strcmp(argv[ai], "--threads") == 0)
            threads = atoi(argv[ai + 1]);
        else {
            fprintf(stderr, "service_bench: unknown option %s\n", argv[ai]);
            return 2;
        }
        ai += 2;
    }
    const char *model = ai < argc ? argv[ai++] : "tests/fixtures/vit_tiny";
    static const char *const dflt[] = {"tests/fixtures/cli/noise.png",
                                       "tests/fixtures/cli/gradient.jpg"};
    int n_imgs = ai < argc ? argc - ai : 2;
    blob *imgs = calloc((size_t)n_imgs, sizeof *imgs);
    for (int i = 0; i < n_imgs; i++) {
        const char *path = ai < argc ? argv[ai + i] : dflt[i];
        imgs[i] = read_file(path);
        if (!imgs[i].size) {
            fprintf(stderr, "service_bench: cannot read %s\n", path);
            return 1;
        }
    }

    double local = local_rate(model, imgs, n_imgs, seconds, threads);
    printf("model %s, %d image(s), %.0f s per measurement, %d decode "
           "threads, forward threads %d (0: one per CPU)\n",
           model, n_imgs, seconds, decode_threads, threads);
    printf("local pipeline (decode, preprocess, classify in batches of 8): "
           "%.0f images/s\n", local);

    char dir[] = "/tmp/vit_bench_XXXXXX", ep[64];
    if (!mkdtemp(dir))
        return 1;
    snprintf(ep, sizeof ep, "ipc://%s/w", dir);
    static volatile sig_atomic_t stop;
    serve_arg sa = {.o = vit_serve_options_default()};
    sa.o.model_dir = model;
    sa.o.decode_threads = decode_threads;
    sa.o.threads = threads;
    sa.o.bind = ep;
    sa.o.stop = &stop;
    pthread_t st;
    pthread_create(&st, NULL, serve_main, &sa);
    /* Wait for the worker. */
    vit_client_options co = vit_client_options_default();
    co.timeout_ms = 200;
    co.retries = 0;
    vit_client *probe;
    vit_client_new(ep, &co, &probe, NULL);
    for (int i = 0; i < 100; i++) {
        vit_reply r;
        if (vit_client_call(probe, "{\"op\":\"health\"}", NULL, 0, &r,
                            NULL) == VIT_OK) {
            vit_reply_free(&r);
            break;
        }
    }
    vit_client_free(probe);

    printf("\n%8s %12s %10s %10s %8s\n", "clients", "requests/s", "p50 ms",
           "p99 ms", "failed");
    static const int conc[] = {1, 4, 16};
    double served16 = 0;
    for (int k = 0; k < 3; k++) {
        int C = conc[k];
        client_arg *a = calloc((size_t)C, sizeof *a);
        pthread_t *th = calloc((size_t)C, sizeof *th);
        double t0 = now_s();
        for (int i = 0; i < C; i++) {
            a[i] = (client_arg){.ep = ep, .imgs = imgs, .n_imgs = n_imgs,
                                .id = i, .until = t0 + seconds};
            pthread_create(&th[i], NULL, client_main, &a[i]);
        }
        long total = 0, failed = 0;
        for (int i = 0; i < C; i++) {
            pthread_join(th[i], NULL);
            total += a[i].n;
            failed += a[i].failed;
        }
        double dt = now_s() - t0;
        double *all = malloc((size_t)(total ? total : 1) * sizeof(double));
        long o = 0;
        for (int i = 0; i < C; i++) {
            memcpy(all + o, a[i].lat, (size_t)a[i].n * sizeof(double));
            o += a[i].n;
            free(a[i].lat);
        }
        qsort(all, (size_t)total, sizeof(double), cmp_d);
        double rate = (double)(total - failed) / dt;
        printf("%8d %12.0f %10.2f %10.2f %8ld\n", C, rate,
               total ? 1e3 * all[(long)(0.5 * (total - 1))] : 0,
               total ? 1e3 * all[(long)(0.99 * (total - 1))] : 0, failed);
        if (C == 16)
            served16 = rate;
        free(all);
        free(a);
        free(th);
    }
    printf("\nserved / local throughput at 16 clients: %.2f (target >= "
           "0.9)\n", served16 / local);

    stop = 1;
    pthread_join(st, NULL);
    char path[96];
    snprintf(path, sizeof path, "%s/w", dir);
    unlink(path);
    rmdir(dir);
    for (int i = 0; i < n_imgs; i++)
        free(imgs[i].data);
    free(imgs);
    return sa.st == VIT_OK ? 0 : 1;
}
