/*
 * `vit client`: the command-line client of a vit worker or broker. It
 * parses options, reads image files, sends them with service/client.h in
 * requests of up to --batch images, and prints the answers with the same
 * output code as the local commands (cli/output.c, and cli/index.c's for
 * the index), so `vit client ... classify` prints exactly what `vit
 * classify` prints for the same inputs, and `vit client ... search` what
 * `vit index search` prints on the same index. When the server refuses one
 * image of a request (bad_image), that image is reported and the rest are
 * sent again without it.
 */
#include "cli/cli.h"
#include "service/client.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_FILE_BYTES ((size_t)256 << 20)
#define DEFAULT_BATCH 8


/* The most bytes a key takes in a header: as a JSON string (escapes
 * aside), or as {"base64": ...} when it is not UTF-8. */
static size_t key_wire_bytes(const char *key)
{
    return strlen(key) / 3 * 4 + 28;
}

static const char usage_line[] =
    "usage: vit client --connect EP [--timeout MS] [--retries N] "
    "[--service NAME]\n"
    "                  [--curve-server-key FILE --curve-key FILE] COMMAND "
    "...\n"
    "  COMMAND: classify [--top-k K] [--format text|jsonl|csv] [--logits]\n"
    "                    [--batch N] [--labels FILE [--template T]] "
    "PATH...\n"
    "           embed [--format jsonl|npy] [--out FILE] [--no-normalize]\n"
    "                 [--batch N] (--image PATH... | --text STR... |\n"
    "                 --texts-file FILE)\n"
    "           match (--text STR)... [--texts-file FILE] [--format "
    "text|jsonl]\n"
    "                 [--batch N] PATH...\n"
    "           search (--text STR | --image FILE)... [-k K] [--prefix P]\n"
    "                  [--format text|jsonl]\n"
    "           index-add [--batch N] [--format text|jsonl] PATH...\n"
    "           index-remove [--format text|jsonl] PATH...\n"
    "           index-stats [--format text|jsonl]\n"
    "           info | health | metrics | broker-info\n";

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
          "\nclassify, embed and match take the options of the local "
          "commands (less\n--model) and print exactly what they print; "
          "info, health and metrics\nprint the server's JSON (behind a "
          "broker, a worker's). broker-info prints\nthe broker's own: the "
          "models it serves, their live workers and queued\nrequests, "
          "and its counters (service mmi.broker).\n"
          "\nsearch, index-add, index-remove and index-stats use the index "
          "of a worker\nstarted with --index PATH, and print what `vit "
          "index search|add|remove|stats`\nprint. index-add sends the "
          "image files (directories walked as `vit index\nadd` walks "
          "them) keyed by their real paths, in requests of at most the\n"
          "server's max images (and --batch); the server embeds them, "
          "replacing an item\nof the same key. index-remove removes the "
          "items keyed by each PATH's real path\n(or by PATH as given: "
          "an id), and for a directory those of the image files\nnow in "
          "it. search -k is at most 1000; --prefix P as for `vit index "
          "search`.\nsearch sends its texts together and its images "
          "together; texts and images\nmixed are searched in one batch "
          "locally, so there the scores may differ\nfrom `vit index "
          "search` in float32's last digit.\n"
          "\nExit status: 0 all done, 1 some input failed or no reply, 2 "
          "usage error.\n",
          stdout);
}

#define usage_error(...) cli_usage_error("client", usage_line, __VA_ARGS__)

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
    char *key;  /* index-add: the item's id, the file's real path */
} pending;

typedef enum { OP_CLASSIFY, OP_MATCH, OP_EMBED, OP_INDEX_ADD } client_op;

/* index-add's requests stay under the server's 64 KiB header. */
#define MAX_ID_BYTES (48 << 10)

