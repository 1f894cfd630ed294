/*
 * The plan of an add (index/sync.h): what each file of a listing needs,
 * decided against the store's items by path and by content hash, the
 * cheap changes committed in batches of their own, and the vectors of the
 * files that had to be embedded committed a batch at a time.
 */
#include "index/sync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A file to embed. */
typedef struct {
    char *key;
    int64_t size, mtime;
    uint8_t hash[32];
} pending;

/* A cheap change waiting for its transaction. */
typedef struct {
    idx_sync_kind kind;  /* MOVED, COPIED or TOUCHED */
    int64_t id;          /* the item moved, copied or touched */
    char *key, *from;
    int64_t size, mtime;
    uint8_t hash[32];
    float *vec;          /* a copy's vector, read when it was decided */
} cheap;

struct idx_sync {
    idx_store *s;
    int dim;
    idx_sync_said said;
    void *ud;
    pending *v;
    char **keys;  /* v's keys, for idx_sync_todo */
    size_t n, cap, next;
    cheap *q;
    size_t nq;
    int fatal;  /* the store failed: nothing more is done */
};

static idx_status fail(idx_error *err, idx_status st, const char *msg)
{
    if (err)
        snprintf(err->msg, sizeof err->msg, "%s", msg);
    return st;
}

idx_status idx_sync_new(idx_store *s, int dim, idx_sync_said said, void *ud,
                        idx_sync **out, idx_error *err)
{
    *out = NULL;
    if (!s || dim <= 0)
        return fail(err, IDX_E_ARG, "a plan needs a store and a dimension");
    idx_sync *y = calloc(1, sizeof *y);
    cheap *q = malloc(IDX_SYNC_BATCH * sizeof *q);
    if (!y || !q) {
        free(y);
        free(q);
        return fail(err, IDX_E_NOMEM, "out of memory");
    }
    *y = (idx_sync){.s = s, .dim = dim, .said = said, .ud = ud, .q = q};
    *out = y;
    return IDX_OK;
}

static void queue_free(idx_sync *y)
{
    for (size_t i = 0; i < y->nq; i++) {
        free(y->q[i].key);
        free(y->q[i].from);
        free(y->q[i].vec);
    }
    y->nq = 0;
}

void idx_sync_free(idx_sync *y)
{
    if (!y)
        return;
    queue_free(y);
    free(y->q);
    for (size_t i = 0; i < y->n; i++)
        free(y->v[i].key);
    free(y->v);
    free(y->keys);
    free(y);
}

idx_status idx_sync_flush(idx_sync *y, idx_error *err)
{
    if (y->fatal)
        return fail(err, IDX_E_ARG, "the plan stopped when the store failed");
    if (!y->nq)
        return IDX_OK;
    idx_status st = idx_store_begin(y->s, err);
    for (size_t i = 0; i < y->nq && st == IDX_OK; i++) {
        cheap *x = &y->q[i];
        if (x->kind == IDX_SYNC_COPIED) {
            idx_item it = {.path = x->key, .has_hash = 1, .size = x->size,
                           .mtime_ns = x->mtime};
            memcpy(it.hash, x->hash, 32);
            int64_t id;
            st = idx_store_put(y->s, &it, x->vec, &id, NULL, err);
        } else {
            st = idx_store_move(y->s, x->id, x->key, x->size, x->mtime, err);
        }
    }
    if (st == IDX_OK)
        st = idx_store_commit(y->s, err);
    else
        idx_store_rollback(y->s);
    if (st != IDX_OK) {
        y->fatal = 1;
        queue_free(y);
        return st;
    }
    for (size_t i = 0; i < y->nq && y->said; i++) {
        cheap *x = &y->q[i];
        y->said(y->ud, x->kind == IDX_SYNC_TOUCHED ? IDX_SYNC_UNCHANGED
                                                   : x->kind,
                x->key, x->from);
    }
    queue_free(y);
    return IDX_OK;
}

