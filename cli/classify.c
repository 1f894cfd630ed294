/*
 * `vit classify`: its options, and the loop that feeds inputs to the
 * library in batches. Images are decoded and preprocessed one at a time into
 * a batch buffer, .npy arrays of preprocessed pixels are copied in as they
 * are, and each full batch goes through one vit_classify_pixels call; results
 * come out in input order. An input that fails is reported on stderr and the
 * run goes on. All model work is the library's; this file only moves pixels
 * and results between it and the output formats.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BATCH 4096
#define MAX_TOP_K 1000000
#define DEFAULT_TOP_K 5

enum { OPT_LOGITS = 256 };

static const char usage_line[] =
    "usage: vit classify --model DIR [--top-k K] [--format text|jsonl|csv]\n"
    "                    [--logits] [--batch N] PATH...\n";

static void help(FILE *f)
{
    fputs(usage_line, f);
    fprintf(f,
            "\n"
            "Classify images with a ViT image-classification model, a Hugging "
            "Face\n"
            "ViTForImageClassification directory (config.json, "
            "model.safetensors,\n"
            "preprocessor_config.json). Results are printed in input order.\n"
            "\n"
            "Each PATH is one of:\n"
            "  a JPEG or PNG file    decoded and preprocessed as the model's\n"
            "                        preprocessor_config.json says\n"
            "  a .npy file           float32 pixels already preprocessed, "
            "shaped\n"
            "                        (3,H,W) or (N,3,H,W); image i of an "
            "(N,3,H,W)\n"
            "                        array is shown as FILE.npy[i]\n"
            "  a directory           searched recursively in name order for "
            "JPEG\n"
            "                        and PNG files (recognized by content) "
            "and .npy\n"
            "                        files; other files and names starting "
            "with '.'\n"
            "                        are skipped\n"
            "\n"
            "options:\n"
            "  -m, --model DIR     the model directory (required)\n"
            "  -k, --top-k K       show the K most likely labels per image "
            "(default %d;\n"
            "                      at most the number of labels)\n"
            "  -f, --format FMT    text (default), jsonl (one JSON object per "
            "line:\n"
            "                      path, labels with id, label and score) or "
            "csv\n"
            "                      (header path,rank,id,label,score)\n"
            "      --logits        also print each image's raw logits (text "
            "and jsonl)\n"
            "  -b, --batch N       images per forward pass, 1 to %d (default "
            "%d)\n"
            "  -h, --help          show this help and exit\n"
            "\n"
            "Scores are softmax probabilities. When stderr is a terminal and "
            "there\n"
            "is more than one batch, a progress line is shown there.\n"
            "\n"
            "Exit status: 0 if every input was classified, 1 if any input "
            "failed (each\n"
            "is reported on stderr as 'vit: PATH: reason' and the rest are "
            "still\n"
            "processed) or the model could not be loaded, 2 for a usage "
            "error.\n",
            DEFAULT_TOP_K, MAX_BATCH, vit_options_default().max_batch);
}

static int usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vit classify: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fputs(usage_line, stderr);
    fputs("Run 'vit classify --help' for more.\n", stderr);
    return CLI_EXIT_USAGE;
}

/* A whole decimal integer in [lo, hi], or -1. */
static long parse_int(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    return v;
}

typedef struct {
    const char *model_dir;
    int top_k;
    cli_format fmt;
    int logits;
    int batch;  /* 0: the library's default */
    char **paths;
    int n_paths;
} classify_args;

static const char *long_name(const struct option *opts, int val)
{
    for (; opts->name; opts++)
        if (opts->val == val)
            return opts->name;
    return "?";
}

/* Returns -1 when the arguments are fine, else the exit status. */
static int parse_args(int argc, char **argv, classify_args *a)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"top-k", required_argument, NULL, 'k'},
        {"format", required_argument, NULL, 'f'},
        {"logits", no_argument, NULL, OPT_LOGITS},
        {"batch", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *a = (classify_args){.top_k = DEFAULT_TOP_K, .fmt = CLI_FMT_TEXT};
    opterr = 0;  /* the messages below say which subcommand complained */
    int c;
    while ((c = getopt_long(argc, argv, ":m:k:f:b:h", longopts, NULL)) != -1) {
        long v;
        switch (c) {
        case 'm':
            a->model_dir = optarg;
            break;
        case 'k':
            if ((v = parse_int(optarg, 1, MAX_TOP_K)) < 0)
                return usage_error("--top-k needs a positive integer, not '%s'",
                                   optarg);
            a->top_k = (int)v;
            break;
        case 'f':
            if (cli_format_parse(optarg, &a->fmt) != 0)
                return usage_error(
                    "unknown format '%s' (text, jsonl or csv)", optarg);
            break;
        case OPT_LOGITS:
            a->logits = 1;
            break;
        case 'b':
            if ((v = parse_int(optarg, 1, MAX_BATCH)) < 0)
                return usage_error("--batch needs an integer from 1 to %d, "
                                   "not '%s'", MAX_BATCH, optarg);
            a->batch = (int)v;
            break;
        case 'h':
            help(stdout);
            return CLI_EXIT_OK;
        case ':':
            return usage_error("option '--%s' needs an argument",
                               long_name(longopts, optopt));
        default:
            /* optopt is 0 for an unknown long option (then argv[optind-1]
             * is it), the value of a long option given an argument it does
             * not take, or else an unknown short option's character. */
            if (optopt == 0)
                return usage_error("unknown option '%s'", argv[optind - 1]);
            if (optopt == OPT_LOGITS || optopt == 'h')
                return usage_error("option '--%s' takes no argument",
                                   long_name(longopts, optopt));
            return usage_error("unknown option '-%c'", optopt);
        }
    }
    if (!a->model_dir)
        return usage_error("%s", "--model DIR is required");
    if (optind >= argc)
        return usage_error("%s", "no PATH given");
    if (a->logits && a->fmt == CLI_FMT_CSV)
        return usage_error("%s", "--logits works with --format text or jsonl");
    a->paths = argv + optind;
    a->n_paths = argc - optind;
    return -1;
}

