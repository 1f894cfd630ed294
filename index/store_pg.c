/*
 * The index in a PostgreSQL database with pgvector: the same items as the
 * SQLite file (a table vit_items keyed by path, with the content hash,
 * size, mtime, model id, time added, metadata JSON and the vector in a
 * pgvector column of the model's dimension) and the same model record (a
 * key/value table vit_meta). Several processes on several machines write
 * and search it at once, so what the SQLite store gets from being one
 * file with one writer is given its server meaning:
 *
 *  - the writer's claim (flock) is a session advisory lock, taken by a
 *    `vit index add` (whose move and copy decisions read the index before
 *    they commit); serving workers, which only put and remove by key, need
 *    none;
 *  - a batch transaction takes an advisory transaction lock at begin, so
 *    that batches of every writer commit one after another as in SQLite's
 *    WAL, and the unique path (INSERT ... ON CONFLICT) keeps one item per
 *    key whoever writes it;
 *  - the vector cache and its generation stamp have no counterpart: the
 *    vectors are searched on the server, where every committed batch is
 *    (a load reads one snapshot, REPEATABLE READ);
 *  - the model record is written under the same transaction lock, so two
 *    first adds at once record one model and the second is checked
 *    against it.
 *
 * Search runs on the server (ORDER BY v <#> q LIMIT k + 16, exactly, or
 * through pgvector's HNSW index), and the candidates are re-scored here by
 * the matrix's own fp32 arithmetic: pgvector sums its inner products in
 * another order, so its scores differ from the matrix's in the last bits,
 * and re-scoring makes both stores give the same scores and the same
 * order. Keys are bytea (a file name need not be UTF-8); values travel in
 * libpq's binary format, vectors as pgvector's (int16 dim, int16 0, dim
 * big-endian float4).
 */
#include "index/store_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void quiet(void *arg, const char *msg)
{
    (void)arg, (void)msg; /* the library prints nothing */
}

/* The server's message, its first line. */
static const char *first_line(const char *m, char *buf, size_t n)
{
    snprintf(buf, n, "%s", m && *m ? m : "unknown error");
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
    return buf;
}

static idx_status pg_fail(pg_store *s, idx_error *err, PGresult *r,
                          const char *what)
{
    char buf[400];
    if (PQstatus(s->c) != CONNECTION_OK)
        return idx_fail(err, IDX_E_IO,
                        "%s: %s: the connection to the server was lost (%s); "
                        "what was committed stays, and running the same "
                        "command again does the rest",
                        s->where, what,
                        first_line(PQerrorMessage(s->c), buf, sizeof buf));
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    idx_status st = state && (strncmp(state, "53", 2) == 0 ||
                              strncmp(state, "08", 2) == 0)
                        ? IDX_E_IO
                        : IDX_E_DB;
    return idx_fail(err, st, "%s: %s: %s", s->where, what,
                    first_line(r ? PQresultErrorMessage(r)
                                 : PQerrorMessage(s->c),
                               buf, sizeof buf));
}

void vpg_p_bin(params *p, const void *b, int len)
{
    p->v[p->n] = b, p->len[p->n] = len, p->fmt[p->n++] = 1;
}

void vpg_p_text(params *p, const char *t)
{
    p->v[p->n] = t, p->len[p->n] = 0, p->fmt[p->n++] = 0;
}

void vpg_p_i64(params *p, int64_t x)
{
    uint64_t u = (uint64_t)x;
    for (int i = 0; i < 8; i++)
        p->num[p->n][i] = (char)(u >> (56 - 8 * i));
    vpg_p_bin(p, p->num[p->n], 8);
}

void vpg_p_f64(params *p, double x)
{
    int64_t i;
    memcpy(&i, &x, 8);
    vpg_p_i64(p, i);
}

void vpg_p_bool(params *p, int b)
{
    p->num[p->n][0] = (char)(b != 0);
    vpg_p_bin(p, p->num[p->n], 1);
}

static uint64_t be64(const char *b)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = u << 8 | (unsigned char)b[i];
    return u;
}

int64_t vpg_i64(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : (int64_t)be64(PQgetvalue(r, row,
                                                                  col));
}

double vpg_f64(PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    uint64_t u = be64(PQgetvalue(r, row, col));
    double d;
    memcpy(&d, &u, 8);
    return d;
}

