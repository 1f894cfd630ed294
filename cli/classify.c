/*
 * `vit classify`: its options, and what each batch of images becomes: a
 * vit_classify_pixels call on a ViT classifier, or, with --labels, a
 * zero-shot vit_zeroshot_classify_pixels call on a CLIP model over the
 * label set; the results go to the output formats. The batching of inputs
 * is cli/batch.c's; all model work is the library's.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BATCH 4096
#define MAX_TOP_K 1000000
#define DEFAULT_TOP_K 5

enum { OPT_LOGITS = 256 };

static const char usage_line[] =
    "usage: vit classify --model DIR [--top-k K] [--format text|jsonl|csv]\n"
    "                    [--logits] [--batch N] [--no-exif-rotate]\n"
    "                    [--fast-decode] [--precision fp32|int8|bf16]\n"
    "                    [--preprocess pil|torchvision] [--threads N]\n"
    "                    [--labels FILE [--template T]] PATH...\n";

static void help(FILE *f)
{
    fputs(usage_line, f);
    fprintf(f,
            "\n"
            "Classify images with a ViT image-classification model, a Hugging "
            "Face\n"
            "ViTForImageClassification directory (config.json, "
            "model.safetensors,\n"
            "preprocessor_config.json) or a timm VisionTransformer directory\n"
            "(config.json with timm's architecture and pretrained_cfg,\n"
            "model.safetensors), or zero-shot with a CLIPModel directory\n"
            "(or an open_clip one) and --labels. Results are printed in\n"
            "input order.\n"
            "\n"
            "Each PATH is one of:\n"
            "  an image file         JPEG, PNG, WebP, GIF (its first frame),\n"
            "                        BMP, TIFF (its first page), HEIC or AVIF,\n"
            "                        decoded and preprocessed as the model's\n"
            "                        preprocessor_config.json says\n"
            "  a .npy file           float32 pixels already preprocessed, "
            "shaped\n"
            "                        (3,H,W) or (N,3,H,W); image i of an "
            "(N,3,H,W)\n"
            "                        array is shown as FILE.npy[i]\n"
            "  a directory           searched recursively in name order for "
            "image\n"
            "                        files (recognized by content) and .npy "
            "files;\n"
            "                        an image the decoder cannot read (PSD, "
            "JPEG XL,\n"
            "                        ..., or corrupt) is reported and "
            "counts\n"
            "                        as failed; files that are not images are "
            "skipped\n"
            "                        (how many is said at the end), and so "
            "are names\n"
            "                        starting with '.'\n"
            "  an http(s):// URL     fetched (redirects followed, 120 s at "
            "most)\n"
            "  a data: URL           its bytes (base64 or percent-encoded)\n"
            "  -                     one image read from standard input\n"
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
            "  -l, --labels FILE   zero-shot with a CLIP or SigLIP model: one "
            "label per\n"
            "                      line; each becomes a prompt through "
            "--template, and\n"
            "                      scores are CLIP's softmax over labels of "
            "logit_scale *\n"
            "                      cosine, or SigLIP's sigmoid of each "
            "label's\n"
            "                      logit_scale * cosine + logit_bias\n"
            "  -t, --template T    the prompt for each label, '{}' standing "
            "for it\n"
            "                      (default 'a photo of a {}.')\n"
            "  -h, --help          show this help and exit\n"
            "%s%s"
            "\n"
            "Scores are probabilities: a softmax over the labels, except "
            "SigLIP's\n"
            "zero-shot sigmoids. When stderr is a terminal and "
            "there\n"
            "is more than one batch, a progress line is shown there. In text "
            "output\n"
            "(and on stderr) a path's control characters and bytes that are "
            "not\n"
            "UTF-8 are escaped, C-style (\\n, \\t, \\\\, \\xNN), so "
            "each path is one line.\n"
            "\n"
            "Ctrl-C (SIGINT) or SIGTERM stops after the current batch: every "
            "result\n"
            "done is written whole, stderr says how many, and the exit status "
            "is 130\n"
            "(SIGINT) or 143 (SIGTERM). A second Ctrl-C exits at once.\n"
            "\n"
            "Exit status: 0 if every input was classified, 1 if any input "
            "failed (each\n"
            "is reported on stderr as 'vit: PATH: reason' and the rest are "
            "still\n"
            "processed) or the model could not be loaded, 2 for a usage "
            "error,\n"
            "130 or 143 when stopped by SIGINT or SIGTERM.\n",
            DEFAULT_TOP_K, MAX_BATCH, vit_options_default().max_batch,
            cli_decode_help, cli_threads_help);
}

#define usage_error(...) cli_usage_error("classify", usage_line, __VA_ARGS__)

typedef struct {
    const char *model_dir;
    int top_k;
    cli_format fmt;
    int logits;
    int batch;  /* 0: the library's default */
    cli_decode_flags dec;
    const char *labels;    /* --labels FILE: zero-shot */
    const char *template;  /* --template, or NULL for the default */
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
        {"labels", required_argument, NULL, 'l'},
        CLI_DECODE_LONGOPTS,
        CLI_THREADS_LONGOPT,
        {"template", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *a = (classify_args){.top_k = DEFAULT_TOP_K, .fmt = CLI_FMT_TEXT};
    opterr = 0;  /* the messages below say which subcommand complained */
    int c;
    while ((c = getopt_long(argc, argv, ":m:k:f:b:l:t:h", longopts, NULL)) != -1) {
        long v;
        int dec = cli_decode_flag(c, &a->dec);
        if (dec < 0)
            return usage_error("%s", cli_decode_error);
        if (dec)
            continue;
        switch (c) {
        case 'm':
            a->model_dir = optarg;
            break;
        case 'k':
            if ((v = cli_parse_long(optarg, 1, MAX_TOP_K)) < 0)
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
            if ((v = cli_parse_long(optarg, 1, MAX_BATCH)) < 0)
                return usage_error("--batch needs an integer from 1 to %d, "
                                   "not '%s'", MAX_BATCH, optarg);
            a->batch = (int)v;
            break;
        case 'l':
            a->labels = optarg;
            break;
        case 't':
            if (!strstr(optarg, "{}"))
                return usage_error("--template needs '{}' where the label "
                                   "goes, not '%s'", optarg);
            a->template = optarg;
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
            if (optopt == OPT_LOGITS || optopt >= CLI_OPT_NO_EXIF || optopt == 'h')
                return usage_error("option '--%s' takes no argument",
                                   long_name(longopts, optopt));
            return usage_error("unknown option '-%c'", optopt);
        }
    }
    if (!a->model_dir)
        return usage_error("%s", "--model DIR is required");
    if (optind >= argc)
        return usage_error("%s", "no PATH given");
    if (a->template && !a->labels)
        return usage_error("%s", "--template goes with --labels");
    if (a->logits && a->fmt == CLI_FMT_CSV)
        return usage_error("%s", "--logits works with --format text or jsonl");
    a->paths = argv + optind;
    a->n_paths = argc - optind;
    return -1;
}

