/*
 * Small pieces the subcommands share: reading files of one item per line,
 * as --labels and --texts-file take them (blank lines skipped, a trailing
 * carriage return dropped, the file reported when it cannot be read), and
 * the image decoding options every image command takes.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_read_lines(const char *path, char ***out)
{
    int in = strcmp(path, "-") == 0; /* standard input */
    FILE *f = in ? stdin : fopen(path, "r");
    if (!f) {
        cli_report(path, strerror(errno));
        return -1;
    }
    char **v = NULL, *line = NULL;
    size_t cap = 0, linecap = 0;
    int n = 0;
    ssize_t len;
    while ((len = getline(&line, &linecap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (len == 0)
            continue;
        if ((size_t)n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nv = realloc(v, cap * sizeof *nv);
            if (!nv)
                goto oom;
            v = nv;
        }
        if (!(v[n] = strdup(line)))
            goto oom;
        n++;
    }
    if (ferror(f)) {
        cli_report(path, strerror(errno));
        cli_free_lines(v, n);
        n = -1;
        v = NULL;
    }
    free(line);
    if (!in)
        fclose(f);
    *out = v;
    return n;
oom:
    free(line);
    if (!in)
        fclose(f);
    cli_free_lines(v, n);
    cli_report(path, "out of memory");
    return -1;
}

int cli_read_text(const char *path, char *text, size_t size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_report(path, strerror(errno));
        return -1;
    }
    size_t n = fread(text, 1, size - 1, f);
    fclose(f);
    text[n] = '\0';
    return 0;
}

void cli_free_lines(char **v, int n)
{
    for (int i = 0; i < n && v; i++)
        free(v[i]);
    free(v);
}

#define PREPROCESS_HELP \
    "      --preprocess pil|torchvision\n"  \
    "          which of transformers' two image processors to reproduce, bit\n"  \
    "          for bit: pil (default), the Pillow one (`CLIPImageProcessorPil`,\n"  \
    "          ...), or torchvision, the one transformers picks whenever\n"  \
    "          torchvision is installed; they differ by a level or so a pixel.\n"  \
    "          A timm model always runs timm's own eval transform, an\n"        \
    "          open_clip model its own (both Pillow)\n"

const char cli_decode_help[] =
    "      --no-exif-rotate\n"
    "          keep images as stored, not turned upright by their EXIF\n"
    "          orientation (transformers' load_image applies it, and so does\n"
    "          vit by default; timm's Image.open does not)\n"
    "      --fast-decode\n"
    "          let libjpeg decode large JPEGs shrunk (DCT scaling), as far as\n"
    "          the model's resize allows: several times faster on photos,\n"
    "          but it CHANGES PIXELS, drifting a few levels from the\n"
    "          reference's\n"
    "      --precision fp32|int8|bf16\n"
    "          fp32 (default): the reference's numbers. bf16: the encoder's\n"
    "          matrix products with bfloat16 weights and inputs and float32\n"
    "          sums, through oneDNN where the CPU has AVX512-BF16 or AMX\n"
    "          (about 1.9x as fast at full size); elsewhere the bfloat16\n"
    "          weights run in the float32 kernel. It CHANGES NUMBERS, about\n"
    "          a tenth as much as int8. int8: the encoder's\n"
    "          matrix products in int8 (weights per output channel,\n"
    "          activations per token), about 2.4x as fast with AVX-512 VNNI\n"
    "          or AVX-VNNI, 1.3-1.4x on AVX2 alone, but it CHANGES NUMBERS:\n"
    "          scores drift by about a percent, and top labels can differ\n"
    "          where two are close\n"
    "      --max-pixels N\n"
    "          refuse an image of more pixels than N, read from its header\n"
    "          before decoding (default 178956970, where Pillow refuses;\n"
    "          0: no limit)\n"
    PREPROCESS_HELP;

const char cli_threads_help[] =
    "      --threads N\n"
    "          threads each forward pass computes with (default 0: one per\n"
    "          CPU); images are decoded on threads of their own\n";

char cli_decode_error[128];

int cli_preprocess_torchvision(const char *s)
{
    if (strcmp(s, "pil") == 0)
        return 0;
    return strcmp(s, "torchvision") == 0 ? 1 : -1;
}

int cli_precision(const char *s)
{
    if (strcmp(s, "fp32") == 0)
        return VIT_PRECISION_FP32;
    if (strcmp(s, "int8") == 0)
        return VIT_PRECISION_INT8;
    return strcmp(s, "bf16") == 0 ? VIT_PRECISION_BF16 : -1;
}

const char *cli_precision_name(int precision)
{
    return precision == VIT_PRECISION_INT8   ? "int8"
           : precision == VIT_PRECISION_BF16 ? "bf16"
                                             : "fp32";
}

int cli_decode_flag(int c, cli_decode_flags *f)
{
    if (c == CLI_OPT_NO_EXIF) {
        f->no_exif = 1;
    } else if (c == CLI_OPT_FAST_DECODE) {
        f->fast_decode = 1;
    } else if (c == CLI_OPT_PRECISION) {
        int p = cli_precision(optarg);
        if (p >= 0) {
            f->precision = p;
        } else {
            snprintf(cli_decode_error, sizeof cli_decode_error,
                     "--precision is fp32, int8 or bf16, not '%s'", optarg);
            return -1;
        }
    } else if (c == CLI_OPT_THREADS) {
        long n = cli_parse_long(optarg, 0, 1024);
        if (n < 0) {
            snprintf(cli_decode_error, sizeof cli_decode_error,
                     "--threads is a number from 0 to 1024, not '%s'", optarg);
            return -1;
        }
        f->threads = (int)n;
    } else if (c == CLI_OPT_MAX_PIXELS) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(optarg, &end, 10);
        if (errno || end == optarg || *end || optarg[0] == '-' ||
            v > (1ull << 40)) {
            snprintf(cli_decode_error, sizeof cli_decode_error,
                     "--max-pixels is a number from 0 (no limit) to 2^40, "
                     "not '%s'", optarg);
            return -1;
        }
        f->max_pixels = (uint64_t)v;
        f->max_pixels_set = 1;
    } else if (c == CLI_OPT_PREPROCESS) {
        int tv = cli_preprocess_torchvision(optarg);
        if (tv < 0) {
            snprintf(cli_decode_error, sizeof cli_decode_error,
                     "--preprocess is pil or torchvision, not '%s'", optarg);
            return -1;
        }
        f->torchvision = tv;
        f->preprocess_set = 1;
    } else {
        return 0;
    }
    return 1;
}

void cli_decode_apply(const cli_decode_flags *f, vit_options *opt)
{
    if (f->no_exif)
        opt->exif_transpose = 0;
    if (f->fast_decode)
        opt->fast_decode = 1;
    if (f->precision)
        opt->precision = (vit_precision)f->precision;
    if (f->torchvision)
        opt->preprocess = VIT_PREPROCESS_TORCHVISION;
    if (f->threads)
        opt->threads = f->threads;
    if (f->max_pixels_set)
        opt->max_pixels = f->max_pixels;
}