/* The state of one run: the model, the batch being filled, the tallies. */
typedef struct {
    const classify_args *args;
    vit_options opt;
    vit_model *model;
    vit_state *state;
    vit_model_info info;
    size_t chw;  /* floats per image */
    int k;       /* top_k clamped to the number of labels */
    int cap, n;  /* batch capacity and fill */
    float *pixels;        /* (cap, C, H, W) */
    vit_prediction *top;  /* (cap, k) */
    float *logits;        /* (cap, num_labels), or NULL without --logits */
    char **paths;         /* (cap) */
    cli_progress prog;
    int failed;
    int oom;
} classify_run;

static void input_failed(classify_run *r, const char *path, const char *why)
{
    cli_progress_clear(&r->prog);
    cli_report(path, why);
    r->failed++;
    r->prog.done++;
    cli_progress_draw(&r->prog);
}

/* Classifies the images in the batch and prints their results. */
static void flush(classify_run *r)
{
    if (r->n == 0)
        return;
    vit_error err = {{0}};
    int L = r->info.num_labels;
    vit_status st = vit_classify_pixels(r->state, r->pixels, r->n, r->k,
                                        r->top, r->logits, &err);
    cli_progress_clear(&r->prog);
    for (int i = 0; i < r->n; i++) {
        if (st != VIT_OK) {
            cli_report(r->paths[i], err.msg[0] ? err.msg : vit_status_str(st));
            r->failed++;
        } else if (!r->oom) {
            cli_result res = {
                .path = r->paths[i],
                .top = r->top + (size_t)i * r->k,
                .k = r->k,
                .logits = r->logits ? r->logits + (size_t)i * L : NULL,
                .num_labels = L,
            };
            if (cli_output_write(stdout, r->args->fmt, &res) != 0)
                r->oom = 1;
        }
        free(r->paths[i]);
    }
    r->prog.done += (size_t)r->n;
    r->n = 0;
    if (r->prog.tty)
        fflush(stdout);  /* the results go to the screen before the line */
    cli_progress_draw(&r->prog);
}

/* Takes the image just written to pixels[n]; `path` is owned. */
static void commit(classify_run *r, char *path)
{
    if (!path) {
        r->oom = 1;
        return;
    }
    r->paths[r->n++] = path;
    if (r->n == r->cap)
        flush(r);
}

static float *slot(classify_run *r)
{
    return r->pixels + (size_t)r->n * r->chw;
}

static void do_image(classify_run *r, const char *path)
{
    vit_error err = {{0}};
    vit_image img;
    vit_status st = vit_image_read(path, &r->opt, &img, &err);
    if (st != VIT_OK) {
        input_failed(r, path, err.msg[0] ? err.msg : vit_status_str(st));
        return;
    }
    st = vit_preprocess(r->model, &img, 1, slot(r), &err);
    vit_image_free(&img);
    if (st != VIT_OK) {
        input_failed(r, path, err.msg[0] ? err.msg : vit_status_str(st));
        return;
    }
    commit(r, strdup(path));
}

static void shape_str(char *buf, size_t size, const int64_t *shape, int ndim)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, size - o, "(");
    for (int i = 0; i < ndim && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? "," : "",
                              (long long)shape[i]);
    if (o < size)
        snprintf(buf + o, size - o, ")");
}

