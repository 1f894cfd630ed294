/*
 * Private declarations shared by the files of cli/, the `vit` command: the
 * subcommand entry points, the list of inputs gathered from the command line
 * (files sniffed by content, directories walked in name order), the output
 * formats and the progress line. Nothing here is part of libvit; cli/ uses
 * only the public vit/vit.h, jansson and libc, and holds no model logic.
 */
#ifndef CLI_H
#define CLI_H

#include "vit/vit.h"

#include <stddef.h>
#include <stdio.h>

#define CLI_VERSION VIT_VERSION_STRING

/* Exit statuses, as DESIGN.md fixes them for every subcommand. */
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAILED = 1, CLI_EXIT_USAGE = 2 };

/* `vit classify ...`; argv[0] is "classify". Returns the exit status. */
int cli_classify_main(int argc, char **argv);

/* `vit embed` (cli/embed.c) and `vit match` (cli/match.c), for CLIP. */
int cli_embed_main(int argc, char **argv);
int cli_match_main(int argc, char **argv);

/* `vit bench` (cli/bench.c). */
int cli_bench_main(int argc, char **argv);

/* `vit serve`, `vit broker` (cli/serve.c) and `vit client` (cli/client.c),
 * the ZeroMQ service's commands. */
int cli_serve_main(int argc, char **argv);
int cli_broker_main(int argc, char **argv);
int cli_client_main(int argc, char **argv);

/* `vit http` (cli/http.c), the HTTP gateway, and what `vit serve --http`
 * shares with it: the API key from `arg`, the first line of `file`, or
 * else $VIT_API_KEY (*key malloc'd, NULL for none; -1 after reporting);
 * the gateway's fetch callback (ud: an int, nonzero to fetch http(s)
 * URLs); the start, with its log line (-1 after reporting). */
int cli_http_main(int argc, char **argv);
int cli_http_key(const char *arg, const char *file, char **key);
int cli_http_fetch(void *ud, const char *ref, size_t max_bytes,
                   unsigned char **data, size_t *n, char *why,
                   size_t why_size);
struct vit_http_options;
struct vit_http;
int cli_http_begin(const char *cmd, const struct vit_http_options *o,
                   struct vit_http **out);
/* The signal handling of the long-running commands (cli/serve.c): SIGTERM
 * or a first SIGINT sets the flag returned, a second SIGINT exits 130;
 * SIGPIPE is ignored. */
#include <signal.h>
volatile sig_atomic_t *cli_server_signals(void);

/* `vit index add|remove|stats|search` (cli/index.c), the image–text
 * search index. */
int cli_index_main(int argc, char **argv);

/* Reads a CURVE key file, CZMQ's zcert text (`public-key = "..."`,
 * `secret-key = "..."`; `which` is "public" or "secret") or the bare 40 Z85
 * characters. Returns 0, or -1 after reporting on stderr. */
int cli_read_key(const char *path, const char *which, char key[41]);

/* A client's CURVE keys (vit client, vit http): the server's public key
 * from server_file, and with key_file this side's pair, read into *k and
 * pointed to by *server, *pub and *sec; nothing without server_file.
 * Returns 0, or -1 after reporting. */
typedef struct {
    char server[41], pub[41], sec[41];
} cli_curve_keys;
int cli_client_keys(const char *server_file, const char *key_file,
                    cli_curve_keys *k, const char **server, const char **pub,
                    const char **sec);

/* The start of a small text file (at most size - 1 bytes), terminated.
 * Returns 0, or -1 after reporting `path` on stderr. */
int cli_read_text(const char *path, char *text, size_t size);

/* A usage error of `vit CMD`: prints `vit CMD: message`, the command's
 * usage lines and a pointer to its --help (a subcommand's, "index add",
 * its command's) on stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A whole decimal integer in [lo, hi], or -1. */
long cli_parse_long(const char *s, long lo, long hi);

/* Writes a path for text output (and stderr), on one line whatever its
 * bytes, C-style: newline, tab and carriage return as \n \t \r, a
 * backslash as \\, other control bytes (0x00-0x1f, 0x7f) and bytes that
 * are not part of valid UTF-8 as \xNN. Other paths come out as they are. */
void cli_text_path(FILE *f, const char *path);