typedef struct {
    vit_client *c;
    cli_format fmt;
    client_op op;
    int top_k, logits, batch, normalize;
    char **texts;  /* match and embed --text, classify --labels; owned */
    int n_texts;
    const char *template;  /* classify --template */
    pending *q;
    int nq;
    size_t q_bytes, q_id_bytes;  /* what the queued images take */
    size_t max_bytes;            /* index-add: the server's per request */
    long added;                  /* index-add: items committed */
    long long items;             /* index-add: in the index after */
    /* embed output: jsonl lines, or npy rows kept for the end */
    FILE *out;
    int npy, dim;
    float *rows;
    size_t n_rows, cap_rows;
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
    if (strncmp(msg, "image ", 6) == 0 || strncmp(msg, "text ", 5) == 0) {
        const char *p = msg + (msg[0] == 'i' ? 6 : 5);
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

/* Reads a JSON array of n numbers into v; returns 0, or -1 when it is not
 * one. */
static int jfloats(json_t *a, float *v, int n)
{
    if (!json_is_array(a) || (int)json_array_size(a) != n)
        return -1;
    for (int j = 0; j < n; j++)
        v[j] = jf(json_array_get(a, (size_t)j));
    return 0;
}

/* Embedding rows for the output: a JSON line each, or kept for the .npy. */
static void sink_rows(run *r, const float *v, int n, int dim,
                      const char *key, char *const *names)
{
    if (!r->npy) {
        for (int i = 0; i < n && !r->oom; i++)
            if (cli_embedding_write(r->out, key, names[i],
                                    v + (size_t)i * dim, dim) != 0)
                r->oom = 1;
        return;
    }
    if (r->dim && r->dim != dim) {
        r->oom = 1;  /* cannot happen with one server; not worth a message */
        return;
    }
    r->dim = dim;
    if (r->n_rows + (size_t)n > r->cap_rows) {
        size_t cap = r->cap_rows ? 2 * r->cap_rows : 64;
        while (cap < r->n_rows + (size_t)n)
            cap *= 2;
        float *nr = realloc(r->rows, cap * (size_t)dim * sizeof *nr);
        if (!nr) {
            r->oom = 1;
            return;
        }
        r->rows = nr;
        r->cap_rows = cap;
    }
    memcpy(r->rows + r->n_rows * (size_t)dim, v,
           (size_t)n * (size_t)dim * sizeof *v);
    r->n_rows += (size_t)n;
}

/* The float32 rows of an embed reply (count x dim), copied out of the
 * frame (which has no alignment); NULL when the reply is malformed. */
static float *reply_rows(const vit_reply *rep, json_t *o, int count,
                         int *dim)
{
    *dim = (int)json_integer_value(json_object_get(o, "dim"));
    if (rep->n_data != 1 || *dim <= 0 ||
        json_integer_value(json_object_get(o, "count")) != count ||
        rep->data[0].size != (size_t)count * (size_t)*dim * sizeof(float))
        return NULL;
    float *v = malloc(rep->data[0].size);
    if (v)
        memcpy(v, rep->data[0].data, rep->data[0].size);
    return v;
}

/* Prints the result of one image of a classify or match reply. */
static void print_one(run *r, json_t *res, const char *path)
{
    if (r->op == OP_MATCH) {
        float *p = malloc((size_t)r->n_texts * 2 * sizeof(float));
        if (!p) {
            r->oom = 1;
            return;
        }
        if (jfloats(json_object_get(res, "probs"), p, r->n_texts) != 0 ||
            jfloats(json_object_get(res, "logits"), p + r->n_texts,
                    r->n_texts) != 0)
            fail_input(r, path, "the reply has no scores for every text");
        else if (cli_match_write(stdout, r->fmt, path, r->texts, r->n_texts,
                                 p, p + r->n_texts) != 0)
            r->oom = 1;
        free(p);
        return;
    }
    vit_prediction top[1000];
    float *logits = NULL;
    int k = 0, L = 0;
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
        jfloats(lg, logits, L);
    }
    cli_result cr = {.path = path, .top = top, .k = k, .logits = logits,
                     .num_labels = L};
    if (cli_output_write(stdout, r->fmt, &cr) != 0)
        r->oom = 1;
    free(logits);
}

/* The header of an image request for the queued images lo ... */
static char *image_header(run *r, int lo)
{
    static const char *const ops[] = {"classify", "match", "embed_image",
                                      "index_add"};
    json_t *h = json_pack("{s:s}", "op", ops[r->op]);
    if (!h)
        return NULL;
    if (r->op == OP_INDEX_ADD) {
        json_t *ids = json_array();
        for (int i = lo; ids && i < r->nq; i++)
            if (json_array_append_new(ids, vit_key_to_json(r->q[i].key)) !=
                0) {
                json_decref(ids);
                ids = NULL;
            }
        if (!ids || json_object_set_new(h, "ids", ids) != 0) {
            json_decref(h);
            return NULL;
        }
    }
    if (r->op == OP_EMBED)
        json_object_set_new(h, "normalize", json_boolean(r->normalize));
    if (r->op == OP_CLASSIFY) {
        json_object_set_new(h, "top_k", json_integer(r->top_k));
        if (r->logits)
            json_object_set_new(h, "logits", json_true());
        if (r->template)
            json_object_set_new(h, "template", json_string(r->template));
    }
    if (r->n_texts) {  /* match's texts, or classify's zero-shot labels */
        json_t *t = json_array();
        for (int i = 0; i < r->n_texts; i++)
            json_array_append_new(t, json_string(r->texts[i]));
        json_object_set_new(h, r->op == OP_MATCH ? "texts" : "labels", t);
    }
    char *hs = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    return hs;
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
        /* Made for each try: index_add's ids follow the images sent. */
        char *hs = image_header(r, lo);
        vit_blob *b = hs ? malloc((size_t)n * sizeof *b) : NULL;
        if (!b) {
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
                /* Report that image in its place; the ones before it are
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
        if (r->op == OP_INDEX_ADD) {
            json_t *added = json_object_get(o, "added");
            if (!json_is_integer(added)) {
                for (int i = 0; i < n; i++)
                    fail_input(r, r->q[lo + i].path, "a malformed reply");
            } else {
                /* Committed: said per file as `vit index add` says it. */
                r->added += (long)json_integer_value(added);
                r->items = json_integer_value(json_object_get(o, "items"));
                for (int i = 0; i < n && r->fmt == CLI_FMT_JSONL; i++) {
                    json_t *l = json_object();
                    json_object_set_new(l, "path",
                                        cli_json_text(r->q[lo + i].key));
                    json_object_set_new(l, "status", json_string("added"));
                    if (!l || cli_json_line(stdout, l) != 0)
                        r->oom = 1;
                    json_decref(l);
                }
                fflush(stdout);
            }
        } else if (r->op == OP_EMBED) {
            int dim;
            float *v = reply_rows(&rep, o, n, &dim);
            char **names = malloc((size_t)n * sizeof *names);
            if (v && names) {
                for (int i = 0; i < n; i++)
                    names[i] = r->q[lo + i].path;
                sink_rows(r, v, n, dim, "path", names);
            } else {
                for (int i = 0; i < n; i++)
                    fail_input(r, r->q[lo + i].path, "a malformed reply");
            }
            free(v);
            free(names);
        } else {
            json_t *res = json_object_get(o, "results");
            for (int i = 0; i < n; i++) {
                json_t *x = json_array_get(res, (size_t)i);
                if (!x)
                    fail_input(r, r->q[lo + i].path,
                               "the reply has no result");
                else
                    print_one(r, x, r->q[lo + i].path);
            }
        }
        json_decref(o);
        vit_reply_free(&rep);
        lo = r->nq;
    }
    for (int i = 0; i < r->nq; i++) {
        free(r->q[i].path);
        free(r->q[i].bytes);
        free(r->q[i].key);
    }
    r->nq = 0;
    r->q_bytes = r->q_id_bytes = 0;
}

