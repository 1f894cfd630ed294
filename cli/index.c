/*
 * `vit index`: the command line of the image–text search index (index/).
 * `add` embeds image files and directories into an index file in batches,
 * one SQLite transaction per batch, skipping files already indexed and
 * unchanged (path, size and mtime), and recognizing moved or copied files
 * by their content hash so that they are not embedded again (the plan is
 * index/sync.c's: this file lists the files and embeds); `remove`
 * takes items (or whole directories, or the files that are gone) out;
 * `stats` describes an index; `search` embeds text or image queries with
 * the index's own model and prints the best matches, as text, JSONL or a
 * self-contained HTML page (cli/index_html.c). Embedding is the library's,
 * storage and search the index module's; this file wires them together.
 */
#include "cli/args.h"
#include "cli/index_html.h"
#include "index/index.h"
#include "index/sync.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define usage_error(...) \
    cli_usage_error("index", cli_index_add_op.usage, __VA_ARGS__)

static int64_t mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static void report_idx(const char *what, const idx_error *err, idx_status st)
{
    cli_report(what, err->msg[0] ? err->msg : idx_status_str(st));
}

/* Loads the model and fingerprints it, with how it makes vectors: its
 * precision (a vit_precision) and image processor. */
static int load_model(const char *dir, const cli_index_args *a, int batch,
                      int torchvision, int precision, vit_model **m,
                      vit_model_info *info, idx_model *id)
{
    vit_options opt = vit_options_default();
    cli_decode_apply(&a->dec, &opt);
    opt.max_batch = batch;
    opt.threads = a->dec.threads;
    opt.precision = (vit_precision)precision;
    int no_exif = a->dec.no_exif;
    if (no_exif)
        opt.exif_transpose = 0;
    if (torchvision)
        opt.preprocess = VIT_PREPROCESS_TORCHVISION;
    vit_error err = {{0}};
    if (vit_model_load(dir, &opt, m, &err) != VIT_OK) {
        cli_report(dir, err.msg);
        return -1;
    }
    vit_model_get_info(*m, info);
    idx_error ie = {{0}};
    idx_status st = idx_model_fingerprint(dir, info->architecture,
                                          info->embed_dim, id, &ie);
    if (st != IDX_OK) {
        report_idx(dir, &ie, st);
        vit_model_free(*m);
        *m = NULL;
        return -1;
    }
    snprintf(id->precision, sizeof id->precision, "%s",
             cli_precision_name(precision));
    snprintf(id->preprocess, sizeof id->preprocess, "%s",
             torchvision ? "torchvision" : "pil");
    return 0;
}

/* ---- add ---- */

/* What an add has done, for its summary and its JSONL lines. */
typedef struct {
    idx_sync *y;
    vit_state *state;
    float *emb;
    int dim, jsonl;
    long added, updated, moved, copied, unchanged;
    int fatal;  /* the store failed: stop */
    const char *index;
} add_ctx;

static void print_status(add_ctx *c, const char *key, const char *status,
                         const char *from)
{
    if (!c->jsonl)
        return;
    json_t *o = json_object();
    if (!o)
        return;
    json_object_set_new(o, "path", cli_json_text(key));
    json_object_set_new(o, "status", json_string(status));
    if (from)
        json_object_set_new(o, "from", cli_json_text(from));
    cli_json_line(stdout, o);
    json_decref(o);
}

/* The plan's word that a cheap change is committed. */
static void said(void *ud, idx_sync_kind kind, const char *key,
                 const char *from)
{
    add_ctx *c = ud;
    if (kind == IDX_SYNC_MOVED)
        c->moved++, print_status(c, key, "moved", from);
    else if (kind == IDX_SYNC_COPIED)
        c->copied++, print_status(c, key, "copied", from);
    else
        c->unchanged++, print_status(c, key, "unchanged", NULL);
}

/* The plan failing: the store's message, or out of memory. Returns -1. */
static int sync_failed(add_ctx *c, const idx_error *err, idx_status st)
{
    if (st == IDX_E_NOMEM)
        fprintf(stderr, "vit: out of memory\n");
    else
        report_idx(c->index, err, st);
    c->fatal = 1;
    return -1;
}