/* The new path of a move queued in this batch that takes item id, or
 * NULL. */
static const char *claimed(const idx_sync *y, int64_t id)
{
    for (size_t i = 0; i < y->nq; i++)
        if (y->q[i].kind == IDX_SYNC_MOVED && y->q[i].id == id)
            return y->q[i].key;
    return NULL;
}

static idx_status queue(idx_sync *y, idx_sync_kind kind, int64_t id,
                        const idx_sync_file *f, const char *from,
                        const uint8_t hash[32], idx_error *err)
{
    cheap *x = &y->q[y->nq];
    *x = (cheap){.kind = kind, .id = id, .size = f->size,
                 .mtime = f->mtime_ns};
    memcpy(x->hash, hash, 32);
    x->key = strdup(f->key);
    x->from = from ? strdup(from) : NULL;
    /* A copy's vector is read now, while item id still holds the bytes it
     * was found by: a change queued before the flush may give that item
     * other bytes (a file rewritten, then copied from its old content). */
    if (kind == IDX_SYNC_COPIED)
        x->vec = malloc((size_t)y->dim * sizeof *x->vec);
    idx_status st = IDX_OK;
    if (!x->key || (from && !x->from) || (kind == IDX_SYNC_COPIED && !x->vec))
        st = fail(err, IDX_E_NOMEM, "out of memory");
    else if (kind == IDX_SYNC_COPIED && idx_store_fetch(y->s, id, x->vec) != 0) {
        if (err)
            snprintf(err->msg, sizeof err->msg,
                     "the vector of item %lld is missing", (long long)id);
        st = IDX_E_DB;
    }
    if (st != IDX_OK) {
        free(x->key);
        free(x->from);
        free(x->vec);
        y->fatal = 1;
        return st;
    }
    if (++y->nq == IDX_SYNC_BATCH)
        return idx_sync_flush(y, err);
    return IDX_OK;
}

static idx_status push_pending(idx_sync *y, const idx_sync_file *f,
                               const uint8_t hash[32], idx_error *err)
{
    if (y->n == y->cap) {
        size_t cap = y->cap ? 2 * y->cap : 64;
        pending *v = realloc(y->v, cap * sizeof *v);
        if (v)
            y->v = v;
        char **k = v ? realloc(y->keys, cap * sizeof *k) : NULL;
        if (!k)
            return fail(err, IDX_E_NOMEM, "out of memory");
        y->keys = k;
        y->cap = cap;
    }
    pending *p = &y->v[y->n];
    *p = (pending){.key = strdup(f->key), .size = f->size,
                   .mtime = f->mtime_ns};
    if (!p->key)
        return fail(err, IDX_E_NOMEM, "out of memory");
    memcpy(p->hash, hash, 32);
    y->keys[y->n++] = p->key;
    return IDX_OK;
}

/* Whether a file is as it was when its item was recorded: the same size
 * and mtime, and no change of its inode since (its ctime, which a rename
 * and every write set, before the record's time). Size and mtime alone
 * are not enough: a file renamed over another of the same size written
 * in the same clock tick (a copied batch of images, say) keeps its own
 * mtime, and would keep the other's vector. */
static int same_as_recorded(const idx_sync_file *f, const idx_item *old)
{
    return old->size == f->size && old->mtime_ns == f->mtime_ns &&
           f->ctime < old->added;
}