static void add_image(run *r, const char *path)
{
    const char *why = NULL;
    char fetched_why[256];
    size_t n = 0;
    unsigned char *bytes = NULL;
    if (cli_is_remote(path) && r->op == OP_INDEX_ADD) {
        why = "an index over the service holds files; fetch it first";
    } else if (cli_is_remote(path)) {
        /* Sent as the bytes fetched: the worker never fetches. */
        if (cli_fetch(path, 0, &bytes, &n, fetched_why,
                      sizeof fetched_why) != 0)
            why = fetched_why;
    } else {
        bytes = read_file(path, &n, &why);
    }
    if (!bytes) {
        flush(r);  /* keep the reports in input order */
        fail_input(r, path, why);
        return;
    }
    char *key = NULL;
    if (r->op == OP_INDEX_ADD) {
        if (!(key = cli_index_key(path))) {
            free(bytes);
            r->oom = 1;
            return;
        }
        /* Within the server's limits: the header's ids and the request's
         * bytes. */
        if (r->nq && (r->q_id_bytes + key_wire_bytes(key) > MAX_ID_BYTES ||
                      (r->max_bytes && r->q_bytes + n > r->max_bytes)))
            flush(r);
    }
    char *p = strdup(path);
    if (!p) {
        free(bytes);
        free(key);
        r->oom = 1;
        return;
    }
    r->q[r->nq++] = (pending){p, bytes, n, key};
    r->q_bytes += n;
    r->q_id_bytes += key ? key_wire_bytes(key) : 0;
    if (r->nq == r->batch)
        flush(r);
}

/* Image inputs through the local commands' walker: files and directories. */
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
    if (r->op == OP_CLASSIFY)
        cli_output_begin(stdout, r->fmt);
    for (size_t i = 0; i < in.n && !r->oom; i++) {
        const cli_input *x = &in.v[i];
        if (x->kind == CLI_IN_ERROR) {
            flush(r);
            fail_input(r, x->path, x->error);
        } else if (x->kind == CLI_IN_NPY) {
            flush(r);
            fail_input(r, x->path,
                       "a .npy array cannot be sent to a server; it takes "
                       "JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC and AVIF files");
        } else {
            add_image(r, x->path);
        }
    }
    if (!r->oom)
        flush(r);
    free(r->q);
    cli_inputs_free(&in);
    return 0;
}

/* embed --text: the texts in requests of up to --batch each. */
static void texts_main(run *r)
{
    for (int i = 0; i < r->n_texts && !r->oom && !r->dead; i += r->batch) {
        int n = r->n_texts - i < r->batch ? r->n_texts - i : r->batch;
        json_t *h = json_pack("{s:s, s:b}", "op", "embed_text", "normalize",
                              r->normalize);
        json_t *t = json_array();
        for (int j = 0; j < n; j++)
            json_array_append_new(t, json_string(r->texts[i + j]));
        json_object_set_new(h, "texts", t);
        char *hs = json_dumps(h, JSON_COMPACT);
        json_decref(h);
        if (!hs) {
            for (int j = 0; j < n; j++)
                fail_input(r, r->texts[i + j], "not valid UTF-8");
            continue;
        }
        vit_reply rep;
        vit_error err = {{0}};
        vit_status st = vit_client_call(r->c, hs, NULL, 0, &rep, &err);
        free(hs);
        if (st != VIT_OK) {
            fprintf(stderr, "vit client: %s\n", err.msg);
            r->dead = 1;
            for (int j = i; j < r->n_texts; j++)
                fail_input(r, r->texts[j], "no reply from the server");
            break;
        }
        char code[32], msg[512];
        int idx;
        if (vit_reply_error(&rep, code, msg, sizeof msg, &idx)) {
            for (int j = 0; j < n; j++)
                if (idx < 0 || idx == j)
                    fail_input(r, r->texts[i + j], strip_index(msg));
            vit_reply_free(&rep);
            continue;
        }
        json_t *o = json_loads(rep.body, 0, NULL);
        int dim;
        float *v = reply_rows(&rep, o, n, &dim);
        if (v)
            sink_rows(r, v, n, dim, "text", r->texts + i);
        else
            for (int j = 0; j < n; j++)
                fail_input(r, r->texts[i + j], "a malformed reply");
        free(v);
        json_decref(o);
        vit_reply_free(&rep);
    }
}

static int simple_op(run *r, const char *cmd, const char *op)
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
        fprintf(stderr, "vit client: %s: %s (%s)\n", cmd, msg, code);
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

static int add_text(run *r, const char *t)
{
    char **v = realloc(r->texts, (size_t)(r->n_texts + 1) * sizeof *v);
    if (!v || !(v[r->n_texts] = strdup(t))) {
        if (v)
            r->texts = v;
        return -1;
    }
    r->texts = v;
    r->n_texts++;
    return 0;
}

static int add_texts_file(run *r, const char *path)
{
    char **lines;
    int n = cli_read_lines(path, &lines);
    if (n < 0)
        return -1;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        rc = add_text(r, lines[i]);
    cli_free_lines(lines, n);
    return rc;
}

enum { O_TEXTS_FILE = 300, O_NO_NORMALIZE, O_LABELS, O_TEMPLATE };

