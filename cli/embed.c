/*
 * `vit embed`: image or text embeddings, L2-normalized by default
 * (--no-normalize gives exactly get_image_features / get_text_features),
 * written as JSONL lines or one float32 .npy array. Images go through the
 * shared batch driver; texts through vit_embed_texts in batches. All model
 * work is the library's.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { OPT_NO_NORMALIZE = 256, OPT_TEXTS_FILE };

static const char usage_line[] =
    "usage: vit embed --model DIR [--format jsonl|npy] [--out FILE]\n"
    "                 [--no-normalize] [--batch N] [--no-exif-rotate]\n"
    "                 [--fast-decode] [--precision fp32|int8|bf16]\n"
    "                 [--preprocess pil|torchvision] [--threads N]\n"
    "                 (--image PATH... | --text STR... | --texts-file FILE)\n";

static void help(FILE *f)
{
    fputs(usage_line, f);
    fputs("\n"
          "Embed images or texts with a CLIP or SigLIP model (CLIPModel,\n"
          "SiglipModel, a single tower of either, or an open_clip CLIP);\n"
          "images also with a ViT, DeiT or DINOv2 model or classifier (its\n"
          "pooled output: DINOv2's class token after the final layernorm, for\n"
          "image-to-image search), or a timm VisionTransformer (its pooled\n"
          "pre-logits features: forward_head(pre_logits=True)).\n"
          "\n"
          "Images are JPEG/PNG/WebP/GIF/BMP/TIFF/HEIC/AVIF files, .npy pixel\n"
          "arrays or directories, as for 'vit classify'; every PATH after the\n"
          "options is an image too.\n"
          "\n"
          "options:\n"
          "  -m, --model DIR       the model directory (required)\n"
          "  -i, --image PATH      an image, .npy file or directory "
          "(repeatable)\n"
          "  -t, --text STR        a text to embed (repeatable)\n"
          "      --texts-file FILE texts to embed, one per line (- : standard\n"
          "                        input)\n"
          "  -f, --format FMT      jsonl (default): one line per input,\n"
          "                        {\"path\"|\"text\": ..., \"embedding\": "
          "[...]};\n"
          "                        npy: one float32 array (N, dim) of the "
          "inputs\n"
          "                        that succeeded, in order\n"
          "  -o, --out FILE        write there instead of stdout\n"
          "      --no-normalize    the raw projection, not L2-normalized\n"
          "  -b, --batch N         inputs per forward pass (default 8)\n"
          "  -h, --help            show this help and exit\n",
          f);
    fputs(cli_decode_help, f);
    fputs(cli_threads_help, f);
    fputs(
          "\n"
          "Images the decoder cannot read found in a directory are reported\n"
          "and count as failed; files that are not images are skipped.\n"
          "Ctrl-C or SIGTERM stops after the current batch of images or\n"
          "texts, with the embeddings done written whole (npy: an array of\n"
          "those rows); a second Ctrl-C exits at once.\n"
          "\n"
          "Exit status: 0 if every input was embedded, 1 if any failed (each\n"
          "reported on stderr as 'vit: PATH: reason') or the model could not\n"
          "be loaded, 2 for a usage error, 130 or 143 when stopped by SIGINT\n"
          "or SIGTERM.\n",
          f);
}

#define usage_error(...) cli_usage_error("embed", usage_line, __VA_ARGS__)

typedef struct {
    const char *model_dir, *out, *texts_file;
    int npy, normalize, batch;
    cli_decode_flags dec;
    char **images, **texts;
    int n_images, n_texts;
} embed_args;

static int push(char ***v, int *n, char *s)
{
    char **nv = realloc(*v, (size_t)(*n + 1) * sizeof *nv);
    if (!nv)
        return -1;
    nv[(*n)++] = s;
    *v = nv;
    return 0;
}

static int parse_args(int argc, char **argv, embed_args *a)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"image", required_argument, NULL, 'i'},
        {"text", required_argument, NULL, 't'},
        {"texts-file", required_argument, NULL, OPT_TEXTS_FILE},
        {"format", required_argument, NULL, 'f'},
        {"out", required_argument, NULL, 'o'},
        {"no-normalize", no_argument, NULL, OPT_NO_NORMALIZE},
        CLI_DECODE_LONGOPTS,
        CLI_THREADS_LONGOPT,
        {"batch", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *a = (embed_args){.normalize = 1};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":m:i:t:f:o:b:h", longopts, NULL)) !=
           -1) {
        int dec = cli_decode_flag(c, &a->dec);
        if (dec < 0)
            return usage_error("%s", cli_decode_error);
        if (dec)
            continue;
        switch (c) {
        case 'm':
            a->model_dir = optarg;
            break;
        case 'i':
            if (push(&a->images, &a->n_images, optarg))
                return CLI_EXIT_FAILED;
            break;
        case 't':
            if (push(&a->texts, &a->n_texts, optarg))
                return CLI_EXIT_FAILED;
            break;
        case OPT_TEXTS_FILE:
            a->texts_file = optarg;
            break;
        case 'f':
            if (strcmp(optarg, "jsonl") == 0)
                a->npy = 0;
            else if (strcmp(optarg, "npy") == 0)
                a->npy = 1;
            else
                return usage_error("unknown format '%s' (jsonl or npy)",
                                   optarg);
            break;
        case 'o':
            a->out = optarg;
            break;
        case OPT_NO_NORMALIZE:
            a->normalize = 0;
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
    for (int i = optind; i < argc; i++)
        if (push(&a->images, &a->n_images, argv[i]))
            return CLI_EXIT_FAILED;
    if (!a->model_dir)
        return usage_error("%s", "--model DIR is required");
    int has_text = a->n_texts > 0 || a->texts_file;
    if (has_text && a->n_images)
        return usage_error("%s", "give images or texts, not both");
    if (!has_text && !a->n_images)
        return usage_error("%s", "nothing to embed: give --image PATH or "
                                 "--text STR");
    if (a->npy && !a->out && isatty(STDOUT_FILENO))
        return usage_error("%s", "--format npy writes binary; give --out FILE "
                                 "or redirect stdout");
    return -1;
}

/* Where embeddings go: JSONL lines as they come, or rows gathered for one
 * .npy array at the end. */
