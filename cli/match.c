/*
 * `vit match`: zero-shot matching of images against a list of texts with a
 * CLIP or SigLIP model. The texts are embedded once; each batch of images
 * is embedded and matched, and every image gets, with CLIP, the softmax
 * over the texts of logit_scale * cosine — what
 * logits_per_image.softmax(-1) gives in transformers — and with SigLIP
 * each pair's sigmoid(logit_scale * cosine + logit_bias), what
 * logits_per_image.sigmoid() gives. The batching of images is
 * cli/batch.c's.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_TEXTS_FILE = 256 };

static const char usage_line[] =
    "usage: vit match --model DIR (--text STR)... [--texts-file FILE]\n"
    "                 [--format text|jsonl] [--batch N] [--no-exif-rotate]\n"
    "                 [--fast-decode] [--precision fp32|int8|bf16]\n"
    "                 [--preprocess pil|torchvision] [--threads N] PATH...\n";

static void help(FILE *f)
{
    fputs(usage_line, f);
    fputs("\n"
          "Match images against texts with a CLIPModel or SiglipModel "
          "directory: for\n"
          "each image, the probability of each text. CLIP: the softmax over "
          "the texts\n"
          "of logit_scale * cosine similarity "
          "(logits_per_image.softmax(-1)).\n"
          "SigLIP: each text's own sigmoid(logit_scale * cosine + "
          "logit_bias)\n"
          "(logits_per_image.sigmoid()), so they need not sum to 1.\n"
          "Images are JPEG/PNG/WebP/GIF/BMP/TIFF/HEIC/AVIF files, .npy pixel\n"
          "arrays or directories, as for 'vit classify'.\n"
          "\n"
          "options:\n"
          "  -m, --model DIR       the model directory (required)\n"
          "  -t, --text STR        a text to match against (repeatable)\n"
          "      --texts-file FILE texts, one per line\n"
          "  -f, --format FMT      text (default): each image's path, then "
          "each\n"
          "                        text's probability; jsonl: {\"path\", "
          "\"scores\":\n"
          "                        [{\"text\", \"score\", \"logit\"}, ...]} "
          "per image\n"
          "  -b, --batch N         images per forward pass (default 8)\n"
          "  -h, --help            show this help and exit\n",
          f);
    fputs(cli_decode_help, f);
    fputs(cli_threads_help, f);
    fputs(
          "\n"
          "Images the decoder cannot read found in a directory are reported\n"
          "and count as failed; files that are not images are skipped. Text\n"
          "output escapes control characters in paths (\\n, \\t, \\xNN).\n"
          "Ctrl-C or SIGTERM stops after the current batch, with the results\n"
          "done written whole; a second Ctrl-C exits at once.\n"
          "\n"
          "Exit status: 0 if every image was matched, 1 if any failed (each\n"
          "reported on stderr as 'vit: PATH: reason') or the model could not\n"
          "be loaded, 2 for a usage error, 130 or 143 when stopped by SIGINT\n"
          "or SIGTERM.\n",
          f);
}

#define usage_error(...) cli_usage_error("match", usage_line, __VA_ARGS__)

typedef struct {
    const char *model_dir, *texts_file;
    cli_format fmt;
    int batch;
    cli_decode_flags dec;
    char **texts;
    int n_texts;
    char **paths;
    int n_paths;
} match_args;

static int parse_args(int argc, char **argv, match_args *a)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"text", required_argument, NULL, 't'},
        {"texts-file", required_argument, NULL, OPT_TEXTS_FILE},
        {"format", required_argument, NULL, 'f'},
        {"batch", required_argument, NULL, 'b'},
        CLI_DECODE_LONGOPTS,
        CLI_THREADS_LONGOPT,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *a = (match_args){.fmt = CLI_FMT_TEXT};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":m:t:f:b:h", longopts, NULL)) != -1) {
        int dec = cli_decode_flag(c, &a->dec);
        if (dec < 0)
            return usage_error("%s", cli_decode_error);
        if (dec)
            continue;
        switch (c) {
        case 'm':
            a->model_dir = optarg;
            break;
        case 't': {
            char **nv = realloc(a->texts, (size_t)(a->n_texts + 1) * sizeof *nv);
            if (!nv)
                return CLI_EXIT_FAILED;
            nv[a->n_texts++] = optarg;
            a->texts = nv;
            break;
        }
        case OPT_TEXTS_FILE:
            a->texts_file = optarg;
            break;
        case 'f':
            if (cli_format_parse(optarg, &a->fmt) != 0 ||
                a->fmt == CLI_FMT_CSV)
                return usage_error("unknown format '%s' (text or jsonl)",
                                   optarg);
            break;
        case 'b': {
            long v = cli_parse_long(optarg, 1, 4096);
            if (v < 0)
                return usage_error("--batch needs an integer from 1 to 4096, "
                                   "not '%s'", optarg);
            a->batch = (int)v;
            break;
        }
        case 'h':
            help(stdout);
            return CLI_EXIT_OK;
        case ':':
            return usage_error("option '%s' needs an argument",
                               argv[optind - 1]);
        default:
            if (optopt == 0 || optopt >= 256)
                return usage_error("unknown option '%s'", argv[optind - 1]);
            return usage_error("unknown option '-%c'", optopt);
        }
    }
    if (!a->model_dir)
        return usage_error("%s", "--model DIR is required");
    if (!a->n_texts && !a->texts_file)
        return usage_error("%s", "give the texts with --text STR or "
                                 "--texts-file FILE");
    if (optind >= argc)
        return usage_error("%s", "no PATH given");
    a->paths = argv + optind;
    a->n_paths = argc - optind;
    return -1;
}

typedef struct {
    const match_args *args;
    vit_model *model;
    vit_state *state;
    int dim, k;
    float *text_emb;  /* (k, dim) */
    float *img_emb;   /* (cap, dim) */
    float *logits, *probs;  /* (cap, k) */
} match_ctx;