/* classify, match and embed: the local commands' options, less --model. */
static int work_cmd(run *r, int argc, char **argv, client_op op)
{
    static const struct option lo[] = {
        {"top-k", required_argument, NULL, 'k'},
        {"format", required_argument, NULL, 'f'},
        {"logits", no_argument, NULL, 'l'},
        {"batch", required_argument, NULL, 'b'},
        {"text", required_argument, NULL, 't'},
        {"texts-file", required_argument, NULL, O_TEXTS_FILE},
        {"image", required_argument, NULL, 'i'},
        {"out", required_argument, NULL, 'o'},
        {"no-normalize", no_argument, NULL, O_NO_NORMALIZE},
        {"labels", required_argument, NULL, O_LABELS},
        {"template", required_argument, NULL, O_TEMPLATE},
        {NULL, 0, NULL, 0},
    };
    static const char *const names[] = {"classify", "match", "embed"};
    const char *cmd = names[op];
    char **images = NULL;
    int n_images = 0, c, rc = CLI_EXIT_USAGE;
    const char *out_path = NULL;
    long v;
    r->op = op;
    r->normalize = 1;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":k:f:lb:t:i:o:", lo, NULL)) != -1) {
        int ok = 1;
        switch (c) {
        case 'k':
            ok = op == OP_CLASSIFY && (v = cli_parse_long(optarg, 1, 1000)) > 0;
            if (ok)
                r->top_k = (int)v;
            break;
        case 'f':
            if (op == OP_EMBED) {
                ok = strcmp(optarg, "jsonl") == 0 ||
                     strcmp(optarg, "npy") == 0;
                r->npy = strcmp(optarg, "npy") == 0;
            } else {
                ok = cli_format_parse(optarg, &r->fmt) == 0 &&
                     (op == OP_CLASSIFY || r->fmt != CLI_FMT_CSV);
            }
            break;
        case 'l':
            ok = op == OP_CLASSIFY;
            r->logits = 1;
            break;
        case 'b':
            ok = (v = cli_parse_long(optarg, 1, 4096)) > 0;
            if (ok)
                r->batch = (int)v;
            break;
        case 't':
            ok = op != OP_CLASSIFY;
            if (ok && add_text(r, optarg) != 0)
                goto oom;
            break;
        case O_TEXTS_FILE:
            ok = op != OP_CLASSIFY;
            if (ok && add_texts_file(r, optarg) != 0) {
                rc = CLI_EXIT_FAILED;
                goto done;
            }
            break;
        case 'i': {
            ok = op == OP_EMBED;
            char **ni = realloc(images, (size_t)(n_images + 1) * sizeof *ni);
            if (!ni)
                goto oom;
            images = ni;
            images[n_images++] = optarg;
            break;
        }
        case 'o':
            ok = op == OP_EMBED;
            out_path = optarg;
            break;
        case O_NO_NORMALIZE:
            ok = op == OP_EMBED;
            r->normalize = 0;
            break;
        case O_LABELS:
            ok = op == OP_CLASSIFY;
            if (ok) {
                int before = r->n_texts;
                if (add_texts_file(r, optarg) != 0) {
                    rc = CLI_EXIT_FAILED;
                    goto done;
                }
                if (r->n_texts == before) {
                    cli_report(optarg, "no labels in the file");
                    rc = CLI_EXIT_FAILED;
                    goto done;
                }
            }
            break;
        case O_TEMPLATE:
            ok = op == OP_CLASSIFY && strstr(optarg, "{}") != NULL;
            r->template = optarg;
            break;
        case ':':
            usage_error("%s: option '%s' needs an argument", cmd,
                        argv[optind - 1]);
            goto done;
        default:
            usage_error("%s: unknown option '%s'", cmd, argv[optind - 1]);
            goto done;
        }
        if (!ok) {
            usage_error("%s: bad or unsupported option '%s'", cmd,
                        argv[optind - 1]);
            goto done;
        }
    }
    for (int i = optind; i < argc; i++) {
        char **ni = realloc(images, (size_t)(n_images + 1) * sizeof *ni);
        if (!ni)
            goto oom;
        images = ni;
        images[n_images++] = argv[i];
    }
    if (op == OP_MATCH && r->n_texts == 0) {
        usage_error("match needs at least one --text");
        goto done;
    }
    if (op == OP_EMBED && !n_images == !r->n_texts) {
        usage_error("embed needs images or texts, not both");
        goto done;
    }
    if (op != OP_EMBED && n_images == 0) {
        usage_error("%s: no PATH given", cmd);
        goto done;
    }
    if (r->template && !r->n_texts) {
        usage_error("--template goes with --labels");
        goto done;
    }
    if (r->logits && r->fmt == CLI_FMT_CSV) {
        usage_error("--logits works with --format text or jsonl");
        goto done;
    }
    r->out = stdout;
    if (out_path && !(r->out = fopen(out_path, "wb"))) {
        cli_report(out_path, strerror(errno));
        r->out = NULL;
        rc = CLI_EXIT_FAILED;
        goto done;
    }
    if (n_images)
        images_main(r, images, n_images);
    else
        texts_main(r);
    if (r->oom)
        goto oom;
    if (r->npy && cli_npy_write(r->out, r->rows, r->n_rows,
                                (size_t)(r->dim ? r->dim : 1)) != 0)
        r->failed++;
    if (fflush(r->out) != 0 || ferror(r->out)) {
        fprintf(stderr, "vit: writing the output: %s\n", strerror(errno));
        r->failed++;
    }
    rc = r->failed || r->dead ? CLI_EXIT_FAILED : CLI_EXIT_OK;
    goto done;
oom:
    fprintf(stderr, "vit: out of memory\n");
    rc = CLI_EXIT_FAILED;
done:
    if (r->out && r->out != stdout)
        fclose(r->out);
    free(images);
    return rc;
}

/* ---- the index: search, index-add, index-remove, index-stats ---- */

/* Sends one request. Returns 0 with the body parsed in *out; 1 for an
 * error reply, with its code and message (said by the caller); -1 when no
 * reply came or it was malformed, said here. */
static int call_json(run *r, const char *cmd, const char *header,
                     const vit_blob *b, int n, json_t **out, char code[32],
                     char msg[512])
{
    vit_reply rep;
    vit_error err = {{0}};
    *out = NULL;
    if (vit_client_call(r->c, header, b, n, &rep, &err) != VIT_OK) {
        fprintf(stderr, "vit client: %s\n", err.msg);
        r->dead = 1;
        return -1;
    }
    int rc = 0;
    if (vit_reply_error(&rep, code, msg, 512, NULL))
        rc = 1;
    else if (!(*out = json_loads(rep.body, 0, NULL))) {
        fprintf(stderr, "vit client: %s: a malformed reply\n", cmd);
        rc = -1;
    }
    vit_reply_free(&rep);
    return rc;
}

