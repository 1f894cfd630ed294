/*
 * The PostgreSQL store's handle and helpers, shared by index/store_pg.c
 * (connecting, the schema, the model record, writes) and
 * index/store_pg_search.c (listing, loading, searching, stats and the HNSW
 * index). Not installed.
 */
#ifndef IDX_STORE_PG_H
#define IDX_STORE_PG_H

#include "index/store_impl.h"

#include <libpq-fe.h>
#include <stdint.h>

/* Advisory lock keys are 1447646257 (0x56495431, "VIT1": a write
 * transaction) and 1447646258 (a writer's claim, for the session), each
 * paired with the hash of the schema, so that two indexes in one database
 * (two schemas) do not wait for each other. */
#define SCHEMA_VERSION 1
#define CANDIDATES 16   /* re-scored beyond k, as the matrix re-ranks */
#define RECALL_QUERIES 20
#define PAGE 16384      /* rows per round trip when listing or loading */

typedef struct {
    PGconn *c;
    char *where;   /* the URI (which has no password): what messages name */
    int dim;       /* 0 until a model is recorded */
    int in_txn;
    int claimed;
    int iterative; /* pgvector >= 0.8: HNSW scans that filter go on */
    char model_id[420];
} pg_store;

/* Parameters: up to 8, binary unless given as text. */
typedef struct {
    const char *v[8];
    int len[8], fmt[8], n;
    char num[8][8];
} params;

/* Parameters in order: bytes (binary; NULL for SQL NULL), text (text
 * format; NULL for SQL NULL), int8, float8, bool (binary). */
void vpg_p_bin(params *p, const void *b, int len);
void vpg_p_text(params *p, const char *t);
void vpg_p_i64(params *p, int64_t x);
void vpg_p_f64(params *p, double x);
void vpg_p_bool(params *p, int b);

/* Values of a binary result; SQL NULL is 0. vpg_str: a text or bytea
 * value as a C string, malloc'd; NULL for SQL NULL (and *oom set when out
 * of memory). */
int64_t vpg_i64(PGresult *r, int row, int col);
double vpg_f64(PGresult *r, int row, int col);
int vpg_bool(PGresult *r, int row, int col);
char *vpg_str(PGresult *r, int row, int col, int *oom);

/* pgvector's binary form (int16 dim, int16 0, dim big-endian float4):
 * packed (malloc'd, 4 + 4 dim bytes; NULL out of memory), or unpacked
 * from a result (-1 when it is not a vector of dim). */
char *vpg_vec_pack(const float *v, int dim);
int vpg_vec_unpack(PGresult *r, int row, int col, int dim, float *out);

/* One statement with parameters (p may be NULL), results binary; NULL on
 * failure, with err (which may be NULL) set. */
PGresult *vpg_run(pg_store *s, const char *sql, const params *p,
                  const char *what, idx_error *err);
/* Statements without parameters (several, separated by ';'). */
idx_status vpg_exec(pg_store *s, const char *sql, const char *what,
                    idx_error *err);
/* The model record; sets s->dim and s->model_id when there is one. */
idx_status vpg_model_dim(pg_store *s, idx_model *m, int *has,
                         idx_error *err);

/* s->dim, read again while it is 0: another process may have recorded
 * the model since this handle opened. 0 while there is none. */
int vpg_dim(pg_store *s);

/* index/store_pg_search.c: the store operations that read. */
idx_status pg_each(void *vs, int (*fn)(void *ud, int64_t id, const char *path),
                   void *ud, idx_error *err);
idx_status pg_load(void *vs, idx_precision prec, int keep_f32,
                   idx_matrix **out, idx_error *err);
idx_status pg_search(void *vs, const float *q, int nq,
                     const idx_search_opts *o, idx_hit *hits,
                     idx_error *err);
idx_status pg_stats(void *vs, idx_stats *out, idx_error *err);
idx_status pg_stats_quick(void *vs, idx_stats *out, idx_error *err);
idx_status pg_set_ann(void *vs, idx_ann ann, idx_error *err);

#endif
