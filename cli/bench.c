/*
 * `vit bench`: how fast a model runs here, and in how much memory. For each
 * thread count and batch size it times the forward pass on synthetic
 * pixels and reports ms per image, images/s and achieved GFLOP/s next to
 * the float32 FMA peak of as many threads on the same CPU path, measured
 * in the same run, so the result reads as a ratio that survives a noisy,
 * shared machine; also the time to load and reach the first result,
 * preprocessing time, with --profile where the time goes by kind of op,
 * and for each case the peak resident memory of a fresh process that
 * loads the model and runs one forward, against the weights and the
 * activation arena.
 *
 * With --dir it times instead what `vit classify DIR` does: the directory
 * walked, every image decoded and preprocessed and classified through the
 * batch driver (cli/batch.c), results written (to /dev/null), against the
 * forward alone on as many images at the same batch size and threads,
 * the two taken in turns so that both see the same machine.
 */
#include "cli/args.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { MAX_CASES = 16, MAX_DECODE = 4 };

/* The command line, each value checked as it comes (the lists' values and
 * --seconds by the functions below), so that the first bad one on the
 * line is the one said. */
typedef struct {
    const char *model, *images, *probe, *seconds;
    cli_strv batches, threads, decode;  /* whole numbers, in range */
    int profile, max_images, rounds;
    cli_decode_flags dec;
    cli_strv rest;  /* none are taken */
} bench_args;

static int batch_ok(const char *s)
{
    return cli_parse_long(s, 1, 4096) >= 0;
}

static int threads_ok(const char *s)
{
    return cli_parse_long(s, 1, 256) >= 0;
}

static int decode_threads_ok(const char *s)
{
    return cli_parse_long(s, 0, 16) >= 0;
}

static int seconds_ok(const char *s)
{
    double v = atof(s);
    return v > 0 && v <= 600;
}

static const cli_opt bench_opts[] = {
    {.name = "model", .key = 'm', .type = CLI_ARG_STR,
     .off = offsetof(bench_args, model), .where = CLI_LOCAL,
     .help =
        "  -m, --model DIR     the model directory (required); a CLIP model\n"
        "                      is timed on its image tower\n"},
    {.name = "batch", .key = 'b', .type = CLI_ARG_LIST,
     .off = offsetof(bench_args, batches), .where = CLI_LOCAL,
     .hi = MAX_CASES, .valid = batch_ok,
     .bad = "--batch needs 1 to 4096 (16 at most), not '%s'",
     .help =
        "  -b, --batch N       a batch size to time (repeatable; default 1, "
        "8, 32,\n"
        "                      with --dir 8)\n"},
    {.name = "threads", .key = 't', .type = CLI_ARG_LIST,
     .off = offsetof(bench_args, threads), .where = CLI_LOCAL,
     .hi = MAX_CASES, .valid = threads_ok,
     .bad = "--threads needs 1 to 256 (16 at most), not '%s'",
     .help =
        "  -t, --threads N     a thread count to time (repeatable; default: "
        "one per\n"
        "                      CPU)\n"},
    {.name = "profile", .type = CLI_ARG_FLAG, .lo = 1,
     .off = offsetof(bench_args, profile), .where = CLI_LOCAL,
     .help =
        "      --profile       also print where the time goes, by kind of "
        "op\n"},
    {.name = "seconds", .type = CLI_ARG_STR,
     .off = offsetof(bench_args, seconds), .where = CLI_LOCAL,
     .valid = seconds_ok,
     .bad = "--seconds needs a number of seconds, not '%s'",
     .help =
        "      --seconds S     time each case for at least S seconds "
        "(default 2)\n"},
    {.name = "dir", .type = CLI_ARG_STR,
     .off = offsetof(bench_args, images), .where = CLI_LOCAL,
     .help =
        "      --dir IMAGES    time `vit classify IMAGES` end to end (a\n"
        "                      directory or file, walked as classify walks "
        "it)\n"},
    {.name = "images", .type = CLI_ARG_INT,
     .off = offsetof(bench_args, max_images), .where = CLI_LOCAL,
     .lo = 1, .hi = 100000000,
     .bad = "--images needs a positive integer, not '%s'",
     .help =
        "      --images N      with --dir: only the first N images\n"},
    {.name = "rounds", .type = CLI_ARG_INT,
     .off = offsetof(bench_args, rounds), .where = CLI_LOCAL,
     .lo = 1, .hi = 1000, .help_value = 1,
     .bad = "--rounds needs 1 to 1000, not '%s'",
     .help =
        "      --rounds R      with --dir: rounds to split the images into\n"
        "                      (default %d)\n"},
    {.name = "decode-threads", .type = CLI_ARG_LIST,
     .off = offsetof(bench_args, decode), .where = CLI_LOCAL,
     .hi = MAX_DECODE, .valid = decode_threads_ok,
     .bad = "--decode-threads needs 0 to 16 (4 at most), not '%s'",
     .help =
        "      --decode-threads N\n"
        "                      with --dir: at most N threads decoding "
        "ahead of\n"
        "                      the model, one at first and more while the "
        "model\n"
        "                      waits (repeatable, each timed; 0: decode in "
        "turn\n"
        "                      with the model; default: as classify, up to "
        "one\n"
        "                      per CPU)\n"},
    /* bench's own, run by probe_memory: no line in --help. */
    {.name = "probe-memory", .type = CLI_ARG_STR,
     .off = offsetof(bench_args, probe), .where = CLI_LOCAL},
    {.name = "help", .key = 'h', .type = CLI_ARG_HELP, .where = CLI_LOCAL,
     .help =
        "  -h, --help          show this help and exit\n"},
    /* Their lines are cli_decode_help, after the others. */
    CLI_OPTS_DECODE(bench_args),
    {0},
};