/* A request with nothing to say about its error but the error. */
static json_t *call_or_say(run *r, const char *cmd, const char *header)
{
    json_t *o;
    char code[32], msg[512];
    if (call_json(r, cmd, header, NULL, 0, &o, code, msg) == 1)
        fprintf(stderr, "vit client: %s: %s (%s)\n", cmd, msg, code);
    return o;
}

/* The index the server serves, as index_stats describes it: NULL (said)
 * when it serves none. */
static json_t *index_info(run *r, const char *cmd)
{
    json_t *o = call_or_say(r, cmd, "{\"op\":\"index_stats\"}");
    json_t *ix = json_object_get(o, "index");
    if (o && !json_is_object(ix)) {
        fprintf(stderr, "vit client: %s: a malformed reply\n", cmd);
        ix = NULL;
    }
    json_incref(ix);
    json_decref(o);
    return ix;
}

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static long long jint(json_t *o, const char *key)
{
    json_t *x = json_object_get(o, key);
    return json_is_number(x) ? (long long)json_number_value(x) : 0;
}

/* --format text|jsonl, for the index commands. */
static int index_format(run *r, const char *cmd, const char *s)
{
    if (strcmp(s, "text") == 0)
        r->fmt = CLI_FMT_TEXT;
    else if (strcmp(s, "jsonl") == 0)
        r->fmt = CLI_FMT_JSONL;
    else
        return usage_error("%s: unknown format '%s' (text or jsonl)", cmd, s);
    return 0;
}

/* Parses the options of a subcommand that takes only --format; returns
 * -1 when they are fine, else the exit status. */
static int format_only_options(run *r, const char *name, int argc,
                               char **argv)
{
    static const struct option lo[] = {
        {"format", required_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":f:", lo, NULL)) != -1) {
        if (c == 'f') {
            if (index_format(r, name, optarg) != 0)
                return CLI_EXIT_USAGE;
        } else if (c == ':') {
            return usage_error("%s: option '%s' needs an argument", name,
                               argv[optind - 1]);
        } else {
            return usage_error("%s: unknown option '%s'", name,
                               argv[optind - 1]);
        }
    }
    return -1;
}

static int stats_cmd(run *r, int argc, char **argv)
{
    int rc0 = format_only_options(r, "index-stats", argc, argv);
    if (rc0 >= 0)
        return rc0;
    if (optind < argc)
        return usage_error("index-stats takes no arguments");
    json_t *ix = index_info(r, "index-stats");
    if (!ix)
        return CLI_EXIT_FAILED;
    cli_index_stats s = {
        .index = jstr(ix, "path") ? jstr(ix, "path") : "-",
        .items = jint(ix, "items"), .files = jint(ix, "files"),
        .dim = (int)jint(ix, "dim"), .vector_bytes = jint(ix, "vector_bytes"),
        .file_bytes = jint(ix, "file_bytes"), .model = jstr(ix, "model"),
        .model_dir = jstr(ix, "model_dir"),
        .fingerprint = jstr(ix, "fingerprint"),
        .model_precision = jstr(ix, "model_precision"),
        .preprocess = jstr(ix, "preprocess"),
        .first_added = (double)jint(ix, "first_added_us") / 1e6,
        .last_added = (double)jint(ix, "last_added_us") / 1e6};
    int rc = cli_index_stats_write(stdout, r->fmt == CLI_FMT_JSONL, &s);
    json_decref(ix);
    if (rc != 0) {
        fprintf(stderr, "vit: out of memory\n");
        return CLI_EXIT_FAILED;
    }
    return CLI_EXIT_OK;
}

/* A search request for queries v[0 .. n) of one kind ('t' texts, 'i'
 * image files, whose bytes are b). Returns 0 with each query's result
 * array in res[i] (new references); 1 for a refused image (reported;
 * *bad is its position), -1 when the search cannot go on (said). */
static int search_request(run *r, char kind, char **v, const vit_blob *b,
                          int n, int k, const char *prefix, json_t **res,
                          int *bad)
{
    json_t *h = json_pack("{s:s, s:i}", "op",
                          kind == 't' ? "search_text" : "search_image", "k",
                          k);
    if (h && prefix)
        json_object_set_new(h, "prefix", vit_key_to_json(prefix));
    if (h && kind == 't') {
        json_t *t = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(t, json_string(v[i]));
        json_object_set_new(h, "texts", t);
    }
    char *hs = h ? json_dumps(h, JSON_COMPACT) : NULL;
    json_decref(h);
    if (!hs) {
        fprintf(stderr, "vit: out of memory\n");
        return -1;
    }
    json_t *o;
    char code[32], msg[512];
    int idx = -1;
    int rc = call_json(r, "search", hs, b, kind == 'i' ? n : 0, &o, code,
                       msg);
    free(hs);
    if (rc < 0)
        return -1;
    if (rc > 0) {
        /* Which image: the message names it ("image 3: ..."). */
        if (kind == 'i' && (strcmp(code, "bad_image") == 0 ||
                            strcmp(code, "too_large") == 0) &&
            sscanf(msg, "image %d:", &idx) == 1 && idx >= 0 && idx < n) {
            cli_report(v[idx], strip_index(msg));
            *bad = idx;
            return 1;
        }
        fprintf(stderr, "vit client: search: %s (%s)\n", msg, code);
        return -1;
    }
    json_t *all = json_object_get(o, "results");
    if (json_array_size(all) != (size_t)n) {
        fprintf(stderr, "vit client: search: a malformed reply\n");
        json_decref(o);
        return -1;
    }
    for (int i = 0; i < n; i++)
        res[i] = json_incref(json_array_get(all, (size_t)i));
    json_decref(o);
    return 0;
}

