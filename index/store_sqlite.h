/*
 * The SQLite store's handle and helpers, shared by index/store_sqlite.c
 * (the store) and index/store_sqlite_load.c (loading its vectors). Not
 * installed.
 */
#ifndef IDX_STORE_SQLITE_H
#define IDX_STORE_SQLITE_H

#include "index/store_impl.h"
#include "index/vcache.h"

#include <sqlite3.h>
#include <stdint.h>

enum {
    Q_GET_PATH,
    Q_GET_HASH,
    Q_INSERT_ITEM,
    Q_UPDATE_ITEM,
    Q_PUT_VEC,
    Q_MOVE,
    Q_FETCH,
    Q_COUNT
};

struct sq_store {
    sqlite3 *db;
    char *path;
    int dim;           /* 0 until a model is recorded */
    int lock_fd;       /* the writer's claim (flock), or -1 */
    int bumped;        /* the open transaction has bumped the generation */
    char model_id[420];
    sqlite3_stmt *q[Q_COUNT];
};

typedef struct sq_store sq_store;

/* An SQLite failure as a status, with the file and `what` in the message. */
idx_status sq_db_fail(sq_store *s, idx_error *err, const char *what);
idx_status sq_exec(sq_store *s, const char *sql, idx_error *err);
/* The generation and identity in the current read transaction; 0 when
 * the index has none yet. */
int sq_read_stamp(sq_store *s, uint64_t *gen, uint64_t *ident);
char *sq_col_strdup(sqlite3_stmt *q, int c);
idx_status sq_load(void *vs, idx_precision p, int keep_f32, idx_matrix **out,
                   idx_error *err);

/* Vectors are stored little-endian whatever the host. */
static inline void sq_to_le(uint32_t *w, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < n; i++)
        w[i] = __builtin_bswap32(w[i]);
#else
    (void)w, (void)n;
#endif
}

#endif