typedef struct {
    FILE *f;
    int npy, normalize, dim;
    vit_state *state;
    float *emb;  /* (cap, dim) for a batch */
    float *all;  /* npy rows so far */
    size_t rows, cap_rows;
} sink;

static vit_status sink_rows(sink *k, const float *v, int n, const char *key,
                            char *const *names)
{
    if (!k->npy) {
        for (int i = 0; i < n; i++)
            if (cli_embedding_write(k->f, key, names[i],
                                    v + (size_t)i * k->dim, k->dim) != 0)
                return VIT_E_NOMEM;
        return VIT_OK;
    }
    if (k->rows + (size_t)n > k->cap_rows) {
        size_t cap = k->cap_rows ? 2 * k->cap_rows : 64;
        while (cap < k->rows + (size_t)n)
            cap *= 2;
        float *na = realloc(k->all, cap * (size_t)k->dim * sizeof *na);
        if (!na)
            return VIT_E_NOMEM;
        k->all = na;
        k->cap_rows = cap;
    }
    memcpy(k->all + k->rows * (size_t)k->dim, v,
           (size_t)n * (size_t)k->dim * sizeof *v);
    k->rows += (size_t)n;
    return VIT_OK;
}

static vit_status image_batch(void *p, const float *pixels, int n,
                              char *const *paths, vit_error *err)
{
    sink *k = p;
    vit_status st = vit_embed_pixels(k->state, pixels, n, k->emb, err);
    if (st != VIT_OK)
        return st;
    if (k->normalize)
        vit_l2_normalize(k->emb, n, k->dim);
    return sink_rows(k, k->emb, n, "path", paths);
}

/* Texts in batches of `cap`; a failed batch is reported per text. Ctrl-C
 * or SIGTERM stops it between batches; *done: the texts done. */
