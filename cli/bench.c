/*
 * `vit bench`: how fast a model runs here. For each thread count and batch
 * size it times the forward pass on synthetic pixels and reports ms per
 * image, images/s and achieved GFLOP/s next to the OpenBLAS sgemm peak
 * measured in the same run at the model's own largest GEMM shape, so the
 * result reads as a ratio that survives a noisy, shared machine; also the
 * time to load and reach the first result, preprocessing time, peak
 * resident memory, and with --profile where the time goes by kind of op.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

enum { OPT_PROFILE = 256, OPT_SECONDS };

static const char usage_line[] =
    "usage: vit bench --model DIR [--batch N]... [--threads N]... "
    "[--profile]\n"
    "                 [--seconds S]\n";

static void help(FILE *f)
{
    fputs(usage_line, f);
    fputs("\n"
          "Time a model's forward pass on synthetic pixels. For every thread\n"
          "count and batch size: ms per image, images/s, achieved GFLOP/s and\n"
          "its ratio to the OpenBLAS sgemm peak measured in the same run, on\n"
          "as many threads, at the model's largest GEMM shape (the MLP's).\n"
          "\n"
          "options:\n"
          "  -m, --model DIR     the model directory (required); a CLIP model\n"
          "                      is timed on its image tower\n"
          "  -b, --batch N       a batch size to time (repeatable; default 1, "
          "8, 32)\n"
          "  -t, --threads N     a thread count to time (repeatable; default: "
          "one per\n"
          "                      CPU)\n"
          "      --profile       also print where the time goes, by kind of "
          "op\n"
          "      --seconds S     time each case for at least S seconds "
          "(default 2)\n"
          "  -h, --help          show this help and exit\n",
          f);
}

#define usage_error(...) cli_usage_error("bench", usage_line, __VA_ARGS__)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Multiply-adds of one image's forward through the vision tower, counted
 * as 2 flops each. */
static double forward_flops(const vit_model_info *in)
{
    double T = (double)(in->image_h / in->patch_size) *
                   (in->image_w / in->patch_size) + 1,
           D = in->hidden_size, NP = T - 1,
           cpp = (double)in->channels * in->patch_size * in->patch_size;
    double per_layer = 2 * T * D * D * 4     /* q, k, v, out projections */
                       + 2 * T * T * D * 2   /* scores and weighted sum */
                       + 2 * T * D * in->mlp_size * 2; /* the MLP */
    return 2 * NP * cpp * D + in->num_layers * per_layer +
           2 * D * (in->num_labels ? in->num_labels : in->embed_dim);
}

typedef struct {
    vit_state *s;
    int classifier;
    float *px, *out;
} bench_run;

static vit_status forward(bench_run *r, int B, vit_error *err)
{
    return r->classifier
               ? vit_classify_pixels(r->s, r->px, B, 0, NULL, r->out, err)
               : vit_embed_pixels(r->s, r->px, B, r->out, err);
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

int cli_bench_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"batch", required_argument, NULL, 'b'},
        {"threads", required_argument, NULL, 't'},
        {"profile", no_argument, NULL, OPT_PROFILE},
        {"seconds", required_argument, NULL, OPT_SECONDS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL;
    int batches[16], nb = 0, threads[16], nt = 0, profile = 0;
    double seconds = 2;
    opterr = 0;
    int c;
    long v;
    while ((c = getopt_long(argc, argv, ":m:b:t:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            dir = optarg;
            break;
        case 'b':
            if ((v = cli_parse_long(optarg, 1, 4096)) < 0 || nb == 16)
                return usage_error("--batch needs 1 to 4096 (16 at most), "
                                   "not '%s'", optarg);
            batches[nb++] = (int)v;
            break;
        case 't':
            if ((v = cli_parse_long(optarg, 1, 256)) < 0 || nt == 16)
                return usage_error("--threads needs 1 to 256 (16 at most), "
                                   "not '%s'", optarg);
            threads[nt++] = (int)v;
            break;
        case OPT_PROFILE:
            profile = 1;
            break;
        case OPT_SECONDS:
            seconds = atof(optarg);
            if (!(seconds > 0 && seconds <= 600))
                return usage_error("--seconds needs a number of seconds, "
                                   "not '%s'", optarg);
            break;
        case 'h':
            help(stdout);
            return CLI_EXIT_OK;
        case ':':
            return usage_error("option '%s' needs an argument",
                               argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (!dir)
        return usage_error("%s", "--model DIR is required");
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (!nb) {
        batches[0] = 1, batches[1] = 8, batches[2] = 32;
        nb = 3;
    }
    if (!nt)
        threads[nt++] = 0;
    int maxb = 1;
    for (int i = 0; i < nb; i++)
        maxb = batches[i] > maxb ? batches[i] : maxb;

    int rc = CLI_EXIT_FAILED;
    vit_error err;
    vit_model *m = NULL;
    bench_run r = {0};
    vit_options opt = vit_options_default();
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
    size_t per = (size_t)in.channels * in.image_h * in.image_w;
    int dim = in.num_labels ? in.num_labels : in.embed_dim;
    r.classifier = in.num_labels > 0;
    r.px = malloc((size_t)maxb * per * sizeof *r.px);
    r.out = malloc((size_t)maxb * dim * sizeof *r.out);
    if (!r.px || !r.out) {
        fprintf(stderr, "vit: out of memory\n");
        goto done;
    }
    for (size_t i = 0; i < (size_t)maxb * per; i++)
        r.px[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;

    int T = (in.image_h / in.patch_size) * (in.image_w / in.patch_size) + 1;
    double flops = forward_flops(&in);
    printf("model %s (%s): %dx%d, hidden %d, %d layers, %.2f GFLOP/image\n",
           dir, in.architecture, in.image_h, in.image_w, in.hidden_size,
           in.num_layers, flops / 1e9);
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
        if (vit_state_new(mt, &r.s, &err) != VIT_OK ||
            forward(&r, 1, &err) != VIT_OK) {
            cli_report(dir, err.msg);
            vit_state_free(r.s);
            r.s = NULL;
            vit_model_free(own);
            goto done;
        }
        double t_first = now() - t0 + t_load;
        vit_profile_entry e[VIT_PROFILE_OPS];
        int n = vit_state_profile_get(r.s, e);
        printf("\n%d threads: load to first result %.1f ms\n", n,
               t_first * 1e3);
        printf("%6s %10s %10s %10s %12s %8s\n", "batch", "ms/image",
               "images/s", "GFLOP/s", "sgemm peak", "ratio");
        for (int i = 0; i < nb; i++) {
            int B = batches[i];
            double peak = vit_sgemm_gflops(B * T, in.mlp_size, in.hidden_size,
                                           n);
            forward(&r, B, &err); /* warm */
            vit_state_profile_enable(r.s, profile);
            int reps = 0;
            double t = now(), el;
            do {
                forward(&r, B, &err);
                reps++;
                el = now() - t;
            } while (el < seconds && reps < 100000);
            double per_img = el / reps / B;
            double g = flops / per_img / 1e9;
            printf("%6d %10.2f %10.1f %10.1f %12.1f %7.0f%%\n", B,
                   per_img * 1e3, 1.0 / per_img, g, peak, 100 * g / peak);
            if (profile)
                print_profile(r.s);
            vit_state_profile_enable(r.s, 0);
        }
        vit_state_free(r.s);
        r.s = NULL;
        vit_model_free(own);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("\npeak resident memory %.1f MiB\n", ru.ru_maxrss / 1024.0);
    rc = CLI_EXIT_OK;
done:
    free(r.px);
    free(r.out);
    vit_model_free(m);
    return rc;
}
