/*
 * One argument spec per operation (cli/args.c parses, cli/ops.c holds the
 * specs): each option's names, the type of its value and its bounds, the
 * message for a bad value, which backends take it and its lines in
 * --help; and the checks of the whole command line. The local command
 * (`vit classify`, run by the library) and the remote one (`vit client
 * ... classify`, run by a server through the client library) parse with
 * the same spec into the same struct, so that they take the same options,
 * with the same meanings and the same messages, and cannot drift apart.
 */
#ifndef CLI_ARGS_H
#define CLI_ARGS_H

#include "cli/cli.h"

#include <stddef.h>
#include <stdio.h>

/* Which backend an option is for. */
enum { CLI_LOCAL = 1, CLI_REMOTE = 2, CLI_BOTH = 3 };

typedef enum {
    CLI_ARG_FLAG,    /* no value: stores `lo` in an int */
    CLI_ARG_STR,     /* a const char * (the last one given) */
    CLI_ARG_INT,     /* an int in [lo, hi] */
    CLI_ARG_SIZE,    /* a size_t in [lo, hi] */
    CLI_ARG_U64,     /* a uint64_t in [lo, hi] */
    CLI_ARG_LIST,    /* repeatable: appended to a cli_strv, tagged `lo` */
    CLI_ARG_CHOICE,  /* one of `choices` ("text|jsonl"): its index, an int */
    CLI_ARG_DECODE,  /* a decoding option (cli_decode_flag) of a
                        cli_decode_flags; `key` is its CLI_OPT_* */
    CLI_ARG_HELP,    /* --help: prints the operation's help */
} cli_arg_type;

/* Strings gathered from the command line (borrowed from argv), and for a
 * list several options fill, which option gave each (tags[i], its tag). */
typedef struct {
    char **v;
    char *tags;
    int n;
} cli_strv;

typedef struct {
    const char *name;  /* its long name */
    int key;           /* its short option (a character), a CLI_OPT_* for
                          CLI_ARG_DECODE, or 0 */
    cli_arg_type type;
    size_t off;        /* where its value goes in the operation's struct */
    unsigned where;    /* CLI_LOCAL, CLI_REMOTE or CLI_BOTH */
    long lo, hi;       /* CLI_ARG_INT's bounds; CLI_ARG_FLAG's value (lo);
                          CLI_ARG_LIST's tag (lo) and the most values its
                          list takes (hi, 0: no limit) */
    long hi_remote;    /* CLI_ARG_INT: a lower bound the service sets, or 0 */
    const char *choices;   /* CLI_ARG_CHOICE: "a|b|c" */
    const char *bad;       /* a bad value's message, %s the value (if any) */
    const char *bad_remote;  /* over hi_remote: the message */
    int (*valid)(const char *value);  /* CLI_ARG_STR, CLI_ARG_LIST: also
                                         required */
    const char *help;  /* its lines under options: in --help, or NULL */
    int help_value;    /* help is a printf format for its default value
                          (%d an int, %zu a size, %llu a uint64_t) */
} cli_opt;

/* The decoding options an image command takes but --threads (which a
 * command may take as a decoding option or as its own), their values in
 * T's `dec`, a cli_decode_flags; their lines in --help are
 * cli_decode_help. */
#define CLI_OPTS_DECODE(T)                                                  \
    {.name = "no-exif-rotate", .key = CLI_OPT_NO_EXIF,                      \
     .type = CLI_ARG_DECODE, .off = offsetof(T, dec),                       \
     .where = CLI_LOCAL},                                                   \
    {.name = "fast-decode", .key = CLI_OPT_FAST_DECODE,                     \
     .type = CLI_ARG_DECODE, .off = offsetof(T, dec),                       \
     .where = CLI_LOCAL},                                                   \
    {.name = "precision", .key = CLI_OPT_PRECISION,                         \
     .type = CLI_ARG_DECODE, .off = offsetof(T, dec),                       \
     .where = CLI_LOCAL},                                                   \
    {.name = "preprocess", .key = CLI_OPT_PREPROCESS,                       \
     .type = CLI_ARG_DECODE, .off = offsetof(T, dec),                       \
     .where = CLI_LOCAL},                                                   \
    {.name = "max-pixels", .key = CLI_OPT_MAX_PIXELS,                       \
     .type = CLI_ARG_DECODE, .off = offsetof(T, dec),                       \
     .where = CLI_LOCAL}

