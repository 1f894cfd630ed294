/*
 * What index/store.c dispatches to: the two stores behind the idx_store_*
 * API, SQLite (index/store_sqlite.c, a file) and PostgreSQL with pgvector
 * (index/store_pg.c, a server), each a table of the same operations on
 * its own handle, and the pieces both share. Not installed: the public API
 * is index.h.
 */
#ifndef IDX_STORE_IMPL_H
#define IDX_STORE_IMPL_H

#include "index/index.h"
#include "vit/fail.h"

typedef struct {
    const char *kind;  /* "SQLite", "PostgreSQL": for messages */
    idx_status (*open)(const char *where, idx_open_mode mode, void **out,
                       idx_error *err);
    void (*close)(void *s);
    idx_status (*claim)(void *s, idx_error *err);
    idx_status (*model)(void *s, idx_model *out, int *has, idx_error *err);
    idx_status (*check_model)(void *s, const idx_model *m, int record,
                              idx_error *err);
    idx_status (*get_path)(void *s, const char *path, idx_item *out,
                           int *found, idx_error *err);
    idx_status (*get_hash)(void *s, const uint8_t hash[32], int64_t after,
                           idx_item *out, int *found, idx_error *err);
    idx_status (*begin)(void *s, idx_error *err);
    idx_status (*commit)(void *s, idx_error *err);
    void (*rollback)(void *s);
    idx_status (*put)(void *s, const idx_item *it, const float *vec,
                      int64_t *id, int *replaced, idx_error *err);
    idx_status (*move)(void *s, int64_t id, const char *path, int64_t size,
                       int64_t mtime_ns, idx_error *err);
    idx_status (*remove)(void *s, const char *path, int under,
                         int64_t **ids, size_t *n, idx_error *err);
    idx_status (*remove_id)(void *s, int64_t id, idx_error *err);
    int (*fetch)(void *s, int64_t id, float *out);
    idx_status (*stats)(void *s, idx_stats *out, idx_error *err);
    idx_status (*stats_quick)(void *s, idx_stats *out, idx_error *err);
    idx_status (*each)(void *s,
                       int (*fn)(void *ud, int64_t id, const char *path),
                       void *ud, idx_error *err);
    idx_status (*load)(void *s, idx_precision p, int keep_f32,
                       idx_matrix **out, idx_error *err);
    /* A store that searches itself (a server every writer commits to);
     * NULL: the caller's matrix is searched. */
    idx_status (*search)(void *s, const float *q, int nq,
                         const idx_search_opts *o, idx_hit *hits,
                         idx_error *err);
    /* NULL: the store has no approximate index to build. */
    idx_status (*set_ann)(void *s, idx_ann ann, idx_error *err);
} idx_store_ops;

extern const idx_store_ops idx_sqlite_ops;
extern const idx_store_ops idx_pg_ops;

/* One sentence into err (when not NULL); returns st: the library's one
 * helper (vit/fail.h), by the name the stores use. */
#define idx_fail vit__fail

/* Wall-clock seconds since the epoch: items' time added. */
double idx_now_s(void);

/* Appends id to *ids (realloc'd, *n counts). 0, or -1 out of memory. */
int idx_push_id(int64_t **ids, size_t *n, int64_t id);

/* The keys of a directory's files are those in [lo, hi): `path` with its
 * trailing slashes dropped, then "/" and "0" ('0' follows '/'), so the
 * range walks the path index. Both malloc'd; -1 out of memory. */
int idx_dir_range(const char *path, int under, char **lo, char **hi);

/* `m` against the model an index records (`have`): a different model
 * (fingerprint or dimension), or the same one run another way (precision,
 * image processor, where both are known), is IDX_E_MODEL with a message
 * that names `where` and both. */
idx_status idx_model_compare(const char *where, const idx_model *have,
                             const idx_model *m, idx_error *err);

/* Reads one key of an index's model record into m; returns 1 for the
 * three keys a model must have (model_id, fingerprint, dim), else 0. */
int idx_model_set(idx_model *m, const char *k, const char *v);

#endif