/* Prints one query's results as `vit index search` does. */
static int search_print(run *r, char kind, const char *query, json_t *res)
{
    size_t n = json_array_size(res);
    cli_hit *hits = malloc((n ? n : 1) * sizeof *hits);
    if (!hits)
        return -1;
    char **keys = calloc(n ? n : 1, sizeof *keys);
    if (!keys) {
        free(hits);
        return -1;
    }
    for (size_t j = 0; j < n; j++) {
        json_t *x = json_array_get(res, j);
        json_t *id = json_object_get(x, "rowid");
        /* An id that is not UTF-8 comes as {"base64": ...}: printed as
         * the bytes it is, as `vit index search` prints it. */
        keys[j] = vit_key_from_json(json_object_get(x, "id"), (size_t)-1);
        hits[j] = (cli_hit){keys[j] ? keys[j] : "",
                            jf(json_object_get(x, "score")),
                            json_is_integer(id) ? json_integer_value(id)
                                                : -1};
    }
    int rc = cli_search_write(stdout, r->fmt == CLI_FMT_JSONL, kind == 'i',
                              query, hits, (int)n);
    for (size_t j = 0; j < n; j++)
        free(keys[j]);
    free(keys);
    free(hits);
    return rc;
}

/* The queries of one kind, in requests of at most `max` (and, for images,
 * max_bytes), so that the server searches them together as `vit index
 * search` does. Results land in res[] at the queries' places. Returns the
 * number of queries that failed, or -1 when the rest cannot be done. */
static int search_kind(run *r, char kind, char **q, int nq, const int *pos,
                       int max, size_t max_bytes, int k, const char *prefix,
                       json_t **res)
{
    char **v = malloc((size_t)(max ? max : 1) * sizeof *v);
    int *vp = malloc((size_t)(max ? max : 1) * sizeof *vp);
    vit_blob *b = calloc((size_t)(max ? max : 1), sizeof *b);
    json_t **got = calloc((size_t)(max ? max : 1), sizeof *got);
    int failed = 0, i = 0;
    if (!v || !vp || !b || !got) {
        fprintf(stderr, "vit: out of memory\n");
        failed = -1;
    }
    while (failed >= 0 && i < nq) {
        int n = 0;
        size_t bytes = 0;
        for (; i < nq && n < max; i++) {
            if (kind == 'i') {
                const char *why = "";
                size_t sz = 0;
                unsigned char *d = read_file(q[i], &sz, &why);
                if (!d) {
                    cli_report(q[i], why);
                    failed++;
                    continue;
                }
                if (n && bytes + sz > max_bytes) {
                    free(d);
                    break;  /* this one starts the next request */
                }
                b[n] = (vit_blob){d, sz};
                bytes += sz;
            }
            v[n] = q[i];
            vp[n++] = pos[i];
        }
        while (n > 0) {
            int bad = -1;
            int rc = search_request(r, kind, v, b, n, k, prefix, got, &bad);
            if (rc < 0) {
                failed = -1;
                break;
            }
            if (rc == 0) {
                for (int j = 0; j < n; j++)
                    res[vp[j]] = got[j];
                break;
            }
            /* Without the refused image, again. */
            failed++;
            free((void *)b[bad].data);
            memmove(v + bad, v + bad + 1, (size_t)(n - bad - 1) * sizeof *v);
            memmove(vp + bad, vp + bad + 1,
                    (size_t)(n - bad - 1) * sizeof *vp);
            memmove(b + bad, b + bad + 1, (size_t)(n - bad - 1) * sizeof *b);
            n--;
        }
        for (int j = 0; j < n && kind == 'i'; j++)
            free((void *)b[j].data);
    }
    free(v);
    free(vp);
    free(b);
    free(got);
    return failed;
}

