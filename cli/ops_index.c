/*
 * The argument specs of the index's operations: `vit index add|remove|
 * stats|search` locally (cli/index.c), and search, index-add, index-remove
 * and index-stats through a worker that serves an index (`vit client`,
 * cli/client_index.c). The four local ones take the same options (each
 * refuses in its check those that mean nothing to it, as it always did);
 * over the service each takes its own few.
 */
#include "cli/args.h"
#include "index/index.h"

#include <stddef.h>
#include <stdio.h>

#define A cli_index_args

static int ann_valid(const char *s)
{
    idx_ann a;
    return idx_ann_parse(s, &a) == 0;
}

#define IX_MODEL                                                            \
    {.name = "model", .key = 'm', .type = CLI_ARG_STR,                      \
     .off = offsetof(A, model_dir), .where = CLI_LOCAL,                     \
     .help =                                                                \
     "  -m, --model DIR       the model directory (add: required)\n"}
#define IX_INDEX                                                            \
    {.name = "index", .key = 'x', .type = CLI_ARG_STR,                      \
     .off = offsetof(A, index), .where = CLI_LOCAL,                         \
     .help =                                                                \
     "  -x, --index PATH      the index file, or a postgresql:// URI\n"    \
     "                        (required; add creates it)\n"}
#define IX_BATCH(W)                                                         \
    {.name = "batch", .key = 'b', .type = CLI_ARG_INT,                      \
     .off = offsetof(A, batch), .where = W, .lo = 1, .hi = 4096,            \
     .bad = "--batch needs an integer from 1 to 4096, not '%s'",            \
     .help =                                                                \
     "  -b, --batch N         images per forward pass and per committed\n"  \
     "                        transaction (default 32)\n"}
#define IX_FORMAT(W)                                                        \
    {.name = "format", .key = 'f', .type = CLI_ARG_CHOICE,                  \
     .off = offsetof(A, jsonl), .where = W, .choices = "text|jsonl",        \
     .bad = "unknown format '%s' (text or jsonl)",                          \
     .help =                                                                \
     "  -f, --format FMT      text (default) or jsonl\n"}
#define IX_TEXT(W)                                                          \
    {.name = "text", .key = 't', .type = CLI_ARG_LIST, .lo = 't',           \
     .off = offsetof(A, queries), .where = W,                               \
     .help =                                                                \
     "  -t, --text STR        a text query (repeatable)\n"}
#define IX_IMAGE(W)                                                         \
    {.name = "image", .key = 'i', .type = CLI_ARG_LIST, .lo = 'i',          \
     .off = offsetof(A, queries), .where = W,                               \
     .help =                                                                \
     "  -i, --image FILE      an image query, a file, URL, data: URL or "   \
     "-\n"                                                                  \
     "                        (repeatable)\n"}
#define IX_TOP_K(W)                                                         \
    {.name = "top-k", .key = 'k', .type = CLI_ARG_INT,                      \
     .off = offsetof(A, k), .where = W, .lo = 1, .hi = 100000,              \
     .hi_remote = 1000,                                                     \
     .bad = "--top-k needs an integer from 1 to 100000, not '%s'",          \
     .bad_remote = "--top-k is at most 1000 over the service, not '%s'",    \
     .help =                                                                \
     "  -k, --top-k K         results per query (default 10)\n"}
#define IX_PREFIX(W)                                                        \
    {.name = "prefix", .type = CLI_ARG_STR, .off = offsetof(A, prefix),     \
     .where = W,                                                            \
     .help =                                                                \
     "      --prefix P        only items whose path starts with P (a\n"     \
     "                        directory that exists is made absolute)\n"}
#define PRECISION_HELP                                                      \
     "      --precision P     add: fp32 (default), int8 or bf16, the\n"     \
     "                        model's precision, as in vit classify; the\n" \
     "                        index records it, refuses adds made\n"        \
     "                        another way, and search embeds its queries\n" \
     "                        the same way\n"                               \
     "                        search: fp32 (default), fp16 or int8, the\n"  \
     "                        matrix scanned in memory; fp16/int8\n"        \
     "                        candidates are re-scored in fp32\n"
/* add embeds: the model's precision; the others scan: the matrix's. */
#define IX_MODEL_PRECISION                                                  \
    {.name = "precision", .type = CLI_ARG_CHOICE,                           \
     .off = offsetof(A, model_precision), .where = CLI_LOCAL,               \
     .choices = "fp32|int8|bf16",  /* a vit_precision */                    \
     .bad = "--precision is fp32, int8 or bf16 (the model's), not '%s'",    \
     .help = PRECISION_HELP}
#define IX_MATRIX_PRECISION                                                 \
    {.name = "precision", .type = CLI_ARG_CHOICE,                           \
     .off = offsetof(A, precision), .where = CLI_LOCAL,                     \
     .choices = "fp32|fp16|int8",  /* an idx_precision */                   \
     .bad = "unknown precision '%s' (fp32, fp16 or int8)",                  \
     .help = PRECISION_HELP}
