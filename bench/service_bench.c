/*
 * The service benchmark: requests per second and p50/p99 latency of
 * `classify` over ZeroMQ at 1, 4 and 16 concurrent clients, and the ratio
 * of the served throughput at 16 clients to the local pipeline's (decode,
 * preprocess and classify in batches of 8, one thread decoding then the
 * forward pass, on the same images) in the same run. Ratios, not absolute
 * numbers: machines are shared and noisy. For the same reason the ratio is
 * taken over alternating slices, local then served, --rounds times, so
 * that both see the same load from whatever else the machine runs; each
 * round's ratio is printed too.
 *
 * The worker runs in this process (vit_serve on a thread) on an ipc://
 * endpoint in a temporary directory; each client is a thread with its own
 * vit_client sending one image per request and the next one as soon as the
 * reply is in (closed loop). For each served measurement the worker's own
 * counters say how full its batches were (items per forward pass), how
 * busy its inference thread was, and the forward time per image; CPU
 * ms/image is this whole process's CPU time (clients included) per image.
 *
 *   build/service_bench [--seconds S] [--rounds R] [--decode-threads N]
 *                       [--threads N] [MODEL_DIR [IMAGE...]]
 *
 * On a small machine the decode threads take cores from the forward pass;
 * --decode-threads and --threads (the worker's options) show the trade.
 */
#define _XOPEN_SOURCE 700

#include "service/client.h"
#include "service/service.h"
#include "vit/vit.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds this process has used, all threads. */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
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

/* ---- the local pipeline ---- */

typedef struct {
    vit_options opt;
    vit_model *m;
    vit_state *s;
    size_t chw;
    float *px;
    vit_prediction *top;
    long done;  /* images so far, to cycle through the inputs */
} local_pipe;

static void local_open(local_pipe *p, const char *model_dir, int threads)
{
    p->opt = vit_options_default();
    p->opt.threads = threads;
    vit_error err = {{0}};
    if (vit_model_load(model_dir, &p->opt, &p->m, &err) != VIT_OK ||
        vit_state_new(p->m, &p->s, &err) != VIT_OK) {
        fprintf(stderr, "service_bench: %s\n", err.msg);
        exit(1);
    }
    vit_model_info info;
    vit_model_get_info(p->m, &info);
    p->chw = (size_t)info.channels * info.image_h * info.image_w;
    p->px = malloc((size_t)p->opt.max_batch * p->chw * sizeof(float));
    p->top = malloc((size_t)p->opt.max_batch * 5 * sizeof *p->top);
}

static void local_close(local_pipe *p)
{
    free(p->px);
    free(p->top);
    vit_state_free(p->s);
    vit_model_free(p->m);
}

typedef struct {
    double rate;     /* images (or requests) per second */
    double cpu_ms;   /* process CPU ms per image */
    double p50, p99; /* ms, served only */
    long failed;
    double batch, busy, fwd_ms;  /* the worker's, served only */
} result;

/* Decodes, preprocesses and classifies batches of max_batch images for
 * `seconds` (whole batches). */
static result local_run(local_pipe *p, const blob *imgs, int n_imgs,
                        double seconds)
{
    int B = p->opt.max_batch;
    long n = 0;
    double t0 = now_s(), c0 = cpu_s();
    while (now_s() - t0 < seconds) {
        for (int i = 0; i < B; i++) {
            const blob *b = &imgs[(p->done + i) % n_imgs];
            vit_image img;
            if (vit_image_decode(b->data, b->size, &p->opt, &img, NULL) !=
                VIT_OK) {
                fprintf(stderr, "service_bench: an image does not decode\n");
                exit(1);
            }
            vit_preprocess(p->m, &img, 1, p->px + (size_t)i * p->chw, NULL);
            vit_image_free(&img);
        }
        vit_classify_pixels(p->s, p->px, B, 5, p->top, NULL, NULL);
        p->done += B;
        n += B;
    }
    return (result){.rate = (double)n / (now_s() - t0),
                    .cpu_ms = 1e3 * (cpu_s() - c0) / (double)n};
}

/* ---- served ---- */

typedef struct {
    const char *ep;
    const blob *imgs;
    int n_imgs, id;
    pthread_barrier_t *go;  /* all clients start together */
    const double *until;
    double *lat;  /* seconds per request */
    long n, cap, failed;
} client_arg;