/* Decides what one image file needs. Returns 0 (decided, or reported as
 * failed: *failed is set), or -1 after the store failed or memory ran
 * out (said). */
static int decide_file(add_ctx *c, const char *path, int *failed)
{
    char *key = cli_index_key(path);
    if (!key) {
        fprintf(stderr, "vit: out of memory\n");
        c->fatal = 1;
        return -1;
    }
    struct stat sb;
    if (stat(key, &sb) != 0) {
        cli_report(path, strerror(errno));
        *failed = 1;
        free(key);
        return 0;
    }
    idx_sync_file f = {
        .key = key, .size = (int64_t)sb.st_size, .mtime_ns = mtime_ns(&sb),
        .ctime = (double)sb.st_ctim.tv_sec + 1e-9 * sb.st_ctim.tv_nsec};
    idx_sync_kind kind;
    const char *why;
    idx_error err = {{0}};
    idx_status st = idx_sync_decide(c->y, &f, &kind, &why, &err);
    if (st == IDX_OK && kind == IDX_SYNC_UNCHANGED) {
        c->unchanged++;
        print_status(c, key, "unchanged", NULL);
    } else if (st == IDX_OK && kind == IDX_SYNC_FAILED) {
        cli_report(path, why);
        *failed = 1;
    }
    free(key);
    return st == IDX_OK ? 0 : sync_failed(c, &err, st);
}

/* The batch driver's callback: embeds a batch and commits it whole. */
static vit_status add_batch(void *ctx, const float *pixels, int n,
                            char *const *paths, vit_error *err)
{
    add_ctx *c = ctx;
    if (c->fatal) {
        snprintf(err->msg, sizeof err->msg, "not added: the index failed");
        return VIT_E_IO;
    }
    vit_status vs = vit_embed_pixels(c->state, pixels, n, c->emb, err);
    if (vs != VIT_OK)
        return vs;
    /* Unit vectors: inner product is then cosine similarity, which is
     * what search ranks by. */
    vit_l2_normalize(c->emb, n, c->dim);
    idx_error ie = {{0}};
    int replaced[4096];
    idx_status st = idx_sync_put(c->y, paths, c->emb, n, replaced, &ie);
    if (st != IDX_OK) {
        c->fatal = 1;
        /* The store's message names the index; it may fill err->msg. */
        snprintf(err->msg, sizeof err->msg, "%.*s", (int)sizeof err->msg - 1,
                 ie.msg[0] ? ie.msg : idx_status_str(st));
        return st == IDX_E_NOMEM ? VIT_E_NOMEM : VIT_E_IO;
    }
    /* Said only now: a line on stdout means the item is committed. */
    for (int i = 0; i < n; i++) {
        print_status(c, paths[i], replaced[i] ? "updated" : "added", NULL);
        if (replaced[i])
            c->updated++;
        else
            c->added++;
    }
    fflush(stdout);
    return VIT_OK;
}

