/*
 * The embedding index behind vit's image–text search: a durable store of
 * items and their vectors, an SQLite file (index/store_sqlite.c) or a
 * PostgreSQL database with pgvector (index/store_pg.c), chosen by the
 * name it is opened by (index/store.c), the fingerprint that
 * ties an index to the model that made its vectors (index/model.c), an
 * in-memory matrix of those vectors searched exactly by inner product, in
 * fp32 or, with re-ranking in fp32, fp16 or int8 (index/matrix.c), and the
 * SHA-256 used for content hashes and fingerprints (index/sha256.c).
 * It knows nothing of models beyond a directory of files and a vector
 * length: embedding is the caller's (cli/index.c, the service's worker).
 *
 * A worked example, searching an index built by `vit index add`:
 *
 *     idx_error err;
 *     idx_store *s;
 *     if (idx_store_open("photos.vidx", IDX_OPEN_READ, &s, &err) != IDX_OK)
 *         { fprintf(stderr, "%s\n", err.msg); return 1; }
 *     idx_matrix *m;
 *     idx_store_load(s, IDX_FP16, 0, &m, &err);
 *     idx_search_opts o = idx_search_opts_default();
 *     o.k = 10;
 *     o.fetch = idx_store_fetch;  // fp32 vectors to re-rank, from SQLite
 *     o.fetch_ud = s;
 *     idx_hit hits[10];
 *     if (idx_matrix_search(m, query, 1, &o, hits, &err) == IDX_OK)
 *         printf("%s %.3f\n", hits[0].key, hits[0].score);
 *     idx_hits_free(hits, 10);
 *     idx_matrix_free(m);
 *     idx_store_close(s);
 *
 * Threads: a store handle is one SQLite (or PostgreSQL) connection; use it
 * from one thread at a time (open one per thread; WAL, or PostgreSQL's
 * MVCC, lets readers run while a writer writes, and a reader never waits
 * for a writer's transaction). A matrix
 * may be searched by any number of threads while one thread at a time adds
 * to it or removes from it: a reader-writer lock guards it, held for
 * writing only while finished rows are copied in, never while a batch is
 * embedded or committed.
 *
 * Errors: every fallible call returns an idx_status and, when `err` is not
 * NULL, writes one sentence into err->msg. Nothing here prints, exits or
 * aborts on bad input. Closing or freeing NULL is a harmless no-op.
 */
#ifndef IDX_INDEX_H
#define IDX_INDEX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Append-only: values are stable. */
#define IDX_STATUS_LIST(X)                                              \
    X(IDX_OK, "ok")                                                     \
    X(IDX_E_ARG, "invalid argument")                                    \
    X(IDX_E_NOMEM, "out of memory")                                     \
    X(IDX_E_IO, "input/output error")                                   \
    X(IDX_E_DB, "database error")                                       \
    X(IDX_E_FORMAT, "not a vit index")                                  \
    X(IDX_E_MODEL, "the index was built with another model")            \
    X(IDX_E_NOTFOUND, "not found")

typedef enum {
#define IDX_STATUS_ENUM(name, msg) name,
    IDX_STATUS_LIST(IDX_STATUS_ENUM)
#undef IDX_STATUS_ENUM
} idx_status;

/* The fixed message of a status; never NULL. */
const char *idx_status_str(idx_status st);

typedef struct {
    char msg[512];
} idx_error;

/* ---- SHA-256 (index/sha256.c), FIPS 180-4 ---- */

typedef struct {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t buf[64];
} idx_sha256;

void idx_sha256_init(idx_sha256 *c);
void idx_sha256_update(idx_sha256 *c, const void *data, size_t n);
void idx_sha256_final(idx_sha256 *c, uint8_t out[32]);
/* Lower-case hex of `n` bytes into out (2n + 1 chars with the NUL). */
void idx_hex(char *out, const uint8_t *v, size_t n);

/* The SHA-256 of a whole file, read in 1 MiB pieces. IDX_E_IO with
 * strerror's text on failure. */
idx_status idx_sha256_file(const char *path, uint8_t out[32], idx_error *err);

/* ---- the model an index belongs to (index/model.c) ---- */

typedef struct {
    char name[256];          /* the model directory's last component */
    char architecture[128];  /* as config.json names it */
    int dim;                 /* vector length */
    char fingerprint[65];    /* hex SHA-256; what is compared */
    char id[420];            /* "name/architecture@first 16 hex digits of
                                the fingerprint": what people see */
    char dir[4096];          /* absolute path of the directory, so search
                                can load the model without being told */
    /* How the vectors are made, beyond the weights: the model's precision
     * ("fp32", "int8", "bf16") and the image processor reproduced ("pil",
     * "torchvision"). Empty: not known (an index made before they were
     * recorded, or a caller that does not say). idx_model_fingerprint
     * leaves them empty; the caller fills them in. */
    char precision[8];
    char preprocess[16];
} idx_model;

