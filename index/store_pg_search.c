/*
 * Reading a PostgreSQL index: listing and loading it a page at a time,
 * searching it on the server (exactly, or through pgvector's HNSW index)
 * with the candidates re-scored by the matrix's arithmetic, its stats,
 * and the HNSW index itself, built or dropped, and its recall measured
 * against exact search. See index/store_pg.c for the whole design.
 */
#include "index/store_pg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

idx_status pg_each(void *vs,
                          int (*fn)(void *ud, int64_t id, const char *path),
                          void *ud, idx_error *err)
{
    /* A page at a time, by id, so that fn may use the store too. */
    int64_t last = 0;
    for (;;) {
        params p = {0};
        vpg_p_i64(&p, last);
        vpg_p_i64(&p, PAGE);
        PGresult *r = vpg_run(vs, "SELECT id, path FROM vit_items WHERE id > "
                              "$1::int8 ORDER BY id LIMIT $2::int8",
                              &p, "listing", err);
        if (!r)
            return IDX_E_DB;
        int n = PQntuples(r), stop = 0;
        for (int i = 0; i < n && !stop; i++) {
            int oom = 0;
            char *path = vpg_str(r, i, 1, &oom);
            if (!path) {
                PQclear(r);
                return idx_fail(err, IDX_E_NOMEM, "out of memory");
            }
            last = vpg_i64(r, i, 0);
            stop = fn(ud, last, path);
            free(path);
        }
        PQclear(r);
        if (stop || n < PAGE)
            return IDX_OK;
    }
}

/* Adds rows (id, path, v) of r to m. */
static idx_status vpg_add_rows(pg_store *s, PGresult *r, idx_matrix *m,
                               idx_error *err)
{
    int n = PQntuples(r);
    if (n == 0)
        return IDX_OK;
    float *vecs = malloc((size_t)n * (size_t)s->dim * sizeof *vecs);
    int64_t *ids = malloc((size_t)n * sizeof *ids);
    char **keys = calloc((size_t)n, sizeof *keys);
    idx_status st = vecs && ids && keys
                        ? IDX_OK
                        : idx_fail(err, IDX_E_NOMEM, "out of memory");
    for (int i = 0; i < n && st == IDX_OK; i++) {
        int oom = 0;
        ids[i] = vpg_i64(r, i, 0);
        keys[i] = vpg_str(r, i, 1, &oom);
        if (!keys[i])
            st = idx_fail(err, IDX_E_NOMEM, "out of memory");
        else if (vpg_vec_unpack(r, i, 2, s->dim,
                                vecs + (size_t)i * s->dim) != 0)
            st = idx_fail(err, IDX_E_FORMAT, "%s: item %lld has a vector "
                          "of another dimension than %d", s->where,
                          (long long)ids[i], s->dim);
    }
    if (st == IDX_OK)
        st = idx_matrix_add(m, n, ids, keys, vecs, err);
    for (int i = 0; keys && i < n; i++)
        free(keys[i]);
    free(keys);
    free(ids);
    free(vecs);
    return st;
}

idx_status pg_load(void *vs, idx_precision prec, int keep_f32,
                          idx_matrix **out, idx_error *err)
{
    pg_store *s = vs;
    if (vpg_dim(s) <= 0)
        return idx_fail(err, IDX_E_ARG, "%s: the index is empty (no model "
                        "yet)", s->where);
    idx_matrix *m;
    idx_status st = idx_matrix_new(s->dim, prec, keep_f32, &m, err);
    if (st != IDX_OK)
        return st;
    /* One snapshot for every page: one committed state. */
    int own = !s->in_txn;
    if (own)
        st = vpg_exec(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                      "loading the vectors", err);
    int64_t last = 0;
    while (st == IDX_OK) {
        params p = {0};
        vpg_p_i64(&p, last);
        vpg_p_i64(&p, PAGE);
        PGresult *r = vpg_run(s, "SELECT id, path, v FROM vit_items WHERE id > "
                              "$1::int8 ORDER BY id LIMIT $2::int8",
                              &p, "loading the vectors", err);
        if (!r) {
            st = IDX_E_DB;
            break;
        }
        int n = PQntuples(r);
        if (n)
            last = vpg_i64(r, n - 1, 0);
        st = vpg_add_rows(s, r, m, err);
        PQclear(r);
        if (n < PAGE)
            break;
    }
    if (own)
        PQclear(PQexec(s->c, st == IDX_OK ? "COMMIT" : "ROLLBACK"));
    if (st != IDX_OK) {
        idx_matrix_free(m);
        return st;
    }
    *out = m;
    return IDX_OK;
}