idx_status idx_sync_decide(idx_sync *y, const idx_sync_file *f,
                           idx_sync_kind *kind, const char **why,
                           idx_error *err)
{
    *why = NULL;
    if (y->fatal)
        return fail(err, IDX_E_ARG, "the plan stopped when the store failed");
    idx_item old;
    int found;
    idx_status st = idx_store_get_path(y->s, f->key, &old, &found, err);
    if (st != IDX_OK)
        goto store_failed;
    if (found && same_as_recorded(f, &old)) {
        idx_item_free(&old);
        *kind = IDX_SYNC_UNCHANGED;
        return IDX_OK;
    }
    uint8_t hash[32];
    if ((st = idx_sha256_file(f->key, hash, err)) != IDX_OK) {
        int e = errno;
        if (found)
            idx_item_free(&old);
        if (st == IDX_E_NOMEM)
            goto store_failed;
        *kind = IDX_SYNC_FAILED;
        *why = strerror(e);
        return IDX_OK;
    }
    if (found && old.has_hash && memcmp(old.hash, hash, 32) == 0) {
        /* Touched, not changed: the vector stands. */
        int64_t id = old.id;
        idx_item_free(&old);
        *kind = IDX_SYNC_TOUCHED;
        return queue(y, IDX_SYNC_TOUCHED, id, f, NULL, hash, err);
    }
    if (found)
        idx_item_free(&old);
    /* The same bytes may be indexed already: then the vector is known. If
     * one of those items' files is gone, and no move queued in this batch
     * has claimed that item, the file moved here; otherwise it is a copy
     * (of the first item found; a move names where the bytes were, a copy
     * where they are now). */
    int64_t after = 0, move_id = -1, copy_id = -1;
    char *from = NULL;
    for (;;) {
        idx_item same;
        int has_same;
        if ((st = idx_store_get_hash(y->s, hash, after, &same, &has_same,
                                     err)) != IDX_OK) {
            free(from);
            goto store_failed;
        }
        if (!has_same)
            break;
        after = same.id;
        struct stat os;
        const char *to = claimed(y, same.id);
        int gone = !found && !to && stat(same.path, &os) != 0 &&
                   errno == ENOENT;
        if (gone || copy_id < 0) {
            free(from);
            from = strdup(to ? to : same.path);
            copy_id = same.id;
        }
        idx_item_free(&same);
        if (!from) {
            st = fail(err, IDX_E_NOMEM, "out of memory");
            goto store_failed;
        }
        if (gone) {
            move_id = copy_id;
            break;
        }
        if (found)
            break; /* a copy onto an indexed path: the first will do */
    }
    if (copy_id >= 0) {
        *kind = move_id >= 0 ? IDX_SYNC_MOVED : IDX_SYNC_COPIED;
        st = queue(y, *kind, copy_id, f, from, hash, err);
        free(from);
        return st;
    }
    *kind = found ? IDX_SYNC_UPDATED : IDX_SYNC_NEW;
    if ((st = push_pending(y, f, hash, err)) != IDX_OK)
        y->fatal = 1;
    return st;
store_failed:
    y->fatal = 1;
    return st;
}

char *const *idx_sync_todo(const idx_sync *y, size_t *n)
{
    *n = y->n;
    return y->keys;
}

idx_status idx_sync_put(idx_sync *y, char *const *keys, const float *vecs,
                        int n, int *replaced, idx_error *err)
{
    if (y->fatal)
        return fail(err, IDX_E_ARG, "the plan stopped when the store failed");
    idx_status st = idx_store_begin(y->s, err);
    for (int i = 0; i < n && st == IDX_OK; i++) {
        while (y->next < y->n && strcmp(y->v[y->next].key, keys[i]) != 0)
            y->next++;
        if (y->next == y->n) {
            if (err)
                snprintf(err->msg, sizeof err->msg,
                         "internal: lost track of %s", keys[i]);
            st = IDX_E_ARG;
            break;
        }
        const pending *p = &y->v[y->next];
        idx_item it = {.path = p->key, .has_hash = 1, .size = p->size,
                       .mtime_ns = p->mtime};
        memcpy(it.hash, p->hash, 32);
        int64_t id;
        int r = 0;
        st = idx_store_put(y->s, &it, vecs + (size_t)i * (size_t)y->dim, &id,
                           &r, err);
        if (replaced)
            replaced[i] = r;
    }
    if (st == IDX_OK)
        st = idx_store_commit(y->s, err);
    else
        idx_store_rollback(y->s);
    if (st != IDX_OK)
        y->fatal = 1;
    return st;
}