/* Fingerprints a model directory cheaply, without reading gigabytes of
 * weights: SHA-256 over the architecture, the dimension, the whole of each
 * small file that changes the numbers (config.json,
 * preprocessor_config.json, tokenizer.json, vocab.json, merges.txt, where
 * present), and for each weights file (model.safetensors, or the shards a
 * model.safetensors.index.json names, in name order) its name, its size,
 * its safetensors header, and its first and last MiB. Retraining or
 * converting the weights changes the header's offsets or the bytes at
 * either end; two models that agree in all of that are, in practice, the
 * same weights. */
idx_status idx_model_fingerprint(const char *dir, const char *architecture,
                                 int dim, idx_model *out, idx_error *err);

/* ---- the store (index/store.c): SQLite in WAL mode, or PostgreSQL ---- */

typedef struct idx_store idx_store;

typedef enum {
    IDX_OPEN_READ = 0,    /* the file must exist and be an index */
    IDX_OPEN_WRITE = 1,   /* create it if missing */
} idx_open_mode;

/* Opens (or creates) an index: a file path (SQLite), or a libpq connection
 * URI, "postgresql://..." or "postgres://..." (a PostgreSQL database with
 * the pgvector extension; the password as libpq finds it, PGPASSWORD or
 * ~/.pgpass; a URI that carries one is refused, IDX_E_ARG, since the
 * index's name is printed and answered over the service). A file that is
 * not a vit index, a database whose vit tables
 * are another program's, or an index of a newer schema, is refused with
 * IDX_E_FORMAT; a server that cannot be reached is IDX_E_IO. */
idx_status idx_store_open(const char *path, idx_open_mode mode,
                          idx_store **out, idx_error *err);
void idx_store_close(idx_store *s);

/* Whether `where` names a PostgreSQL index (a postgresql:// or
 * postgres:// URI) rather than a file. */
int idx_store_is_pg(const char *where);

/* Whether the store is a server that several processes write and search
 * at once (PostgreSQL): a search then goes to the store (idx_store_search
 * with no matrix), which sees every committed write of every writer,
 * rather than to a matrix of this process's own. */
int idx_store_shared(const idx_store *s);

/* Claims the index for this handle's writes, so that one writer at a time
 * (a serving worker, or one `vit index add`) owns it: on SQLite an
 * exclusive flock(2) on the file, on PostgreSQL a session advisory lock
 * of the database (schema), held until the handle is closed. IDX_E_IO,
 * saying so, when another process holds it. Readers need no claim, and
 * neither do the writers of a shared store that only put and remove by
 * key (serving workers): their batches are serialized by the store. */
idx_status idx_store_claim(idx_store *s, idx_error *err);

/* The model recorded in the index; *has = 0 (and `out` untouched) while
 * none is, which is until the first add. */
idx_status idx_store_model(idx_store *s, idx_model *out, int *has,
                           idx_error *err);

/* Checks that `m` is the index's model (same fingerprint and dimension),
 * recording it when the index has none and `record` is set. A different
 * model is IDX_E_MODEL, with both ids in the message. */
idx_status idx_store_check_model(idx_store *s, const idx_model *m,
                                 int record, idx_error *err);

/* What the store knows of one item. Strings are malloc'd; free the item
 * with idx_item_free. */
typedef struct {
    int64_t id;         /* the row id, stable while the item lives */
    char *path;         /* the item's key: an absolute file path for files,
                           the client's id for vectors added over the
                           service */
    int has_hash;
    uint8_t hash[32];   /* SHA-256 of the file's bytes */
    int64_t size;       /* bytes, -1 when not a file */
    int64_t mtime_ns;   /* modification time, ns since the epoch */
    double added;       /* when indexed, s since the epoch */
    char *meta;         /* a JSON object, or NULL */
} idx_item;

void idx_item_free(idx_item *it);

/* Looks an item up by key (path), or by content hash: the lowest id above
 * `after` among those with that hash (after = 0: the first; the id of the
 * last one found: the next). *found = 0 when there is none. */
idx_status idx_store_get_path(idx_store *s, const char *path, idx_item *out,
                              int *found, idx_error *err);
idx_status idx_store_get_hash(idx_store *s, const uint8_t hash[32],
                              int64_t after, idx_item *out, int *found,
                              idx_error *err);