/* Reports a failed input on stderr as `vit: PATH: reason`, PATH written as
 * cli_text_path writes it. A reason that already starts with "PATH: " (the
 * .npy reader names its file) is not prefixed twice, and one that names a
 * file inside PATH ("PATH/config.json: ...") names it from PATH on ("vit:
 * PATH: config.json: ..."). */
void cli_report(const char *path, const char *reason);

/* The image decoding and compute options every image command takes. */
typedef struct {
    int no_exif;      /* --no-exif-rotate */
    int fast_decode;  /* --fast-decode */
    int precision;    /* --precision: a vit_precision */
    int torchvision;  /* --preprocess torchvision */
    int preprocess_set;  /* --preprocess was given */
    int threads;      /* --threads N (0: one per CPU) */
    int max_pixels_set;
    uint64_t max_pixels;  /* --max-pixels N (0: no limit) */
} cli_decode_flags;

enum {
    CLI_OPT_NO_EXIF = 0x1000,
    CLI_OPT_FAST_DECODE,
    CLI_OPT_PRECISION,
    CLI_OPT_PREPROCESS,
    CLI_OPT_THREADS,
    CLI_OPT_MAX_PIXELS
};

/* A spec takes them as CLI_ARG_DECODE options (args.h's CLI_OPTS_DECODE,
 * and --threads); their lines for a command's --help, and --threads's. */
extern const char cli_decode_help[];
extern const char cli_threads_help[];

/* A --precision value: "fp32", "int8" or "bf16" as a vit_precision,
 * anything else -1. */
int cli_precision(const char *s);
/* A vit_precision's name ("fp32", "int8", "bf16"). */
const char *cli_precision_name(int precision);

/* A --preprocess value: "pil" 0, "torchvision" 1, anything else -1. */
int cli_preprocess_torchvision(const char *s);

/* Records getopt's `c` (with optarg) when it is one of them: 1 if it was,
 * 0 if not, -1 for a bad value, with cli_decode_error saying why. */
int cli_decode_flag(int c, cli_decode_flags *f);
extern char cli_decode_error[128];
/* Sets them in the options a model is loaded with. */
void cli_decode_apply(const cli_decode_flags *f, vit_options *opt);

/* Reads one item per line (blank lines skipped, line ends dropped) into
 * *out, freed with cli_free_lines. Returns the count, or -1 after
 * reporting `path` on stderr. */
int cli_read_lines(const char *path, char ***out);
void cli_free_lines(char **v, int n);

/* ---- inputs (cli/inputs.c) ---- */

typedef enum {
    CLI_IN_IMAGE,  /* decode with vit_image_read */
    CLI_IN_NPY,    /* preprocessed pixels, vit_npy_read */
    CLI_IN_ERROR,  /* could not be gathered; `error` says why */
} cli_input_kind;

typedef struct {
    char *path;   /* as named on the command line, or joined below a dir */
    cli_input_kind kind;
    char *error;  /* CLI_IN_ERROR only */
} cli_input;

typedef struct {
    cli_input *v;
    size_t n, cap;
    size_t skipped;  /* files met in directories that are not images */
} cli_input_list;

/* Turns the PATH arguments into inputs, in order. A file named explicitly
 * is a .npy (by its magic or, failing that, its name) or else an image, so
 * the decoder says what is wrong with a file that is neither. Directories
 * are walked recursively, entries sorted by byte order of their names;
 * there every file whose content starts like an image of any known format
 * (JPEG, PNG, GIF, WebP, HEIC, ...: the decoder then reports those it
 * cannot read) and .npy files are taken, the other files are counted in
 * `skipped`, and entries whose names start with '.' are passed over. A
 * path that cannot be read becomes a CLI_IN_ERROR entry so it is reported
 * in its place. Returns 0, or -1 when out of memory. */
int cli_inputs_collect(char *const *paths, int n, cli_input_list *out);
void cli_inputs_free(cli_input_list *l);
/* `vit: skipped N files that are not images` on stderr, when N > 0. */
void cli_inputs_say_skipped(const cli_input_list *l);

/* ---- inputs that are not files (cli/fetch.c) ---- */

/* Nonzero for "-" (standard input), an http:// or https:// URL, or a
 * data: URL. */
int cli_is_remote(const char *name);
/* libcurl's global set-up, once (done by the first fetch too; call it
 * before starting threads when URLs are coming). */
void cli_fetch_init(void);
/* The bytes such an input names, at most max_bytes (0: no limit), in a
 * malloc'd *data; -1 with a sentence in `why` (an HTTP error status, a
 * timeout after 120 s, a refused connection, the limit, a malformed data:
 * URL, standard input read twice). */
