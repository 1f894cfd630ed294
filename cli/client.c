/*
 * `vit client`: the command-line client of a vit worker or broker. It
 * parses options, reads image files, sends them with service/client.h in
 * requests of up to --batch images, and prints the answers with the same
 * output code as the local commands (cli/output.c), so `vit client ...
 * classify` prints exactly what `vit classify` prints for the same inputs.
 * When the server refuses one image of a request (bad_image), that image is
 * reported and the rest are sent again without it.
 */
#include "cli/cli.h"
#include "service/client.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE_BYTES ((size_t)256 << 20)
#define DEFAULT_BATCH 8

static const char usage_line[] =
    "usage: vit client --connect EP [--timeout MS] [--retries N] "
    "[--service NAME]\n"
    "                  [--curve-server-key FILE --curve-key FILE] COMMAND "
    "...\n"
    "  COMMAND: classify [--top-k K] [--format text|jsonl|csv] [--logits]\n"
    "                    [--batch N] PATH...\n"
    "           embed [--normalize] (--image PATH... | --text STR...)\n"
    "           match --text STR [--text STR]... [--top-k K] [--format FMT] "
    "PATH...\n"
    "           info | health | metrics\n";

static void help(void)
{
    fputs(usage_line, stdout);
    fputs("\nSend work to a vit worker (vit serve --bind) or broker (vit "
          "broker) over\nZeroMQ; the protocol is service/PROTOCOL.md.\n"
          "\noptions:\n"
          "  -c, --connect EP        the worker or broker, e.g. "
          "tcp://127.0.0.1:5555\n"
          "  -t, --timeout MS        wait this long for each reply (5000)\n"
          "  -r, --retries N         send again on a fresh socket this many "
          "times (2)\n"
          "  -s, --service NAME      the model to use behind a broker "
          "(default: any)\n"
          "      --curve-server-key FILE  the server's public key: use "
          "CURVE\n"
          "      --curve-key FILE    this client's key pair (zcert text)\n"
          "\nclassify prints what 'vit classify' prints; embed prints one "
          "JSON object\nper line with the embedding; match prints the texts "
          "ranked by probability\nin the formats of classify; info, health "
          "and metrics print the server's\nJSON.\n"
          "\nExit status: 0 all done, 1 some input failed or no reply, 2 "
          "usage error.\n",
          stdout);
}

static int usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vit client: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fputs(usage_line, stderr);
    fputs("Run 'vit client --help' for more.\n", stderr);
    return CLI_EXIT_USAGE;
}

static long parse_int(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    return v;
}

/* Reads a whole file; NULL with *why set on failure. */
static unsigned char *read_file(const char *path, size_t *n, const char **why)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *why = strerror(errno);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    unsigned char *b = malloc(cap);
    for (;;) {
        if (!b) {
            *why = "out of memory";
            break;
        }
        len += fread(b + len, 1, cap - len, f);
        if (ferror(f)) {
            *why = strerror(errno);
            break;
        }
        if (len < cap) {
            fclose(f);
            *n = len;
            return b;
        }
        if (cap >= MAX_FILE_BYTES) {
            *why = "the file is larger than 256 MiB";
            break;
        }
        unsigned char *nb = realloc(b, cap * 2);
        if (!nb)
            free(b);
        b = nb;
        cap *= 2;
    }
    free(b);
    fclose(f);
    return NULL;
}

/* One image queued for a request. */
typedef struct {
    char *path;
    unsigned char *bytes;
    size_t size;
} pending;

typedef struct {
    vit_client *c;
    const char *endpoint;
    cli_format fmt;
    int top_k, logits, batch, normalize;
    const char *op;           /* classify, match, embed_image */
    const char **texts;       /* match */
    int n_texts;
    pending *q;
    int nq;
    int failed, dead, oom;
} run;

static void fail_input(run *r, const char *path, const char *why)
{
    cli_report(path, why);
    r->failed++;
}

/* "image 3: not a PNG" -> "not a PNG", so the message reads as the local
 * command's. */
static const char *strip_index(const char *msg)
{
    if (strncmp(msg, "image ", 6) == 0) {
        const char *p = msg + 6;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p[0] == ':' && p[1] == ' ')
            return p + 2;
    }
    return msg;
}

static float jf(json_t *x)
{
    return json_is_number(x) ? (float)json_number_value(x) : NAN;
}

static int cmp_pred(const void *a, const void *b)
{
    const vit_prediction *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return x->id - y->id;
}

