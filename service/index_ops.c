/*
 * The embedding index behind the worker's index_add, index_remove,
 * search_text, search_image and index_stats (PROTOCOL.md section 3): the
 * store's connections (one the writer thread's, one for reading metadata
 * during searches, one for index_get), the in-memory matrix every search
 * scans, and the writer thread with its queue. The worker embeds; this
 * file stores and searches. See svc_index.h for who may call what from
 * which thread.
 *
 * An index in PostgreSQL (a shared store) is written and searched by many
 * workers at once: this worker holds no matrix of it (it would miss the
 * others' adds), claims nothing, and searches on the server through the
 * read connection, which sees every committed add of every worker.
 */
#include "service/svc_index.h"
#include "service/svc_impl.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

struct svc_index {
    char *path;
    idx_store *wr;      /* the writer thread's */
    idx_store *rd;      /* searches' metadata */
    idx_store *look;    /* index_get's, on the thread that reads requests */
    idx_matrix *m;
    idx_model model;
    int dim;
    idx_precision prec;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    svc_ix_job *head, *tail;
    int quit;
    pthread_t th;
    int started;
    void *push;
    svc_ix_done_fn done;

    /* What index_stats tells beyond the matrix (files, dates), as of the
     * last time the writer had nothing queued; under mu. */
    idx_stats cached;
    int stale;  /* the writer's own: a commit since the last refresh */
};

/* Reads the item counts and dates again (a scan of the items, not of the
 * vectors). On the writer thread, or before it starts. */
static void refresh_stats(svc_index *ix)
{
    idx_stats x;
    if (idx_store_stats_quick(ix->wr, &x, NULL) != IDX_OK)
        return;  /* keep the last: stats are informative */
    pthread_mutex_lock(&ix->mu);
    ix->cached = x;
    pthread_mutex_unlock(&ix->mu);
    ix->stale = 0;
}

/* Items in the index: the matrix's rows, or for a shared store what the
 * writer counted after its last commit. */
static int64_t items(svc_index *ix)
{
    if (ix->m)
        return (int64_t)idx_matrix_rows(ix->m);
    pthread_mutex_lock(&ix->mu);
    int64_t n = ix->cached.items;
    pthread_mutex_unlock(&ix->mu);
    return n;
}

static vit_status ix_fail(vit_error *err, vit_status st, const idx_error *e,
                          const char *what)
{
    if (err)
        snprintf(err->msg, sizeof err->msg, "%s%.480s", what ? what : "",
                 e && e->msg[0] ? e->msg : "index error");
    return st;
}

void svc_ix_job_free(svc_ix_job *j)
{
    if (!j)
        return;
    for (int i = 0; i < j->n; i++) {
        if (j->keys)
            free(j->keys[i]);
        if (j->metas)
            free(j->metas[i]);
    }
    free(j->keys);
    free(j->metas);
    free(j->vecs);
    free(j);
}

/* Commits one job and then, with the write lock for the copy alone,
 * updates the matrix. */