static int index_add(cli_index_args *a)
{
    int batch = a->batch ? a->batch : 32;
    int rc = CLI_EXIT_FAILED, failed = 0;
    vit_model *m = NULL;
    vit_model_info info;
    idx_model mid;
    add_ctx c = {.jsonl = a->jsonl, .index = a->index};
    cli_input_list in = {0}, todo = {0};
    idx_store *s = NULL;
    if (load_model(a->model_dir, a, batch, a->dec.torchvision,
                   a->model_precision, &m, &info, &mid) != 0)
        return CLI_EXIT_FAILED;
    if (!info.has_vision) {
        cli_report(a->model_dir, "the model has no vision tower to embed "
                                 "images with");
        goto out;
    }
    idx_error err = {{0}};
    idx_status st = idx_store_open(a->index, IDX_OPEN_WRITE, &s, &err);
    if (st == IDX_OK)
        st = idx_store_claim(s, &err);
    if (st == IDX_OK)
        st = idx_store_check_model(s, &mid, 1, &err);
    if (st == IDX_OK)
        st = idx_sync_new(s, info.embed_dim, said, &c, &c.y, &err);
    if (st != IDX_OK) {
        report_idx(a->index, &err, st);
        goto out;
    }
    vit_error ve = {{0}};
    c.dim = info.embed_dim;
    if (vit_state_new(m, &c.state, &ve) != VIT_OK) {
        cli_report(a->model_dir, ve.msg);
        goto out;
    }
    cli_interrupt_install();
    if (!(c.emb = malloc((size_t)batch * (size_t)c.dim * sizeof *c.emb)) ||
        cli_inputs_collect(a->paths.v, a->paths.n, &in) != 0)
        goto oom;

    /* First what each file needs, without embedding anything; then the
     * files to embed, in batches. SIGINT or SIGTERM stops either phase
     * between files or batches; what was decided is committed first. */
    size_t decided = 0;
    for (size_t i = 0; i < in.n && !c.fatal && !cli_interrupted(); i++) {
        decided = i + 1;
        const cli_input *x = &in.v[i];
        if (x->kind == CLI_IN_ERROR) {
            cli_report(x->path, x->error);
            failed++;
        } else if (x->kind == CLI_IN_NPY) {
            cli_report(x->path, "not an image file; an index holds JPEG, "
                                "PNG, WebP, GIF, BMP, TIFF, HEIC and AVIF "
                                "files");
            failed++;
        } else if (cli_is_remote(x->path)) {
            /* Items are files, kept up to date by path, size and time. */
            cli_report(x->path, "an index holds files; fetch it first");
            failed++;
        } else {
            int f = 0;
            decide_file(&c, x->path, &f);
            failed += f;
        }
    }
    if (!c.fatal && (st = idx_sync_flush(c.y, &err)) != IDX_OK)
        sync_failed(&c, &err, st);
    if (c.fatal)
        goto out;
    size_t n_todo;
    char *const *keys = idx_sync_todo(c.y, &n_todo);
    for (size_t i = 0; i < n_todo; i++) {
        if (todo.n == todo.cap) {
            size_t cap = todo.cap ? 2 * todo.cap : 64;
            cli_input *v = realloc(todo.v, cap * sizeof *v);
            if (!v)
                goto oom;
            todo.v = v;
            todo.cap = cap;
        }
        /* The driver's list borrows the keys; they are the plan's. */
        todo.v[todo.n++] = (cli_input){keys[i], CLI_IN_IMAGE, NULL};
    }
    cli_batch b = {.model = m, .cap = batch, .run = add_batch, .ctx = &c};
    int brc = todo.n && !cli_interrupted() ? cli_batch_inputs(&b, &todo)
                                           : CLI_EXIT_OK;
    if (cli_interrupted() && !c.fatal)
        rc = cli_interrupt_status();
    else if (brc != CLI_EXIT_OK || failed || c.fatal)
        rc = CLI_EXIT_FAILED;
    else
        rc = CLI_EXIT_OK;
    /* The HNSW index is built over what the add left (failed files or
     * not), and not after an interrupt. */
    idx_ann ann;
    if (a->ann && idx_ann_parse(a->ann, &ann) == 0 && !c.fatal &&
        !cli_interrupted()) {
        idx_error ea = {{0}};
        idx_status sa = idx_store_set_ann(s, ann, &ea);
        if (sa != IDX_OK) {
            report_idx(a->index, &ea, sa);
            rc = CLI_EXIT_FAILED;
        }
    }
    if (!a->jsonl) {
        idx_stats x;
        idx_error e2 = {{0}};
        long total = idx_store_stats_quick(s, &x, &e2) == IDX_OK
                         ? (long)x.items
                         : -1;
        printf("added %ld, updated %ld, moved %ld, copied %ld, unchanged "
               "%ld, failed %ld; %ld items in %s\n",
               c.added, c.updated, c.moved, c.copied, c.unchanged,
               (long)failed + (long)b.failed, total, a->index);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "vit: writing the output: %s\n", strerror(errno));
        rc = CLI_EXIT_FAILED;
    }
    cli_inputs_say_skipped(&in);
    if (rc == cli_interrupt_status() && cli_interrupted()) {
        /* Files not done: those never looked at, and those waiting to be
         * embedded that were not (b.prog.done counts the batches run and
         * the files that failed to decode). */
        size_t left = (in.n - decided) + (todo.n - b.prog.done);
        char what[64 + 4096];
        snprintf(what, sizeof what,
                 "committed to %s, which is consistent; running the same "
                 "add again does the rest",
                 a->index);
        cli_interrupt_say(in.n - left, in.n,
                          (size_t)failed + (size_t)b.failed, what);
    }
    goto out;