/* The rest, the local command's alone. */
#define IX_LOCAL                                                            \
    {.name = "html", .type = CLI_ARG_STR, .off = offsetof(A, html),         \
     .where = CLI_LOCAL,                                                    \
     .help =                                                                \
     "      --html FILE       also write the results as a web page with\n"  \
     "                        thumbnails, self-contained\n"},               \
    {.name = "ann", .type = CLI_ARG_STR, .off = offsetof(A, ann),           \
     .where = CLI_LOCAL, .valid = ann_valid,                                \
     .bad = "--ann is hnsw, or none (exact), not '%s'",                     \
     .help =                                                                \
     "      --ann A           PostgreSQL only. add: hnsw builds pgvector's\n"\
     "                        HNSW index after adding (approximate, for\n" \
     "                        large collections; searches then use it),\n" \
     "                        none drops it. search: exact scans every\n"  \
     "                        vector (the default without an HNSW\n"       \
     "                        index), hnsw searches the HNSW index\n"},    \
    {.name = "missing", .type = CLI_ARG_FLAG, .lo = 1,                      \
     .off = offsetof(A, missing), .where = CLI_LOCAL,                       \
     .help =                                                                \
     "      --missing         remove: items whose files are gone\n"},       \
    {.name = "no-exif-rotate", .key = CLI_OPT_NO_EXIF,                      \
     .type = CLI_ARG_DECODE, .off = offsetof(A, dec), .where = CLI_LOCAL,   \
     .help =                                                                \
     "      --no-exif-rotate  keep images as stored\n"},                    \
    {.name = "preprocess", .key = CLI_OPT_PREPROCESS,                       \
     .type = CLI_ARG_DECODE, .off = offsetof(A, dec), .where = CLI_LOCAL,   \
     .help =                                                                \
     "      --preprocess B    pil (default) or torchvision: which of\n"     \
     "                        transformers' two image processors to\n"      \
     "                        reproduce for images (see vit classify\n"     \
     "                        --help); the index records add's, and\n"      \
     "                        search uses it unless told otherwise\n"},     \
    {.name = "threads", .key = CLI_OPT_THREADS, .type = CLI_ARG_DECODE,     \
     .off = offsetof(A, dec), .where = CLI_LOCAL,                           \
     .help =                                                                \
     "      --threads N       threads each forward pass computes with\n"    \
     "                        (default 0: one per CPU)\n"},                 \
    {.name = "max-pixels", .key = CLI_OPT_MAX_PIXELS,                       \
     .type = CLI_ARG_DECODE, .off = offsetof(A, dec), .where = CLI_LOCAL,   \
     .help =                                                                \
     "      --max-pixels N    refuse images of more pixels than N, from\n"  \
     "                        their header (default 178956970, where\n"     \
     "                        Pillow refuses; 0: no limit)\n"},             \
    {.name = "help", .key = 'h', .type = CLI_ARG_HELP, .where = CLI_LOCAL,  \
     .help =                                                                \
     "  -h, --help            show this help and exit\n"},                  \
    {0}

static const char usage_text[] =
    "usage: vit index add    --model DIR --index PATH [--batch N]\n"
    "                        [--format text|jsonl] [--no-exif-rotate]\n"
    "                        [--preprocess pil|torchvision] [--threads "
    "N]\n"
    "                        [--precision fp32|int8|bf16] [--max-pixels "
    "N]\n"
    "                        [--ann hnsw|none] PATH...\n"
    "       vit index remove --index PATH [--missing] [PATH...]\n"
    "       vit index stats  --index PATH [--format text|jsonl]\n"
    "       vit index search --index PATH (--text STR | --image "
    "FILE)...\n"
    "                        [-k K] [--format text|jsonl] [--prefix P]\n"
    "                        [--precision fp32|fp16|int8] [--html FILE]\n"
    "                        [--model DIR] [--preprocess "
    "pil|torchvision]\n"
    "                        [--threads N] [--max-pixels N]\n"
    "                        [--ann hnsw|exact]\n"
    "--index PATH is a file (SQLite) or a postgresql:// URI (PostgreSQL\n"
    "with pgvector).\n";
static const char about_text[] =
    "\n"
    "An index is one SQLite file of images and their embeddings, made "
    "by\n"
    "one model (CLIP, or any model 'vit embed' takes images with); it "
    "is\n"
    "then searched by text or by example image. --index postgresql://...\n"
    "(a libpq URI; the password from PGPASSWORD or ~/.pgpass) keeps it\n"
    "in a PostgreSQL database with pgvector instead, which several\n"
    "workers add to and search at once; its searches run on the server\n"
    "and give the same results as the file's.\n"
    "\n"
    "add      embeds JPEG/PNG/WebP/GIF/BMP/TIFF/HEIC/AVIF files and\n"
    "         directories (recursively) in batches, each batch "
    "committed\n"
    "         at once: an\n"
    "         add that is interrupted keeps what it committed, and "
    "running\n"
    "         it again does the rest. Ctrl-C or SIGTERM stops it after "
    "the\n"
    "         current batch (exit 130 or 143; a second Ctrl-C exits at\n"
    "         once). In a directory, images it cannot read (PSD, JPEG "
    "XL,\n"
    "         ...) are reported and counted as failed; files that are "
    "not\n"
    "         images are skipped. Files indexed before and unchanged "
    "(same\n"
    "         path, size and mtime) are skipped; a file whose content "
    "is\n"
    "         already indexed under another path is recorded as moved\n"
    "         (the old path is gone) or copied, without embedding.\n"
    "remove   removes the items of each PATH (a file, or every file\n"
    "         below a directory); --missing also removes every item\n"
    "         whose file no longer exists.\n"
    "stats    the model, the number of items, sizes and dates; with an\n"
    "         HNSW index, its recall@10 against exact search, measured\n"
    "         on 20 queries made from the index's vectors.\n"
    "search   the K items most similar to each query, best first (the\n"
    "         score is the cosine similarity). The model recorded in "
    "the\n"
    "         index embeds the queries; --model DIR names another copy\n"
    "         of it. A different model is refused.\n";
