/*
 * The vector cache beside an index (index/vcache.c): internal to index/.
 */
#ifndef VIT_INDEX_VCACHE_H
#define VIT_INDEX_VCACHE_H

#include <stddef.h>
#include <stdint.h>

/* PATH-vectors, malloc'd; NULL when out of memory. */
char *vc_path(const char *index_path);

/* A cache file mapped for reading. */
typedef struct {
    size_t rows;
    const float *vecs;   /* rows x dim */
    const int64_t *ids;  /* rows, ascending */
    void *base;
    size_t len;
} vc_map;

/* Maps the cache at `path` when it is whole and stamped with this
 * dimension, identity and generation; -1 (nothing to close) otherwise. */
int vc_open(const char *path, int dim, uint64_t identity, uint64_t gen,
            vc_map *out);
void vc_close(vc_map *m);

/* Writes a new cache: rows in ascending id order, then finish renames it
 * into place (0) or removes it (-1). Every call takes a NULL writer (one
 * that could not be begun: the directory is read-only, say) and does
 * nothing; a failed write is remembered and makes finish fail. */
typedef struct vc_writer vc_writer;
vc_writer *vc_writer_begin(const char *path, int dim, uint64_t identity,
                           uint64_t gen);
void vc_writer_add(vc_writer *w, size_t n, const int64_t *ids,
                   const float *vecs);
int vc_writer_finish(vc_writer *w);
void vc_writer_abort(vc_writer *w);

#endif