static vit_status match_batch(void *p, const float *pixels, int n,
                              char *const *paths, vit_error *err)
{
    match_ctx *c = p;
    vit_status st = vit_embed_pixels(c->state, pixels, n, c->img_emb, err);
    if (st == VIT_OK)
        st = vit_match(c->model, c->img_emb, n, c->text_emb, c->k, c->logits,
                       c->probs, err);
    if (st != VIT_OK)
        return st;
    for (int i = 0; i < n; i++)
        if (cli_match_write(stdout, c->args->fmt, paths[i], c->args->texts,
                            c->k, c->probs + (size_t)i * c->k,
                            c->logits + (size_t)i * c->k) != 0)
            return VIT_E_NOMEM;
    return VIT_OK;
}

int cli_match_main(int argc, char **argv)
{
    match_args a;
    int rc = parse_args(argc, argv, &a);
    char **file_texts = NULL;
    int n_file = 0;
    vit_options opt = vit_options_default();
    match_ctx c = {.args = &a};
    cli_input_list in = {0};
    vit_error err = {{0}};
    if (rc >= 0)
        goto out;
    rc = CLI_EXIT_FAILED;
    if (a.texts_file) {
        if ((n_file = cli_read_lines(a.texts_file, &file_texts)) < 0)
            goto out;
        char **nv = realloc(a.texts, (size_t)(a.n_texts + n_file) * sizeof *nv);
        if (!nv)
            goto out;
        memcpy(nv + a.n_texts, file_texts, (size_t)n_file * sizeof *nv);
        a.texts = nv;
        a.n_texts += n_file;
    }
    if (a.n_texts == 0) {
        cli_report(a.texts_file, "no texts in the file");
        goto out;
    }
    if (a.batch > 0)
        opt.max_batch = a.batch;
    cli_decode_apply(&a.dec, &opt);
    if (vit_model_load(a.model_dir, &opt, &c.model, &err) != VIT_OK ||
        vit_state_new(c.model, &c.state, &err) != VIT_OK) {
        cli_report(a.model_dir, err.msg);
        goto out;
    }
    vit_model_info info;
    vit_model_get_info(c.model, &info);
    if (info.arch != VIT_ARCH_CLIP && info.arch != VIT_ARCH_SIGLIP) {
        cli_report(a.model_dir, "matching needs a CLIPModel or SiglipModel "
                                "directory (both towers and logit_scale)");
        goto out;
    }
    c.dim = info.embed_dim;
    c.k = a.n_texts;
    size_t cap = (size_t)opt.max_batch;
    c.text_emb = malloc((size_t)c.k * (size_t)c.dim * sizeof(float));
    c.img_emb = malloc(cap * (size_t)c.dim * sizeof(float));
    c.logits = malloc(cap * (size_t)c.k * sizeof(float));
    c.probs = malloc(cap * (size_t)c.k * sizeof(float));
    cli_interrupt_install();
    if (!c.text_emb || !c.img_emb || !c.logits || !c.probs ||
        cli_inputs_collect(a.paths, a.n_paths, &in) != 0) {
        fprintf(stderr, "vit: out of memory\n");
        goto out;
    }
    if (vit_embed_texts(c.state, (const char *const *)a.texts, c.k, c.text_emb,
                        &err) != VIT_OK) {
        cli_report(a.model_dir, err.msg);
        goto out;
    }
    cli_batch b = {.model = c.model, .cap = (int)cap,
                   .run = match_batch, .ctx = &c};
    rc = cli_batch_inputs(&b, &in);
    cli_inputs_say_skipped(&in);
    if (b.interrupted)
        cli_interrupt_say(b.prog.done, b.prog.total, (size_t)b.failed,
                          "written");
out:
    cli_inputs_free(&in);
    free(c.text_emb);
    free(c.img_emb);
    free(c.logits);
    free(c.probs);
    vit_state_free(c.state);
    vit_model_free(c.model);
    cli_free_lines(file_texts, n_file);
    free(a.texts);
    return rc;
}