/* One transaction per batch: everything between begin and commit becomes
 * durable together or not at all (synchronous=FULL: a commit that
 * returned survives a crash of the process or of the machine; on
 * PostgreSQL the server's commit, made durable by its WAL). Write
 * transactions of several handles run one after another (SQLite's write
 * lock; on PostgreSQL an advisory transaction lock taken at begin). */
idx_status idx_store_begin(idx_store *s, idx_error *err);
idx_status idx_store_commit(idx_store *s, idx_error *err);
void idx_store_rollback(idx_store *s);

/* Inserts an item with its vector (dim floats), or replaces the item with
 * the same path (its id is kept). `it->id` is ignored; the item's id is
 * returned in *id and *replaced says whether one was replaced. `added` 0
 * means now. The vector is stored as little-endian float32. */
idx_status idx_store_put(idx_store *s, const idx_item *it, const float *vec,
                         int64_t *id, int *replaced, idx_error *err);

/* Renames item `id` (a file that moved, or was touched), with its new size
 * and mtime; its time added becomes now, the time the path was recorded. */
idx_status idx_store_move(idx_store *s, int64_t id, const char *path,
                          int64_t size, int64_t mtime_ns, idx_error *err);

/* Removes the items whose key is `path` or, with `under` set, starts with
 * `path` followed by '/' (a directory's files). The ids removed are
 * appended to *ids (realloc'd; *n counts them) so a matrix can follow. */
idx_status idx_store_remove(idx_store *s, const char *path, int under,
                            int64_t **ids, size_t *n, idx_error *err);

/* Removes item `id`; IDX_E_NOTFOUND when there is none. */
idx_status idx_store_remove_id(idx_store *s, int64_t id, idx_error *err);

/* Reads the vector of item `id` into out (dim floats). IDX_E_NOTFOUND when
 * there is no such item. Shaped as idx_fetch_fn so that a search can
 * re-rank from the store: pass idx_store_fetch and the store. */
int idx_store_fetch(void *store, int64_t id, float *out);

typedef struct {
    int64_t items;
    int64_t with_hash;      /* items that are files */
    int dim;
    int64_t vector_bytes;   /* as stored */
    int64_t file_bytes;     /* the database file plus its WAL */
    double first_added, last_added;  /* 0 when empty */
    int has_model;
    idx_model model;
    /* An approximate index beside the exact scan (PostgreSQL's HNSW):
     * "" none, "hnsw"; its recall@10 against exact search, measured by
     * idx_store_stats on `recall_queries` queries (0: not measured). */
    char ann[16];
    double recall;
    int recall_queries;
} idx_stats;

/* file_bytes is, on PostgreSQL, the size of the index's tables and
 * indexes on the server; with an HNSW index its recall is measured. */
idx_status idx_store_stats(idx_store *s, idx_stats *out, idx_error *err);
/* The same without reading the vectors (a scan of the items alone):
 * vector_bytes is then items x dim x 4, what float32 vectors take; no
 * recall is measured. */
idx_status idx_store_stats_quick(idx_store *s, idx_stats *out,
                                 idx_error *err);

/* Calls fn for every item (id order) with its key; nonzero from fn stops
 * with IDX_OK. Used to find items whose files are gone. */
idx_status idx_store_each(idx_store *s,
                          int (*fn)(void *ud, int64_t id, const char *path),
                          void *ud, idx_error *err);

/* ---- the in-memory matrix and search (index/matrix.c) ---- */

typedef enum { IDX_FP32 = 0, IDX_FP16 = 1, IDX_INT8 = 2 } idx_precision;

/* How a store that searches itself (PostgreSQL) searches: as the index
 * says (HNSW once one is built, else exact), exactly (a scan, the same
 * results as a matrix), or through the HNSW index (approximate). */
typedef enum {
    IDX_ANN_DEFAULT = 0,
    IDX_ANN_EXACT = 1,
    IDX_ANN_HNSW = 2
} idx_ann;

/* "none"/"exact" -> IDX_ANN_EXACT, "hnsw" -> IDX_ANN_HNSW, 0 and *out;
 * anything else -1. */
int idx_ann_parse(const char *s, idx_ann *out);

/* "fp32", "fp16", "int8" -> 0 and *out; anything else -1. */
int idx_precision_parse(const char *s, idx_precision *out);
const char *idx_precision_str(idx_precision p);

typedef struct idx_matrix idx_matrix;

/* An empty matrix of `dim`-float rows held in `p`. With keep_f32 (only
 * meaningful for fp16 / int8) an fp32 copy is kept too, for re-ranking
 * without a store. */