static void bench_init(void *p)
{
    ((bench_args *)p)->rounds = 4;
}

static const char *bench_check(void *p, unsigned backend, char *buf,
                               size_t n)
{
    const bench_args *a = p;
    if (!a->model)
        return "--model DIR is required";
    if (a->rest.n) {
        snprintf(buf, n, "unexpected argument '%s'", a->rest.v[0]);
        return buf;
    }
    if (!a->images && (a->max_images || a->decode.n || a->rounds != 4))
        return "--images, --rounds and --decode-threads go with --dir";
    if (a->images && a->profile)
        return "--profile does not go with --dir";
    return NULL;
}

static const cli_op bench_spec = {
    .name = "bench",
    .usage =
        "usage: vit bench --model DIR [--batch N]... [--threads N]... "
        "[--profile]\n"
        "                 [--seconds S] [--precision fp32|int8|bf16]\n"
        "       vit bench --model DIR --dir IMAGES [--images N] [--rounds R]\n"
        "                 [--decode-threads N]... [--batch N]... "
        "[--threads N]...\n"
        "                 [--fast-decode] [--no-exif-rotate] "
        "[--precision fp32|int8|bf16]\n",
    .about =
        "\n"
        "Time a model's forward pass on synthetic pixels. For every thread\n"
        "count and batch size: ms per image, images/s, achieved GFLOP/s and\n"
        "its ratio to the float32 FMA peak of as many threads on the CPU\n"
        "path that runs (independent vector FMAs and nothing else, what no\n"
        "product can beat), measured in the same run: with --seconds 2 or\n"
        "more, the peak and the forward in turns, four rounds, and the\n"
        "median round's peak and ratio. VIT_ISA=generic|avx2|avx512 in\n"
        "the environment caps the path (vit --version names it).\n"
        "After each thread count's table, the GFLOP/s of vit's own GEMM\n"
        "and of OpenBLAS's sgemm at the model's largest product (the\n"
        "MLP's first, at the largest batch up to 8), the best marked.\n"
        "Then, for every case, the memory of a fresh process that loads the\n"
        "model and runs one forward: the weights (the pages of the mapped\n"
        "checkpoint it holds, any float32 copies, and int8 or bfloat16\n"
        "ones with --precision int8 or bf16), the activation arena, the\n"
        "peak resident\n"
        "memory and (peak - weights) / arena, and that ratio less what the\n"
        "process held before loading (the program and its libraries).\n"
        "\n"
        "With --dir, time what `vit classify IMAGES` does instead: walk the\n"
        "directory, decode, preprocess and classify every image (embed,\n"
        "for a model without labels) through the same batch driver,\n"
        "writing the results to /dev/null; next to the\n"
        "forward alone on as many images at the same batch size and\n"
        "threads. The images are split into rounds, and each round times\n"
        "the forward and the end-to-end run in turns, so that both see the\n"
        "same machine; the ratio is end-to-end images/s over forward\n"
        "images/s. `make bench-dir` makes a set of photo-like JPEGs\n"
        "(build/make_photos) and runs this.\n",
    .after = "",
    .opts = bench_opts,
    .size = sizeof(bench_args),
    .positional = offsetof(bench_args, rest),
    .init = bench_init,
    .check = bench_check,
};