static idx_status has_hnsw(pg_store *s, int *has, idx_error *err)
{
    PGresult *r = vpg_run(s, "SELECT to_regclass('vit_items_hnsw') IS NOT NULL",
                          NULL, "reading the schema", err);
    if (!r)
        return IDX_E_DB;
    *has = vpg_bool(r, 0, 0);
    PQclear(r);
    return IDX_OK;
}

/* Sets how the next statements of the open transaction scan: exactly (no
 * index scan, so the HNSW index is not used) or through HNSW, wide
 * enough for `cand` results. */
static idx_status scan_mode(pg_store *s, idx_ann ann, int cand,
                            idx_error *err)
{
    char sql[200];
    if (ann == IDX_ANN_HNSW)
        snprintf(sql, sizeof sql, "SET LOCAL hnsw.ef_search = %d%s",
                 cand < 40 ? 40 : cand > 1000 ? 1000 : cand,
                 s->iterative ? "; SET LOCAL hnsw.iterative_scan = "
                                "relaxed_order" : "");
    else
        snprintf(sql, sizeof sql, "SET LOCAL enable_indexscan = off");
    return vpg_exec(s, sql, "searching", err);
}

/* The server's `cand` best rows (id, path, v) for query q. */
static PGresult *candidates(pg_store *s, const float *q, const char *prefix,
                            int cand, int exact, idx_error *err)
{
    char *v = vpg_vec_pack(q, s->dim);
    if (!v) {
        idx_fail(err, IDX_E_NOMEM, "out of memory");
        return NULL;
    }
    params p = {0};
    vpg_p_bin(&p, v, 4 + 4 * s->dim);
    vpg_p_bin(&p, prefix, prefix ? (int)strlen(prefix) : 0);
    if (!prefix)
        p.v[1] = NULL;
    vpg_p_i64(&p, cand);
    /* Exact: ties in the server's order broken by id, as the matrix
     * breaks them; HNSW's order is the index's. */
    static const char *const sql[2] = {
        "SELECT id, path, v FROM vit_items WHERE $2::bytea IS NULL OR "
        "substr(path, 1, length($2::bytea)) = $2::bytea "
        "ORDER BY v <#> $1::vector LIMIT $3::int8",
        "SELECT id, path, v FROM vit_items WHERE $2::bytea IS NULL OR "
        "substr(path, 1, length($2::bytea)) = $2::bytea "
        "ORDER BY v <#> $1::vector, id LIMIT $3::int8"};
    PGresult *r = vpg_run(s, sql[exact != 0], &p, "searching", err);
    free(v);
    return r;
}

