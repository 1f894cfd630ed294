/*
 * The store behind the idx_store_* API, chosen by the name it is opened
 * by: a libpq URI (postgresql:// or postgres://) is a PostgreSQL database
 * with pgvector (index/store_pg.c), anything else an SQLite file
 * (index/store_sqlite.c). Both keep the same items, the same model record
 * and the same batches; what differs is where the vectors are searched:
 * SQLite's in a matrix the caller loads (one process writes), PostgreSQL's
 * on the server, where every writer's commits are. Also the pieces both
 * stores share: messages, the id list, the directory range, the model
 * comparison.
 */
#include "index/store_impl.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct idx_store {
    const idx_store_ops *ops;
    void *impl;
};


double idx_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int idx_push_id(int64_t **ids, size_t *n, int64_t id)
{
    /* Capacity is 16, then each power of two as the count reaches it. */
    if (*n == 0 || (*n >= 16 && (*n & (*n - 1)) == 0)) {
        size_t cap = *n ? 2 * *n : 16;
        int64_t *v = realloc(*ids, cap * sizeof *v);
        if (!v)
            return -1;
        *ids = v;
    }
    (*ids)[(*n)++] = id;
    return 0;
}

int idx_dir_range(const char *path, int under, char **lo, char **hi)
{
    size_t len = strlen(path);
    while (under && len > 1 && path[len - 1] == '/')
        len--;
    *lo = malloc(len + 2);
    *hi = malloc(len + 2);
    if (!*lo || !*hi) {
        free(*lo);
        free(*hi);
        *lo = *hi = NULL;
        return -1;
    }
    memcpy(*lo, path, len);
    memcpy(*hi, path, len);
    (*lo)[len] = '/', (*hi)[len] = '0';
    (*lo)[len + 1] = (*hi)[len + 1] = '\0';
    return 0;
}

idx_status idx_model_compare(const char *where, const idx_model *have,
                             const idx_model *m, idx_error *err)
{
    if (strcmp(have->fingerprint, m->fingerprint) != 0 || have->dim != m->dim)
        return idx_fail(err, IDX_E_MODEL,
                        "%s: the index was built with model %s (%d-d), not "
                        "%s (%d-d); vectors of different models cannot be "
                        "compared (use a new index, or the model %s)",
                        where, have->id, have->dim, m->id, m->dim,
                        have->dir[0] ? have->dir : have->name);
    /* The same weights run another way make vectors that differ a little
     * (precision) or more (the other image processor): not the ones the
     * index holds. */
    static const struct {
        const char *option;
        size_t at;
    } how[2] = {
        {"--precision", offsetof(idx_model, precision)},
        {"--preprocess", offsetof(idx_model, preprocess)},
    };
    for (int i = 0; i < 2; i++) {
        const char *h = (const char *)have + how[i].at;
        const char *w = (const char *)m + how[i].at;
        if (h[0] && w[0] && strcmp(h, w) != 0)
            return idx_fail(err, IDX_E_MODEL,
                            "%s: the index's vectors were made with %s %s, "
                            "not %s; vectors made another way do not "
                            "compare with them (use %s %s, or a new index)",
                            where, how[i].option, h, w, how[i].option, h);
    }
    return IDX_OK;
}

int idx_model_set(idx_model *m, const char *k, const char *v)
{
    if (strcmp(k, "model_id") == 0)
        return snprintf(m->id, sizeof m->id, "%s", v), 1;
    if (strcmp(k, "fingerprint") == 0)
        return snprintf(m->fingerprint, sizeof m->fingerprint, "%s", v), 1;
    if (strcmp(k, "dim") == 0)
        return m->dim = atoi(v), 1;
    if (strcmp(k, "name") == 0)
        snprintf(m->name, sizeof m->name, "%s", v);
    else if (strcmp(k, "architecture") == 0)
        snprintf(m->architecture, sizeof m->architecture, "%s", v);
    else if (strcmp(k, "dir") == 0)
        snprintf(m->dir, sizeof m->dir, "%s", v);
    else if (strcmp(k, "precision") == 0)
        snprintf(m->precision, sizeof m->precision, "%s", v);
    else if (strcmp(k, "preprocess") == 0)
        snprintf(m->preprocess, sizeof m->preprocess, "%s", v);
    return 0;
}

int idx_store_is_pg(const char *where)
{
    return where && (strncmp(where, "postgresql://", 13) == 0 ||
                     strncmp(where, "postgres://", 11) == 0);
}

int idx_ann_parse(const char *s, idx_ann *out)
{
    if (strcmp(s, "none") == 0 || strcmp(s, "exact") == 0)
        *out = IDX_ANN_EXACT;
    else if (strcmp(s, "hnsw") == 0)
        *out = IDX_ANN_HNSW;
    else
        return -1;
    return 0;
}

/* Whether a libpq URI carries a password: user:password@ in its
 * authority, or a password= parameter. */
static int has_password(const char *uri)
{
    const char *a = strstr(uri, "://");
    a = a ? a + 3 : uri;
    size_t n = strcspn(a, "/?");
    const char *at = memchr(a, '@', n);
    if (at && memchr(a, ':', (size_t)(at - a)))
        return 1;
    for (const char *q = strchr(a, '?'); q; q = strchr(q + 1, '&'))
        if (strncmp(q + 1, "password=", 9) == 0)
            return 1;
    return 0;
}