/* The whole command line's checks: NULL when it is fine, else the usage
 * error (a constant, or written into buf). */
typedef const char *(*cli_check_fn)(void *args, unsigned backend, char *buf,
                                    size_t n);

typedef struct {
    const char *name;    /* "classify": `vit classify`, `vit client
                            classify` */
    const char *usage;   /* the local command's usage lines */
    const char *about;   /* --help: what comes before "options:" */
    const char *after;   /* --help: what comes after the options */
    const cli_opt *opts; /* ended by a NULL name */
    size_t size;         /* the struct the values go into */
    size_t positional;   /* the cli_strv the PATHs go to */
    int in_order;        /* options end at the first PATH (a command's own
                            follow it) */
    void (*init)(void *args);  /* its defaults */
    cli_check_fn check;  /* NULL: fine; else the usage error */
    /* What both backends read before they run (--texts-file, --labels):
     * 0, or -1 after reporting (exit status 1); and its freeing. */
    int (*load)(void *args);
    void (*unload)(void *args);
} cli_op;

/* Parses argv (argv[0] the operation's name) with op's spec for `backend`
 * into args (op->size bytes), after op->init, then op->load. Options of the other backend
 * are unknown here. Usage errors are said as `vit CMD: PREFIX message`
 * with CMD's usage lines: CMD and its usage are op's own locally, or the
 * caller's (`client`, PREFIX "classify: ") for the remote backend.
 * Returns -1 when the arguments are fine (free the args with cli_op_free
 * then), else the exit status (0 after --help), the args freed. Freeing
 * twice is harmless. */
int cli_op_parse(const cli_op *op, unsigned backend, const char *cmd,
                 const char *usage, const char *prefix, int argc,
                 char **argv, void *args);
void cli_op_free(const cli_op *op, void *args);
/* cli_op_parse for the local command (`vit classify`). */
int cli_op_parse_local(const cli_op *op, int argc, char **argv, void *args);

/* The operation's --help, from its spec. */
void cli_op_help(const cli_op *op, FILE *f);

/* Appends s, tagged `tag` (0: untagged); -1 when out of memory. */
int cli_strv_push(cli_strv *l, char *s, char tag);

/* ---- the operations both backends run (cli/ops.c) ---- */

typedef struct {
    const char *model_dir;
    int top_k;
    int fmt;      /* a cli_format */
    int logits;
    int batch;    /* 0: the default (the library's; the client's 8) */
    cli_decode_flags dec;
    const char *labels;    /* --labels FILE: zero-shot */
    const char *template;  /* --template, or NULL for the default */
    cli_strv paths;
    char **label_v;  /* --labels' lines (loaded) */
    int n_labels;
} cli_classify_args;

typedef struct {
    const char *model_dir, *out, *texts_file;
    int npy, normalize, batch;
    cli_decode_flags dec;
    cli_strv images, texts;  /* texts: --text's, then --texts-file's */
    char **file_lines;       /* --texts-file's (loaded) */
    int n_file;
} cli_embed_args;

typedef struct {
    const char *model_dir, *texts_file;
    int fmt;  /* CLI_FMT_TEXT or CLI_FMT_JSONL */
    int batch;
    cli_decode_flags dec;
    cli_strv texts, paths;  /* texts: --text's, then --texts-file's */
    char **file_lines;      /* --texts-file's (loaded) */
    int n_file;
} cli_match_args;

extern const cli_op cli_classify_op, cli_embed_op, cli_match_op;

/* The index's operations (cli/ops_index.c). */
typedef struct {
    char sub;  /* the operation, set by its spec: 'a'dd, 'r'emove, 's'tats,
                  'q' search */
    const char *model_dir, *index, *html, *prefix;
    int batch, k, jsonl, missing;
    cli_decode_flags dec;  /* --no-exif-rotate, --preprocess, --threads,
                              --max-pixels */
    int model_precision;   /* add: a vit_precision */
    int precision;         /* the others: the matrix's, an idx_precision */
    cli_strv queries;      /* --text ('t') and --image ('i'), in order */
    cli_strv paths;
    const char *ann;       /* --ann: hnsw, none or exact (idx_ann_parse) */
} cli_index_args;

extern const cli_op cli_index_add_op, cli_index_remove_op,
    cli_index_stats_op, cli_index_search_op;

/* The options the local backend loads a model with: the library's, with
 * --batch (0: the library's) and the decoding options. */
vit_options cli_model_options(int batch, const cli_decode_flags *dec);


#endif