int vpg_bool(PGresult *r, int row, int col)
{
    return !PQgetisnull(r, row, col) && PQgetvalue(r, row, col)[0];
}

/* A text or bytea value as a C string, malloc'd; NULL for SQL NULL (and
 * *oom set when out of memory). */
char *vpg_str(PGresult *r, int row, int col, int *oom)
{
    if (PQgetisnull(r, row, col))
        return NULL;
    int n = PQgetlength(r, row, col);
    char *t = malloc((size_t)n + 1);
    if (!t) {
        *oom = 1;
        return NULL;
    }
    memcpy(t, PQgetvalue(r, row, col), (size_t)n);
    t[n] = '\0';
    return t;
}

/* pgvector's binary form <-> floats. */
char *vpg_vec_pack(const float *v, int dim)
{
    char *b = malloc(4 + 4 * (size_t)dim);
    if (!b)
        return NULL;
    b[0] = (char)(dim >> 8), b[1] = (char)dim, b[2] = b[3] = 0;
    for (int i = 0; i < dim; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int j = 0; j < 4; j++)
            b[4 + 4 * i + j] = (char)(u >> (24 - 8 * j));
    }
    return b;
}

int vpg_vec_unpack(PGresult *r, int row, int col, int dim, float *out)
{
    const unsigned char *b = (const unsigned char *)PQgetvalue(r, row, col);
    if (PQgetisnull(r, row, col) ||
        PQgetlength(r, row, col) != 4 + 4 * dim || (b[0] << 8 | b[1]) != dim)
        return -1;
    for (int i = 0; i < dim; i++) {
        const unsigned char *w = b + 4 + 4 * i;
        uint32_t u = (uint32_t)w[0] << 24 | (uint32_t)w[1] << 16 |
                     (uint32_t)w[2] << 8 | w[3];
        memcpy(&out[i], &u, 4);
    }
    return 0;
}

/* One statement with parameters, results binary. NULL on failure, with
 * err set. */
PGresult *vpg_run(pg_store *s, const char *sql, const params *p,
                  const char *what, idx_error *err)
{
    PGresult *r = PQexecParams(s->c, sql, p ? p->n : 0, NULL,
                               p ? p->v : NULL, p ? p->len : NULL,
                               p ? p->fmt : NULL, 1);
    ExecStatusType t = PQresultStatus(r);
    if (t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK)
        return r;
    pg_fail(s, err, r, what);
    PQclear(r);
    return NULL;
}

/* Statements without parameters (several, separated by ';'). */
idx_status vpg_exec(pg_store *s, const char *sql, const char *what,
                    idx_error *err)
{
    PGresult *r = PQexec(s->c, sql);
    ExecStatusType t = PQresultStatus(r);
    idx_status st = t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK
                        ? IDX_OK
                        : pg_fail(s, err, r, what);
    PQclear(r);
    return st;
}

static idx_status lock_batch(pg_store *s, idx_error *err)
{
    return vpg_exec(s, "SELECT pg_advisory_xact_lock(1447646257, "
                    "hashtext(current_schema()))",
                    "waiting for the other writers", err);
}

static void pg_close(void *vs)
{
    pg_store *s = vs;
    if (!s)
        return;
    PQfinish(s->c); /* ends the session: its claim goes with it */
    free(s->where);
    free(s);
}