idx_status idx_matrix_new(int dim, idx_precision p, int keep_f32,
                          idx_matrix **out, idx_error *err);
void idx_matrix_free(idx_matrix *m);

/* Loads every vector of the store into a new matrix, keys and all. */
idx_status idx_store_load(idx_store *s, idx_precision p, int keep_f32,
                          idx_matrix **out, idx_error *err);

/* Adds n rows (vecs: n x dim, ids, keys copied) or, for an id already
 * present, replaces that row. All or nothing: on IDX_E_NOMEM the matrix
 * is unchanged. */
idx_status idx_matrix_add(idx_matrix *m, int n, const int64_t *ids,
                          char *const *keys, const float *vecs,
                          idx_error *err);
/* Makes room for `rows` rows in all (a bulk load that knows its size
 * grows the arrays once). */
idx_status idx_matrix_reserve(idx_matrix *m, size_t rows, idx_error *err);
/* Removes the rows with these ids (absent ones are ignored); returns how
 * many were removed. */
size_t idx_matrix_remove(idx_matrix *m, const int64_t *ids, size_t n);
size_t idx_matrix_rows(idx_matrix *m);
int idx_matrix_dim(const idx_matrix *m);
idx_precision idx_matrix_precision(const idx_matrix *m);
/* Bytes the matrix holds (its arrays as allocated: vectors in their
 * precision, int8 scales, a kept fp32 copy, ids, key pointers, the id
 * map; not the key strings). */
size_t idx_matrix_memory_bytes(idx_matrix *m);
/* Bytes of vectors scanned by one search (the rows in their precision). */
size_t idx_matrix_scan_bytes(idx_matrix *m);

/* Fills out (dim floats) with item `id`'s fp32 vector; returns 0, or -1
 * when it has none. */
typedef int (*idx_fetch_fn)(void *ud, int64_t id, float *out);

typedef struct {
    int k;               /* results per query (default 10) */
    const char *prefix;  /* only keys that start with it; NULL: all */
    int rerank;          /* fp16 / int8: re-score this many candidates per
                            result in fp32 (default 4; at least k + 16
                            candidates in all) */
    int threads;         /* 0: one per online CPU */
    idx_fetch_fn fetch;  /* fp32 vectors for re-ranking when the matrix
                            keeps none; NULL: rank by the approximate
                            scores */
    void *fetch_ud;
    idx_ann ann;         /* idx_store_search on PostgreSQL: how */
} idx_search_opts;

idx_search_opts idx_search_opts_default(void);

typedef struct {
    int64_t id;   /* -1 where fewer than k rows matched */
    float score;  /* inner product with the query */
    char *key;    /* malloc'd copy of the row's key, NULL with id -1 */
} idx_hit;

/* The k rows of largest inner product with each of nq queries (nq x dim),
 * best first (ties by lower id), into hits[q * k ...]. One query is a SIMD
 * scan of the rows split among threads; several go through sgemm, block by
 * block. fp16 and int8 scores are approximate; their best candidates are
 * re-scored in fp32 (from the kept copy, or `fetch`). Free the hits' keys
 * with idx_hits_free. */
idx_status idx_matrix_search(idx_matrix *m, const float *queries, int nq,
                             const idx_search_opts *o, idx_hit *hits,
                             idx_error *err);
void idx_hits_free(idx_hit *hits, size_t n);

/* Searches an index: `m` (loaded by idx_store_load) for a store that does
 * not search itself, the store for one that does (idx_store_shared; m is
 * then ignored, and may be NULL). The store's search gives the matrix's
 * results: the server's best candidates (k + 16 per query, by pgvector's
 * inner product) re-scored in fp32 by the matrix's own arithmetic, so
 * scores and order are the matrix's to the bit. */
idx_status idx_store_search(idx_store *s, idx_matrix *m, const float *q,
                            int nq, const idx_search_opts *o, idx_hit *hits,
                            idx_error *err);

/* Builds (IDX_ANN_HNSW) or drops (IDX_ANN_EXACT) the store's approximate
 * index; searches then use it by default. IDX_E_ARG on a store that has
 * none to build (SQLite, searched exactly in memory), or before the first
 * add (the vectors' dimension is not known yet). */
idx_status idx_store_set_ann(idx_store *s, idx_ann ann, idx_error *err);

/* fp16 conversions as the matrix stores them (IEEE binary16, round to
 * nearest even), exposed for tests and the benchmark. */
uint16_t idx_f32_to_f16(float x);
float idx_f16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif
#endif