/* A list's values (checked by the spec) as ints. */
static int ints(const cli_strv *l, int *v)
{
    for (int i = 0; i < l->n; i++)
        v[i] = atoi(l->v[i]);
    return l->n;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Multiply-adds of one image's forward through the vision tower of T
 * tokens, counted as 2 flops each. */
static double forward_flops(const vit_model_info *in, int tokens)
{
    double T = tokens, D = in->hidden_size,
           NP = (double)(in->image_h / in->patch_size) *
                (in->image_w / in->patch_size),
           cpp = (double)in->channels * in->patch_size * in->patch_size;
    double per_layer = 2 * T * D * D * 4     /* q, k, v, out projections */
                       + 2 * T * T * D * 2   /* scores and weighted sum */
                       + 2 * T * D * in->mlp_size * 2; /* the MLP */
    return 2 * NP * cpp * D + in->num_layers * per_layer +
           2 * D * (in->num_labels ? in->num_labels : in->embed_dim);
}

/* The model's largest float32 product (the MLP's first, tokens x hidden
 * times hidden x mlp) at batch B (at most 8, so that it stays quick), on
 * vit's own GEMM and on OpenBLAS's: which GEMM is best at this shape on
 * this machine, each named. */
static void print_gemms(const vit_model_info *in, int T, int B, int threads)
{
    B = B > 8 ? 8 : B;
    int M = B * T, K = in->hidden_size, N = in->mlp_size;
    const char *path = "generic";
    vit_cpu_path(&path, NULL, 0, NULL);
    double ours = vit_gemm_gflops(M, N, K, threads);
    double blas = vit_sgemm_gflops(M, N, K, threads);
    printf("GEMM at the model's largest product (M %d = %d x %d tokens, K %d, "
           "N %d), %d threads:\n",
           M, B, T, K, N, threads);
    char name[64];
    snprintf(name, sizeof name, "vit (%s)", path);
    printf("  %-18s %8.1f GFLOP/s%s\n", name, ours,
           ours >= blas ? "  best" : "");
    printf("  %-18s %8.1f GFLOP/s%s\n", "OpenBLAS sgemm", blas,
           blas > ours ? "  best" : "");
}

/* As `vit classify` asks by default. */
#define BENCH_TOP_K 5

/* A state and the buffers one forward of up to B images needs. */
typedef struct {
    vit_state *s;
    int classifier, dim, k;
    float *px, *out;        /* B synthetic images; B x dim outputs */
    vit_prediction *top;    /* B x k */
} bench_run;

/* A forward as `vit classify` (top-k) or `vit embed` runs it. */
static vit_status forward(bench_run *r, const float *px, int B,
                          vit_error *err)
{
    return r->classifier
               ? vit_classify_pixels(r->s, px, B, r->k, r->top, NULL, err)
               : vit_embed_pixels(r->s, px, B, r->out, err);
}

static vit_status bench_run_new(bench_run *r, const vit_model *m, int B,
                                vit_error *err)
{
    vit_model_info in;
    vit_model_get_info(m, &in);
    *r = (bench_run){.classifier = in.num_labels > 0};
    r->dim = r->classifier ? in.num_labels : in.embed_dim;
    r->k = r->classifier ? (in.num_labels < BENCH_TOP_K ? in.num_labels
                                                        : BENCH_TOP_K)
                         : 0;
    size_t per = (size_t)in.channels * in.image_h * in.image_w;
    r->px = malloc((size_t)B * per * sizeof *r->px);
    r->out = malloc((size_t)B * r->dim * sizeof *r->out);
    r->top = malloc((size_t)B * (r->k ? r->k : 1) * sizeof *r->top);
    if (!r->px || !r->out || !r->top) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return VIT_E_NOMEM;
    }
    for (size_t i = 0; i < (size_t)B * per; i++)
        r->px[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    return vit_state_new(m, &r->s, err);
}

static void bench_run_free(bench_run *r)
{
    vit_state_free(r->s);
    free(r->px);
    free(r->out);
    free(r->top);
    *r = (bench_run){0};
}

/* The median of n values (n <= 4), reordering them. */
static double median(double *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- memory: a fresh process for each case ---- */

typedef struct {
    int ok, threads;
    vit_memory mem;
    double start_kib;  /* VmRSS before the model is loaded */
    double peak_kib;   /* VmHWM after one forward */
} mem_probe;

/* A field of /proc/self/status in kB ("VmHWM"), or -1. */
static double status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t n = strlen(key);
    double v = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            v = atof(line + n + 1);
            break;
        }
    if (f)
        fclose(f);
    return v;
}