static void *client_main(void *p)
{
    client_arg *a = p;
    vit_client *c;
    vit_client_options o = vit_client_options_default();
    o.timeout_ms = 120000;
    vit_status st = vit_client_new(a->ep, &o, &c, NULL);
    pthread_barrier_wait(a->go);
    if (st != VIT_OK) {
        a->failed++;
        return NULL;
    }
    for (long i = a->id; now_s() < *a->until; i++) {
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

/* The worker's batch counters: forward passes, the items in them, and the
 * seconds spent computing them. */
static void batch_counts(const char *ep, long *batches, long *items,
                         double *busy)
{
    *batches = *items = 0;
    *busy = 0;
    vit_client *c;
    vit_reply r;
    if (vit_client_new(ep, NULL, &c, NULL) != VIT_OK)
        return;
    if (vit_client_call(c, "{\"op\":\"metrics\"}", NULL, 0, &r, NULL) ==
        VIT_OK) {
        json_t *o = json_loads(r.body, 0, NULL);
        json_t *b = json_object_get(o, "batches");
        *batches = (long)json_integer_value(json_object_get(b, "count"));
        *items = (long)json_integer_value(json_object_get(b, "items"));
        *busy = json_real_value(json_object_get(b, "busy_s"));
        json_decref(o);
        vit_reply_free(&r);
    }
    vit_client_free(c);
}

static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* C clients, connected first and then let go together, for `seconds`;
 * requests answered after that are counted, with the time they took. */
static result served_run(const char *ep, const blob *imgs, int n_imgs, int C,
                         double seconds)
{
    client_arg *a = calloc((size_t)C, sizeof *a);
    pthread_t *th = calloc((size_t)C, sizeof *th);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)C + 1);
    double until = 0;
    long b0, i0, b1, i1;
    double u0, u1;
    batch_counts(ep, &b0, &i0, &u0);
    for (int i = 0; i < C; i++) {
        a[i] = (client_arg){.ep = ep, .imgs = imgs, .n_imgs = n_imgs,
                            .id = i, .go = &go, .until = &until};
        pthread_create(&th[i], NULL, client_main, &a[i]);
    }
    double t0 = now_s(), c0 = cpu_s();
    until = t0 + seconds;
    pthread_barrier_wait(&go);
    long total = 0, failed = 0;
    for (int i = 0; i < C; i++) {
        pthread_join(th[i], NULL);
        total += a[i].n;
        failed += a[i].failed;
    }
    double dt = now_s() - t0, dc = cpu_s() - c0;
    pthread_barrier_destroy(&go);
    batch_counts(ep, &b1, &i1, &u1);
    double *all = malloc((size_t)(total ? total : 1) * sizeof(double));
    long o = 0;
    for (int i = 0; i < C; i++) {
        memcpy(all + o, a[i].lat, (size_t)a[i].n * sizeof(double));
        o += a[i].n;
        free(a[i].lat);
    }
    qsort(all, (size_t)total, sizeof(double), cmp_d);
    result r = {
        .rate = (double)(total - failed) / dt,
        .cpu_ms = total ? 1e3 * dc / (double)total : 0,
        .p50 = total ? 1e3 * all[(long)(0.5 * (total - 1))] : 0,
        .p99 = total ? 1e3 * all[(long)(0.99 * (total - 1))] : 0,
        .failed = failed,
        .batch = b1 > b0 ? (double)(i1 - i0) / (double)(b1 - b0) : 0,
        .busy = (u1 - u0) / dt,
        .fwd_ms = i1 > i0 ? 1e3 * (u1 - u0) / (double)(i1 - i0) : 0,
    };
    free(all);
    free(a);
    free(th);
    return r;
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
    int ai = 1, decode_threads = 2, threads = 0, rounds = 2;
    while (ai + 1 < argc && strncmp(argv[ai], "--", 2) == 0) {
        if (strcmp(argv[ai], "--seconds") == 0)
            seconds = atof(argv[ai + 1]);
        else if (strcmp(argv[ai], "--rounds") == 0)
            rounds = atoi(argv[ai + 1]);
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
    if (rounds < 1)
        rounds = 1;
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

    local_pipe lp = {0};
    local_open(&lp, model, threads);
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

    printf("model %s, %d image(s), %.0f s per measurement, %d decode "
           "threads, forward threads %d (0: one per CPU)\n",
           model, n_imgs, seconds, decode_threads, threads);
    result loc = local_run(&lp, imgs, n_imgs, seconds);
    printf("local pipeline (decode, preprocess, classify in batches of %d): "
           "%.2f images/s, %.1f CPU ms/image\n", lp.opt.max_batch, loc.rate,
           loc.cpu_ms);

    printf("\n%7s %11s %9s %9s %6s %6s %5s %10s %10s\n", "clients",
           "requests/s", "p50 ms", "p99 ms", "failed", "batch", "busy",
           "fwd ms/img", "CPU ms/img");
    static const int conc[] = {1, 4, 16};
    for (int k = 0; k < 3; k++) {
        result r = served_run(ep, imgs, n_imgs, conc[k], seconds);
        printf("%7d %11.2f %9.1f %9.1f %6ld %6.2f %4.0f%% %10.1f %10.1f\n",
               conc[k], r.rate, r.p50, r.p99, r.failed, r.batch,
               100 * r.busy, r.fwd_ms, r.cpu_ms);
    }

    printf("\nserved (16 clients) / local, in alternating slices of %.0f "
           "s:\n", seconds);
    double tl = 0, ts = 0;
    for (int i = 0; i < rounds; i++) {
        result l = local_run(&lp, imgs, n_imgs, seconds);
        result s = served_run(ep, imgs, n_imgs, 16, seconds);
        printf("  round %d: local %.2f images/s (%.0f CPU ms/img), served "
               "%.2f/s (%.0f CPU ms/img, batch %.2f, busy %.0f%%): %.2f\n",
               i + 1, l.rate, l.cpu_ms, s.rate, s.cpu_ms, s.batch,
               100 * s.busy, s.rate / l.rate);
        /* The slices are equally long: the ratio of the summed rates is
         * that of the images each side did in all its slices. */
        tl += l.rate;
        ts += s.rate;
    }
    printf("served / local throughput at 16 clients: %.2f (target >= "
           "0.9)\n", ts / tl);

    stop = 1;
    pthread_join(st, NULL);
    local_close(&lp);
    char path[96];
    snprintf(path, sizeof path, "%s/w", dir);
    unlink(path);
    rmdir(dir);
    for (int i = 0; i < n_imgs; i++)
        free(imgs[i].data);
    free(imgs);
    return sa.st == VIT_OK ? 0 : 1;
}
