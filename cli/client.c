/*
 * `vit client`: the command-line client of a vit worker or broker, the
 * remote backend of the operations. It parses each one's options with the
 * local command's spec (cli/ops.c, cli/ops_index.c), reads image files,
 * sends them with service/client.h in requests of up to --batch images,
 * and prints the answers with the same output code as the local commands
 * (cli/output.c, and cli/index_out.c's for the index), so `vit client ...
 * classify` takes what `vit classify` takes and prints exactly what `vit
 * classify` prints for the same inputs, and `vit client ... search` what
 * `vit index search` prints on the same index. When the server refuses one
 * image of a request (bad_image), that image is reported and the rest are
 * sent again without it.
 */
#include "cli/args.h"
#include "cli/client.h"

#include <errno.h>
#include <stddef.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char client_usage_line[] =
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

unsigned char *client_read_file(const char *path, size_t *n, const char **why)
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


static void fail_input(run *r, const char *path, const char *why)
{
    cli_report(path, why);
    r->failed++;
}

const char *client_strip_index(const char *msg)
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

float client_jf(json_t *x)
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
        v[j] = client_jf(json_array_get(a, (size_t)j));
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
        top[k].score = client_jf(json_object_get(e, "score"));
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
                fail_input(r, bad.path, client_strip_index(msg));
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
        bytes = client_read_file(path, &n, &why);
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
        if (r->nq && (r->q_id_bytes + client_key_wire_bytes(key) > MAX_ID_BYTES ||
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
    r->q_id_bytes += key ? client_key_wire_bytes(key) : 0;
    if (r->nq == r->batch)
        flush(r);
}

int client_images_main(run *r, char **paths, int n_paths)
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
                    fail_input(r, r->texts[i + j], client_strip_index(msg));
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

/* classify, match and embed: parsed with the local commands' specs
 * (cli/ops.c) for the remote backend, so they take the same options (less
 * --model and the decoding ones, the server's), mean the same by them and
 * say the same usage errors, prefixed with the command. */
static int work_cmd(run *r, int argc, char **argv, client_op op)
{
    static const cli_op *const ops[] = {&cli_classify_op, &cli_match_op,
                                        &cli_embed_op};
    const cli_op *spec = ops[op];
    union {
        cli_classify_args c;
        cli_match_args m;
        cli_embed_args e;
    } a;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s: ", spec->name);
    cli_strv images = {0};
    const char *out_path = NULL;
    int rc = cli_op_parse(spec, CLI_REMOTE, "client", client_usage_line,
                          prefix, argc, argv, &a);
    if (rc >= 0)
        goto done;
    rc = CLI_EXIT_FAILED;
    r->op = op;
    if (op == OP_CLASSIFY) {
        r->top_k = a.c.top_k;
        r->fmt = (cli_format)a.c.fmt;
        r->logits = a.c.logits;
        r->batch = a.c.batch ? a.c.batch : r->batch;
        r->template = a.c.template;
        /* The zero-shot labels go as the request's texts. */
        r->texts = a.c.label_v;
        r->n_texts = a.c.n_labels;
        images = a.c.paths;
    } else if (op == OP_MATCH) {
        r->fmt = (cli_format)a.m.fmt;
        r->batch = a.m.batch ? a.m.batch : r->batch;
        r->texts = a.m.texts.v;
        r->n_texts = a.m.texts.n;
        images = a.m.paths;
    } else {
        r->npy = a.e.npy;
        r->normalize = a.e.normalize;
        r->batch = a.e.batch ? a.e.batch : r->batch;
        out_path = a.e.out;
        r->texts = a.e.texts.v;
        r->n_texts = a.e.texts.n;
        images = a.e.images;
    }
    r->out = stdout;
    if (out_path && !(r->out = fopen(out_path, "wb"))) {
        cli_report(out_path, strerror(errno));
        r->out = NULL;
        goto done;
    }
    if (images.n)
        client_images_main(r, images.v, images.n);
    else
        texts_main(r);
    if (r->oom) {
        fprintf(stderr, "vit: out of memory\n");
        goto done;
    }
    if (r->npy && cli_npy_write(r->out, r->rows, r->n_rows,
                                (size_t)(r->dim ? r->dim : 1)) != 0)
        r->failed++;
    if (fflush(r->out) != 0 || ferror(r->out)) {
        fprintf(stderr, "vit: writing the output: %s\n", strerror(errno));
        r->failed++;
    }
    rc = r->failed || r->dead ? CLI_EXIT_FAILED : CLI_EXIT_OK;
done:
    if (r->out && r->out != stdout)
        fclose(r->out);
    r->texts = NULL;
    r->n_texts = 0;
    cli_op_free(spec, &a);
    return rc;
}

/* ---- the client's own options ---- */

typedef struct {
    const char *endpoint, *service, *server_key_file, *key_file;
    int timeout_ms, retries;
    cli_strv rest;  /* COMMAND and its arguments */
} client_args;

static const cli_opt client_opts[] = {
    {.name = "connect", .key = 'c', .type = CLI_ARG_STR,
     .off = offsetof(client_args, endpoint), .where = CLI_LOCAL,
     .help =
        "  -c, --connect EP        the worker or broker, e.g. "
        "tcp://127.0.0.1:5555\n"},
    {.name = "timeout", .key = 't', .type = CLI_ARG_INT,
     .off = offsetof(client_args, timeout_ms), .where = CLI_LOCAL,
     .lo = 1, .hi = 86400000,
     .bad = "--timeout needs a positive number of milliseconds, not '%s'",
     .help =
        "  -t, --timeout MS        wait this long for each reply (5000)\n"},
    {.name = "retries", .key = 'r', .type = CLI_ARG_INT,
     .off = offsetof(client_args, retries), .where = CLI_LOCAL,
     .lo = 0, .hi = 1000,
     .bad = "--retries needs an integer from 0 to 1000, not '%s'",
     .help =
        "  -r, --retries N         send again on a fresh socket this many "
        "times (2)\n"},
    {.name = "service", .key = 's', .type = CLI_ARG_STR,
     .off = offsetof(client_args, service), .where = CLI_LOCAL,
     .help =
        "  -s, --service NAME      the model to use behind a broker "
        "(default: any)\n"},
    {.name = "curve-server-key", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(client_args, server_key_file), .where = CLI_LOCAL,
     .help =
        "      --curve-server-key FILE  the server's public key: use CURVE\n"},
    {.name = "curve-key", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(client_args, key_file), .where = CLI_LOCAL,
     .help =
        "      --curve-key FILE    this client's key pair (zcert text)\n"},
    {.name = "help", .key = 'h', .type = CLI_ARG_HELP, .where = CLI_LOCAL},
    {0},
};

static void client_init(void *p)
{
    client_args *a = p;
    vit_client_options o = vit_client_options_default();
    a->timeout_ms = o.timeout_ms;
    a->retries = o.retries;
    a->service = o.service;
}

static const char *const commands[] = {
    "classify",    "embed",       "match",        "info",
    "health",      "metrics",     "search",       "index-add",
    "index-remove", "index-stats", "broker-info"};

static const char *client_check(void *p, unsigned backend, char *buf,
                                size_t n)
{
    const client_args *a = p;
    if (!a->endpoint)
        return "--connect EP is required";
    if (a->rest.n == 0)
        return "no COMMAND given";
    const char *cmd = a->rest.v[0];
    int known = 0;
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        known |= strcmp(cmd, commands[i]) == 0;
    if (!known) {
        snprintf(buf, n, "unknown command '%s'", cmd);
        return buf;
    }
    if (a->key_file && !a->server_key_file)
        return "--curve-key needs --curve-server-key";
    /* The broker answers its reserved service itself. */
    if (strcmp(cmd, "broker-info") == 0 && a->service && *a->service)
        return "broker-info asks the broker itself; --service does not go "
               "with it";
    return NULL;
}

static const cli_op client_spec = {
    .name = "client",
    .usage = client_usage_line,
    .about =
        "\n"
        "Send work to a vit worker (vit serve --bind) or broker (vit broker) "
        "over\n"
        "ZeroMQ; the protocol is service/PROTOCOL.md.\n",
    .after =
        "\n"
        "classify, embed and match take the options of the local commands "
        "(less\n"
        "--model) and print exactly what they print; info, health and "
        "metrics\n"
        "print the server's JSON (behind a broker, a worker's). broker-info "
        "prints\n"
        "the broker's own: the models it serves, their live workers and "
        "queued\n"
        "requests, and its counters (service mmi.broker).\n"
        "\n"
        "search, index-add, index-remove and index-stats use the index of a "
        "worker\n"
        "started with --index PATH, and print what `vit index "
        "search|add|remove|stats`\n"
        "print. index-add sends the image files (directories walked as `vit "
        "index\n"
        "add` walks them) keyed by their real paths, in requests of at most "
        "the\n"
        "server's max images (and --batch); the server embeds them, "
        "replacing an item\n"
        "of the same key. index-remove removes the items keyed by each "
        "PATH's real path\n"
        "(or by PATH as given: an id), and for a directory those of the "
        "image files\n"
        "now in it. search -k is at most 1000; --prefix P as for `vit index "
        "search`.\n"
        "search sends its texts together and its images together; texts and "
        "images\n"
        "mixed are searched in one batch locally, so there the scores may "
        "differ\n"
        "from `vit index search` in float32's last digit.\n"
        "\n"
        "Exit status: 0 all done, 1 some input failed or no reply, 2 usage "
        "error.\n",
    .opts = client_opts,
    .size = sizeof(client_args),
    .positional = offsetof(client_args, rest),
    .in_order = 1,  /* options end at the command, whose own follow it */
    .init = client_init,
    .check = client_check,
};

int cli_client_main(int argc, char **argv)
{
    client_args a;
    int rc = cli_op_parse_local(&client_spec, argc, argv, &a);
    if (rc >= 0)
        return rc;
    rc = CLI_EXIT_FAILED;
    vit_client_options o = vit_client_options_default();
    o.timeout_ms = a.timeout_ms;
    o.retries = a.retries;
    o.service = a.service;
    const char *cmd = a.rest.v[0];
    if (strcmp(cmd, "broker-info") == 0)
        o.service = "mmi.broker";
    cli_curve_keys keys;
    if (cli_client_keys(a.server_key_file, a.key_file, &keys,
                        &o.curve_server_key, &o.curve_public_key,
                        &o.curve_secret_key) != 0)
        goto out;

    run r = {.fmt = CLI_FMT_TEXT, .top_k = 5, .batch = DEFAULT_BATCH};
    vit_error err = {{0}};
    if (vit_client_new(a.endpoint, &o, &r.c, &err) != VIT_OK) {
        fprintf(stderr, "vit client: %s\n", err.msg);
        goto out;
    }
    int sub_argc = a.rest.n;
    char **sub_argv = a.rest.v;
    if (strcmp(cmd, "classify") == 0)
        rc = work_cmd(&r, sub_argc, sub_argv, OP_CLASSIFY);
    else if (strcmp(cmd, "match") == 0)
        rc = work_cmd(&r, sub_argc, sub_argv, OP_MATCH);
    else if (strcmp(cmd, "embed") == 0)
        rc = work_cmd(&r, sub_argc, sub_argv, OP_EMBED);
    else if (strcmp(cmd, "search") == 0)
        rc = client_search_cmd(&r, sub_argc, sub_argv);
    else if (strcmp(cmd, "index-add") == 0)
        rc = client_index_add_cmd(&r, sub_argc, sub_argv);
    else if (strcmp(cmd, "index-remove") == 0)
        rc = client_index_remove_cmd(&r, sub_argc, sub_argv);
    else if (strcmp(cmd, "index-stats") == 0)
        rc = client_stats_cmd(&r, sub_argc, sub_argv);
    else if (sub_argc > 1)
        rc = usage_error("%s takes no arguments", cmd);
    else
        rc = simple_op(&r, cmd,
                       strcmp(cmd, "broker-info") == 0 ? "info" : cmd);
    free(r.rows);
    vit_client_free(r.c);
out:
    cli_op_free(&client_spec, &a);
    return rc;
}