/* `vit bench --model DIR --probe-memory T,B`, run by probe_memory in a
 * process of its own: loads the model for T threads and batch B, runs one
 * forward of B images and prints what its memory came to. */
static int run_probe(const char *dir, const vit_options *base, const char *arg)
{
    int threads, B;
    if (sscanf(arg, "%d,%d", &threads, &B) != 2 || threads < 0 || B < 1)
        return CLI_EXIT_USAGE;
    double start = status_kib("VmRSS");
    vit_options o = *base;
    o.threads = threads;
    o.max_batch = B;
    vit_model *m = NULL;
    vit_error err;
    bench_run r = {0};
    int rc = CLI_EXIT_FAILED;
    if (vit_model_load(dir, &o, &m, &err) == VIT_OK &&
        bench_run_new(&r, m, B, &err) == VIT_OK &&
        forward(&r, r.px, B, &err) == VIT_OK) {
        vit_profile_entry e[VIT_PROFILE_OPS];
        vit_memory mem;
        vit_state_memory(r.s, &mem);
        /* The checkpoint's pages this process holds: not the pages int8
         * gave back, nor those no forward read (a CLIP text tower). */
        size_t held = mem.weights_resident
                          ? mem.weights_resident
                          : mem.weights_mapped - mem.weights_dropped;
        printf("%d %zu %zu %zu %.0f %.0f %zu %zu\n",
               vit_state_profile_get(r.s, e), held, mem.weights_copied,
               mem.arena, start, status_kib("VmHWM"), mem.weights_int8,
               mem.weights_bf16);
        rc = CLI_EXIT_OK;
    } else {
        cli_report(dir, err.msg);
    }
    bench_run_free(&r);
    vit_model_free(m);
    return rc;
}

/* Runs this program again as `bench --probe-memory` for one case, so that
 * the peak is that of a process that only classifies at batch B. */
static mem_probe probe_memory(const char *dir, const cli_decode_flags *dec,
                              int threads, int B)
{
    mem_probe p = {0};
    char tb[48];
    snprintf(tb, sizeof tb, "%d,%d", threads, B);
    char *args[] = {"vit",  "bench", "--model", (char *)dir, "--probe-memory",
                    tb,     "--precision",
                    (char *)cli_precision_name(dec->precision), NULL};
    int fd[2];
    if (pipe(fd) != 0)
        return p;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        if (dup2(fd[1], STDOUT_FILENO) >= 0)
            execv("/proc/self/exe", args);
        _exit(127);
    }
    close(fd[1]);
    char line[256] = "";
    size_t n = 0;
    ssize_t got;
    while (pid > 0 && n + 1 < sizeof line &&
           (got = read(fd[0], line + n, sizeof line - 1 - n)) > 0)
        n += (size_t)got;
    line[n] = 0;
    close(fd[0]);
    int status = -1;
    if (pid > 0)
        waitpid(pid, &status, 0);
    p.ok = status == 0 &&
           sscanf(line, "%d %zu %zu %zu %lf %lf %zu %zu", &p.threads,
                  &p.mem.weights_mapped, &p.mem.weights_copied, &p.mem.arena,
                  &p.start_kib, &p.peak_kib, &p.mem.weights_int8,
                  &p.mem.weights_bf16) == 8;
    return p;
}

