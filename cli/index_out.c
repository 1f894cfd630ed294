/*
 * What `vit index` and `vit client` share of the index, so that both name
 * files and print results alike: the key a file is indexed under, a
 * --prefix filter, and the output of search and stats (cli/cli.h).
 */
#include "cli/cli.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* An absolute path for `p` without touching the file system beyond
 * getcwd: ".", ".." and repeated slashes are resolved as text, so that a
 * file that no longer exists can still be named. malloc'd, or NULL. */
static char *abs_lexical(const char *p)
{
    char cwd[PATH_MAX] = "";
    if (p[0] != '/' && !getcwd(cwd, sizeof cwd))
        return NULL;
    size_t n = strlen(cwd) + strlen(p) + 2;
    char *in = malloc(n), *out = malloc(n + 1);
    if (!in || !out) {
        free(in);
        free(out);
        return NULL;
    }
    snprintf(in, n, "%s/%s", cwd, p);
    size_t o = 0;
    for (char *tok = strtok(in, "/"); tok; tok = strtok(NULL, "/")) {
        if (strcmp(tok, ".") == 0)
            continue;
        if (strcmp(tok, "..") == 0) {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
            continue;
        }
        out[o++] = '/';
        size_t l = strlen(tok);
        memcpy(out + o, tok, l);
        o += l;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    free(in);
    return out;
}

/* The key a file is indexed under: its real path, so that one file has
 * one key however it is named. */
char *cli_index_key(const char *p)
{
    char *r = realpath(p, NULL);
    return r ? r : abs_lexical(p);
}

char *cli_index_prefix(const char *p)
{
    /* A directory given as a path matches the keys, which are real paths;
     * anything else (a key prefix from the service) as is. */
    struct stat sb;
    if (stat(p, &sb) != 0)
        return strdup(p);
    char *r = cli_index_key(p);
    size_t n = r ? strlen(r) : 0;
    if (r && S_ISDIR(sb.st_mode) && r[n - 1] != '/') {
        char *t = realloc(r, n + 2);
        if (t) {
            t[n] = '/';
            t[n + 1] = '\0';
        } else {
            free(r);
        }
        r = t;
    }
    return r;
}

static void time_str(char *buf, size_t n, double t)
{
    time_t s = (time_t)t;
    struct tm tm;
    if (t <= 0 || !localtime_r(&s, &tm))
        snprintf(buf, n, "-");
    else
        strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
}

static void size_str(char *buf, size_t n, double b)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4)
        b /= 1024, i++;
    snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

int cli_index_stats_write(FILE *f, int jsonl, const cli_index_stats *x)
{
    char t0[32], t1[32];
    time_str(t0, sizeof t0, x->first_added);
    time_str(t1, sizeof t1, x->last_added);
    if (jsonl) {
        json_t *o = json_object();
        if (!o)
            return -1;
        json_object_set_new(o, "index", cli_json_text(x->index));
        json_object_set_new(o, "items", json_integer(x->items));
        json_object_set_new(o, "files", json_integer(x->files));
        json_object_set_new(o, "dim", json_integer(x->dim));
        json_object_set_new(o, "vector_bytes", json_integer(x->vector_bytes));
        json_object_set_new(o, "file_bytes", json_integer(x->file_bytes));
        json_object_set_new(o, "model", x->model ? cli_json_text(x->model)
                                                 : json_null());
        json_object_set_new(o, "model_dir", x->model_dir
                                                ? cli_json_text(x->model_dir)
                                                : json_null());
        json_object_set_new(o, "fingerprint",
                            x->fingerprint ? json_string(x->fingerprint)
                                           : json_null());
        json_object_set_new(o, "model_precision",
                            x->model_precision && *x->model_precision
                                ? json_string(x->model_precision)
                                : json_null());
        json_object_set_new(o, "preprocess",
                            x->preprocess && *x->preprocess
                                ? json_string(x->preprocess)
                                : json_null());
        json_object_set_new(o, "first_added", json_real(x->first_added));
        json_object_set_new(o, "last_added", json_real(x->last_added));
        if (x->ann && *x->ann) {
            json_object_set_new(o, "ann", json_string(x->ann));
            json_object_set_new(o, "recall_at_10",
                                x->recall_queries ? json_real(x->recall)
                                                  : json_null());
            json_object_set_new(o, "recall_queries",
                                json_integer(x->recall_queries));
        }
        int bad = cli_json_line(f, o) != 0;
        json_decref(o);
        return bad ? -1 : 0;
    }
    char fb[32], vb[32];
    size_str(fb, sizeof fb, (double)x->file_bytes);
    size_str(vb, sizeof vb, (double)x->vector_bytes);
    fprintf(f, "index    %s (%s)\n", x->index, fb);
    if (x->model) {
        fprintf(f, "model    %s, %d-d\n         %s\n", x->model, x->dim,
                x->model_dir ? x->model_dir : "-");
        if (x->model_precision && *x->model_precision)
            fprintf(f, "made     %s, %s image processor\n",
                     x->model_precision,
                     x->preprocess && *x->preprocess ? x->preprocess : "?");
    } else
        fprintf(f, "model    none yet\n");
    fprintf(f, "items    %lld (%lld files)\n", x->items, x->files);
    fprintf(f, "vectors  %s float32\n", vb);
    fprintf(f, "added    %s .. %s\n", t0, t1);
    if (x->ann && *x->ann && x->recall_queries)
        fprintf(f, "ann      %s, recall@10 %.3f against exact search (%d "
                "queries)\n", x->ann, x->recall, x->recall_queries);
    else if (x->ann && *x->ann)
        fprintf(f, "ann      %s\n", x->ann);
    return 0;
}

int cli_search_write(FILE *f, int jsonl, int is_image, const char *query,
                     const cli_hit *h, int n)
{
    if (!jsonl) {
        /* Paths escaped (cli_text_path): one line each. */
        if (is_image)
            cli_text_path(f, query);
        else
            fputs(query, f);
        fputc('\n', f);
        for (int j = 0; j < n; j++) {
            fprintf(f, "  %.4f  ", (double)h[j].score);
            cli_text_path(f, h[j].key);
            fputc('\n', f);
        }
        return 0;
    }
    json_t *obj = json_object(), *res = json_array();
    if (!obj || !res) {
        json_decref(obj);
        json_decref(res);
        return -1;
    }
    json_object_set_new(obj, is_image ? "image" : "text", cli_json_text(query));
    for (int j = 0; j < n; j++) {
        json_t *r = json_object();
        json_object_set_new(r, "rank", json_integer(j + 1));
        json_object_set_new(r, "score", cli_json_float(h[j].score));
        json_object_set_new(r, "path", cli_json_text(h[j].key));
        if (h[j].id >= 0)
            json_object_set_new(r, "id", json_integer(h[j].id));
        json_array_append_new(res, r);
    }
    json_object_set_new(obj, "results", res);
    int bad = cli_json_line(f, obj) != 0;
    json_decref(obj);
    return bad ? -1 : 0;
}
