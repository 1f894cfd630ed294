/*
 * Loading an SQLite index's vectors into a matrix: from the vector cache
 * beside the file when its stamp is the index's generation (index/vcache.c),
 * else from SQLite's rows, writing a new cache on the way.
 */
#include "index/store_sqlite.h"

#include <stdlib.h>
#include <string.h>

enum { LOAD_CHUNK = 16384 };

/* The fast load: the vectors from a current cache, the keys from the
 * items, whose ids must be the cache's, row for row. IDX_E_FORMAT when
 * they are not (the caller then loads from SQLite). */
static idx_status load_cached(sq_store *s, const vc_map *vm, idx_matrix *m,
                              idx_error *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT id, path FROM items ORDER BY id",
                           -1, &q, NULL) != SQLITE_OK)
        return sq_db_fail(s, err, "loading the keys");
    char **keys = calloc(LOAD_CHUNK, sizeof *keys);
    idx_status st = keys ? idx_matrix_reserve(m, vm->rows, err)
                         : idx_fail(err, IDX_E_NOMEM, "out of memory");
    size_t k = 0, k0 = 0;
    int rc = SQLITE_DONE;
    while (st == IDX_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (k == vm->rows || vm->ids[k] != sqlite3_column_int64(q, 0)) {
            st = idx_fail(err, IDX_E_FORMAT, "the vector cache is stale");
            break;
        }
        if (!(keys[k - k0] = sq_col_strdup(q, 1)))
            st = idx_fail(err, IDX_E_NOMEM, "out of memory");
        else if (++k - k0 == LOAD_CHUNK || k == vm->rows) {
            st = idx_matrix_add(m, (int)(k - k0), vm->ids + k0, keys,
                                vm->vecs + k0 * (size_t)s->dim, err);
            for (size_t i = 0; i < k - k0; i++)
                free(keys[i]), keys[i] = NULL;
            k0 = k;
        }
    }
    if (st == IDX_OK && rc != SQLITE_DONE)
        st = sq_db_fail(s, err, "loading the keys");
    if (st == IDX_OK && k != vm->rows)
        st = idx_fail(err, IDX_E_FORMAT, "the vector cache is stale");
    for (size_t i = 0; keys && i < LOAD_CHUNK; i++)
        free(keys[i]);
    free(keys);
    sqlite3_finalize(q);
    return st;
}

/* The load from SQLite's rows, writing a new cache on the way when `w` is
 * not NULL. */
static idx_status load_rows(sq_store *s, idx_matrix *m, vc_writer *w,
                            idx_error *err)
{
    idx_status st = IDX_OK;
    size_t nb = (size_t)s->dim * sizeof(float);
    float *vecs = malloc(LOAD_CHUNK * nb);
    int64_t *ids = malloc(LOAD_CHUNK * sizeof *ids);
    char **keys = calloc(LOAD_CHUNK, sizeof *keys);
    sqlite3_stmt *q = NULL;
    if (!vecs || !ids || !keys) {
        st = idx_fail(err, IDX_E_NOMEM, "out of memory");
        goto out;
    }
    if (sqlite3_prepare_v2(s->db,
                           "SELECT i.id, i.path, v.v FROM items i "
                           "JOIN vectors v ON v.id = i.id ORDER BY i.id",
                           -1, &q, NULL) != SQLITE_OK) {
        st = sq_db_fail(s, err, "loading the vectors");
        goto out;
    }
    int n = 0, rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if ((size_t)sqlite3_column_bytes(q, 2) != nb) {
            st = idx_fail(err, IDX_E_FORMAT,
                      "%s: item %lld has a vector of %d bytes, not %zu",
                      s->path, (long long)sqlite3_column_int64(q, 0),
                      sqlite3_column_bytes(q, 2), nb);
            break;
        }
        ids[n] = sqlite3_column_int64(q, 0);
        memcpy(vecs + (size_t)n * (size_t)s->dim, sqlite3_column_blob(q, 2),
               nb);
        sq_to_le((uint32_t *)(vecs + (size_t)n * (size_t)s->dim),
              (size_t)s->dim);
        if (!(keys[n] = sq_col_strdup(q, 1))) {
            st = idx_fail(err, IDX_E_NOMEM, "out of memory");
            break;
        }
        if (++n == LOAD_CHUNK) {
            st = idx_matrix_add(m, n, ids, keys, vecs, err);
            vc_writer_add(w, (size_t)n, ids, vecs);
            for (int i = 0; i < n; i++)
                free(keys[i]), keys[i] = NULL;
            n = 0;
            if (st != IDX_OK)
                break;
        }
    }
    if (st == IDX_OK && rc != SQLITE_DONE)
        st = sq_db_fail(s, err, "loading the vectors");
    if (st == IDX_OK && n) {
        st = idx_matrix_add(m, n, ids, keys, vecs, err);
        vc_writer_add(w, (size_t)n, ids, vecs);
    }
    for (int i = 0; i < LOAD_CHUNK; i++)
        free(keys[i]);
out:
    sqlite3_finalize(q);
    free(vecs);
    free(ids);
    free(keys);
    return st;
}

idx_status sq_load(void *vs, idx_precision p, int keep_f32,
                          idx_matrix **out, idx_error *err)
{
    sq_store *s = vs;
    if (s->dim <= 0)
        return idx_fail(err, IDX_E_ARG, "%s: the index is empty (no model yet)",
                    s->path);
    idx_matrix *m;
    idx_status st = idx_matrix_new(s->dim, p, keep_f32, &m, err);
    if (st != IDX_OK)
        return st;
    char *cache = vc_path(s->path);
    /* One read transaction: the rows seen, and the generation the cache
     * is checked against, are one committed state, even while a writer
     * commits batches. */
    if ((st = sq_exec(s, "BEGIN", err)) != IDX_OK)
        goto out;
    uint64_t gen = 0, ident = 0;
    int stamped = sq_read_stamp(s, &gen, &ident);
    vc_map vm;
    if (stamped && cache && vc_open(cache, s->dim, ident, gen, &vm) == 0) {
        st = load_cached(s, &vm, m, err);
        vc_close(&vm);
        if (st != IDX_E_FORMAT) /* loaded, or a real failure */
            goto out;
        /* Stale after all: start again from SQLite. */
        idx_matrix_free(m);
        if ((st = idx_matrix_new(s->dim, p, keep_f32, &m, err)) != IDX_OK) {
            m = NULL;
            goto out;
        }
    }
    /* A directory that cannot be written gets no cache, silently: the
     * load from SQLite is the same, only slower. */
    vc_writer *w = stamped && cache ? vc_writer_begin(cache, s->dim, ident,
                                                      gen)
                                    : NULL;
    st = load_rows(s, m, w, err);
    if (st == IDX_OK)
        vc_writer_finish(w);
    else
        vc_writer_abort(w);
out:
    free(cache);
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (st != IDX_OK) {
        idx_matrix_free(m);
        return st;
    }
    *out = m;
    return IDX_OK;
}