/* What a batch of images becomes: predictions and their output. */
typedef struct {
    const classify_args *args;
    vit_state *state;
    vit_zeroshot *zs;     /* with --labels */
    int k;                /* top_k clamped to the number of labels */
    int L;                /* labels */
    vit_prediction *top;  /* (cap, k) */
    float *logits;        /* (cap, L), or NULL without --logits */
} classify_ctx;

static vit_status classify_batch(void *p, const float *pixels, int n,
                                 char *const *paths, vit_error *err)
{
    classify_ctx *c = p;
    vit_status st =
        c->zs ? vit_zeroshot_classify_pixels(c->state, c->zs, pixels, n, c->k,
                                             c->top, c->logits, err)
              : vit_classify_pixels(c->state, pixels, n, c->k, c->top,
                                    c->logits, err);
    if (st != VIT_OK)
        return st;
    for (int i = 0; i < n; i++) {
        cli_result res = {
            .path = paths[i],
            .top = c->top + (size_t)i * c->k,
            .k = c->k,
            .logits = c->logits ? c->logits + (size_t)i * c->L : NULL,
            .num_labels = c->L,
        };
        if (cli_output_write(stdout, c->args->fmt, &res) != 0)
            return VIT_E_NOMEM;
    }
    return VIT_OK;
}

