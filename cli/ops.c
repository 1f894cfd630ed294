/*
 * The argument specs of the operations both backends run: `vit classify`,
 * `vit embed` and `vit match` locally (cli/classify.c, cli/embed.c,
 * cli/match.c), and the same through a server (`vit client ... classify`,
 * cli/client.c). Each option's names, type, bounds, message and help are
 * written once, here; the --model and decoding options are the local
 * backend's (a server has its model and decodes as it was started).
 */
#include "cli/args.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_BATCH 4096

/* The options every image operation has, for the local backend. */
#define OPT_MODEL(T, H)                                                     \
    {.name = "model", .key = 'm', .type = CLI_ARG_STR,                      \
     .off = offsetof(T, model_dir), .where = CLI_LOCAL, .help = H}
#define OPT_DECODE(T)                                                       \
    CLI_OPTS_DECODE(T),                                                     \
    {.name = "threads", .key = CLI_OPT_THREADS, .type = CLI_ARG_DECODE,     \
     .off = offsetof(T, dec), .where = CLI_LOCAL}
#define OPT_BATCH(T, H)                                                     \
    {.name = "batch", .key = 'b', .type = CLI_ARG_INT,                      \
     .off = offsetof(T, batch), .where = CLI_BOTH, .lo = 1,                 \
     .hi = MAX_BATCH,                                                       \
     .bad = "--batch needs an integer from 1 to 4096, not '%s'",            \
     .help = H}
#define OPT_HELP(H)                                                         \
    {.name = "help", .key = 'h', .type = CLI_ARG_HELP,                      \
     .where = CLI_LOCAL, .help = H}

/* ---- what both backends read before they run ---- */

/* --texts-file's lines appended to `texts` (*lines keeps them); -1 after
 * reporting. */
static int texts_gather(cli_strv *texts, const char *file, char ***lines,
                        int *n)
{
    *lines = NULL;
    *n = 0;
    if (!file)
        return 0;
    if ((*n = cli_read_lines(file, lines)) < 0) {
        *n = 0;
        return -1;
    }
    for (int i = 0; i < *n; i++)
        if (cli_strv_push(texts, (*lines)[i], 0) != 0) {
            fprintf(stderr, "vit: out of memory\n");
            return -1;
        }
    return 0;
}

/* classify --labels: one label per line; an empty file is an error.
 * Returns the count, or -1 after reporting. */
static int labels_read(const char *path, char ***out)
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

/* ---- classify ---- */

static int has_slot(const char *t)
{
    return strstr(t, "{}") != NULL;
}

static const cli_opt classify_opts[] = {
    OPT_MODEL(cli_classify_args,
        "  -m, --model DIR     the model directory (required)\n"),
    {.name = "top-k", .key = 'k', .type = CLI_ARG_INT,
     .off = offsetof(cli_classify_args, top_k), .where = CLI_BOTH, .lo = 1,
     .hi = 1000000, .hi_remote = 1000,
     .bad = "--top-k needs a positive integer, not '%s'",
     .bad_remote = "--top-k is at most 1000 over the service, not '%s'",
     .help =
        "  -k, --top-k K       show the K most likely labels per image "
        "(default 5;\n"
        "                      at most the number of labels)\n"},
    {.name = "format", .key = 'f', .type = CLI_ARG_CHOICE,
     .off = offsetof(cli_classify_args, fmt), .where = CLI_BOTH,
     .choices = "text|jsonl|csv",  /* in cli_format's order */
     .bad = "unknown format '%s' (text, jsonl or csv)",
     .help =
        "  -f, --format FMT    text (default), jsonl (one JSON object per "
        "line:\n"
        "                      path, labels with id, label and score) or "
        "csv\n"
        "                      (header path,rank,id,label,score)\n"},
    {.name = "logits", .type = CLI_ARG_FLAG, .lo = 1,
     .off = offsetof(cli_classify_args, logits), .where = CLI_BOTH,
     .help =
        "      --logits        also print each image's raw logits (text and "
        "jsonl)\n"},
    OPT_BATCH(cli_classify_args,
        "  -b, --batch N       images per forward pass, 1 to 4096 (default "
        "8)\n"),
    {.name = "labels", .key = 'l', .type = CLI_ARG_STR,
     .off = offsetof(cli_classify_args, labels), .where = CLI_BOTH,
     .help =
        "  -l, --labels FILE   zero-shot with a CLIP or SigLIP model: one "
        "label per\n"
        "                      line; each becomes a prompt through "
        "--template, and\n"
        "                      scores are CLIP's softmax over labels of "
        "logit_scale *\n"
        "                      cosine, or SigLIP's sigmoid of each label's\n"
        "                      logit_scale * cosine + logit_bias\n"},
    {.name = "template", .key = 't', .type = CLI_ARG_STR,
     .off = offsetof(cli_classify_args, template), .where = CLI_BOTH,
     .valid = has_slot,
     .bad = "--template needs '{}' where the label goes, not '%s'",
     .help =
        "  -t, --template T    the prompt for each label, '{}' standing for "
        "it\n"
        "                      (default 'a photo of a {}.')\n"},
    OPT_HELP(
        "  -h, --help          show this help and exit\n"),
    OPT_DECODE(cli_classify_args),
    {0},
};