oom:
    fprintf(stderr, "vit: out of memory\n");
    rc = CLI_EXIT_FAILED;
out:
    idx_sync_free(c.y);
    free(todo.v);
    cli_inputs_free(&in);
    free(c.emb);
    vit_state_free(c.state);
    idx_store_close(s);
    vit_model_free(m);
    return rc;
}

/* ---- remove ---- */

typedef struct {
    int64_t *ids;
    size_t n, cap;
    int oom;
} id_list;

static int collect_missing(void *ud, int64_t id, const char *path)
{
    id_list *l = ud;
    struct stat sb;
    if (path[0] != '/' || stat(path, &sb) == 0 || errno != ENOENT)
        return 0;  /* only files, and only when surely gone */
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        int64_t *v = realloc(l->ids, cap * sizeof *v);
        if (!v) {
            l->oom = 1;
            return 1;
        }
        l->ids = v;
        l->cap = cap;
    }
    l->ids[l->n++] = id;
    return 0;
}

static int index_remove(cli_index_args *a)
{
    idx_store *s = NULL;
    idx_error err = {{0}};
    idx_status st = idx_store_open(a->index, IDX_OPEN_READ, &s, &err);
    idx_store_close(s);  /* only to refuse a file that is no index */
    s = NULL;
    if (st == IDX_OK)
        st = idx_store_open(a->index, IDX_OPEN_WRITE, &s, &err);
    if (st == IDX_OK)
        st = idx_store_claim(s, &err);
    if (st != IDX_OK) {
        report_idx(a->index, &err, st);
        return CLI_EXIT_FAILED;
    }
    int64_t *ids = NULL;
    size_t n = 0;
    id_list gone = {0};
    int rc = CLI_EXIT_OK;
    if (a->missing && (st = idx_store_each(s, collect_missing, &gone,
                                           &err)) != IDX_OK) {
        report_idx(a->index, &err, st);
        rc = CLI_EXIT_FAILED;
        goto out;
    }
    if (gone.oom) {
        fprintf(stderr, "vit: out of memory\n");
        rc = CLI_EXIT_FAILED;
        goto out;
    }
    /* One transaction: a remove is all or nothing. */
    if ((st = idx_store_begin(s, &err)) != IDX_OK) {
        report_idx(a->index, &err, st);
        rc = CLI_EXIT_FAILED;
        goto out;
    }
    for (int i = 0; i < a->paths.n && st == IDX_OK; i++) {
        char *key = cli_index_key(a->paths.v[i]);
        if (!key) {
            st = IDX_E_NOMEM;
            snprintf(err.msg, sizeof err.msg, "out of memory");
            break;
        }
        size_t before = n;
        st = idx_store_remove(s, key, 1, &ids, &n, &err);
        /* A key given over the service is no path: try it as it is. */
        if (st == IDX_OK && n == before && strcmp(key, a->paths.v[i]) != 0)
            st = idx_store_remove(s, a->paths.v[i], 0, &ids, &n, &err);
        if (st == IDX_OK && n == before) {
            cli_report(a->paths.v[i], "not in the index");
            rc = CLI_EXIT_FAILED;
        }
        free(key);
    }
    for (size_t i = 0; i < gone.n && st == IDX_OK; i++) {
        st = idx_store_remove_id(s, gone.ids[i], &err);
        if (st == IDX_OK)
            n++;
    }
    if (st == IDX_OK)
        st = idx_store_commit(s, &err);
    else
        idx_store_rollback(s);
    if (st != IDX_OK) {
        report_idx(a->index, &err, st);
        rc = CLI_EXIT_FAILED;
        goto out;
    }
    if (a->jsonl)
        printf("{\"removed\": %zu}\n", n);
    else
        printf("removed %zu item%s from %s\n", n, n == 1 ? "" : "s",
               a->index);
out:
    free(ids);
    free(gone.ids);
    idx_store_close(s);
    return rc;
}