int cli_fetch(const char *name, size_t max_bytes, unsigned char **data,
              size_t *n, char *why, size_t whylen);
/* vit_image_read for a file, or the fetched bytes decoded for the rest
 * (within opt's file-size limit). `err` must not be NULL. */
vit_status cli_image_load(const char *name, const vit_options *opt,
                          vit_image *img, vit_error *err);

/* ---- output (cli/output.c) ---- */

typedef enum { CLI_FMT_TEXT, CLI_FMT_JSONL, CLI_FMT_CSV } cli_format;

/* One classified image. */
typedef struct {
    const char *path;
    const vit_prediction *top;  /* k predictions, best first; id -1 ends */
    int k;
    const float *logits;        /* num_labels values, or NULL */
    int num_labels;
} cli_result;

/* Parses "text", "jsonl" or "csv"; returns 0, or -1 for anything else. */
int cli_format_parse(const char *s, cli_format *out);

/* Writes what precedes the first result (the csv header). */
void cli_output_begin(FILE *f, cli_format fmt);

/* Writes one result. Returns 0, or -1 when out of memory. */
int cli_output_write(FILE *f, cli_format fmt, const cli_result *r);

/* The shortest decimal text that reads back as exactly `x` (at most 9
 * significant digits); "nan", "inf" and "-inf" for non-finite values. */
void cli_float_str(char buf[32], float x);

/* JSON pieces for the JSONL outputs (jansson): a string with invalid
 * UTF-8 replaced by U+FFFD, a float printed as cli_float_str does (null if
 * not finite), an array of floats; cli_json_line writes one object as a
 * line. Each returns NULL / -1 when out of memory. */
typedef struct json_t json_t;
json_t *cli_json_text(const char *s);
json_t *cli_json_float(float x);
json_t *cli_json_floats(const float *v, int n);
int cli_json_line(FILE *f, json_t *obj);

/* `{"<key>": name, "embedding": [...]}` as a line. */
int cli_embedding_write(FILE *f, const char *key, const char *name,
                        const float *v, int dim);

/* One image's match against n texts: text (a block: the path, then each
 * text's probability) or jsonl (`{"path", "scores": [{"text", "score",
 * "logit"}, ...]}`), in the texts' order. */
int cli_match_write(FILE *f, cli_format fmt, const char *path,
                    char *const *texts, int n, const float *probs,
                    const float *logits);

/* A (rows, cols) float32 .npy file. Returns 0, or -1 on a write error. */
int cli_npy_write(FILE *f, const float *v, size_t rows, size_t cols);

/* ---- the index's output (cli/index_out.c), shared by `vit index` and
 * `vit client`, so that both print the same thing ---- */

/* One search result. */
typedef struct {
    const char *key;  /* the item's key: a file's real path, or an id */
    float score;      /* cosine similarity */
    long long id;     /* the item's row id in the index; -1 when unknown
                         (then not printed) */
} cli_hit;

/* One query's n results, best first: text is the query on a line, then
 * `  SCORE  KEY` for each; jsonl is one line `{"text"|"image": query,
 * "results": [{"rank", "score", "path", "id"}]}`. Returns 0, or -1 when
 * out of memory. */
int cli_search_write(FILE *f, int jsonl, int is_image, const char *query,
                     const cli_hit *h, int n);

/* What `stats` shows of an index. */
typedef struct {
    const char *index;  /* the file, as named */
    long long items, files, vector_bytes, file_bytes;
    int dim;
    const char *model, *model_dir, *fingerprint;  /* NULL: no model yet */
    /* How the vectors were made: the model's precision and the image
     * processor; NULL or "": not recorded (an older index). */
    const char *model_precision, *preprocess;
    double first_added, last_added;  /* s since the epoch; 0: none */
    /* An approximate index (PostgreSQL's "hnsw"; NULL or "": none) and its
     * recall@10 against exact search on recall_queries queries (0: not
     * measured). */
    const char *ann;
    double recall;
    int recall_queries;
} cli_index_stats;

/* text (a few aligned lines) or jsonl (one object). 0, or -1 when out of
 * memory. */
int cli_index_stats_write(FILE *f, int jsonl, const cli_index_stats *s);

/* The key a file is indexed under: its real path, or when it does not
 * exist its absolute path, resolved as text. malloc'd; NULL if out of
 * memory. */
