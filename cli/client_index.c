/*
 * `vit client`'s index commands: search, index-add, index-remove and
 * index-stats against a worker started with --index PATH, printed with
 * cli/index_out.c's output code so that they print what `vit index
 * search|add|remove|stats` print.
 */
#include "cli/args.h"
#include "cli/client.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

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

/* A command's arguments, with the local command's spec (cli/ops_index.c)
 * for the remote backend, usage errors prefixed with its name. Returns -1
 * when they are fine (free a with cli_op_free), else the exit status. */
static int parse_as(run *r, const cli_op *op, const char *name, int argc,
                    char **argv, cli_index_args *a)
{
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s: ", name);
    int rc = cli_op_parse(op, CLI_REMOTE, "client", client_usage_line, prefix,
                          argc, argv, a);
    r->fmt = a->jsonl ? CLI_FMT_JSONL : CLI_FMT_TEXT;
    return rc;
}

int client_stats_cmd(run *r, int argc, char **argv)
{
    cli_index_args a;
    int rc0 = parse_as(r, &cli_index_stats_op, "index-stats", argc, argv, &a);
    cli_op_free(&cli_index_stats_op, &a);
    if (rc0 >= 0)
        return rc0;
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
            cli_report(v[idx], client_strip_index(msg));
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
                            client_jf(json_object_get(x, "score")),
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
                unsigned char *d = client_read_file(q[i], &sz, &why);
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

int client_search_cmd(run *r, int argc, char **argv)
{
    cli_index_args a;
    int rc = parse_as(r, &cli_index_search_op, "search", argc, argv, &a);
    int nq = a.queries.n, nt = 0, ni = 0, k = a.k ? a.k : 10;
    size_t cap = (size_t)nq + 1;
    char **texts = calloc(cap, sizeof *texts);
    char **images = calloc(cap, sizeof *images);
    int *tpos = calloc(cap, sizeof *tpos), *ipos = calloc(cap, sizeof *ipos);
    json_t **res = calloc(cap, sizeof *res);
    const char *prefix_arg = a.prefix;
    char *const *queries = a.queries.v;
    const char *kinds = a.queries.tags;
    char *prefix = NULL;
    if (rc < 0 && (!texts || !images || !tpos || !ipos || !res)) {
        fprintf(stderr, "vit: out of memory\n");
        rc = CLI_EXIT_FAILED;
    }
    if (rc >= 0) {
        nq = 0;
        goto done;
    }
    /* Texts and images go in requests of their own kind. */
    for (int i = 0; i < nq; i++) {
        if (kinds[i] == 't') {
            tpos[nt] = i;
            texts[nt++] = queries[i];
        } else {
            ipos[ni] = i;
            images[ni++] = queries[i];
        }
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
    free(texts);
    free(images);
    free(tpos);
    free(ipos);
    free(prefix);
    cli_op_free(&cli_index_search_op, &a);
    return rc;
}

/* index-add: the files sent to be embedded into the server's index. */
static int index_add(run *r, const cli_index_args *a)
{
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
    if (a->batch && a->batch < r->batch)
        r->batch = a->batch;
    /* Room for the header and the frames' overhead. */
    r->max_bytes = max_req > (1 << 20) ? (size_t)max_req - (1 << 20) : 0;
    r->items = jint(ix, "items");
    int rc = client_images_main(r, a->paths.v, a->paths.n);
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

int client_index_add_cmd(run *r, int argc, char **argv)
{
    cli_index_args a;
    int rc = parse_as(r, &cli_index_add_op, "index-add", argc, argv, &a);
    if (rc < 0)
        rc = index_add(r, &a);
    cli_op_free(&cli_index_add_op, &a);
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

int client_index_remove_cmd(run *r, int argc, char **argv)
{
    cli_index_args a;
    int rc0 = parse_as(r, &cli_index_remove_op, "index-remove", argc, argv,
                       &a);
    if (rc0 >= 0)
        return rc0;
    json_t *ix = index_info(r, "index-remove");
    if (!ix) {
        cli_op_free(&cli_index_remove_op, &a);
        return CLI_EXIT_FAILED;
    }
    int rc = CLI_EXIT_OK;
    long long removed = 0;
    for (int i = 0; i < a.paths.n && !r->dead; i++) {
        json_t *all = remove_ids(a.paths.v[i]);
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
                bytes += k ? client_key_wire_bytes(k) : 28;
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
            cli_report(a.paths.v[i], "not in the index");
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
    cli_op_free(&cli_index_remove_op, &a);
    return rc;
}