/* Reads --labels: one label per line, blank lines skipped, a trailing \r
 * dropped. Returns the count, or -1 after reporting. */
static int read_labels(const char *path, char ***out)
{
    char **v = NULL;
    int n;
    if ((n = cli_read_lines(path, &v)) < 0)
        return -1;
    if (n == 0) {
        cli_report(path, "no labels in the file");
        cli_free_lines(v, n);
        return -1;
    }
    *out = v;
    return n;
}

int cli_classify_main(int argc, char **argv)
{
    classify_args args;
    int rc = parse_args(argc, argv, &args);
    if (rc >= 0)
        return rc;

    vit_options opt = vit_options_default();
    classify_ctx c = {.args = &args};
    cli_batch b = {.run = classify_batch, .ctx = &c};
    cli_input_list in = {0};
    vit_error err = {{0}};
    vit_model_info info;
    char **labels = NULL;
    int nlabels = 0;
    rc = CLI_EXIT_FAILED;
    if (args.batch > 0)
        opt.max_batch = args.batch;
    cli_decode_apply(&args.dec, &opt);
    if (args.labels && (nlabels = read_labels(args.labels, &labels)) < 0)
        return CLI_EXIT_FAILED;
    vit_status st = vit_model_load(args.model_dir, &opt, &b.model, &err);
    if (st != VIT_OK) {
        cli_report(args.model_dir, err.msg[0] ? err.msg : vit_status_str(st));
        goto done;
    }
    vit_model_get_info(b.model, &info);
    if (!args.labels && info.num_labels <= 0) {
        cli_report(args.model_dir,
                   info.arch == VIT_ARCH_CLIP || info.arch == VIT_ARCH_SIGLIP
                       ? "a CLIP or SigLIP model has no fixed labels; give "
                         "them with --labels FILE"
                       : "the model has no classification head (a "
                         "ViTModel gives embeddings: use 'vit embed "
                         "--image')");
        goto done;
    }
    if (vit_state_new(b.model, &c.state, &err) != VIT_OK) {
        cli_report(args.model_dir, err.msg);
        goto done;
    }
    if (args.labels) {
        st = vit_zeroshot_new(c.state, (const char *const *)labels, nlabels,
                              args.template, &c.zs, &err);
        if (st != VIT_OK) {
            cli_report(args.model_dir, err.msg);
            goto done;
        }
        c.L = nlabels;
    } else {
        c.L = info.num_labels;
    }
    b.cap = opt.max_batch > 0 ? opt.max_batch : 1;
    c.k = args.top_k < c.L ? args.top_k : c.L;
    c.top = malloc((size_t)b.cap * (size_t)c.k * sizeof *c.top);
    if (args.logits)
        c.logits = malloc((size_t)b.cap * (size_t)c.L * sizeof(float));
    cli_interrupt_install();
    if (!c.top || (args.logits && !c.logits) ||
        cli_inputs_collect(args.paths, args.n_paths, &in) != 0) {
        fprintf(stderr, "vit: out of memory\n");
        goto done;
    }
    cli_output_begin(stdout, args.fmt);
    rc = cli_batch_inputs(&b, &in);
    cli_inputs_say_skipped(&in);
    if (b.interrupted)
        cli_interrupt_say(b.prog.done, b.prog.total, (size_t)b.failed,
                          "written");

done:
    cli_inputs_free(&in);
    free(c.top);
    free(c.logits);
    vit_zeroshot_free(c.zs);
    cli_free_lines(labels, nlabels);
    vit_state_free(c.state);
    vit_model_free(b.model);
    return rc;
}
