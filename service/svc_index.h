/*
 * The worker's embedding index (service/index_ops.c), private to service/:
 * `vit serve --index PATH` opens an index made by `vit index add` (or an
 * empty file), checks it belongs to the served model, holds its vectors in
 * memory for search, and runs the one thread that writes to it. Searches
 * run on the caller's thread under the matrix's read lock; additions and
 * removals are queued to the writer, which commits each request as one
 * SQLite transaction and only then copies the rows into the matrix (the
 * write lock is held for that copy alone), so a search never waits for a
 * batch being written. An index in PostgreSQL (--index postgresql://...)
 * is shared by every worker that serves it: no matrix is held, searches
 * run on the server and see every worker's commits. Prefix svc_ix_.
 */
#ifndef SVC_INDEX_H
#define SVC_INDEX_H

#include "index/index.h"
#include "vit/vit.h"

#include <jansson.h>
#include <stddef.h>

typedef struct svc_index svc_index;

/* How the writer answers a job: `body` (malloc'd, handed over) is the
 * reply of a success, or NULL with `code` / `msg` for a failure. Called on
 * the writer thread with its own socket `push`. */
typedef void (*svc_ix_done_fn)(void *push, void *req, char *body,
                               const char *code, const char *msg);

/* Opens the index at `path` (creating it when missing), records or checks
 * the model (directory, architecture, dimension) and how it makes vectors
 * (`precision` "fp32" / "int8" / "bf16", `preprocess` "pil" /
 * "torchvision": an index made another way is refused), loads the vectors
 * in `prec` (fp16 / int8 re-rank their candidates in fp32 from the store),
 * and starts the writer thread, whose replies go to `done` through a PUSH
 * socket of its own connected to `done_ep` in `zctx`. */
vit_status svc_ix_open(const char *path, idx_precision prec,
                       const char *model_dir, const vit_model_info *info,
                       const char *precision, const char *preprocess,
                       void *zctx, const char *done_ep, svc_ix_done_fn done,
                       svc_index **out, vit_error *err);
/* Finishes the queued jobs, stops the writer and frees everything. */
void svc_ix_close(svc_index *ix);

/* A job for the writer: add n items (keys, vectors n x dim, metadata JSON
 * objects as text or NULL), or remove n keys. Everything is owned by the
 * job once submitted, and freed with it. */
typedef struct svc_ix_job {
    int remove;
    int n;
    char **keys;
    char **metas;   /* (n) or NULL */
    float *vecs;    /* (n, dim), L2-normalized by the writer */
    void *req;      /* handed back to `done` */
    const char *op; /* the reply's "op" */
    struct svc_ix_job *next;
} svc_ix_job;

/* Queues a job (taking it). */
void svc_ix_submit(svc_index *ix, svc_ix_job *job);
void svc_ix_job_free(svc_ix_job *job);

/* Searches nq queries (nq x dim, normalized here) for the k best items,
 * whose keys start with `prefix` (NULL: all). Returns a JSON array of nq
 * arrays of {"id", "score", "metadata", "rowid"} (new reference), or
 * NULL with `msg` set. Called from one thread (the inference thread): it uses the
 * index's read connection for the metadata. */
json_t *svc_ix_search(svc_index *ix, float *queries, int nq, int k,
                      const char *prefix, char msg[256]);

/* index_get: for each of the n keys, {"id", "rowid", "file", "size",
 * "metadata"} (file: added by `vit index add` as a file, with its size
 * and content hash) or null when there is no such item; a JSON array
 * (new reference), or NULL with `msg` set. From the thread that reads
 * requests only: it has a read connection of its own. */
json_t *svc_ix_get(svc_index *ix, char *const *keys, int n, char msg[256]);

/* {"items", "dim", "model", "fingerprint", "precision", "path", "files",
 * "vector_bytes", "file_bytes", "model_dir", "first_added",
 * "last_added"}: what index_stats answers, from memory (the counts and
 * dates the writer last read) and the file's size; never waits for the
 * writer. */
json_t *svc_ix_stats(svc_index *ix);

int svc_ix_dim(const svc_index *ix);

#endif