static void run_job(svc_index *ix, svc_ix_job *j)
{
    idx_error err = {{0}};
    idx_status st = idx_store_begin(ix->wr, &err);
    int64_t *ids = NULL;
    size_t nids = 0;
    if (!j->remove) {
        ids = malloc((size_t)(j->n ? j->n : 1) * sizeof *ids);
        if (!ids && st == IDX_OK)
            st = IDX_E_NOMEM;
        vit_l2_normalize(j->vecs, j->n, ix->dim);
        for (int i = 0; i < j->n && st == IDX_OK; i++) {
            idx_item it = {.path = j->keys[i], .size = -1,
                           .meta = j->metas ? j->metas[i] : NULL};
            st = idx_store_put(ix->wr, &it, j->vecs + (size_t)i * ix->dim,
                               &ids[i], NULL, &err);
        }
        nids = (size_t)j->n;
    } else {
        for (int i = 0; i < j->n && st == IDX_OK; i++)
            st = idx_store_remove(ix->wr, j->keys[i], 0, &ids, &nids, &err);
    }
    if (st == IDX_OK)
        st = idx_store_commit(ix->wr, &err);
    else
        idx_store_rollback(ix->wr);
    if (st == IDX_OK)
        ix->stale = 1;
    if (st == IDX_OK && ix->m && !j->remove)
        st = idx_matrix_add(ix->m, j->n, ids, j->keys, j->vecs, &err);
    else if (st == IDX_OK && ix->m)
        idx_matrix_remove(ix->m, ids, nids);
    free(ids);
    if (st == IDX_OK) {
        /* With nothing more to write, the stats are read again before the
         * reply: a stats request sent after it sees this job. */
        pthread_mutex_lock(&ix->mu);
        int idle = !ix->head;
        pthread_mutex_unlock(&ix->mu);
        if (idle || !ix->m)
            refresh_stats(ix);
    }
    if (st != IDX_OK) {
        const char *code = st == IDX_E_ARG ? "bad_request" : "internal";
        ix->done(ix->push, j->req, NULL, code,
                 err.msg[0] ? err.msg : idx_status_str(st));
        return;
    }
    json_t *o = json_pack("{s:b, s:s, s:i, s:I}", "ok", 1, "op", j->op,
                          j->remove ? "removed" : "added",
                          j->remove ? (int)nids : j->n, "items",
                          (json_int_t)items(ix));
    char *body = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!body)
        ix->done(ix->push, j->req, NULL, "internal",
                 "out of memory building the reply");
    else
        ix->done(ix->push, j->req, body, NULL, NULL);
}

static void *writer_main(void *arg)
{
    svc_index *ix = arg;
    pthread_mutex_lock(&ix->mu);
    for (;;) {
        while (!ix->head && !ix->quit)
            pthread_cond_wait(&ix->cv, &ix->mu);
        svc_ix_job *j = ix->head;
        if (!j)
            break;  /* quit, and nothing left to write */
        ix->head = j->next;
        if (!ix->head)
            ix->tail = NULL;
        pthread_mutex_unlock(&ix->mu);
        run_job(ix, j);
        svc_ix_job_free(j);
        pthread_mutex_lock(&ix->mu);
        if (!ix->head && ix->stale) {
            /* Idle after a burst whose last job still saw others queued
             * (or whose refresh failed): bring the stats up to date. */
            pthread_mutex_unlock(&ix->mu);
            refresh_stats(ix);
            pthread_mutex_lock(&ix->mu);
        }
    }
    pthread_mutex_unlock(&ix->mu);
    return NULL;
}

void svc_ix_submit(svc_index *ix, svc_ix_job *j)
{
    j->next = NULL;
    pthread_mutex_lock(&ix->mu);
    if (ix->tail)
        ix->tail->next = j;
    else
        ix->head = j;
    ix->tail = j;
    pthread_cond_signal(&ix->cv);
    pthread_mutex_unlock(&ix->mu);
}