idx_status idx_store_open(const char *path, idx_open_mode mode,
                          idx_store **out, idx_error *err)
{
    if (!path || !out)
        return idx_fail(err, IDX_E_ARG, "no index path");
    /* The index's name is printed, logged and answered over the service:
     * no secret may be in it. */
    if (idx_store_is_pg(path) && has_password(path))
        return idx_fail(err, IDX_E_ARG,
                        "a password in the index's URI would show in "
                        "messages and in the process list: give it in "
                        "PGPASSWORD or ~/.pgpass (libpq reads both), and "
                        "the URI without it");
    idx_store *s = calloc(1, sizeof *s);
    if (!s)
        return idx_fail(err, IDX_E_NOMEM, "out of memory");
    s->ops = idx_store_is_pg(path) ? &idx_pg_ops : &idx_sqlite_ops;
    idx_status st = s->ops->open(path, mode, &s->impl, err);
    if (st != IDX_OK) {
        free(s);
        return st;
    }
    *out = s;
    return IDX_OK;
}

void idx_store_close(idx_store *s)
{
    if (!s)
        return;
    s->ops->close(s->impl);
    free(s);
}

int idx_store_shared(const idx_store *s)
{
    return s->ops->search != NULL;
}

idx_status idx_store_claim(idx_store *s, idx_error *err)
{
    return s->ops->claim(s->impl, err);
}

idx_status idx_store_model(idx_store *s, idx_model *out, int *has,
                           idx_error *err)
{
    return s->ops->model(s->impl, out, has, err);
}

idx_status idx_store_check_model(idx_store *s, const idx_model *m,
                                 int record, idx_error *err)
{
    return s->ops->check_model(s->impl, m, record, err);
}

idx_status idx_store_get_path(idx_store *s, const char *path, idx_item *out,
                              int *found, idx_error *err)
{
    return s->ops->get_path(s->impl, path, out, found, err);
}

idx_status idx_store_get_hash(idx_store *s, const uint8_t hash[32],
                              int64_t after, idx_item *out, int *found,
                              idx_error *err)
{
    return s->ops->get_hash(s->impl, hash, after, out, found, err);
}

idx_status idx_store_begin(idx_store *s, idx_error *err)
{
    return s->ops->begin(s->impl, err);
}

idx_status idx_store_commit(idx_store *s, idx_error *err)
{
    return s->ops->commit(s->impl, err);
}

void idx_store_rollback(idx_store *s)
{
    s->ops->rollback(s->impl);
}

idx_status idx_store_put(idx_store *s, const idx_item *it, const float *vec,
                         int64_t *id, int *replaced, idx_error *err)
{
    return s->ops->put(s->impl, it, vec, id, replaced, err);
}

idx_status idx_store_move(idx_store *s, int64_t id, const char *path,
                          int64_t size, int64_t mtime_ns, idx_error *err)
{
    return s->ops->move(s->impl, id, path, size, mtime_ns, err);
}

idx_status idx_store_remove(idx_store *s, const char *path, int under,
                            int64_t **ids, size_t *n, idx_error *err)
{
    return s->ops->remove(s->impl, path, under, ids, n, err);
}

idx_status idx_store_remove_id(idx_store *s, int64_t id, idx_error *err)
{
    return s->ops->remove_id(s->impl, id, err);
}

int idx_store_fetch(void *store, int64_t id, float *out)
{
    idx_store *s = store;
    return s->ops->fetch(s->impl, id, out);
}

idx_status idx_store_stats(idx_store *s, idx_stats *out, idx_error *err)
{
    return s->ops->stats(s->impl, out, err);
}

idx_status idx_store_stats_quick(idx_store *s, idx_stats *out,
                                 idx_error *err)
{
    return s->ops->stats_quick(s->impl, out, err);
}

idx_status idx_store_each(idx_store *s,
                          int (*fn)(void *ud, int64_t id, const char *path),
                          void *ud, idx_error *err)
{
    return s->ops->each(s->impl, fn, ud, err);
}

idx_status idx_store_load(idx_store *s, idx_precision p, int keep_f32,
                          idx_matrix **out, idx_error *err)
{
    return s->ops->load(s->impl, p, keep_f32, out, err);
}

idx_status idx_store_search(idx_store *s, idx_matrix *m, const float *q,
                            int nq, const idx_search_opts *o, idx_hit *hits,
                            idx_error *err)
{
    if (s->ops->search)
        return s->ops->search(s->impl, q, nq, o, hits, err);
    if (!m)
        return idx_fail(err, IDX_E_ARG, "an %s index is searched in a "
                        "matrix loaded from it", s->ops->kind);
    return idx_matrix_search(m, q, nq, o, hits, err);
}

idx_status idx_store_set_ann(idx_store *s, idx_ann ann, idx_error *err)
{
    if (!s->ops->set_ann)
        return idx_fail(err, IDX_E_ARG,
                        "an %s index is searched exactly, in memory, and "
                        "has no approximate index to build (--ann is for a "
                        "PostgreSQL index)", s->ops->kind);
    return s->ops->set_ann(s->impl, ann, err);
}