static int search_cmd(run *r, int argc, char **argv)
{
    static const struct option lo[] = {
        {"text", required_argument, NULL, 't'},
        {"image", required_argument, NULL, 'i'},
        {"top-k", required_argument, NULL, 'k'},
        {"prefix", required_argument, NULL, 'p'},
        {"format", required_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    size_t cap = (size_t)argc + 1;
    char *kinds = calloc(cap, 1);
    char **queries = calloc(cap, sizeof *queries);
    char **texts = calloc(cap, sizeof *texts);
    char **images = calloc(cap, sizeof *images);
    int *tpos = calloc(cap, sizeof *tpos), *ipos = calloc(cap, sizeof *ipos);
    json_t **res = calloc(cap, sizeof *res);
    const char *prefix_arg = NULL;
    char *prefix = NULL;
    int nq = 0, nt = 0, ni = 0, k = 10, c, rc = CLI_EXIT_USAGE;
    long v;
    if (!kinds || !queries || !texts || !images || !tpos || !ipos || !res) {
        fprintf(stderr, "vit: out of memory\n");
        rc = CLI_EXIT_FAILED;
        goto done;
    }
    optind = 0;
    while ((c = getopt_long(argc, argv, ":t:i:k:f:", lo, NULL)) != -1) {
        switch (c) {
        case 't':
            tpos[nt] = nq;
            texts[nt++] = optarg;
            kinds[nq] = 't';
            queries[nq++] = optarg;
            break;
        case 'i':
            ipos[ni] = nq;
            images[ni++] = optarg;
            kinds[nq] = 'i';
            queries[nq++] = optarg;
            break;
        case 'k':
            if ((v = cli_parse_long(optarg, 1, 1000)) < 0) {
                usage_error("search: -k needs an integer from 1 to 1000, "
                            "not '%s'", optarg);
                goto done;
            }
            k = (int)v;
            break;
        case 'p':
            prefix_arg = optarg;
            break;
        case 'f':
            if (index_format(r, "search", optarg) != 0)
                goto done;
            break;
        case ':':
            usage_error("search: option '%s' needs an argument",
                        argv[optind - 1]);
            goto done;
        default:
            usage_error("search: unknown option '%s'", argv[optind - 1]);
            goto done;
        }
    }
    if (optind < argc) {
        usage_error("search: unexpected argument '%s' (queries are --text "
                    "and --image)", argv[optind]);
        goto done;
    }
    if (nq == 0) {
        usage_error("search: give a query: --text STR or --image FILE");
        goto done;
    }
    rc = CLI_EXIT_FAILED;
    if (prefix_arg && !(prefix = cli_index_prefix(prefix_arg))) {
        fprintf(stderr, "vit: out of memory\n");
        goto done;
    }
    /* How many queries the server takes in one request: asked only when
     * there are several. */
    long long max_t = 1, max_i = 1, max_req = 0;
    if (nt > 1 || ni > 1) {
        json_t *info = call_or_say(r, "search", "{\"op\":\"info\"}");
        if (!info)
            goto done;
        json_t *lim = json_object_get(info, "limits");
        max_t = jint(lim, "max_texts");
        max_i = jint(lim, "max_images");
        max_req = jint(lim, "max_request_bytes");
        json_decref(info);
    }
    max_t = max_t < 1 ? 1 : max_t > 4096 ? 4096 : max_t;
    max_i = max_i < 1 ? 1 : max_i > 4096 ? 4096 : max_i;
    size_t max_bytes = max_req > (1 << 20) ? (size_t)max_req - (1 << 20)
                                            : (size_t)MAX_FILE_BYTES;
    int ft = nt ? search_kind(r, 't', texts, nt, tpos, (int)max_t, 0, k,
                              prefix, res)
                : 0;
    int fi = ft >= 0 && ni ? search_kind(r, 'i', images, ni, ipos, (int)max_i,
                                         max_bytes, k, prefix, res)
                           : 0;
    rc = ft || fi ? CLI_EXIT_FAILED : CLI_EXIT_OK;
    for (int i = 0; i < nq && ft >= 0 && fi >= 0; i++) {
        if (res[i] && search_print(r, kinds[i], queries[i], res[i]) != 0) {
            fprintf(stderr, "vit: out of memory\n");
            rc = CLI_EXIT_FAILED;
            break;
        }
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "vit: writing the output: %s\n", strerror(errno));
        rc = CLI_EXIT_FAILED;
    }
done:
    for (int i = 0; res && i < nq; i++)
        json_decref(res[i]);
    free(res);
    free(kinds);
    free(queries);
    free(texts);
    free(images);
    free(tpos);
    free(ipos);
    free(prefix);
    return rc;
}

static int index_add_cmd(run *r, int argc, char **argv)
{
    static const struct option lo[] = {
        {"batch", required_argument, NULL, 'b'},
        {"format", required_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    int c, batch = 0;
    long v;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":b:f:", lo, NULL)) != -1) {
        if (c == 'b') {
            if ((v = cli_parse_long(optarg, 1, 4096)) < 0)
                return usage_error("index-add: --batch needs an integer "
                                   "from 1 to 4096, not '%s'", optarg);
            batch = (int)v;
        } else if (c == 'f') {
            if (index_format(r, "index-add", optarg) != 0)
                return CLI_EXIT_USAGE;
        } else if (c == ':') {
            return usage_error("index-add: option '%s' needs an argument",
                               argv[optind - 1]);
        } else {
            return usage_error("index-add: unknown option '%s'",
                               argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return usage_error("index-add: nothing to add: give image files or "
                           "directories");
    /* The server's index (none: said, and nothing is read) and limits. */
    json_t *ix = index_info(r, "index-add");
    if (!ix)
        return CLI_EXIT_FAILED;
    json_t *info = call_or_say(r, "index-add", "{\"op\":\"info\"}");
    if (!info) {
        json_decref(ix);
        return CLI_EXIT_FAILED;
    }
    json_t *lim = json_object_get(info, "limits");
    long long max_images = jint(lim, "max_images");
    long long max_req = jint(lim, "max_request_bytes");
    json_decref(info);
    r->op = OP_INDEX_ADD;
    r->batch = max_images > 0 ? (int)(max_images < 4096 ? max_images : 4096)
                              : DEFAULT_BATCH;
    if (batch && batch < r->batch)
        r->batch = batch;
    /* Room for the header and the frames' overhead. */
    r->max_bytes = max_req > (1 << 20) ? (size_t)max_req - (1 << 20) : 0;
    r->items = jint(ix, "items");
    int rc = images_main(r, argv + optind, argc - optind);
    if (r->failed || r->dead || r->oom)
        rc = CLI_EXIT_FAILED;
    if (r->oom)
        fprintf(stderr, "vit: out of memory\n");
    if (r->fmt == CLI_FMT_TEXT)
        printf("added %ld, failed %d; %lld items in %s\n", r->added,
               r->failed, r->items, jstr(ix, "path") ? jstr(ix, "path") : "-");
    json_decref(ix);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "vit: writing the output: %s\n", strerror(errno));
        rc = CLI_EXIT_FAILED;
    }
    return rc;
}

/* The ids of one PATH of index-remove: its key, the PATH as given (an id
 * added over the service), and for a directory the keys of the image
 * files in it. Returns a JSON array, or NULL when out of memory. */
static json_t *remove_ids(char *path)
{
    json_t *ids = json_array();
    char *key = cli_index_key(path);
    if (!ids || !key)
        goto oom;
    json_t *s = vit_key_to_json(key);
    if (!s || json_array_append_new(ids, s) != 0)
        goto oom;
    if (strcmp(key, path) != 0 &&
        (!(s = vit_key_to_json(path)) || json_array_append_new(ids, s) != 0))
        goto oom;
    free(key);
    key = NULL;
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        cli_input_list in = {0};
        if (cli_inputs_collect(&path, 1, &in) != 0) {
            cli_inputs_free(&in);
            goto oom;
        }
        for (size_t i = 0; i < in.n; i++) {
            if (in.v[i].kind != CLI_IN_IMAGE)
                continue;
            char *k = cli_index_key(in.v[i].path);
            if (!k) {
                cli_inputs_free(&in);
                goto oom;
            }
            s = vit_key_to_json(k);
            free(k);
            if (!s || json_array_append_new(ids, s) != 0) {
                cli_inputs_free(&in);
                goto oom;
            }
        }
        cli_inputs_free(&in);
    }
    return ids;
oom:
    free(key);
    json_decref(ids);
    return NULL;
}