static void classify_init(void *p)
{
    cli_classify_args *a = p;
    a->top_k = 5;
    a->fmt = CLI_FMT_TEXT;
}

static const char *classify_check(void *p, unsigned backend, char *buf,
                                  size_t n)
{
    const cli_classify_args *a = p;
    if (backend == CLI_LOCAL && !a->model_dir)
        return "--model DIR is required";
    if (a->paths.n == 0)
        return "no PATH given";
    if (a->template && !a->labels)
        return "--template goes with --labels";
    if (a->logits && a->fmt == CLI_FMT_CSV)
        return "--logits works with --format text or jsonl";
    return NULL;
}

static int classify_load(void *p)
{
    cli_classify_args *a = p;
    if (a->labels && (a->n_labels = labels_read(a->labels, &a->label_v)) < 0) {
        a->n_labels = 0;
        return -1;
    }
    return 0;
}

static void classify_unload(void *p)
{
    cli_classify_args *a = p;
    cli_free_lines(a->label_v, a->n_labels);
    a->label_v = NULL;
    a->n_labels = 0;
}

const cli_op cli_classify_op = {
    .name = "classify",
    .usage =
        "usage: vit classify --model DIR [--top-k K] [--format "
        "text|jsonl|csv]\n"
        "                    [--logits] [--batch N] [--no-exif-rotate]\n"
        "                    [--fast-decode] [--precision fp32|int8|bf16]\n"
        "                    [--preprocess pil|torchvision] [--threads N]\n"
        "                    [--labels FILE [--template T]] PATH...\n",
    .about =
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
        "                        an image the decoder cannot read (PSD, JPEG "
        "XL,\n"
        "                        ..., or corrupt) is reported and counts\n"
        "                        as failed; files that are not images are "
        "skipped\n"
        "                        (how many is said at the end), and so are "
        "names\n"
        "                        starting with '.'\n"
        "  an http(s):// URL     fetched (redirects followed, 120 s at "
        "most)\n"
        "  a data: URL           its bytes (base64 or percent-encoded)\n"
        "  -                     one image read from standard input\n",
    .after =
        "\n"
        "Scores are probabilities: a softmax over the labels, except "
        "SigLIP's\n"
        "zero-shot sigmoids. When stderr is a terminal and there\n"
        "is more than one batch, a progress line is shown there. In text "
        "output\n"
        "(and on stderr) a path's control characters and bytes that are not\n"
        "UTF-8 are escaped, C-style (\\n, \\t, \\\\, \\xNN), so each path is "
        "one line.\n"
        "\n"
        "Ctrl-C (SIGINT) or SIGTERM stops after the current batch: every "
        "result\n"
        "done is written whole, stderr says how many, and the exit status is "
        "130\n"
        "(SIGINT) or 143 (SIGTERM). A second Ctrl-C exits at once.\n"
        "\n"
        "Exit status: 0 if every input was classified, 1 if any input failed "
        "(each\n"
        "is reported on stderr as 'vit: PATH: reason' and the rest are "
        "still\n"
        "processed) or the model could not be loaded, 2 for a usage error,\n"
        "130 or 143 when stopped by SIGINT or SIGTERM.\n",
    .opts = classify_opts,
    .size = sizeof(cli_classify_args),
    .positional = offsetof(cli_classify_args, paths),
    .init = classify_init,
    .check = classify_check,
    .load = classify_load,
    .unload = classify_unload,
};

/* ---- embed ---- */