static void do_npy(classify_run *r, const char *path)
{
    vit_error err = {{0}};
    vit_array a;
    vit_status st = vit_npy_read(path, &a, &err);
    if (st != VIT_OK) {
        input_failed(r, path, err.msg[0] ? err.msg : vit_status_str(st));
        return;
    }
    const int64_t *s = a.shape;
    int C = r->info.channels, H = r->info.image_h, W = r->info.image_w;
    int64_t count = -1;
    if (a.ndim == 3 && s[0] == C && s[1] == H && s[2] == W)
        count = 1;
    else if (a.ndim == 4 && s[0] >= 0 && s[1] == C && s[2] == H && s[3] == W)
        count = s[0];
    if (count < 0) {
        char got[160], msg[320];
        shape_str(got, sizeof got, a.shape, a.ndim < 8 ? a.ndim : 8);
        snprintf(msg, sizeof msg,
                 "pixel array of shape %s; the model takes (%d,%d,%d) or "
                 "(N,%d,%d,%d)",
                 got, C, H, W, C, H, W);
        vit_array_free(&a);
        input_failed(r, path, msg);
        return;
    }
    /* The file was counted as one input; it holds `count`. */
    r->prog.total = r->prog.total + (size_t)count - 1;
    for (int64_t i = 0; i < count && !r->oom; i++) {
        memcpy(slot(r), a.data + (size_t)i * r->chw, r->chw * sizeof(float));
        char *name;
        if (a.ndim == 3) {
            name = strdup(path);
        } else {
            size_t len = strlen(path) + 24;
            if ((name = malloc(len)))
                snprintf(name, len, "%s[%lld]", path, (long long)i);
        }
        commit(r, name);
    }
    vit_array_free(&a);
}

static int run_inputs(classify_run *r, const cli_input_list *in)
{
    cli_progress_init(&r->prog, in->n, (size_t)r->cap);
    cli_output_begin(stdout, r->args->fmt);
    for (size_t i = 0; i < in->n && !r->oom; i++) {
        const cli_input *x = &in->v[i];
        switch (x->kind) {
        case CLI_IN_ERROR:
            input_failed(r, x->path, x->error);
            break;
        case CLI_IN_IMAGE:
            do_image(r, x->path);
            break;
        case CLI_IN_NPY:
            do_npy(r, x->path);
            break;
        }
    }
    if (!r->oom)
        flush(r);
    cli_progress_clear(&r->prog);
    for (int i = 0; i < r->n; i++)
        free(r->paths[i]);
    r->n = 0;
    if (r->oom) {
        fprintf(stderr, "vit: out of memory\n");
        return CLI_EXIT_FAILED;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "vit: writing the output: %s\n", strerror(errno));
        return CLI_EXIT_FAILED;
    }
    return r->failed ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

int cli_classify_main(int argc, char **argv)
{
    classify_args args;
    int rc = parse_args(argc, argv, &args);
    if (rc >= 0)
        return rc;

    classify_run r = {.args = &args, .opt = vit_options_default()};
    cli_input_list in = {0};
    vit_error err = {{0}};
    rc = CLI_EXIT_FAILED;
    if (args.batch > 0)
        r.opt.max_batch = args.batch;
    vit_status st = vit_model_load(args.model_dir, &r.opt, &r.model, &err);
    if (st != VIT_OK) {
        cli_report(args.model_dir, err.msg[0] ? err.msg : vit_status_str(st));
        return CLI_EXIT_FAILED;
    }
    vit_model_get_info(r.model, &r.info);
    if (r.info.num_labels <= 0) {
        cli_report(args.model_dir, "the model has no classification head "
                                   "(num_labels is 0)");
        goto done;
    }
    if (vit_state_new(r.model, &r.state, &err) != VIT_OK) {
        cli_report(args.model_dir, err.msg);
        goto done;
    }

    r.cap = r.opt.max_batch > 0 ? r.opt.max_batch : 1;
    r.k = args.top_k < r.info.num_labels ? args.top_k : r.info.num_labels;
    r.chw = (size_t)r.info.channels * (size_t)r.info.image_h *
            (size_t)r.info.image_w;
    size_t L = (size_t)r.info.num_labels, cap = (size_t)r.cap;
    if (r.chw == 0 || r.chw > SIZE_MAX / sizeof(float) / cap) {
        cli_report(args.model_dir, "the pixel batch is too large for memory");
        goto done;
    }
    r.pixels = malloc(cap * r.chw * sizeof(float));
    r.top = malloc(cap * (size_t)r.k * sizeof *r.top);
    r.paths = malloc(cap * sizeof *r.paths);
    if (args.logits)
        r.logits = malloc(cap * L * sizeof(float));
    if (!r.pixels || !r.top || !r.paths || (args.logits && !r.logits) ||
        cli_inputs_collect(args.paths, args.n_paths, &in) != 0) {
        fprintf(stderr, "vit: out of memory\n");
        goto done;
    }
    rc = run_inputs(&r, &in);

done:
    cli_inputs_free(&in);
    free(r.pixels);
    free(r.top);
    free(r.logits);
    free(r.paths);
    vit_state_free(r.state);
    vit_model_free(r.model);
    return rc;
}
