/*
 * The entry point of the `vit` command: the top-level help and version, and
 * dispatch to a subcommand by name. Each subcommand parses its own options
 * and returns its exit status (0 all inputs done, 1 some input failed, 2 a
 * usage error). Only subcommands that exist are listed here, so the help
 * never promises one that does not work yet.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} cli_command;

static const cli_command commands[] = {
    {"classify", cli_classify_main,
     "classify images with a ViT/DeiT/DINOv2 or timm ViT classifier, or "
     "zero-shot with CLIP or SigLIP"},
    {"embed", cli_embed_main,
     "embed images or texts (CLIP, SigLIP, ViT, DINOv2, timm ViT)"},
    {"match", cli_match_main, "match images against texts (CLIP, SigLIP)"},
    {"bench", cli_bench_main, "time a model here, against the sgemm peak"},
    {"serve", cli_serve_main, "serve a model over ZeroMQ (worker)"},
    {"broker", cli_broker_main, "route clients to workers by model (broker)"},
    {"client", cli_client_main, "send work to a vit worker or broker"},
    {"http", cli_http_main, "an HTTP/JSON gateway to a worker or broker"},
    {"index", cli_index_main, "build and search an image-text index"},
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: vit <command> [options] [args]\n"
               "       vit --help | --version\n");
}

static void help(FILE *f)
{
    usage(f);
    fprintf(f, "\nVision Transformer inference on Hugging Face checkpoints.\n"
               "\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\noptions:\n"
               "  -h, --help     show this help and exit\n"
               "  -V, --version  print the version and exit\n"
               "\nRun 'vit <command> --help' for the options of a command.\n");
}

void cli_report(const char *path, const char *reason)
{
    size_t n = strlen(path);
    if (strncmp(reason, path, n) == 0 && reason[n] == ':' &&
        reason[n + 1] == ' ')
        reason += n + 2;
    else if (n && strncmp(reason, path, n) == 0 && reason[n] == '/')
        reason += n + 1; /* "PATH/config.json: ..." names PATH once */
    fputs("vit: ", stderr);
    cli_text_path(stderr, path);
    fprintf(stderr, ": %s\n", reason);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        fprintf(stderr, "Run 'vit --help' for the list of commands.\n");
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        help(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        char cpu[256];
        vit_error err = {{0}};
        vit_status st = vit_cpu_path(NULL, cpu, sizeof cpu, &err);
        printf("vit %s\ncpu: %s\n", CLI_VERSION, cpu);
        if (st != VIT_OK) {
            fprintf(stderr, "vit: %s\n", err.msg);
            return CLI_EXIT_FAILED;
        }
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "vit: unknown %s '%s'\n",
            cmd[0] == '-' ? "option" : "command", cmd);
    usage(stderr);
    fprintf(stderr, "Run 'vit --help' for the list of commands.\n");
    return CLI_EXIT_USAGE;
}

int cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "vit %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fputs(usage, stderr);
    /* A subcommand's ("index add") help is its command's. */
    fprintf(stderr, "Run 'vit %.*s --help' for more.\n",
            (int)strcspn(cmd, " "), cmd);
    return CLI_EXIT_USAGE;
}

long cli_parse_long(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    return v;
}