idx_status pg_search(void *vs, const float *q, int nq,
                            const idx_search_opts *o, idx_hit *hits,
                            idx_error *err)
{
    pg_store *s = vs;
    int k = o->k > 0 ? o->k : 10;
    for (size_t i = 0; i < (size_t)nq * (size_t)k; i++)
        hits[i] = (idx_hit){.id = -1};
    if (vpg_dim(s) <= 0)
        return IDX_OK;
    idx_ann ann = o->ann;
    int hnsw = 0;
    idx_status st = has_hnsw(s, &hnsw, err);
    if (st != IDX_OK)
        return st;
    if (ann == IDX_ANN_DEFAULT)
        ann = hnsw ? IDX_ANN_HNSW : IDX_ANN_EXACT;
    if (ann == IDX_ANN_HNSW && !hnsw)
        return idx_fail(err, IDX_E_ARG, "%s: the index has no HNSW index "
                        "('vit index add --ann hnsw' builds one)", s->where);
    int cand = k + CANDIDATES;
    int own = !s->in_txn;
    if (own &&
        (st = vpg_exec(s, "BEGIN READ ONLY", "searching", err)) != IDX_OK)
        return st;
    st = scan_mode(s, ann, cand, err);
    idx_search_opts mo = idx_search_opts_default();
    mo.k = k;
    mo.threads = 1;
    for (int i = 0; i < nq && st == IDX_OK; i++) {
        PGresult *r = candidates(s, q + (size_t)i * s->dim, o->prefix, cand,
                                 ann == IDX_ANN_EXACT, err);
        if (!r) {
            st = IDX_E_DB;
            break;
        }
        /* Re-scored by the matrix: its scores, its order. */
        idx_matrix *m;
        st = idx_matrix_new(s->dim, IDX_FP32, 0, &m, err);
        if (st == IDX_OK)
            st = vpg_add_rows(s, r, m, err);
        if (st == IDX_OK)
            st = idx_matrix_search(m, q + (size_t)i * s->dim, 1, &mo,
                                   hits + (size_t)i * k, err);
        idx_matrix_free(m);
        PQclear(r);
    }
    if (own)
        PQclear(PQexec(s->c, "COMMIT"));
    else /* the rest of the caller's transaction scans as it likes */
        PQclear(PQexec(s->c, "SET LOCAL enable_indexscan = on"));
    return st;
}

/* recall@10 of the HNSW index against exact search, on queries made of
 * the index's own vectors, two at a time (their normalized sum: a query
 * near items but none of them), evenly spaced through the ids. */
static idx_status measure_recall(pg_store *s, idx_stats *x, idx_error *err)
{
    enum { K = 10 };
    int nq = x->items < RECALL_QUERIES ? (int)x->items : RECALL_QUERIES;
    params p = {0};
    vpg_p_i64(&p, 2 * nq);
    idx_status st = vpg_exec(s, "BEGIN READ ONLY", "measuring recall", err);
    if (st != IDX_OK)
        return st;
    PGresult *r = vpg_run(
        s,
        "SELECT id, id, v FROM (SELECT id, v, row_number() OVER (ORDER BY "
        "id) AS r, count(*) OVER () AS n FROM vit_items) x WHERE (r - 1) % "
        "greatest(n / $1::int8, 1) = 0 ORDER BY r LIMIT $1::int8",
        &p, "measuring recall", err);
    float *v = r ? malloc((size_t)PQntuples(r) * s->dim * sizeof *v) : NULL;
    int nv = r ? PQntuples(r) : 0, hit = 0, want = 0;
    if (r && !v && nv)
        st = idx_fail(err, IDX_E_NOMEM, "out of memory");
    else if (!r)
        st = IDX_E_DB;
    for (int i = 0; i < nv && st == IDX_OK; i++)
        if (vpg_vec_unpack(r, i, 2, s->dim, v + (size_t)i * s->dim) != 0)
            st = idx_fail(err, IDX_E_FORMAT, "%s: a vector of another "
                          "dimension", s->where);
    PQclear(r);
    float *q = malloc((size_t)s->dim * sizeof *q);
    if (!q && st == IDX_OK)
        st = idx_fail(err, IDX_E_NOMEM, "out of memory");
    int done = 0;
    for (int j = 0; j < nq && st == IDX_OK; j++) {
        const float *a = v + (size_t)(2 * j % nv) * s->dim;
        const float *b = v + (size_t)((2 * j + 1) % nv) * s->dim;
        double n2 = 0;
        for (int d = 0; d < s->dim; d++)
            q[d] = a[d] + b[d], n2 += (double)q[d] * q[d];
        for (int d = 0; d < s->dim && n2 > 0; d++)
            q[d] = (float)(q[d] / sqrt(n2));
        int64_t ids[2][K + CANDIDATES];
        int got[2] = {0, 0};
        for (int pass = 0; pass < 2 && st == IDX_OK; pass++) {
            idx_ann ann = pass ? IDX_ANN_HNSW : IDX_ANN_EXACT;
            if ((st = scan_mode(s, ann, K + CANDIDATES, err)) != IDX_OK)
                break;
            PGresult *c = candidates(s, q, NULL, pass ? K + CANDIDATES : K,
                                     !pass, err);
            if (!c) {
                st = IDX_E_DB;
                break;
            }
            got[pass] = PQntuples(c);
            for (int i = 0; i < got[pass]; i++)
                ids[pass][i] = vpg_i64(c, i, 0);
            PQclear(c);
        }
        /* A search re-scores HNSW's K + 16 candidates and keeps the best
         * K: every one of the exact K among the candidates is kept. */
        for (int i = 0; i < got[0] && st == IDX_OK; i++)
            for (int t = 0; t < got[1]; t++)
                if (ids[1][t] == ids[0][i]) {
                    hit++;
                    break;
                }
        want += got[0];
        done++;
    }
    PQclear(PQexec(s->c, st == IDX_OK ? "COMMIT" : "ROLLBACK"));
    free(q);
    free(v);
    if (st == IDX_OK && want) {
        x->recall = (double)hit / want;
        x->recall_queries = done;
    }
    return st;
}