idx_status vpg_model_dim(pg_store *s, idx_model *m, int *has,
                         idx_error *err)
{
    PGresult *r = vpg_run(s, "SELECT key, value FROM vit_meta", NULL,
                          "reading the model", err);
    if (!r)
        return IDX_E_DB;
    idx_model x;
    memset(&x, 0, sizeof x);
    int n = 0;
    for (int i = 0; i < PQntuples(r); i++)
        n += idx_model_set(&x, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
    PQclear(r);
    *has = n == 3;
    if (*has) {
        *m = x;
        s->dim = x.dim;
        snprintf(s->model_id, sizeof s->model_id, "%s", x.id);
    }
    return IDX_OK;
}

int vpg_dim(pg_store *s)
{
    idx_model m;
    int has;
    if (s->dim <= 0)
        vpg_model_dim(s, &m, &has, NULL);
    return s->dim;
}

static const char schema[] =
    "CREATE TABLE vit_meta(key text PRIMARY KEY, value text NOT NULL);"
    "CREATE TABLE vit_items("
    "  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    "  path bytea NOT NULL UNIQUE,"
    "  hash bytea,"
    "  size bigint NOT NULL DEFAULT -1,"
    "  mtime_ns bigint NOT NULL DEFAULT 0,"
    "  model_id text NOT NULL,"
    "  added double precision NOT NULL,"
    "  meta json CHECK (meta IS NULL OR json_typeof(meta) = 'object'),"
    "  v vector NOT NULL);"
    /* Vectors inline when they fit a page (to 8 KB rows: 2000 floats), not
     * moved to the TOAST table past 2 KB: a scan reads them in place. */
    "ALTER TABLE vit_items ALTER COLUMN v SET STORAGE MAIN;"
    "ALTER TABLE vit_items SET (toast_tuple_target = 8160);"
    "CREATE INDEX vit_items_hash ON vit_items(hash) WHERE hash IS NOT NULL;"
    /* Stats from the indexes, not a scan of every vector: a serving
     * worker counts the items after each request it commits. */
    "CREATE INDEX vit_items_added ON vit_items(added);"
    "INSERT INTO vit_meta VALUES ('format', 'vit-index'), ('schema', '1');";

/* Whether the index's tables exist, and whether pgvector is installed. */
static idx_status probe(pg_store *s, int *meta, int *items, int *vector,
                        idx_error *err)
{
    PGresult *r = vpg_run(s, "SELECT to_regclass('vit_meta') IS NOT NULL, "
                          "to_regclass('vit_items') IS NOT NULL, "
                          "EXISTS (SELECT 1 FROM pg_extension "
                          "WHERE extname = 'vector')",
                          NULL, "reading the schema", err);
    if (!r)
        return IDX_E_DB;
    *meta = vpg_bool(r, 0, 0), *items = vpg_bool(r, 0, 1);
    *vector = vpg_bool(r, 0, 2);
    PQclear(r);
    return IDX_OK;
}

/* Makes the tables of a new index in one transaction, under the batch
 * lock: another process creating the same index at this moment waits,
 * then finds them and uses them. */
static idx_status create(pg_store *s, idx_error *err)
{
    idx_status st = vpg_exec(s, "BEGIN", "setting up a new index", err);
    if (st == IDX_OK)
        st = lock_batch(s, err);
    int meta = 0, items = 0, vector = 0;
    if (st == IDX_OK)
        st = probe(s, &meta, &items, &vector, err);
    if (st == IDX_OK && !vector &&
        (st = vpg_exec(s, "CREATE EXTENSION IF NOT EXISTS vector",
                       "installing pgvector (CREATE EXTENSION vector, which "
                       "needs the extension on the server and the right to "
                       "create it)",
                       err)) != IDX_OK)
        goto out;
    if (st == IDX_OK && !meta)
        st = vpg_exec(s, schema, "setting up a new index", err);
    if (st == IDX_OK)
        return vpg_exec(s, "COMMIT", "setting up a new index", err);
out:
    PQclear(PQexec(s->c, "ROLLBACK"));
    return st;
}

static idx_status pg_open(const char *uri, idx_open_mode mode, void **out,
                          idx_error *err)
{
    pg_store *s = calloc(1, sizeof *s);
    if (!s || !(s->where = strdup(uri))) {
        free(s);
        return idx_fail(err, IDX_E_NOMEM, "out of memory");
    }
    char buf[400];
    idx_status st = IDX_OK;
    s->c = PQconnectdb(uri);
    if (!s->c) {
        st = idx_fail(err, IDX_E_NOMEM, "out of memory");
        goto fail;
    }
    if (PQstatus(s->c) != CONNECTION_OK) {
        st = idx_fail(err, IDX_E_IO, "%s: cannot connect to the server: %s",
                      s->where,
                      first_line(PQerrorMessage(s->c), buf, sizeof buf));
        goto fail;
    }
    PQsetNoticeProcessor(s->c, quiet, NULL);
    int meta, items, vector;
    if ((st = probe(s, &meta, &items, &vector, err)) != IDX_OK)
        goto fail;
    if (!meta && !items && mode == IDX_OPEN_READ) {
        st = idx_fail(err, IDX_E_IO, "%s: no vit index in this database "
                      "(vit index add makes one)", s->where);
        goto fail;
    }
    if (!meta && !items) {
        if ((st = create(s, err)) != IDX_OK)
            goto fail;
        items = 1;
    }
    PGresult *r = vpg_run(s, "SELECT (SELECT value FROM vit_meta WHERE key = "
                          "'format'), (SELECT value FROM vit_meta WHERE key "
                          "= 'schema'), (SELECT extversion FROM pg_extension "
                          "WHERE extname = 'vector')",
                          NULL, "reading the schema", err);
    if (!r) {
        st = idx_fail(err, IDX_E_FORMAT, "%s: not a vit index (its tables "
                      "vit_meta and vit_items are another program's)",
                      s->where);
        goto fail;
    }
    int oom = 0;
    char *format = vpg_str(r, 0, 0, &oom), *ver = vpg_str(r, 0, 1, &oom),
         *ext = vpg_str(r, 0, 2, &oom);
    PQclear(r);
    int newer = ver && atoi(ver) > SCHEMA_VERSION;
    int ok = format && strcmp(format, "vit-index") == 0 && items;
    s->iterative = ext && (atoi(ext) > 0 || atoi(ext + 2) >= 8);
    free(format), free(ver), free(ext);
    if (oom) {
        st = idx_fail(err, IDX_E_NOMEM, "out of memory");
        goto fail;
    }
    if (!ok) {
        st = idx_fail(err, IDX_E_FORMAT, "%s: not a vit index (its tables "
                      "vit_meta and vit_items are another program's)",
                      s->where);
        goto fail;
    }
    if (newer) {
        st = idx_fail(err, IDX_E_FORMAT,
                      "%s: an index of a newer schema than this vit reads",
                      s->where);
        goto fail;
    }
    idx_model m;
    int has;
    if ((st = vpg_model_dim(s, &m, &has, err)) != IDX_OK)
        goto fail;
    *out = s;
    return IDX_OK;
fail:
    pg_close(s);
    return st;
}

static idx_status pg_claim(void *vs, idx_error *err)
{
    pg_store *s = vs;
    if (s->claimed)
        return IDX_OK;
    PGresult *r = vpg_run(s, "SELECT pg_try_advisory_lock(1447646258, "
                          "hashtext(current_schema()))",
                          NULL, "claiming the index", err);
    if (!r)
        return IDX_E_DB;
    int got = vpg_bool(r, 0, 0);
    PQclear(r);
    if (!got)
        return idx_fail(err, IDX_E_IO,
                        "%s: another process is writing to this index "
                        "(another 'vit index add'); wait for it", s->where);
    s->claimed = 1;
    return IDX_OK;
}

static idx_status pg_model(void *vs, idx_model *out, int *has, idx_error *err)
{
    return vpg_model_dim(vs, out, has, err);
}

static idx_status pg_begin(void *vs, idx_error *err)
{
    pg_store *s = vs;
    idx_status st = vpg_exec(s, "BEGIN", "starting a batch", err);
    if (st == IDX_OK && (st = lock_batch(s, err)) != IDX_OK)
        PQclear(PQexec(s->c, "ROLLBACK"));
    s->in_txn = st == IDX_OK;
    return st;
}

static void pg_rollback(void *vs)
{
    pg_store *s = vs;
    if (s->in_txn && PQstatus(s->c) == CONNECTION_OK)
        PQclear(PQexec(s->c, "ROLLBACK"));
    s->in_txn = 0;
}

static idx_status pg_commit(void *vs, idx_error *err)
{
    pg_store *s = vs;
    PGresult *r = PQexec(s->c, "COMMIT");
    idx_status st = IDX_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        st = pg_fail(s, err, r, "committing");
    else if (strcmp(PQcmdStatus(r), "COMMIT") != 0)
        st = idx_fail(err, IDX_E_DB, "%s: committing: the transaction had "
                      "failed and was rolled back", s->where);
    PQclear(r);
    s->in_txn = 0;
    return st;
}

static idx_status put_meta(pg_store *s, const char *k, const char *v,
                           idx_error *err)
{
    params p = {0};
    vpg_p_text(&p, k);
    vpg_p_text(&p, v);
    PGresult *r = vpg_run(s, "INSERT INTO vit_meta(key, value) VALUES ($1, $2) "
                          "ON CONFLICT (key) DO UPDATE SET value = "
                          "EXCLUDED.value",
                          &p, "recording the model", err);
    PQclear(r);
    return r ? IDX_OK : IDX_E_DB;
}

static idx_status check_model(pg_store *s, const idx_model *m, int record,
                              idx_error *err)
{
    idx_model have;
    int has = 0;
    idx_status st = vpg_model_dim(s, &have, &has, err);
    if (st != IDX_OK)
        return st;
    if (has) {
        if ((st = idx_model_compare(s->where, &have, m, err)) != IDX_OK ||
            !record)
            return st;
        if (!have.precision[0] && m->precision[0] &&
            (st = put_meta(s, "precision", m->precision, err)) != IDX_OK)
            return st;
        if (!have.preprocess[0] && m->preprocess[0] &&
            (st = put_meta(s, "preprocess", m->preprocess, err)) != IDX_OK)
            return st;
        if (strcmp(have.dir, m->dir) != 0)
            return put_meta(s, "dir", m->dir, err);
        return IDX_OK;
    }
    if (!record)
        return idx_fail(err, IDX_E_MODEL, "%s: the index has no model yet",
                        s->where);
    char dim[16], alter[96];
    snprintf(dim, sizeof dim, "%d", m->dim);
    snprintf(alter, sizeof alter,
             "ALTER TABLE vit_items ALTER COLUMN v TYPE vector(%d)", m->dim);
    const char *kv[8][2] = {{"model_id", m->id},
                            {"fingerprint", m->fingerprint},
                            {"name", m->name},
                            {"architecture", m->architecture},
                            {"dir", m->dir},
                            {"dim", dim},
                            {"precision", m->precision},
                            {"preprocess", m->preprocess}};
    for (int i = 0; i < 8 && st == IDX_OK; i++)
        if (kv[i][1][0] || i < 6)
            st = put_meta(s, kv[i][0], kv[i][1], err);
    if (st == IDX_OK)
        st = vpg_exec(s, alter, "recording the model", err);
    if (st == IDX_OK) {
        s->dim = m->dim;
        snprintf(s->model_id, sizeof s->model_id, "%s", m->id);
    }
    return st;
}

static idx_status pg_check_model(void *vs, const idx_model *m, int record,
                                 idx_error *err)
{
    pg_store *s = vs;
    /* Recorded under the batch lock: two first adds at once record one
     * model, and the second is checked against it. */
    int own = record && !s->in_txn;
    idx_status st = own ? pg_begin(s, err) : IDX_OK;
    if (st == IDX_OK)
        st = check_model(s, m, record, err);
    if (own && st == IDX_OK)
        return pg_commit(s, err);
    if (own)
        pg_rollback(s);
    return st;
}

#define ITEM_COLS "id, path, hash, size, mtime_ns, added, meta::text"

static idx_status get_item(pg_store *s, PGresult *r, idx_item *out,
                           int *found, idx_error *err)
{
    *found = 0;
    if (!r)
        return IDX_E_DB;
    idx_status st = IDX_OK;
    if (PQntuples(r) > 0) {
        idx_item it;
        memset(&it, 0, sizeof it);
        int oom = 0;
        it.id = vpg_i64(r, 0, 0);
        it.path = vpg_str(r, 0, 1, &oom);
        if (!PQgetisnull(r, 0, 2) && PQgetlength(r, 0, 2) == 32) {
            memcpy(it.hash, PQgetvalue(r, 0, 2), 32);
            it.has_hash = 1;
        }
        it.size = vpg_i64(r, 0, 3);
        it.mtime_ns = vpg_i64(r, 0, 4);
        it.added = vpg_f64(r, 0, 5);
        it.meta = vpg_str(r, 0, 6, &oom);
        if (oom || !it.path) {
            idx_item_free(&it);
            st = idx_fail(err, IDX_E_NOMEM, "out of memory");
        } else {
            *out = it;
            *found = 1;
        }
    }
    PQclear(r);
    return st;
}

static idx_status pg_get_path(void *vs, const char *path, idx_item *out,
                              int *found, idx_error *err)
{
    params p = {0};
    vpg_p_bin(&p, path, (int)strlen(path));
    return get_item(vs, vpg_run(vs, "SELECT " ITEM_COLS " FROM vit_items "
                                "WHERE path = $1::bytea",
                                &p, "looking an item up", err),
                    out, found, err);
}

static idx_status pg_get_hash(void *vs, const uint8_t hash[32], int64_t after,
                              idx_item *out, int *found, idx_error *err)
{
    params p = {0};
    vpg_p_bin(&p, hash, 32);
    vpg_p_i64(&p, after);
    return get_item(vs, vpg_run(vs, "SELECT " ITEM_COLS " FROM vit_items "
                                "WHERE hash = $1::bytea AND id > $2::int8 "
                                "ORDER BY id LIMIT 1",
                                &p, "looking an item up", err),
                    out, found, err);
}

/* Whether `meta` is a JSON object, asked of the server; inside a batch
 * under a savepoint, since a failed statement would end the batch. */
static idx_status meta_ok(pg_store *s, const char *meta, const char *path,
                          idx_error *err)
{
    if (s->in_txn && vpg_exec(s, "SAVEPOINT vit_meta", "checking metadata",
                              err) != IDX_OK)
        return IDX_E_DB;
    params p = {0};
    vpg_p_text(&p, meta);
    PGresult *r = PQexecParams(s->c, "SELECT json_typeof($1::json) = "
                                     "'object'",
                               1, NULL, p.v, p.len, p.fmt, 1);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK && vpg_bool(r, 0, 0);
    PQclear(r);
    if (PQstatus(s->c) != CONNECTION_OK)
        return pg_fail(s, err, NULL, "checking metadata");
    if (s->in_txn && vpg_exec(s, ok ? "RELEASE vit_meta"
                              : "ROLLBACK TO vit_meta; RELEASE vit_meta",
                              "checking metadata", err) != IDX_OK)
        return IDX_E_DB;
    return ok ? IDX_OK
              : idx_fail(err, IDX_E_ARG, "%s: metadata is not a JSON object",
                         path);
}

static idx_status pg_put(void *vs, const idx_item *it, const float *vec,
                         int64_t *id, int *replaced, idx_error *err)
{
    pg_store *s = vs;
    if (vpg_dim(s) <= 0)
        return idx_fail(err, IDX_E_ARG, "%s: no model recorded yet",
                        s->where);
    if (!it->path || !vec)
        return idx_fail(err, IDX_E_ARG, "an item needs a key and a vector");
    idx_status st;
    if (it->meta && (st = meta_ok(s, it->meta, it->path, err)) != IDX_OK)
        return st;
    char *v = vpg_vec_pack(vec, s->dim);
    if (!v)
        return idx_fail(err, IDX_E_NOMEM, "out of memory");
    params p = {0};
    vpg_p_bin(&p, it->path, (int)strlen(it->path));
    if (it->has_hash)
        vpg_p_bin(&p, it->hash, 32);
    else
        vpg_p_bin(&p, NULL, 0);
    vpg_p_i64(&p, it->size);
    vpg_p_i64(&p, it->mtime_ns);
    vpg_p_text(&p, s->model_id);
    vpg_p_f64(&p, it->added > 0 ? it->added : idx_now_s());
    vpg_p_text(&p, it->meta);
    vpg_p_bin(&p, v, 4 + 4 * s->dim);
    /* xmax is set on the row an ON CONFLICT update wrote: replaced. */
    PGresult *r = vpg_run(
        s,
        "INSERT INTO vit_items(path, hash, size, mtime_ns, model_id, added, "
        "meta, v) VALUES ($1::bytea, $2::bytea, $3::int8, $4::int8, $5, "
        "$6::float8, $7::json, $8::vector) ON CONFLICT (path) DO UPDATE "
        "SET hash = EXCLUDED.hash, size = EXCLUDED.size, mtime_ns = "
        "EXCLUDED.mtime_ns, model_id = EXCLUDED.model_id, added = "
        "EXCLUDED.added, meta = EXCLUDED.meta, v = EXCLUDED.v "
        "RETURNING id, xmax::text <> '0'",
        &p, "writing an item", err);
    free(v);
    if (!r)
        return IDX_E_DB;
    *id = vpg_i64(r, 0, 0);
    if (replaced)
        *replaced = vpg_bool(r, 0, 1);
    PQclear(r);
    return IDX_OK;
}

static idx_status pg_move(void *vs, int64_t id, const char *path,
                          int64_t size, int64_t mtime_ns, idx_error *err)
{
    /* Another writer may have put this path since the move was decided:
     * the moved item, whose content the file has, takes its place. */
    params p = {0};
    vpg_p_i64(&p, id);
    vpg_p_bin(&p, path, (int)strlen(path));
    PGresult *r = vpg_run(vs, "DELETE FROM vit_items WHERE path = $2::bytea "
                          "AND id <> $1::int8",
                          &p, "moving an item", err);
    if (!r)
        return IDX_E_DB;
    PQclear(r);
    vpg_p_i64(&p, size);
    vpg_p_i64(&p, mtime_ns);
    vpg_p_f64(&p, idx_now_s());
    r = vpg_run(vs, "UPDATE vit_items SET path = $2::bytea, size = $3::int8, "
                "mtime_ns = $4::int8, added = $5::float8 WHERE id = $1::int8",
                &p, "moving an item", err);
    PQclear(r);
    return r ? IDX_OK : IDX_E_DB;
}

static idx_status pg_remove(void *vs, const char *path, int under,
                            int64_t **ids, size_t *n, idx_error *err)
{
    char *lo, *hi;
    if (idx_dir_range(path, under, &lo, &hi) != 0)
        return idx_fail(err, IDX_E_NOMEM, "out of memory");
    params p = {0};
    vpg_p_bin(&p, path, (int)strlen(path));
    vpg_p_bool(&p, under);
    vpg_p_bin(&p, lo, (int)strlen(lo));
    vpg_p_bin(&p, hi, (int)strlen(hi));
    PGresult *r = vpg_run(vs, "DELETE FROM vit_items WHERE path = $1::bytea OR "
                          "($2::bool AND path >= $3::bytea AND path < "
                          "$4::bytea) RETURNING id",
                          &p, "removing", err);
    free(lo);
    free(hi);
    if (!r)
        return IDX_E_DB;
    idx_status st = IDX_OK;
    for (int i = 0; i < PQntuples(r) && st == IDX_OK; i++)
        if (idx_push_id(ids, n, vpg_i64(r, i, 0)) != 0)
            st = idx_fail(err, IDX_E_NOMEM, "out of memory");
    PQclear(r);
    return st;
}

static idx_status pg_remove_id(void *vs, int64_t id, idx_error *err)
{
    pg_store *s = vs;
    params p = {0};
    vpg_p_i64(&p, id);
    PGresult *r = vpg_run(s, "DELETE FROM vit_items WHERE id = $1::int8", &p,
                          "removing", err);
    if (!r)
        return IDX_E_DB;
    int none = strcmp(PQcmdTuples(r), "0") == 0;
    PQclear(r);
    if (none)
        return idx_fail(err, IDX_E_NOTFOUND, "%s: no item %lld", s->where,
                        (long long)id);
    return IDX_OK;
}

static int pg_fetch(void *vs, int64_t id, float *out)
{
    pg_store *s = vs;
    params p = {0};
    vpg_p_i64(&p, id);
    if (vpg_dim(s) <= 0)
        return -1;
    PGresult *r = vpg_run(s, "SELECT v FROM vit_items WHERE id = $1::int8",
                          &p, "reading a vector", NULL);
    int rc = r && PQntuples(r) == 1 ? vpg_vec_unpack(r, 0, 0, s->dim, out) : -1;
    PQclear(r);
    return rc;
}

const idx_store_ops idx_pg_ops = {
    .kind = "PostgreSQL",
    .open = pg_open,
    .close = pg_close,
    .claim = pg_claim,
    .model = pg_model,
    .check_model = pg_check_model,
    .get_path = pg_get_path,
    .get_hash = pg_get_hash,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .put = pg_put,
    .move = pg_move,
    .remove = pg_remove,
    .remove_id = pg_remove_id,
    .fetch = pg_fetch,
    .stats = pg_stats,
    .stats_quick = pg_stats_quick,
    .each = pg_each,
    .load = pg_load,
    .search = pg_search,
    .set_ann = pg_set_ann,
};