static const cli_opt embed_opts[] = {
    OPT_MODEL(cli_embed_args,
        "  -m, --model DIR       the model directory (required)\n"),
    {.name = "image", .key = 'i', .type = CLI_ARG_LIST,
     .off = offsetof(cli_embed_args, images), .where = CLI_BOTH,
     .help =
        "  -i, --image PATH      an image, .npy file or directory "
        "(repeatable)\n"},
    {.name = "text", .key = 't', .type = CLI_ARG_LIST,
     .off = offsetof(cli_embed_args, texts), .where = CLI_BOTH,
     .help =
        "  -t, --text STR        a text to embed (repeatable)\n"},
    {.name = "texts-file", .type = CLI_ARG_STR,
     .off = offsetof(cli_embed_args, texts_file), .where = CLI_BOTH,
     .help =
        "      --texts-file FILE texts to embed, one per line (- : standard\n"
        "                        input)\n"},
    {.name = "format", .key = 'f', .type = CLI_ARG_CHOICE,
     .off = offsetof(cli_embed_args, npy), .where = CLI_BOTH,
     .choices = "jsonl|npy", .bad = "unknown format '%s' (jsonl or npy)",
     .help =
        "  -f, --format FMT      jsonl (default): one line per input,\n"
        "                        {\"path\"|\"text\": ..., \"embedding\": "
        "[...]};\n"
        "                        npy: one float32 array (N, dim) of the "
        "inputs\n"
        "                        that succeeded, in order\n"},
    {.name = "out", .key = 'o', .type = CLI_ARG_STR,
     .off = offsetof(cli_embed_args, out), .where = CLI_BOTH,
     .help =
        "  -o, --out FILE        write there instead of stdout\n"},
    {.name = "no-normalize", .type = CLI_ARG_FLAG, .lo = 0,
     .off = offsetof(cli_embed_args, normalize), .where = CLI_BOTH,
     .help =
        "      --no-normalize    the raw projection, not L2-normalized\n"},
    OPT_BATCH(cli_embed_args,
        "  -b, --batch N         inputs per forward pass (default 8)\n"),
    OPT_HELP(
        "  -h, --help            show this help and exit\n"),
    OPT_DECODE(cli_embed_args),
    {0},
};

static void embed_init(void *p)
{
    ((cli_embed_args *)p)->normalize = 1;
}

static const char *embed_check(void *p, unsigned backend, char *buf,
                               size_t n)
{
    const cli_embed_args *a = p;
    if (backend == CLI_LOCAL && !a->model_dir)
        return "--model DIR is required";
    int has_text = a->texts.n > 0 || a->texts_file;
    if (has_text && a->images.n)
        return "give images or texts, not both";
    if (!has_text && !a->images.n)
        return "nothing to embed: give --image PATH or --text STR";
    if (a->npy && !a->out && isatty(STDOUT_FILENO))
        return "--format npy writes binary; give --out FILE or redirect "
               "stdout";
    return NULL;
}

static int embed_load(void *p)
{
    cli_embed_args *a = p;
    return texts_gather(&a->texts, a->texts_file, &a->file_lines, &a->n_file);
}

static void embed_unload(void *p)
{
    cli_embed_args *a = p;
    cli_free_lines(a->file_lines, a->n_file);
    a->file_lines = NULL;
    a->n_file = 0;
}

const cli_op cli_embed_op = {
    .name = "embed",
    .usage =
        "usage: vit embed --model DIR [--format jsonl|npy] [--out FILE]\n"
        "                 [--no-normalize] [--batch N] [--no-exif-rotate]\n"
        "                 [--fast-decode] [--precision fp32|int8|bf16]\n"
        "                 [--preprocess pil|torchvision] [--threads N]\n"
        "                 (--image PATH... | --text STR... | --texts-file "
        "FILE)\n",
    .about =
        "\n"
        "Embed images or texts with a CLIP or SigLIP model (CLIPModel,\n"
        "SiglipModel, a single tower of either, or an open_clip CLIP);\n"
        "images also with a ViT, DeiT or DINOv2 model or classifier (its\n"
        "pooled output: DINOv2's class token after the final layernorm, for\n"
        "image-to-image search), or a timm VisionTransformer (its pooled\n"
        "pre-logits features: forward_head(pre_logits=True)).\n"
        "\n"
        "Images are JPEG/PNG/WebP/GIF/BMP/TIFF/HEIC/AVIF files, .npy pixel\n"
        "arrays or directories, as for 'vit classify'; every PATH after the\n"
        "options is an image too.\n",
    .after =
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
    .opts = embed_opts,
    .size = sizeof(cli_embed_args),
    .positional = offsetof(cli_embed_args, images),
    .init = embed_init,
    .check = embed_check,
    .load = embed_load,
    .unload = embed_unload,
};