/* Prints the result of image i of a successful reply. */
static void print_one(run *r, json_t *res, const char *path)
{
    vit_prediction top[1000];
    float logits_buf[1];
    float *logits = NULL;
    int k = 0, L = 0;
    if (strcmp(r->op, "classify") == 0) {
        json_t *labels = json_object_get(res, "labels");
        for (size_t j = 0; j < json_array_size(labels) && k < 1000; j++) {
            json_t *e = json_array_get(labels, j);
            top[k].id = (int)json_integer_value(json_object_get(e, "id"));
            top[k].label = json_string_value(json_object_get(e, "label"));
            top[k].score = jf(json_object_get(e, "score"));
            k++;
        }
        json_t *lg = json_object_get(res, "logits");
        if (r->logits && json_is_array(lg)) {
            L = (int)json_array_size(lg);
            logits = malloc((size_t)(L ? L : 1) * sizeof(float));
            if (!logits) {
                r->oom = 1;
                return;
            }
            for (int j = 0; j < L; j++)
                logits[j] = jf(json_array_get(lg, (size_t)j));
        }
    } else {  /* match: the texts as labels, ranked by probability */
        json_t *pr = json_object_get(res, "probs");
        int n = (int)json_array_size(pr);
        for (int j = 0; j < n && j < 1000; j++) {
            top[j].id = j;
            top[j].label = j < r->n_texts ? r->texts[j] : "";
            top[j].score = jf(json_array_get(pr, (size_t)j));
        }
        n = n < 1000 ? n : 1000;
        qsort(top, (size_t)n, sizeof *top, cmp_pred);
        k = r->top_k < n ? r->top_k : n;
    }
    (void)logits_buf;
    cli_result cr = {.path = path, .top = top, .k = k, .logits = logits,
                     .num_labels = L};
    if (cli_output_write(stdout, r->fmt, &cr) != 0)
        r->oom = 1;
    free(logits);
}

/* Sends the queued images in one request; on bad_image drops that image
 * and sends the rest again. Empties the queue. */
static void flush(run *r)
{
    int lo = 0;
    while (lo < r->nq && !r->oom) {
        int n = r->nq - lo;
        if (r->dead) {
            for (int i = lo; i < r->nq; i++)
                fail_input(r, r->q[i].path, "no reply from the server");
            break;
        }
        vit_blob *b = malloc((size_t)n * sizeof *b);
        json_t *h = json_pack("{s:s}", "op", r->op);
        char *hs = NULL;
        if (h && strcmp(r->op, "classify") == 0) {
            json_object_set_new(h, "top_k", json_integer(r->top_k));
            if (r->logits)
                json_object_set_new(h, "logits", json_true());
        }
        if (h && r->texts) {
            json_t *t = json_array();
            for (int i = 0; i < r->n_texts; i++)
                json_array_append_new(t, json_string(r->texts[i]));
            json_object_set_new(h, "texts", t);
        }
        if (h)
            hs = json_dumps(h, JSON_COMPACT);
        json_decref(h);
        if (!b || !hs) {
            free(b);
            free(hs);
            r->oom = 1;
            break;
        }
        for (int i = 0; i < n; i++)
            b[i] = (vit_blob){r->q[lo + i].bytes, r->q[lo + i].size};
        vit_reply rep;
        vit_error err = {{0}};
        vit_status st = vit_client_call(r->c, hs, b, n, &rep, &err);
        free(b);
        free(hs);
        if (st != VIT_OK) {
            fprintf(stderr, "vit client: %s\n", err.msg);
            r->dead = 1;
            continue;
        }
        char code[32], msg[512];
        int idx;
        if (vit_reply_error(&rep, code, msg, sizeof msg, &idx)) {
            if ((strcmp(code, "bad_image") == 0 ||
                 strcmp(code, "too_large") == 0) &&
                idx >= 0 && idx < n) {
                /* Report the images before it as not yet done: they are
                 * sent again with the rest. */
                pending bad = r->q[lo + idx];
                memmove(&r->q[lo + 1], &r->q[lo], (size_t)idx * sizeof *r->q);
                r->q[lo] = bad;
                fail_input(r, bad.path, strip_index(msg));
                lo++;
            } else {
                char why[600];
                snprintf(why, sizeof why, "%s (%s)", msg, code);
                for (int i = lo; i < r->nq; i++)
                    fail_input(r, r->q[i].path, why);
                lo = r->nq;
            }
            vit_reply_free(&rep);
            continue;
        }
        json_t *o = json_loads(rep.body, 0, NULL);
        json_t *res = json_object_get(o, "results");
        for (int i = 0; i < n; i++) {
            json_t *x = json_array_get(res, (size_t)i);
            if (!x)
                fail_input(r, r->q[lo + i].path, "the reply has no result");
            else
                print_one(r, x, r->q[lo + i].path);
        }
        json_decref(o);
        vit_reply_free(&rep);
        lo = r->nq;
    }
    for (int i = 0; i < r->nq; i++) {
        free(r->q[i].path);
        free(r->q[i].bytes);
    }
    r->nq = 0;
}