static void print_memory(const mem_probe *p, const int *batches, int n)
{
    const double MiB = 1024.0 * 1024.0;
    printf("%7s %6s %9s %8s %8s %8s %8s %10s %8s %11s %8s\n", "threads",
           "batch", "weights", "copied", "int8", "arena", "at start",
           "peak RSS", "ratio", "less start", "bf16");
    for (int i = 0; i < n; i++) {
        if (!p[i].ok) {
            printf("%7s %6d   (the probe failed)\n", "-", batches[i]);
            continue;
        }
        double w = (double)(p[i].mem.weights_mapped +
                            p[i].mem.weights_copied + p[i].mem.weights_int8 +
                            p[i].mem.weights_bf16);
        double rss = p[i].peak_kib * 1024.0;
        double start = p[i].start_kib * 1024.0;
        printf("%7d %6d %9.1f %8.1f %8.1f %8.1f %8.1f %10.1f %8.2f %11.2f "
               "%8.1f\n",
               p[i].threads, batches[i], p[i].mem.weights_mapped / MiB,
               p[i].mem.weights_copied / MiB, p[i].mem.weights_int8 / MiB,
               p[i].mem.arena / MiB,
               start / MiB, rss / MiB, (rss - w) / (double)p[i].mem.arena,
               (rss - start - w) / (double)p[i].mem.arena,
               p[i].mem.weights_bf16 / MiB);
    }
}

static void print_profile(vit_state *s)
{
    vit_profile_entry e[VIT_PROFILE_OPS];
    int n = vit_state_profile_get(s, e);
    double total = 0;
    for (int k = 0; k < VIT_PROFILE_OPS; k++)
        total += e[k].thread_seconds;
    printf("    %-16s %8s %7s %10s\n", "op", "share", "calls", "GFLOP/s");
    for (int k = 0; k < VIT_PROFILE_OPS; k++) {
        /* GFLOP/s per thread times threads: the rate while the op runs on
         * every thread. */
        double wall = e[k].thread_seconds / n;
        printf("    %-16s %7.1f%% %7ld", e[k].op,
               total > 0 ? 100 * e[k].thread_seconds / total : 0.0,
               e[k].calls);
        if (e[k].gflop > 0 && wall > 0)
            printf(" %10.1f\n", e[k].gflop / wall);
        else
            printf(" %10s\n", "-");
    }
}

/* Times vit_preprocess of a synthetic 640x480 photo-sized image. */
static void time_preprocess(vit_model *m, const vit_model_info *in)
{
    if (in->channels != 3)
        return;
    vit_image img = {640, 480, malloc(640 * 480 * 3)};
    float *px = malloc((size_t)3 * in->image_h * in->image_w * sizeof *px);
    if (img.rgb && px) {
        for (size_t i = 0; i < 640 * 480 * 3; i++)
            img.rgb[i] = (unsigned char)((i * 7919u) >> 3);
        vit_error err;
        int reps = 0;
        double t = now();
        while (now() - t < 0.5 && reps < 1000) {
            if (vit_preprocess(m, &img, 1, px, &err) != VIT_OK)
                break;
            reps++;
        }
        if (reps)
            printf("preprocess 640x480 -> %dx%d: %.2f ms\n", in->image_w,
                   in->image_h, (now() - t) / reps * 1e3);
    }
    free(img.rgb);
    free(px);
}

/* ---- --dir: end to end, as `vit classify DIR` ---- */

typedef struct {
    bench_run *r;
    FILE *sink;  /* /dev/null */
} dir_ctx;