/* ---- match ---- */

static const cli_opt match_opts[] = {
    OPT_MODEL(cli_match_args,
        "  -m, --model DIR       the model directory (required)\n"),
    {.name = "text", .key = 't', .type = CLI_ARG_LIST,
     .off = offsetof(cli_match_args, texts), .where = CLI_BOTH,
     .help =
        "  -t, --text STR        a text to match against (repeatable)\n"},
    {.name = "texts-file", .type = CLI_ARG_STR,
     .off = offsetof(cli_match_args, texts_file), .where = CLI_BOTH,
     .help =
        "      --texts-file FILE texts, one per line\n"},
    {.name = "format", .key = 'f', .type = CLI_ARG_CHOICE,
     .off = offsetof(cli_match_args, fmt), .where = CLI_BOTH,
     .choices = "text|jsonl",  /* CLI_FMT_TEXT, CLI_FMT_JSONL */
     .bad = "unknown format '%s' (text or jsonl)",
     .help =
        "  -f, --format FMT      text (default): each image's path, then "
        "each\n"
        "                        text's probability; jsonl: {\"path\", "
        "\"scores\":\n"
        "                        [{\"text\", \"score\", \"logit\"}, ...]} "
        "per image\n"},
    OPT_BATCH(cli_match_args,
        "  -b, --batch N         images per forward pass (default 8)\n"),
    OPT_HELP(
        "  -h, --help            show this help and exit\n"),
    OPT_DECODE(cli_match_args),
    {0},
};

static const char *match_check(void *p, unsigned backend, char *buf,
                               size_t n)
{
    const cli_match_args *a = p;
    if (backend == CLI_LOCAL && !a->model_dir)
        return "--model DIR is required";
    if (!a->texts.n && !a->texts_file)
        return "give the texts with --text STR or --texts-file FILE";
    if (a->paths.n == 0)
        return "no PATH given";
    return NULL;
}

static int match_load(void *p)
{
    cli_match_args *a = p;
    if (texts_gather(&a->texts, a->texts_file, &a->file_lines, &a->n_file))
        return -1;
    if (a->texts.n == 0) {
        cli_report(a->texts_file, "no texts in the file");
        return -1;
    }
    return 0;
}

static void match_unload(void *p)
{
    cli_match_args *a = p;
    cli_free_lines(a->file_lines, a->n_file);
    a->file_lines = NULL;
    a->n_file = 0;
}

const cli_op cli_match_op = {
    .name = "match",
    .usage =
        "usage: vit match --model DIR (--text STR)... [--texts-file FILE]\n"
        "                 [--format text|jsonl] [--batch N] "
        "[--no-exif-rotate]\n"
        "                 [--fast-decode] [--precision fp32|int8|bf16]\n"
        "                 [--preprocess pil|torchvision] [--threads N] "
        "PATH...\n",
    .about =
        "\n"
        "Match images against texts with a CLIPModel or SiglipModel "
        "directory: for\n"
        "each image, the probability of each text. CLIP: the softmax over "
        "the texts\n"
        "of logit_scale * cosine similarity (logits_per_image.softmax(-1)).\n"
        "SigLIP: each text's own sigmoid(logit_scale * cosine + logit_bias)\n"
        "(logits_per_image.sigmoid()), so they need not sum to 1.\n"
        "Images are JPEG/PNG/WebP/GIF/BMP/TIFF/HEIC/AVIF files, .npy pixel\n"
        "arrays or directories, as for 'vit classify'.\n",
    .after =
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
    .opts = match_opts,
    .size = sizeof(cli_match_args),
    .positional = offsetof(cli_match_args, paths),
    .check = match_check,
    .load = match_load,
    .unload = match_unload,
};

vit_options cli_model_options(int batch, const cli_decode_flags *dec)
{
    vit_options opt = vit_options_default();
    if (batch > 0)
        opt.max_batch = batch;
    cli_decode_apply(dec, &opt);
    return opt;
}