static void add_image(run *r, const char *path)
{
    const char *why = NULL;
    size_t n = 0;
    unsigned char *bytes = read_file(path, &n, &why);
    if (!bytes) {
        fail_input(r, path, why);
        return;
    }
    char *p = strdup(path);
    if (!p) {
        free(bytes);
        r->oom = 1;
        return;
    }
    r->q[r->nq++] = (pending){p, bytes, n};
    if (r->nq == r->batch)
        flush(r);
}

/* classify and match: PATH... through the inputs walker. */
static int images_main(run *r, char **paths, int n_paths)
{
    cli_input_list in = {0};
    r->q = calloc((size_t)r->batch, sizeof *r->q);
    if (!r->q || cli_inputs_collect(paths, n_paths, &in) != 0) {
        free(r->q);
        cli_inputs_free(&in);
        fprintf(stderr, "vit: out of memory\n");
        return CLI_EXIT_FAILED;
    }
    cli_output_begin(stdout, r->fmt);
    for (size_t i = 0; i < in.n && !r->oom; i++) {
        const cli_input *x = &in.v[i];
        if (x->kind == CLI_IN_ERROR) {
            flush(r);  /* keep the reports in input order */
            fail_input(r, x->path, x->error);
        } else if (x->kind == CLI_IN_NPY) {
            flush(r);
            fail_input(r, x->path,
                       "a .npy array cannot be sent to a server; it takes "
                       "JPEG and PNG files");
        } else {
            add_image(r, x->path);
        }
    }
    if (!r->oom)
        flush(r);
    free(r->q);
    cli_inputs_free(&in);
    if (r->oom) {
        fprintf(stderr, "vit: out of memory\n");
        return CLI_EXIT_FAILED;
    }
    fflush(stdout);
    return r->failed || r->dead ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

static int simple_op(run *r, const char *op)
{
    char header[64];
    snprintf(header, sizeof header, "{\"op\":\"%s\"}", op);
    vit_reply rep;
    vit_error err = {{0}};
    if (vit_client_call(r->c, header, NULL, 0, &rep, &err) != VIT_OK) {
        fprintf(stderr, "vit client: %s\n", err.msg);
        return CLI_EXIT_FAILED;
    }
    char code[32], msg[512];
    int rc = CLI_EXIT_OK;
    if (vit_reply_error(&rep, code, msg, sizeof msg, NULL)) {
        fprintf(stderr, "vit client: %s: %s (%s)\n", op, msg, code);
        rc = CLI_EXIT_FAILED;
    } else {
        json_t *o = json_loads(rep.body, 0, NULL);
        if (o)
            json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
                                      JSON_REAL_PRECISION(9));
        else
            fputs(rep.body, stdout);
        fputc('\n', stdout);
        json_decref(o);
    }
    vit_reply_free(&rep);
    return rc;
}

/* Prints one embedding as {"path"|"text": ..., "embedding": [...]}. */
static int print_embedding(const char *key, const char *what, const float *v,
                           int dim)
{
    json_t *o = json_object(), *a = json_array();
    json_t *name = json_string(what);
    json_object_set_new(o, key, name ? name : json_string("?"));
    for (int i = 0; i < dim; i++) {
        char buf[32];
        cli_float_str(buf, v[i]);
        json_array_append_new(a, isfinite(v[i]) ? json_real(strtod(buf, NULL))
                                                : json_null());
    }
    json_object_set_new(o, "embedding", a);
    int rc = json_dumpf(o, stdout, JSON_PRESERVE_ORDER |
                                       JSON_REAL_PRECISION(9));
    fputc('\n', stdout);
    json_decref(o);
    return rc;
}