/* The batch callback: what classify_batch (or embed's) does, printed to
 * the sink. */
static vit_status dir_batch(void *p, const float *pixels, int n,
                            char *const *paths, vit_error *err)
{
    dir_ctx *c = p;
    bench_run *r = c->r;
    vit_status st = forward(r, pixels, n, err);
    for (int i = 0; st == VIT_OK && i < n; i++) {
        int rc;
        if (r->classifier) {
            cli_result res = {.path = paths[i],
                              .top = r->top + (size_t)i * r->k,
                              .k = r->k};
            rc = cli_output_write(c->sink, CLI_FMT_TEXT, &res);
        } else {
            rc = cli_embedding_write(c->sink, "path", paths[i],
                                     r->out + (size_t)i * r->dim, r->dim);
        }
        if (rc != 0)
            st = VIT_E_NOMEM;
    }
    return st;
}

typedef struct {
    const char *model;
    vit_options opt;
    cli_input_list in;  /* the first n of what the walk found */
    double walk_s;
    int rounds;
    int decode[MAX_DECODE], nd;
} dir_bench;

/* One case (threads, batch): rounds of the forward alone and of each
 * decode-threads setting end to end, over the same images, in turns. */
static int dir_case(dir_bench *d, int threads, int B, FILE *sink)
{
    vit_options o = d->opt;
    o.threads = threads;
    o.max_batch = B;
    vit_model *m = NULL;
    vit_error err;
    bench_run r = {0};
    if (vit_model_load(d->model, &o, &m, &err) != VIT_OK ||
        bench_run_new(&r, m, B, &err) != VIT_OK ||
        forward(&r, r.px, B, &err) != VIT_OK) { /* and warm */
        cli_report(d->model, err.msg);
        bench_run_free(&r);
        vit_model_free(m);
        return -1;
    }
    vit_profile_entry e[VIT_PROFILE_OPS];
    int nthreads = vit_state_profile_get(r.s, e);
    size_t N = d->in.n;
    size_t per = ((N + (size_t)d->rounds - 1) / (size_t)d->rounds +
                  (size_t)B - 1) / (size_t)B * (size_t)B;
    double t_fwd = 0, t_e2e[MAX_DECODE] = {0};
    int failed = 0;
    dir_ctx ctx = {&r, sink};
    for (size_t off = 0, round = 0; off < N; off += per, round++) {
        size_t n = N - off < per ? N - off : per;
        /* Every other round runs the steps in the opposite order. */
        for (int step = 0; step <= d->nd; step++) {
            int k = round % 2 ? d->nd - step : step;
            double t0 = now();
            if (k == 0) {
                for (size_t i = 0; i < n; i += (size_t)B)
                    forward(&r, r.px, n - i < (size_t)B ? (int)(n - i) : B,
                            &err);
                t_fwd += now() - t0;
                continue;
            }
            cli_input_list part = {.v = d->in.v + off, .n = n, .cap = n};
            cli_batch b = {.model = m, .cap = B, .run = dir_batch,
                           .ctx = &ctx, .decode_threads = d->decode[k - 1]};
            if (cli_batch_inputs(&b, &part) != CLI_EXIT_OK)
                failed = 1;
            t_e2e[k - 1] += now() - t0;
        }
    }
    double fwd = (double)N / t_fwd;
    for (int k = 0; k < d->nd; k++) {
        /* The walk is part of `vit classify DIR`; it was done once. */
        double e2e = (double)N / (t_e2e[k] + d->walk_s);
        printf("%7d %6d %7d %8zu %13.2f %13.2f %7.3f\n", nthreads, B,
               cli_batch_decode_threads(d->decode[k]), N, fwd, e2e,
               e2e / fwd);
    }
    fflush(stdout);
    bench_run_free(&r);
    vit_model_free(m);
    return failed;
}