/* ---- stats ---- */

static int index_stats(cli_index_args *a)
{
    idx_store *s = NULL;
    idx_error err = {{0}};
    idx_status st = idx_store_open(a->index, IDX_OPEN_READ, &s, &err);
    idx_stats x;
    if (st == IDX_OK)
        st = idx_store_stats(s, &x, &err);
    idx_store_close(s);
    if (st != IDX_OK) {
        report_idx(a->index, &err, st);
        return CLI_EXIT_FAILED;
    }
    cli_index_stats cs = {
        .index = a->index, .items = (long long)x.items,
        .files = (long long)x.with_hash, .dim = x.dim,
        .vector_bytes = (long long)x.vector_bytes,
        .file_bytes = (long long)x.file_bytes,
        .model = x.has_model ? x.model.id : NULL,
        .model_dir = x.has_model ? x.model.dir : NULL,
        .fingerprint = x.has_model ? x.model.fingerprint : NULL,
        .model_precision = x.has_model ? x.model.precision : NULL,
        .preprocess = x.has_model ? x.model.preprocess : NULL,
        .first_added = x.first_added, .last_added = x.last_added,
        .ann = x.ann, .recall = x.recall,
        .recall_queries = x.recall_queries};
    if (cli_index_stats_write(stdout, a->jsonl, &cs) != 0) {
        fprintf(stderr, "vit: out of memory\n");
        return CLI_EXIT_FAILED;
    }
    return CLI_EXIT_OK;
}

/* ---- search ---- */