/* Sends one embed request; prints count rows named by names[]. */
static int embed_call(run *r, const char *header, const vit_blob *b, int n,
                      const char *key, char *const *names)
{
    vit_reply rep;
    vit_error err = {{0}};
    if (vit_client_call(r->c, header, b, n, &rep, &err) != VIT_OK) {
        fprintf(stderr, "vit client: %s\n", err.msg);
        r->dead = 1;
        return -1;
    }
    char code[32], msg[512];
    int idx;
    if (vit_reply_error(&rep, code, msg, sizeof msg, &idx)) {
        if (idx >= 0 && idx < n)
            fail_input(r, names[idx], strip_index(msg));
        else
            fprintf(stderr, "vit client: embed: %s (%s)\n", msg, code);
        r->failed++;
        vit_reply_free(&rep);
        return -1;
    }
    json_t *o = json_loads(rep.body, 0, NULL);
    int count = (int)json_integer_value(json_object_get(o, "count"));
    int dim = (int)json_integer_value(json_object_get(o, "dim"));
    json_decref(o);
    if (rep.n_data != 1 || count != n || dim <= 0 ||
        rep.data[0].size != (size_t)count * dim * sizeof(float)) {
        fprintf(stderr, "vit client: embed: a malformed reply\n");
        r->failed++;
        vit_reply_free(&rep);
        return -1;
    }
    float *v = malloc(rep.data[0].size);
    if (v) {
        memcpy(v, rep.data[0].data, rep.data[0].size);
        for (int i = 0; i < count; i++)
            print_embedding(key, names[i], v + (size_t)i * dim, dim);
    }
    free(v);
    vit_reply_free(&rep);
    return 0;
}

static int embed_main(run *r, int argc, char **argv)
{
    static const struct option lo[] = {
        {"image", no_argument, NULL, 'i'},
        {"text", no_argument, NULL, 't'},
        {"normalize", no_argument, NULL, 'n'},
        {NULL, 0, NULL, 0},
    };
    int texts = 0, images = 0, c;
    optind = 0;
    while ((c = getopt_long(argc, argv, "+:itn", lo, NULL)) != -1) {
        if (c == 'i')
            images = 1;
        else if (c == 't')
            texts = 1;
        else if (c == 'n')
            r->normalize = 1;
        else
            return usage_error("embed: unknown option '%s'", argv[optind - 1]);
    }
    if (texts == images)
        return usage_error("embed needs exactly one of --image and --text");
    if (optind >= argc)
        return usage_error("embed: nothing to embed");
    char **items = argv + optind;
    int n = argc - optind;
    if (texts) {
        json_t *h = json_pack("{s:s, s:b}", "op", "embed_text", "normalize",
                              r->normalize);
        json_t *t = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(t, json_string(items[i]));
        json_object_set_new(h, "texts", t);
        char *hs = json_dumps(h, JSON_COMPACT);
        json_decref(h);
        if (!hs)
            return usage_error("embed: a text is not valid UTF-8");
        embed_call(r, hs, NULL, 0, "text", items);
        free(hs);
    } else {
        char hs[64];
        snprintf(hs, sizeof hs, "{\"op\":\"embed_image\",\"normalize\":%s}",
                 r->normalize ? "true" : "false");
        for (int i = 0; i < n && !r->dead; i++) {
            const char *why = NULL;
            size_t size = 0;
            unsigned char *bytes = read_file(items[i], &size, &why);
            if (!bytes) {
                fail_input(r, items[i], why);
                continue;
            }
            vit_blob b = {bytes, size};
            embed_call(r, hs, &b, 1, "path", &items[i]);
            free(bytes);
        }
    }
    fflush(stdout);
    return r->failed || r->dead ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

/* classify and match share their options. */
static int images_cmd(run *r, int argc, char **argv, int is_match)
{
    static const struct option lo[] = {
        {"top-k", required_argument, NULL, 'k'},
        {"format", required_argument, NULL, 'f'},
        {"logits", no_argument, NULL, 'l'},
        {"batch", required_argument, NULL, 'b'},
        {"text", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    const char *cmd = is_match ? "match" : "classify";
    int c;
    long v;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":k:f:lb:t:", lo, NULL)) != -1) {
        switch (c) {
        case 'k':
            if ((v = parse_int(optarg, 1, 1000)) < 0)
                return usage_error("%s: --top-k needs an integer from 1 to "
                                   "1000, not '%s'", cmd, optarg);
            r->top_k = (int)v;
            break;
        case 'f':
            if (cli_format_parse(optarg, &r->fmt) != 0)
                return usage_error("%s: unknown format '%s'", cmd, optarg);
            break;
        case 'l':
            if (is_match)
                return usage_error("match: --logits is for classify");
            r->logits = 1;
            break;
        case 'b':
            if ((v = parse_int(optarg, 1, 4096)) < 0)
                return usage_error("%s: --batch needs an integer from 1 to "
                                   "4096, not '%s'", cmd, optarg);
            r->batch = (int)v;
            break;
        case 't':
            if (!is_match)
                return usage_error("classify: --text is for match");
            {
                const char **t = realloc(r->texts, (size_t)(r->n_texts + 1) *
                                                       sizeof *t);
                if (!t)
                    return usage_error("out of memory");
                r->texts = t;
                r->texts[r->n_texts++] = optarg;
            }
            break;
        case ':':
            return usage_error("%s: option '%s' needs an argument", cmd,
                               argv[optind - 1]);
        default:
            return usage_error("%s: unknown option '%s'", cmd,
                               argv[optind - 1]);
        }
    }
    if (is_match && r->n_texts == 0)
        return usage_error("match needs at least one --text");
    if (optind >= argc)
        return usage_error("%s: no PATH given", cmd);
    if (r->logits && r->fmt == CLI_FMT_CSV)
        return usage_error("--logits works with --format text or jsonl");
    r->op = cmd;
    return images_main(r, argv + optind, argc - optind);
}