static int bench_dir(dir_bench *d, const char *images, long max_images,
                     const int *threads, int nt, const int *batches, int nb)
{
    char *paths[1] = {(char *)images};
    double t0 = now();
    if (cli_inputs_collect(paths, 1, &d->in) != 0) {
        fprintf(stderr, "vit: out of memory\n");
        return CLI_EXIT_FAILED;
    }
    d->walk_s = now() - t0;
    size_t found = d->in.n;
    if (max_images > 0 && (size_t)max_images < d->in.n)
        d->in.n = (size_t)max_images;
    int rc = CLI_EXIT_FAILED;
    FILE *sink = fopen("/dev/null", "w");
    if (!sink) {
        perror("vit: /dev/null");
        goto done;
    }
    if (d->in.n == 0) {
        cli_report(images, "no JPEG, PNG or .npy files there");
        goto done;
    }
    /* The walk's time, for the images timed. */
    d->walk_s *= (double)d->in.n / (double)found;
    printf("images %s: %zu of %zu, walked in %.1f ms; %d rounds, the "
           "forward alone and end to end in turns\n",
           images, d->in.n, found, d->walk_s * 1e3, d->rounds);
    printf("%7s %6s %7s %8s %13s %13s %7s\n", "threads", "batch", "decode",
           "images", "forward img/s", "end-to-end", "ratio");
    rc = CLI_EXIT_OK;
    for (int ti = 0; ti < nt; ti++)
        for (int bi = 0; bi < nb; bi++)
            if (dir_case(d, threads[ti], batches[bi], sink) != 0)
                rc = CLI_EXIT_FAILED;
    printf("\npeak resident memory %.1f MiB\n", status_kib("VmHWM") / 1024);
done:
    if (sink)
        fclose(sink);
    d->in.n = found;
    cli_inputs_free(&d->in);
    return rc;
}