vit_status svc_ix_open(const char *path, idx_precision prec,
                       const char *model_dir, const vit_model_info *info,
                       const char *precision, const char *preprocess,
                       void *zctx, const char *done_ep, svc_ix_done_fn done,
                       svc_index **out, vit_error *err)
{
    svc_index *ix = calloc(1, sizeof *ix);
    if (!ix || !(ix->path = strdup(path))) {
        free(ix);
        return ix_fail(err, VIT_E_NOMEM, NULL, "out of memory");
    }
    ix->prec = prec;
    ix->done = done;
    ix->dim = info->embed_dim;
    pthread_mutex_init(&ix->mu, NULL);
    pthread_cond_init(&ix->cv, NULL);
    idx_error e = {{0}};
    vit_status st = VIT_OK;
    idx_status is = idx_model_fingerprint(model_dir,
                                          info->architecture
                                              ? info->architecture
                                              : "",
                                          info->embed_dim, &ix->model, &e);
    if (is == IDX_OK) {
        snprintf(ix->model.precision, sizeof ix->model.precision, "%s",
                 precision);
        snprintf(ix->model.preprocess, sizeof ix->model.preprocess, "%s",
                 preprocess);
        is = idx_store_open(path, IDX_OPEN_WRITE, &ix->wr, &e);
    }
    /* The only writer of an SQLite index; a shared one's batches are
     * serialized by the store. */
    if (is == IDX_OK && !idx_store_shared(ix->wr))
        is = idx_store_claim(ix->wr, &e);
    if (is == IDX_OK)
        is = idx_store_check_model(ix->wr, &ix->model, 1, &e);
    if (is == IDX_OK)
        is = idx_store_open(path, IDX_OPEN_READ, &ix->rd, &e);
    if (is == IDX_OK)
        is = idx_store_open(path, IDX_OPEN_READ, &ix->look, &e);
    if (is == IDX_OK && !idx_store_shared(ix->wr))
        is = idx_store_load(ix->wr, prec, 0, &ix->m, &e);
    if (is == IDX_OK)
        is = idx_store_stats_quick(ix->wr, &ix->cached, &e);
    if (is != IDX_OK) {
        st = ix_fail(err, is == IDX_E_NOMEM ? VIT_E_NOMEM : VIT_E_IO, &e,
                     "index: ");
        goto fail;
    }
    ix->push = zmq_socket(zctx, ZMQ_PUSH);
    if (!ix->push || zmq_connect(ix->push, done_ep) != 0 ||
        pthread_create(&ix->th, NULL, writer_main, ix) != 0) {
        st = ix_fail(err, VIT_E_IO, NULL, "cannot start the index writer");
        goto fail;
    }
    ix->started = 1;
    *out = ix;
    return VIT_OK;
fail:
    svc_ix_close(ix);
    return st;
}

void svc_ix_close(svc_index *ix)
{
    if (!ix)
        return;
    if (ix->started) {
        pthread_mutex_lock(&ix->mu);
        ix->quit = 1;
        pthread_cond_broadcast(&ix->cv);
        pthread_mutex_unlock(&ix->mu);
        pthread_join(ix->th, NULL);
    }
    for (svc_ix_job *j = ix->head, *nx; j; j = nx) {
        nx = j->next;
        svc_ix_job_free(j);
    }
    if (ix->push)
        zmq_close(ix->push);
    idx_matrix_free(ix->m);
    idx_store_close(ix->look);
    idx_store_close(ix->rd);
    idx_store_close(ix->wr);
    pthread_mutex_destroy(&ix->mu);
    pthread_cond_destroy(&ix->cv);
    free(ix->path);
    free(ix);
}

int svc_ix_dim(const svc_index *ix)
{
    return ix->dim;
}

json_t *svc_ix_search(svc_index *ix, float *q, int nq, int k,
                      const char *prefix, char msg[256])
{
    vit_l2_normalize(q, nq, ix->dim);
    idx_hit *hits = calloc((size_t)nq * (size_t)k, sizeof *hits);
    if (!hits) {
        snprintf(msg, 256, "out of memory");
        return NULL;
    }
    idx_search_opts o = idx_search_opts_default();
    o.k = k;
    o.prefix = prefix;
    /* fp16 / int8 candidates are re-scored in fp32 from the store (the
     * read connection, which sees every commit the matrix has: rows are
     * copied into it only after their commit), not from a second copy of
     * every vector in memory. */
    o.fetch = idx_store_fetch;
    o.fetch_ud = ix->rd;
    idx_error e = {{0}};
    if (idx_store_search(ix->rd, ix->m, q, nq, &o, hits, &e) != IDX_OK) {
        snprintf(msg, 256, "%.255s", e.msg);
        free(hits);
        return NULL;
    }
    json_t *all = json_array();
    for (int i = 0; all && i < nq; i++) {
        json_t *row = json_array();
        for (int j = 0; row && j < k; j++) {
            const idx_hit *h = &hits[(size_t)i * (size_t)k + (size_t)j];
            if (h->id < 0)
                break;
            /* Metadata from the read connection: in WAL it sees the last
             * commit and never waits for the writer. An item removed since
             * the scan simply has none. */
            idx_item it;
            int found = 0;
            json_t *meta = NULL;
            if (idx_store_get_path(ix->rd, h->key, &it, &found, NULL) ==
                    IDX_OK &&
                found) {
                if (it.meta)
                    meta = json_loads(it.meta, 0, NULL);
                idx_item_free(&it);
            }
            /* A key that is not UTF-8 (a file name in another encoding)
             * goes as {"base64": ...}: left out, the row would vanish. */
            json_array_append_new(
                row, json_pack("{s:o, s:f, s:o, s:I}", "id",
                               svc_key_json(h->key), "score",
                               (double)h->score, "metadata",
                               meta ? meta : json_null(), "rowid",
                               (json_int_t)h->id));
        }
        json_array_append_new(all, row ? row : json_null());
    }
    idx_hits_free(hits, (size_t)nq * (size_t)k);
    free(hits);
    if (!all)
        snprintf(msg, 256, "out of memory");
    return all;
}