char *cli_index_key(const char *path);

/* A --prefix filter: an existing directory becomes its real path with a
 * trailing '/', an existing file its real path, anything else stays as it
 * is (a prefix of ids). malloc'd; NULL if out of memory. */
char *cli_index_prefix(const char *p);

/* ---- interrupts (cli/interrupt.c) ---- */

/* SIGINT and SIGTERM set a flag that the image commands check between
 * batches, so that they stop after the current one with every finished
 * record written whole; a second one exits at once (128 + signal). The
 * handler only sets the flag or calls _exit. */
void cli_interrupt_install(void);
/* The signal that asked to stop (SIGINT, SIGTERM), or 0. */
int cli_interrupted(void);
/* The exit status for it: 130 for SIGINT, 143 for SIGTERM. */
int cli_interrupt_status(void);
/* `vit: interrupted after DONE of TOTAL images; ...` on stderr: `failed`
 * of the done ones failed, the rest were written (`what`: "written" or,
 * say, "committed to INDEX"). */
void cli_interrupt_say(size_t done, size_t total, size_t failed,
                       const char *what);
/* The same for `noun`s (e.g. "text") rather than images. */
void cli_interrupt_say_items(size_t done, size_t total, size_t failed,
                             const char *noun, const char *what);

/* ---- progress (cli/progress.c) ---- */

/* A single updating line on stderr, `[done/total] rate img/s, ETA m:ss`,
 * shown only when stderr is a terminal and there is more than one batch of
 * work. */
typedef struct {
    int tty;          /* stderr is a terminal */
    int shown;        /* the line is on screen now */
    size_t done, total, min_total;
    double t0;        /* seconds, monotonic */
} cli_progress;

void cli_progress_init(cli_progress *p, size_t total, size_t batch);
/* Redraws the line (when it should be shown) after `done`/`total` changed. */
void cli_progress_draw(cli_progress *p);
/* Erases the line, so other output can be written; draw brings it back. */
void cli_progress_clear(cli_progress *p);

/* ---- the image batch driver (cli/batch.c) ---- */

/* Runs n preprocessed images (n x C x H x W at pixels), named paths[i], and
 * writes their results. Returns VIT_OK, or a failure with `err` set, which
 * is then reported for every image of the batch. */
typedef vit_status (*cli_batch_fn)(void *ctx, const float *pixels, int n,
                                   char *const *paths, vit_error *err);

/* Feeds a list of inputs to the library in batches: images are decoded and
 * preprocessed into a batch buffer, .npy arrays of preprocessed pixels are
 * copied in as they are, and each full batch (and the last, partial one)
 * is handed to `run`, on the calling thread. Decode threads fill the next
 * batch while `run` works on one (cli/batch.c); the batches are the same
 * whatever their number: consecutive inputs that did not fail, all full
 * but the last. A failed input is reported on stderr as `vit: PATH:
 * reason` and counted; the rest go on. Results come out in input order
 * because batches run in order. */
typedef struct {
    /* Set by the caller. */
    vit_model *model;        /* images are read with its options */
    int cap;                 /* images per batch */
    cli_batch_fn run;
    void *ctx;
    int decode_threads;      /* the most threads decoding ahead of `run`
                                (one, then more while `run` waits for
                                batches); 0: $VIT_DECODE_THREADS if set (0
                                there means none), else one per CPU; -1:
                                none, decode in turn with `run` on the
                                calling thread */
    /* The driver's own. */
    vit_model_info info;
    size_t chw;  /* floats per image */
    cli_progress prog;
    int failed;
    int oom;     /* set by the driver, or by `run` when output failed */
    int interrupted;  /* the signal it stopped for after a batch, or 0 */
} cli_batch;

/* The most decode threads cli_batch_inputs uses for a decode_threads
 * setting (0 for none). */
int cli_batch_decode_threads(int requested);

/* Processes the inputs; returns the exit status: 0 when every input was
 * done, 1 when one failed or memory ran out (said on stderr). When SIGINT
 * or SIGTERM came (cli_interrupt_install), it stops after the batch being
 * run, with its output flushed, sets `interrupted`, leaves b->prog.done
 * (inputs done, failures included) and b->prog.total (all of them) for
 * the caller to report, and returns cli_interrupt_status(). */
int cli_batch_inputs(cli_batch *b, const cli_input_list *in);

#endif