static const char after_text[] =
    "\n"
    "Exit status: 0 if everything was done, 1 if an input failed (each\n"
    "reported on stderr as 'vit: PATH: reason') or the index or model\n"
    "could not be used, 2 for a usage error, 130 or 143 when add was\n"
    "stopped by SIGINT or SIGTERM.\n";

/* add, remove and stats take the same options locally; over the service
 * add takes --batch and --format, remove and stats --format. */
static const cli_opt add_opts[] = {
    IX_MODEL, IX_INDEX, IX_BATCH(CLI_BOTH), IX_FORMAT(CLI_BOTH),
    IX_TEXT(CLI_LOCAL), IX_IMAGE(CLI_LOCAL), IX_TOP_K(CLI_LOCAL),
    IX_PREFIX(CLI_LOCAL), IX_MODEL_PRECISION, IX_LOCAL,
};
static const cli_opt remove_stats_opts[] = {
    IX_MODEL, IX_INDEX, IX_BATCH(CLI_LOCAL), IX_FORMAT(CLI_BOTH),
    IX_TEXT(CLI_LOCAL), IX_IMAGE(CLI_LOCAL), IX_TOP_K(CLI_LOCAL),
    IX_PREFIX(CLI_LOCAL), IX_MATRIX_PRECISION, IX_LOCAL,
};
static const cli_opt search_opts[] = {
    IX_MODEL, IX_INDEX, IX_BATCH(CLI_LOCAL), IX_FORMAT(CLI_BOTH),
    IX_TEXT(CLI_BOTH), IX_IMAGE(CLI_BOTH), IX_TOP_K(CLI_BOTH),
    IX_PREFIX(CLI_BOTH), IX_MATRIX_PRECISION, IX_LOCAL,
};

static void add_init(void *p) { ((A *)p)->sub = 'a'; }
static void remove_init(void *p) { ((A *)p)->sub = 'r'; }
static void stats_init(void *p) { ((A *)p)->sub = 's'; }
static void search_init(void *p) { ((A *)p)->sub = 'q'; }

/* What each operation needs of the rest. */
static const char *index_check(void *p, unsigned backend, char *buf,
                               size_t n)
{
    const A *a = p;
    int local = backend == CLI_LOCAL;
    if (local && !a->index)
        return "--index PATH is required";
    if (local && a->ann && !idx_store_is_pg(a->index))
        return "--ann is for an index in PostgreSQL (an SQLite index is "
               "searched exactly, in memory)";
    switch (a->sub) {
    case 'a':
        if (local && !a->model_dir)
            return "--model DIR is required";
        if (a->paths.n == 0)
            return "nothing to add: give image files or directories";
        if (a->queries.n || a->html || a->prefix || a->missing)
            return "add takes --model, --index, --batch, --format and paths";
        return NULL;
    case 'r':
        if (!local && a->paths.n == 0)
            return "nothing to remove: give paths or ids";
        if (a->paths.n == 0 && !a->missing)
            return "nothing to remove: give paths or --missing";
        return NULL;
    case 's':
        if (!local && a->paths.n)
            return "takes no arguments";
        if (a->paths.n || a->queries.n || a->model_dir || a->ann)
            return "stats takes --index and --format only";
        return NULL;
    default:
        if (a->queries.n == 0)
            return "give a query: --text STR or --image FILE";
        if (a->paths.n) {
            snprintf(buf, n, "unexpected argument '%s' (queries are --text "
                             "and --image)", a->paths.v[0]);
            return buf;
        }
        return NULL;
    }
}

#define INDEX_OP(NAME, OPTS, INIT)                                          \
    {.name = NAME, .usage = usage_text,                                     \
     .about = about_text, .after = after_text, .opts = OPTS,                \
     .size = sizeof(A), .positional = offsetof(A, paths), .init = INIT,     \
     .check = index_check}

const cli_op cli_index_add_op = INDEX_OP("index add", add_opts, add_init);
const cli_op cli_index_remove_op =
    INDEX_OP("index remove", remove_stats_opts, remove_init);
const cli_op cli_index_stats_op =
    INDEX_OP("index stats", remove_stats_opts, stats_init);
const cli_op cli_index_search_op =
    INDEX_OP("index search", search_opts, search_init);