json_t *svc_ix_get(svc_index *ix, char *const *keys, int n, char msg[256])
{
    json_t *all = json_array();
    for (int i = 0; all && i < n; i++) {
        idx_item it;
        int found = 0;
        idx_error e = {{0}};
        if (idx_store_get_path(ix->look, keys[i], &it, &found, &e) !=
            IDX_OK) {
            snprintf(msg, 256, "%.255s", e.msg);
            json_decref(all);
            return NULL;
        }
        if (!found) {
            json_array_append_new(all, json_null());
            continue;
        }
        json_t *meta = it.meta ? json_loads(it.meta, 0, NULL) : NULL;
        int file = it.has_hash && it.size >= 0;
        json_t *o = json_pack("{s:o, s:I, s:b, s:o, s:o}", "id",
                              svc_key_json(it.path), "rowid",
                              (json_int_t)it.id, "file", file, "size",
                              file ? json_integer(it.size) : json_null(),
                              "metadata", meta ? meta : json_null());
        idx_item_free(&it);
        json_array_append_new(all, o ? o : json_null());
    }
    if (!all)
        snprintf(msg, 256, "out of memory");
    return all;
}

static long long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : 0;
}

static json_int_t us(double t)
{
    return (json_int_t)floor(t * 1e6);
}

json_t *svc_ix_stats(svc_index *ix)
{
    idx_stats x;
    pthread_mutex_lock(&ix->mu);
    x = ix->cached;
    pthread_mutex_unlock(&ix->mu);
    long long bytes;
    json_int_t items;
    if (ix->m) {
        items = (json_int_t)idx_matrix_rows(ix->m);
        size_t n = strlen(ix->path);
        char *wal = malloc(n + 5);
        if (!wal)
            return NULL;
        memcpy(wal, ix->path, n);
        memcpy(wal + n, "-wal", 5);
        bytes = file_size(ix->path) + file_size(wal);
        free(wal);
    } else {
        /* A shared store counts every worker's adds: asked now, on the
         * connection of this thread (index_get's), which waits for no
         * writer. */
        idx_stats now;
        if (idx_store_stats_quick(ix->look, &now, NULL) == IDX_OK)
            x = now;
        items = (json_int_t)x.items;
        bytes = (long long)x.file_bytes;
    }
    /* Dates in whole microseconds: exact in JSON, whose reals the worker
     * writes with 9 digits. */
    /* model_precision and preprocess: how the vectors are made, which the
     * worker checked the index against as it opened it (and recorded
     * there when it had none). */
    return json_pack("{s:I, s:i, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s, "
                     "s:I, s:I, s:I, s:s, s:s}",
                     "items", items, "dim", ix->dim, "model", ix->model.id,
                     "fingerprint", ix->model.fingerprint, "precision",
                     idx_precision_str(ix->prec), "path", ix->path, "files",
                     (json_int_t)x.with_hash, "vector_bytes",
                     items * (json_int_t)ix->dim * 4, "file_bytes",
                     (json_int_t)bytes, "model_dir",
                     x.has_model ? x.model.dir : ix->model.dir,
                     "first_added_us", us(x.first_added),
                     "last_added_us", us(x.last_added), "memory_bytes",
                     (json_int_t)(ix->m ? idx_matrix_memory_bytes(ix->m)
                                        : 0),
                     "model_precision", ix->model.precision, "preprocess",
                     ix->model.preprocess);
}