static int embed_texts(sink *k, char **texts, int n, int cap, int *done)
{
    int failed = 0;
    *done = 0;
    for (int i = 0; i < n && !cli_interrupted(); i += cap) {
        int b = n - i < cap ? n - i : cap;
        vit_error err = {{0}};
        vit_status st = vit_embed_texts(k->state, (const char *const *)texts + i,
                                        b, k->emb, &err);
        if (st == VIT_OK && k->normalize)
            vit_l2_normalize(k->emb, b, k->dim);
        if (st == VIT_OK)
            st = sink_rows(k, k->emb, b, "text", texts + i);
        if (st == VIT_E_NOMEM) {
            fprintf(stderr, "vit: out of memory\n");
            return -1;
        }
        if (st != VIT_OK) {
            for (int j = 0; j < b; j++)
                cli_report(texts[i + j], err.msg);
            failed += b;
        }
        *done += b;
    }
    return failed;
}

int cli_embed_main(int argc, char **argv)
{
    embed_args a;
    int rc = parse_args(argc, argv, &a);
    char **file_texts = NULL;
    int n_file = 0;
    if (rc >= 0)
        goto out_args;
    rc = CLI_EXIT_FAILED;
    vit_options opt = vit_options_default();
    if (a.batch > 0)
        opt.max_batch = a.batch;
    cli_decode_apply(&a.dec, &opt);
    vit_model *m = NULL;
    sink k = {.npy = a.npy, .normalize = a.normalize, .f = stdout};
    cli_batch b = {.run = image_batch, .ctx = &k};
    cli_input_list in = {0};
    vit_error err = {{0}};
    if (a.texts_file) {
        if ((n_file = cli_read_lines(a.texts_file, &file_texts)) < 0)
            goto out_args;
        for (int i = 0; i < n_file; i++)
            if (push(&a.texts, &a.n_texts, file_texts[i]))
                goto out_args;
    }
    if (vit_model_load(a.model_dir, &opt, &m, &err) != VIT_OK) {
        cli_report(a.model_dir, err.msg);
        goto out;
    }
    vit_model_info info;
    vit_model_get_info(m, &info);
    k.dim = info.embed_dim;
    if (vit_state_new(m, &k.state, &err) != VIT_OK) {
        cli_report(a.model_dir, err.msg);
        goto out;
    }
    k.emb = malloc((size_t)opt.max_batch * (size_t)k.dim * sizeof *k.emb);
    if (!k.emb) {
        fprintf(stderr, "vit: out of memory\n");
        goto out;
    }
    if (a.out && !(k.f = fopen(a.out, "wb"))) {
        cli_report(a.out, strerror(errno));
        goto out;
    }
    int texts_done = 0, texts_failed = 0;
    cli_interrupt_install();
    if (a.n_texts) {
        texts_failed = embed_texts(&k, a.texts, a.n_texts, opt.max_batch,
                                   &texts_done);
        rc = texts_failed ? CLI_EXIT_FAILED : CLI_EXIT_OK;
        if (texts_failed >= 0 && cli_interrupted())
            rc = cli_interrupt_status();
    } else {
        if (cli_inputs_collect(a.images, a.n_images, &in) != 0) {
            fprintf(stderr, "vit: out of memory\n");
            goto out;
        }
        b.model = m;
        b.cap = opt.max_batch;
        rc = cli_batch_inputs(&b, &in);
    }
    /* Interrupted, the rows done still make a whole array. */
    if (k.npy && cli_npy_write(k.f, k.all, k.rows, (size_t)k.dim) != 0) {
        cli_report(a.out ? a.out : "stdout", strerror(errno));
        rc = CLI_EXIT_FAILED;
    }
    if (k.f && k.f != stdout && fclose(k.f) != 0) {
        cli_report(a.out, strerror(errno));
        rc = CLI_EXIT_FAILED;
    }
    k.f = NULL;
    cli_inputs_say_skipped(&in);
    if (b.interrupted)
        cli_interrupt_say(b.prog.done, b.prog.total, (size_t)b.failed,
                          "written");
    if (a.n_texts && texts_failed >= 0 && cli_interrupted())
        cli_interrupt_say_items((size_t)texts_done, (size_t)a.n_texts,
                                (size_t)texts_failed, "text", "written");
out:
    if (k.f && k.f != stdout && fclose(k.f) != 0) {
        cli_report(a.out, strerror(errno));
        rc = CLI_EXIT_FAILED;
    }
    cli_inputs_free(&in);
    free(k.emb);
    free(k.all);
    vit_state_free(k.state);
    vit_model_free(m);
out_args:
    cli_free_lines(file_texts, n_file);
    free(a.images);
    free(a.texts);
    return rc;
}
