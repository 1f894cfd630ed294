/*
 * The plan of an add (index/sync.c): given a listing of files (each its
 * key, an absolute path, with its size and times), which are unchanged,
 * touched (same content), moved or copied from an item already indexed
 * (known by their SHA-256, so they need no embedding), and which are new
 * or updated and must be embedded. The cheap changes are committed here,
 * in transactions of up to IDX_SYNC_BATCH; the files to embed are handed
 * back, and their vectors committed a batch at a time with
 * idx_sync_put. Only the idx_store_* API is used, so any store serves.
 *
 * Deciding against the moves queued but not yet committed as well as the
 * committed items keeps two files (a renamed file and a copy of it, or
 * two renamed twins) from claiming one item, which would lose one of them.
 */
#ifndef IDX_SYNC_H
#define IDX_SYNC_H

#include "index/index.h"

#include <stdint.h>

/* Cheap changes per transaction. */
#define IDX_SYNC_BATCH 256

typedef enum {
    IDX_SYNC_UNCHANGED,  /* indexed as it is: same size and mtime, and its
                            inode unchanged since it was recorded */
    IDX_SYNC_TOUCHED,    /* indexed, its time changed but not its bytes:
                            the vector stands */
    IDX_SYNC_MOVED,      /* its bytes are indexed under a path that is
                            gone: the item takes its path */
    IDX_SYNC_COPIED,     /* its bytes are indexed under a path still there:
                            a new item with that vector */
    IDX_SYNC_NEW,        /* not indexed: to embed */
    IDX_SYNC_UPDATED,    /* indexed with other bytes: to embed */
    IDX_SYNC_FAILED,     /* could not be read: *why says why */
} idx_sync_kind;

/* One file of the listing, as stat gave it. */
typedef struct {
    const char *key;   /* an absolute path: the item's key */
    int64_t size;
    int64_t mtime_ns;  /* modification time, ns since the epoch */
    double ctime;      /* last change of its inode, s since the epoch */
} idx_sync_file;

/* A cheap change, said once it is committed (kind UNCHANGED for touched
 * files; `from`, for moves and copies, is where the bytes were). */
typedef void (*idx_sync_said)(void *ud, idx_sync_kind kind, const char *key,
                              const char *from);

typedef struct idx_sync idx_sync;

/* A plan over store `s`, whose vectors have `dim` floats; `said` (may be
 * NULL) hears each committed cheap change. */
idx_status idx_sync_new(idx_store *s, int dim, idx_sync_said said, void *ud,
                        idx_sync **out, idx_error *err);
void idx_sync_free(idx_sync *y);

/* Decides one file of the listing: *kind. Unchanged files are done; moves,
 * copies and touched files are queued (committed every IDX_SYNC_BATCH and
 * by idx_sync_flush); new and updated ones join the files to embed. A
 * file whose bytes cannot be read is IDX_SYNC_FAILED with strerror's text
 * in *why, and IDX_OK. Anything else returned is the store failing (or
 * memory), after which the plan stops. */
idx_status idx_sync_decide(idx_sync *y, const idx_sync_file *f,
                           idx_sync_kind *kind, const char **why,
                           idx_error *err);

/* Commits the queued cheap changes. */
idx_status idx_sync_flush(idx_sync *y, idx_error *err);

/* The keys of the files to embed, in listing order (*n of them); they
 * live as long as the plan. */
char *const *idx_sync_todo(const idx_sync *y, size_t *n);

/* Commits the vectors (n x dim, unit length for search) of n files to
 * embed, in one transaction; keys[i] are some of idx_sync_todo's, in its
 * order. replaced[i] (may be NULL) says whether an item of that path was
 * replaced (updated) rather than added. All or nothing. */
idx_status idx_sync_put(idx_sync *y, char *const *keys, const float *vecs,
                        int n, int *replaced, idx_error *err);

#endif