int cli_bench_main(int argc, char **argv)
{
    bench_args a;
    int rc = cli_op_parse_local(&bench_spec, argc, argv, &a);
    if (rc >= 0)
        return rc;
    const char *dir = a.model, *images = a.images, *probe = a.probe;
    int batches[MAX_CASES], threads[MAX_CASES], profile = a.profile;
    int nb = ints(&a.batches, batches), nt = ints(&a.threads, threads);
    double seconds = a.seconds ? atof(a.seconds) : 2;
    long max_images = a.max_images;
    dir_bench d = {.rounds = a.rounds};
    d.nd = ints(&a.decode, d.decode);
    for (int i = 0; i < d.nd; i++)
        d.decode[i] = d.decode[i] ? d.decode[i] : -1; /* cli_batch's "none" */
    cli_decode_flags dec = a.dec;
    cli_op_free(&bench_spec, &a);
    if (!nb) {
        batches[0] = 1, batches[1] = 8, batches[2] = 32;
        nb = images ? 1 : 3;
        if (images)
            batches[0] = 8;
    }
    if (!nt)
        threads[nt++] = 0;
    if (!d.nd)
        d.decode[d.nd++] = 0;
    int maxb = 1;
    for (int i = 0; i < nb; i++)
        maxb = batches[i] > maxb ? batches[i] : maxb;

    rc = CLI_EXIT_FAILED;
    vit_error err;
    vit_model *m = NULL;
    bench_run r = {0};
    mem_probe mem[MAX_CASES][MAX_CASES];
    vit_options opt = vit_options_default();
    cli_decode_apply(&dec, &opt);
    if (probe)
        return run_probe(dir, &opt, probe);
    opt.max_batch = maxb;
    double t0 = now();
    if (vit_model_load(dir, &opt, &m, &err) != VIT_OK) {
        cli_report(dir, err.msg);
        return CLI_EXIT_FAILED;
    }
    double t_load = now() - t0;
    vit_model_info in;
    vit_model_get_info(m, &in);
    if (!in.has_vision) {
        cli_report(dir, "vit bench times image towers; this model has none");
        goto done;
    }
    int tokens = vit_model_image_tokens(m);
    double flops = forward_flops(&in, tokens);
    printf("model %s (%s): %dx%d, hidden %d, %d layers, %.2f GFLOP/image\n",
           dir, in.architecture, in.image_h, in.image_w, in.hidden_size,
           in.num_layers, flops / 1e9);
    char cpu[256];
    vit_cpu_path(NULL, cpu, sizeof cpu, NULL);
    printf("cpu: %s\n", cpu);
    printf("precision: %s\n", cli_precision_name(opt.precision));
    if (images) {
        vit_model_free(m);
        d.model = dir;
        d.opt = opt;
        return bench_dir(&d, images, max_images, threads, nt, batches, nb);
    }
    /* Before this process holds any memory of its own. */
    for (int ti = 0; ti < nt; ti++)
        for (int i = 0; i < nb; i++)
            mem[ti][i] = probe_memory(dir, &dec, threads[ti], batches[i]);

    time_preprocess(m, &in);
    for (int ti = 0; ti < nt; ti++) {
        vit_model *mt = m;
        vit_model *own = NULL;
        if (threads[ti]) {
            /* The thread count is a load option: load again (the weights
             * are mapped, not read, so this is cheap). */
            vit_options ot = opt;
            ot.threads = threads[ti];
            if (vit_model_load(dir, &ot, &own, &err) != VIT_OK) {
                cli_report(dir, err.msg);
                goto done;
            }
            mt = own;
        }
        t0 = now();
        if (bench_run_new(&r, mt, maxb, &err) != VIT_OK ||
            forward(&r, r.px, 1, &err) != VIT_OK) {
            cli_report(dir, err.msg);
            bench_run_free(&r);
            vit_model_free(own);
            goto done;
        }
        double t_first = now() - t0 + t_load;
        vit_profile_entry e[VIT_PROFILE_OPS];
        int n = vit_state_profile_get(r.s, e);
        printf("\n%d threads: load to first result %.1f ms\n", n,
               t_first * 1e3);
        printf("%6s %10s %10s %10s %12s %8s\n", "batch", "ms/image",
               "images/s", "GFLOP/s", "FMA peak", "ratio");
        for (int i = 0; i < nb; i++) {
            int B = batches[i];
            forward(&r, r.px, B, &err); /* warm */
            vit_state_profile_enable(r.s, profile);
            /* The peak and the forward in turns, a round each second (one
             * round for short runs), so that both see the same machine;
             * the ratio is the median round's. */
            int rounds = seconds >= 2 ? 4 : 1, reps = 0;
            double peaks[4], ratios[4], el = 0;
            for (int k = 0; k < rounds; k++) {
                peaks[k] = vit_fma_peak_gflops(n);
                int kreps = 0;
                double t = now(), kel;
                do {
                    forward(&r, r.px, B, &err);
                    kreps++;
                    kel = now() - t;
                } while (kel < seconds / rounds && kreps < 100000);
                ratios[k] = flops * kreps * B / kel / 1e9 / peaks[k];
                reps += kreps;
                el += kel;
            }
            double per_img = el / reps / B;
            double g = flops / per_img / 1e9;
            printf("%6d %10.2f %10.1f %10.1f %12.1f %7.0f%%\n", B,
                   per_img * 1e3, 1.0 / per_img, g, median(peaks, rounds),
                   100 * median(ratios, rounds));
            if (profile)
                print_profile(r.s);
            vit_state_profile_enable(r.s, 0);
        }
        bench_run_free(&r);
        vit_model_free(own);
        print_gemms(&in, tokens, batches[nb - 1], n);
    }
    printf("\nmemory in MiB, a fresh process for each case (load, one "
           "forward);\nratio: (peak RSS - weights - copied - int8) / arena; "
           "less start: the same\nless the RSS before loading (the program "
           "and its shared libraries); weights:\nthe mapped checkpoint's "
           "pages the process holds (not those --precision int8\ngave back, "
           "nor a text tower's that image work never reads); bf16: the\n"
           "--precision bf16 weights (counted in the ratio with int8's)\n");
    for (int ti = 0; ti < nt; ti++)
        print_memory(mem[ti], batches, nb);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak resident memory of this run %.1f MiB\n",
           ru.ru_maxrss / 1024.0);
    rc = CLI_EXIT_OK;
done:
    bench_run_free(&r);
    vit_model_free(m);
    return rc;
}