static int index_search(cli_index_args *a)
{
    int k = a->k ? a->k : 10;
    int rc = CLI_EXIT_FAILED;
    idx_store *s = NULL;
    idx_matrix *mx = NULL;
    vit_model *m = NULL;
    vit_state *state = NULL;
    float *q = NULL;
    idx_hit *hits = NULL;
    char *prefix = NULL;
    cli_hit *ch = NULL;
    idx_error err = {{0}};
    idx_model have, mid;
    int has = 0;
    idx_status st = idx_store_open(a->index, IDX_OPEN_READ, &s, &err);
    if (st == IDX_OK)
        st = idx_store_model(s, &have, &has, &err);
    if (st != IDX_OK) {
        report_idx(a->index, &err, st);
        goto out;
    }
    if (!has) {
        cli_report(a->index, "the index is empty");
        goto out;
    }
    const char *dir = a->model_dir ? a->model_dir : have.dir;
    vit_model_info info;
    int nq = a->queries.n;
    /* Queries are embedded as the index's vectors were: its precision,
     * and its image processor unless --preprocess says otherwise (then
     * a different one is refused below). */
    int prec = have.precision[0] ? cli_precision(have.precision) : 0;
    int torchvision = a->dec.torchvision;
    if (!a->dec.preprocess_set && have.preprocess[0])
        torchvision = strcmp(have.preprocess, "torchvision") == 0;
    if (load_model(dir, a, nq < 64 ? nq : 64, torchvision,
                   prec < 0 ? 0 : prec, &m, &info, &mid) != 0)
        goto out;
    if ((st = idx_store_check_model(s, &mid, 0, &err)) != IDX_OK) {
        report_idx(a->index, &err, st);
        goto out;
    }
    vit_error ve = {{0}};
    if (vit_state_new(m, &state, &ve) != VIT_OK) {
        cli_report(dir, ve.msg);
        goto out;
    }
    size_t d = (size_t)info.embed_dim;
    if (!(q = malloc((size_t)nq * d * sizeof *q)) ||
        !(hits = calloc((size_t)nq * (size_t)k, sizeof *hits)))
        goto oom;
    for (int i = 0; i < nq; i++) {
        vit_status vs;
        if (a->queries.tags[i] == 't') {
            const char *t = a->queries.v[i];
            vs = vit_embed_texts(state, &t, 1, q + (size_t)i * d, &ve);
            if (vs != VIT_OK) {
                cli_report(dir, ve.msg);
                goto out;
            }
        } else {
            vit_image img;
            /* A file, a URL, a data: URL or "-". */
            vs = cli_image_load(a->queries.v[i], vit_model_options(m), &img,
                                &ve);
            if (vs == VIT_OK) {
                vs = vit_embed_images(state, &img, 1, q + (size_t)i * d, &ve);
                vit_image_free(&img);
            }
            if (vs != VIT_OK) {
                cli_report(a->queries.v[i], ve.msg);
                goto out;
            }
        }
    }
    vit_l2_normalize(q, nq, (int)d);
    /* A shared store (PostgreSQL) searches on its server. */
    if (!idx_store_shared(s) &&
        (st = idx_store_load(s, (idx_precision)a->precision, 0, &mx,
                             &err)) != IDX_OK) {
        report_idx(a->index, &err, st);
        goto out;
    }
    idx_search_opts o = idx_search_opts_default();
    o.k = k;
    o.fetch = idx_store_fetch;
    o.fetch_ud = s;
    if (a->ann)
        idx_ann_parse(a->ann, &o.ann);
    if (a->prefix) {
        if (!(prefix = cli_index_prefix(a->prefix)))
            goto oom;
        o.prefix = prefix;
    }
    if ((st = idx_store_search(s, mx, q, nq, &o, hits, &err)) != IDX_OK) {
        report_idx(a->index, &err, st);
        goto out;
    }
    if (!(ch = malloc((size_t)k * sizeof *ch)))
        goto oom;
    for (int i = 0; i < nq; i++) {
        const idx_hit *h = hits + (size_t)i * (size_t)k;
        int n = 0;
        for (; n < k && h[n].id >= 0; n++)
            ch[n] = (cli_hit){h[n].key, h[n].score, (long long)h[n].id};
        if (cli_search_write(stdout, a->jsonl, a->queries.tags[i] == 'i',
                             a->queries.v[i], ch, n) != 0)
            goto oom;
    }
    rc = CLI_EXIT_OK;
    if (a->html) {
        cli_html_query *hq = calloc((size_t)nq, sizeof *hq);
        if (!hq)
            goto oom;
        for (int i = 0; i < nq; i++)
            hq[i] = (cli_html_query){a->queries.tags[i] == 'i',
                                     a->queries.v[i]};
        if (cli_index_html(a->html, hq, nq, hits, k, vit_model_options(m)) !=
            0)
            rc = CLI_EXIT_FAILED;
        free(hq);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "vit: writing the output: %s\n", strerror(errno));
        rc = CLI_EXIT_FAILED;
    }
    goto out;
oom:
    fprintf(stderr, "vit: out of memory\n");
    rc = CLI_EXIT_FAILED;
out:
    if (hits)
        idx_hits_free(hits, (size_t)a->queries.n * (size_t)k);
    free(hits);
    free(q);
    free(prefix);
    free(ch);
    idx_matrix_free(mx);
    vit_state_free(state);
    vit_model_free(m);
    idx_store_close(s);
    return rc;
}

int cli_index_main(int argc, char **argv)
{
    if (argc < 2) {
        return usage_error("%s", "give a subcommand: add, remove, stats or "
                                 "search");
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        cli_op_help(&cli_index_add_op, stdout);
        return CLI_EXIT_OK;
    }
    static const struct {
        const char *name;
        const cli_op *op;
        int (*run)(cli_index_args *a);
    } subs[] = {{"add", &cli_index_add_op, index_add},
                {"remove", &cli_index_remove_op, index_remove},
                {"stats", &cli_index_stats_op, index_stats},
                {"search", &cli_index_search_op, index_search}};
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++) {
        if (strcmp(sub, subs[i].name) != 0)
            continue;
        cli_index_args a;
        int rc = cli_op_parse_local(subs[i].op, argc - 1, argv + 1, &a);
        if (rc < 0)
            rc = subs[i].run(&a);
        cli_op_free(subs[i].op, &a);
        return rc;
    }
    return usage_error("unknown subcommand '%s' (add, remove, stats or "
                       "search)", sub);
}