int cli_client_main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"connect", required_argument, NULL, 'c'},
        {"timeout", required_argument, NULL, 't'},
        {"retries", required_argument, NULL, 'r'},
        {"service", required_argument, NULL, 's'},
        {"curve-server-key", required_argument, NULL, 'S'},
        {"curve-key", required_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    vit_client_options o = vit_client_options_default();
    const char *endpoint = NULL, *server_key_file = NULL, *key_file = NULL;
    char server_key[41], pub[41], sec[41];
    int c;
    long v;
    opterr = 0;
    /* '+': options end at the command, whose own options follow it. */
    while ((c = getopt_long(argc, argv, "+:c:t:r:s:h", lo, NULL)) != -1) {
        switch (c) {
        case 'c': endpoint = optarg; break;
        case 's': o.service = optarg; break;
        case 'S': server_key_file = optarg; break;
        case 'K': key_file = optarg; break;
        case 't':
            if ((v = parse_int(optarg, 1, 86400000)) < 0)
                return usage_error("--timeout needs a positive number of "
                                   "milliseconds, not '%s'", optarg);
            o.timeout_ms = (int)v;
            break;
        case 'r':
            if ((v = parse_int(optarg, 0, 1000)) < 0)
                return usage_error("--retries needs an integer from 0 to "
                                   "1000, not '%s'", optarg);
            o.retries = (int)v;
            break;
        case 'h':
            help();
            return CLI_EXIT_OK;
        case ':':
            return usage_error("option '%s' needs an argument",
                               argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (!endpoint)
        return usage_error("--connect EP is required");
    if (optind >= argc)
        return usage_error("no COMMAND given");
    const char *cmd = argv[optind];
    int known = 0;
    static const char *const cmds[] = {"classify", "embed", "match", "info",
                                       "health", "metrics"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        known |= strcmp(cmd, cmds[i]) == 0;
    if (!known)
        return usage_error("unknown command '%s'", cmd);
    if (key_file && !server_key_file)
        return usage_error("--curve-key needs --curve-server-key");
    if (server_key_file) {
        if (cli_read_key(server_key_file, "public", server_key) != 0)
            return CLI_EXIT_FAILED;
        o.curve_server_key = server_key;
    }
    if (key_file) {
        if (cli_read_key(key_file, "public", pub) != 0 ||
            cli_read_key(key_file, "secret", sec) != 0)
            return CLI_EXIT_FAILED;
        o.curve_public_key = pub;
        o.curve_secret_key = sec;
    }

    run r = {.endpoint = endpoint, .fmt = CLI_FMT_TEXT, .top_k = 5,
             .batch = DEFAULT_BATCH};
    vit_error err = {{0}};
    if (vit_client_new(endpoint, &o, &r.c, &err) != VIT_OK) {
        fprintf(stderr, "vit client: %s\n", err.msg);
        return CLI_EXIT_FAILED;
    }
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    int rc;
    if (strcmp(cmd, "classify") == 0)
        rc = images_cmd(&r, sub_argc, sub_argv, 0);
    else if (strcmp(cmd, "match") == 0)
        rc = images_cmd(&r, sub_argc, sub_argv, 1);
    else if (strcmp(cmd, "embed") == 0)
        rc = embed_main(&r, sub_argc, sub_argv);
    else if (sub_argc > 1)
        rc = usage_error("%s takes no arguments", cmd);
    else
        rc = simple_op(&r, cmd);
    free(r.texts);
    vit_client_free(r.c);
    return rc;
}