static idx_status stats(pg_store *s, idx_stats *out, int measure,
                        idx_error *err)
{
    idx_stats x;
    memset(&x, 0, sizeof x);
    idx_status st = vpg_model_dim(s, &x.model, &x.has_model, err);
    if (st != IDX_OK)
        return st;
    x.dim = x.has_model ? x.model.dim : 0;
    PGresult *r = vpg_run(
        s,
        "SELECT (SELECT count(*) FROM vit_items), (SELECT count(*) FROM "
        "vit_items WHERE hash IS NOT NULL), coalesce((SELECT min(added) "
        "FROM vit_items), 0), coalesce((SELECT max(added) FROM "
        "vit_items), 0), pg_total_relation_size('vit_items') + "
        "pg_total_relation_size('vit_meta')",
        NULL, "counting", err);
    if (!r)
        return IDX_E_DB;
    x.items = vpg_i64(r, 0, 0);
    x.with_hash = vpg_i64(r, 0, 1);
    x.first_added = vpg_f64(r, 0, 2);
    x.last_added = vpg_f64(r, 0, 3);
    x.file_bytes = vpg_i64(r, 0, 4);
    x.vector_bytes = x.items * (int64_t)x.dim * 4;
    PQclear(r);
    int hnsw = 0;
    if ((st = has_hnsw(s, &hnsw, err)) != IDX_OK)
        return st;
    if (hnsw)
        snprintf(x.ann, sizeof x.ann, "hnsw");
    if (hnsw && measure && x.items > 0 &&
        (st = measure_recall(s, &x, err)) != IDX_OK)
        return st;
    *out = x;
    return IDX_OK;
}

idx_status pg_stats(void *vs, idx_stats *out, idx_error *err)
{
    return stats(vs, out, 1, err);
}

idx_status pg_stats_quick(void *vs, idx_stats *out, idx_error *err)
{
    return stats(vs, out, 0, err);
}

idx_status pg_set_ann(void *vs, idx_ann ann, idx_error *err)
{
    pg_store *s = vs;
    if (vpg_dim(s) <= 0)
        return idx_fail(err, IDX_E_ARG, "%s: the index is empty; add to it "
                        "before building an HNSW index", s->where);
    /* pgvector's defaults (m 16, ef_construction 64), for inner product
     * on the unit vectors the index holds. */
    return vpg_exec(s, ann == IDX_ANN_HNSW
                    ? "CREATE INDEX IF NOT EXISTS vit_items_hnsw ON "
                    "vit_items USING hnsw (v vector_ip_ops)"
                    : "DROP INDEX IF EXISTS vit_items_hnsw",
                    ann == IDX_ANN_HNSW ? "building the HNSW index"
                    : "dropping the HNSW index",
                    err);
}