static int index_remove_cmd(run *r, int argc, char **argv)
{
    int rc0 = format_only_options(r, "index-remove", argc, argv);
    if (rc0 >= 0)
        return rc0;
    if (optind >= argc)
        return usage_error("index-remove: nothing to remove: give paths or "
                           "ids");
    json_t *ix = index_info(r, "index-remove");
    if (!ix)
        return CLI_EXIT_FAILED;
    int rc = CLI_EXIT_OK;
    long long removed = 0;
    for (int i = optind; i < argc && !r->dead; i++) {
        json_t *all = remove_ids(argv[i]);
        if (!all) {
            fprintf(stderr, "vit: out of memory\n");
            rc = CLI_EXIT_FAILED;
            break;
        }
        /* In requests whose ids stay under the 64 KiB header. */
        long long here = 0;
        size_t n = json_array_size(all), j = 0;
        int failed = 0;
        while (j < n && !failed) {
            json_t *ids = json_array();
            size_t bytes = 0;
            for (; j < n && (json_array_size(ids) == 0 ||
                             bytes < MAX_ID_BYTES - 4096 - 8); j++) {
                json_t *x = json_array_get(all, j);
                char *k = vit_key_from_json(x, (size_t)-1);
                bytes += k ? key_wire_bytes(k) : 28;
                free(k);
                json_array_append(ids, x);
            }
            json_t *h = json_pack("{s:s, s:o}", "op", "index_remove", "ids",
                                  ids);
            char *hs = h ? json_dumps(h, JSON_COMPACT) : NULL;
            json_decref(h);
            json_t *o = NULL;
            char code[32], msg[512];
            int cr = hs ? call_json(r, "index-remove", hs, NULL, 0, &o, code,
                                    msg)
                        : -1;
            if (!hs)
                fprintf(stderr, "vit: out of memory\n");
            else if (cr > 0)
                fprintf(stderr, "vit client: index-remove: %s (%s)\n", msg,
                        code);
            free(hs);
            if (cr != 0) {
                failed = 1;
            } else {
                here += jint(o, "removed");
                json_decref(o);
            }
        }
        json_decref(all);
        if (failed) {
            rc = CLI_EXIT_FAILED;
            break;
        }
        if (here == 0) {
            cli_report(argv[i], "not in the index");
            rc = CLI_EXIT_FAILED;
        }
        removed += here;
    }
    if (r->fmt == CLI_FMT_JSONL)
        printf("{\"removed\": %lld}\n", removed);
    else
        printf("removed %lld item%s from %s\n", removed,
               removed == 1 ? "" : "s",
               jstr(ix, "path") ? jstr(ix, "path") : "-");
    json_decref(ix);
    return rc;
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
            if ((v = cli_parse_long(optarg, 1, 86400000)) < 0)
                return usage_error("--timeout needs a positive number of "
                                   "milliseconds, not '%s'", optarg);
            o.timeout_ms = (int)v;
            break;
        case 'r':
            if ((v = cli_parse_long(optarg, 0, 1000)) < 0)
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
    static const char *const cmds[] = {
        "classify",  "embed",        "match",       "info",  "health",
        "metrics",   "search",       "index-add",   "index-remove",
        "index-stats", "broker-info"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        known |= strcmp(cmd, cmds[i]) == 0;
    if (!known)
        return usage_error("unknown command '%s'", cmd);
    if (key_file && !server_key_file)
        return usage_error("--curve-key needs --curve-server-key");
    if (strcmp(cmd, "broker-info") == 0) {
        /* The broker answers its reserved service itself. */
        if (o.service && *o.service)
            return usage_error("broker-info asks the broker itself; "
                               "--service does not go with it");
        o.service = "mmi.broker";
    }
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

    run r = {.fmt = CLI_FMT_TEXT, .top_k = 5, .batch = DEFAULT_BATCH};
    vit_error err = {{0}};
    if (vit_client_new(endpoint, &o, &r.c, &err) != VIT_OK) {
        fprintf(stderr, "vit client: %s\n", err.msg);
        return CLI_EXIT_FAILED;
    }
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    int rc;
    if (strcmp(cmd, "classify") == 0)
        rc = work_cmd(&r, sub_argc, sub_argv, OP_CLASSIFY);
    else if (strcmp(cmd, "match") == 0)
        rc = work_cmd(&r, sub_argc, sub_argv, OP_MATCH);
    else if (strcmp(cmd, "embed") == 0)
        rc = work_cmd(&r, sub_argc, sub_argv, OP_EMBED);
    else if (strcmp(cmd, "search") == 0)
        rc = search_cmd(&r, sub_argc, sub_argv);
    else if (strcmp(cmd, "index-add") == 0)
        rc = index_add_cmd(&r, sub_argc, sub_argv);
    else if (strcmp(cmd, "index-remove") == 0)
        rc = index_remove_cmd(&r, sub_argc, sub_argv);
    else if (strcmp(cmd, "index-stats") == 0)
        rc = stats_cmd(&r, sub_argc, sub_argv);
    else if (sub_argc > 1)
        rc = usage_error("%s takes no arguments", cmd);
    else
        rc = simple_op(&r, cmd,
                       strcmp(cmd, "broker-info") == 0 ? "info" : cmd);
    for (int i = 0; i < r.n_texts; i++)
        free(r.texts[i]);
    free(r.texts);
    free(r.rows);
    vit_client_free(r.c);
    return rc;
}
